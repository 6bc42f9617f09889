/* Rule "rotary_embedding": the rotate-half RoPE that HF Llama/Qwen and NeoX
 * exporters produce,
 *
 *     out = x * cos + rotate_half(x) * sin,
 *     rotate_half(x) = Concat(Neg(x[..., d/2:]), x[..., :d/2])   (last axis)
 *
 * becomes one RotaryEmbedding node (ir/ops/rotary.c). With partial rotation
 * the anchor is Concat(rope(x[..., :rot]), x[..., rot:]) and the fused node
 * gets rotary_embedding_dim = rot.
 *
 * The interleaved (GPT-J) spelling rotates pairs (2i, 2i+1) and becomes the
 * same node with interleaved = 1:
 *
 *     rotated = Reshape(Concat(Unsqueeze(-x_odd, -1), Unsqueeze(x_even, -1)), [.., d])
 *
 * x_even/x_odd taken from x viewed as [.., d/2, 2] (Gather or Slice of
 * index 0/1 on the last axis) or as x[..., 0::2] / x[..., 1::2]; its cos/sin
 * repeat each value twice in place (c[..., None] Expanded/Tiled/Concatenated
 * to [.., d/2, 2] and Reshaped) instead of cat(c, c).
 *
 * cos and sin are traced back to where their angles come from:
 *   - computed: Cos/Sin(Concat(freqs, freqs)) [* amplitude], freqs = positions
 *     (x) inv_freq (Mul, MatMul, or Transpose(MatMul) as HF writes it). The
 *     fused node then takes inv_freq (fusec's 5th input) and the positions
 *     (position_ids, or pos_offset + s for a Range), so the whole cos/sin
 *     subgraph dies once every rope using it is fused.
 *   - a table: a constant Gathered by position ids, a constant Sliced from a
 *     row offset, or a folded constant indexed by s. The fused node takes the
 *     first half of its columns (cat(c, c) layout) as new constants.
 * cos/sin broadcast over heads either as [.., 1, S, D] (x is [B, H, S, D]) or
 * [.., S, 1, D] (x is [B, S, H, D], fused with layout "BSHD").
 *
 * The cos/sin nodes are shared by the q and k ropes of every layer, so they
 * are not part of the replaced pattern: DCE drops them when unused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fusion.h"

#define MAX_PATTERN 24
#define WHY_LEN 200

static int op_is(const fu_graph *g, int node, const char *op) {
    return node >= 0 && strcmp(g->nodes[node].op, op) == 0;
}

static fu_dim last_dim(const fu_graph *g, int v) { return g->values[v].shape[g->values[v].rank - 1]; }

static int dim_is(fu_dim d, int64_t c) { return fu_dim_is_const(d) && d.coef == c; }

/* Integer list held by a constant input or known from shape inference. */
static int read_ints(const fu_graph *g, int v, int64_t *out, int max, int *count) {
    if (v < 0) return 0;
    const fu_value *val = &g->values[v];
    if (val->kind == FU_VAL_CONST && val->data && (val->dtype == FU_I64 || val->dtype == FU_I32)) {
        int64_t numel;
        if (fu_value_numel_const(val, &numel) || numel > max) return 0;
        for (int64_t i = 0; i < numel; i++) out[i] = fu_const_get_i(val, i);
        *count = (int)numel;
        return 1;
    }
    if (val->n_known <= 0 || val->n_known > max) return 0;
    for (int i = 0; i < val->n_known; i++) {
        if (!fu_dim_is_const(val->known[i])) return 0;
        out[i] = val->known[i].coef;
    }
    *count = val->n_known;
    return 1;
}

/* Slice node cutting only axis `want_axis` (negative counts from the end)
 * with a positive constant step (*step) and a constant start: its source,
 * start (normalised against the static input dim) and the length of the
 * result (-1 if symbolic). Other listed axes must be left whole. */
static int slice_on_axis_stepped(const fu_graph *g, int node, int want_axis, int *src, int64_t *start,
                                 int64_t *len, int64_t *step) {
    if (!op_is(g, node, "Slice")) return 0;
    const fu_node *n = &g->nodes[node];
    if (n->n_in < 3 || n->in[0] < 0) return 0;
    const fu_value *x = &g->values[n->in[0]], *y = &g->values[n->out[0]];
    int rank = x->rank;
    if (rank < 1 || y->rank != rank) return 0;
    int axis = want_axis < 0 ? want_axis + rank : want_axis;
    if (axis < 0 || axis >= rank) return 0;
    int64_t starts[FU_MAX_RANK], axes[FU_MAX_RANK], steps[FU_MAX_RANK];
    int n_starts, n_axes = 0, n_steps = 0;
    if (!read_ints(g, n->in[1], starts, FU_MAX_RANK, &n_starts)) return 0;
    if (n->n_in > 3 && n->in[3] >= 0) {
        if (!read_ints(g, n->in[3], axes, FU_MAX_RANK, &n_axes) || n_axes != n_starts) return 0;
    } else {
        n_axes = n_starts;
        for (int i = 0; i < n_axes; i++) axes[i] = i;
    }
    *step = 1;
    if (n->n_in > 4 && n->in[4] >= 0) {
        if (!read_ints(g, n->in[4], steps, FU_MAX_RANK, &n_steps) || n_steps != n_starts) return 0;
    }
    int found = 0;
    for (int i = 0; i < n_axes; i++) {
        int64_t a = axes[i] < 0 ? axes[i] + rank : axes[i];
        if (n_steps && steps[i] != 1 && (a != axis || steps[i] < 1)) return 0;
        if (a == axis) {
            if (n_steps) *step = steps[i];
            fu_dim d = x->shape[axis];
            if (!fu_dim_is_const(d)) return 0;
            int64_t s = starts[i] < 0 ? starts[i] + d.coef : starts[i];
            *start = s < 0 ? 0 : s > d.coef ? d.coef : s;
            *len = fu_dim_is_const(y->shape[axis]) ? y->shape[axis].coef : -1;
            found = 1;
        } else if (a < 0 || a >= rank || !fu_dim_eq(x->shape[a], y->shape[a])) {
            return 0;
        }
    }
    if (!found) return 0;
    *src = n->in[0];
    return 1;
}

/* slice_on_axis_stepped with step 1. */
static int slice_on_axis(const fu_graph *g, int node, int want_axis, int *src, int64_t *start, int64_t *len) {
    int64_t step;
    return slice_on_axis_stepped(g, node, want_axis, src, start, len, &step) && step == 1;
}

