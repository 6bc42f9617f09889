/* Fusion rule "rotary_embedding": the rotate-half RoPE that HF Llama/Qwen
 * and NeoX exporters produce,
 *
 *     out = x * cos + rotate_half(x) * sin,
 *     rotate_half(x) = Concat(Neg(x[..., d/2:]), x[..., :d/2])   (last axis)
 *
 * becomes one RotaryEmbedding node (ops/rotary.c). With partial rotation
 * the anchor is Concat(rope(x[..., :rot]), x[..., rot:]) (Slices or a Split)
 * and the fused node gets rotary_embedding_dim = rot. The interleaved (GPT-J)
 * spelling rotates pairs (2i, 2i+1) and sets interleaved = 1:
 *
 *     rotated = Reshape(Concat(Unsqueeze(-x_odd, -1), Unsqueeze(x_even, -1)), [.., d])
 *
 * x_even/x_odd taken from x viewed as [.., d/2, 2] (Gather or Slice of
 * index 0/1 on the last axis) or as x[..., 0::2] / x[..., 1::2]; its cos/sin
 * repeat each value twice in place instead of cat(c, c). Neg is also
 * spelled Mul(v, -1).
 *
 * cos and sin are traced back (in C: the chains vary in length) to
 *   - computed angles: Cos/Sin(Concat(freqs, freqs)) [* amplitude], freqs =
 *     positions (x) inv_freq (Mul, MatMul, or Transpose(MatMul) as HF
 *     writes it). The fused node takes inv_freq and the positions
 *     (position_ids, or pos_offset + s for a Range), so the whole cos/sin
 *     subgraph dies once every rope using it is fused;
 *   - a table: a constant Gathered by position ids, Sliced from a row
 *     offset, or folded and indexed by s. The fused node takes the first
 *     half of its columns as new constants.
 * cos/sin broadcast over heads as [.., 1, S, D] (x [B, H, S, D]) or
 * [.., S, 1, D] (x [B, S, H, D], fused with layout "BSHD"). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fusion.h"

enum { X = 1, COS, SIN, ROT, PART_A, PART_B, PASS, CORE, NEG_A, NEG_B };

/* ---- patterns ------------------------------------------------------------ */

/* A negation, Neg(p) or p * -1, is bound to slot `neg`. */
#define NEG(neg, p) EITHER("negation", CAP(neg, OP(Neg, p)), CAP(neg, OPC(Mul, p, SCALAR(-1, "factor"))))
#define MAYBE_NEG(neg, p) EITHER("half", NEG(neg, p), p)
#define ROTATE_HALF OP(Concat, MAYBE_NEG(NEG_A, CAP(PART_A, OPF(Slice, FU_PAT_NEAR, VAL(X)))), \
                       MAYBE_NEG(NEG_B, CAP(PART_B, OPF(Slice, FU_PAT_NEAR, VAL(X)))))
/* One element of the interleaved pairs: x[..., k::2], or x viewed as
 * [.., d/2, 2] then Gather(k) or Slice([k, k+1)) (+ Squeeze). */
#define PAIR_ELEMENT(slot)                                                                            \
    CAP(slot, EITHER("pair element", OP(Gather, OP(Reshape, VAL(X)), ANY), OP(Slice, VAL(X)),          \
                     OP(Slice, OP(Reshape, VAL(X))), OP(Squeeze, OP(Slice, OP(Reshape, VAL(X))))))
#define PAIR(slot, neg) EITHER("pair", OP(Unsqueeze, MAYBE_NEG(neg, PAIR_ELEMENT(slot))), \
                             NEG(neg, OP(Unsqueeze, PAIR_ELEMENT(slot))), MAYBE_NEG(neg, PAIR_ELEMENT(slot)))
#define INTERLEAVED OP(Reshape, OP(Concat, PAIR(PART_A, NEG_A), PAIR(PART_B, NEG_B)))
/* The rotation first: it binds X, which x * cos must then multiply. */
#define ROPE OPC(Add, OPC(Mul, CAP(ROT, EITHER("rotation", ROTATE_HALF, INTERLEAVED)), VAL(SIN)), \
                 OPC(Mul, VAL(X), VAL(COS)))

static const fu_pat *const patterns[] = {
    QUIET(OP(Concat, CAP(CORE, ROPE), VAL(PASS))),  /* partial rotation */
    ROPE,
    NULL,
};

/* ---- shapes and slices ------------------------------------------------------ */

static fu_dim last_dim(const fu_graph *g, int v) { return g->values[v].shape[g->values[v].rank - 1]; }

static int last_axis(const fu_graph *g, const fu_node *n, int64_t fallback) {
    int rank = g->values[n->out[0]].rank;
    int64_t axis = fu_attr_int(n, "axis", fallback);
    return rank >= 1 && (axis == -1 || axis == rank - 1);
}

/* Slice node cutting only the last axis with a positive constant step: its
 * start (clamped), the result's length (-1 if symbolic) and the step. */
