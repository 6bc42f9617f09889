/* Fusion rule "attention": scaled dot-product attention
 *   MatMul(Softmax(MatMul(Q, Kᵀ) * scale [+ mask], axis=-1), V)  ->  Attention
 * Anchor: the MatMul with V. Variants accepted (any combination):
 *   - scale: Mul by c or Div by c on the scores, on Q, on K or Kᵀ (e.g.
 *     d^-1/4 on both), or none; the factors are multiplied into `scale`.
 *     Only constant scalars count as a scale.
 *   - Kᵀ: Transpose(K, perm [0,1,3,2]), or Transpose(K_bshd, [0,2,3,1]).
 *   - GQA: K/V repeated per query head by Unsqueeze(axis 2) -> Expand or
 *     Tile -> Reshape (HF repeat_kv: consecutive query heads share a kv
 *     head), an Expand or Tile of a single kv head, or MatMul broadcasting
 *     of a single kv head: the fused node reads the un-repeated K/V and sets
 *     kv_num_heads. A Tile of the head axis of several kv heads (query head
 *     h -> kv head h mod Hkv) is not a grouping the kernel knows, so the
 *     repeated tensors are read as they are.
 *   - Q/K/V as Transpose([B, L, H, D], perm [0,2,1,3]): read in place with
 *     qkv_layout BSHD (the transposes die in dce).
 *   - mask: Add of an additive float mask. A causal mask is recognised and
 *     replaced by is_causal (causal aligned to the end: query i sees key
 *     j <= i + Lk - Lq) when it is
 *       a constant whose values are 0 / "blocked" (<= -1e4, -inf) in exactly
 *         the causal pattern,
 *       Trilu(upper=1, k = Lk - Lq + 1) of a constant filled with a blocked
 *         value, or
 *       Where(cond, blocked, 0) / Where(cond, 0, blocked) where cond compares
 *         a row index [Lq, 1] and a column index [1, Lk] made from Ranges
 *         with step 1 (Less/Greater/LessOrEqual/GreaterOrEqual, optional
 *         Not) so that exactly the keys j > i + (Lk - Lq) are blocked.
 *     Any other mask whose last axis is Lk and that broadcasts to the
 *     scores stays as the attn_mask input.
 *   - masked fill: Where(cond, scores, blocked) / Where(cond, blocked,
 *     scores) when cond is provably causal (as above).
 *   - 3-D scores [B, Lq, Lk] (single head on [B, L, D] tensors): the 3-D
 *     Attention form with one head.
 * Leading Unsqueeze/Expand/Reshape/Cast around a mask are looked through.
 * Near misses (logged once the Softmax·V and Q·Kᵀ MatMuls are found): softmax
 * not over the last axis, a score scale that is not a constant scalar, an
 * intermediate used elsewhere or exported, a mask that cannot be an
 * attn_mask, a masked fill that is not causal, K/V head counts or shapes that
 * do not line up. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fusion.h"

/* Mask values at or below this are "blocked": exp(x - max) underflows to an
 * exact 0 in float for any realistic score, as for -inf. Exporters use -inf,
 * the dtype's lowest value, -1e9 or -10000. */
#define BLOCKED (-1e4)

#define MAX_PATTERN 24

enum { BHSD = 0, BSHD = 1 };

typedef struct {
    int nodes[MAX_PATTERN];     /* pattern nodes that die (anchor included) */
    int n_nodes;
    int interior[MAX_PATTERN];  /* their outputs, except the anchor's */
    int n_interior;
} pattern;

static void add_node(const fu_graph *g, pattern *p, int node, int anchor) {
    if (p->n_nodes >= MAX_PATTERN) return;
    p->nodes[p->n_nodes++] = node;
    if (node != anchor && p->n_interior < MAX_PATTERN) p->interior[p->n_interior++] = g->nodes[node].out[0];
}

static int same_shape(const fu_value *a, const fu_value *b) {
    if (a->rank != b->rank) return 0;
    for (int i = 0; i < a->rank; i++)
        if (!fu_dim_eq(a->shape[i], b->shape[i])) return 0;
    return 1;
}

static int dim_is(fu_dim d, int64_t c) { return fu_dim_is_const(d) && d.coef == c; }

/* Producer of v when it is a Cast between two float32 values (a no-op
 * exporters leave behind), else -1. */
static int noop_cast(const fu_graph *g, int v) {
    int p = fu_m_producer(g, v, "Cast");
    if (p < 0 || g->nodes[p].in[0] < 0) return -1;
    return g->values[v].dtype == FU_F32 && g->values[g->nodes[p].in[0]].dtype == FU_F32 ? p : -1;
}

/* Skips no-op casts, adding them to the pattern when p is not NULL. */
static int skip_casts(const fu_graph *g, int v, pattern *p, int anchor) {
    for (int cast; (cast = noop_cast(g, v)) >= 0; v = g->nodes[cast].in[0])
        if (p) add_node(g, p, cast, anchor);
    return v;
}