/* Neg(v), or v * -1: the negated value, else -1. */
static int negated(const fu_graph *g, int v, int *node) {
    int p = fu_m_producer(g, v, NULL);
    if (p < 0) return -1;
    const fu_node *n = &g->nodes[p];
    double c;
    if (op_is(g, p, "Neg")) {
        *node = p;
        return n->in[0];
    }
    if (op_is(g, p, "Mul") && n->n_in == 2 && n->in[0] >= 0 && n->in[1] >= 0)
        for (int k = 0; k < 2; k++)
            if (fu_m_const_scalar(g, n->in[k], &c) && c == -1.0) {
                *node = p;
                return n->in[1 - k];
            }
    return -1;
}

/* Concat along the last axis with exactly two inputs. */
static int concat_last_axis(const fu_graph *g, int node) {
    if (!op_is(g, node, "Concat")) return 0;
    const fu_node *n = &g->nodes[node];
    int rank = g->values[n->out[0]].rank;
    int64_t axis = fu_attr_int(n, "axis", 0);
    return n->n_in == 2 && n->in[0] >= 0 && n->in[1] >= 0 && rank >= 1 && (axis == -1 || axis == rank - 1);
}

/* Unsqueeze adding a trailing axis of 1 (x[..., None]): its input, else -1. */
static int unsqueezed_last(const fu_graph *g, int v) {
    int node = fu_m_producer(g, v, "Unsqueeze");
    if (node < 0) return -1;
    int in = g->nodes[node].in[0];
    const fu_value *a = &g->values[in], *b = &g->values[v];
    if (b->rank != a->rank + 1 || !dim_is(b->shape[b->rank - 1], 1)) return -1;
    for (int i = 0; i < a->rank; i++)
        if (!fu_dim_eq(a->shape[i], b->shape[i])) return -1;
    return in;
}

/* Reshape [.., h, 2] -> [.., 2h] of c repeated along a new last axis, each
 * value twice in place (the interleaved layout c0 c0 c1 c1 ..): Expand or
 * Tile of c[..., None], or Concat(c[..., None], c[..., None]). Returns c,
 * else -1. */
static int pairwise_duplicate(const fu_graph *g, int reshape_node) {
    if (!op_is(g, reshape_node, "Reshape")) return -1;
    int in = g->nodes[reshape_node].in[0], out = g->nodes[reshape_node].out[0];
    const fu_value *a = &g->values[in], *b = &g->values[out];
    if (a->rank < 2 || b->rank != a->rank - 1 || !dim_is(a->shape[a->rank - 1], 2) ||
        !fu_dim_is_const(a->shape[a->rank - 2]) || !dim_is(b->shape[b->rank - 1], 2 * a->shape[a->rank - 2].coef))
        return -1;
    int p = fu_m_producer(g, in, NULL);
    if (p < 0) return -1;
    const fu_node *pn = &g->nodes[p];
    if (op_is(g, p, "Expand")) return unsqueezed_last(g, pn->in[0]);
    if (op_is(g, p, "Tile") && pn->n_in == 2) {
        int64_t reps[FU_MAX_RANK + 1];
        int n_reps;
        if (!read_ints(g, pn->in[1], reps, FU_MAX_RANK + 1, &n_reps) || n_reps != a->rank) return -1;
        for (int i = 0; i < n_reps; i++)
            if (reps[i] != (i == n_reps - 1 ? 2 : 1)) return -1;
        return unsqueezed_last(g, pn->in[0]);
    }
    if (concat_last_axis(g, p)) {
        /* The two Unsqueezes may be one node or two of the same value. */
        int c0 = unsqueezed_last(g, pn->in[0]), c1 = unsqueezed_last(g, pn->in[1]);
        return c0 >= 0 && c0 == c1 ? c0 : -1;
    }
    return -1;
}

/* ---- positions ------------------------------------------------------------ */

enum { POS_COUNTING, POS_IDS };

/* pos = offset + s (POS_COUNTING) or pos = ids[b, s] (POS_IDS). */
typedef struct {
    int kind;
    int64_t offset;
    int ids;
} positions;

static int is_view_or_cast(const fu_graph *g, int node) {
    static const char *const ops[] = {"Cast", "Unsqueeze", "Squeeze", "Reshape", "Expand", "Identity"};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (op_is(g, node, ops[i])) return 1;
    return 0;
}

static int is_position_ids(const fu_graph *g, int v) {
    return g->values[v].dtype == FU_I64 && (g->values[v].rank == 1 || g->values[v].rank == 2);
}

/* Walks the positions feeding the angles back through casts, views and
 * constant offsets to a Range (or a constant run start, start+1, ...), or
 * else to the int64 position ids tensor nearest the angles. */
static int walk_positions(const fu_graph *g, int v, positions *p, char *why, size_t n) {
    int64_t offset = 0;
    int ids = -1;  /* first int64 [S] / [B, S] seen: the ids if no Range is found */
    for (int steps = 0; steps < 32 && v >= 0; steps++) {
        if (ids < 0 && is_position_ids(g, v)) ids = v;
        const fu_value *val = &g->values[v];
        int node = fu_m_producer(g, v, NULL);
        if (node < 0) {
            int64_t numel;
            if (val->kind == FU_VAL_CONST && val->data && (val->dtype == FU_I64 || val->dtype == FU_I32) &&
                fu_value_numel_const(val, &numel) == 0 && numel > 0) {
                int run = 1;
                int64_t first = fu_const_get_i(val, 0);
                for (int64_t i = 1; i < numel && run; i++) run = fu_const_get_i(val, i) == first + i;
                if (run) {
                    p->kind = POS_COUNTING;
                    p->offset = offset + first;
                    return 1;
                }
            }
            break;
        }
        const fu_node *nd = &g->nodes[node];
        double c;
        if (is_view_or_cast(g, node)) {
            v = nd->in[0];
        } else if (op_is(g, node, "Add") && nd->n_in == 2 && nd->in[0] >= 0 && nd->in[1] >= 0 &&
                   (fu_m_const_scalar(g, nd->in[0], &c) || fu_m_const_scalar(g, nd->in[1], &c)) &&
                   c == floor(c)) {
            offset += (int64_t)c;
            v = fu_m_const_scalar(g, nd->in[0], &c) ? nd->in[1] : nd->in[0];
        } else if (op_is(g, node, "Range")) {
            double start, delta;
            if (fu_m_const_scalar(g, nd->in[0], &start) && fu_m_const_scalar(g, nd->in[2], &delta) &&
                delta == 1.0 && start == floor(start)) {
                p->kind = POS_COUNTING;
                p->offset = offset + (int64_t)start;
                return 1;
            }
            break;
        } else {
            break;
        }
    }
    if (ids < 0) {
        snprintf(why, n, "positions are neither a Range with constant start and step 1 nor int64 position ids");
        return 0;
    }
    p->kind = POS_IDS;
    p->offset = 0;
    p->ids = ids;
    return 1;
}

