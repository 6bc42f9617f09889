/* The compile driver: the one path from a model to code.
 *
 *   load (JSON IR + weights) -> pass pipeline (profile, precision)
 *     -> C translation unit -> back end (libtcc in memory, or gcc)
 *
 * The C API (api/fusec.c), every CLI command (cli/) and constant folding
 * (through fu_pass_opts.evaluate, so passes/ never calls up into the
 * compiler) go through here; a target says how far to go. */
#ifndef FUSEC_DRIVER_H
#define FUSEC_DRIVER_H

#include "specialize.h"
#include "backend.h"
#include "emit.h"
#include "../passes/passes.h"

typedef enum {
    FU_TARGET_GRAPH,     /* load and run the passes (up to stop_after): graph */
    FU_TARGET_C,         /* ... then emit C: graph, c_source */
    FU_TARGET_JIT,       /* ... then compile it in memory with libtcc: code */
    FU_TARGET_AOT,       /* a gcc library in the build cache, built unless the cache has it
                          * (a hit skips passes and emission), then loaded: code. A library
                          * of one's own is FU_TARGET_C, then fu_aot_build (fusec compile). */
} fu_target;

typedef struct {
    fu_target target;
    fu_profile profile;
    fu_precision precision;
    int verbose;                        /* one line per pass; JIT and AOT also print their timings */
    struct fu_fusion_log *fusion_log;   /* see fu_pass_opts */
    const char *stop_after;             /* FU_TARGET_GRAPH: last pass run ("load": none); NULL: all */
    const char *cache_dir;              /* FU_TARGET_AOT: NULL means fu_default_cache_dir() */
    int allow_external_weights;         /* the weights may lie outside the model's folder (fu_ir_opts) */
    const char *sym_max;                /* an ONNX model's dim_param bounds "seq=256,b=4" (fu_ir_opts) */
    /* Values of graph inputs known before compiling: those whose values
     * decide shapes are compiled in (compiler/specialize.h); with
     * specialize_always, all of them (fusec compile --specialize). */
    const fu_known_input *known;
    int n_known;
    int specialize_always;
} fu_compile_opts;

typedef struct {
    fu_graph *graph;    /* the graph after the passes (GRAPH, C) */
    fu_sb c_source;     /* the generated C (C) */
    fu_compiled code;   /* the loaded code (JIT, AOT) */
} fu_compile_result;

/* Compiles the JSON model at path as far as o->target. Errors of the back
 * end start with the model path; the others are those of fu_ir_load and
 * fu_run_pipeline. On failure *out holds nothing. */
int fu_compile(const char *path, const fu_compile_opts *o, fu_compile_result *out, fu_err *err);
void fu_compile_result_free(fu_compile_result *r);
/* The library of a compile to C (fusec compile, fusec_compile): gcc builds
 * r's C into so_path (and header_path); with embed_weights the weights the
 * code reads go into it too (fu_aot_build_embedded). */
int fu_build_library(const fu_compile_result *r, const char *so_path, const char *header_path, int embed_weights,
                     fu_err *err);

/* The evaluator constant folding runs (fu_pass_opts.evaluate): infers and
 * plans a graph of constants, emits it, compiles it with libtcc and runs
 * it once; outputs[i] receives a malloc'd copy of output i. */
int fu_evaluate_graph(fu_graph *g, const fu_pass_opts *o, void **outputs, fu_err *err);

/* Parses "jit" / "aot" into FU_TARGET_JIT / FU_TARGET_AOT; -1 otherwise. */
int fu_backend_parse(const char *s, fu_target *out);

#endif
