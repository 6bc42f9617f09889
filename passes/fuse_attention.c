/* Fusion rule "attention": scaled dot-product attention
 *   MatMul(Softmax(MatMul(Q, Kᵀ) * scale [+ mask], axis=-1), V)  ->  Attention
 * Anchor: the MatMul with V. The patterns accept (docs/fusions.md lists it all):
 *   - a scale on the scores (one Mul/Div by a constant scalar) and on Q, K or
 *     Kᵀ (any number), all multiplied into `scale`;
 *   - Kᵀ = Transpose(K, [0,1,3,2] / 3-D [0,2,1]) or Transpose(K_bshd, [0,2,3,1]);
 *   - K/V under HF repeat_kv (Unsqueeze -> Expand|Tile -> Reshape) or an
 *     Expand|Tile of one head, read un-repeated (kv_num_heads) when the
 *     repeat is the kernel's grouping and K and V agree, else as they are
 *     (a scaled V is read as it is);
 *   - Q/K/V = Transpose([B, L, H, D], [0,2,1,3]), read in place (qkv_layout BSHD);
 *   - a mask Add, or a masked fill Where(cond, scores, blocked) either way round;
 *   - 3-D scores [B, Lq, Lk]: one head on [B, L, D] tensors, the 3-D form.
 * The check proves a mask causal (then is_causal, with causal_align "end"
 * when Lq and Lk may differ: query i sees keys j <= i + Lk - Lq) as a constant, a Trilu of blocked values, a Where of
 * Range index comparisons (indices shifted by integer constants) or of
 * Equal(Trilu(non-zero), 0), or a causal mask times a Cast of a causal
 * condition, or else keeps it as attn_mask when it can be one;
 * a masked fill must be causal. Then K/V heads and all shapes must line up. */
#include <stdio.h>
#include <string.h>
#include "fusion.h"

/* Mask values at or below this are "blocked": exp(x - max) underflows to an
 * exact 0 in float for any realistic score, as for -inf. Exporters use -inf,
 * the dtype's lowest value, -1e9 or -10000. */
#define BLOCKED (-1e4)

/* Captures: the Q·Kᵀ MatMul, the score scale node, the mask or the masked
 * fill's condition; Q/K/V as read in BHSD or, under a head transpose, BSHD;
 * K/V above a repeat (R) and whether a repeat was matched (X). */
enum { QK = 1, SCN, MASK, COND, Q, QB, KR, KX, K, KB, VR, VX, V, VB };
enum { BHSD, BSHD };


/* v = Mul/Div(x, c) by a constant scalar c != 0 that keeps x's shape:
 * returns x and the factor in *f, else -1. */
static int scaled_by(const fu_graph *g, int v, double *f) {
    int p = fu_m_producer(g, v, -1), x = -1;
    if (p < 0 || g->nodes[p].n_in != 2 || g->nodes[p].in[0] < 0 || g->nodes[p].in[1] < 0) return -1;
    const fu_node *n = &g->nodes[p];
    int div = n->op_id == FU_OP_Div;
    if ((div || n->op_id == FU_OP_Mul) && fu_m_const_scalar(g, n->in[1], f)) x = n->in[0];
    else if (n->op_id == FU_OP_Mul && fu_m_const_scalar(g, n->in[0], f)) x = n->in[1];
    if (x < 0 || !fu_value_same_shape(&g->values[x], &g->values[v]) || (div && *f == 0)) return -1;
    if (div) *f = 1 / *f;
    return x;
}

/* Product of the scalings on the (matched) path from value `from` down to `to`. */
static double path_scale(const fu_graph *g, int from, int to) {
    double s = 1, f;
    for (int v = from, x, p; v != to && (p = fu_m_producer(g, v, -1)) >= 0; v = x)
        if ((x = scaled_by(g, v, &f)) >= 0) s *= f;
        else x = g->nodes[p].in[0];
    return s;
}

/* ---- patterns ------------------------------------------------------------------- */

/* WHERE tests, silent when they fail. */
#define WHERE_TEST(name, test)                                                             \
    static int name(const fu_graph *g, const fu_match *m, int v, char *why, size_t n) { \
        double x = 0;                                                                      \
        (void)m, (void)why, (void)n, (void)x;                                              \
        return test;                                                                       \
    }
#define PERM(...) (const int64_t[]){__VA_ARGS__}
WHERE_TEST(scaling, scaled_by(g, v, &x) >= 0)
WHERE_TEST(blocked_scalar, fu_m_const_scalar(g, v, &x) && x <= BLOCKED)
WHERE_TEST(swaps_heads, fu_m_transpose(g, v, PERM(0, 2, 1, 3), 4) >= 0)  /* [B, L, H, D] -> [B, H, L, D] */
WHERE_TEST(bshd_to_kt, fu_m_transpose(g, v, PERM(0, 2, 3, 1), 4) >= 0)   /* [B, L, H, D] -> [B, H, D, L] */
WHERE_TEST(swaps_last, fu_m_transpose(g, v, PERM(0, 1, 3, 2), 4) >= 0 || fu_m_transpose(g, v, PERM(0, 2, 1), 3) >= 0)