/* Transpose permutation of node t (default: reversed axes). */
static int read_perm(const fu_graph *g, int t, int64_t *perm) {
    const fu_node *n = &g->nodes[t];
    int rank = n->in[0] >= 0 ? g->values[n->in[0]].rank : -1;
    if (rank < 1 || rank > FU_MAX_RANK) return -1;
    const fu_attr *a = fu_node_attr(n, "perm");
    if (!a) {
        for (int i = 0; i < rank; i++) perm[i] = rank - 1 - i;
        return rank;
    }
    if (a->kind != FU_ATTR_INTS || a->n != rank) return -1;
    for (int i = 0; i < rank; i++) perm[i] = a->ints[i];
    return rank;
}

/* Input of v = Transpose(x, perm) when perm is `want` (of `rank` axes). */
static int is_transpose_n(const fu_graph *g, int v, const int64_t *want, int rank) {
    int t = fu_m_producer(g, v, "Transpose");
    int64_t perm[FU_MAX_RANK];
    if (t < 0 || read_perm(g, t, perm) != rank) return -1;
    for (int i = 0; i < rank; i++)
        if (perm[i] != want[i]) return -1;
    return g->nodes[t].in[0];
}

static int is_transpose(const fu_graph *g, int v, const int64_t *want) { return is_transpose_n(g, v, want, 4); }

static const int64_t PERM_BSHD_TO_BHSD[4] = {0, 2, 1, 3};
static const int64_t PERM_SWAP_LAST[4] = {0, 1, 3, 2};
static const int64_t PERM_BSHD_TO_BHDS[4] = {0, 2, 3, 1};

/* Strips Mul/Div by constant scalars (and no-op casts) that keep v's shape,
 * multiplying their factors into *scale. */
static int strip_scales(const fu_graph *g, int v, double *scale) {
    for (;;) {
        v = skip_casts(g, v, NULL, -1);
        int p = fu_m_producer(g, v, NULL);
        if (p < 0) return v;
        const fu_node *n = &g->nodes[p];
        int is_mul = strcmp(n->op, "Mul") == 0, is_div = strcmp(n->op, "Div") == 0;
        if ((!is_mul && !is_div) || n->n_in != 2 || n->in[0] < 0 || n->in[1] < 0) return v;
        double c;
        int data;
        if (fu_m_const_scalar(g, n->in[1], &c)) {
            data = n->in[0];
        } else if (is_mul && fu_m_const_scalar(g, n->in[0], &c)) {
            data = n->in[1];
        } else {
            return v;
        }
        if (!same_shape(&g->values[data], &g->values[v]) || (is_div && c == 0.0)) return v;
        *scale *= is_div ? 1.0 / c : c;
        v = data;
    }
}

/* ---- GQA repeats ---------------------------------------------------------------- */

/* If v [B, H, L, D] repeats each head of a [B, Hkv, L, D] tensor for
 * consecutive query heads, returns that tensor; else -1. */
static int strip_repeat(const fu_graph *g, int v) {
    const fu_value *out = &g->values[v];
    if (out->rank != 4) return -1;
    /* Expand or Tile of a single head: [B, 1, L, D] -> [B, H, L, D] (for
     * one kv head, Tile's h mod 1 grouping is the kernel's too). */
    int e = fu_m_producer(g, v, "Expand");
    if (e < 0) e = fu_m_producer(g, v, "Tile");
    if (e >= 0) {
        int src = g->nodes[e].in[0];
        const fu_value *s = src >= 0 ? &g->values[src] : NULL;
        if (s && s->rank == 4 && dim_is(s->shape[1], 1) && fu_dim_eq(s->shape[0], out->shape[0]) &&
            fu_dim_eq(s->shape[2], out->shape[2]) && fu_dim_eq(s->shape[3], out->shape[3]))
            return src;
        return -1;
    }
    /* Reshape(Expand|Tile(Unsqueeze(src, 2))) [B, Hkv, n, L, D] -> [B, Hkv*n, L, D]. */
    int r = fu_m_producer(g, v, "Reshape");
    if (r < 0) return -1;
    int x = g->nodes[r].in[0];
    int rep = fu_m_producer(g, x, "Expand");
    if (rep < 0) rep = fu_m_producer(g, x, "Tile");
    if (rep < 0) return -1;
    int u = g->nodes[rep].in[0];
    int un = fu_m_producer(g, u, "Unsqueeze");
    if (un < 0) un = fu_m_producer(g, u, "Reshape");
    if (un < 0) return -1;
    int src = g->nodes[un].in[0];
    if (src < 0) return -1;
    const fu_value *s = &g->values[src], *uv = &g->values[u], *xv = &g->values[x];
    if (s->rank != 4 || uv->rank != 5 || xv->rank != 5) return -1;
    const int keep[4] = {0, 1, 3, 4};
    for (int i = 0; i < 4; i++)
        if (!fu_dim_eq(uv->shape[keep[i]], s->shape[i]) || !fu_dim_eq(xv->shape[keep[i]], s->shape[i])) return -1;
    if (!dim_is(uv->shape[2], 1)) return -1;
    if (!fu_dim_eq(out->shape[0], s->shape[0]) || !fu_dim_eq(out->shape[1], fu_dim_mul(s->shape[1], xv->shape[2])) ||
        !fu_dim_eq(out->shape[2], s->shape[2]) || !fu_dim_eq(out->shape[3], s->shape[3]))
        return -1;
    return src;
}

/* One of K or V as the fused node will read it. */
typedef struct {
    int value;
    int layout;
} operand;

