/* RotaryEmbedding (ONNX-23), the fused rotary position embedding of the
 * fast profile, run by fu_rt_rope_f32 (runtime/fused.c).
 *
 * Inputs: X, cos_cache, sin_cache, position_ids (optional), and a fusec
 * extension inv_freq (optional 5th input). Attributes: interleaved,
 * rotary_embedding_dim, num_heads (ONNX); layout, amplitude, pos_offset
 * (fusec). See docs/fusions.md, "RotaryEmbedding in fusec".
 *
 * X is 4-D [B, H, S, D] (layout "BHSD", the default), 4-D [B, S, H, D]
 * (layout "BSHD") or 3-D [B, S, H*D] (needs num_heads). The kernel addresses
 * X and Y through strides, so no layout needs a transpose. Y has X's shape. */
#include <stdio.h>
#include <string.h>
#include "ops.h"
#include "../ir/shape.h"
#include "emit.h"

enum { ANGLES_CACHE_BY_POSITION, ANGLES_CACHE_PER_ROW, ANGLES_INV_FREQ };

/* Everything infer checks and emit needs. */
typedef struct {
    fu_dim batch, heads, seq;
    int64_t head_dim, rot_dim, half;
    fu_dim stride_b, stride_h, stride_s;   /* of X and Y, in elements */
    int interleaved;
    /* ANGLES_CACHE_BY_POSITION: cos/sin [max_pos, half], row = position.
     * ANGLES_CACHE_PER_ROW: cos/sin [B or 1, S, half], row (b, s) (ONNX's
     * 3-D caches without position_ids). ANGLES_INV_FREQ: computed. */
    int angles;
    fu_dim max_pos;
    int cache_per_batch;                    /* PER_ROW with a cache batch dim > 1 */
    int has_positions;
    int positions_per_batch;                /* position_ids [B, S] with B not 1 */
} rope_plan;

static int has_input(const fu_node *n, int i) { return i < n->n_in && n->in[i] >= 0; }

static int dims_differ(const fu_graph *g, const fu_node *n, const char *what, fu_dim got, fu_dim want,
                       fu_err *err) {
    if (fu_dim_eq(got, want)) return 0;
    char a[64], b[64];
    fu_dim_str(g, got, a, sizeof a);
    fu_dim_str(g, want, b, sizeof b);
    return fu_node_fail(err, g, n, "%s is %s, expected %s", what, a, b);
}

/* Shape of X: batch, heads, seq, head_dim and strides from rank and layout. */
static int plan_x(const fu_graph *g, const fu_node *n, rope_plan *p, fu_err *err) {
    const fu_value *x = &g->values[n->in[0]];
    if (x->dtype != FU_F32) return fu_node_fail(err, g, n, "X must be float32 (got %s)", fu_dtype_name(x->dtype));
    const char *layout = fu_attr_string(n, "layout", "BHSD");
    int bshd = strcmp(layout, "BSHD") == 0;
    if (!bshd && strcmp(layout, "BHSD") != 0) {
        char s[64];
        fu_sanitize(layout, s, sizeof s);
        return fu_node_fail(err, g, n, "layout must be \"BHSD\" or \"BSHD\" (got \"%s\")", s);
    }
    int64_t num_heads = fu_attr_int(n, "num_heads", 0);
    fu_dim d;
    if (x->rank == 4) {
        p->batch = x->shape[0];
        p->heads = x->shape[bshd ? 2 : 1];
        p->seq = x->shape[bshd ? 1 : 2];
        d = x->shape[3];
        if (num_heads > 0 && fu_dim_is_const(p->heads) && p->heads.coef != num_heads)
            return fu_node_fail(err, g, n, "num_heads is %lld but X has %lld heads", (long long)num_heads,
                                (long long)p->heads.coef);
    } else if (x->rank == 3) {
        if (fu_node_attr(n, "layout"))
            return fu_node_fail(err, g, n, "layout applies to 4-D X only (3-D X is [B, S, H*D])");
        if (num_heads <= 0) return fu_node_fail(err, g, n, "3-D X [B, S, H*D] needs num_heads > 0");
        p->batch = x->shape[0];
        p->seq = x->shape[1];
        p->heads = fu_dim_const(num_heads);
        if (fu_dim_div(x->shape[2], p->heads, &d))
            return fu_node_fail(err, g, n, "hidden size of X is not a multiple of num_heads %lld",
                                (long long)num_heads);
        bshd = 1;
    } else {
        return fu_node_fail(err, g, n, "X must be 3-D [B, S, H*D] or 4-D (got rank %d)", x->rank);
    }
    if (!fu_dim_is_const(d) || d.coef <= 0) return fu_node_fail(err, g, n, "head size of X must be static");
    p->head_dim = d.coef;
    fu_dim hd = fu_dim_const(p->head_dim);
    if (bshd) {
        p->stride_h = hd;
        p->stride_s = fu_dim_mul(p->heads, hd);
        p->stride_b = fu_dim_mul(p->seq, p->stride_s);
    } else {
        p->stride_s = hd;
        p->stride_h = fu_dim_mul(p->seq, hd);
        p->stride_b = fu_dim_mul(p->heads, p->stride_h);
    }
    return 0;
}