/* Nodes on the Q/K/V paths are SHARED: they stay while others read them. */
#define SH FU_PAT_SHARED
/* Object `self`: `inner` under any number of scalings (recursive). */
#define SCALED(self, inner)                                                                                  \
    static const fu_pat self = {                                                                             \
        .kind = FU_PAT_EITHER, .label = "scaled", .n_in = 3,                                                 \
        .in = {WHERE(scaling, OPF(Mul, FU_PAT_COMMUTE | SH, &self, SCALAR_ANY(0, "scale"))),                 \
               WHERE(scaling, OPF(Div, SH, &self, SCALAR_ANY(0, "scale"))), inner}}
#define HEAD_T(p) WHERE(swaps_heads, OPF(Transpose, SH, p))
/* HF repeat_kv, or an Expand/Tile of one kv head (repeat_ok checks which). */
#define UNSQ(p) EITHER("unsqueeze", OPF(Unsqueeze, SH, p), OPF(Reshape, SH, p))
#define REPEAT(p)                                                                                            \
    EITHER("repeat", OPF(Reshape, SH, EITHER("expand", OPF(Expand, SH, UNSQ(p)), OPF(Tile, SH, UNSQ(p)))),   \
           OPF(Expand, SH, p), OPF(Tile, SH, p))

SCALED(q_bshd, VAL(QB));
SCALED(q_path, EITHER("Q", HEAD_T(&q_bshd), VAL(Q)));
SCALED(k_bshd, VAL(KB));
SCALED(k_src, EITHER("K", HEAD_T(&k_bshd), VAL(K)));
SCALED(k_rep, CAP(KR, EITHER("K", CAP(KX, REPEAT(&k_src)), &k_src)));
/* ANY: not a transpose of K, a near miss the check names. */
SCALED(kt_path, EITHER("K^T", WHERE(swaps_last, OPF(Transpose, SH, &k_rep)),
                       WHERE(bshd_to_kt, OPF(Transpose, SH, &k_bshd)), ANY));
/* A scaled V stays a tensor of its own. */
#define V_SRC EITHER("V", HEAD_T(VAL(VB)), VAL(V))
#define V_PATH CAP(VR, EITHER("V", CAP(VX, REPEAT(V_SRC)), V_SRC))

#define QK_MATMUL CAP(QK, OPF(MatMul, FU_PAT_NEAR, QUIET(&q_path), QUIET(&kt_path)))
#define SCORES EITHER("scores", CAP(SCN, EITHER("scale", OPC(Mul, QK_MATMUL, ANY), OP(Div, QK_MATMUL, ANY))), QK_MATMUL)
#define FILL WHERE(blocked_scalar, ANY)
static const fu_pat *const patterns[] = {
    OP(MatMul,
       OP(Softmax, EITHER("mask", OPC(Add, SCORES, VAL(MASK)), OP(Where, VAL(COND), SCORES, FILL),
                          OP(Where, VAL(COND), FILL, SCORES), SCORES)),
       QUIET(V_PATH)),
    NULL,
};

/* ---- causal masks ---------------------------------------------------------------- */

/* Query and key lengths of the scores; Lk - Lq when known at compile time. */
typedef struct { fu_dim lq, lk; int64_t off; int known; } lens;

/* The last two dims of x are [a, b]. */
static int ends_in(const fu_value *x, fu_dim a, fu_dim b) {
    return x->rank >= 2 && fu_dim_eq(x->shape[x->rank - 2], a) && fu_dim_eq(x->shape[x->rank - 1], b);
}

/* Nodes a mask or an index is looked through: Unsqueeze, Reshape, Cast (and Expand). */
static int is_view(const fu_node *n, int expand) {
    return n->op_id == FU_OP_Unsqueeze || n->op_id == FU_OP_Reshape || n->op_id == FU_OP_Cast ||
           (expand && n->op_id == FU_OP_Expand);
}

/* Looks through views and casts that only change leading dims of a mask. */
static int skip_mask_views(const fu_graph *g, int v) {
    for (int p, x; (p = fu_m_producer(g, v, -1)) >= 0 && is_view(&g->nodes[p], 1) && (x = g->nodes[p].in[0]) >= 0;
         v = x) {
        const fu_value *a = &g->values[x], *b = &g->values[v];
        if (b->rank < 2 || a->dtype != b->dtype || !ends_in(a, b->shape[b->rank - 2], b->shape[b->rank - 1])) break;
    }
    return v;
}

enum { FILL_ZERO, FILL_BLOCKED, FILL_NONZERO };