static int slice_last(const fu_graph *g, int node, int64_t *start, int64_t *len, int64_t *step) {
    if (node < 0 || g->nodes[node].op_id != FU_OP_Slice || g->nodes[node].n_in < 3) return 0;
    const fu_node *n = &g->nodes[node];
    const fu_value *x = &g->values[n->in[0]], *y = &g->values[n->out[0]];
    int rank = x->rank, found = 0, n_starts, n_axes, n_steps = 0;
    int64_t starts[FU_MAX_RANK], axes[FU_MAX_RANK], steps[FU_MAX_RANK];
    if (rank < 1 || y->rank != rank || !fu_m_ints(g, n->in[1], starts, FU_MAX_RANK, &n_starts)) return 0;
    n_axes = n_starts;
    for (int i = 0; i < n_axes; i++) axes[i] = i;
    if (n->n_in > 3 && n->in[3] >= 0 && (!fu_m_ints(g, n->in[3], axes, FU_MAX_RANK, &n_axes) || n_axes != n_starts))
        return 0;
    if (n->n_in > 4 && n->in[4] >= 0 && (!fu_m_ints(g, n->in[4], steps, FU_MAX_RANK, &n_steps) || n_steps != n_starts))
        return 0;
    *step = 1;
    for (int i = 0; i < n_axes; i++) {
        int64_t a = axes[i] < 0 ? axes[i] + rank : axes[i], st = n_steps ? steps[i] : 1;
        if (a == rank - 1 && st >= 1 && fu_dim_is_const(x->shape[a])) {
            int64_t d = x->shape[a].coef, s = starts[i] < 0 ? starts[i] + d : starts[i];
            *start = s < 0 ? 0 : s > d ? d : s;
            *len = fu_dim_is_const(y->shape[a]) ? y->shape[a].coef : -1;
            *step = st;
            found = 1;
        } else if (a < 0 || a >= rank || st != 1 || !fu_dim_eq(x->shape[a], y->shape[a])) {
            return 0;
        }
    }
    return found;
}

/* `pairs` is `flat` [.., d] viewed as [.., d/2, 2] (either way round). */
static int pairs_of(const fu_value *flat, const fu_value *pairs) {
    return pairs->rank >= 2 && flat->rank == pairs->rank - 1 && fu_dim_is(pairs->shape[pairs->rank - 1], 2) &&
           fu_dim_is_const(pairs->shape[pairs->rank - 2]) &&
           fu_dim_is(flat->shape[flat->rank - 1], 2 * pairs->shape[pairs->rank - 2].coef);
}

/* Node r is a Reshape viewing x as [.., d/2, 2]. */
static int pairs_view(const fu_graph *g, int r) {
    const fu_node *n = r >= 0 ? &g->nodes[r] : NULL;
    return n && n->op_id == FU_OP_Reshape && pairs_of(&g->values[n->in[0]], &g->values[n->out[0]]);
}

/* The index k (0 or 1) of pair element node e, or -1. */
static int pair_index(const fu_graph *g, int e) {
    const fu_node *n = &g->nodes[e];
    int64_t start, len, step;
    double k;
    if (n->op_id == FU_OP_Gather) {
        int rank = g->values[n->in[0]].rank, r = g->values[n->in[0]].producer;
        if (!pairs_view(g, r) || g->values[n->in[1]].rank != 0 || !fu_m_const_scalar(g, n->in[1], &k) ||
            (k != 0 && k != 1 && k != -1 && k != -2))
            return -1;
        int64_t axis = fu_attr_int(n, "axis", 0);
        return (axis == -1 || axis == rank - 1) ? (int)(k < 0 ? k + 2 : k) : -1;
    }
    if (n->op_id == FU_OP_Squeeze) {
        int in = n->in[0];
        if (g->values[in].rank != g->values[n->out[0]].rank + 1 || !fu_dim_is(last_dim(g, in), 1)) return -1;
        e = g->values[in].producer;
    }
    if (!slice_last(g, e, &start, &len, &step) || (start != 0 && start != 1)) return -1;
    int src = g->nodes[e].in[0], reshape = g->values[src].producer;
    if (step == 2 && n->op_id != FU_OP_Squeeze)  /* x[..., k::2] */
        return fu_dim_is_const(last_dim(g, src)) && len == last_dim(g, src).coef / 2 ? (int)start : -1;
    return step == 1 && len == 1 && pairs_view(g, reshape) ? (int)start : -1;
}

/* ---- the rotation ------------------------------------------------------------- */

typedef struct {
    int x, x_full;                /* the tensor rotated; the fused node's X */
    int64_t rot_dim, head_dim;
    int interleaved, bshd;
} rope;

