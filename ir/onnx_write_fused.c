/* fusec's fused ops in an ONNX model (ir/onnx_write_impl.h): the ONNX
 * operators RMSNormalization, LayerNormalization, RotaryEmbedding and
 * Attention, with Reshape / Transpose where fusec's layouts differ, and the
 * functions of domain "fusec" (SwiGLU, FusedMatMul_*) that ONNX lacks.
 * docs/onnx_export.md has the mapping. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "onnx_write_impl.h"

static const int64_t SWAP12[4] = {0, 2, 1, 3};

/* ---- fused ops ---------------------------------------------------------- */

/* RMSNormalization / LayerNormalization: ONNX requires scale; fusec's
 * optional scale becomes a vector of ones. */
int ow_export_norm(writer *w, int k) {
    const fu_node *n = &w->g->nodes[k];
    if (n->n_in >= 2 && n->in[1] >= 0) return ow_copy_node(w, k, NULL, n->op, NULL, n->n_in) ? 0 : -1;
    const fu_value *x = &w->g->values[n->in[0]];
    int64_t axis = fu_attr_int(n, "axis", -1);
    if (n->n_out > 1 || (axis != -1 && axis != x->rank - 1))
        return fu_node_fail(w->err, w->g, n, "a norm without scale is exported over the last axis, with one output, only");
    int64_t c = 0;
    if (ow_static_dim(w, k, x->shape[x->rank - 1], "the normalised dim", &c)) return -1;
    float *ones = malloc(sizeof(float) * (size_t)c);
    if (!ones) return fu_fail(w->err, "%s: out of memory", w->out);
    for (int64_t i = 0; i < c; i++) ones[i] = 1.0f;
    const char *in[3] = {ow_use(w, n->in[0]), ow_const_f32(w, k, "scale", 1, &c, ones), n->n_in > 2 ? ow_use(w, n->in[2]) : NULL};
    free(ones);
    const char *out = w->g->values[n->out[0]].name;
    Onnx__NodeProto *np = ow_node_add(w, ow_graph_nodes(w), n->name, NULL, n->op, n->n_in > 2 ? 3 : 2, in, 1, &out);
    for (int a = 0; a < n->n_attrs && np; a++) ow_node_attr(w, np, ow_attr_copy(w, &n->attrs[a]));
    return 0;
}

/* X [B, S, H, D] (BSHD) or [B, H, S, D] (BHSD) as [B, S, H*D]. */
static const char *to_3d(writer *w, int k, const char *x, int bshd) {
    static const int64_t flat[3] = {0, 0, -1};
    if (!bshd) x = ow_transpose(w, k, x, 4, SWAP12);
    return ow_reshape(w, k, x, 3, flat);
}

/* y3 [B, S, H*D] back to 4-D in the given layout, written to name out. */
static void from_3d(writer *w, int k, const char *y3, int64_t h, int64_t d, int bshd, const char *out) {
    int64_t shape[4] = {0, 0, h, d};
    const char *in[2] = {y3, ow_const_i64(w, k, "shape", 4, shape, 0)};
    if (bshd) {
        char *name = ow_fmt(w, "%s/onnx_export/Reshape_out", w->g->nodes[k].name);
        ow_node_add(w, ow_graph_nodes(w), name ? name : "", NULL, "Reshape", 2, in, 1, &out);
        return;
    }
    const char *y4 = ow_helper(w, k, "Reshape", 2, in, NULL);
    char *name = ow_fmt(w, "%s/onnx_export/Transpose_out", w->g->nodes[k].name);
    Onnx__NodeProto *np = ow_node_add(w, ow_graph_nodes(w), name ? name : "", NULL, "Transpose", 1, &y4, 1, &out);
    ow_node_attr(w, np, ow_attr_ints(w, "perm", 4, SWAP12));
}