/* Every element of v is 0 (FILL_ZERO), a blocked value (FILL_BLOCKED) or
 * clearly not 0 (FILL_NONZERO: |x| >= 1e-4, so no float cast makes it 0): a
 * constant, a ConstantOfShape (exporters fill a [S, S] tensor with the
 * dtype's lowest value; no `value` attribute means float 0) or an Expand of
 * either (torch's SDPA export expands a 1.0 to [L, S]), through float Casts. */
static int filled_with(const fu_graph *g, int v, int fill) {
    int p;
    for (v = fu_m_skip_casts(g, v); (p = fu_m_producer(g, v, FU_OP_Expand)) >= 0 && g->nodes[p].in[0] >= 0;)
        v = fu_m_skip_casts(g, g->nodes[p].in[0]);
    p = fu_m_producer(g, v, FU_OP_ConstantOfShape);
    const fu_attr *a = p >= 0 ? fu_node_attr(&g->nodes[p], "value") : NULL;
    fu_value val = g->values[v];
    int64_t numel;
    if (p >= 0 && !a) return fill == FILL_ZERO && val.dtype == FU_F32;
    if (a && a->kind == FU_ATTR_TENSOR && a->t_data)
        val = (fu_value){.kind = FU_VAL_CONST, .dtype = a->t_dtype, .data = a->t_data, .nbytes = fu_dtype_size(a->t_dtype)};
    if (val.kind != FU_VAL_CONST || !val.data || fu_value_numel_const(&val, &numel) || numel < 1) return 0;
    for (int64_t i = 0; i < numel; i++) {
        double x = fu_const_get_f(&val, i);
        if (fill == FILL_BLOCKED ? !(x <= BLOCKED) : fill == FILL_ZERO ? x != 0.0 : !(fabs(x) >= 1e-4)) return 0;
    }
    return 1;
}

/* Constant [.., Lq, Lk] blocking exactly j > i + Lk - Lq: an additive mask
 * (blocked or 0) or, with bool_when >= 0, a condition blocking where it
 * equals bool_when. */
static int const_is_causal(const fu_value *cv, int bool_when, lens L, char *why, size_t n) {
    int64_t numel, lq = L.lq.coef, lk = L.lk.coef;
    fu_value_numel_const(cv, &numel);
    for (int64_t e = 0; e < numel; e++) {
        long long i = (e / lk) % lq, j = e % lk;
        double x = fu_const_get_f(cv, e);
        int blocked = bool_when >= 0 ? (fu_const_get_i(cv, e) != 0) == bool_when : x <= BLOCKED;
        if (bool_when < 0 && !blocked && x != 0.0)
            return snprintf(why, n, "constant mask has value %g at (%lld, %lld): not a causal mask", x, i, j), 0;
        if (blocked != (j > i + L.off))
            return snprintf(why, n, "%s is not causal at (%lld, %lld)", bool_when >= 0 ? "mask condition" : "constant mask",
                            i, j), 0;
    }
    return 1;
}

enum { ROW = 1, COL = 2 };

/* v = Add(x, c), Add(c, x) or Sub(x, c) with c a constant integer scalar
 * keeping x's shape: x, and c (-c for Sub) in *c; else -1. */
static int shifted_by(const fu_graph *g, int v, int64_t *c) {
    int p = fu_m_producer(g, v, -1), x = -1;
    if (p < 0 || g->nodes[p].n_in != 2 || g->nodes[p].in[0] < 0 || g->nodes[p].in[1] < 0) return -1;
    const fu_node *n = &g->nodes[p];
    double f;
    if ((n->op_id == FU_OP_Add || n->op_id == FU_OP_Sub) && fu_m_const_scalar(g, n->in[1], &f)) x = n->in[0];
    else if (n->op_id == FU_OP_Add && fu_m_const_scalar(g, n->in[0], &f)) x = n->in[1];
    if (x < 0 || !fu_value_same_shape(&g->values[x], &g->values[v]) || !(f >= -1e9 && f <= 1e9) ||
        f != (double)(int64_t)f)
        return -1;
    *c = n->op_id == FU_OP_Sub ? -(int64_t)f : (int64_t)f;
    return x;
}

/* A row index ([Lq, 1]) or a column index ([1, Lk] or [Lk]) made from
 * Range(start, limit, 1) by Unsqueeze/Reshape/Cast (order-preserving on a
 * 1-D range) and Adds/Subs of integer constants (transformers'
 * `(arange(S) + 1).view(S, 1)`, which shift the start): ROW or COL and the
 * start, else 0. */
