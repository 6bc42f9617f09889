/* JIT back end: compiles the generated translation unit in memory with
 * libtcc. The generated code calls the runtime kernels and a few libm/libc
 * functions; every one of them is registered explicitly with
 * tcc_add_symbol and nothing else is linked (-nostdlib) but tcc's own
 * helper library, so generated code can call nothing outside that list. */
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libtcc.h>

#include "backend.h"
#include "../runtime/fusec_kernels.h"

/* Where Debian's tcc keeps libtcc1.a (helpers such as float to uint64
 * conversion) and its own headers (stddef.h...). */
#define FU_TCC_LIB_DIR "/usr/lib/x86_64-linux-gnu/tcc"

/* libtcc 0.9.27 keeps compiler state in globals: one compile at a time.
 * Running the compiled code needs no lock. */
static pthread_mutex_t tcc_lock = PTHREAD_MUTEX_INITIALIZER;

/* Collects tcc's diagnostics into the fu_err (first few lines only). */
typedef struct {
    fu_err *err;
    size_t len;
    int n_msgs;
} tcc_messages;

static void collect_tcc_message(void *opaque, const char *msg) {
    tcc_messages *m = opaque;
    if (m->n_msgs++ >= 8) return;
    size_t room = sizeof m->err->msg - m->len;
    if (room <= 1) return;
    int k = snprintf(m->err->msg + m->len, room, "%s%s", m->len ? "; " : "", msg);
    if (k > 0) m->len += (size_t)k < room ? (size_t)k : room - 1;
}

typedef struct {
    const char *name;
    const void *addr;
} runtime_symbol;

/* Everything the generated code may call: the non-inline kernels of
 * runtime/fusec_kernels.h and the libm/libc functions it declares. A new
 * kernel in that header must be added here (tests/test_backends.c checks
 * the two lists agree). */
static const runtime_symbol runtime_symbols[] = {
    {"fu_rt_f16_to_f32", (const void *)fu_rt_f16_to_f32},
    {"fu_rt_f32_to_f16", (const void *)fu_rt_f32_to_f16},
    {"fu_rt_matmul_f32", (const void *)fu_rt_matmul_f32},
    {"fu_rt_gemm_packed_f32", (const void *)fu_rt_gemm_packed_f32},
    {"fu_rt_gemm_packed_bf16", (const void *)fu_rt_gemm_packed_bf16},
    {"fu_rt_gemm_nt_f32", (const void *)fu_rt_gemm_nt_f32},
    {"fu_rt_convert", (const void *)fu_rt_convert},
    {"fu_rt_gemm_nt_bf16", (const void *)fu_rt_gemm_nt_bf16},
    {"fu_rt_reduce_f32", (const void *)fu_rt_reduce_f32},
    {"fu_rt_softmax_f32", (const void *)fu_rt_softmax_f32},
    {"fu_rt_copy", (const void *)fu_rt_copy},
    {"fu_rt_gather", (const void *)fu_rt_gather},
    {"fu_rt_trilu", (const void *)fu_rt_trilu},
    {"fu_rt_rms_norm_f32", (const void *)fu_rt_rms_norm_f32},
    {"fu_rt_layer_norm_f32", (const void *)fu_rt_layer_norm_f32},
    {"fu_rt_rope_f32", (const void *)fu_rt_rope_f32},
    {"fu_rt_attention_f32", (const void *)fu_rt_attention_f32},
    {"fu_rt_swiglu_f32", (const void *)fu_rt_swiglu_f32},
    {"fu_rt_gelu_f32", (const void *)fu_rt_gelu_f32},
    {"fu_rt_parallel_for", (const void *)fu_rt_parallel_for},
    {"fu_rt_profile_begin", (const void *)fu_rt_profile_begin},
    {"fu_rt_profile_end", (const void *)fu_rt_profile_end},
    {"expf", (const void *)expf},
    {"logf", (const void *)logf},
    {"sqrtf", (const void *)sqrtf},
    {"powf", (const void *)powf},
    {"erff", (const void *)erff},
    {"tanhf", (const void *)tanhf},
    {"cosf", (const void *)cosf},
    {"sinf", (const void *)sinf},
    {"fabsf", (const void *)fabsf},
    {"floorf", (const void *)floorf},
    {"fmodf", (const void *)fmodf},
    {"memcpy", (const void *)memcpy},
    {"memset", (const void *)memset},
};