/* Heads of an operand [B, H, L, D] (BHSD) or [B, L, H, D] (BSHD). */
static fu_dim op_heads(const fu_graph *g, operand o) { return g->values[o.value].shape[o.layout == BSHD ? 2 : 1]; }
static fu_dim op_len(const fu_graph *g, operand o) { return g->values[o.value].shape[o.layout == BSHD ? 1 : 2]; }

/* From a BHSD tensor v (before any repeat): the un-repeated tensor and its
 * layout in *unrep, and v itself in *rep. */
static void trace_kv(const fu_graph *g, int v, double *scale, operand *rep, operand *unrep) {
    rep->value = v;
    rep->layout = BHSD;
    int src = strip_repeat(g, v);
    if (src < 0) {
        *unrep = *rep;
    } else {
        unrep->value = strip_scales(g, src, scale);
        unrep->layout = BHSD;
    }
    int bshd = is_transpose(g, unrep->value, PERM_BSHD_TO_BHSD);
    if (bshd >= 0) {
        unrep->value = strip_scales(g, bshd, scale);
        unrep->layout = BSHD;
    }
}

/* ---- causal masks ---------------------------------------------------------------- */

typedef struct {
    fu_dim lq, lk;   /* query and key lengths of the scores */
} lens;

/* Lk - Lq when it is known at compile time. */
static int causal_offset(lens L, int64_t *off) {
    if (fu_dim_eq(L.lq, L.lk)) {
        *off = 0;
        return 1;
    }
    if (fu_dim_is_const(L.lq) && fu_dim_is_const(L.lk)) {
        *off = L.lk.coef - L.lq.coef;
        return 1;
    }
    return 0;
}

/* Looks through views and casts that only change leading dims of a mask. */
static int skip_mask_views(const fu_graph *g, int v) {
    for (;;) {
        int p = fu_m_producer(g, v, NULL);
        if (p < 0) return v;
        const fu_node *n = &g->nodes[p];
        if (strcmp(n->op, "Unsqueeze") && strcmp(n->op, "Expand") && strcmp(n->op, "Reshape") &&
            strcmp(n->op, "Cast"))
            return v;
        int src = n->in[0];
        if (src < 0) return v;
        const fu_value *a = &g->values[src], *b = &g->values[v];
        if (a->rank < 2 || b->rank < 2 || a->dtype != b->dtype ||
            !fu_dim_eq(a->shape[a->rank - 1], b->shape[b->rank - 1]) ||
            !fu_dim_eq(a->shape[a->rank - 2], b->shape[b->rank - 2]))
            return v;
        v = src;
    }
}

/* Element i of a tensor attribute as double. */
static double attr_tensor_get(const fu_attr *a, int64_t i) {
    fu_value tmp;
    memset(&tmp, 0, sizeof tmp);
    size_t numel = 1;
    for (int k = 0; k < a->t_rank; k++) numel *= (size_t)a->t_shape[k];
    tmp.dtype = a->t_dtype;
    tmp.data = a->t_data;
    tmp.nbytes = numel * fu_dtype_size(a->t_dtype);
    return fu_const_get_f(&tmp, i);
}

/* A tensor all of whose elements are one blocked value (a constant or a
 * ConstantOfShape). */
static int filled_with_blocked(const fu_graph *g, int v) {
    v = fu_m_skip_casts(g, v);
    const fu_value *val = &g->values[v];
    int64_t numel;
    if (val->kind == FU_VAL_CONST && val->data && fu_value_numel_const(val, &numel) == 0) {
        for (int64_t i = 0; i < numel; i++)
            if (!(fu_const_get_f(val, i) <= BLOCKED)) return 0;
        return numel > 0;
    }
    int p = fu_m_producer(g, v, "ConstantOfShape");
    if (p < 0) return 0;
    const fu_attr *a = fu_node_attr(&g->nodes[p], "value");
    return a && a->kind == FU_ATTR_TENSOR && a->t_data && attr_tensor_get(a, 0) <= BLOCKED;
}

/* Row ([Lq, 1]) or column ([1, Lk] or [Lk]) index of `len` elements made
 * from Range(start, limit, 1) by Unsqueeze/Reshape/Cast (order-preserving
 * on a 1-D range): returns 1 and the start, 0 if not. */
static int index_start(const fu_graph *g, int v, fu_dim len, int64_t *start) {
    for (;;) {
        int p = fu_m_producer(g, v, NULL);
        if (p < 0) return 0;
        const fu_node *n = &g->nodes[p];
        if (!strcmp(n->op, "Unsqueeze") || !strcmp(n->op, "Reshape") || !strcmp(n->op, "Cast")) {
            v = n->in[0];
            if (v < 0) return 0;
            continue;
        }
        if (strcmp(n->op, "Range") || n->n_in != 3) return 0;
        if (g->values[v].rank != 1 || !fu_dim_eq(g->values[v].shape[0], len)) return 0;
        double s, d;
        const fu_value *sv = n->in[0] >= 0 ? &g->values[n->in[0]] : NULL;
        if (!sv || !fu_m_const_scalar(g, n->in[2], &d) || d != 1.0) return 0;
        if (fu_m_const_scalar(g, n->in[0], &s)) {
            *start = (int64_t)s;
            return (double)*start == s;
        }
        if (sv->n_known == 1 && fu_dim_is_const(sv->known[0])) {
            *start = sv->known[0].coef;
            return 1;
        }
        return 0;
    }
}