static int check_rotation(const fu_graph *g, const fu_match *m, rope *r, char *why, size_t n) {
    const fu_value *x = &g->values[m->v[X]];
    const fu_node *rot = &g->nodes[m->node[ROT]];
    r->x = r->x_full = m->v[X];
    r->interleaved = rot->op_id == FU_OP_Reshape;
    if (x->rank != 4 || !fu_dim_is_const(x->shape[3]) || x->dtype != FU_F32 ||
        !fu_dim_eq(last_dim(g, m->v[ROT]), x->shape[3]))
        return snprintf(why, n, "rotated tensor is not a float32 4-D tensor with a static head size"), 0;
    int64_t d = r->rot_dim = r->head_dim = x->shape[3].coef, half = d / 2;
    if (r->interleaved) {
        int concat = g->values[rot->in[0]].producer, ka = pair_index(g, m->node[PART_A]), kb = pair_index(g, m->node[PART_B]);
        const fu_node *cn = &g->nodes[concat];
        const fu_value *st = &g->values[rot->in[0]];
        if (cn->n_in != 2 || !last_axis(g, cn, 0) || !fu_dim_is(st->shape[st->rank - 1], 2) || ka < 0 || kb < 0) return 0;
        int na = m->v[NEG_A] >= 0, nb = m->v[NEG_B] >= 0;
        if (ka == 1 && na == 1 && kb == 0 && nb == 0) return 1;
        if (ka == 0 && na == 0 && kb == 1 && nb == 1)
            return snprintf(why, n, "pairs in the wrong order: the interleaved rotation stacks (-x_odd, x_even), "
                                    "this stacks (x_even, -x_odd)"), 0;
        return snprintf(why, n, na + nb == 0 ? "interleaved rotation has no Neg on x_odd"
                                             : "interleaved rotation does not stack (-x[..., 1::2], x[..., 0::2])"), 0;
    }
    int64_t start[2], len[2], step;
    if (rot->n_in != 2 || !last_axis(g, rot, 0) || !slice_last(g, m->node[PART_A], &start[0], &len[0], &step) || step != 1 ||
        !slice_last(g, m->node[PART_B], &start[1], &len[1], &step) || step != 1)
        return 0;
    int neg0 = m->v[NEG_A] >= 0, neg1 = m->v[NEG_B] >= 0;
    if (d % 2 || start[0] != half || len[0] != d - half || start[1] != 0 || len[1] != half) {
        if (neg1 && !neg0 && start[0] == 0 && start[1] == half)
            return snprintf(why, n, "Neg on the wrong half: rotate_half negates x[..., d/2:], which comes first"), 0;
        return snprintf(why, n, "Slice not at d/2: rotate_half takes [%lld, +%lld) and [%lld, +%lld) of head size %lld",
                        (long long)start[0], (long long)len[0], (long long)start[1], (long long)len[1], (long long)d), 0;
    }
    if (!neg0 || neg1)
        return snprintf(why, n, neg1 ? "Neg on the wrong half: rotate_half negates x[..., d/2:], which comes first"
                                     : "rotate_half has no Neg on x[..., d/2:]"), 0;
    return 1;
}

/* Partial rotation: X = x_full[.., :rot] and PASS = x_full[.., rot:]. */
static int check_partial(const fu_graph *g, const fu_match *m, rope *r) {
    int a = fu_m_producer(g, m->v[X], -1), b = fu_m_producer(g, m->v[PASS], -1), full;
    int64_t s0, l0, s1, l1, step0, step1;
    if (a < 0 || b < 0 || g->nodes[m->anchor].n_in != 2 || !last_axis(g, &g->nodes[m->anchor], 0)) return 0;
    if (g->nodes[a].op_id == FU_OP_Split) {
        const fu_node *s = &g->nodes[a];
        if (a != b || s->n_out != 2 || s->out[0] != m->v[X] || s->out[1] != m->v[PASS] || !last_axis(g, s, 0)) return 0;
    } else if (!slice_last(g, a, &s0, &l0, &step0) || !slice_last(g, b, &s1, &l1, &step1) || step0 != 1 ||
               step1 != 1 || g->nodes[a].in[0] != g->nodes[b].in[0] || s0 != 0 || s1 != l0) {
        return 0;
    }
    full = g->nodes[a].in[0];
    const fu_value *f = &g->values[full];
    if (f->rank != 4 || !fu_dim_is_const(f->shape[3]) || !fu_dim_is_const(last_dim(g, m->v[PASS])) ||
        f->shape[3].coef != r->head_dim + last_dim(g, m->v[PASS]).coef)
        return 0;
    r->x_full = full;
    r->head_dim = f->shape[3].coef;
    return 1;
}

/* cos/sin shapes against x, and the layout: the one broadcast axis of cos
 * that is not 1 is the sequence axis. */
static int pick_layout(const fu_graph *g, int cos_v, int sin_v, rope *r, char *why, size_t n) {
    const fu_value *x = &g->values[r->x], *c = &g->values[cos_v], *s = &g->values[sin_v];
    if (c->rank != s->rank || c->rank < 1 || c->rank > 4)
        return snprintf(why, n, "cos/sin have ranks %d and %d (1 to 4 supported)", c->rank, s->rank), 0;
    if (!fu_value_same_shape(c, s)) return snprintf(why, n, "cos and sin have different shapes"), 0;
    fu_dim cd[4];
    for (int i = 0; i < 4; i++) cd[i] = i >= 4 - c->rank ? c->shape[i - (4 - c->rank)] : fu_dim_const(1);
    if (!fu_dim_eq(cd[3], x->shape[3])) return snprintf(why, n, "cos/sin last dim differs from the rotated head size"), 0;
    if (!fu_dim_is(cd[0], 1) && !fu_dim_eq(cd[0], x->shape[0])) return snprintf(why, n, "cos/sin batch dim differs from x's"), 0;
    int on1 = !fu_dim_is(cd[1], 1), on2 = !fu_dim_is(cd[2], 1);
    if (on1 && on2) return snprintf(why, n, "cos/sin vary along both axes 1 and 2 (no heads axis to broadcast over)"), 0;
    if (on2 || (!on1 && fu_dim_is(x->shape[2], 1))) r->bshd = 0;
    else if (on1 || fu_dim_is(x->shape[1], 1)) r->bshd = 1;
    else return snprintf(why, n, "cos/sin do not vary along a sequence axis"), 0;
    if ((on1 || on2) && !fu_dim_eq(cd[r->bshd ? 1 : 2], x->shape[r->bshd ? 1 : 2]))
        return snprintf(why, n, "cos/sin sequence length differs from x's"), 0;
    return 1;
}

