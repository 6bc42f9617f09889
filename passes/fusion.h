/* Fusion rules: one file each (passes/fuse_<name>.c) holding patterns, a
 * check and a rewrite. The "fuse" pass (passes/fuse.c) offers every live
 * node to the rules anchored at its op, and keeps a log of what fused and
 * what almost did, and why not (`fusec dump --explain-fusions`).
 *
 * A pattern is static data describing the subgraph that ends at the anchor
 * (the node producing the result), written with the macros below, e.g.
 *
 *     OP(Div, VAL(X), OP(Sqrt, OPC(Add, OP(ReduceMean, ...), SCALAR_ANY(EPS, "epsilon"))))
 *
 * The matcher (passes/pattern.c) walks it from the anchor towards the
 * inputs, binds captures, collects the matched nodes and checks that every
 * intermediate value stays inside the match. Patterns match graph
 * structure and constants, never names. How to write a rule:
 * docs/fusions.md. */
#ifndef FUSEC_FUSION_H
#define FUSEC_FUSION_H

#include <math.h>
#include <stddef.h>
#include "../ir/ir.h"
#include "../ir/shape.h"
#include "../ops/ops.h"

/* ---- the pattern language ------------------------------------------------- */

enum { FU_PAT_MAX_IN = 6, FU_PAT_CAPTURES = 16 };

typedef enum {
    FU_PAT_NODE,    /* the value's producer has op `op`; operands match in[0..n_in) */
    FU_PAT_ANY,     /* any value (bound to `capture` when set) */
    FU_PAT_SCALAR,  /* a constant scalar, through float Casts; equal to `scalar` unless it is NaN */
    FU_PAT_EITHER,  /* the first of in[0..n_in) that matches: spelling variants */
    FU_PAT_CAPTURE, /* in[0], then binds the value (and its producer) to `capture` */
    FU_PAT_WHERE,   /* in[0], then `where` must hold for the value */
    FU_PAT_QUIET,   /* in[0], with failures never logged as near misses */
} fu_pat_kind;

enum {
    FU_PAT_COMMUTE = 1,   /* NODE: operands 0 and 1 in either order */
    FU_PAT_SHARED = 2,    /* NODE: may have readers outside the match (it then stays) */
    FU_PAT_NEAR = 4,      /* NODE: once this op is found, later failures are near misses */
    FU_PAT_UP_TO_CASTS = 8, /* ANY with a bound capture: equal up to float Casts */
};

struct fu_match;
typedef struct fu_pat {
    fu_pat_kind kind;
    int op;                  /* NODE: fu_op_id */
    int flags;
    int capture;             /* slot 1..FU_PAT_CAPTURES-1, 0 for none */
    double scalar;           /* SCALAR */
    const char *label;       /* names the part in near-miss messages */
    /* WHERE: 1 when value v qualifies, else 0 with the reason in why (empty: silent). */
    int (*where)(const fu_graph *g, const struct fu_match *m, int v, char *why, size_t n);
    int n_in;
    const struct fu_pat *in[FU_PAT_MAX_IN];
} fu_pat;

#define FU_PAT_NARGS_(a, b, c, d, e, f, n, ...) n
#define FU_PAT_NARGS(...) FU_PAT_NARGS_(__VA_ARGS__, 6, 5, 4, 3, 2, 1, 0)
#define FU_PAT_OP(opname, fl, ...)                                                                    \
    (&(const fu_pat){.kind = FU_PAT_NODE, .op = FU_OP_##opname, .flags = (fl), .label = #opname,     \
                     .n_in = FU_PAT_NARGS(__VA_ARGS__), .in = {__VA_ARGS__}})
/* Node of op `opname` with these operands (more inputs than listed are allowed). */
#define OP(opname, ...) FU_PAT_OP(opname, 0, __VA_ARGS__)
/* Binary node whose two operands may come in either order. */
#define OPC(opname, a, b) FU_PAT_OP(opname, FU_PAT_COMMUTE, a, b)
/* Node of any arity whose operands are not looked at. */
#define NODE(opname) (&(const fu_pat){.kind = FU_PAT_NODE, .op = FU_OP_##opname, .label = #opname})
/* Same node patterns with flags (FU_PAT_SHARED, FU_PAT_NEAR, FU_PAT_COMMUTE). */
#define OPF(opname, fl, ...) FU_PAT_OP(opname, fl, __VA_ARGS__)
#define ANY (&(const fu_pat){.kind = FU_PAT_ANY})
/* Any value, bound to slot; a second VAL of the same slot must be the same value. */
#define VAL(slot) (&(const fu_pat){.kind = FU_PAT_ANY, .capture = (slot)})
/* Same, where the second occurrence may differ from the first by float Casts. */
#define VAL_CASTS(slot) (&(const fu_pat){.kind = FU_PAT_ANY, .capture = (slot), .flags = FU_PAT_UP_TO_CASTS})
#define SCALAR(value, lbl) (&(const fu_pat){.kind = FU_PAT_SCALAR, .scalar = (value), .label = (lbl)})
#define SCALAR_ANY(slot, lbl) \
    (&(const fu_pat){.kind = FU_PAT_SCALAR, .scalar = NAN, .capture = (slot), .label = (lbl)})
#define CAP(slot, p) (&(const fu_pat){.kind = FU_PAT_CAPTURE, .capture = (slot), .n_in = 1, .in = {p}})
#define WHERE(fn, p) (&(const fu_pat){.kind = FU_PAT_WHERE, .where = (fn), .n_in = 1, .in = {p}})
#define QUIET(p) (&(const fu_pat){.kind = FU_PAT_QUIET, .n_in = 1, .in = {p}})
#define EITHER(lbl, ...) \
    (&(const fu_pat){.kind = FU_PAT_EITHER, .label = (lbl), .n_in = FU_PAT_NARGS(__VA_ARGS__), .in = {__VA_ARGS__}})