static int index_of(const fu_graph *g, int v, lens L, int64_t *start) {
    const fu_value *x = &g->values[v];
    fu_dim one = fu_dim_const(1);
    int kind = ends_in(x, L.lq, one) && !fu_dim_is(L.lk, 1) ? ROW
               : ends_in(x, one, L.lk) || (x->rank == 1 && fu_dim_eq(x->shape[0], L.lk)) ? COL : 0, p, u;
    double s, d;
    int64_t shift = 0, c;
    for (;;) {
        if ((p = fu_m_producer(g, v, -1)) >= 0 && is_view(&g->nodes[p], 0)) {
            if ((v = g->nodes[p].in[0]) < 0) return 0;
        } else if ((u = shifted_by(g, v, &c)) >= 0) {
            v = u, shift += c;
        } else {
            break;
        }
    }
    if (!kind || p < 0 || g->nodes[p].op_id != FU_OP_Range || g->nodes[p].n_in != 3 || g->nodes[p].in[0] < 0) return 0;
    const fu_node *r = &g->nodes[p];
    const fu_value *sv = &g->values[r->in[0]];
    if (g->values[v].rank != 1 || !fu_dim_eq(g->values[v].shape[0], kind == ROW ? L.lq : L.lk) ||
        !fu_m_const_scalar(g, r->in[2], &d) || d != 1.0)
        return 0;
    if (fu_m_const_scalar(g, r->in[0], &s)) return *start = (int64_t)s + shift, (double)(int64_t)s == s ? kind : 0;
    if (sv->n_known != 1 || !fu_dim_is_const(sv->known[0])) return 0;
    return *start = sv->known[0].coef + shift, kind;
}

#define UNKNOWN_OFFSET "cannot check the causal offset Lk - Lq at compile time"
#define NOT_AFTER "mask blocks keys before the query (j < i), not after: not causal"

/* A mask (`what`) blocking exactly the keys j > i + shift is causal iff shift = Lk - Lq. */
static int blocks_after(long long shift, lens L, const char *what, char *why, size_t n) {
    if (shift == L.off) return 1;
    return snprintf(why, n, "%s blocks keys j > i%+lld, causal needs j > i%+lld (Lk - Lq)", what, shift,
                    (long long)L.off), 0;
}

/* Equal(Trilu(F, upper, k), 0) (either order), F filled with non-zero
 * values: torch's scaled_dot_product_attention export with is_causal builds
 * Where(Equal(Trilu(Expand(1.0, [L, S]), upper=0), 0), -inf, 0). Is the set
 * where it equals blocked_when exactly "j > i + Lk - Lq"? Tril (upper 0)
 * keeps j <= i + k, so it is 0 (the Equal true) iff j > i + k; Triu keeps
 * j >= i + k, so it is non-zero (the Equal false) iff j > i + k - 1. */
static int tril_is_causal(const fu_graph *g, const fu_node *eq, int blocked_when, lens L, char *why, size_t n) {
    double zero, k = 0;
    int zero_at = eq->in[0] >= 0 && fu_m_const_scalar(g, eq->in[0], &zero) ? 0 : 1;
    int t = eq->in[!zero_at], p = t >= 0 ? fu_m_producer(g, t, FU_OP_Trilu) : -1;
    if (eq->in[zero_at] < 0 || !fu_m_const_scalar(g, eq->in[zero_at], &zero) || zero != 0.0 || p < 0)
        return snprintf(why, n, "mask condition Equal is not Trilu(..) == 0"), 0;
    const fu_node *tr = &g->nodes[p];
    int upper = (int)fu_attr_int(tr, "upper", 1);
    if (tr->in[0] < 0 || !filled_with(g, tr->in[0], FILL_NONZERO) || !ends_in(&g->values[t], L.lq, L.lk) ||
        (tr->n_in > 1 && tr->in[1] >= 0 && !fu_m_const_scalar(g, tr->in[1], &k)))
        return snprintf(why, n, "mask condition Equal(Trilu(..), 0) is not of a [Lq, Lk] non-zero fill"), 0;
    /* Blocked where the Equal is true (tril) or false (triu). */
    if (upper != !blocked_when) return snprintf(why, n, NOT_AFTER), 0;
    return blocks_after((long long)k - (upper ? 1 : 0), L, "mask", why, n);
}

/* Is the set of (i, j) where bool `cond` equals `blocked_when` exactly the
 * causal "j > i + Lk - Lq"? 1 yes, 0 no (reason written). */