/* ---- where cos and sin come from ---------------------------------------------- */

enum { POS_COUNTING, POS_IDS };   /* pos = offset + s, or pos = ids[b, s] */
enum { ANGLES_COMPUTED = 1, ANGLES_TABLE };
enum { DUP_NONE, DUP_HALVES, DUP_PAIRS };   /* cat(c, c), or c0 c0 c1 c1 .. */

typedef struct {
    int form, trig;              /* trig: +1 Cos, -1 Sin (computed) */
    int doubled;                 /* the duplication met on the way */
    double amplitude, angle_scale;
    int inv_freq, table;         /* constants */
    int64_t rows, width;
    int pos_kind, ids;
    int64_t offset;
} angles;

static int is_view_or_cast(const fu_graph *g, int node) {
    int op = g->nodes[node].op_id;
    return op == FU_OP_Cast || op == FU_OP_Unsqueeze || op == FU_OP_Squeeze || op == FU_OP_Reshape ||
           op == FU_OP_Expand || op == FU_OP_Identity;
}

/* Positions back through casts, views and constant offsets to a Range or a
 * constant run (start, start+1, ..), else the int64 ids nearest the angles. */
static int walk_positions(const fu_graph *g, int v, angles *a, char *why, size_t n) {
    int64_t offset = 0;
    int ids = -1;
    double c, delta;
    for (int steps = 0; steps < 32 && v >= 0; steps++) {
        const fu_value *val = &g->values[v];
        if (ids < 0 && val->dtype == FU_I64 && (val->rank == 1 || val->rank == 2)) ids = v;
        int node = fu_m_producer(g, v, -1);
        const fu_node *nd = node >= 0 ? &g->nodes[node] : NULL;
        int64_t numel, run = 1;
        if (!nd) {
            if (val->kind != FU_VAL_CONST || !val->data || (val->dtype != FU_I64 && val->dtype != FU_I32) ||
                fu_value_numel_const(val, &numel) || numel < 1)
                break;
            for (int64_t i = 1; i < numel && run; i++) run = fu_const_get_i(val, i) == fu_const_get_i(val, 0) + i;
            if (!run) break;
            a->offset = offset + fu_const_get_i(val, 0);
            return a->pos_kind = POS_COUNTING, 1;
        }
        if (is_view_or_cast(g, node)) {
            v = nd->in[0];
        } else if (nd->op_id == FU_OP_Add && nd->n_in == 2 &&
                   (fu_m_const_scalar(g, nd->in[0], &c) || fu_m_const_scalar(g, nd->in[1], &c)) && c == floor(c)) {
            offset += (int64_t)c;
            v = fu_m_const_scalar(g, nd->in[0], &c) ? nd->in[1] : nd->in[0];
        } else if (nd->op_id == FU_OP_Range && fu_m_const_scalar(g, nd->in[0], &c) &&
                   fu_m_const_scalar(g, nd->in[2], &delta) && delta == 1.0 && c == floor(c)) {
            a->offset = offset + (int64_t)c;
            return a->pos_kind = POS_COUNTING, 1;
        } else {
            break;
        }
    }
    if (ids < 0)
        return snprintf(why, n, "positions are neither a Range with constant start and step 1 nor int64 position ids"), 0;
    a->pos_kind = POS_IDS;
    a->ids = ids;
    return 1;
}

/* A float constant of `half` values behind casts and views. */
static int inv_freq_const(const fu_graph *g, int v, int64_t half) {
    int node;
    while (v >= 0 && (node = fu_m_producer(g, v, -1)) >= 0) {
        if (!is_view_or_cast(g, node)) return -1;
        v = g->nodes[node].in[0];
    }
    const fu_value *val = v >= 0 ? &g->values[v] : NULL;
    int64_t numel;
    return val && val->kind == FU_VAL_CONST && val->data && fu_dtype_is_float(val->dtype) &&
                   !fu_value_numel_const(val, &numel) && numel == half ? v : -1;
}

/* freqs = positions (x) inv_freq: Mul or MatMul, optionally Transposed over
 * its last two axes (HF: (inv_freq[:, None] @ pos[None, :]).transpose). */