enum { ROW = 1, COL = 2 };

static int index_kind(const fu_graph *g, int v, lens L) {
    const fu_value *x = &g->values[v];
    if (x->rank < 1) return 0;
    fu_dim last = x->shape[x->rank - 1];
    if (x->rank >= 2 && dim_is(last, 1) && fu_dim_eq(x->shape[x->rank - 2], L.lq) && !dim_is(L.lk, 1)) return ROW;
    if (fu_dim_eq(last, L.lk) && (x->rank == 1 || dim_is(x->shape[x->rank - 2], 1))) return COL;
    return 0;
}

/* Relation "col REL row" over absolute indices. */
enum { REL_GT, REL_GE, REL_LT, REL_LE };

/* Is the set of (i, j) where bool `cond` equals `blocked_when` exactly the
 * causal "j > i + Lk - Lq"? 1 yes, 0 no (reason written). */
static int cond_is_causal(const fu_graph *g, int cond, int blocked_when, lens L, char *reason, size_t rn) {
    cond = skip_mask_views(g, cond);
    int p = fu_m_producer(g, cond, NULL);
    while (p >= 0 && strcmp(g->nodes[p].op, "Not") == 0) {
        blocked_when = !blocked_when;
        cond = skip_mask_views(g, g->nodes[p].in[0]);
        p = fu_m_producer(g, cond, NULL);
    }
    int64_t off;
    if (!causal_offset(L, &off)) {
        snprintf(reason, rn, "cannot check the causal offset Lk - Lq at compile time");
        return 0;
    }
    const fu_value *cv = &g->values[cond];
    if (cv->kind == FU_VAL_CONST && cv->data) {
        /* A folded bool mask: check every element. */
        int64_t numel;
        if (cv->rank < 2 || fu_value_numel_const(cv, &numel) || !fu_dim_eq(cv->shape[cv->rank - 2], L.lq) ||
            !fu_dim_eq(cv->shape[cv->rank - 1], L.lk)) {
            snprintf(reason, rn, "constant mask condition is not [Lq, Lk]");
            return 0;
        }
        int64_t lq = L.lq.coef, lk = L.lk.coef;
        for (int64_t e = 0; e < numel; e++) {
            int64_t i = (e / lk) % lq, j = e % lk;
            int blocked = (fu_const_get_i(cv, e) != 0) == blocked_when;
            if (blocked != (j > i + off)) {
                snprintf(reason, rn, "mask condition is not causal at (%lld, %lld)", (long long)i, (long long)j);
                return 0;
            }
        }
        return 1;
    }
    static const char *const ops[4] = {"Less", "Greater", "LessOrEqual", "GreaterOrEqual"};
    int op = -1;
    for (int k = 0; p >= 0 && k < 4; k++)
        if (strcmp(g->nodes[p].op, ops[k]) == 0) op = k;
    if (op < 0) {
        snprintf(reason, rn, "mask condition is not a comparison of row and column indices");
        return 0;
    }
    int a = g->nodes[p].in[0], b = g->nodes[p].in[1];
    int ka = index_kind(g, a, L), kb = index_kind(g, b, L);
    int64_t sa, sb;
    if (!((ka == ROW && kb == COL) || (ka == COL && kb == ROW)) ||
        !index_start(g, a, ka == ROW ? L.lq : L.lk, &sa) || !index_start(g, b, kb == ROW ? L.lq : L.lk, &sb)) {
        snprintf(reason, rn, "mask condition does not compare Range row [Lq, 1] and column [1, Lk] indices");
        return 0;
    }
    /* cond as "col REL row". */
    static const int rel_col_first[4] = {REL_LT, REL_GT, REL_LE, REL_GE};
    static const int rel_row_first[4] = {REL_GT, REL_LT, REL_GE, REL_LE};
    int rel = ka == COL ? rel_col_first[op] : rel_row_first[op];
    if (!blocked_when) {
        static const int negate[4] = {REL_LE, REL_LT, REL_GE, REL_GT};
        rel = negate[rel];
    }
    int64_t row_start = ka == ROW ? sa : sb, col_start = ka == ROW ? sb : sa;
    /* Blocked iff col_start + j REL row_start + i. */
    if (rel != REL_GT && rel != REL_GE) {
        snprintf(reason, rn, "mask blocks keys before the query (j < i), not after: not causal");
        return 0;
    }
    int64_t shift = row_start - col_start - (rel == REL_GE ? 1 : 0);
    if (shift != off) {
        snprintf(reason, rn, "mask blocks keys j > i%+lld, causal needs j > i%+lld (Lk - Lq)", (long long)shift,
                 (long long)off);
        return 0;
    }
    return 1;
}

/* Is additive float mask m exactly the causal mask for these lengths?
 * 1 yes, 0 no (reason written). */
