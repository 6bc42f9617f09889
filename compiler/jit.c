/* JIT back end: compiles the generated translation unit in memory with
 * libtcc. The generated code calls the runtime kernels and a few libm/libc
 * functions; every one of them is registered explicitly with
 * tcc_add_symbol (the table of compiler/jit_symbols.h, generated from the
 * kernels header) and nothing else is linked (-nostdlib) but tcc's own
 * helper library, so generated code can call nothing outside that list. */
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <libtcc.h>

#include "backend.h"
#include "jit_symbols.h"

/* Where Debian's tcc keeps libtcc1.a (helpers such as float to uint64
 * conversion) and its own headers (stddef.h...). */
#define FU_TCC_LIB_DIR "/usr/lib/x86_64-linux-gnu/tcc"

/* libtcc 0.9.27 keeps compiler state in globals: one compile at a time.
 * Running the compiled code needs no lock. */
static pthread_mutex_t tcc_lock = PTHREAD_MUTEX_INITIALIZER;

/* In libfusec.so, Debian's libtcc.a (non-PIC) reads libc's stdout, stderr
 * and environ through these copies instead (the Makefile renames its
 * references, see "libfusec.so" there); they are set under tcc_lock before
 * libtcc runs. The static library links libtcc.a as it is and ignores them. */
__attribute__((visibility("hidden"))) FILE *fu_tcc_stdout, *fu_tcc_stderr;
__attribute__((visibility("hidden"))) char **fu_tcc_environ;

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
    for (int i = 0; i < fu_jit_n_symbols; i++) tcc_add_symbol(s, fu_jit_symbols[i].name, fu_jit_symbols[i].addr);
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
    fu_tcc_stdout = stdout;
    fu_tcc_stderr = stderr;
    fu_tcc_environ = environ;
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