/* position_ids [B, S] = pos_offset + arange(S) for x3 [B, S, *]. */
static const char *positions(writer *w, int k, const char *x3, int64_t pos_offset) {
    Onnx__NodeProto *np;
    const char *bs = ow_helper(w, k, "Shape", 1, &x3, &np);
    ow_node_attr(w, np, ow_attr_int(w, "end", 2));
    const char *s1 = ow_helper(w, k, "Shape", 1, &x3, &np);
    ow_node_attr(w, np, ow_attr_int(w, "start", 1));
    ow_node_attr(w, np, ow_attr_int(w, "end", 2));
    int64_t zero = 0, one = 1;
    const char *sq_in[2] = {s1, ow_const_i64(w, k, "axes", 1, &zero, 0)};
    const char *s = ow_helper(w, k, "Squeeze", 2, sq_in, NULL);
    const char *start = ow_const_i64(w, k, "start", 1, &pos_offset, 1);
    const char *add_in[2] = {s, start};
    const char *limit = ow_helper(w, k, "Add", 2, add_in, NULL);
    const char *range_in[3] = {start, limit, ow_const_i64(w, k, "delta", 1, &one, 1)};
    const char *r = ow_helper(w, k, "Range", 3, range_in, NULL);
    const char *un_in[2] = {r, ow_const_i64(w, k, "axes", 1, &zero, 0)};
    const char *r2 = ow_helper(w, k, "Unsqueeze", 2, un_in, NULL);
    const char *ex_in[2] = {r2, bs};
    return ow_helper(w, k, "Expand", 2, ex_in, NULL);
}