static int same_positions(const positions *a, const positions *b) {
    if (a->kind != b->kind) return 0;
    return a->kind == POS_COUNTING ? a->offset == b->offset : a->ids == b->ids;
}

/* ---- angles ------------------------------------------------------------------ */

enum { ANGLES_COMPUTED, ANGLES_TABLE };

/* How cos/sin repeat each frequency over the rotated channels: cat(c, c)
 * for rotate-half, c0 c0 c1 c1 .. for interleaved pairs. */
enum { DUP_NONE, DUP_HALVES, DUP_PAIRS };

/* Where one of cos / sin comes from. */
typedef struct {
    int form;
    int trig;               /* ANGLES_COMPUTED: +1 Cos, -1 Sin */
    int doubled;            /* a duplication on the way: DUP_HALVES or DUP_PAIRS */
    double amplitude;       /* scalar factors after Cos/Sin */
    double angle_scale;     /* scalar factors on the angle, before Cos/Sin */
    int inv_freq;           /* ANGLES_COMPUTED: constant, `half` values */
    int table;              /* ANGLES_TABLE: constant, rows by position */
    int64_t rows, width;
    positions pos;
} angle_source;

/* A float constant with `half` values behind casts and views. */
static int inv_freq_const(const fu_graph *g, int v, int64_t half) {
    for (int steps = 0; steps < 16 && v >= 0; steps++) {
        int node = fu_m_producer(g, v, NULL);
        if (node >= 0) {
            if (!is_view_or_cast(g, node)) return -1;
            v = g->nodes[node].in[0];
            continue;
        }
        const fu_value *val = &g->values[v];
        int64_t numel;
        if (val->kind != FU_VAL_CONST || !val->data || !fu_dtype_is_float(val->dtype) ||
            fu_value_numel_const(val, &numel) || numel != half)
            return -1;
        return v;
    }
    return -1;
}

/* freqs = positions (x) inv_freq: Mul or MatMul, optionally Transposed over
 * its last two axes (HF: (inv_freq[:, None] @ pos[None, :]).transpose). */
static int walk_freqs(const fu_graph *g, int v, int64_t half, angle_source *a, char *why, size_t n) {
    int node = fu_m_producer(g, v, NULL);
    int transposed = 0;
    if (op_is(g, node, "Transpose")) {
        const fu_node *t = &g->nodes[node];
        const fu_attr *perm = fu_node_attr(t, "perm");
        int r = g->values[t->out[0]].rank;
        int ok = perm && perm->kind == FU_ATTR_INTS && perm->n == r && r >= 2;
        for (int i = 0; ok && i < r - 2; i++) ok = perm->ints[i] == i;
        if (!ok || perm->ints[r - 2] != r - 1 || perm->ints[r - 1] != r - 2) {
            snprintf(why, n, "the angles' Transpose does not swap the last two axes");
            return 0;
        }
        transposed = 1;
        node = fu_m_producer(g, t->in[0], NULL);
    }
    int matmul = op_is(g, node, "MatMul");
    if (!matmul && !op_is(g, node, "Mul")) {
        snprintf(why, n, "the angles are not positions times inv_freq (Mul or MatMul)");
        return 0;
    }
    const fu_node *m = &g->nodes[node];
    /* Positions run along the sequence axis, inv_freq along the frequency
     * axis: the last axis, or the one before it when transposed. */
    int freq_axis_from_end = transposed ? 2 : 1;
    for (int k = 0; k < 2; k++) {
        /* MatMul is not commutative: [S,1] @ [1,half], or [half,1] @ [1,S]. */
        if (matmul && k != (transposed ? 0 : 1)) continue;
        int fv = m->in[k], pv = m->in[1 - k];
        const fu_value *f = &g->values[fv], *pvv = &g->values[pv];
        int iv = inv_freq_const(g, fv, half);
        if (iv < 0 || f->rank < freq_axis_from_end || !dim_is(f->shape[f->rank - freq_axis_from_end], half))
            continue;
        /* The positions operand holds 1 on the frequency axis. */
        if (pvv->rank < 2 || !dim_is(pvv->shape[pvv->rank - freq_axis_from_end], 1)) continue;
        a->inv_freq = iv;
        return walk_positions(g, pv, &a->pos, why, n);
    }
    snprintf(why, n, "no operand of the angles' %s is an inv_freq constant of %lld values", m->op,
             (long long)half);
    return 0;
}

/* A constant table [.., rows, width] with at most one dim > 1 before the
 * last: the cos or sin rows by position. */
static int table_shape(const fu_graph *g, int v, angle_source *a, char *why, size_t n) {
    const fu_value *t = &g->values[v];
    int64_t numel;
    if (!fu_dtype_is_float(t->dtype) || t->rank < 1 || fu_value_numel_const(t, &numel)) {
        snprintf(why, n, "cos/sin table is not a static float tensor");
        return 0;
    }
    int big = 0;
    for (int i = 0; i + 1 < t->rank; i++) big += !dim_is(t->shape[i], 1);
    if (big > 1) {
        snprintf(why, n, "cos/sin table varies along more than one axis besides the last");
        return 0;
    }
    a->form = ANGLES_TABLE;
    a->table = v;
    a->width = t->shape[t->rank - 1].coef;
    a->rows = a->width ? numel / a->width : 0;
    return 1;
}

/* Slice of a constant along axis 0 only, constant start: the constant. */
static int const_rows_slice(const fu_graph *g, int v, int64_t *start) {
    int node = fu_m_producer(g, v, NULL), src;
    int64_t len;
    if (!slice_on_axis(g, node, 0, &src, start, &len)) return -1;
    const fu_value *s = &g->values[src];
    return s->kind == FU_VAL_CONST && s->data && s->rank == 2 ? src : -1;
}

