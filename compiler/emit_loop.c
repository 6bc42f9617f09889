/* Elementwise loop groups: the members of a group (chains of elementwise
 * ops the plan fused, passes/plan.c) become one loop over the root's
 * output with broadcasting, each member one temporary in its body; large
 * loops become range functions shared across cores. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "emit.h"
#include "../ir/shape.h"
#include "../ops/ops.h"
#include "../runtime/fusec_kernels.h"

/* Type scalars are computed in: halves widen to float, bool to int. */
static const char *compute_type(fu_dtype t) {
    switch (t) {
    case FU_F32:
    case FU_F16:
    case FU_BF16: return "float";
    case FU_I64: return "int64_t";
    case FU_I32: return "int32_t";
    default: return "int";
    }
}

typedef struct {
    int value;
    char name[FU_LITERAL_MAX];  /* pointer variable, or literal for inline scalars */
    int literal;
    int bcast[FU_MAX_RANK];   /* per collapsed loop dim: 1 = stride 0 */
    int full;                 /* same shape as the output */
} operand;

static int find_operand(const operand *ops, int n, int v) {
    for (int i = 0; i < n; i++)
        if (ops[i].value == v) return i;
    return -1;
}

/* Inline scalar constants become literals so the loop body folds them.
 * One whose literal would not fit stays a pointer operand (never cut). */
static int scalar_literal(const fu_value *v, char *buf, size_t n) {
    if (v->kind != FU_VAL_CONST || v->external || !v->data) return 0;
    int64_t numel;
    if (fu_value_numel_const(v, &numel) || numel != 1) return 0;
    char lit[FU_LITERAL_MAX];
    int len;
    switch (v->dtype) {
    case FU_F32:
    case FU_F16:
    case FU_BF16: len = fu_float_literal(fu_const_get_f(v, 0), lit, sizeof lit); break;
    case FU_I64: len = fu_int_literal(fu_const_get_i(v, 0), lit, sizeof lit); break;
    case FU_I32: len = snprintf(lit, sizeof lit, "((int32_t)%lld)", (long long)fu_const_get_i(v, 0)); break;
    case FU_BOOL: len = snprintf(lit, sizeof lit, "%d", fu_const_get_i(v, 0) ? 1 : 0); break;
    default: return 0;
    }
    if (len < 0 || (size_t)len >= sizeof lit || (size_t)len >= n) return 0;
    memcpy(buf, lit, (size_t)len + 1);
    return 1;
}

static void load_expr(const operand *op, fu_dtype t, const char *index, char *buf, size_t n) {
    if (op->literal) {
        snprintf(buf, n, "%s", op->name);
        return;
    }
    switch (t) {
    case FU_F16: snprintf(buf, n, "fu_rt_f16_to_f32(%s[%s])", op->name, index); break;
    case FU_BF16: snprintf(buf, n, "fu_rt_bf16_to_f32(%s[%s])", op->name, index); break;
    case FU_BOOL: snprintf(buf, n, "(int)%s[%s]", op->name, index); break;
    default: snprintf(buf, n, "%s[%s]", op->name, index); break;
    }
}

static void store_expr(fu_dtype t, const char *value, char *buf, size_t n) {
    switch (t) {
    case FU_F16: snprintf(buf, n, "fu_rt_f32_to_f16(%s)", value); break;
    case FU_BF16: snprintf(buf, n, "fu_rt_f32_to_bf16(%s)", value); break;
    case FU_BOOL: snprintf(buf, n, "(uint8_t)((%s) != 0)", value); break;
    default: snprintf(buf, n, "%s", value); break;
    }
}

#define EXPR_MAX 4096

/* A lone Cast between float32 and a half type becomes one runtime call:
 * in a bare graph these convert whole weights every forward, and the
 * gcc-built kernel keeps the JIT (tcc) within reach of AOT. */
