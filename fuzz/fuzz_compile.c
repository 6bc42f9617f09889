/* libFuzzer target: every model the verifier accepts compiles.
 *
 * Input: a model file's text when it starts with '{' (read as
 * <scratch>/model.json; weights: "w.safetensors", see fuzz_common.h), else
 * bytes for the model generator of fuzz/model_gen.h (mostly valid models
 * with constants and attributes of any value). When it loads and passes the
 * verifier (fu_ir_parse, then fu_infer), the rest of what `fusec run
 * --backend jit` does must succeed: the pass pipeline (constant folding
 * compiles and runs its subgraphs with libtcc), the C emitter and libtcc.
 * A failure there is a bug of fusec's, reported with abort() (the error
 * printed first). The pipeline depends on the input's length, so one
 * corpus covers all three: length mod 4 = 0 or 1: fast profile, float32;
 * 2: bare profile; 3: fast profile, bf16 matmuls.
 *
 * One accepted model in FUZZ_GCC_EVERY (default 64, chosen by a hash of
 * the input; 0: never) is also built with gcc (fu_aot_build, the AOT back
 * end), which must succeed too: gcc and tcc differ in what C they take.
 *
 * FUZZ_SHOW_MODEL=1 prints each generated model.
 * FUZZ_COMPILE_LENIENT=1 in the environment turns the abort into a line on
 * stderr (to survey failures without stopping at the first); FUZZ_STATS=1
 * prints at exit how many inputs loaded, passed the verifier and compiled. */
#include "fuzz_common.h"
#include "compiler/driver.h"
#include "ir/json_ir.h"
#include "ops/infer.h"
#include "model_gen.h"

static char model_path[320];
static int lenient;
static unsigned long gcc_every = 64;
static long n_inputs, n_loaded, n_verified, n_compiled, n_gcc;

static void print_stats(void) {
    fprintf(stderr, "fuzz_compile: %ld inputs, %ld loaded, %ld verified, %ld compiled (%ld also with gcc)\n", n_inputs,
            n_loaded, n_verified, n_compiled, n_gcc);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fz_write_weights();
    snprintf(model_path, sizeof model_path, "%s/model.json", fz_scratch());
    const char *l = getenv("FUZZ_COMPILE_LENIENT");
    lenient = l && *l == '1';
    const char *st = getenv("FUZZ_STATS");
    if (st && *st == '1') atexit(print_stats);
    const char *every = getenv("FUZZ_GCC_EVERY");
    if (every) gcc_every = strtoul(every, NULL, 10);
    return 0;
}

static void verified_but_failed(const char *stage, const fu_err *err) {
    fprintf(stderr, "fuzz_compile: a model the verifier accepts fails in %s: %s\n", stage, err->msg);
    if (!lenient) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text;
    if (size && data[0] == '{') {
        text = fz_cstr(data, size);
    } else {
        size_t cap = 1 << 17;
        if (!(text = malloc(cap))) abort();
        mg_generate(data, size, text, cap);
        if (getenv("FUZZ_SHOW_MODEL")) fputs(text, stderr);
    }
    fu_err err = {0};
    fu_graph *g = fu_ir_parse(text, model_path, &err);
    free(text);
    n_inputs++;
    if (!g) return 0;
    n_loaded++;
    if (fu_infer(g, &err)) {
        fu_graph_free(g);
        return 0;
    }
    n_verified++;
    fu_pass_opts o = {.profile = size % 4 == 2 ? FU_PROFILE_BARE : FU_PROFILE_FAST,
                      .precision = size % 4 == 3 ? FU_PRECISION_BF16 : FU_PRECISION_F32,
                      .evaluate = fu_evaluate_graph};
    fu_sb c = {0};
    if (fu_run_pipeline(g, &o, NULL, &err)) verified_but_failed("the passes", &err);
    else if (fu_emit_graph(g, &c, &err)) verified_but_failed("the C emitter", &err);
    else {
        fu_compiled code;
        if (fu_jit_compile(c.s, &code, &err)) verified_but_failed("libtcc", &err);
        else fu_compiled_free(&code), n_compiled++;
        /* a sample through gcc too, chosen by the input (FNV-1a) so a replay builds the same ones */
        unsigned long h = 2166136261u;
        for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 16777619u;
        if (!err.msg[0] && gcc_every && h % gcc_every == 0) {
            char so[400];
            snprintf(so, sizeof so, "%s/sample.so", fz_scratch());
            if (fu_aot_build(c.s, so, NULL, &err)) verified_but_failed("gcc", &err);
            else n_gcc++;
            unlink(so);
        }
    }
    fu_sb_free(&c);
    fu_graph_free(g);
    return 0;
}