/* Traces the cos or sin value multiplied into the rope back to its source. */
static int walk_angles(const fu_graph *g, int v, int64_t half, angle_source *a, char *why, size_t n) {
    memset(a, 0, sizeof *a);
    a->amplitude = 1.0;
    a->angle_scale = 1.0;
    for (int steps = 0; steps < 64 && v >= 0; steps++) {
        int node = fu_m_producer(g, v, NULL);
        if (node < 0) {
            const fu_value *val = &g->values[v];
            if (val->kind == FU_VAL_CONST && val->data && !a->trig) {
                a->pos.kind = POS_COUNTING;  /* a folded table: row s is position s */
                return table_shape(g, v, a, why, n);
            }
            char name[96];
            fu_sanitize(val->name, name, sizeof name);
            snprintf(why, n, "cos/sin come from graph input '%s'", name);
            return 0;
        }
        const fu_node *nd = &g->nodes[node];
        double c;
        int paired = pairwise_duplicate(g, node);
        if (paired >= 0) {
            if (a->doubled) {
                snprintf(why, n, "cos/sin are duplicated twice along the last axis");
                return 0;
            }
            a->doubled = DUP_PAIRS;
            v = paired;
        } else if (is_view_or_cast(g, node)) {
            int in = nd->in[0];
            if (g->values[in].rank < 1 || !fu_dim_eq(last_dim(g, in), last_dim(g, v))) {
                snprintf(why, n, "a %s on the cos/sin path changes the last axis", nd->op);
                return 0;
            }
            v = in;
        } else if (op_is(g, node, "Mul") && nd->n_in == 2 &&
                   (fu_m_const_scalar(g, nd->in[0], &c) || fu_m_const_scalar(g, nd->in[1], &c))) {
            if (a->trig) a->angle_scale *= c;
            else a->amplitude *= c;
            v = fu_m_const_scalar(g, nd->in[0], &c) ? nd->in[1] : nd->in[0];
        } else if (concat_last_axis(g, node)) {
            if (nd->in[0] != nd->in[1] || a->doubled) {
                snprintf(why, n, "cos/sin are not cat(c, c) along the last axis");
                return 0;
            }
            a->doubled = DUP_HALVES;
            v = nd->in[0];
        } else if ((op_is(g, node, "Cos") || op_is(g, node, "Sin")) && !a->trig) {
            a->trig = op_is(g, node, "Cos") ? 1 : -1;
            v = nd->in[0];
        } else if (a->trig) {
            if (!a->doubled) {
                snprintf(why, n, "the angles are not cat(freqs, freqs) nor freqs repeated pairwise");
                return 0;
            }
            a->form = ANGLES_COMPUTED;
            return walk_freqs(g, v, half, a, why, n);
        } else if (op_is(g, node, "Gather") && fu_attr_int(nd, "axis", 0) == 0) {
            int64_t start = 0;
            int table = nd->in[0];
            int sliced = const_rows_slice(g, table, &start);
            if (sliced >= 0 && start == 0) table = sliced;   /* cache[:seq][ids] */
            const fu_value *t = &g->values[table];
            if (t->kind != FU_VAL_CONST || !t->data || t->rank != 2) {
                snprintf(why, n, "cos/sin are gathered from a tensor that is not a constant 2-D table");
                return 0;
            }
            if (!table_shape(g, table, a, why, n)) return 0;
            return walk_positions(g, nd->in[1], &a->pos, why, n);
        } else if (const_rows_slice(g, v, &a->pos.offset) >= 0) {
            a->pos.kind = POS_COUNTING;  /* cache[offset : offset + S] */
            return table_shape(g, const_rows_slice(g, v, &a->pos.offset), a, why, n);
        } else {
            snprintf(why, n, "cos/sin come from an unsupported %s node", nd->op);
            return 0;
        }
    }
    snprintf(why, n, "cos/sin path is too long");
    return 0;
}

/* Every frequency's two columns are equal: columns i and half + i (the
 * rotate-half cat(c, c) layout, DUP_HALVES) or 2i and 2i + 1 (DUP_PAIRS). */
static int table_repeats(const fu_graph *g, int table, int64_t rows, int64_t half, int layout) {
    const fu_value *t = &g->values[table];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < half; i++) {
            int64_t a = layout == DUP_PAIRS ? 2 * i : i, b = layout == DUP_PAIRS ? 2 * i + 1 : half + i;
            if (fu_const_get_f(t, r * 2 * half + a) != fu_const_get_f(t, r * 2 * half + b)) return 0;
        }
    return 1;
}

static int row_is_zero(const fu_graph *g, int table, int64_t width) {
    for (int64_t i = 0; i < width; i++)
        if (fu_const_get_f(&g->values[table], i) != 0.0) return 0;
    return 1;
}

/* ---- the match ------------------------------------------------------------------ */

typedef struct {
    int x;                       /* the tensor rotated (x_rot when partial) */
    int x_full;                  /* the fused node's X */
    int64_t rot_dim, head_dim;
    int bshd;
    int interleaved;             /* pairs (2i, 2i+1) instead of (i, i + half) */
    angle_source cos, sin;
    int nodes[MAX_PATTERN];
    int n_nodes;
    int out_value;
} rope_match;

static void add_node(rope_match *m, int node) {
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i] == node) return;   /* the pairs' shared Reshape */
    if (m->n_nodes < MAX_PATTERN) m->nodes[m->n_nodes++] = node;
}

/* Reads the rotate-half Concat: Concat(Neg(x[.., half:]), x[.., :half]).
 * Returns 0 silently when the Concat's inputs are not Slices of the last
 * axis (not a rotate_half at all), -1 with a reason for a near miss. */