static int additive_is_causal(const fu_graph *g, int m, lens L, char *reason, size_t rn) {
    m = skip_mask_views(g, m);
    const fu_value *mv = &g->values[m];
    int64_t off;
    if (mv->rank < 2 || !fu_dim_eq(mv->shape[mv->rank - 2], L.lq) || !fu_dim_eq(mv->shape[mv->rank - 1], L.lk)) {
        snprintf(reason, rn, "mask is not [Lq, Lk] per head");
        return 0;
    }
    if (mv->kind == FU_VAL_CONST && mv->data) {
        int64_t numel;
        if (!causal_offset(L, &off) || fu_value_numel_const(mv, &numel) || !fu_dim_is_const(L.lk)) {
            snprintf(reason, rn, "constant mask with symbolic lengths");
            return 0;
        }
        int64_t lq = L.lq.coef, lk = L.lk.coef;
        for (int64_t e = 0; e < numel; e++) {
            int64_t i = (e / lk) % lq, j = e % lk;
            double x = fu_const_get_f(mv, e);
            int blocked = x <= BLOCKED;
            if (!blocked && x != 0.0) {
                snprintf(reason, rn, "constant mask has value %g at (%lld, %lld): not a causal mask", x, (long long)i,
                         (long long)j);
                return 0;
            }
            if (blocked != (j > i + off)) {
                snprintf(reason, rn, "constant mask is not causal at (%lld, %lld)", (long long)i, (long long)j);
                return 0;
            }
        }
        return 1;
    }
    int p = fu_m_producer(g, m, NULL);
    if (p < 0) {
        snprintf(reason, rn, "mask is a graph input");
        return 0;
    }
    const fu_node *n = &g->nodes[p];
    if (strcmp(n->op, "Trilu") == 0) {
        double k = 0;
        if (fu_attr_int(n, "upper", 1) != 1 || !filled_with_blocked(g, n->in[0]) ||
            (n->n_in > 1 && n->in[1] >= 0 && !fu_m_const_scalar(g, n->in[1], &k))) {
            snprintf(reason, rn, "Trilu mask is not the upper triangle of a blocked constant");
            return 0;
        }
        if (!causal_offset(L, &off)) {
            snprintf(reason, rn, "cannot check the causal offset Lk - Lq at compile time");
            return 0;
        }
        /* Trilu(upper, k) keeps j - i >= k: blocked iff j > i + k - 1. */
        if ((int64_t)k - 1 != off) {
            snprintf(reason, rn, "Trilu mask blocks j > i%+lld, causal needs j > i%+lld (Lk - Lq)",
                     (long long)k - 1, (long long)off);
            return 0;
        }
        return 1;
    }
    if (strcmp(n->op, "Where") == 0 && n->n_in == 3) {
        double a, b;
        if (!fu_m_const_scalar(g, n->in[1], &a) || !fu_m_const_scalar(g, n->in[2], &b) ||
            !((a <= BLOCKED && b == 0.0) || (a == 0.0 && b <= BLOCKED))) {
            snprintf(reason, rn, "Where mask does not choose between 0 and a blocked value");
            return 0;
        }
        return cond_is_causal(g, n->in[0], a <= BLOCKED, L, reason, rn);
    }
    snprintf(reason, rn, "mask is computed by %s", n->op);
    return 0;
}

/* Can m be the Attention node's attn_mask for scores of this shape? */
static int usable_mask(const fu_graph *g, int m, const fu_value *scores, char *reason, size_t rn) {
    const fu_value *mv = &g->values[m];
    if (mv->dtype != FU_F32) {
        snprintf(reason, rn, "mask is %s, not float32", fu_dtype_name(mv->dtype));
        return 0;
    }
    int r = scores->rank;
    if (mv->rank < 1 || mv->rank > r || !fu_dim_eq(mv->shape[mv->rank - 1], scores->shape[r - 1])) {
        snprintf(reason, rn, "mask cannot be an attn_mask: its last axis must be the key length");
        return 0;
    }
    for (int i = 0; i < mv->rank; i++) {
        fu_dim d = mv->shape[i], t = scores->shape[r - mv->rank + i];
        if (!dim_is(d, 1) && !fu_dim_eq(d, t)) {
            snprintf(reason, rn, "mask cannot be an attn_mask: it does not broadcast to the scores");
            return 0;
        }
    }
    /* 3-D scores [B, Lq, Lk] become one head of [B, 1, Lq, Lk]: a batch
     * axis in the mask would land on the head axis. */
    if (r == 3 && mv->rank == 3 && !dim_is(mv->shape[0], 1)) {
        snprintf(reason, rn, "mask cannot be an attn_mask: a per-batch mask of 3-D scores");
        return 0;
    }
    return 1;
}

/* ---- the rule -------------------------------------------------------------------- */

typedef struct {
    int qk;           /* the Q·Kᵀ MatMul node */
    double scale;
    int mask;         /* additive attn_mask value, or -1 */
    int causal;
    char mask_note[200];
} scores_info;

/* Walks back from the Softmax input to the Q·Kᵀ MatMul, through an optional
 * mask (Add or Where) and one optional scale (Mul/Div). Returns 1 when the
 * MatMul was found (the pattern's core), with *reason set if it cannot
 * fuse; 0 when this is not attention at all. */