int ow_export_rotary(writer *w, int k) {
    const fu_graph *g = w->g;
    const fu_node *n = &g->nodes[k];
    const fu_value *x = &g->values[n->in[0]];
    int has_pos = n->n_in > 3 && n->in[3] >= 0, has_freq = n->n_in > 4 && n->in[4] >= 0;
    int64_t pos_offset = fu_attr_int(n, "pos_offset", 0);
    double amplitude = fu_attr_float(n, "amplitude", 1.0);
    int bshd = strcmp(fu_attr_string(n, "layout", "BHSD"), "BSHD") == 0;
    const fu_value *cos = has_freq ? NULL : &g->values[n->in[1]];
    int cache_2d = cos && cos->rank == 2;
    int pos_ok = !has_pos || g->values[n->in[3]].rank == 2;
    /* ONNX's own form: no fusec attribute or input in play */
    if (!has_freq && !bshd && pos_offset == 0 && amplitude == 1.0 && pos_ok && (has_pos || !cache_2d)) {
        static const char *const skip[] = {"layout", "pos_offset", "amplitude", NULL};
        return ow_copy_node(w, k, NULL, "RotaryEmbedding", skip, n->n_in > 4 ? 4 : n->n_in) ? 0 : -1;
    }
    if (!has_pos && !has_freq && !cache_2d) pos_offset = 0;   /* per-row caches ignore it */
    int64_t h = 0, d = 0;
    const char *x3;
    if (x->rank == 4) {
        if (ow_static_dim(w, k, x->shape[bshd ? 2 : 1], "the head count", &h) ||
            ow_static_dim(w, k, x->shape[3], "the head size", &d))
            return -1;
        x3 = to_3d(w, k, ow_use(w, n->in[0]), bshd);
    } else {
        h = fu_attr_int(n, "num_heads", 0);
        int64_t hidden = 0;
        if (h <= 0 || ow_static_dim(w, k, x->shape[2], "the hidden size", &hidden)) 
            return h <= 0 ? fu_node_fail(w->err, g, n, "3-D X needs num_heads") : -1;
        d = hidden / h;
        x3 = ow_use(w, n->in[0]);
    }
    const char *cos_name, *sin_name;
    if (has_freq) {
        const fu_value *f = &g->values[n->in[4]];
        if (f->kind != FU_VAL_CONST || !f->data || f->dtype != FU_F32)
            return fu_node_fail(w->err, g, n, "inv_freq must be a float32 constant to export (ONNX takes cos/sin caches)");
        if (has_pos)
            return fu_node_fail(w->err, g, n, "inv_freq with position_ids is not exported (the largest position is unknown)");
        fu_dim s = x->rank == 4 ? x->shape[bshd ? 1 : 2] : x->shape[1];
        int64_t max_pos = pos_offset + fu_dim_eval(s, g->sym_max);
        int64_t half = (int64_t)(f->nbytes / sizeof(float));
        for (int i = 0; i < w->n_caches; i++) {
            const struct rope_cache *rc = &w->caches[i];
            if (rc->inv_freq == n->in[4] && rc->pos_offset == pos_offset && rc->max_pos == max_pos &&
                rc->amplitude == amplitude) {
                cos_name = rc->cos, sin_name = rc->sin;
                goto have_caches;
            }
        }
        if (max_pos <= 0 || max_pos > ((int64_t)1 << 24) / (half ? half : 1))
            return fu_node_fail(w->err, g, n, "the cos/sin caches would have %lld rows", (long long)max_pos);
        float *c = malloc(sizeof(float) * (size_t)(max_pos * half)), *sn = malloc(sizeof(float) * (size_t)(max_pos * half));
        if (!c || !sn) {
            free(c), free(sn);
            return fu_fail(w->err, "%s: out of memory", w->out);
        }
        const float *inv = f->data;
        for (int64_t p = 0; p < max_pos; p++)
            for (int64_t i = 0; i < half; i++) {
                float angle = (float)p * inv[i];   /* as fu_rt_rope_f32 computes it */
                c[p * half + i] = cosf(angle) * (float)amplitude;
                sn[p * half + i] = sinf(angle) * (float)amplitude;
            }
        int64_t shape[2] = {max_pos, half};
        cos_name = ow_const_f32(w, k, "cos_cache", 2, shape, c);
        sin_name = ow_const_f32(w, k, "sin_cache", 2, shape, sn);
        free(c), free(sn);
        if (w->n_caches < (int)(sizeof w->caches / sizeof w->caches[0]))
            w->caches[w->n_caches++] = (struct rope_cache){n->in[4], pos_offset, max_pos, amplitude, cos_name, sin_name};
    have_caches:
        cache_2d = 1;
    } else {
        if (amplitude != 1.0) return fu_node_fail(w->err, g, n, "amplitude applies to inv_freq only");
        cos_name = ow_use(w, n->in[1]);
        sin_name = ow_use(w, n->in[2]);
    }
    const char *pos = NULL;
    if (has_pos) {
        pos = ow_use(w, n->in[3]);
        if (g->values[n->in[3]].rank == 1) {
            Onnx__NodeProto *np;
            const char *bs = ow_helper(w, k, "Shape", 1, &x3, &np);
            ow_node_attr(w, np, ow_attr_int(w, "end", 2));
            const char *ex_in[2] = {pos, bs};
            pos = ow_helper(w, k, "Expand", 2, ex_in, NULL);
        }
    } else if (cache_2d) {
        pos = positions(w, k, x3, pos_offset);
    }
    const char *in[4] = {x3, cos_name, sin_name, pos};
    const char *y = x->rank == 4 ? ow_fresh(w, k, "Y3") : g->values[n->out[0]].name;
    Onnx__NodeProto *np = ow_node_add(w, ow_graph_nodes(w), n->name, NULL, "RotaryEmbedding", pos ? 4 : 3, in, 1, &y);
    ow_node_attr(w, np, ow_attr_int(w, "num_heads", h));
    ow_node_attr(w, np, ow_attr_int(w, "interleaved", fu_attr_int(n, "interleaved", 0)));
    int64_t rot = fu_attr_int(n, "rotary_embedding_dim", 0);
    if (rot) ow_node_attr(w, np, ow_attr_int(w, "rotary_embedding_dim", rot));
    if (x->rank == 4) from_3d(w, k, y, h, d, bshd, g->values[n->out[0]].name);
    return 0;
}

static int parse_layout(const char *s, int len) {
    if (len == 4 && !strncmp(s, "BSHD", 4)) return 1;
    return 0;
}

/* ONNX Attention's is_causal (without past_key) aligns the queries to the
 * start of the keys; fusec's causal_align "end" differs from it only when
 * the lengths differ, and then has no ONNX spelling here. */