static int match_rotate_half(const fu_graph *g, int concat, rope_match *m, char *why, size_t n) {
    const fu_node *cn = &g->nodes[concat];
    int src[2], neg[2], slice_node[2], neg_node[2] = {-1, -1};
    int64_t start[2], len[2];
    for (int k = 0; k < 2; k++) {
        int v = cn->in[k];
        int inner = negated(g, v, &neg_node[k]);
        neg[k] = inner >= 0;
        if (neg[k]) v = inner;
        slice_node[k] = fu_m_producer(g, v, "Slice");
        if (!slice_on_axis(g, slice_node[k], -1, &src[k], &start[k], &len[k])) return 0;
    }
    if (src[0] != src[1]) {
        snprintf(why, n, "rotate_half slices two different tensors");
        return -1;
    }
    m->x = src[0];
    const fu_value *x = &g->values[m->x];
    if (x->rank != 4 || !fu_dim_is_const(last_dim(g, m->x)) || x->dtype != FU_F32) {
        snprintf(why, n, "rotated tensor is not a float32 4-D tensor with a static head size");
        return -1;
    }
    int64_t d = last_dim(g, m->x).coef, half = d / 2;
    if (d % 2 || start[0] != half || len[0] != d - half || start[1] != 0 || len[1] != half) {
        if (neg[1] && !neg[0] && start[0] == 0 && start[1] == half)
            snprintf(why, n, "Neg on the wrong half: rotate_half negates x[..., d/2:], which comes first");
        else
            snprintf(why, n, "Slice not at d/2: rotate_half takes [%lld, +%lld) and [%lld, +%lld) of head size %lld",
                     (long long)start[0], (long long)len[0], (long long)start[1], (long long)len[1], (long long)d);
        return -1;
    }
    if (!neg[0] || neg[1]) {
        snprintf(why, n, neg[1] ? "Neg on the wrong half: rotate_half negates x[..., d/2:], which comes first"
                                : "rotate_half has no Neg on x[..., d/2:]");
        return -1;
    }
    add_node(m, concat);
    add_node(m, neg_node[0]);
    add_node(m, slice_node[0]);
    add_node(m, slice_node[1]);
    m->rot_dim = m->head_dim = d;
    return 1;
}

/* Reshape of x to [.., d/2, 2] (the pairs view): x, else -1. */
static int pairs_view_of(const fu_graph *g, int node) {
    if (!op_is(g, node, "Reshape")) return -1;
    int x = g->nodes[node].in[0];
    const fu_value *v = &g->values[g->nodes[node].out[0]], *xv = &g->values[x];
    if (v->rank < 2 || xv->rank != v->rank - 1 || !dim_is(v->shape[v->rank - 1], 2) ||
        !fu_dim_is_const(v->shape[v->rank - 2]) || !dim_is(last_dim(g, x), 2 * v->shape[v->rank - 2].coef))
        return -1;
    return x;
}

/* One element of the interleaved pairs: x[..., k::2] (GPT-J's strided
 * Slice), or x viewed as [.., d/2, 2] by a Reshape then Gather(k) or
 * Slice([k, k+1)) (+ Squeeze) on the last axis. Sets *src = x, *index = k
 * and adds its nodes to m. */
static int pair_element(const fu_graph *g, int v, int *src, int64_t *index, rope_match *m) {
    int node = fu_m_producer(g, v, NULL);
    int squeeze = -1;
    if (op_is(g, node, "Squeeze")) {
        int in = g->nodes[node].in[0];
        if (g->values[in].rank != g->values[v].rank + 1 || !dim_is(last_dim(g, in), 1)) return 0;
        squeeze = node;
        node = fu_m_producer(g, in, NULL);
    }
    int from, x;
    int64_t start, len, step;
    if (op_is(g, node, "Gather") && squeeze < 0) {
        const fu_node *gn = &g->nodes[node];
        int rank = g->values[gn->in[0]].rank;
        int64_t axis = fu_attr_int(gn, "axis", 0);
        double k;
        if ((axis != -1 && axis != rank - 1) || g->values[gn->in[1]].rank != 0 || !fu_m_const_scalar(g, gn->in[1], &k))
            return 0;
        from = fu_m_producer(g, gn->in[0], NULL);
        x = pairs_view_of(g, from);
        if (x < 0 || (k != 0 && k != 1 && k != -1 && k != -2)) return 0;
        *index = k < 0 ? (int64_t)k + 2 : (int64_t)k;
    } else if (slice_on_axis_stepped(g, node, -1, &from, &start, &len, &step)) {
        if (step == 2 && squeeze < 0) {
            x = from;   /* x[..., k::2] */
            if (!fu_dim_is_const(last_dim(g, x)) || len != last_dim(g, x).coef / 2) return 0;
            from = -1;
        } else {
            x = pairs_view_of(g, fu_m_producer(g, from, NULL));
            if (x < 0 || step != 1 || len != 1) return 0;
            from = fu_m_producer(g, from, NULL);
        }
        if (start != 0 && start != 1) return 0;
        *index = start;
    } else {
        return 0;
    }
    add_node(m, node);
    if (squeeze >= 0) add_node(m, squeeze);
    if (from >= 0) add_node(m, from);
    *src = x;
    return 1;
}

/* Reads the interleaved (GPT-J) rotation at value rv:
 * Reshape(Concat(Unsqueeze(-x_odd, -1), Unsqueeze(x_even, -1)), [.., d])
 * (torch.stack(..., -1).flatten(-2)), Neg before or after the Unsqueeze.
 * Returns 0 silently when rv is not built that way, -1 with a reason for a
 * near miss. */
static int match_interleaved(const fu_graph *g, int rv, rope_match *m, char *why, size_t n) {
    int back = fu_m_producer(g, rv, "Reshape");
    if (back < 0) return 0;
    int stacked = g->nodes[back].in[0];
    const fu_value *sv = &g->values[stacked];
    if (sv->rank < 2 || g->values[rv].rank != sv->rank - 1 || !dim_is(sv->shape[sv->rank - 1], 2)) return 0;
    int concat = fu_m_producer(g, stacked, "Concat");
    if (!concat_last_axis(g, concat)) return 0;
    const fu_node *cn = &g->nodes[concat];
    int src[2], neg[2] = {0, 0};
    int64_t index[2];
    rope_match found = *m;
    for (int k = 0; k < 2; k++) {
        int v = cn->in[k];
        for (int steps = 0; steps < 3; steps++) {
            int node = fu_m_producer(g, v, NULL), inner = unsqueezed_last(g, v);
            if (inner < 0 && !neg[k] && (inner = negated(g, v, &node)) >= 0) neg[k] = 1;
            if (inner < 0) break;
            add_node(&found, node);
            v = inner;
        }
        if (!pair_element(g, v, &src[k], &index[k], &found)) return 0;
    }
    if (src[0] != src[1]) {
        snprintf(why, n, "interleaved rotation takes its pairs from two different tensors");
        return -1;
    }
    const fu_value *x = &g->values[src[0]];
    if (x->rank != 4 || !fu_dim_is_const(last_dim(g, src[0])) || x->dtype != FU_F32 || g->values[rv].rank != 4 ||
        !fu_dim_eq(last_dim(g, rv), last_dim(g, src[0]))) {
        snprintf(why, n, "rotated tensor is not a float32 4-D tensor with a static head size");
        return -1;
    }
    if (!(index[0] == 1 && neg[0] && index[1] == 0 && !neg[1])) {
        if (index[0] == 0 && !neg[0] && index[1] == 1 && neg[1])
            snprintf(why, n, "pairs in the wrong order: the interleaved rotation stacks (-x_odd, x_even), "
                             "this stacks (x_even, -x_odd)");
        else if (!neg[0] && !neg[1])
            snprintf(why, n, "interleaved rotation has no Neg on x_odd");
        else
            snprintf(why, n, "interleaved rotation does not stack (-x[..., 1::2], x[..., 0::2])");
        return -1;
    }
    *m = found;
    add_node(m, concat);
    add_node(m, back);
    m->x = src[0];
    m->rot_dim = m->head_dim = last_dim(g, src[0]).coef;
    m->interleaved = 1;
    return 1;
}