static int cond_is_causal(const fu_graph *g, int cond, int blocked_when, lens L, char *why, size_t n) {
    static const int cmp[4] = {FU_OP_Less, FU_OP_Greater, FU_OP_LessOrEqual, FU_OP_GreaterOrEqual};
    enum { LT, GT, LE, GE };  /* "col REL row", in the order of cmp */
    int p, op = -1, ka, kb;
    int64_t numel, sa, sb;
    for (cond = skip_mask_views(g, cond); (p = fu_m_producer(g, cond, FU_OP_Not)) >= 0;
         cond = skip_mask_views(g, g->nodes[p].in[0]))
        blocked_when = !blocked_when;
    if (!L.known) return snprintf(why, n, UNKNOWN_OFFSET), 0;
    const fu_value *cv = &g->values[cond];
    if (cv->kind == FU_VAL_CONST && cv->data) {  /* a folded bool mask: check every element */
        if (fu_value_numel_const(cv, &numel) || !ends_in(cv, L.lq, L.lk))
            return snprintf(why, n, "constant mask condition is not [Lq, Lk]"), 0;
        return const_is_causal(cv, blocked_when, L, why, n);
    }
    p = fu_m_producer(g, cond, -1);
    if (p >= 0 && g->nodes[p].op_id == FU_OP_Equal && g->nodes[p].n_in == 2)
        return tril_is_causal(g, &g->nodes[p], blocked_when, L, why, n);
    for (int k = 0; p >= 0 && k < 4; k++)
        if (g->nodes[p].op_id == cmp[k]) op = k;
    if (op < 0) return snprintf(why, n, "mask condition is not a comparison of row and column indices"), 0;
    ka = index_of(g, g->nodes[p].in[0], L, &sa), kb = index_of(g, g->nodes[p].in[1], L, &sb);
    if (ka + kb != ROW + COL)
        return snprintf(why, n, "mask condition does not compare Range row [Lq, 1] and column [1, Lk] indices"), 0;
    /* cond as "col REL row" (row < col is col > row, ...); blocked where
     * cond == blocked_when (not(col < row) is col >= row, ...). */
    int rel = ka == COL ? op : op ^ 1;
    if (!blocked_when) rel = GE - rel;
    if (rel != GT && rel != GE) return snprintf(why, n, NOT_AFTER), 0;
    /* Blocked iff col_start + j REL row_start + i. */
    return blocks_after((ka == ROW ? sa - sb : sb - sa) - (rel == GE), L, "mask", why, n);
}

/* Is additive float mask `mask` exactly the causal mask for these lengths?
 * 1 yes, 0 no (reason written). */
static int additive_is_causal(const fu_graph *g, int mask, lens L, char *why, size_t n) {
    int v = skip_mask_views(g, mask), p = fu_m_producer(g, v, -1);
    const fu_value *mv = &g->values[v];
    const fu_node *t = p >= 0 ? &g->nodes[p] : NULL;
    int64_t numel;
    double k = 0;
    if (!ends_in(mv, L.lq, L.lk)) return snprintf(why, n, "mask is not [Lq, Lk] per head"), 0;
    if (mv->kind == FU_VAL_CONST && mv->data) {
        if (!L.known || fu_value_numel_const(mv, &numel) || !fu_dim_is_const(L.lk))
            return snprintf(why, n, "constant mask with symbolic lengths"), 0;
        return const_is_causal(mv, -1, L, why, n);
    }
    if (!t) return snprintf(why, n, "mask is a graph input"), 0;
    if (t->op_id == FU_OP_Trilu) {
        if (fu_attr_int(t, "upper", 1) != 1 || t->in[0] < 0 || !filled_with(g, t->in[0], FILL_BLOCKED) ||
            (t->n_in > 1 && t->in[1] >= 0 && !fu_m_const_scalar(g, t->in[1], &k)))
            return snprintf(why, n, "Trilu mask is not the upper triangle of a blocked constant"), 0;
        if (!L.known) return snprintf(why, n, UNKNOWN_OFFSET), 0;
        /* Trilu(upper, k) keeps j - i >= k: blocked iff j > i + k - 1. */
        return blocks_after((long long)k - 1, L, "Trilu mask", why, n);
    }
    if (t->op_id == FU_OP_Mul && t->n_in == 2 && t->in[0] >= 0 && t->in[1] >= 0) {
        /* transformers 4.40+: triu(full(min), 1) * (arange(Lk) > cache_position[:, None]): an
         * additive causal mask times a float Cast of a condition true exactly where it blocks
         * (blocked * 1 stays blocked, 0 * anything is 0). */
        for (int side = 0; side < 2; side++) {
            int c = fu_m_producer(g, t->in[!side], FU_OP_Cast), b;
            if (c < 0 || (b = g->nodes[c].in[0]) < 0 || g->values[b].dtype != FU_BOOL) continue;
            char inner[100];
            if (!additive_is_causal(g, t->in[side], L, inner, sizeof inner))
                return snprintf(why, n, "mask is a product with a mask that is not causal (%.96s)", inner), 0;
            return cond_is_causal(g, b, 1, L, why, n);
        }
        return snprintf(why, n, "mask is a product, not of a causal mask and a float Cast of a condition"), 0;
    }
    if (t->op_id != FU_OP_Where || t->n_in != 3) return snprintf(why, n, "mask is computed by %s", t->op), 0;
    /* Each branch a constant or a ConstantOfShape filled with one kind. */
    int a_blocked = filled_with(g, t->in[1], FILL_BLOCKED), b_blocked = filled_with(g, t->in[2], FILL_BLOCKED);
    if (!((a_blocked && filled_with(g, t->in[2], FILL_ZERO)) || (filled_with(g, t->in[1], FILL_ZERO) && b_blocked)))
        return snprintf(why, n, "Where mask does not choose between 0 and a blocked value"), 0;
    return cond_is_causal(g, t->in[0], a_blocked, L, why, n);
}

