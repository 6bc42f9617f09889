/* Attention (ONNX-23 semantics, fused node of the fast profile):
 *   Y = softmax(Q Kᵀ * scale + causal + attn_mask [, sinks]) V
 * computed by fu_rt_attention_f32 (runtime/fused.c; contract in
 * docs/fusions.md). float32 only.
 *
 * Inputs: Q, K, V, attn_mask?, past_key?, past_value?, sinks? (fusec
 * extension: input 6, float [q_heads]), q_positions? (fusec extension:
 * input 7, int64 [Lq], with is_causal: query i sees keys j <= q_positions[i];
 * the row-pruning pass gives it to a Q of selected rows). past_key/past_value
 * must be omitted. is_causal is ONNX's: query i sees keys j <= i; fusec
 * attribute causal_align = "end" aligns the queries to the end of the keys
 * instead (j <= i + Lk - Lq), which is what exporters' causal masks with a
 * KV-cache offset say (the fusion rule sets it when Lq and Lk may differ).
 * Shapes: 4-D Q [B, Hq, Lq, D], K [B, Hkv, Lk, D], V [B, Hkv, Lk, Dv] ->
 * Y [B, Hq, Lq, Dv]; or 3-D Q [B, Lq, Hq*D], K/V [B, Lk, Hkv*D(v)] with
 * q_num_heads/kv_num_heads -> Y [B, Lq, Hq*Dv].
 * fusec attribute qkv_layout (4-D only): "BHSD" (default) or "BSHD" for
 * all of Q, K, V, or three comma-separated layouts for Q, K, V
 * ("BHSD,BHSD,BSHD"). A BSHD input is [B, L, H, D] and is read in place
 * (no transpose). fusec attribute out_layout (4-D only): "BHSD" (default,
 * Y [B, Hq, Lq, Dv]) or "BSHD" (Y [B, Lq, Hq, Dv], written in place). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "ops.h"
#include "../ir/shape.h"
#include "emit.h"

enum { LAYOUT_BHSD = 0, LAYOUT_BSHD = 1 };
/* The kernel's is_causal values, named as in generated code. */
enum { CAUSAL_END = 1, CAUSAL_START = 2 };
static const char *const causal_names[] = {"0", "FU_RT_CAUSAL_END", "FU_RT_CAUSAL_START"};

/* Everything emit needs, derived from the shapes once. Strides in elements:
 * index 0 = batch, 1 = head, 2 = sequence. */
typedef struct {
    fu_dim batch, q_heads, kv_heads, q_len, kv_len, head_dim, v_head_dim;
    fu_dim q_stride[3], k_stride[3], v_stride[3], out_stride[3];
    int mask;           /* input index of attn_mask, or -1 */
    fu_dim mask_stride[3];   /* batch, head, query row */
    int sinks;          /* input index of sinks, or -1 */
    int q_positions;    /* input index of q_positions, or -1 */
    double scale;
    int is_causal;      /* 0, CAUSAL_END or CAUSAL_START */
    int out_rank;
    fu_dim out[4];
} attn_plan;

static int present(const fu_node *n, int i) { return i < n->n_in && n->in[i] >= 0; }

static void dim_text(const fu_graph *g, fu_dim d, char *buf, size_t n) { fu_dim_str(g, d, buf, n); }

static int parse_one_layout(const char *s, size_t len) {
    if (len == 4 && strncmp(s, "BHSD", 4) == 0) return LAYOUT_BHSD;
    if (len == 4 && strncmp(s, "BSHD", 4) == 0) return LAYOUT_BSHD;
    return -1;
}

static int layout_error(const fu_graph *g, const fu_node *n, const char *s, fu_err *err) {
    char text[64];
    fu_sanitize(s, text, sizeof text);
    return fu_node_fail(err, g, n, "qkv_layout '%s' is not BHSD, BSHD or three of them comma-separated (Q,K,V)",
                        text);
}

