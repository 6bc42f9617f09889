/* The pass manager: named passes run as a pipeline over a graph. */
#ifndef FUSEC_PASSES_H
#define FUSEC_PASSES_H

#include "../ir/ir.h"

typedef enum { FU_PROFILE_BARE = 0, FU_PROFILE_FAST = 1 } fu_profile;
/* Matmul precision: float32 throughout, or activations rounded to
 * bfloat16 against bfloat16-packed weights (fast profile only). */
typedef enum { FU_PRECISION_F32 = 0, FU_PRECISION_BF16 = 1 } fu_precision;

struct fu_fusion_log;

typedef struct fu_pass_opts fu_pass_opts;

/* Compiles a graph of constants (no inputs) and runs it once: outputs[i]
 * receives a malloc'd copy of output i's bytes. Constant folding evaluates
 * what inference cannot know through it; the compile driver passes
 * fu_evaluate_graph (compiler/driver.h), so passes never call up into the
 * compiler. */
typedef int (*fu_evaluate_fn)(fu_graph *g, const fu_pass_opts *o, void **outputs, fu_err *err);

struct fu_pass_opts {
    fu_profile profile;
    int verbose;              /* one line per pass on stderr */
    struct fu_fusion_log *fusion_log;   /* if set, fuse and prune_rows record what they did and why not */
    fu_precision precision;
    /* NULL: fold only folds the values inference knows (Shape of a static
     * shape and the like), nothing that needs compiling. */
    fu_evaluate_fn evaluate;
};

typedef struct {
    const char *name;
    const char *help;
    int (*run)(fu_graph *g, const fu_pass_opts *o, fu_err *err);
} fu_pass;

/* Passes, in pipeline order for a profile. */
int fu_pipeline(fu_profile p, const fu_pass **passes, int max);
const fu_pass *fu_pass_find(const char *name);
/* Checks that `name` is a pass of the profile's pipeline, or "load" (no
 * pass at all); fails with "unknown pass 'x' (passes: load, infer, ...)". */
int fu_pass_check_stop(fu_profile p, const char *name, fu_err *err);
/* Runs the profile's pipeline, stopping after pass `stop_after` (NULL: all;
 * "load": none). */
int fu_run_pipeline(fu_graph *g, const fu_pass_opts *o, const char *stop_after, fu_err *err);

int fu_pass_infer(fu_graph *g, const fu_pass_opts *o, fu_err *err);  /* ops/infer.c: fu_infer */
int fu_pass_fold(fu_graph *g, const fu_pass_opts *o, fu_err *err);   /* constant folding */
int fu_pass_dce(fu_graph *g, const fu_pass_opts *o, fu_err *err);    /* dead code */
/* node_live[i] (n_nodes bytes) = 1 when node i feeds a graph output
 * (the liveness dce keeps). Returns 0, or -1 when out of memory. */
int fu_live_nodes(const fu_graph *g, char *node_live);
int fu_pass_cse(fu_graph *g, const fu_pass_opts *o, fu_err *err);    /* common subexpressions */
int fu_pass_fuse(fu_graph *g, const fu_pass_opts *o, fu_err *err);   /* fusion rules (fast) */
int fu_pass_prune_rows(fu_graph *g, const fu_pass_opts *o, fu_err *err);  /* compute selected rows only (fast) */
int fu_pass_pack(fu_graph *g, const fu_pass_opts *o, fu_err *err);   /* packed weight layouts (fast) */
int fu_pass_plan(fu_graph *g, const fu_pass_opts *o, fu_err *err);   /* loop groups + memory plan */
/* Parses "f32" / "bf16"; -1 for anything else. */
int fu_precision_parse(const char *s, fu_precision *out);
/* Parses "fast" / "bare"; -1 for anything else. */
int fu_profile_parse(const char *s, fu_profile *out);

#endif