/* Can `mask` be the Attention node's attn_mask for scores s? */
static int usable_mask(const fu_graph *g, int mask, const fu_value *s, char *why, size_t n) {
    const fu_value *mv = &g->values[mask];
    int r = s->rank, ok = 1;
    if (mv->dtype != FU_F32) return snprintf(why, n, "mask is %s, not float32", fu_dtype_name(mv->dtype)), 0;
    if (mv->rank < 1 || mv->rank > r || !fu_dim_eq(mv->shape[mv->rank - 1], s->shape[r - 1]))
        return snprintf(why, n, "mask cannot be an attn_mask: its last axis must be the key length"), 0;
    for (int i = 0; i < mv->rank; i++)
        ok &= fu_dim_is(mv->shape[i], 1) || fu_dim_eq(mv->shape[i], s->shape[r - mv->rank + i]);
    if (!ok) return snprintf(why, n, "mask cannot be an attn_mask: it does not broadcast to the scores"), 0;
    /* 3-D scores [B, Lq, Lk] become one head of [B, 1, Lq, Lk]: a batch
     * axis in the mask would land on the head axis. */
    if (r == 3 && mv->rank == 3 && !fu_dim_is(mv->shape[0], 1))
        return snprintf(why, n, "mask cannot be an attn_mask: a per-batch mask of 3-D scores"), 0;
    return 1;
}

/* ---- K/V heads --------------------------------------------------------------------- */

/* Does the matched REPEAT producing v [B, H, L, D] repeat each kv head for
 * consecutive query heads? */
static int repeat_ok(const fu_graph *g, int v) {
    const fu_value *out = &g->values[v];
    const fu_node *r = &g->nodes[fu_m_producer(g, v, -1)];
    if (out->rank != 4) return 0;
    if (r->op_id != FU_OP_Reshape) {
        /* Expand or Tile of a single head [B, 1, L, D] (for one kv head,
         * Tile's h mod 1 grouping is the kernel's too). */
        const fu_value *s = &g->values[r->in[0]];
        return s->rank == 4 && fu_dim_is(s->shape[1], 1) && fu_dim_eq(s->shape[0], out->shape[0]) &&
               fu_dim_eq(s->shape[2], out->shape[2]) && fu_dim_eq(s->shape[3], out->shape[3]);
    }
    /* Reshape(Expand|Tile(Unsqueeze(src, 2))): [B, Hkv, n, L, D] -> [B, Hkv*n, L, D]. */
    static const int keep[4] = {0, 1, 3, 4};
    int x = r->in[0], u = g->nodes[g->values[x].producer].in[0], src = g->nodes[g->values[u].producer].in[0];
    const fu_value *s = &g->values[src], *uv = &g->values[u], *xv = &g->values[x];
    if (s->rank != 4 || uv->rank != 5 || xv->rank != 5 || !fu_dim_is(uv->shape[2], 1)) return 0;
    for (int i = 0; i < 4; i++)
        if (!fu_dim_eq(uv->shape[keep[i]], s->shape[i]) || !fu_dim_eq(xv->shape[keep[i]], s->shape[i])) return 0;
    return fu_dim_eq(out->shape[0], s->shape[0]) && fu_dim_eq(out->shape[1], fu_dim_mul(s->shape[1], xv->shape[2])) &&
           fu_dim_eq(out->shape[2], s->shape[2]) && fu_dim_eq(out->shape[3], s->shape[3]);
}

/* One of Q, K, V as the fused node reads it. */
typedef struct { int value, layout; } operand;

/* Dim `axis` (batch, heads, length, head size) of an operand: BHSD, BSHD,
 * or 3-D [B, L, D] with one head. */
enum { BATCH, HEADS, LEN, DIM };
static fu_dim op_dim(const fu_graph *g, operand o, int axis) {
    static const int at[3][4] = {{0, 1, 2, 3}, {0, 2, 1, 3}, {0, -1, 1, 2}};
    const fu_value *x = &g->values[o.value];
    int k = at[x->rank == 3 ? 2 : o.layout][axis];
    return k < 0 ? fu_dim_const(1) : x->shape[k];
}

/* K or V without its repeat (when it is repeat_kv), in place of a head transpose. */
static operand unrepeated(const fu_graph *g, const fu_match *m, int r, int x, int bhsd, int bshd) {
    if (m->v[x] >= 0 && !repeat_ok(g, m->v[r])) return (operand){m->v[r], BHSD};
    return m->v[bshd] >= 0 ? (operand){m->v[bshd], BSHD} : (operand){m->v[bhsd], BHSD};
}

/* ---- the rule ---------------------------------------------------------------------- */

typedef struct {
    operand q, k, v;
    double scale;
    int mask, causal;   /* attn_mask value or -1; is_causal */
    fu_dim hq, hkv;
    char note[200];     /* what became of the mask */
} plan;