#define END_ALIGNED "causal attention aligned to the end of the keys (causal_align \"end\") with different " \
                    "query and key lengths has no ONNX Attention equivalent"
static int end_aligned_unequal(const fu_node *n, fu_dim lq, fu_dim lk) {
    return fu_attr_int(n, "is_causal", 0) && !strcmp(fu_attr_string(n, "causal_align", "start"), "end") &&
           !fu_dim_eq(lq, lk);
}

int ow_export_attention(writer *w, int k) {
    const fu_graph *g = w->g;
    const fu_node *n = &g->nodes[k];
    if ((n->n_in > 6 && n->in[6] >= 0) || (n->n_in > 7 && n->in[7] >= 0))
        return fu_node_fail(w->err, g, n, "sinks and q_positions (fusec inputs 6, 7) have no ONNX Attention equivalent; "
                            "export before prune_rows");
    const fu_value *q = &g->values[n->in[0]], *kk = &g->values[n->in[1]];
    int qlen = q->rank == 4 ? 2 : 1;
    if (q->rank == 3 && end_aligned_unequal(n, q->shape[qlen], kk->shape[qlen]))
        return fu_node_fail(w->err, g, n, END_ALIGNED);
    /* layouts */
    const char *ls = fu_attr_string(n, "qkv_layout", "BHSD");
    int lay[3];
    const char *c1 = strchr(ls, ',');
    if (c1) {
        const char *c2 = strchr(c1 + 1, ',');
        lay[0] = parse_layout(ls, (int)(c1 - ls));
        lay[1] = parse_layout(c1 + 1, c2 ? (int)(c2 - c1 - 1) : 0);
        lay[2] = c2 ? parse_layout(c2 + 1, (int)strlen(c2 + 1)) : 0;
    } else {
        lay[0] = lay[1] = lay[2] = parse_layout(ls, (int)strlen(ls));
    }
    int out_bshd = strcmp(fu_attr_string(n, "out_layout", "BHSD"), "BSHD") == 0;
    static const char *const skip[] = {"qkv_layout", "out_layout", "causal_align", NULL};
    if (q->rank != 4 || (!lay[0] && !lay[1] && !lay[2] && !out_bshd)) {
        if (q->rank == 4 && end_aligned_unequal(n, q->shape[2], kk->shape[2]))
            return fu_node_fail(w->err, g, n, END_ALIGNED);
        return ow_copy_node(w, k, NULL, "Attention", skip, n->n_in > 4 ? 4 : n->n_in) ? 0 : -1;
    }
    /* 4-D with a BSHD tensor: the 3-D form [B, S, H*D] with head counts */
    int64_t hq = 0, hkv = 0, dv = 0;
    const fu_value *v = &g->values[n->in[2]];
    if (ow_static_dim(w, k, q->shape[lay[0] ? 2 : 1], "the query head count", &hq) ||
        ow_static_dim(w, k, kk->shape[lay[1] ? 2 : 1], "the key head count", &hkv) ||
        ow_static_dim(w, k, v->shape[3], "the value head size", &dv))
        return -1;
    if (end_aligned_unequal(n, q->shape[lay[0] ? 1 : 2], kk->shape[lay[1] ? 1 : 2]))
        return fu_node_fail(w->err, g, n, END_ALIGNED);
    const char *in[4];
    for (int i = 0; i < 3; i++) in[i] = to_3d(w, k, ow_use(w, n->in[i]), lay[i]);
    in[3] = n->n_in > 3 ? ow_use(w, n->in[3]) : NULL;
    const char *y = ow_fresh(w, k, "Y3");
    Onnx__NodeProto *np = ow_node_add(w, ow_graph_nodes(w), n->name, NULL, "Attention", in[3] ? 4 : 3, in, 1, &y);
    for (int a = 0; a < n->n_attrs && np; a++) {
        const char *an = n->attrs[a].name;
        if (strcmp(an, "qkv_layout") && strcmp(an, "out_layout") && strcmp(an, "q_num_heads") && strcmp(an, "kv_num_heads") &&
            strcmp(an, "causal_align"))
            ow_node_attr(w, np, ow_attr_copy(w, &n->attrs[a]));
    }
    ow_node_attr(w, np, ow_attr_int(w, "q_num_heads", hq));
    ow_node_attr(w, np, ow_attr_int(w, "kv_num_heads", hkv));
    from_3d(w, k, y, hq, dv, out_bshd, g->values[n->out[0]].name);
    return 0;
}