/* Compiles and relocates; called with tcc_lock held. */
static int jit_compile_locked(TCCState *s, const char *c_source, fu_compiled *out,
                              tcc_messages *msgs, fu_err *err) {
    tcc_set_lib_path(s, FU_TCC_LIB_DIR);
    tcc_set_error_func(s, msgs, collect_tcc_message);
    /* Warnings are the emitter's business, not the user's. */
    tcc_set_options(s, "-w -nostdlib");
    if (tcc_set_output_type(s, TCC_OUTPUT_MEMORY) < 0)
        return fu_fail(err, "jit: tcc cannot output to memory");
    if (tcc_compile_string(s, c_source) < 0) {
        if (!msgs->len) fu_fail(err, "jit: tcc failed to compile the generated code");
        return -1;
    }
    for (size_t i = 0; i < sizeof runtime_symbols / sizeof runtime_symbols[0]; i++)
        tcc_add_symbol(s, runtime_symbols[i].name, runtime_symbols[i].addr);
    if (tcc_add_file(s, FU_TCC_LIB_DIR "/libtcc1.a") < 0) {
        if (!msgs->len) fu_fail(err, "jit: cannot add %s/libtcc1.a", FU_TCC_LIB_DIR);
        return -1;
    }
    if (tcc_relocate(s, TCC_RELOCATE_AUTO) < 0) {
        if (!msgs->len) fu_fail(err, "jit: tcc failed to link the generated code");
        return -1;
    }
    void *run = tcc_get_symbol(s, "fusec_model_run");
    void *meta = tcc_get_symbol(s, "fusec_model_meta");
    const unsigned long *meta_len = tcc_get_symbol(s, "fusec_model_meta_len");
    if (!run || !meta || !meta_len)
        return fu_fail(err, "jit: generated code lacks fusec_model_run / fusec_model_meta / "
                            "fusec_model_meta_len");
    /* Object pointer to function pointer: allowed by POSIX (dlsym). */
    memcpy(&out->run, &run, sizeof run);
    void *run_profiled = tcc_get_symbol(s, "fusec_model_run_profiled");
    memcpy(&out->run_profiled, &run_profiled, sizeof run_profiled);
    out->meta = meta;
    out->meta_len = *meta_len;
    return 0;
}

int fu_jit_compile(const char *c_source, fu_compiled *out, fu_err *err) {
    memset(out, 0, sizeof *out);
    err->msg[0] = 0;
    tcc_messages msgs = {err, 0, 0};
    pthread_mutex_lock(&tcc_lock);
    TCCState *s = tcc_new();
    if (!s) {
        pthread_mutex_unlock(&tcc_lock);
        return fu_fail(err, "jit: tcc_new failed (out of memory)");
    }
    int rc = jit_compile_locked(s, c_source, out, &msgs, err);
    if (rc != 0) {
        tcc_delete(s);
        memset(out, 0, sizeof *out);
    } else {
        out->tcc_state = s;
    }
    pthread_mutex_unlock(&tcc_lock);
    if (rc != 0 && msgs.len) {
        /* Prefix tcc's own text so the message says where it came from. */
        char tcc_text[FU_ERR_LEN];
        snprintf(tcc_text, sizeof tcc_text, "%s", err->msg);
        fu_fail(err, "jit: tcc: %s", tcc_text);
    }
    return rc;
}

void fu_compiled_free(fu_compiled *c) {
    if (!c) return;
    if (c->tcc_state) {
        pthread_mutex_lock(&tcc_lock);
        tcc_delete(c->tcc_state);
        pthread_mutex_unlock(&tcc_lock);
    }
    if (c->dl_handle) dlclose(c->dl_handle);
    memset(c, 0, sizeof *c);
}