/* What the fused node reads, or 0 and the reason. */
static int plan_of(const fu_graph *g, const fu_match *m, plan *p, char *why, size_t n) {
    const fu_node *pv = &g->nodes[m->anchor], *sm = &g->nodes[fu_m_producer(g, pv->in[0], FU_OP_Softmax)];
    const fu_node *qk = &g->nodes[m->node[QK]];
    const fu_value *s = &g->values[m->v[QK]], *out = &g->values[pv->out[0]];
    int r = s->rank;
    *p = (plan){.mask = -1, .scale = 1};
    if (m->node[SCN] >= 0) {
        const fu_node *x = &g->nodes[m->node[SCN]];
        int other = x->in[x->in[0] == m->v[QK]], div = x->op_id == FU_OP_Div;
        double f;
        if (!fu_m_const_scalar(g, other, &f))
            return snprintf(why, n, "the score scale is not a constant scalar (%s of rank %d)",
                            g->values[other].kind == FU_VAL_CONST ? "constant" : "computed tensor",
                            g->values[other].rank), 0;
        if (div && f == 0.0) return snprintf(why, n, "the score scale divides by 0"), 0;
        p->scale = div ? 1.0 / f : f;
    }
    if (r != 4 && r != 3)
        return snprintf(why, n, "scores have rank %d, attention needs [B, H, Lq, Lk] or [B, Lq, Lk]", r), 0;

    /* The mask: causal, kept, or neither. With Lq > Lk the first queries see
     * no key: the kernel makes such rows 0 while the composed graph averages
     * V (finite blocked values), so a mask then stays a mask. */
    lens L = {s->shape[r - 2], s->shape[r - 1], 0, 1};
    if (!fu_dim_eq(L.lq, L.lk))  /* Lk - Lq known? */
        L.known = fu_dim_is_const(L.lq) && fu_dim_is_const(L.lk), L.off = L.lk.coef - L.lq.coef;
    int short_keys = fu_dim_is_const(L.lq) && fu_dim_is_const(L.lk) && L.lq.coef > L.lk.coef;
    char causal_why[160] = "Lq > Lk: some queries see no key";
    if (m->v[MASK] >= 0) {
        if (!short_keys && additive_is_causal(g, m->v[MASK], L, causal_why, sizeof causal_why)) {
            p->causal = 1;
            snprintf(p->note, sizeof p->note, "causal mask -> is_causal");
        } else if (usable_mask(g, m->v[MASK], s, why, n)) {
            p->mask = m->v[MASK];
            snprintf(p->note, sizeof p->note, "attn_mask kept (%s)", causal_why);
        } else {
            size_t len = strlen(why);
            return snprintf(why + len, n - len, "; not causal either: %s", causal_why), 0;
        }
    } else if (m->v[COND] >= 0) {
        /* Where(cond, scores, blocked) blocks where cond is false. */
        int keep_when_true = blocked_scalar(g, m, g->nodes[g->values[sm->in[0]].producer].in[2], NULL, 0);
        if (short_keys || !cond_is_causal(g, m->v[COND], !keep_when_true, L, causal_why, sizeof causal_why))
            return snprintf(why, n, "masked fill (Where) that is not causal cannot be expressed: %s", causal_why), 0;
        p->causal = 1;
        snprintf(p->note, sizeof p->note, "causal masked fill -> is_causal");
    }

    /* Softmax over the last axis, of scores the mask did not broadcast up. */
    if (!fu_value_same_shape(&g->values[sm->in[0]], s))
        return snprintf(why, n, "the mask broadcasts the scores to a larger shape"), 0;
    long long axis = fu_attr_int(sm, "axis", -1);
    if ((axis += axis < 0 ? r : 0) != r - 1)
        return snprintf(why, n, "softmax over axis %lld, not the last (key) axis", axis), 0;

    /* Q, Kᵀ, V and the output all of the scores' rank. */
    const char *mismatch = "Q, K, V shapes do not line up (batch broadcast or mismatched lengths)";
    if (g->values[qk->in[0]].rank != r || g->values[qk->in[1]].rank != r || g->values[pv->in[1]].rank != r ||
        out->rank != r)
        return snprintf(why, n, "%s", r == 4 ? "Q, K^T and V must be 4-D [B, H, L, D]" : mismatch), 0;
    if (m->v[KR] < 0 && m->v[KB] < 0) return snprintf(why, n, "K^T is not a Transpose of K swapping the last two axes"), 0;
    operand k_rep = {m->v[KR] >= 0 ? m->v[KR] : m->v[KB], m->v[KR] >= 0 ? BHSD : BSHD}, v_rep = {m->v[VR], BHSD};
    p->q = m->v[QB] >= 0 ? (operand){m->v[QB], BSHD} : (operand){m->v[Q], BHSD};
    p->k = r == 3 ? k_rep : unrepeated(g, m, KR, KX, K, KB);
    p->v = r == 3 ? v_rep : unrepeated(g, m, VR, VX, V, VB);
    /* K and V must agree on kv heads: un-repeated if both can be. */
    if (!fu_dim_eq(op_dim(g, p->k, HEADS), op_dim(g, p->v, HEADS))) p->k = k_rep, p->v = v_rep;
    fu_dim hk = op_dim(g, p->k, HEADS), hv = op_dim(g, p->v, HEADS), group;
    if (!fu_dim_eq(hk, hv)) {
        char a[32], b[32];
        fu_dim_str(g, hv, a, sizeof a);
        fu_dim_str(g, hk, b, sizeof b);
        return snprintf(why, n, "V has %s heads, K has %s", a, b), 0;
    }
    operand y = {pv->out[0], BHSD}, scores = {m->v[QK], BHSD};
    p->hq = op_dim(g, p->q, HEADS), p->hkv = hk;
    if (!fu_dim_eq(p->hq, op_dim(g, y, HEADS)) || fu_dim_div(p->hq, p->hkv, &group))
        return snprintf(why, n, "query heads are not a multiple of the kv heads"), 0;
    /* Batch, lengths and head sizes line up with the scores and the output
     * (no broadcasting left for the kernel to guess). */
#define SAME(a, b, axis_a, axis_b) fu_dim_eq(op_dim(g, a, axis_a), op_dim(g, b, axis_b))
    if (!SAME(p->q, y, BATCH, BATCH) || !SAME(p->k, y, BATCH, BATCH) || !SAME(p->v, y, BATCH, BATCH) ||
        !SAME(p->q, y, LEN, LEN) || !SAME(p->k, scores, LEN, DIM) || !SAME(p->v, scores, LEN, DIM) ||
        !SAME(p->q, p->k, DIM, DIM) || !SAME(p->v, y, DIM, DIM) || !SAME(scores, y, HEADS, HEADS))
        return snprintf(why, n, "%s", mismatch), 0;
    if (g->values[p->q.value].dtype != FU_F32 || g->values[p->k.value].dtype != FU_F32 ||
        g->values[p->v.value].dtype != FU_F32)
        return snprintf(why, n, "Q, K, V must be float32"), 0;
    p->scale *= path_scale(g, qk->in[0], p->q.value) * path_scale(g, qk->in[1], p->k.value);
    return 1;
}