static int trace_scores(fu_fuse_ctx *c, int s, int anchor, pattern *pat, scores_info *info, char *reason,
                        size_t rn) {
    const fu_graph *g = c->g;
    memset(info, 0, sizeof *info);
    info->scale = 1.0;
    info->mask = -1;
    s = skip_casts(g, s, pat, anchor);
    int mask = -1, fill = -1, fill_blocked_when = 0;
    int p = fu_m_producer(g, s, NULL);
    if (p >= 0 && strcmp(g->nodes[p].op, "Add") == 0 && g->nodes[p].n_in == 2) {
        /* The scores side is the one that reaches a MatMul. */
        for (int side = 0; side < 2 && mask < 0; side++) {
            int x = skip_casts(g, g->nodes[p].in[side], NULL, -1);
            int q = fu_m_producer(g, x, NULL), reaches = fu_m_producer(g, x, "MatMul") >= 0;
            if (q >= 0 && (strcmp(g->nodes[q].op, "Mul") == 0 || strcmp(g->nodes[q].op, "Div") == 0))
                for (int k = 0; k < g->nodes[q].n_in; k++)
                    if (fu_m_producer(g, skip_casts(g, g->nodes[q].in[k], NULL, -1), "MatMul") >= 0) reaches = 1;
            if (reaches) {
                mask = g->nodes[p].in[1 - side];
                add_node(g, pat, p, anchor);
                s = skip_casts(g, g->nodes[p].in[side], pat, anchor);
            }
        }
    } else if (p >= 0 && strcmp(g->nodes[p].op, "Where") == 0 && g->nodes[p].n_in == 3) {
        double a, b;
        if (fu_m_const_scalar(g, g->nodes[p].in[2], &b) && b <= BLOCKED) {
            fill = g->nodes[p].in[0];   /* keeps scores where cond is true */
            fill_blocked_when = 0;
            add_node(g, pat, p, anchor);
            s = skip_casts(g, g->nodes[p].in[1], pat, anchor);
        } else if (fu_m_const_scalar(g, g->nodes[p].in[1], &a) && a <= BLOCKED) {
            fill = g->nodes[p].in[0];
            fill_blocked_when = 1;
            add_node(g, pat, p, anchor);
            s = skip_casts(g, g->nodes[p].in[2], pat, anchor);
        }
    }
    /* One scale on the scores. */
    p = fu_m_producer(g, s, NULL);
    if (p >= 0 && (strcmp(g->nodes[p].op, "Mul") == 0 || strcmp(g->nodes[p].op, "Div") == 0) &&
        g->nodes[p].n_in == 2) {
        const fu_node *n = &g->nodes[p];
        int is_div = strcmp(n->op, "Div") == 0, data = -1, other = -1;
        for (int k = 0; k < 2 && data < 0; k++)
            if (fu_m_producer(g, skip_casts(g, n->in[k], NULL, -1), "MatMul") >= 0 && !(is_div && k == 1)) {
                data = n->in[k];
                other = n->in[1 - k];
            }
        if (data < 0) return 0;
        double f;
        if (!fu_m_const_scalar(g, other, &f)) {
            const fu_value *ov = &g->values[other];
            snprintf(reason, rn, "the score scale is not a constant scalar (%s of rank %d)",
                     ov->kind == FU_VAL_CONST ? "constant" : "computed tensor", ov->rank);
        } else if (is_div && f == 0.0) {
            snprintf(reason, rn, "the score scale divides by 0");
        } else {
            info->scale = is_div ? 1.0 / f : f;
        }
        add_node(g, pat, p, anchor);
        s = skip_casts(g, data, pat, anchor);
    }
    info->qk = fu_m_producer(g, s, "MatMul");
    if (info->qk < 0) return 0;
    add_node(g, pat, info->qk, anchor);
    if (reason[0]) return 1;

    const fu_value *scores = &g->values[s];
    int r = scores->rank;
    if (r != 4 && r != 3) {
        snprintf(reason, rn, "scores have rank %d, attention needs [B, H, Lq, Lk] or [B, Lq, Lk]", r);
        return 1;
    }
    lens L = {scores->shape[r - 2], scores->shape[r - 1]};
    /* With Lq > Lk the first queries see no key: the kernel makes such rows
     * 0 while the composed graph averages V (finite blocked values), so a
     * mask then stays a mask. */
    int short_keys = fu_dim_is_const(L.lq) && fu_dim_is_const(L.lk) && L.lq.coef > L.lk.coef;
    if (mask >= 0) {
        char why[160] = "Lq > Lk: some queries see no key";
        if (!short_keys && additive_is_causal(g, mask, L, why, sizeof why)) {
            info->causal = 1;
            snprintf(info->mask_note, sizeof info->mask_note, "causal mask -> is_causal");
        } else if (usable_mask(g, mask, scores, reason, rn)) {
            info->mask = mask;
            snprintf(info->mask_note, sizeof info->mask_note, "attn_mask kept (%s)", why);
        } else {
            size_t len = strlen(reason);
            snprintf(reason + len, rn - len, "; not causal either: %s", why);
        }
    } else if (fill >= 0) {
        char why[160] = "Lq > Lk: some queries see no key";
        if (!short_keys && cond_is_causal(g, fill, fill_blocked_when, L, why, sizeof why)) {
            info->causal = 1;
            snprintf(info->mask_note, sizeof info->mask_note, "causal masked fill -> is_causal");
        } else {
            snprintf(reason, rn, "masked fill (Where) that is not causal cannot be expressed: %s", why);
        }
    }
    return 1;
}

/* Single-head attention on [B, L, D] tensors (scores [B, Lq, Lk]): the
 * Attention op's 3-D form with one head. Returns 1 fused, 0 near miss
 * (reason written), -1 on error. */
