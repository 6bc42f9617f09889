/* The C emitter: one translation unit per planned graph.
 *
 * Layout of the generated file:
 *   the runtime kernels header (pasted, so the file stands alone),
 *   embedded constants (inline and folded initializers) as typed arrays,
 *   the metadata JSON as bytes (names only ever travel as data),
 *   fusec_model_run: symbols as locals, then one block per node or loop
 *   group in topological order, then the output pointers.
 *
 * Identifiers are generated (S0, K3, p0, t5); model names appear only in
 * sanitised comments. */
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "emit.h"
#include "../ops/ops.h"
#include "../ir/shape.h"
#include "../ir/weights.h"
#include "../runtime/fusec_kernels.h"

extern const char fu_kernels_header[];

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

/* ---- embedded constants ----------------------------------------------- */

static void emit_constant(fu_emit *e, const fu_value *v) {
    int64_t count = (int64_t)(v->nbytes / (fu_dtype_size(v->dtype) ? fu_dtype_size(v->dtype) : 1));
    char comment[128];
    fu_sanitize(v->name, comment, sizeof comment);
    /* tcc rejects inf/nan in static initializers (1.0f/0.0f is not constant
     * to it), so float arrays holding them are written as bit patterns. */
    int as_bits = 0;
    for (int64_t i = 0; v->dtype == FU_F32 && i < count; i++) {
        float f;
        memcpy(&f, (const char *)v->data + 4 * i, 4);
        if (!isfinite(f)) as_bits = 1;
    }
    if (as_bits)
        fu_sb_printf(&e->out, "/* constant %s */\nstatic const union { uint32_t u; float f; } K%d[%lld] = {",
                     comment, v->index, (long long)count);
    else
        fu_sb_printf(&e->out, "/* constant %s */\nstatic const %s K%d[%lld] = {", comment,
                     fu_c_type(v->dtype), v->index, (long long)(count > 0 ? count : 1));
    if (count == 0) fu_sb_printf(&e->out, "0");
    for (int64_t i = 0; i < count; i++) {
        if (i % 12 == 0) fu_sb_printf(&e->out, "\n    ");
        char lit[64];
        switch (v->dtype) {
        case FU_F32: {
            float f;
            uint32_t bits;
            memcpy(&f, (const char *)v->data + 4 * i, 4);
            memcpy(&bits, &f, 4);
            if (as_bits) snprintf(lit, sizeof lit, "{0x%08xu}", bits);
            else fu_float_literal(f, lit, sizeof lit);
            break;
        }
        case FU_F16:
        case FU_BF16: {
            uint16_t h;
            memcpy(&h, (const char *)v->data + 2 * i, 2);
            snprintf(lit, sizeof lit, "0x%04x", h);
            break;
        }
        case FU_I64: {
            int64_t x;
            memcpy(&x, (const char *)v->data + 8 * i, 8);
            if (x == INT64_MIN) snprintf(lit, sizeof lit, "(-9223372036854775807LL - 1)");
            else snprintf(lit, sizeof lit, "%lldLL", (long long)x);
            break;
        }
        case FU_I32: {
            int32_t x;
            memcpy(&x, (const char *)v->data + 4 * i, 4);
            snprintf(lit, sizeof lit, "%lld", (long long)x);
            break;
        }
        default: snprintf(lit, sizeof lit, "%d", ((const uint8_t *)v->data)[i] ? 1 : 0); break;
        }
        fu_sb_printf(&e->out, "%s, ", lit);
    }
    fu_sb_printf(&e->out, "\n};\n");
}

/* ---- blocks: what fusec_model_run executes -------------------------------- */

/* At node i the run function executes nothing (a dead node, a view, a loop
 * group member before the group's last node), the node's own code, or its
 * loop group's loop (emitted at the last member). Each executed block is one
 * slot of the per-node profile. */
typedef enum { BLOCK_NONE, BLOCK_NODE, BLOCK_LOOP } block_kind;

static block_kind block_at(const fu_graph *g, int i) {
    const fu_node *n = &g->nodes[i];
    if (n->dead) return BLOCK_NONE;
    if (n->loop_group >= 0) {
        for (int j = i + 1; j < g->n_nodes; j++)
            if (g->nodes[j].loop_group == n->loop_group) return BLOCK_NONE;
        return BLOCK_LOOP;
    }
    return n->def && n->def->is_view ? BLOCK_NONE : BLOCK_NODE;
}