/* Checks cos/sin shapes against x and picks the layout: the one broadcast
 * axis of cos that is not 1 is the sequence axis. */
static int pick_layout(const fu_graph *g, int cos_v, int sin_v, rope_match *m, char *why, size_t n) {
    const fu_value *x = &g->values[m->x], *c = &g->values[cos_v], *s = &g->values[sin_v];
    if (c->rank != s->rank || c->rank < 1 || c->rank > 4) {
        snprintf(why, n, "cos/sin have ranks %d and %d (1 to 4 supported)", c->rank, s->rank);
        return 0;
    }
    fu_dim cd[4];
    for (int i = 0; i < 4; i++) {
        int j = i - (4 - c->rank);
        cd[i] = j >= 0 ? c->shape[j] : fu_dim_const(1);
        if (j >= 0 && !fu_dim_eq(c->shape[j], s->shape[j])) {
            snprintf(why, n, "cos and sin have different shapes");
            return 0;
        }
    }
    if (!fu_dim_eq(cd[3], x->shape[3])) {
        snprintf(why, n, "cos/sin last dim differs from the rotated head size");
        return 0;
    }
    if (!dim_is(cd[0], 1) && !fu_dim_eq(cd[0], x->shape[0])) {
        snprintf(why, n, "cos/sin batch dim differs from x's");
        return 0;
    }
    int on1 = !dim_is(cd[1], 1), on2 = !dim_is(cd[2], 1);
    if (on1 && on2) {
        snprintf(why, n, "cos/sin vary along both axes 1 and 2 (no heads axis to broadcast over)");
        return 0;
    }
    if (on2 || (!on1 && dim_is(x->shape[2], 1))) m->bshd = 0;
    else if (on1 || dim_is(x->shape[1], 1)) m->bshd = 1;
    else {
        snprintf(why, n, "cos/sin do not vary along a sequence axis");
        return 0;
    }
    fu_dim seq = x->shape[m->bshd ? 1 : 2];
    if ((on1 || on2) && !fu_dim_eq(cd[m->bshd ? 1 : 2], seq)) {
        snprintf(why, n, "cos/sin sequence length differs from x's");
        return 0;
    }
    return 1;
}

/* The position ids must be [S] or [1 or B, S] for x's batch and sequence. */
static int check_ids(const fu_graph *g, const rope_match *m, int ids, char *why, size_t n) {
    const fu_value *p = &g->values[ids], *x = &g->values[m->x];
    fu_dim batch = x->shape[0], seq = x->shape[m->bshd ? 1 : 2];
    int ok = p->rank == 1 ? fu_dim_eq(p->shape[0], seq)
                          : fu_dim_eq(p->shape[1], seq) && (dim_is(p->shape[0], 1) || fu_dim_eq(p->shape[0], batch));
    if (!ok) snprintf(why, n, "position ids are not [B, S] for x's batch and sequence");
    return ok;
}

static int compare_angles(const fu_graph *g, const rope_match *m, char *why, size_t n) {
    const angle_source *c = &m->cos, *s = &m->sin;
    int64_t half = m->rot_dim / 2;
    if (c->form != s->form) {
        snprintf(why, n, "cos and sin come from different kinds of source");
        return 0;
    }
    if (!same_positions(&c->pos, &s->pos)) {
        snprintf(why, n, "cos and sin from different position sources");
        return 0;
    }
    if (fabs(c->amplitude - s->amplitude) > 1e-6 * fabs(c->amplitude)) {
        snprintf(why, n, "cos and sin have different amplitudes (%g, %g)", c->amplitude, s->amplitude);
        return 0;
    }
    if (c->pos.kind == POS_IDS && !check_ids(g, m, c->pos.ids, why, n)) return 0;
    int want_dup = m->interleaved ? DUP_PAIRS : DUP_HALVES;
    for (int k = 0; k < 2; k++) {
        int dup = k ? s->doubled : c->doubled;
        if (dup && dup != want_dup) {
            snprintf(why, n, m->interleaved ? "layouts mismatched: cos/sin duplicated half-wise (cat(c, c)) "
                                              "but the rotation is interleaved (pairs 2i, 2i+1)"
                                            : "layouts mismatched: cos/sin duplicated pairwise (interleaved) "
                                              "but the rotation is rotate-half");
            return 0;
        }
    }
    if (c->form == ANGLES_COMPUTED) {
        if (c->trig == -1 && s->trig == 1) {
            snprintf(why, n, "cos and sin swapped: x is multiplied by the Sin and rotate_half(x) by the Cos");
            return 0;
        }
        if (c->trig != 1 || s->trig != -1) {
            snprintf(why, n, "x*cos and rotate_half(x)*sin are not a Cos and a Sin of the same angles");
            return 0;
        }
        const fu_value *fc = &g->values[c->inv_freq], *fs = &g->values[s->inv_freq];
        for (int64_t i = 0; i < half; i++)
            if (fu_const_get_f(fc, i) * c->angle_scale != fu_const_get_f(fs, i) * s->angle_scale) {
                snprintf(why, n, "cos and sin use different inverse frequencies");
                return 0;
            }
        return 1;
    }
    /* Tables: [rows, 2*half] in the rotation's layout (cat(c, c) or each
     * value twice), or [rows, half] when the duplication is in the graph
     * after the lookup. */
    int64_t want = c->doubled ? half : 2 * half;
    if (c->doubled != s->doubled || c->width != want || s->width != want || c->rows != s->rows) {
        snprintf(why, n, "cos/sin tables are not [positions, %lld] in the %s layout", (long long)want,
                 m->interleaved ? "interleaved" : "rotate-half");
        return 0;
    }
    if (!c->doubled && (!table_repeats(g, c->table, c->rows, half, want_dup) ||
                        !table_repeats(g, s->table, s->rows, half, want_dup))) {
        int other = m->interleaved ? DUP_HALVES : DUP_PAIRS;
        if (table_repeats(g, c->table, c->rows, half, other) && table_repeats(g, s->table, s->rows, half, other))
            snprintf(why, n, m->interleaved ? "layouts mismatched: cos/sin tables are cat(c, c) "
                                              "but the rotation is interleaved (pairs 2i, 2i+1)"
                                            : "layouts mismatched: cos/sin tables repeat each value pairwise "
                                              "but the rotation is rotate-half");
        else
            snprintf(why, n, m->interleaved ? "cos/sin table pairs differ (not each value twice, as the "
                                              "interleaved rotation needs)"
                                            : "cos/sin table halves differ (not the rotate-half cat(c, c) layout)");
        return 0;
    }
    if (c->rows > 0 && row_is_zero(g, c->table, c->width) && !row_is_zero(g, s->table, s->width)) {
        snprintf(why, n, "cos and sin swapped: the cos table is 0 at position 0");
        return 0;
    }
    return 1;
}