static int apply_3d(fu_fuse_ctx *c, int anchor, const pattern *pat, const scores_info *info, char *reason,
                    size_t rn, fu_err *err) {
    static const int64_t swap3[3] = {0, 2, 1};
    fu_graph *g = c->g;
    const fu_node *qk = &g->nodes[info->qk], *pv = &g->nodes[anchor];
    double scale = info->scale;
    int q = strip_scales(g, qk->in[0], &scale);
    int k = is_transpose_n(g, strip_scales(g, qk->in[1], &scale), swap3, 3);
    int v = pv->in[1], y = pv->out[0];
    if (k < 0) {
        snprintf(reason, rn, "K^T is not a Transpose of K swapping the last two axes");
        return 0;
    }
    k = strip_scales(g, k, &scale);
    const fu_value *qv = &g->values[q], *kv = &g->values[k], *vv = &g->values[v], *out = &g->values[y];
    if (qv->rank != 3 || kv->rank != 3 || vv->rank != 3 || out->rank != 3 ||
        !fu_dim_eq(qv->shape[0], out->shape[0]) || !fu_dim_eq(kv->shape[0], out->shape[0]) ||
        !fu_dim_eq(vv->shape[0], out->shape[0]) || !fu_dim_eq(qv->shape[1], out->shape[1]) ||
        !fu_dim_eq(kv->shape[1], vv->shape[1]) || !fu_dim_eq(qv->shape[2], kv->shape[2]) ||
        !fu_dim_eq(vv->shape[2], out->shape[2])) {
        snprintf(reason, rn, "Q, K, V shapes do not line up (batch broadcast or mismatched lengths)");
        return 0;
    }
    if (qv->dtype != FU_F32 || kv->dtype != FU_F32 || vv->dtype != FU_F32) {
        snprintf(reason, rn, "Q, K, V must be float32");
        return 0;
    }
    int inputs[4] = {q, k, v, info->mask};
    int idx = fu_fuse_replace(c, "Attention", inputs, info->mask >= 0 ? 4 : 3, y, pat->nodes + 1, pat->n_nodes - 1,
                              err);
    if (idx < 0) return -1;
    fu_node *a = &g->nodes[idx];
    if (!fu_node_set_attr_int(a, "is_causal", info->causal) || !fu_node_set_attr_float(a, "scale", scale) ||
        !fu_node_set_attr_int(a, "q_num_heads", 1) || !fu_node_set_attr_int(a, "kv_num_heads", 1))
        return fu_fail(err, "out of memory while fusing");
    fu_fuse_accept(c, anchor, "Attention(3-D, one head, scale %g%s%s)", scale, info->mask_note[0] ? ", " : "",
                   info->mask_note);
    return 1;
}

static const char *layout_name(int l) { return l == BSHD ? "BSHD" : "BHSD"; }