/* Op kind of a loop group ending at node i, for the profile: "Loop:Add",
 * "Loop:Sub/Max", or "Loop:N ops" when the names do not fit (characters
 * that fu_sanitize keeps, so reports print it as is). */
static void loop_kind(const fu_graph *g, int i, char *buf, size_t n) {
    int count = 0;
    size_t len = (size_t)snprintf(buf, n, "Loop:");
    for (int j = 0; j <= i; j++) {
        if (g->nodes[j].loop_group != g->nodes[i].loop_group) continue;
        if (len < n) len += (size_t)snprintf(buf + len, n - len, "%s%s", count ? "/" : "", g->nodes[j].op);
        count++;
    }
    if (len + 1 > n) snprintf(buf, n, "Loop:%d ops", count);
}

/* ---- metadata ------------------------------------------------------------ */

static json_object *dims_json(const fu_graph *g, const fu_value *v) {
    json_object *shape = json_object_new_array();
    for (int k = 0; k < v->rank; k++) {
        json_object *d = json_object_new_array();
        json_object_array_add(d, json_object_new_int64(v->shape[k].coef));
        for (int s = 0; s < g->n_syms; s++) json_object_array_add(d, json_object_new_int(v->shape[k].pow[s]));
        json_object_array_add(shape, d);
    }
    return shape;
}

static json_object *tensor_json(const fu_graph *g, const fu_value *v) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(v->name));
    json_object_object_add(o, "dtype", json_object_new_string(fu_dtype_name(v->dtype)));
    json_object_object_add(o, "shape", dims_json(g, v));
    return o;
}

static char *build_meta(const fu_graph *g, const char *profile) {
    json_object *m = json_object_new_object();
    json_object_object_add(m, "fusec_meta", json_object_new_int(1));
    json_object_object_add(m, "name", json_object_new_string(g->name ? g->name : "model"));
    json_object_object_add(m, "profile", json_object_new_string(profile));
    json_object_object_add(m, "precision", json_object_new_string(g->precision[0] ? g->precision : "f32"));
    json_object *syms = json_object_new_array();
    for (int s = 0; s < g->n_syms; s++) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "name", json_object_new_string(g->sym_names[s]));
        json_object_object_add(o, "max", json_object_new_int64(g->sym_max[s]));
        json_object_array_add(syms, o);
    }
    json_object_object_add(m, "symbols", syms);
    json_object *ins = json_object_new_array(), *outs = json_object_new_array();
    for (int i = 0; i < g->n_inputs; i++) json_object_array_add(ins, tensor_json(g, &g->values[g->inputs[i]]));
    for (int i = 0; i < g->n_outputs; i++) json_object_array_add(outs, tensor_json(g, &g->values[g->outputs[i]]));
    json_object_object_add(m, "inputs", ins);
    json_object_object_add(m, "outputs", outs);
    /* Weights in slot order (the plan numbers them in value order). */
    json_object *ws = json_object_new_array();
    for (int v = 0; v < g->n_values; v++)
        if (g->values[v].storage == FU_STORE_WEIGHT) json_object_array_add(ws, tensor_json(g, &g->values[v]));
    json_object_object_add(m, "weights", ws);
    /* Packed copies, in slot order after the weights (w[n_weights + i]). */
    json_object *packed = json_object_new_array();
    for (int i = 0; i < g->n_packed; i++) {
        const struct fu_packed_slot *p = &g->packed[i];
        const fu_value *w = &g->values[p->value];
        json_object *o = json_object_new_object();
        json_object_object_add(o, "weight", json_object_new_string(w->name));
        json_object_object_add(o, "layout", json_object_new_string(p->bf16 ? "bf16" : "f32"));
        json_object_object_add(o, "transposed", json_object_new_boolean(p->transposed));
        json_object_array_add(packed, o);
    }
    json_object_object_add(m, "packed", packed);
    json_object_object_add(m, "weights_file", g->weights_path ? json_object_new_string(g->weights_path) : NULL);
    json_object_object_add(m, "weights_identity",
                           json_object_new_string(g->weights ? fu_weights_identity(g->weights) : ""));
    json_object_object_add(m, "arena_bytes", json_object_new_int64(g->arena_bytes));
    /* The profiled blocks in slot order, named after the model's nodes. */
    json_object *slots = json_object_new_array();
    for (int i = 0; i < g->n_nodes; i++) {
        block_kind kind = block_at(g, i);
        if (kind == BLOCK_NONE) continue;
        char op[64];
        int ops = 1;
        if (kind == BLOCK_LOOP) {
            loop_kind(g, i, op, sizeof op);
            ops = 0;
            for (int j = 0; j <= i; j++) ops += g->nodes[j].loop_group == g->nodes[i].loop_group;
        } else {
            snprintf(op, sizeof op, "%s", g->nodes[i].op);
        }
        json_object *o = json_object_new_object();
        json_object_object_add(o, "node", json_object_new_int(i));
        json_object_object_add(o, "name", json_object_new_string(g->nodes[i].name ? g->nodes[i].name : ""));
        json_object_object_add(o, "op", json_object_new_string(op));
        json_object_object_add(o, "ops", json_object_new_int(ops));
        json_object_array_add(slots, o);
    }
    json_object_object_add(m, "profile", slots);
    char *text = strdup(json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN));
    json_object_put(m);
    return text;
}