/* The core: Add(Mul(x, cos), Mul(rotate_half(x), sin)) at `add`.
 * Returns 1 matched, 0 not a rope at all, -1 near miss (why set). */
static int match_core(const fu_fuse_ctx *c, int add, rope_match *m, int *cos_out, int *sin_out, char *why,
                      size_t n) {
    const fu_graph *g = c->g;
    if (!op_is(g, add, "Add")) return 0;
    const fu_node *an = &g->nodes[add];
    if (an->n_in != 2 || an->in[0] < 0 || an->in[1] < 0) return 0;
    int mul[2] = {fu_m_producer(g, an->in[0], "Mul"), fu_m_producer(g, an->in[1], "Mul")};
    if (mul[0] < 0 || mul[1] < 0) return 0;
    for (int r = 0; r < 2; r++) {
        const fu_node *rm = &g->nodes[mul[r]];
        for (int k = 0; k < 2; k++) {
            int concat = fu_m_producer(g, rm->in[k], "Concat");
            int got = concat >= 0 && concat_last_axis(g, concat) ? match_rotate_half(g, concat, m, why, n)
                                                                 : match_interleaved(g, rm->in[k], m, why, n);
            if (got == 0) continue;
            if (got < 0) return -1;
            int sin_v = rm->in[1 - k];
            const fu_node *pm = &g->nodes[mul[1 - r]];
            int cos_v = pm->in[0] == m->x ? pm->in[1] : pm->in[1] == m->x ? pm->in[0] : -1;
            if (cos_v < 0) {
                snprintf(why, n, "x*cos does not multiply the tensor rotate_half slices");
                return -1;
            }
            add_node(m, add);
            add_node(m, mul[0]);
            add_node(m, mul[1]);
            m->out_value = an->out[0];
            m->x_full = m->x;
            if (!pick_layout(g, cos_v, sin_v, m, why, n)) return -1;
            *cos_out = cos_v;
            *sin_out = sin_v;
            return 1;
        }
    }
    return 0;
}

/* Partial rotation at a Concat(rope(x[.., :rot]), x[.., rot:]) anchor: sets
 * x_full and rot_dim and adds the split nodes. */
static int match_partial(const fu_graph *g, int concat, int pass_value, rope_match *m) {
    int rot_node = fu_m_producer(g, m->x, NULL), pass_node = fu_m_producer(g, pass_value, NULL);
    if (rot_node < 0 || pass_node < 0) return 0;
    int src_r, src_p;
    int64_t start_r, len_r, start_p, len_p;
    if (op_is(g, rot_node, "Split")) {
        const fu_node *s = &g->nodes[rot_node];
        int rank = g->values[s->in[0]].rank;
        int64_t axis = fu_attr_int(s, "axis", 0);
        if (pass_node != rot_node || s->n_out != 2 || s->out[0] != m->x || s->out[1] != pass_value ||
            (axis != -1 && axis != rank - 1))
            return 0;
        src_r = src_p = s->in[0];
    } else {
        if (!slice_on_axis(g, rot_node, -1, &src_r, &start_r, &len_r) ||
            !slice_on_axis(g, pass_node, -1, &src_p, &start_p, &len_p) || src_r != src_p || start_r != 0 ||
            start_p != len_r)
            return 0;
    }
    const fu_value *full = &g->values[src_r];
    if (full->rank != 4 || !fu_dim_is_const(full->shape[3]) || !fu_dim_is_const(last_dim(g, pass_value)) ||
        full->shape[3].coef != m->head_dim + last_dim(g, pass_value).coef)
        return 0;
    m->x_full = src_r;
    m->rot_dim = m->head_dim;
    m->head_dim = full->shape[3].coef;
    add_node(m, rot_node);
    if (pass_node != rot_node) add_node(m, pass_node);
    add_node(m, concat);
    m->out_value = g->nodes[concat].out[0];
    return 1;
}

/* ---- rewrite --------------------------------------------------------------------- */

/* A float32 constant of this shape and data: an existing identical one (the
 * q and k ropes of every layer share their angles), else a new one. */
static int shared_const(fu_graph *g, const char *base, int rank, const int64_t *shape, const float *data,
                        fu_err *err) {
    size_t numel = 1;
    for (int k = 0; k < rank; k++) numel *= (size_t)shape[k];
    for (int v = 0; v < g->n_values; v++) {
        const fu_value *val = &g->values[v];
        if (val->kind != FU_VAL_CONST || val->dtype != FU_F32 || val->rank != rank || !val->data ||
            val->nbytes != numel * sizeof(float))
            continue;
        int same = 1;
        for (int k = 0; k < rank && same; k++) same = dim_is(val->shape[k], shape[k]);
        if (same && memcmp(val->data, data, numel * sizeof(float)) == 0) return v;
    }
    return fu_fuse_add_const(g, base, FU_F32, rank, shape, data, err);
}

/* Columns 0, step, .., (half-1)*step of a [rows, width] table, scaled, as a
 * constant: one value per frequency (step 2 for the interleaved layout). */