static int walk_freqs(const fu_graph *g, int v, int64_t half, angles *a, char *why, size_t n) {
    int node = fu_m_producer(g, v, -1), transposed = node >= 0 && g->nodes[node].op_id == FU_OP_Transpose;
    if (transposed) {
        int r = g->values[v].rank;
        int64_t perm[FU_MAX_RANK];
        for (int i = 0; i < r; i++) perm[i] = i < r - 2 ? i : i == r - 2 ? r - 1 : r - 2;
        if (r < 2 || fu_m_transpose(g, v, perm, r) < 0)
            return snprintf(why, n, "the angles' Transpose does not swap the last two axes"), 0;
        node = fu_m_producer(g, g->nodes[node].in[0], -1);
    }
    int matmul = node >= 0 && g->nodes[node].op_id == FU_OP_MatMul;
    if (node < 0 || (!matmul && g->nodes[node].op_id != FU_OP_Mul))
        return snprintf(why, n, "the angles are not positions times inv_freq (Mul or MatMul)"), 0;
    /* inv_freq runs along the last axis, or the one before when transposed;
     * MatMul is not commutative: [S,1] @ [1,half], or [half,1] @ [1,S]. */
    int from_end = transposed ? 2 : 1;
    for (int k = 0; k < 2; k++) {
        if (matmul && k != (transposed ? 0 : 1)) continue;
        int fv = g->nodes[node].in[k], pv = g->nodes[node].in[1 - k];
        const fu_value *f = &g->values[fv], *p = &g->values[pv];
        int iv = inv_freq_const(g, fv, half);
        if (iv < 0 || f->rank < from_end || !fu_dim_is(f->shape[f->rank - from_end], half) || p->rank < 2 ||
            !fu_dim_is(p->shape[p->rank - from_end], 1))
            continue;
        a->inv_freq = iv;
        return walk_positions(g, pv, a, why, n);
    }
    return snprintf(why, n, "no operand of the angles' %s is an inv_freq constant of %lld values", g->nodes[node].op,
                    (long long)half), 0;
}

/* A constant table [.., rows, width], at most one dim > 1 before the last. */
static int table_shape(const fu_graph *g, int v, angles *a, char *why, size_t n) {
    const fu_value *t = &g->values[v];
    int64_t numel;
    int big = 0;
    if (!fu_dtype_is_float(t->dtype) || t->rank < 1 || fu_value_numel_const(t, &numel))
        return snprintf(why, n, "cos/sin table is not a static float tensor"), 0;
    for (int i = 0; i + 1 < t->rank; i++) big += !fu_dim_is(t->shape[i], 1);
    if (big > 1) return snprintf(why, n, "cos/sin table varies along more than one axis besides the last"), 0;
    a->form = ANGLES_TABLE;
    a->table = v;
    a->width = t->shape[t->rank - 1].coef;
    a->rows = a->width ? numel / a->width : 0;
    return 1;
}

/* Slice of a constant 2-D table along axis 0 only, constant start. */
static int const_rows_slice(const fu_graph *g, int v, int64_t *start) {
    int node = fu_m_producer(g, v, FU_OP_Slice);
    const fu_node *s = node >= 0 ? &g->nodes[node] : NULL;
    int64_t starts[1], axes[1] = {0};
    int count, n_axes = 1;
    if (!s || s->n_in < 3 || s->n_in > 4 || !fu_m_ints(g, s->in[1], starts, 1, &count) ||
        (s->n_in > 3 && s->in[3] >= 0 && !fu_m_ints(g, s->in[3], axes, 1, &n_axes)) || axes[0] != 0)
        return -1;
    const fu_value *t = &g->values[s->in[0]];
    *start = starts[0] < 0 && fu_dim_is_const(t->shape[0]) ? starts[0] + t->shape[0].coef : starts[0];
    return t->kind == FU_VAL_CONST && t->data && t->rank == 2 ? s->in[0] : -1;
}

/* Reshape [.., h, 2] -> [.., 2h] of c[..., None] Expanded, Tiled or
 * Concatenated to two copies: c, else -1. */
static int pairwise_duplicate(const fu_graph *g, int node) {
    if (g->nodes[node].op_id != FU_OP_Reshape) return -1;
    const fu_value *a = &g->values[g->nodes[node].in[0]];
    if (!pairs_of(&g->values[g->nodes[node].out[0]], a)) return -1;
    int p = fu_m_producer(g, g->nodes[node].in[0], -1), c[2] = {-1, -2};
    const fu_node *pn = p >= 0 ? &g->nodes[p] : NULL;
    int64_t reps[FU_MAX_RANK + 1];
    int n_reps, ok = pn && (pn->op_id == FU_OP_Expand || pn->op_id == FU_OP_Tile || (pn->op_id == FU_OP_Concat && last_axis(g, pn, 0)));
    if (ok && pn->op_id == FU_OP_Tile) {
        ok = pn->n_in == 2 && fu_m_ints(g, pn->in[1], reps, FU_MAX_RANK + 1, &n_reps) && n_reps == a->rank;
        for (int i = 0; ok && i < n_reps; i++) ok = reps[i] == (i == n_reps - 1 ? 2 : 1);
    }
    for (int k = 0; ok && k < (pn->op_id == FU_OP_Concat ? 2 : 1); k++) {
        int u = fu_m_producer(g, pn->in[k], FU_OP_Unsqueeze);
        const fu_value *in = u >= 0 ? &g->values[g->nodes[u].in[0]] : NULL, *out = &g->values[pn->in[k]];
        if (in && out->rank == in->rank + 1 && fu_dim_is(out->shape[out->rank - 1], 1) &&
            fu_dim_eq(in->shape[in->rank - 1], out->shape[out->rank - 2]))
            c[k] = g->nodes[u].in[0];
    }
    return ok && c[0] >= 0 && (pn->op_id != FU_OP_Concat || c[0] == c[1]) ? c[0] : -1;
}

