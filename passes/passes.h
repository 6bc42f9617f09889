/* The pass manager: named passes run as a pipeline over a graph. */
#ifndef FUSEC_PASSES_H
#define FUSEC_PASSES_H

#include "../ir/ir.h"

typedef enum { FU_PROFILE_BARE = 0, FU_PROFILE_FAST = 1 } fu_profile;
/* Matmul precision: float32 throughout, or activations rounded to
 * bfloat16 against bfloat16-packed weights (fast profile only). */
typedef enum { FU_PRECISION_F32 = 0, FU_PRECISION_BF16 = 1 } fu_precision;

struct fu_fusion_log;

typedef struct {
    fu_profile profile;
    int verbose;              /* one line per pass on stderr */
    struct fu_fusion_log *fusion_log;   /* if set, fuse and prune_rows record what they did and why not */
    fu_precision precision;
} fu_pass_opts;

typedef struct {
    const char *name;
    const char *help;
    int (*run)(fu_graph *g, const fu_pass_opts *o, fu_err *err);
} fu_pass;

/* Passes, in pipeline order for a profile. */
int fu_pipeline(fu_profile p, const fu_pass **passes, int max);
const fu_pass *fu_pass_find(const char *name);
/* Runs the profile's pipeline, stopping after pass `stop_after` (NULL: all). */
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

#endif