_Static_assert(sizeof(plan) <= sizeof((fu_match *)0)->findings, "the plan fits the match");

static int check(fu_fuse_ctx *c, fu_match *m, char *why, size_t n) {
    return plan_of(c->g, m, (plan *)m->findings, why, n);
}

static int rewrite(fu_fuse_ctx *c, fu_match *m, fu_err *err) {
    fu_graph *g = c->g;
    const plan p = *(const plan *)m->findings;
    char layout[16], hq[32], hkv[32];
    int rank = g->values[m->v[QK]].rank, inputs[4] = {p.q.value, p.k.value, p.v.value, p.mask};
    static const char *const names[2] = {"BHSD", "BSHD"};
    int same = p.q.layout == p.k.layout && p.k.layout == p.v.layout;
    snprintf(layout, sizeof layout, same ? "%s" : "%s,%s,%s", names[p.q.layout], names[p.k.layout], names[p.v.layout]);
    fu_dim_str(g, p.hq, hq, sizeof hq);
    fu_dim_str(g, p.hkv, hkv, sizeof hkv);
    int idx = fu_fuse_replace(c, m, FU_OP_Attention, inputs, p.mask >= 0 ? 4 : 3, err);
    if (idx < 0) return -1;
    fu_node *a = &g->nodes[idx];
    int ok = fu_node_set_attr_int(a, "is_causal", p.causal) && fu_node_set_attr_float(a, "scale", p.scale);
    if (ok && fu_dim_is_const(p.hq) && fu_dim_is_const(p.hkv))
        ok = fu_node_set_attr_int(a, "q_num_heads", p.hq.coef) && fu_node_set_attr_int(a, "kv_num_heads", p.hkv.coef);
    if (ok && strcmp(layout, "BHSD") != 0) ok = fu_node_set_attr_string(a, "qkv_layout", layout) != NULL;
    /* The masks proven causal block j > i + Lk - Lq: aligned to the end. */
    if (ok && p.causal && !fu_dim_eq(op_dim(g, p.q, LEN), op_dim(g, p.k, LEN)))
        ok = fu_node_set_attr_string(a, "causal_align", "end") != NULL;
    if (!ok) return fu_fail(err, "out of memory while fusing");
    if (rank == 3)
        fu_fuse_accept(c, m->anchor, "Attention(3-D, one head, scale %g%s%s)", p.scale, p.note[0] ? ", " : "", p.note);
    else
        fu_fuse_accept(c, m->anchor, "Attention(q_heads %s, kv_heads %s, scale %g, %s%s%s)", hq, hkv, p.scale, layout,
                       p.note[0] ? ", " : "", p.note);
    return 0;
}

const fu_fusion_rule fu_rule_attention = {"attention", patterns, check, rewrite};