static int emit_runtime_convert(fu_emit *e, const fu_node *n) {
    const fu_graph *g = e->g;
    const fu_value *in = &g->values[n->in[0]], *out = &g->values[n->out[0]];
    const char *kind = NULL;
    if (in->dtype == FU_BF16 && out->dtype == FU_F32) kind = "FU_RT_CONVERT_BF16_TO_F32";
    if (in->dtype == FU_F16 && out->dtype == FU_F32) kind = "FU_RT_CONVERT_F16_TO_F32";
    if (in->dtype == FU_F32 && out->dtype == FU_BF16) kind = "FU_RT_CONVERT_F32_TO_BF16";
    if (in->dtype == FU_F32 && out->dtype == FU_F16) kind = "FU_RT_CONVERT_F32_TO_F16";
    if (!kind || !fu_value_same_shape(in, out)) return 0;
    fu_emitf(e, "fu_rt_convert(%s, %s, %s, %s);", fu_emit_vptr(e, n->out[0]), fu_emit_vptr(e, n->in[0]),
             fu_emit_numel(e, n->out[0]), kind);
    return 1;
}

/* What a loop function needs of fusec_model_run_profiled's locals. */
const char fu_loop_context_type[] =
    "/* fusec_model_run_profiled's locals, for the loops it shares across cores */\n"
    "typedef struct {\n"
    "    const int64_t *sym;\n"
    "    const void *const *in;\n"
    "    const void *const *w;\n"
    "    unsigned char *A;\n"
    "} fu_loop_context;\n\n";

/* The start of a loop function: the same names as in fusec_model_run. */
static void emit_loop_context(fu_emit *e) {
    fu_emitf(e, "const fu_loop_context *c = (const fu_loop_context *)ctx;");
    fu_emitf(e, "const int64_t *sym = c->sym;");
    fu_emitf(e, "const void *const *in = c->in;");
    fu_emitf(e, "const void *const *w = c->w;");
    fu_emitf(e, "unsigned char *A = c->A;");
    for (int s = 0; s < e->g->n_syms; s++) fu_emitf(e, "const int64_t S%d = sym[%d]; (void)S%d;", s, s, s);
    fu_emitf(e, "(void)sym; (void)in; (void)w; (void)A;");
}


/* A loop group being emitted: its operands, its collapsed loop dims, and
 * how the loop runs. */
typedef struct {
    const fu_graph *g;
    const int *members;
    int n_members;
    const fu_node *root;      /* the last member: its output is stored */
    const fu_value *out;
    operand ops[FU_LOOP_MAX_OPERANDS];          /* the values read from outside the group */
    int n_ops;
    fu_dim dims[FU_MAX_RANK]; /* collapsed loop dims */
    int nd;
    int flat;                 /* every operand is the full shape or a scalar: one index */
    int parallel;             /* a range function run by fu_rt_parallel_for */
    char index[FU_LOOP_MAX_OPERANDS][256];      /* each operand's element index expression */
} loop_group;

/* Position of node in the group's members (in node order), or -1: a
 * binary search, so a long group costs no scan per member. */