/* ---- elementwise loop groups ----------------------------------------------- */

typedef struct {
    int value;
    char name[16];       /* pointer variable, or literal for inline scalars */
    int literal;
    int bcast[FU_MAX_RANK];   /* per collapsed loop dim: 1 = stride 0 */
    int full;                 /* same shape as the output */
} operand;

static int find_operand(const operand *ops, int n, int v) {
    for (int i = 0; i < n; i++)
        if (ops[i].value == v) return i;
    return -1;
}

/* Inline scalar constants become literals so the loop body folds them. */
static int scalar_literal(const fu_value *v, char *buf, size_t n) {
    if (v->kind != FU_VAL_CONST || v->external || !v->data) return 0;
    int64_t numel;
    if (fu_value_numel_const(v, &numel) || numel != 1) return 0;
    switch (v->dtype) {
    case FU_F32:
    case FU_F16:
    case FU_BF16: fu_float_literal(fu_const_get_f(v, 0), buf, n); return 1;
    case FU_I64: snprintf(buf, n, "((int64_t)%lldLL)", (long long)fu_const_get_i(v, 0)); return 1;
    case FU_I32: snprintf(buf, n, "((int32_t)%lld)", (long long)fu_const_get_i(v, 0)); return 1;
    case FU_BOOL: snprintf(buf, n, "%d", fu_const_get_i(v, 0) ? 1 : 0); return 1;
    default: return 0;
    }
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
    if (!kind || in->rank != out->rank) return 0;
    for (int k = 0; k < in->rank; k++)
        if (!fu_dim_eq(in->shape[k], out->shape[k])) return 0;
    fu_emitf(e, "fu_rt_convert(%s, %s, %s, %s);", fu_emit_vptr(e, n->out[0]), fu_emit_vptr(e, n->in[0]),
             fu_emit_numel(e, n->out[0]), kind);
    return 1;
}

/* What a loop function needs of fusec_model_run_profiled's locals. */
static const char loop_context_type[] =
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