/* Traces the cos or sin value multiplied into the rope back to its source. */
static int walk_angles(const fu_graph *g, int v, int64_t half, angles *a, char *why, size_t n) {
    memset(a, 0, sizeof *a);
    a->amplitude = a->angle_scale = 1.0;
    for (int steps = 0; steps < 64 && v >= 0; steps++) {
        int node = fu_m_producer(g, v, -1), paired;
        double c;
        if (node < 0) {
            if (g->values[v].kind == FU_VAL_CONST && g->values[v].data && !a->trig)
                return a->pos_kind = POS_COUNTING, table_shape(g, v, a, why, n);  /* a folded table: row s is position s */
            return snprintf(why, n, "cos/sin come from graph input '%s'", fu_m_name(g, v)), 0;
        }
        const fu_node *nd = &g->nodes[node];
        if ((paired = pairwise_duplicate(g, node)) >= 0) {
            if (a->doubled) return snprintf(why, n, "cos/sin are duplicated twice along the last axis"), 0;
            a->doubled = DUP_PAIRS;
            v = paired;
        } else if (is_view_or_cast(g, node)) {
            if (g->values[nd->in[0]].rank < 1 || !fu_dim_eq(last_dim(g, nd->in[0]), last_dim(g, v)))
                return snprintf(why, n, "a %s on the cos/sin path changes the last axis", nd->op), 0;
            v = nd->in[0];
        } else if (nd->op_id == FU_OP_Mul && (fu_m_const_scalar(g, nd->in[0], &c) || fu_m_const_scalar(g, nd->in[1], &c))) {
            *(a->trig ? &a->angle_scale : &a->amplitude) *= c;
            v = fu_m_const_scalar(g, nd->in[0], &c) ? nd->in[1] : nd->in[0];
        } else if (nd->op_id == FU_OP_Concat && nd->n_in == 2 && last_axis(g, nd, 0)) {
            if (nd->in[0] != nd->in[1] || a->doubled) return snprintf(why, n, "cos/sin are not cat(c, c) along the last axis"), 0;
            a->doubled = DUP_HALVES;
            v = nd->in[0];
        } else if ((nd->op_id == FU_OP_Cos || nd->op_id == FU_OP_Sin) && !a->trig) {
            a->trig = nd->op_id == FU_OP_Cos ? 1 : -1;
            v = nd->in[0];
        } else if (a->trig) {
            if (!a->doubled) return snprintf(why, n, "the angles are not cat(freqs, freqs) nor freqs repeated pairwise"), 0;
            a->form = ANGLES_COMPUTED;
            return walk_freqs(g, v, half, a, why, n);
        } else if (nd->op_id == FU_OP_Gather && fu_attr_int(nd, "axis", 0) == 0) {
            int64_t start = 0;
            int table = nd->in[0], sliced = const_rows_slice(g, table, &start);
            if (sliced >= 0 && start == 0) table = sliced;   /* cache[:seq][ids] */
            const fu_value *t = &g->values[table];
            if (t->kind != FU_VAL_CONST || !t->data || t->rank != 2)
                return snprintf(why, n, "cos/sin are gathered from a tensor that is not a constant 2-D table"), 0;
            return table_shape(g, table, a, why, n) && walk_positions(g, nd->in[1], a, why, n);
        } else if ((paired = const_rows_slice(g, v, &a->offset)) >= 0) {
            a->pos_kind = POS_COUNTING;  /* cache[offset : offset + S] */
            return table_shape(g, paired, a, why, n);
        } else {
            return snprintf(why, n, "cos/sin come from an unsupported %s node", nd->op), 0;
        }
    }
    return snprintf(why, n, "cos/sin path is too long"), 0;
}

/* Each frequency's two columns are equal: i and half + i (DUP_HALVES) or
 * 2i and 2i + 1 (DUP_PAIRS). */
static int table_repeats(const fu_graph *g, const angles *a, int64_t half, int layout) {
    const fu_value *t = &g->values[a->table];
    for (int64_t r = 0; r < a->rows; r++)
        for (int64_t i = 0; i < half; i++) {
            int64_t x = layout == DUP_PAIRS ? 2 * i : i, y = layout == DUP_PAIRS ? 2 * i + 1 : half + i;
            if (fu_const_get_f(t, r * 2 * half + x) != fu_const_get_f(t, r * 2 * half + y)) return 0;
        }
    return 1;
}