static int apply(fu_fuse_ctx *c, int anchor, fu_err *err) {
    fu_graph *g = c->g;
    const fu_node *pv = &g->nodes[anchor];
    if (strcmp(pv->op, "MatMul") != 0 || pv->n_in != 2 || pv->in[0] < 0 || pv->in[1] < 0) return 0;
    pattern pat = {{0}, 0, {0}, 0};
    add_node(g, &pat, anchor, anchor);
    int probs = skip_casts(g, pv->in[0], &pat, anchor);
    int sm = fu_m_producer(g, probs, "Softmax");
    if (sm < 0) return 0;
    add_node(g, &pat, sm, anchor);
    char reason[256] = "";
    scores_info info;
    if (!trace_scores(c, g->nodes[sm].in[0], anchor, &pat, &info, reason, sizeof reason)) return 0;
    if (reason[0]) goto near_miss;

    /* Softmax over the last axis, of scores the mask did not broadcast up. */
    const fu_value *scores = &g->values[g->nodes[sm].in[0]];
    if (!same_shape(scores, &g->values[g->nodes[info.qk].out[0]])) {
        snprintf(reason, sizeof reason, "the mask broadcasts the scores to a larger shape");
        goto near_miss;
    }
    int64_t axis = fu_attr_int(&g->nodes[sm], "axis", -1);
    if (axis < 0) axis += scores->rank;
    if (axis != scores->rank - 1) {
        snprintf(reason, sizeof reason, "softmax over axis %lld, not the last (key) axis", (long long)axis);
        goto near_miss;
    }
    if (!fu_m_interior_private(c, pat.nodes, pat.n_nodes, pat.interior, pat.n_interior, reason, sizeof reason))
        goto near_miss;

    if (scores->rank == 3) {
        int got = apply_3d(c, anchor, &pat, &info, reason, sizeof reason, err);
        if (got != 0) return got;
        goto near_miss;
    }

    /* Q, Kᵀ, V of the two MatMuls, all [B, H, ., .]. */
    const fu_node *qk = &g->nodes[info.qk];
    const fu_value *out = &g->values[pv->out[0]];
    int q4 = qk->in[0], kt = qk->in[1], v4 = pv->in[1];
    if (g->values[q4].rank != 4 || g->values[kt].rank != 4 || g->values[v4].rank != 4 || out->rank != 4) {
        snprintf(reason, sizeof reason, "Q, K^T and V must be 4-D [B, H, L, D]");
        goto near_miss;
    }
    double scale = info.scale;
    operand q = {strip_scales(g, q4, &scale), BHSD};
    int bshd = is_transpose(g, q.value, PERM_BSHD_TO_BHSD);
    if (bshd >= 0) {
        q.value = strip_scales(g, bshd, &scale);
        q.layout = BSHD;
    }
    int kt_src = strip_scales(g, kt, &scale);
    operand k_rep, k_unrep, v_rep, v_unrep;
    int k_bhsd = is_transpose(g, kt_src, PERM_SWAP_LAST), k_bshd = is_transpose(g, kt_src, PERM_BSHD_TO_BHDS);
    if (k_bhsd >= 0) {
        trace_kv(g, strip_scales(g, k_bhsd, &scale), &scale, &k_rep, &k_unrep);
    } else if (k_bshd >= 0) {
        k_rep.value = k_unrep.value = strip_scales(g, k_bshd, &scale);
        k_rep.layout = k_unrep.layout = BSHD;
    } else {
        snprintf(reason, sizeof reason, "K^T is not a Transpose of K swapping the last two axes");
        goto near_miss;
    }
    double v_scale = 1.0;
    trace_kv(g, v4, &v_scale, &v_rep, &v_unrep);
    if (v_scale != 1.0) v_unrep = v_rep;   /* a scaled V is not plain V */

    /* K and V must agree on kv heads: un-repeated if both can be. */
    operand k = k_unrep, v = v_unrep;
    if (!fu_dim_eq(op_heads(g, k), op_heads(g, v))) {
        k = k_rep;
        v = v_rep;
    }
    fu_dim hq = op_heads(g, q), hkv = op_heads(g, k), group;
    const fu_value *qv = &g->values[q.value], *kv = &g->values[k.value], *vv = &g->values[v.value];
    if (!fu_dim_eq(op_heads(g, k), op_heads(g, v))) {
        char a[32], b[32];
        fu_dim_str(g, op_heads(g, v), a, sizeof a);
        fu_dim_str(g, op_heads(g, k), b, sizeof b);
        snprintf(reason, sizeof reason, "V has %s heads, K has %s", a, b);
        goto near_miss;
    }
    if (!fu_dim_eq(hq, out->shape[1]) || fu_dim_div(hq, hkv, &group)) {
        snprintf(reason, sizeof reason, "query heads are not a multiple of the kv heads");
        goto near_miss;
    }
    /* Batch, lengths and head sizes line up with the scores and output
     * (no broadcasting left for the kernel to guess). */
    if (!fu_dim_eq(qv->shape[0], out->shape[0]) || !fu_dim_eq(kv->shape[0], out->shape[0]) ||
        !fu_dim_eq(vv->shape[0], out->shape[0]) || !fu_dim_eq(op_len(g, q), out->shape[2]) ||
        !fu_dim_eq(op_len(g, k), scores->shape[3]) || !fu_dim_eq(op_len(g, v), scores->shape[3]) ||
        !fu_dim_eq(qv->shape[3], kv->shape[3]) || !fu_dim_eq(vv->shape[3], out->shape[3]) ||
        !fu_dim_eq(scores->shape[1], out->shape[1])) {
        snprintf(reason, sizeof reason, "Q, K, V shapes do not line up (batch broadcast or mismatched lengths)");
        goto near_miss;
    }
    if (qv->dtype != FU_F32 || kv->dtype != FU_F32 || vv->dtype != FU_F32) {
        snprintf(reason, sizeof reason, "Q, K, V must be float32");
        goto near_miss;
    }

    /* Rewrite. */
    int inputs[4] = {q.value, k.value, v.value, info.mask};
    int n_in = info.mask >= 0 ? 4 : 3;
    char layout[32];
    if (q.layout == k.layout && k.layout == v.layout)
        snprintf(layout, sizeof layout, "%s", layout_name(q.layout));
    else
        snprintf(layout, sizeof layout, "%s,%s,%s", layout_name(q.layout), layout_name(k.layout),
                 layout_name(v.layout));
    int idx = fu_fuse_replace(c, "Attention", inputs, n_in, pv->out[0], pat.nodes + 1, pat.n_nodes - 1, err);
    if (idx < 0) return -1;
    fu_node *a = &g->nodes[idx];
    int ok = fu_node_set_attr_int(a, "is_causal", info.causal) && fu_node_set_attr_float(a, "scale", scale);
    if (ok && fu_dim_is_const(hq) && fu_dim_is_const(hkv))
        ok = fu_node_set_attr_int(a, "q_num_heads", hq.coef) && fu_node_set_attr_int(a, "kv_num_heads", hkv.coef);
    if (ok && strcmp(layout, "BHSD") != 0) ok = fu_node_set_attr_string(a, "qkv_layout", layout) != NULL;
    if (!ok) return fu_fail(err, "out of memory while fusing");
    char hq_s[32], hkv_s[32];
    fu_dim_str(g, hq, hq_s, sizeof hq_s);
    fu_dim_str(g, hkv, hkv_s, sizeof hkv_s);
    fu_fuse_accept(c, anchor, "Attention(q_heads %s, kv_heads %s, scale %g, %s%s%s)", hq_s, hkv_s, scale, layout,
                   info.mask_note[0] ? ", " : "", info.mask_note);
    return 1;

near_miss:
    fu_fuse_reject(c, anchor, "%s", reason);
    return 0;
}

const fu_fusion_rule fu_rule_attention = {"attention", apply};