/* ---- functions ------------------------------------------------------------ */

/* The function named name, made by build() the first time it is asked for. */
static int have_function(writer *w, const char *name) {
    for (size_t i = 0; i < w->n_funcs; i++)
        if (strcmp(w->funcs[i]->name, name) == 0) return 1;
    return 0;
}


static Onnx__FunctionProto *function_new(writer *w, const char *name, int n_in, const char *const *in, const char *doc) {
    Onnx__FunctionProto *f = ow_alloc(w, sizeof *f);
    char **ins = ow_alloc(w, sizeof(char *) * (size_t)(n_in + 1)), **outs = ow_alloc(w, sizeof(char *));
    Onnx__OperatorSetIdProto **ops = ow_alloc(w, sizeof(void *));
    if (!f || !ins || !outs || !ops) return NULL;
    onnx__function_proto__init(f);
    f->name = ow_str(w, name);
    f->domain = ow_str(w, FUSEC_DOMAIN);
    f->doc_string = ow_str(w, doc);
    for (int i = 0; i < n_in; i++) ins[i] = ow_str(w, in[i]);
    f->n_input = (size_t)n_in;
    f->input = ins;
    outs[0] = ow_str(w, "Y");
    f->n_output = 1;
    f->output = outs;
    ops[0] = ow_opset(w, "", OPSET);
    f->n_opset_import = 1;
    f->opset_import = ops;
    ow_push(w, (void ***)&w->funcs, &w->n_funcs, &w->cap_funcs, f);
    return f;
}

static node_list body(Onnx__FunctionProto *f, size_t *cap) {
    return (node_list){&f->node, &f->n_node, cap};
}

/* SwiGLU(gate, up) = gate * Sigmoid(gate) * up. */
int ow_export_swiglu(writer *w, int k) {
    if (!have_function(w, "SwiGLU")) {
        static const char *const in[2] = {"gate", "up"};
        Onnx__FunctionProto *f = function_new(w, "SwiGLU", 2, in, "fusec SwiGLU: Y = gate * Sigmoid(gate) * up");
        if (!f) return fu_fail(w->err, "%s: out of memory", w->out);
        size_t cap = 0;
        const char *s_in[1] = {"gate"}, *s_out[1] = {"sig"};
        ow_node_add(w, body(f, &cap), "sigmoid", NULL, "Sigmoid", 1, s_in, 1, s_out);
        const char *m_in[2] = {"gate", "sig"}, *m_out[1] = {"silu"};
        ow_node_add(w, body(f, &cap), "silu", NULL, "Mul", 2, m_in, 1, m_out);
        const char *y_in[2] = {"silu", "up"}, *y_out[1] = {"Y"};
        ow_node_add(w, body(f, &cap), "gated", NULL, "Mul", 2, y_in, 1, y_out);
    }
    return ow_copy_node(w, k, FUSEC_DOMAIN, "SwiGLU", NULL, 2) ? 0 : -1;
}

/* FusedMatMul(A, B[, bias]) = alpha * op(A) op(B) [+ bias]: one function
 * per variant (transA, transB with B's rank, alpha, bias). */