static int row_is_zero(const fu_graph *g, const angles *a) {
    for (int64_t i = 0; i < a->width; i++)
        if (fu_const_get_f(&g->values[a->table], i) != 0.0) return 0;
    return 1;
}

static int compare_angles(const fu_graph *g, const rope *r, const angles *c, const angles *s, char *why, size_t n) {
    int64_t half = r->rot_dim / 2;
    int want = r->interleaved ? DUP_PAIRS : DUP_HALVES, other = r->interleaved ? DUP_HALVES : DUP_PAIRS;
    if (c->form != s->form) return snprintf(why, n, "cos and sin come from different kinds of source"), 0;
    if (c->pos_kind != s->pos_kind || (c->pos_kind == POS_COUNTING ? c->offset != s->offset : c->ids != s->ids))
        return snprintf(why, n, "cos and sin from different position sources"), 0;
    if (fabs(c->amplitude - s->amplitude) > 1e-6 * fabs(c->amplitude))
        return snprintf(why, n, "cos and sin have different amplitudes (%g, %g)", c->amplitude, s->amplitude), 0;
    if (c->pos_kind == POS_IDS) {
        const fu_value *p = &g->values[c->ids], *x = &g->values[r->x];
        fu_dim seq = x->shape[r->bshd ? 1 : 2];
        if (p->rank == 1 ? !fu_dim_eq(p->shape[0], seq)
                         : !fu_dim_eq(p->shape[1], seq) || !(fu_dim_is(p->shape[0], 1) || fu_dim_eq(p->shape[0], x->shape[0])))
            return snprintf(why, n, "position ids are not [B, S] for x's batch and sequence"), 0;
    }
    if ((c->doubled && c->doubled != want) || (s->doubled && s->doubled != want))
        return snprintf(why, n, r->interleaved ? "layouts mismatched: cos/sin duplicated half-wise (cat(c, c)) but the "
                                                 "rotation is interleaved (pairs 2i, 2i+1)"
                                               : "layouts mismatched: cos/sin duplicated pairwise (interleaved) but the "
                                                 "rotation is rotate-half"), 0;
    if (c->form == ANGLES_COMPUTED) {
        if (c->trig == -1 && s->trig == 1)
            return snprintf(why, n, "cos and sin swapped: x is multiplied by the Sin and rotate_half(x) by the Cos"), 0;
        if (c->trig != 1 || s->trig != -1)
            return snprintf(why, n, "x*cos and rotate_half(x)*sin are not a Cos and a Sin of the same angles"), 0;
        for (int64_t i = 0; i < half; i++)
            if (fu_const_get_f(&g->values[c->inv_freq], i) * c->angle_scale !=
                fu_const_get_f(&g->values[s->inv_freq], i) * s->angle_scale)
                return snprintf(why, n, "cos and sin use different inverse frequencies"), 0;
        return 1;
    }
    /* Tables: [rows, 2*half] in the rotation's layout, or [rows, half] when
     * the duplication follows the lookup. */
    int64_t width = c->doubled ? half : 2 * half;
    if (c->doubled != s->doubled || c->width != width || s->width != width || c->rows != s->rows)
        return snprintf(why, n, "cos/sin tables are not [positions, %lld] in the %s layout", (long long)width,
                        r->interleaved ? "interleaved" : "rotate-half"), 0;
    if (!c->doubled && (!table_repeats(g, c, half, want) || !table_repeats(g, s, half, want))) {
        if (table_repeats(g, c, half, other) && table_repeats(g, s, half, other))
            return snprintf(why, n, r->interleaved ? "layouts mismatched: cos/sin tables are cat(c, c) but the rotation "
                                                     "is interleaved (pairs 2i, 2i+1)"
                                                   : "layouts mismatched: cos/sin tables repeat each value pairwise but "
                                                     "the rotation is rotate-half"), 0;
        return snprintf(why, n, r->interleaved ? "cos/sin table pairs differ (not each value twice, as the interleaved "
                                                 "rotation needs)"
                                               : "cos/sin table halves differ (not the rotate-half cat(c, c) layout)"), 0;
    }
    if (c->rows > 0 && row_is_zero(g, c) && !row_is_zero(g, s))
        return snprintf(why, n, "cos and sin swapped: the cos table is 0 at position 0"), 0;
    const fu_value *x = &g->values[r->x];
    fu_dim seq = x->shape[r->bshd ? 1 : 2];
    if (c->pos_kind == POS_COUNTING && fu_dim_is_const(seq) && c->offset + seq.coef > c->rows)
        return snprintf(why, n, "cos/sin table has %lld rows, fewer than the positions used", (long long)c->rows), 0;
    return 1;
}

/* ---- check and rewrite ----------------------------------------------------------- */

typedef struct {
    rope r;
    angles cos, sin;
} rope_found;

_Static_assert(sizeof(rope_found) <= sizeof((fu_match *)0)->findings, "rope findings fit the match");