static int half_table(fu_graph *g, int table, int64_t rows, int64_t width, int64_t half, int64_t step,
                      double amplitude, const char *base, fu_err *err) {
    float *data = malloc(sizeof(float) * (size_t)(rows * half > 0 ? rows * half : 1));
    if (!data) return fu_fail(err, "out of memory while fusing");
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < half; i++)
            data[r * half + i] = (float)(fu_const_get_f(&g->values[table], r * width + i * step) * amplitude);
    int64_t shape[2] = {rows, half};
    int v = shared_const(g, base, 2, shape, data, err);
    free(data);
    return v;
}

static int rewrite(fu_fuse_ctx *c, int anchor, rope_match *m, fu_err *err) {
    fu_graph *g = c->g;
    int64_t half = m->rot_dim / 2;
    int inputs[5] = {m->x_full, -1, -1, -1, -1};
    int n_inputs;
    const angle_source *a = &m->cos;
    if (a->pos.kind == POS_IDS) inputs[3] = a->pos.ids;
    if (a->form == ANGLES_COMPUTED) {
        float *freqs = malloc(sizeof(float) * (size_t)half);
        if (!freqs) return fu_fail(err, "out of memory while fusing");
        for (int64_t i = 0; i < half; i++)
            freqs[i] = (float)(fu_const_get_f(&g->values[a->inv_freq], i) * a->angle_scale);
        int64_t shape[1] = {half};
        inputs[4] = shared_const(g, "rope_inv_freq", 1, shape, freqs, err);
        free(freqs);
        if (inputs[4] < 0) return -1;
        n_inputs = 5;
    } else {
        int64_t step = m->interleaved && !m->cos.doubled ? 2 : 1;
        inputs[1] = half_table(g, m->cos.table, m->cos.rows, m->cos.width, half, step, m->cos.amplitude,
                               "rope_cos", err);
        if (inputs[1] < 0) return -1;
        inputs[2] = half_table(g, m->sin.table, m->sin.rows, m->sin.width, half, step, m->sin.amplitude,
                               "rope_sin", err);
        if (inputs[2] < 0) return -1;
        n_inputs = inputs[3] >= 0 ? 4 : 3;
    }
    int idx = fu_fuse_replace(c, "RotaryEmbedding", inputs, n_inputs, m->out_value, m->nodes, m->n_nodes, err);
    if (idx < 0) return -1;
    fu_node *fused = &g->nodes[idx];
    int ok = 1;
    if (m->rot_dim != m->head_dim) ok &= fu_node_set_attr_int(fused, "rotary_embedding_dim", m->rot_dim) != NULL;
    if (m->interleaved) ok &= fu_node_set_attr_int(fused, "interleaved", 1) != NULL;
    if (a->form == ANGLES_COMPUTED && a->amplitude != 1.0)
        ok &= fu_node_set_attr_float(fused, "amplitude", a->amplitude) != NULL;
    if (a->pos.kind == POS_COUNTING && a->pos.offset != 0)
        ok &= fu_node_set_attr_int(fused, "pos_offset", a->pos.offset) != NULL;
    if (m->bshd) ok &= fu_node_set_attr_string(fused, "layout", "BSHD") != NULL;
    if (!ok) return fu_fail(err, "out of memory while fusing");
    fu_fuse_accept(c, anchor, "RotaryEmbedding (%s%s, %s, head size %lld%s%s)",
                   m->interleaved ? "interleaved, " : "", a->form == ANGLES_COMPUTED ? "angles from inv_freq" : "cos/sin tables",
                   a->pos.kind == POS_IDS ? "position_ids" : "positions offset + s", (long long)m->head_dim,
                   m->rot_dim != m->head_dim ? ", partial rotation" : "", m->bshd ? ", layout BSHD" : "");
    return 1;
}

static int apply(fu_fuse_ctx *c, int anchor, fu_err *err) {
    const fu_graph *g = c->g;
    rope_match m;
    memset(&m, 0, sizeof m);
    char why[WHY_LEN] = "";
    int add = anchor, partial = 0, pass_value = -1;
    /* Partial rotation: the anchor is the Concat putting x[.., rot:] back. */
    if (concat_last_axis(g, anchor)) {
        const fu_node *cn = &g->nodes[anchor];
        add = fu_m_producer(g, cn->in[0], "Add");
        if (add < 0) return 0;
        pass_value = cn->in[1];
        partial = 1;
    }
    int cos_v, sin_v;
    int got = match_core(c, add, &m, &cos_v, &sin_v, why, sizeof why);
    if (got == 0) return 0;
    if (got < 0) {
        /* The Add anchor reports it; a partial Concat stays silent. */
        if (!partial) fu_fuse_reject(c, anchor, "%s", why);
        return 0;
    }
    if (partial && !match_partial(g, anchor, pass_value, &m)) return 0;

    int64_t half = m.rot_dim / 2;
    if (!walk_angles(g, cos_v, half, &m.cos, why, sizeof why) || !walk_angles(g, sin_v, half, &m.sin, why, sizeof why) ||
        !compare_angles(g, &m, why, sizeof why)) {
        if (!partial) fu_fuse_reject(c, anchor, "%s", why);
        return 0;
    }
    if (m.cos.form == ANGLES_TABLE && m.cos.pos.kind == POS_COUNTING &&
        fu_dim_is_const(g->values[m.x].shape[m.bshd ? 1 : 2]) &&
        m.cos.pos.offset + g->values[m.x].shape[m.bshd ? 1 : 2].coef > m.cos.rows) {
        snprintf(why, sizeof why, "cos/sin table has %lld rows, fewer than the positions used",
                 (long long)m.cos.rows);
        if (!partial) fu_fuse_reject(c, anchor, "%s", why);
        return 0;
    }

    int interior[2 * MAX_PATTERN], n_interior = 0;
    for (int i = 0; i < m.n_nodes; i++) {
        const fu_node *nd = &g->nodes[m.nodes[i]];
        for (int o = 0; o < nd->n_out; o++)
            if (nd->out[o] >= 0 && nd->out[o] != m.out_value) interior[n_interior++] = nd->out[o];
    }
    if (!fu_m_interior_private(c, m.nodes, m.n_nodes, interior, n_interior, why, sizeof why)) {
        if (!partial) fu_fuse_reject(c, anchor, "%s", why);
        return 0;
    }
    return rewrite(c, anchor, &m, err);
}

const fu_fusion_rule fu_rule_rotary_embedding = {"rotary_embedding", apply};