int ow_export_fused_matmul(writer *w, int k) {
    const fu_graph *g = w->g;
    const fu_node *n = &g->nodes[k];
    int64_t ta = fu_attr_int(n, "transA", 0), tb = fu_attr_int(n, "transB", 0);
    double alpha = fu_attr_float(n, "alpha", 1.0);
    if (fu_attr_int(n, "transBatchA", 0) || fu_attr_int(n, "transBatchB", 0))
        return fu_node_fail(w->err, g, n, "transBatchA/transBatchB are not exported");
    if (strcmp(fu_attr_string(n, "activations", "f32"), "f32") != 0)
        return fu_node_fail(w->err, g, n, "activations = \"bf16\" (--precision bf16) has no ONNX equivalent");
    int bias = n->n_in > 2 && n->in[2] >= 0;
    int rb = g->values[n->in[1]].rank, ra = g->values[n->in[0]].rank;
    if ((tb && rb < 2) || (ta && ra != 2)) return fu_node_fail(w->err, g, n, "transA/transB on a 1-D operand");
    float af = (float)alpha;
    uint32_t bits;
    memcpy(&bits, &af, 4);
    char name[128];
    snprintf(name, sizeof name, "FusedMatMul%s", ta ? "_tA" : "");
    if (tb) snprintf(name + strlen(name), sizeof name - strlen(name), "_tB%d", rb);
    if (af != 1.0f) snprintf(name + strlen(name), sizeof name - strlen(name), "_alpha%08x", (unsigned)bits);
    if (bias) snprintf(name + strlen(name), sizeof name - strlen(name), "_bias");
    if (!have_function(w, name)) {
        static const char *const in[3] = {"A", "B", "bias"};
        char doc[256];
        snprintf(doc, sizeof doc, "fusec FusedMatMul: Y = %g * %s %s%s", (double)af, ta ? "A^T" : "A",
                 tb ? "B^T (last two axes)" : "B", bias ? " + bias" : "");
        Onnx__FunctionProto *f = function_new(w, name, bias ? 3 : 2, in, doc);
        if (!f) return fu_fail(w->err, "%s: out of memory", w->out);
        size_t cap = 0;
        const char *a = "A", *b = "B";
        if (ta) {
            const char *o = "At";
            Onnx__NodeProto *np = ow_node_add(w, body(f, &cap), "transpose_a", NULL, "Transpose", 1, &a, 1, &o);
            int64_t perm[2] = {1, 0};
            ow_node_attr(w, np, ow_attr_ints(w, "perm", 2, perm));
            a = o;
        }
        if (tb) {
            const char *o = "Bt";
            Onnx__NodeProto *np = ow_node_add(w, body(f, &cap), "transpose_b", NULL, "Transpose", 1, &b, 1, &o);
            int64_t perm[FU_MAX_RANK];
            for (int i = 0; i < rb; i++) perm[i] = i;
            perm[rb - 2] = rb - 1;
            perm[rb - 1] = rb - 2;
            ow_node_attr(w, np, ow_attr_ints(w, "perm", rb, perm));
            b = o;
        }
        int more = af != 1.0f || bias;
        const char *mm_in[2] = {a, b}, *mm_out = more ? "AB" : "Y";
        ow_node_add(w, body(f, &cap), "matmul", NULL, "MatMul", 2, mm_in, 1, &mm_out);
        const char *cur = mm_out;
        if (af != 1.0f) {
            const char *c_out = "alpha";
            Onnx__NodeProto *cn = ow_node_add(w, body(f, &cap), "alpha", NULL, "Constant", 0, NULL, 1, &c_out);
            ow_node_attr(w, cn, ow_attr_float(w, "value_float", af));
            const char *mul_in[2] = {cur, "alpha"}, *mul_out = bias ? "scaled" : "Y";
            ow_node_add(w, body(f, &cap), "scale", NULL, "Mul", 2, mul_in, 1, &mul_out);
            cur = mul_out;
        }
        if (bias) {
            const char *add_in[2] = {cur, "bias"}, *add_out = "Y";
            ow_node_add(w, body(f, &cap), "bias", NULL, "Add", 2, add_in, 1, &add_out);
        }
    }
    /* the variant is in the function's name; fusec's attributes stay behind */
    static const char *const all[] = {"transA", "transB", "alpha", "transBatchA", "transBatchB", "packed_weight",
                                      "activations", NULL};
    return ow_copy_node(w, k, FUSEC_DOMAIN, name, all, bias ? 3 : 2) ? 0 : -1;
}