/* qkv_layout: one layout for all three or "Q,K,V". */
static int parse_layouts(const fu_graph *g, const fu_node *n, int layout[3], fu_err *err) {
    const char *s = fu_attr_string(n, "qkv_layout", "BHSD");
    const char *c1 = strchr(s, ',');
    if (!c1) {
        layout[0] = layout[1] = layout[2] = parse_one_layout(s, strlen(s));
        return layout[0] < 0 ? layout_error(g, n, s, err) : 0;
    }
    const char *c2 = strchr(c1 + 1, ',');
    if (!c2 || strchr(c2 + 1, ',')) return layout_error(g, n, s, err);
    layout[0] = parse_one_layout(s, (size_t)(c1 - s));
    layout[1] = parse_one_layout(c1 + 1, (size_t)(c2 - c1 - 1));
    layout[2] = parse_one_layout(c2 + 1, strlen(c2 + 1));
    if (layout[0] < 0 || layout[1] < 0 || layout[2] < 0) return layout_error(g, n, s, err);
    return 0;
}

/* Reads a 4-D tensor of the given layout as (batch, heads, len, dim) and
 * its (batch, head, seq) strides. */
static void read_4d(const fu_value *v, int layout, fu_dim *b, fu_dim *h, fu_dim *l, fu_dim *d, fu_dim stride[3]) {
    *b = v->shape[0];
    *d = v->shape[3];
    if (layout == LAYOUT_BHSD) {
        *h = v->shape[1];
        *l = v->shape[2];
        stride[2] = *d;
        stride[1] = fu_dim_mul(*l, *d);
    } else {
        *l = v->shape[1];
        *h = v->shape[2];
        stride[1] = *d;
        stride[2] = fu_dim_mul(*h, *d);
    }
    stride[0] = fu_dim_mul(fu_dim_mul(*h, *l), *d);
}

/* Reads a 3-D [B, L, H*D] tensor split into `heads` heads. */
static int read_3d(const fu_graph *g, const fu_node *n, const char *what, const fu_value *v, int64_t heads,
                   fu_dim *b, fu_dim *l, fu_dim *d, fu_dim stride[3], fu_err *err) {
    *b = v->shape[0];
    *l = v->shape[1];
    if (fu_dim_div(v->shape[2], fu_dim_const(heads), d)) {
        char t[64];
        dim_text(g, v->shape[2], t, sizeof t);
        return fu_node_fail(err, g, n, "%s hidden size %s is not a multiple of %lld heads", what, t,
                            (long long)heads);
    }
    stride[0] = fu_dim_mul(*l, v->shape[2]);
    stride[1] = *d;
    stride[2] = v->shape[2];
    return 0;
}

static int same_dim(const fu_graph *g, const fu_node *n, const char *what, fu_dim a, fu_dim b, fu_err *err) {
    if (fu_dim_eq(a, b)) return 0;
    char sa[64], sb[64];
    dim_text(g, a, sa, sizeof sa);
    dim_text(g, b, sb, sizeof sb);
    return fu_node_fail(err, g, n, "%s differ: %s vs %s", what, sa, sb);
}

/* attn_mask broadcasts to [B, Hq, Lq, Lk]; its last axis must be Lk
 * (contiguous in the kernel), the others equal or 1 (stride 0). */
static int plan_mask(const fu_graph *g, const fu_node *n, attn_plan *p, fu_err *err) {
    const fu_value *m = &g->values[n->in[3]];
    if (m->dtype == FU_BOOL)
        return fu_node_fail(err, g, n,
                            "boolean attn_mask is not supported; pass an additive float mask (0 = attend, -inf = hide)");
    if (m->dtype != FU_F32)
        return fu_node_fail(err, g, n, "attn_mask must be float32 (got %s)", fu_dtype_name(m->dtype));
    if (m->rank < 1 || m->rank > 4)
        return fu_node_fail(err, g, n, "attn_mask must have rank 1 to 4 (got %d)", m->rank);
    fu_dim target[4] = {p->batch, p->q_heads, p->q_len, p->kv_len};
    const char *names[4] = {"batch", "q_heads", "q_len", "kv_len"};
    if (!fu_dim_eq(m->shape[m->rank - 1], p->kv_len)) {
        char t[64], k[64];
        dim_text(g, m->shape[m->rank - 1], t, sizeof t);
        dim_text(g, p->kv_len, k, sizeof k);
        return fu_node_fail(err, g, n, "attn_mask last dim %s must equal the key length %s", t, k);
    }
    fu_dim stride = fu_dim_const(1);
    fu_dim strides[4] = {fu_dim_const(0), fu_dim_const(0), fu_dim_const(0), fu_dim_const(0)};
    for (int i = m->rank - 1; i >= 0; i--) {
        int axis = 4 - m->rank + i;
        fu_dim d = m->shape[i];
        if (!fu_dim_is(d, 1) && !fu_dim_eq(d, target[axis])) {
            char t[64];
            dim_text(g, d, t, sizeof t);
            return fu_node_fail(err, g, n, "attn_mask dim %d (%s) does not broadcast to %s", i, t, names[axis]);
        }
        strides[axis] = fu_dim_is(d, 1) ? fu_dim_const(0) : stride;
        stride = fu_dim_mul(stride, d);
    }
    p->mask = 3;
    p->mask_stride[0] = strides[0];
    p->mask_stride[1] = strides[1];
    p->mask_stride[2] = strides[2];
    return 0;
}