/* The result of a match. Captures are values (v) and their producers (node,
 * -1 for a leaf). nodes lists every matched node once, anchor first. */
typedef struct fu_match {
    int v[FU_PAT_CAPTURES], node[FU_PAT_CAPTURES];
    int *nodes;
    char *shared;             /* per nodes[i]: may keep outside readers */
    int n_nodes, cap_nodes;
    int anchor, variant;      /* variant: index of the rule's pattern that matched */
    int near, quiet;          /* a NEAR node was found / failures are silent */
    char why[256];            /* the first near-miss failure */
    /* What a rule's check found, for its rewrite (a struct of the rule's own). */
    _Alignas(16) unsigned char findings[512];
} fu_match;

/* ---- rules ------------------------------------------------------------------ */

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
    int *uses;            /* readers per value (graph outputs count), kept current */
    int cap_uses;
    fu_fusion_log *log;   /* may be NULL */
    const char *rule;     /* the rule being applied */
    int *touched;         /* nodes a rewrite added or changed: re-inferred */
    int n_touched, cap_touched;
    struct fu_readers *readers;   /* readers per value (fu_fuse_readers), kept by the rewrite helpers */
} fu_fuse_ctx;

typedef struct fu_fusion_rule {
    const char *name;
    /* Tried in order at the anchor, NULL-terminated; the first that matches
     * and passes check is rewritten. Each root is a NODE (or an EITHER or
     * QUIET of them): its ops are the rule's anchor ops. */
    const fu_pat *const *patterns;
    /* What the pattern cannot say (shapes, dtypes, attributes). Returns 1
     * to rewrite, 0 with the reason in why (empty: not worth logging). */
    int (*check)(fu_fuse_ctx *c, fu_match *m, char *why, size_t n);
    /* Rewrites the graph from the captures; returns 0, or -1 on an error.
     * Logs what it did with fu_fuse_accept. */
    int (*rewrite)(fu_fuse_ctx *c, fu_match *m, fu_err *err);
} fu_fusion_rule;

/* Matches p at node `anchor` (output 0). 1: m holds the captures; 0: no
 * match, m->why a near miss (or empty). */
int fu_pat_match(const fu_graph *g, const fu_pat *p, int anchor, fu_match *m);
/* Every matched node but the anchor and SHARED ones is read only inside the
 * match and is no graph output; else 0 with the reason in m->why. */
int fu_match_private(const fu_fuse_ctx *c, fu_match *m);
void fu_match_free(fu_match *m);

/* ---- helpers for checks ----------------------------------------------------- */

/* Constant scalar (numel 1, any rank) of any dtype, through float Casts. */
int fu_m_const_scalar(const fu_graph *g, int v, double *out);
/* Skips Cast nodes between float types. */
int fu_m_skip_casts(const fu_graph *g, int v);
/* Node producing v if its op is `op` (-1: any op), else -1. */
int fu_m_producer(const fu_graph *g, int v, int op);
/* The reduce axes of ReduceX node `node` (attribute or input), normalised;
 * *all = 1 when it reduces every axis. 0 ok, -1 when not constant. */
int fu_m_reduce_axes(const fu_graph *g, int node, int64_t *axes, int max, int *count, int *all);
/* An int64/int32 list held by a constant, or known from shape inference. */
int fu_m_ints(const fu_graph *g, int v, int64_t *out, int max, int *count);
/* The Transpose node producing v when its perm is want[rank], else -1. */
int fu_m_transpose(const fu_graph *g, int v, const int64_t *want, int rank);
/* The live nodes reading value v, each once, in node order; *n is their
 * count. From the fuse pass's reader index (no scan of the graph); valid
 * until the next rewrite. */
const int *fu_fuse_readers(const fu_fuse_ctx *c, int v, int *n);
/* WHERE test: v = Transpose(W) swapping the axes of a 2-D W (passes/fuse_matmul_bias.c). */
int fu_m_swaps_2d(const fu_graph *g, const fu_match *m, int v, char *why, size_t n);
/* Sanitised value name, for messages (a ring of 4 buffers). */
const char *fu_m_name(const fu_graph *g, int v);

/* ---- rewrite helpers -------------------------------------------------------- */

/* A node `op` with these inputs takes over the anchor's output 0; the
 * anchor dies, the other matched nodes die when nothing reads them any
 * more. Returns the new node or -1. */
int fu_fuse_replace(fu_fuse_ctx *c, const fu_match *m, int op, const int *inputs, int n_inputs, fu_err *err);
/* Same for any node: the new node takes over output 0 of `node`. */
int fu_fuse_replace_node(fu_fuse_ctx *c, int node, int op, const int *inputs, int n_inputs, fu_err *err);
/* Points input k of node n at value v (keeps use counts). */
void fu_fuse_set_input(fu_fuse_ctx *c, int n, int k, int v);
/* Marks node n as changed by a rewrite: it is re-inferred. -1 when out of memory. */
int fu_fuse_touch(fu_fuse_ctx *c, int n);
void fu_fuse_accept(fu_fuse_ctx *c, int anchor, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Appends an event at node `node` (NULL log: nothing). A near miss already
 * logged for the same rule and node is not repeated. */
void fu_fusion_log_add(fu_fusion_log *log, const char *rule, const fu_graph *g, int node, int fused, const char *fmt,
                       ...) __attribute__((format(printf, 6, 7)));
void fu_fusion_log_free(fu_fusion_log *log);
/* Number of fused events of a rule (NULL: all). */
int fu_fusion_log_count(const fu_fusion_log *log, const char *rule, int fused);

#endif