static int plan_positions(const fu_graph *g, const fu_node *n, rope_plan *p, fu_err *err) {
    p->has_positions = has_input(n, 3);
    if (!p->has_positions) return 0;
    const fu_value *pos = &g->values[n->in[3]];
    if (pos->dtype != FU_I64)
        return fu_node_fail(err, g, n, "position_ids must be int64 (got %s)", fu_dtype_name(pos->dtype));
    if (pos->rank == 1) return dims_differ(g, n, "length of position_ids", pos->shape[0], p->seq, err);
    if (pos->rank != 2) return fu_node_fail(err, g, n, "position_ids must be [B, S] or [S] (got rank %d)", pos->rank);
    if (dims_differ(g, n, "dim 1 of position_ids", pos->shape[1], p->seq, err)) return -1;
    if (fu_dim_is_one(pos->shape[0])) return 0;
    if (dims_differ(g, n, "dim 0 of position_ids", pos->shape[0], p->batch, err)) return -1;
    p->positions_per_batch = 1;
    return 0;
}

static int plan_angles(const fu_graph *g, const fu_node *n, rope_plan *p, fu_err *err) {
    if (has_input(n, 4)) {
        if (has_input(n, 1) || has_input(n, 2))
            return fu_node_fail(err, g, n, "with inv_freq (input 4), cos_cache and sin_cache must be omitted");
        const fu_value *f = &g->values[n->in[4]];
        if (f->dtype != FU_F32 || f->rank != 1)
            return fu_node_fail(err, g, n, "inv_freq must be a float32 vector");
        if (dims_differ(g, n, "length of inv_freq", f->shape[0], fu_dim_const(p->half), err)) return -1;
        p->angles = ANGLES_INV_FREQ;
        return 0;
    }
    if (!has_input(n, 1) || !has_input(n, 2))
        return fu_node_fail(err, g, n, "needs cos_cache and sin_cache, or inv_freq (input 4)");
    const fu_value *c = &g->values[n->in[1]], *s = &g->values[n->in[2]];
    if (c->dtype != FU_F32 || s->dtype != FU_F32)
        return fu_node_fail(err, g, n, "cos_cache and sin_cache must be float32");
    if (c->rank != s->rank) return fu_node_fail(err, g, n, "cos_cache and sin_cache differ in rank");
    for (int i = 0; i < c->rank; i++)
        if (!fu_dim_eq(c->shape[i], s->shape[i]))
            return fu_node_fail(err, g, n, "cos_cache and sin_cache differ in shape");
    if (c->rank < 2 || c->rank > 3) return fu_node_fail(err, g, n, "cos_cache must be 2-D or 3-D (got rank %d)", c->rank);
    if (dims_differ(g, n, "last dim of cos_cache", c->shape[c->rank - 1], fu_dim_const(p->half), err)) return -1;
    if (c->rank == 2) {
        /* [max_pos, half]: row = position_ids or pos_offset + s. */
        p->angles = ANGLES_CACHE_BY_POSITION;
        p->max_pos = c->shape[0];
        return 0;
    }
    if (p->has_positions)
        return fu_node_fail(err, g, n, "with position_ids the caches must be 2-D [max_pos, rotary_dim/2]");
    if (dims_differ(g, n, "dim 1 of cos_cache", c->shape[1], p->seq, err)) return -1;
    if (!fu_dim_is_one(c->shape[0])) {
        if (dims_differ(g, n, "dim 0 of cos_cache", c->shape[0], p->batch, err)) return -1;
        p->cache_per_batch = 1;
    }
    p->angles = ANGLES_CACHE_PER_ROW;
    p->max_pos = p->seq;
    return 0;
}