static int attn_plan_make(const fu_graph *g, const fu_node *n, attn_plan *p, fu_err *err) {
    memset(p, 0, sizeof *p);
    p->mask = p->sinks = p->q_positions = -1;
    for (int i = 0; i < 3; i++)
        if (fu_require_input(g, n, i, FU_MASK(FU_F32), err)) return -1;
    if (present(n, 4) || present(n, 5))
        return fu_node_fail(err, g, n, "past_key/past_value inputs are not supported; pass the full K and V");
    if (n->n_out > 1)
        return fu_node_fail(err, g, n, "only output 0 (Y) is supported, got %d outputs", n->n_out);
    if (fu_attr_float(n, "softcap", 0.0) != 0.0)
        return fu_node_fail(err, g, n, "softcap must be 0 (got %g)", fu_attr_float(n, "softcap", 0.0));
    const fu_value *q = &g->values[n->in[0]], *k = &g->values[n->in[1]], *v = &g->values[n->in[2]];
    if (q->rank != k->rank || q->rank != v->rank || (q->rank != 3 && q->rank != 4))
        return fu_node_fail(err, g, n, "Q, K, V must all be 3-D or all 4-D (got ranks %d, %d, %d)", q->rank,
                            k->rank, v->rank);
    int64_t attr_hq = fu_attr_int(n, "q_num_heads", 0), attr_hkv = fu_attr_int(n, "kv_num_heads", 0);
    fu_dim kb, vb, kh, vh, vl, kd;
    if (q->rank == 4) {
        int layout[3] = {LAYOUT_BHSD, LAYOUT_BHSD, LAYOUT_BHSD};
        if (parse_layouts(g, n, layout, err)) return -1;
        read_4d(q, layout[0], &p->batch, &p->q_heads, &p->q_len, &p->head_dim, p->q_stride);
        read_4d(k, layout[1], &kb, &kh, &p->kv_len, &kd, p->k_stride);
        read_4d(v, layout[2], &vb, &vh, &vl, &p->v_head_dim, p->v_stride);
        p->kv_heads = kh;
        if (same_dim(g, n, "V heads and K heads", vh, kh, err)) return -1;
        if (attr_hq > 0 && !fu_dim_is(p->q_heads, attr_hq))
            return fu_node_fail(err, g, n, "q_num_heads=%lld does not match Q", (long long)attr_hq);
        if (attr_hkv > 0 && !fu_dim_is(kh, attr_hkv))
            return fu_node_fail(err, g, n, "kv_num_heads=%lld does not match K", (long long)attr_hkv);
    } else {
        if (attr_hq <= 0 || attr_hkv <= 0)
            return fu_node_fail(err, g, n, "3-D inputs need q_num_heads and kv_num_heads > 0");
        if (fu_node_attr(n, "qkv_layout"))
            return fu_node_fail(err, g, n, "qkv_layout applies to 4-D inputs only");
        if (read_3d(g, n, "Q", q, attr_hq, &p->batch, &p->q_len, &p->head_dim, p->q_stride, err) ||
            read_3d(g, n, "K", k, attr_hkv, &kb, &p->kv_len, &kd, p->k_stride, err) ||
            read_3d(g, n, "V", v, attr_hkv, &vb, &vl, &p->v_head_dim, p->v_stride, err))
            return -1;
        p->q_heads = fu_dim_const(attr_hq);
        p->kv_heads = fu_dim_const(attr_hkv);
    }
    if (same_dim(g, n, "Q and K batch sizes", p->batch, kb, err) ||
        same_dim(g, n, "Q and V batch sizes", p->batch, vb, err) ||
        same_dim(g, n, "K and V sequence lengths", p->kv_len, vl, err) ||
        same_dim(g, n, "Q and K head sizes", p->head_dim, kd, err))
        return -1;
    fu_dim group;
    if (fu_dim_div(p->q_heads, p->kv_heads, &group)) {
        char a[64], b[64];
        dim_text(g, p->q_heads, a, sizeof a);
        dim_text(g, p->kv_heads, b, sizeof b);
        return fu_node_fail(err, g, n, "q heads (%s) must be a multiple of kv heads (%s)", a, b);
    }
    if (present(n, 3) && plan_mask(g, n, p, err)) return -1;
    if (present(n, 6)) {
        if (fu_require_input(g, n, 6, FU_MASK(FU_F32), err)) return -1;
        const fu_value *s = &g->values[n->in[6]];
        if (s->rank != 1 || !fu_dim_eq(s->shape[0], p->q_heads))
            return fu_node_fail(err, g, n, "sinks must be float [q_heads]");
        p->sinks = 6;
    }
    const fu_attr *scale = fu_node_attr(n, "scale");
    if (scale) {
        p->scale = scale->kind == FU_ATTR_INT ? (double)scale->i : scale->f;
    } else {
        if (!fu_dim_is_const(p->head_dim) || p->head_dim.coef <= 0)
            return fu_node_fail(err, g, n, "the default scale 1/sqrt(head_dim) needs a static head_dim");
        p->scale = 1.0 / sqrt((double)p->head_dim.coef);
    }
    p->is_causal = fu_attr_int(n, "is_causal", 0) != 0;
    const char *align = fu_attr_string(n, "causal_align", "start");
    if (strcmp(align, "start") && strcmp(align, "end")) {
        char t[64];
        fu_sanitize(align, t, sizeof t);
        return fu_node_fail(err, g, n, "causal_align '%s' must be \"start\" or \"end\"", t);
    }
    /* With equal lengths both alignments are the same triangle. */
    if (p->is_causal && !fu_attention_causal_end(n) && !fu_dim_eq(p->q_len, p->kv_len)) p->is_causal = CAUSAL_START;
    if (present(n, 7)) {
        if (fu_require_input(g, n, 7, FU_MASK(FU_I64), err)) return -1;
        const fu_value *pos = &g->values[n->in[7]];
        if (pos->rank != 1 || !fu_dim_eq(pos->shape[0], p->q_len))
            return fu_node_fail(err, g, n, "q_positions must be int64 [q_len]");
        if (!p->is_causal) return fu_node_fail(err, g, n, "q_positions needs is_causal = 1 (they place the causal limit)");
        p->q_positions = 7;
    }
    const char *out_layout = fu_attr_string(n, "out_layout", NULL);
    if (out_layout && (q->rank != 4 || parse_one_layout(out_layout, strlen(out_layout)) < 0)) {
        char t[64];
        fu_sanitize(out_layout, t, sizeof t);
        return fu_node_fail(err, g, n, "out_layout '%s' must be BHSD or BSHD, with 4-D inputs", t);
    }
    if (q->rank == 4 && out_layout && parse_one_layout(out_layout, strlen(out_layout)) == LAYOUT_BSHD) {
        p->out_rank = 4;
        p->out[0] = p->batch, p->out[1] = p->q_len, p->out[2] = p->q_heads, p->out[3] = p->v_head_dim;
        p->out_stride[1] = p->v_head_dim;
        p->out_stride[2] = fu_dim_mul(p->q_heads, p->v_head_dim);
        p->out_stride[0] = fu_dim_mul(p->q_len, p->out_stride[2]);
    } else if (q->rank == 4) {
        p->out_rank = 4;
        p->out[0] = p->batch, p->out[1] = p->q_heads, p->out[2] = p->q_len, p->out[3] = p->v_head_dim;
        p->out_stride[2] = p->v_head_dim;
        p->out_stride[1] = fu_dim_mul(p->q_len, p->v_head_dim);
        p->out_stride[0] = fu_dim_mul(p->q_heads, p->out_stride[1]);
    } else {
        fu_dim width = fu_dim_mul(p->q_heads, p->v_head_dim);
        p->out_rank = 3;
        p->out[0] = p->batch, p->out[1] = p->q_len, p->out[2] = width;
        p->out_stride[0] = fu_dim_mul(p->q_len, width);
        p->out_stride[1] = p->v_head_dim;
        p->out_stride[2] = width;
    }
    return 0;
}