static int emit_loop_group(fu_emit *e, const int *members, int n_members, fu_err *err) {
    const fu_graph *g = e->g;
    if (n_members == 1 && strcmp(g->nodes[members[0]].op, "Cast") == 0 && emit_runtime_convert(e, &g->nodes[members[0]]))
        return 0;
    const fu_node *root = &g->nodes[members[n_members - 1]];
    const fu_value *out = &g->values[root->out[0]];
    int r = out->rank;

    /* External operands, with per-dim broadcast flags against the output. */
    operand ops[64];
    int n_ops = 0;
    for (int m = 0; m < n_members; m++) {
        const fu_node *n = &g->nodes[members[m]];
        for (int k = 0; k < n->def->elementwise_operands && k < n->n_in; k++) {
            int v = n->in[k];
            if (v < 0) continue;
            int internal = 0;
            for (int j = 0; j < m; j++)
                if (g->values[v].producer == members[j]) internal = 1;
            if (internal || find_operand(ops, n_ops, v) >= 0) continue;
            if (n_ops == 64) return fu_node_fail(err, g, root, "too many operands in one fused loop");
            operand *op = &ops[n_ops++];
            memset(op, 0, sizeof *op);
            op->value = v;
            op->literal = scalar_literal(&g->values[v], op->name, sizeof op->name);
            if (!op->literal) snprintf(op->name, sizeof op->name, "p%d", n_ops - 1);
        }
    }

    /* Collapse the output dims: drop static 1s, merge neighbours that every
     * operand treats alike (both broadcast or both not). */
    fu_dim dims[FU_MAX_RANK];
    int nd = 0;
    int raw_bcast[64][FU_MAX_RANK];
    for (int i = 0; i < n_ops; i++) {
        const fu_value *v = &g->values[ops[i].value];
        ops[i].full = v->rank == r;
        for (int k = 0; k < r; k++) {
            int vk = k - (r - v->rank);
            int b = vk < 0 || (fu_dim_is_const(v->shape[vk]) && v->shape[vk].coef == 1 &&
                               !(fu_dim_is_const(out->shape[k]) && out->shape[k].coef == 1));
            raw_bcast[i][k] = b;
            if (b) ops[i].full = 0;
        }
    }
    for (int k = 0; k < r; k++) {
        if (fu_dim_is_const(out->shape[k]) && out->shape[k].coef == 1) continue;
        int merge = nd > 0;
        for (int i = 0; i < n_ops && merge; i++)
            if (!ops[i].literal && ops[i].bcast[nd - 1] != raw_bcast[i][k]) merge = 0;
        if (merge) {
            dims[nd - 1] = fu_dim_mul(dims[nd - 1], out->shape[k]);
        } else {
            for (int i = 0; i < n_ops; i++) ops[i].bcast[nd] = raw_bcast[i][k];
            dims[nd++] = out->shape[k];
        }
    }
    int flat = 1;  /* every operand is the full shape or a scalar */
    for (int i = 0; i < n_ops; i++) {
        if (ops[i].literal) continue;
        int all = 1, none = 1;
        for (int d = 0; d < nd; d++) all &= ops[i].bcast[d], none &= !ops[i].bcast[d];
        if (!all && !none) flat = 0;
    }

    /* A loop over many elements becomes a static range function that
     * fu_rt_parallel_for shares across cores, over the elements (flat) or
     * over the runs of the last collapsed dim; one whose size is a small
     * constant stays inline. Each element is computed by one call, so the
     * result does not depend on the thread count. */
    fu_dim items = flat ? fu_value_numel_dim(out) : fu_dim_const(1);
    fu_dim per_item = flat ? fu_dim_const(1) : dims[nd - 1];
    for (int d = 0; !flat && d < nd - 1; d++) items = fu_dim_mul(items, dims[d]);
    fu_dim total = fu_dim_mul(items, per_item);
    int parallel = !(fu_dim_is_const(total) && total.coef < FU_RT_LOOP_MIN_PARALLEL_ELEMS_TCC &&
                     total.coef < FU_RT_LOOP_MIN_PARALLEL_ELEMS_GCC);
    int node = members[n_members - 1];
    fu_sb run_body = {0};
    int saved_indent = e->indent;
    if (parallel) {
        char items_text[320], per_item_text[320];
        snprintf(items_text, sizeof items_text, "%s", fu_emit_dim(e, items));
        snprintf(per_item_text, sizeof per_item_text, "%s", fu_emit_dim(e, per_item));
        fu_emitf(e, "fu_rt_parallel_for(%s, fu_rt_grain(%s, %s, FU_RT_LOOP_MIN_PARALLEL_ELEMS), fu_loop%d, &loop_ctx);",
                 items_text, items_text, per_item_text, node);
        /* the function goes to e->funcs, ahead of fusec_model_run_profiled */
        run_body = e->out;
        e->out = e->funcs;
        e->indent = 0;
        char comment[96];
        fu_sanitize(root->name, comment, sizeof comment);
        fu_emitf(e, "/* node %d: loop of %d elementwise op%s ending in %s %s */", node, n_members,
                 n_members > 1 ? "s" : "", root->op, comment);
        fu_emitf(e, "static void fu_loop%d(void *ctx, int64_t begin, int64_t end)", node);
        fu_emitf(e, "{");
        e->indent++;
        emit_loop_context(e);
    } else {
        e->indent++;
        fu_emitf(e, "{");
        e->indent++;
    }
    for (int i = 0; i < n_ops; i++) {
        if (ops[i].literal) continue;
        const fu_value *v = &g->values[ops[i].value];
        fu_emitf(e, "const %s *restrict %s = %s;", fu_c_type(v->dtype), ops[i].name,
                 fu_emit_ptr(e, ops[i].value));
    }
    fu_emitf(e, "%s *restrict po = %s;", fu_c_type(out->dtype), fu_emit_ptr(e, root->out[0]));

    /* Index expression of each operand. */
    char index[64][256];
    if (flat) {
        if (parallel) {
            fu_emitf(e, "for (int64_t i = begin; i < end; i++) {");
        } else {
            fu_emitf(e, "const int64_t n = %s;", fu_emit_numel(e, root->out[0]));
            fu_emitf(e, "for (int64_t i = 0; i < n; i++) {");
        }
        for (int i = 0; i < n_ops; i++) {
            int all = 1;
            for (int d = 0; d < nd; d++) all &= ops[i].bcast[d];
            snprintf(index[i], sizeof index[i], "%s", all ? "0" : "i");
        }
    } else {
        for (int d = 0; d < nd; d++) fu_emitf(e, "const int64_t n%d = %s;", d, fu_emit_dim(e, dims[d]));
        if (parallel) {
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
        for (int i = 0; i < n_ops; i++) {
            /* offset = sum over kept dims of i_d * (product of later kept dims) */
            size_t len = 0;
            index[i][0] = 0;
            for (int d = 0; d < nd; d++) {
                if (ops[i].bcast[d]) continue;
                len += (size_t)snprintf(index[i] + len, sizeof index[i] - len, "%si%d", len ? " + " : "", d);
                for (int d2 = d + 1; d2 < nd; d2++)
                    if (!ops[i].bcast[d2]) len += (size_t)snprintf(index[i] + len, sizeof index[i] - len, "*n%d", d2);
            }
            if (!len) snprintf(index[i], sizeof index[i], "0");
        }
    }
    e->indent++;
    if (!flat) {
        char oi[256];
        size_t len = 0;
        oi[0] = 0;
        for (int d = 0; d < nd; d++) {
            len += (size_t)snprintf(oi + len, sizeof oi - len, "%si%d", len ? " + " : "", d);
            for (int d2 = d + 1; d2 < nd; d2++) len += (size_t)snprintf(oi + len, sizeof oi - len, "*n%d", d2);
        }
        fu_emitf(e, "const int64_t i = %s;", len ? oi : "0");
    }
    /* Load each external operand once, then one temporary per member. */
    char *arg_text = malloc(EXPR_MAX * 4), *expr = malloc(EXPR_MAX);
    char (*vars)[16] = calloc((size_t)(n_ops + n_members), 16);
    if (!arg_text || !expr || !vars) {
        free(arg_text), free(expr), free(vars);
        if (parallel) {
            e->funcs = e->out;
            e->out = run_body;
        }
        return fu_fail(err, "out of memory emitting code");
    }
    for (int i = 0; i < n_ops; i++) {
        const fu_value *v = &g->values[ops[i].value];
        load_expr(&ops[i], v->dtype, index[i], expr, EXPR_MAX);
        snprintf(vars[i], 16, "x%d", i);
        fu_emitf(e, "const %s %s = %s;", compute_type(v->dtype), vars[i], expr);
    }
    int rc = 0;
    for (int m = 0; m < n_members && rc == 0; m++) {
        const fu_node *n = &g->nodes[members[m]];
        const char *args[16];
        int na = n->def->elementwise_operands < n->n_in ? n->def->elementwise_operands : n->n_in;
        if (na > 16) {
            rc = fu_node_fail(err, g, n, "too many elementwise operands");
            break;
        }
        for (int k = 0; k < na; k++) {
            int v = n->in[k], slot = -1;
            for (int j = 0; j < m; j++)
                if (v >= 0 && g->values[v].producer == members[j]) slot = n_ops + j;
            if (slot < 0) slot = find_operand(ops, n_ops, v);
            args[k] = slot >= 0 ? vars[slot] : "0";
        }
        rc = n->def->expr(g, n, args, expr, EXPR_MAX, err);
        if (rc) break;
        /* A half-precision result is rounded even when it never reaches
         * memory, so fused and unfused code agree bit for bit. */
        fu_dtype t = g->values[n->out[0]].dtype;
        if ((t == FU_F16 || t == FU_BF16) && m + 1 < n_members) {
            const char *w = t == FU_F16 ? "f16" : "bf16";
            char *rounded = malloc(EXPR_MAX);
            if (!rounded) {
                rc = fu_fail(err, "out of memory emitting code");
                break;
            }
            snprintf(rounded, EXPR_MAX, "fu_rt_%s_to_f32(fu_rt_f32_to_%s(%s))", w, w, expr);
            memcpy(expr, rounded, EXPR_MAX);
            free(rounded);
        }
        snprintf(vars[n_ops + m], 16, "y%d", m);
        char comment[96];
        fu_sanitize(n->name, comment, sizeof comment);
        fu_emitf(e, "const %s %s = %s; /* %s %s */", compute_type(g->values[n->out[0]].dtype), vars[n_ops + m],
                 expr, n->op, comment);
    }
    if (rc == 0) {
        store_expr(out->dtype, vars[n_ops + n_members - 1], expr, EXPR_MAX);
        fu_emitf(e, "po[i] = %s;", expr);
    }
    e->indent--;
    fu_emitf(e, "}");
    if (parallel && !flat) {
        /* next run: advance i(nd-2) .. i0 like an odometer */
        for (int d = nd - 2; d > 0; d--) {
            fu_emitf(e, "if (++i%d < n%d) continue;", d, d);
            fu_emitf(e, "i%d = 0;", d);
        }
        fu_emitf(e, "i0++;");
        e->indent--;
        fu_emitf(e, "}");
    }
    e->indent--;
    fu_emitf(e, "}");
    if (parallel) {
        fu_sb_printf(&e->out, "\n");
        e->funcs = e->out;
        e->out = run_body;
    }
    e->indent = saved_indent;
    free(arg_text), free(expr), free(vars);
    return rc;
}

/* ---- the translation unit ------------------------------------------------- */

static void emit_meta_bytes(fu_emit *e, const char *meta) {
    size_t len = strlen(meta);
    fu_sb_printf(&e->out, "const unsigned char fusec_model_meta[%zu] = {", len + 1);
    for (size_t i = 0; i <= len; i++)
        fu_sb_printf(&e->out, "%s0x%02x,", i % 20 == 0 ? "\n    " : "", (unsigned char)meta[i]);
    fu_sb_printf(&e->out, "\n};\nconst unsigned long fusec_model_meta_len = %zu;\n\n", len);
}

int fu_emit_graph(const fu_graph *g, fu_sb *out, fu_err *err) {
    fu_emit *e = calloc(1, sizeof *e);
    if (!e) return fu_fail(err, "out of memory emitting code");
    e->g = g;
    char name[128];
    fu_sanitize(g->name ? g->name : "model", name, sizeof name);
    fu_sb_printf(&e->out, "/* Generated by fusec for model %s. Do not edit. */\n\n", name);
    fu_sb_printf(&e->out, "%s\n", fu_kernels_header);

    for (int v = 0; v < g->n_values; v++)
        if (g->values[v].storage == FU_STORE_EMBEDDED) emit_constant(e, &g->values[v]);

    char *meta = build_meta(g, g->profile[0] ? g->profile : "bare");
    emit_meta_bytes(e, meta);
    free(meta);

    /* Loop functions (e->funcs) go between this point and the run function. */
    size_t run_start = e->out.len;
    /* noclone: gcc must not specialise the whole graph again for prof = NULL. */
    fu_sb_printf(&e->out,
                 "int fusec_model_run_profiled(const int64_t *sym, const void *const *in, const void *const *w,\n"
                 "                             void *arena, void **out, fu_rt_profile *prof)\n"
                 "    __attribute__((noinline, noclone));\n"
                 "int fusec_model_run_profiled(const int64_t *sym, const void *const *in, const void *const *w,\n"
                 "                             void *arena, void **out, fu_rt_profile *prof)\n{\n");
    e->indent = 1;
    fu_emitf(e, "unsigned char *A = (unsigned char *)arena;");
    for (int s = 0; s < g->n_syms; s++) {
        char sym[64];
        fu_sanitize(g->sym_names[s], sym, sizeof sym);
        fu_emitf(e, "const int64_t S%d = sym[%d]; /* %s */", s, s, sym);
    }
    fu_emitf(e, "const fu_loop_context loop_ctx = {sym, in, w, A};");
    fu_emitf(e, "(void)sym; (void)in; (void)w; (void)A; (void)prof; (void)loop_ctx;");

    /* Members of each loop group, in order; the group is emitted at its root. */
    int *members = malloc(sizeof(int) * (size_t)(g->n_nodes + 1));
    int rc = members ? 0 : fu_fail(err, "out of memory emitting code");
    int slot = 0;   /* profile slot of the next executed block */
    for (int i = 0; i < g->n_nodes && rc == 0; i++) {
        const fu_node *n = &g->nodes[i];
        if (n->dead) continue;
        char comment[96];
        fu_sanitize(n->name, comment, sizeof comment);
        if (!n->def) {
            rc = fu_node_fail(err, g, n, "node was not inferred before code generation");
            break;
        }
        block_kind kind = block_at(g, i);
        if (kind == BLOCK_NONE && n->loop_group >= 0) continue;   /* emitted with its group's last member */
        if (kind == BLOCK_LOOP) {
            int count = 0;
            for (int j = 0; j <= i; j++)
                if (g->nodes[j].loop_group == n->loop_group) members[count++] = j;
            fu_emitf(e, "/* node %d: loop of %d elementwise op%s ending in %s %s */", i, count,
                     count > 1 ? "s" : "", n->op, comment);
            fu_emitf(e, "if (prof) fu_rt_profile_begin(prof);");
            rc = emit_loop_group(e, members, count, err);
        } else if (kind == BLOCK_NONE) {
            fu_emitf(e, "/* node %d: %s %s (view, no code) */", i, n->op, comment);
            continue;
        } else if (n->def->emit) {
            fu_emitf(e, "/* node %d: %s %s */", i, n->op, comment);
            fu_emitf(e, "if (prof) fu_rt_profile_begin(prof);");
            fu_emitf(e, "{");
            e->indent++;
            rc = n->def->emit(e, g, n, err);
            e->indent--;
            fu_emitf(e, "}");
        } else {
            rc = fu_node_fail(err, g, n, "op has no code generator");
        }
        fu_emitf(e, "if (prof) fu_rt_profile_end(prof, %d);", slot++);
    }
    free(members);
    for (int i = 0; i < g->n_outputs && rc == 0; i++)
        fu_emitf(e, "out[%d] = %s;", i, fu_emit_vptr(e, g->outputs[i]));
    fu_emitf(e, "return 0;");
    fu_sb_printf(&e->out, "}\n\n");
    fu_sb_printf(&e->out,
                 "int fusec_model_run(const int64_t *sym, const void *const *in, const void *const *w,\n"
                 "                    void *arena, void **out)\n{\n"
                 "    return fusec_model_run_profiled(sym, in, w, arena, out, (fu_rt_profile *)0);\n}\n");
    if (rc == 0 && (e->out.oom || e->funcs.oom)) rc = fu_fail(err, "out of memory emitting code");
    if (rc == 0) {
        fu_sb whole = {0};
        fu_sb_printf(&whole, "%.*s%s%s\n%s", (int)run_start, e->out.s, loop_context_type,
                     e->funcs.s ? e->funcs.s : "", e->out.s + run_start);
        if (whole.oom) rc = fu_fail(err, "out of memory emitting code");
        else *out = whole;
    }
    fu_sb_free(&e->out);
    fu_sb_free(&e->funcs);
    free(e);
    return rc;
}