static int rope_plan_make(const fu_graph *g, const fu_node *n, rope_plan *p, fu_err *err) {
    memset(p, 0, sizeof *p);
    if (fu_require_input(g, n, 0, FU_ANY, err)) return -1;
    if (plan_x(g, n, p, err)) return -1;
    int64_t interleaved = fu_attr_int(n, "interleaved", 0);
    if (interleaved != 0 && interleaved != 1)
        return fu_node_fail(err, g, n, "interleaved must be 0 or 1 (got %lld)", (long long)interleaved);
    p->interleaved = (int)interleaved;
    int64_t rot = fu_attr_int(n, "rotary_embedding_dim", 0);
    if (rot == 0) rot = p->head_dim;
    if (rot < 2 || rot > p->head_dim || rot % 2)
        return fu_node_fail(err, g, n, "rotary_embedding_dim %lld must be even and in [2, head size %lld]",
                            (long long)rot, (long long)p->head_dim);
    p->rot_dim = rot;
    p->half = rot / 2;
    if (plan_positions(g, n, p, err) || plan_angles(g, n, p, err)) return -1;
    return 0;
}

static int rope_infer(fu_graph *g, fu_node *n, fu_err *err) {
    rope_plan p;
    if (rope_plan_make(g, n, &p, err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    fu_dim shape[FU_MAX_RANK];
    memcpy(shape, x->shape, sizeof(fu_dim) * (size_t)x->rank);
    fu_set_output(g, n, 0, FU_F32, x->rank, shape);
    return 0;
}

static int rope_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    rope_plan p;
    if (rope_plan_make(g, n, &p, err)) return -1;
    int node_number = 1 + (int)(n - g->nodes);
    char X[320], Y[320], B[64], H[64], S[64], sb[64], sh[64], ss[64];
    snprintf(X, sizeof X, "%s", fu_emit_ptr(e, n->in[0]));
    snprintf(Y, sizeof Y, "%s", fu_emit_ptr(e, n->out[0]));
    snprintf(B, sizeof B, "%s", fu_emit_dim(e, p.batch));
    snprintf(H, sizeof H, "%s", fu_emit_dim(e, p.heads));
    snprintf(S, sizeof S, "%s", fu_emit_dim(e, p.seq));
    snprintf(sb, sizeof sb, "%s", fu_emit_dim(e, p.stride_b));
    snprintf(sh, sizeof sh, "%s", fu_emit_dim(e, p.stride_h));
    snprintf(ss, sizeof ss, "%s", fu_emit_dim(e, p.stride_s));

    char pos[320] = "NULL", pos_stride[64] = "0", cos[320] = "NULL", sin[320] = "NULL", max_pos[64] = "0",
         inv_freq[320] = "NULL", amplitude[64] = "1.0f";
    if (p.has_positions) {
        snprintf(pos, sizeof pos, "%s", fu_emit_ptr(e, n->in[3]));
        if (p.positions_per_batch) snprintf(pos_stride, sizeof pos_stride, "%s", S);
    }
    if (p.angles == ANGLES_INV_FREQ) {
        snprintf(inv_freq, sizeof inv_freq, "%s", fu_emit_ptr(e, n->in[4]));
        char lit[48];
        fu_float_literal(fu_attr_float(n, "amplitude", 1.0), lit, sizeof lit);
        snprintf(amplitude, sizeof amplitude, "(float)%s", lit);
    } else {
        snprintf(cos, sizeof cos, "%s", fu_emit_ptr(e, n->in[1]));
        snprintf(sin, sizeof sin, "%s", fu_emit_ptr(e, n->in[2]));
        snprintf(max_pos, sizeof max_pos, "%s", fu_emit_dim(e, p.max_pos));
    }
    /* Per-row caches are addressed by s alone (pos_offset 0); ONNX's
     * row (b, s) with a batch of caches takes one call per batch. */
    long long pos_offset = p.angles == ANGLES_CACHE_PER_ROW ? 0 : (long long)fu_attr_int(n, "pos_offset", 0);
    int layout = p.interleaved ? 1 : 0;   /* FU_RT_ROPE_INTERLEAVED : FU_RT_ROPE_ROTATE_HALF */
    if (p.cache_per_batch) {
        char row[64];
        snprintf(row, sizeof row, "%s", fu_emit_dim(e, fu_dim_mul(p.seq, fu_dim_const(p.half))));
        fu_emitf(e, "for (int64_t b = 0; b < %s; b++)", B);
        fu_emitf(e, "    if (fu_rt_rope_f32(%s + b * %s, %s + b * %s, 1, %s, %s, %lld, %lld, %s, %s, %s, %s, %s, "
                    "%s, %d, NULL, 0, 0, %s + b * %s, %s + b * %s, %s, NULL, 1.0f)) return %d;",
                 X, sb, Y, sb, H, S, (long long)p.head_dim, (long long)p.rot_dim, sb, sh, ss, sb, sh, ss, layout,
                 cos, row, sin, row, max_pos, node_number);
    } else {
        fu_emitf(e, "if (fu_rt_rope_f32(%s, %s, %s, %s, %s, %lld, %lld, %s, %s, %s, %s, %s, %s, %d, %s, %s, "
                    "%lld, %s, %s, %s, %s, %s)) return %d;",
                 X, Y, B, H, S, (long long)p.head_dim, (long long)p.rot_dim, sb, sh, ss, sb, sh, ss, layout, pos,
                 pos_stride, pos_offset, cos, sin, max_pos, inv_freq, amplitude, node_number);
    }
    (void)err;
    return 0;
}

/* min_in 1: cos_cache and sin_cache may be omitted ("") when inv_freq is
 * given; rope_plan_make checks which inputs are required. */
const fu_op fu_op_RotaryEmbedding = {
    .name = "RotaryEmbedding", .min_in = 1, .max_in = 5, .min_out = 1, .max_out = 1,
    .infer = rope_infer, .emit = rope_emit,
    .doc = "Rotates pairs of X's first rotary_embedding_dim channels by the angles of each position (cos/sin "
           "caches, or fusec's inv_freq input 4); X is 4-D [B, H, S, D] / [B, S, H, D] or 3-D [B, S, H*D]. ONNX "
           "RotaryEmbedding-23; inputs: X, cos_cache, sin_cache, position_ids (optional), inv_freq (fusec, "
           "optional; then the caches are omitted). Contract: docs/fusions.md.",
    .dtypes = "X, cos_cache, sin_cache, inv_freq: float32; position_ids: int64",
    .attrs = "interleaved (0): 0 rotates the two halves, 1 adjacent pairs\n"
             "rotary_embedding_dim (0: the head size): even, at most the head size\n"
             "num_heads (0): required for 3-D X; checked against X's heads for 4-D\n"
             "layout (\"BHSD\", fusec, 4-D X only): \"BHSD\" or \"BSHD\"\n"
             "pos_offset (0, fusec): added to the position s when position_ids is absent (not for 3-D per-row "
             "caches)\n"
             "amplitude (1.0, fusec): scales cos and sin computed from inv_freq",
};