int fu_attention_causal_end(const fu_node *n) {
    return strcmp(fu_attr_string(n, "causal_align", "start"), "end") == 0;
}

static int attention_infer(fu_graph *g, fu_node *n, fu_err *err) {
    attn_plan p;
    if (attn_plan_make(g, n, &p, err)) return -1;
    fu_set_output(g, n, 0, FU_F32, p.out_rank, p.out);
    return 0;
}

static void put_strides(fu_sb *b, fu_emit *e, const fu_dim s[3]) {
    for (int i = 0; i < 3; i++) fu_sb_printf(b, ", %s", fu_emit_dim(e, s[i]));
}

static int attention_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    attn_plan p;
    if (attn_plan_make(g, n, &p, err)) return -1;
    char scale[64];
    fu_float_literal((float)p.scale, scale, sizeof scale);
    fu_sb b = {0};
    fu_sb_printf(&b, "if (fu_rt_attention_f32(%s", fu_emit_ptr(e, n->in[0]));
    fu_sb_printf(&b, ", %s", fu_emit_ptr(e, n->in[1]));
    fu_sb_printf(&b, ", %s", fu_emit_ptr(e, n->in[2]));
    fu_sb_printf(&b, ", %s", fu_emit_ptr(e, n->out[0]));
    const fu_dim sizes[7] = {p.batch, p.q_heads, p.kv_heads, p.q_len, p.kv_len, p.head_dim, p.v_head_dim};
    for (int i = 0; i < 7; i++) fu_sb_printf(&b, ", %s", fu_emit_dim(e, sizes[i]));
    put_strides(&b, e, p.q_stride);
    put_strides(&b, e, p.k_stride);
    put_strides(&b, e, p.v_stride);
    put_strides(&b, e, p.out_stride);
    fu_sb_printf(&b, ", %s, %s", scale, causal_names[p.is_causal]);
    if (p.mask >= 0) {
        fu_sb_printf(&b, ", %s", fu_emit_ptr(e, n->in[p.mask]));
        put_strides(&b, e, p.mask_stride);
    } else {
        fu_sb_printf(&b, ", (const float *)0, 0, 0, 0");
    }
    fu_sb_printf(&b, ", %s", p.sinks >= 0 ? fu_emit_ptr(e, n->in[p.sinks]) : "(const float *)0");
    fu_sb_printf(&b, ", %s)) return %d;",
                 p.q_positions >= 0 ? fu_emit_ptr(e, n->in[p.q_positions]) : "(const int64_t *)0",
                 (int)(n - g->nodes) + 1);
    int rc = b.oom ? fu_node_fail(err, g, n, "out of memory") : 0;
    if (rc == 0) fu_emitf(e, "%s", b.s);
    fu_sb_free(&b);
    return rc;
}