static int check(fu_fuse_ctx *c, fu_match *m, char *why, size_t n) {
    const fu_graph *g = c->g;
    rope_found *f = (rope_found *)m->findings;
    memset(f, 0, sizeof *f);
    if (!check_rotation(g, m, &f->r, why, n) || (m->variant == 0 && !check_partial(g, m, &f->r))) return 0;
    return pick_layout(g, m->v[COS], m->v[SIN], &f->r, why, n) &&
           walk_angles(g, m->v[COS], f->r.rot_dim / 2, &f->cos, why, n) &&
           walk_angles(g, m->v[SIN], f->r.rot_dim / 2, &f->sin, why, n) && compare_angles(g, &f->r, &f->cos, &f->sin, why, n);
}

/* A float32 constant with this shape and data: an identical existing one
 * (the q and k ropes of every layer share their angles), else a new one. */
static int shared_const(fu_graph *g, const char *base, int rank, const int64_t *shape, const float *data, fu_err *err) {
    size_t numel = 1;
    for (int k = 0; k < rank; k++) numel *= (size_t)shape[k];
    for (int v = 0; v < g->n_values; v++) {
        const fu_value *val = &g->values[v];
        int same = val->kind == FU_VAL_CONST && val->dtype == FU_F32 && val->rank == rank && val->data &&
                   val->nbytes == numel * sizeof(float);
        for (int k = 0; k < rank && same; k++) same = fu_dim_is(val->shape[k], shape[k]);
        if (same && memcmp(val->data, data, numel * sizeof(float)) == 0) return v;
    }
    return fu_graph_add_const(g, base, FU_F32, rank, shape, data, err);
}

/* Columns 0, step, .., (half-1)*step of each of the `rows` rows of constant
 * src (rows of `width`), times scale: one value per frequency, as a float32
 * [rows, half] constant ([half] when rank is 1). */
static int per_frequency(fu_graph *g, int src, int64_t rows, int64_t width, int64_t half, int64_t step, double scale,
                         int rank, const char *base, fu_err *err) {
    float *data = malloc(sizeof(float) * (size_t)(rows * half > 0 ? rows * half : 1));
    if (!data) return fu_fail(err, "out of memory while fusing");
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < half; i++)
            data[r * half + i] = (float)(fu_const_get_f(&g->values[src], r * width + i * step) * scale);
    int64_t shape[2] = {rows, half};
    int v = shared_const(g, base, rank, shape + 2 - rank, data, err);
    free(data);
    return v;
}

static int rewrite(fu_fuse_ctx *c, fu_match *m, fu_err *err) {
    fu_graph *g = c->g;
    const rope_found *f = (const rope_found *)m->findings;
    const rope *r = &f->r;
    const angles *a = &f->cos;
    int64_t half = r->rot_dim / 2;
    int inputs[5] = {r->x_full, -1, -1, a->pos_kind == POS_IDS ? a->ids : -1, -1}, n_inputs;
    if (a->form == ANGLES_COMPUTED) {
        inputs[4] = per_frequency(g, a->inv_freq, 1, half, half, 1, a->angle_scale, 1, "rope_inv_freq", err);
        n_inputs = 5;
    } else {
        int64_t step = r->interleaved && !a->doubled ? 2 : 1;
        for (int k = 0; k < 2; k++) {
            const angles *t = k ? &f->sin : &f->cos;
            inputs[1 + k] = per_frequency(g, t->table, t->rows, t->width, half, step, t->amplitude, 2,
                                          k ? "rope_sin" : "rope_cos", err);
            if (inputs[1 + k] < 0) return -1;
        }
        n_inputs = inputs[3] >= 0 ? 4 : 3;
    }
    int idx = n_inputs == 5 && inputs[4] < 0 ? -1 : fu_fuse_replace(c, m, FU_OP_RotaryEmbedding, inputs, n_inputs, err);
    if (idx < 0) return -1;
    fu_node *fused = &g->nodes[idx];
    int ok = 1;
    if (r->rot_dim != r->head_dim) ok &= fu_node_set_attr_int(fused, "rotary_embedding_dim", r->rot_dim) != NULL;
    if (r->interleaved) ok &= fu_node_set_attr_int(fused, "interleaved", 1) != NULL;
    if (a->form == ANGLES_COMPUTED && a->amplitude != 1.0) ok &= fu_node_set_attr_float(fused, "amplitude", a->amplitude) != NULL;
    if (a->pos_kind == POS_COUNTING && a->offset != 0) ok &= fu_node_set_attr_int(fused, "pos_offset", a->offset) != NULL;
    if (r->bshd) ok &= fu_node_set_attr_string(fused, "layout", "BSHD") != NULL;
    if (!ok) return fu_fail(err, "out of memory while fusing");
    fu_fuse_accept(c, m->anchor, "RotaryEmbedding (%s%s, %s, head size %lld%s%s)", r->interleaved ? "interleaved, " : "",
                   a->form == ANGLES_COMPUTED ? "angles from inv_freq" : "cos/sin tables",
                   a->pos_kind == POS_IDS ? "position_ids" : "positions offset + s", (long long)r->head_dim,
                   r->rot_dim != r->head_dim ? ", partial rotation" : "", r->bshd ? ", layout BSHD" : "");
    return 0;
}

const fu_fusion_rule fu_rule_rotary_embedding = {"rotary_embedding", patterns, check, rewrite};