static int member_pos(const loop_group *L, int node) {
    int lo = 0, hi = L->n_members - 1;
    while (node >= 0 && lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (L->members[mid] == node) return mid;
        if (L->members[mid] < node) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

/* External operands, with per-dim broadcast flags against the output. */
static int collect_operands(loop_group *L, fu_err *err) {
    const fu_graph *g = L->g;
    for (int m = 0; m < L->n_members; m++) {
        const fu_node *n = &g->nodes[L->members[m]];
        for (int k = 0; k < n->def->elementwise_operands && k < n->n_in; k++) {
            int v = n->in[k];
            if (v < 0) continue;
            int j = member_pos(L, g->values[v].producer);
            if ((j >= 0 && j < m) || find_operand(L->ops, L->n_ops, v) >= 0) continue;
            if (L->n_ops == FU_LOOP_MAX_OPERANDS) return fu_node_fail(err, g, L->root, "too many operands in one fused loop");
            operand *op = &L->ops[L->n_ops++];
            memset(op, 0, sizeof *op);
            op->value = v;
            op->literal = scalar_literal(&g->values[v], op->name, sizeof op->name);
            if (!op->literal) snprintf(op->name, sizeof op->name, "p%d", L->n_ops - 1);
        }
    }
    return 0;
}

/* Collapses the output dims: drops static 1s, merges neighbours that every
 * operand treats alike (both broadcast or both not); then decides flat. */
static void collapse_dims(loop_group *L) {
    const fu_value *out = L->out;
    int r = out->rank;
    int raw_bcast[FU_LOOP_MAX_OPERANDS][FU_MAX_RANK];
    for (int i = 0; i < L->n_ops; i++) {
        const fu_value *v = &L->g->values[L->ops[i].value];
        L->ops[i].full = v->rank == r;
        for (int k = 0; k < r; k++) {
            int vk = k - (r - v->rank);
            int b = vk < 0 || (fu_dim_is_one(v->shape[vk]) && !fu_dim_is_one(out->shape[k]));
            raw_bcast[i][k] = b;
            if (b) L->ops[i].full = 0;
        }
    }
    L->nd = 0;
    for (int k = 0; k < r; k++) {
        if (fu_dim_is_one(out->shape[k])) continue;
        int merge = L->nd > 0;
        for (int i = 0; i < L->n_ops && merge; i++)
            if (!L->ops[i].literal && L->ops[i].bcast[L->nd - 1] != raw_bcast[i][k]) merge = 0;
        if (merge) {
            L->dims[L->nd - 1] = fu_dim_mul(L->dims[L->nd - 1], out->shape[k]);
        } else {
            for (int i = 0; i < L->n_ops; i++) L->ops[i].bcast[L->nd] = raw_bcast[i][k];
            L->dims[L->nd++] = out->shape[k];
        }
    }
    L->flat = 1;
    for (int i = 0; i < L->n_ops; i++) {
        if (L->ops[i].literal) continue;
        int all = 1, none = 1;
        for (int d = 0; d < L->nd; d++) all &= L->ops[i].bcast[d], none &= !L->ops[i].bcast[d];
        if (!all && !none) L->flat = 0;
    }
}

/* A loop over many elements becomes a static range function that
 * fu_rt_parallel_for shares across cores, over the elements (flat) or over
 * the runs of the last collapsed dim; one whose size is a small constant
 * stays inline. Each element is computed by one call, so the result does
 * not depend on the thread count. Opens the function (or the inline block)
 * and moves e->out to it; *run_body keeps the run function's text. */
static void open_loop(fu_emit *e, loop_group *L, fu_sb *run_body) {
    fu_dim items = L->flat ? fu_value_numel_dim(L->out) : fu_dim_const(1);
    fu_dim per_item = L->flat ? fu_dim_const(1) : L->dims[L->nd - 1];
    for (int d = 0; !L->flat && d < L->nd - 1; d++) items = fu_dim_mul(items, L->dims[d]);
    fu_dim total = fu_dim_mul(items, per_item);
    L->parallel = !(fu_dim_is_const(total) && total.coef < FU_RT_LOOP_MIN_PARALLEL_ELEMS_TCC &&
                    total.coef < FU_RT_LOOP_MIN_PARALLEL_ELEMS_GCC);
    int node = L->members[L->n_members - 1];
    if (!L->parallel) {
        e->indent++;
        fu_emitf(e, "{");
        e->indent++;
        return;
    }
    char items_text[320], per_item_text[320];
    snprintf(items_text, sizeof items_text, "%s", fu_emit_dim(e, items));
    snprintf(per_item_text, sizeof per_item_text, "%s", fu_emit_dim(e, per_item));
    fu_emitf(e, "fu_rt_parallel_for(%s, fu_rt_grain(%s, %s, FU_RT_LOOP_MIN_PARALLEL_ELEMS), fu_loop%d, &loop_ctx);",
             items_text, items_text, per_item_text, node);
    /* the function goes to e->funcs, ahead of fusec_model_run_profiled */
    *run_body = e->out;
    e->out = e->funcs;
    e->indent = 0;
    char comment[96];
    fu_sanitize(L->root->name, comment, sizeof comment);
    fu_emitf(e, "/* node %d: loop of %d elementwise op%s ending in %s %s */", node, L->n_members,
             L->n_members > 1 ? "s" : "", L->root->op, comment);
    fu_emitf(e, "static void fu_loop%d(void *ctx, int64_t begin, int64_t end)", node);
    fu_emitf(e, "{");
    e->indent++;
    emit_loop_context(e);
}

/* Offset of the element at i0..i(nd-1) in a tensor whose dims are the loop
 * dims without the broadcast ones (bcast NULL: none): sum over kept dims of
 * i_d times the product of the later kept dims. */
static void offset_expr(int nd, const int *bcast, char *buf, size_t n) {
    size_t len = 0;
    buf[0] = 0;
    for (int d = 0; d < nd; d++) {
        if (bcast && bcast[d]) continue;
        len += (size_t)snprintf(buf + len, n - len, "%si%d", len ? " + " : "", d);
        for (int d2 = d + 1; d2 < nd; d2++)
            if (!bcast || !bcast[d2]) len += (size_t)snprintf(buf + len, n - len, "*n%d", d2);
    }
    if (!len) snprintf(buf, n, "0");
}

/* The operand pointers, the loop headers, and each operand's index. */
static void open_loop_nest(fu_emit *e, loop_group *L) {
    for (int i = 0; i < L->n_ops; i++) {
        if (L->ops[i].literal) continue;
        const fu_value *v = &L->g->values[L->ops[i].value];
        fu_emitf(e, "const %s *restrict %s = %s;", fu_c_type(v->dtype), L->ops[i].name, fu_emit_ptr(e, L->ops[i].value));
    }
    fu_emitf(e, "%s *restrict po = %s;", fu_c_type(L->out->dtype), fu_emit_ptr(e, L->root->out[0]));
    int nd = L->nd;
    if (L->flat) {
        if (L->parallel) {
            fu_emitf(e, "for (int64_t i = begin; i < end; i++) {");
        } else {
            fu_emitf(e, "const int64_t n = %s;", fu_emit_numel(e, L->root->out[0]));
            fu_emitf(e, "for (int64_t i = 0; i < n; i++) {");
        }
        for (int i = 0; i < L->n_ops; i++) {
            int all = 1;
            for (int d = 0; d < nd; d++) all &= L->ops[i].bcast[d];
            snprintf(L->index[i], sizeof L->index[i], "%s", all ? "0" : "i");
        }
        return;
    }
    for (int d = 0; d < nd; d++) fu_emitf(e, "const int64_t n%d = %s;", d, fu_emit_dim(e, L->dims[d]));
    if (L->parallel) {
        /* item = one run of the last dim; i0 .. i(nd-2) start at `begin` */
        fu_emitf(e, "int64_t rest = begin;");
        for (int d = nd - 2; d > 0; d--) fu_emitf(e, "int64_t i%d = rest %% n%d; rest /= n%d;", d, d, d);
        fu_emitf(e, "int64_t i0 = rest;");
        fu_emitf(e, "for (int64_t item = begin; item < end; item++) {");
        e->indent++;
        fu_emitf(e, "for (int64_t i%d = 0; i%d < n%d; i%d++) {", nd - 1, nd - 1, nd - 1, nd - 1);
    } else {
        for (int d = 0; d < nd; d++) fu_emitf(e, "for (int64_t i%d = 0; i%d < n%d; i%d++)", d, d, d, d);
        fu_emitf(e, "{");
    }
    for (int i = 0; i < L->n_ops; i++) offset_expr(nd, L->ops[i].bcast, L->index[i], sizeof L->index[i]);
}

/* The value of member m as an expression in expr (EXPR_MAX bytes). A
 * half-precision result is rounded even when it never reaches memory, so
 * fused and unfused code agree bit for bit. */
static int member_expr(const loop_group *L, int m, char (*vars)[16], char *expr, fu_err *err) {
    const fu_graph *g = L->g;
    const fu_node *n = &g->nodes[L->members[m]];
    const char *args[16];
    int na = n->def->elementwise_operands < n->n_in ? n->def->elementwise_operands : n->n_in;
    if (na > 16) return fu_node_fail(err, g, n, "too many elementwise operands");
    for (int k = 0; k < na; k++) {
        int v = n->in[k], slot = -1, j = v >= 0 ? member_pos(L, g->values[v].producer) : -1;
        if (j >= 0 && j < m) slot = L->n_ops + j;
        if (slot < 0) slot = find_operand(L->ops, L->n_ops, v);
        args[k] = slot >= 0 ? vars[slot] : "0";
    }
    if (n->def->expr(g, n, args, expr, EXPR_MAX, err)) return -1;
    fu_dtype t = g->values[n->out[0]].dtype;
    if ((t == FU_F16 || t == FU_BF16) && m + 1 < L->n_members) {
        const char *w = t == FU_F16 ? "f16" : "bf16";
        char *rounded = malloc(EXPR_MAX);
        if (!rounded) return fu_fail(err, "out of memory emitting code");
        snprintf(rounded, EXPR_MAX, "fu_rt_%s_to_f32(fu_rt_f32_to_%s(%s))", w, w, expr);
        memcpy(expr, rounded, EXPR_MAX);
        free(rounded);
    }
    return 0;
}

/* The loop body: each external operand loaded once, one temporary per
 * member, the root's value stored. */
static int emit_loop_body(fu_emit *e, const loop_group *L, fu_err *err) {
    const fu_graph *g = L->g;
    if (!L->flat) {
        char oi[256];
        offset_expr(L->nd, NULL, oi, sizeof oi);
        fu_emitf(e, "const int64_t i = %s;", oi);
    }
    char *expr = malloc(EXPR_MAX);
    char (*vars)[16] = calloc((size_t)(L->n_ops + L->n_members), 16);
    if (!expr || !vars) {
        free(expr), free(vars);
        return fu_fail(err, "out of memory emitting code");
    }
    for (int i = 0; i < L->n_ops; i++) {
        const fu_value *v = &g->values[L->ops[i].value];
        load_expr(&L->ops[i], v->dtype, L->index[i], expr, EXPR_MAX);
        snprintf(vars[i], 16, "x%d", i);
        fu_emitf(e, "const %s %s = %s;", compute_type(v->dtype), vars[i], expr);
    }
    int rc = 0;
    for (int m = 0; m < L->n_members && rc == 0; m++) {
        const fu_node *n = &g->nodes[L->members[m]];
        rc = member_expr(L, m, vars, expr, err);
        if (rc) break;
        snprintf(vars[L->n_ops + m], 16, "y%d", m);
        char comment[96];
        fu_sanitize(n->name, comment, sizeof comment);
        fu_emitf(e, "const %s %s = %s; /* %s %s */", compute_type(g->values[n->out[0]].dtype), vars[L->n_ops + m],
                 expr, n->op, comment);
    }
    if (rc == 0) {
        store_expr(L->out->dtype, vars[L->n_ops + L->n_members - 1], expr, EXPR_MAX);
        fu_emitf(e, "po[i] = %s;", expr);
    }
    free(expr), free(vars);
    return rc;
}

/* Closes the loops and the block (or the range function, giving e->out back
 * to the run function). */
static void close_loop(fu_emit *e, const loop_group *L, fu_sb *run_body, int saved_indent) {
    e->indent--;
    fu_emitf(e, "}");
    if (L->parallel && !L->flat) {
        /* next run: advance i(nd-2) .. i0 like an odometer */
        for (int d = L->nd - 2; d > 0; d--) {
            fu_emitf(e, "if (++i%d < n%d) continue;", d, d);
            fu_emitf(e, "i%d = 0;", d);
        }
        fu_emitf(e, "i0++;");
        e->indent--;
        fu_emitf(e, "}");
    }
    e->indent--;
    fu_emitf(e, "}");
    if (L->parallel) {
        fu_sb_printf(&e->out, "\n");
        e->funcs = e->out;
        e->out = *run_body;
    }
    e->indent = saved_indent;
}

int fu_emit_loop_group(fu_emit *e, const int *members, int n_members, fu_err *err) {
    const fu_graph *g = e->g;
    if (n_members == 1 && g->nodes[members[0]].op_id == FU_OP_Cast && emit_runtime_convert(e, &g->nodes[members[0]]))
        return 0;
    loop_group *L = calloc(1, sizeof *L);
    if (!L) return fu_fail(err, "out of memory emitting code");
    L->g = g;
    L->members = members;
    L->n_members = n_members;
    L->root = &g->nodes[members[n_members - 1]];
    L->out = &g->values[L->root->out[0]];
    int rc = collect_operands(L, err);
    if (rc == 0) {
        collapse_dims(L);
        fu_sb run_body = {0};
        int saved_indent = e->indent;
        open_loop(e, L, &run_body);
        open_loop_nest(e, L);
        e->indent++;
        rc = emit_loop_body(e, L, err);
        close_loop(e, L, &run_body, saved_indent);
    }
    free(L);
    return rc;
}
