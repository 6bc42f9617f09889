/* Fusion rules: each rule lives in its own passes/fuse_<name>.c file as a
 * pattern (match), a check (near misses give a reason) and a rewrite. The
 * "fuse" pass (passes/fuse.c) tries every rule at every node until nothing
 * changes, and keeps a log of what fused and what almost did, and why not
 * (`fusec dump --explain-fusions`).
 *
 * A rule anchors at the LAST node of its pattern (the one producing the
 * pattern's result) and walks producers backwards with the helpers below.
 * Patterns match graph structure, never names. */
#ifndef FUSEC_FUSION_H
#define FUSEC_FUSION_H

#include "../ir/ir.h"

typedef struct {
    int fused;            /* 1 fused, 0 near miss */
    char rule[32];
    char node[128];       /* sanitised anchor node name */
    char reason[256];     /* near miss: why not; fused: what it became */
} fu_fusion_event;

typedef struct fu_fusion_log {
    fu_fusion_event *events;
    int n, cap;
} fu_fusion_log;

/* State handed to a rule while the fuse pass runs. */
typedef struct {
    fu_graph *g;
    int *uses;            /* consumer count per value (graph outputs count) */
    fu_fusion_log *log;   /* may be NULL */
    const char *rule;     /* name of the rule being applied */
} fu_fuse_ctx;

typedef struct {
    const char *name;
    /* Tries the rule with node `anchor` as the pattern's last node.
     * Returns 1 when it rewrote the graph, 0 when not (a near miss is
     * logged with fu_fuse_reject), -1 on an error. */
    int (*apply)(fu_fuse_ctx *c, int anchor, fu_err *err);
} fu_fusion_rule;

/* ---- pattern helpers ----------------------------------------------------- */

/* Node producing value v if its op is `op` (NULL: any op), else -1. */
int fu_m_producer(const fu_graph *g, int v, const char *op);
/* Skips Cast nodes to a float type (exporters put them at the edges). */
int fu_m_skip_casts(const fu_graph *g, int v);
/* Constant scalar (numel 1, any rank) of any dtype, through Casts. */
int fu_m_const_scalar(const fu_graph *g, int v, double *out);
/* For a binary commutative node: puts the input index that satisfies
 * pred into *which (0 or 1). Returns 1 if one does. */
int fu_m_either(const fu_graph *g, const fu_node *n, int (*pred)(const fu_graph *, int, void *),
                void *arg, int *which);
/* Node `node` divides a value by a square root, spelled Div(x, Sqrt(r)),
 * Mul(x, Reciprocal(Sqrt(r))) or Mul(x, Div(1, Sqrt(r))) in either operand
 * order. Sets *x, *inverse (the Reciprocal/Div node, -1 for plain Div) and
 * *sqrt_node; returns 1 on a match. */
int fu_m_div_by_sqrt(const fu_graph *g, int node, int *x, int *inverse, int *sqrt_node);
/* Node `node` squares a value: Pow(x, 2) or Mul(x, x) (through Casts).
 * Returns 1 and sets *base to x; 0 for a Pow whose exponent is not the
 * constant 2 (reason written: a near miss); -1 when it is no square. */
int fu_m_square_of(const fu_graph *g, int node, int *base, char *reason, size_t n);
/* Reads the reduce axes of a ReduceX node (attr or input), normalised. */
int fu_m_reduce_axes(const fu_graph *g, const fu_node *n, int64_t *axes, int max, int *count);

/* Every value in `interior` must be consumed only by nodes in `nodes` and
 * must not be a graph output; on failure writes the reason. */
int fu_m_interior_private(const fu_fuse_ctx *c, const int *nodes, int n_nodes, const int *interior,
                          int n_interior, char *reason, size_t n);

/* ---- rewrite helpers ------------------------------------------------------ */

/* Replaces the pattern: adds a node `op` with the given inputs that produces
 * `out_value` (the anchor's output, so consumers stay wired), moves the
 * anchor's output off the anchor, and marks `nodes` dead. Returns the new
 * node's index or -1. The fuse pass re-sorts and re-infers afterwards. */
int fu_fuse_replace(fu_fuse_ctx *c, const char *op, const int *inputs, int n_inputs, int out_value,
                    const int *nodes, int n_nodes, fu_err *err);
/* Adds an owned constant value (e.g. a folded scale); returns its index. */
int fu_fuse_add_const(fu_graph *g, const char *base, fu_dtype t, int rank, const int64_t *shape,
                      const void *data, fu_err *err);

void fu_fuse_accept(fu_fuse_ctx *c, int anchor, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void fu_fuse_reject(fu_fuse_ctx *c, int anchor, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

void fu_fusion_log_free(fu_fusion_log *log);
/* Number of fused events of a rule (NULL: all). */
int fu_fusion_log_count(const fu_fusion_log *log, const char *rule, int fused);

#endif