const fu_op fu_op_Attention = {
    .name = "Attention", .min_in = 3, .max_in = 8, .min_out = 1, .max_out = 1,
    .infer = attention_infer, .emit = attention_emit,
    .doc = "Y = softmax(Q K^T * scale + causal + attn_mask [, sinks]) V, grouped-query heads; 4-D [B, H, L, D] "
           "or 3-D [B, L, H*D] inputs. ONNX Attention-23 without past_key/past_value (inputs 4, 5) and outputs "
           "1 to 3; fusec inputs 6 sinks (float32 [q_heads]) and 7 q_positions (int64 [Lq], needs is_causal). "
           "Contract: docs/fusions.md.",
    .dtypes = "Q, K, V, attn_mask (additive; bool is rejected), sinks: float32; q_positions: int64",
    .attrs = "scale (1/sqrt(head_dim), which must then be static): multiplies Q K^T\n"
             "is_causal (0): 1 hides later keys: query i sees key j <= i (ONNX, aligned to the start), or as "
             "causal_align says, or j <= q_positions[i] when given\n"
             "causal_align (\"start\", fusec): \"start\" (j <= i) or \"end\" (j <= i + Lk - Lq: the queries are "
             "the last Lq of the keys, as with a KV cache)\n"
             "softcap (0): must be 0\n"
             "q_num_heads, kv_num_heads (0): required (> 0) for 3-D inputs; checked against Q, K when given for "
             "4-D\n"
             "qkv_layout (\"BHSD\", fusec, 4-D only): \"BHSD\" or \"BSHD\" for Q, K and V, or three "
             "comma-separated (\"BHSD,BHSD,BSHD\")\n"
             "out_layout (\"BHSD\", fusec, 4-D only): \"BHSD\" or \"BSHD\" for Y",
};
