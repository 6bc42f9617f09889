/* Row pruning (pass "prune_rows", fast profile, after fusion): compute only
 * the rows the graph reads.
 *
 * A row selection is a Gather with a scalar or 1-D index, or a Slice of a
 * single axis, on a value of rank >= 2 (the axis holds the "rows"; for the
 * router it is the sequence axis of the hidden state). A selection moves
 * above the node producing the value it reads when
 *   1. the value is read only by selections of the same rows (same index or
 *      slice parameters, same axis) and is not a graph output, and
 *   2. the producer is row-wise along that axis: each output row depends only
 *      on the same row of the inputs that vary along the axis (see
 *      plan_producer for the ops and their conditions).
 * The producer is then rewired in place: it reads the selected rows of each
 * input that varies along the (mapped) axis, reads the other inputs as they
 * are, and produces the selection's result. A scalar Gather first becomes a
 * Gather of a one-element list followed by a Squeeze of that axis. Moves
 * repeat until no selection can move, so a selection travels up through
 * chains of row-wise ops; where two paths select the same rows of one value
 * they share one selection, which moves on once every reader is a selection.
 *
 * Position-dependent ops get the real positions of the rows they keep:
 * Attention (the query side is row-wise: a query row reads its own q row
 * and all of K and V) gets input 7 q_positions, so its causal limit stays
 * where it was; RotaryEmbedding gets position_ids. Positions are the
 * selection applied to Range(0, row count) (+ the op's offset), so negative
 * Gather indices and clamped Slice bounds mean what they meant before. The
 * row count comes from a graph input with that dim (or is a constant): the
 * pruned tensors no longer carry it.
 *
 * The pass first removes dead code: nodes a fusion replaced still read
 * their inputs until dce runs and would pin every row.
 *
 * Moves are logged as "prune_rows" events in the fusion log, and every
 * selection that stops below a producer as a near miss with the reason
 * (`fusec dump --explain-fusions`). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fusion.h"
#include "../ir/shape.h"
#include "passes.h"
#include "../ops/ops.h"
#include "../ops/infer.h"

enum { SEL_GATHER, SEL_SLICE };

/* A row selection node and what it selects. */
typedef struct {
    int node;
    int kind;
    int axis;                  /* on the selected value, normalised */
    int scalar;                /* Gather with a scalar index: drops the axis */
    int index;                 /* Gather: the index value */
    int starts, ends, steps;   /* Slice: values (steps -1 when omitted) */
} row_sel;

/* How a producer computes selected rows: per input, the axis on which to
 * select its rows (-1: read it whole), and what else changes. */
#define MAX_PLAN_INPUTS 16
typedef struct {
    int axis[MAX_PLAN_INPUTS];
    int positions_slot;        /* input that gets the kept rows' positions, or -1 */
    fu_dim positions_count;    /* the full row count */
    int64_t positions_offset;  /* position of row 0 */
    int new_shape_rank;        /* Reshape: > 0 replaces the target by this constant */
    int64_t new_shape[FU_MAX_RANK];
} row_plan;

/* ---- small helpers ---------------------------------------------------------- */


static int norm_axis(int64_t axis, int rank) {
    if (axis < -rank || axis >= rank) return -1;
    return (int)(axis < 0 ? axis + rank : axis);
}

/* A constant's element count, or -1 when it is not a constant with data. */
static int64_t const_numel(const fu_graph *g, int v) {
    int64_t numel;
    if (v < 0 || g->values[v].kind != FU_VAL_CONST || !g->values[v].data ||
        fu_value_numel_const(&g->values[v], &numel))
        return -1;
    return numel;
}

static int input_present(const fu_node *n, int i) { return i < n->n_in && n->in[i] >= 0; }

/* ---- selections ---------------------------------------------------------------- */

static int read_selection(const fu_graph *g, int node, row_sel *s) {
    const fu_node *n = &g->nodes[node];
    if (n->dead || n->n_out != 1 || n->out[0] < 0 || !input_present(n, 0)) return 0;
    const fu_value *x = &g->values[n->in[0]];
    if (x->rank < 2) return 0;   /* rows need a second axis */
    memset(s, 0, sizeof *s);
    s->node = node;
    s->index = s->starts = s->ends = s->steps = -1;
    if (n->op_id == FU_OP_Gather) {
        if (n->n_in != 2 || n->in[1] < 0 || g->values[n->in[1]].rank > 1) return 0;
        s->kind = SEL_GATHER;
        s->axis = norm_axis(fu_attr_int(n, "axis", 0), x->rank);
        s->scalar = g->values[n->in[1]].rank == 0;
        s->index = n->in[1];
        return s->axis >= 0;
    }
    if (n->op_id == FU_OP_Slice) {
        /* input form only; one axis: starts and ends of one element each */
        if (n->n_in < 3 || n->in[1] < 0 || n->in[2] < 0) return 0;
        if (const_numel(g, n->in[1]) != 1 || const_numel(g, n->in[2]) != 1) return 0;
        int64_t axis = 0;
        if (input_present(n, 3)) {
            if (const_numel(g, n->in[3]) != 1) return 0;
            axis = fu_const_get_i(&g->values[n->in[3]], 0);
        }
        if (input_present(n, 4)) {
            if (const_numel(g, n->in[4]) != 1) return 0;
            s->steps = n->in[4];
        }
        s->kind = SEL_SLICE;
        s->axis = norm_axis(axis, x->rank);
        s->starts = n->in[1];
        s->ends = n->in[2];
        return s->axis >= 0;
    }
    return 0;
}

static int same_rows(const row_sel *a, const row_sel *b) {
    if (a->kind != b->kind || a->scalar != b->scalar) return 0;
    if (a->kind == SEL_GATHER) return a->index == b->index;
    return a->starts == b->starts && a->ends == b->ends && a->steps == b->steps;
}

/* Checks that value v is read only by selections of sel's rows on sel's
 * axis. Otherwise writes why (naming the other reader) and returns 0. */
static int read_only_by_selections(const fu_graph *g, const row_sel *sel, int v, char *why, size_t n) {
    char name[96];
    fu_sanitize(g->values[v].name, name, sizeof name);
    if (g->values[v].is_output) {
        snprintf(why, n, "'%s' is a graph output, so all its rows are needed", name);
        return 0;
    }
    for (int k = 0; k < g->n_nodes; k++) {
        const fu_node *node = &g->nodes[k];
        if (node->dead) continue;
        int reads = 0;
        for (int i = 0; i < node->n_in; i++) reads += node->in[i] == v;
        if (!reads) continue;
        row_sel other;
        if (read_selection(g, k, &other) && reads == 1 && node->in[0] == v && other.axis == sel->axis &&
            same_rows(sel, &other))
            continue;
        char reader[96];
        fu_sanitize(node->name, reader, sizeof reader);
        snprintf(why, n, "'%s' is also read by '%s' (%s), which needs other rows", name, reader, node->op);
        return 0;
    }
    return 1;
}

/* ---- row-wise producers -------------------------------------------------------- */

/* Axis of input `in` that broadcasts to output axis a of y: -1 when the
 * input does not vary along it (absent or of size 1), -2 when it has another
 * size (it cannot be selected like the output). */
static int broadcast_axis(const fu_graph *g, int in, const fu_value *y, int a) {
    const fu_value *x = &g->values[in];
    int ax = a - (y->rank - x->rank);
    if (ax < 0 || fu_dim_is_one(x->shape[ax])) return -1;
    return fu_dim_eq(x->shape[ax], y->shape[a]) ? ax : -2;
}

/* Every input: selected where it varies along the axis (numpy broadcasting). */
static int plan_broadcast_all(const fu_graph *g, const fu_node *p, int a, row_plan *plan, char *why, size_t n) {
    const fu_value *y = &g->values[p->out[0]];
    for (int i = 0; i < p->n_in; i++) {
        if (p->in[i] < 0) continue;
        plan->axis[i] = broadcast_axis(g, p->in[i], y, a);
        if (plan->axis[i] == -2) {
            snprintf(why, n, "input %d does not broadcast along the row axis", i);
            return 0;
        }
    }
    return 1;
}

/* Inputs other than those in `selected` must not vary along the axis. */
static int others_constant_along(const fu_graph *g, const fu_node *p, int a, row_plan *plan, char *why, size_t n) {
    const fu_value *y = &g->values[p->out[0]];
    for (int i = 0; i < p->n_in; i++) {
        if (p->in[i] < 0 || plan->axis[i] >= 0) continue;
        if (broadcast_axis(g, p->in[i], y, a) != -1) {
            snprintf(why, n, "input %d varies along the row axis", i);
            return 0;
        }
    }
    return 1;
}

/* RMSNormalization / LayerNormalization over [axis, rank): row-wise along
 * the axes before. */
static int plan_norm(const fu_graph *g, const fu_node *p, int a, row_plan *plan, char *why, size_t n) {
    int rank = g->values[p->in[0]].rank;
    int norm_from = norm_axis(fu_attr_int(p, "axis", -1), rank);
    if (a >= norm_from) {
        snprintf(why, n, "it normalises over the row axis %d", a);
        return 0;
    }
    plan->axis[0] = a;
    return others_constant_along(g, p, a, plan, why, n);
}

/* MatMul, FusedMatMul, Gemm: rows of A's M axis (B read whole), or a batch
 * axis of both operands. */
static int plan_matmul(const fu_graph *g, const fu_node *p, int a, row_plan *plan, char *why, size_t n) {
    const fu_value *y = &g->values[p->out[0]], *A = &g->values[p->in[0]];
    if (fu_attr_int(p, "transA", 0)) {
        snprintf(why, n, "A is transposed (transA)");
        return 0;
    }
    if (A->rank < 2) {
        snprintf(why, n, "A is a vector");
        return 0;
    }
    if (a == y->rank - 1) {
        snprintf(why, n, "the row axis is the product's column (N) axis");
        return 0;
    }
    if (a == y->rank - 2) {
        plan->axis[0] = A->rank - 2;
    } else {
        /* a batch axis: both operands per batch, selected alike */
        for (int i = 0; i < 2; i++) {
            const fu_value *x = &g->values[p->in[i]];
            int ax = a - (y->rank - x->rank);
            if (ax >= 0 && ax < x->rank - 2 && !fu_dim_is_one(x->shape[ax])) plan->axis[i] = ax;
        }
    }
    if (p->op_id == FU_OP_Gemm && input_present(p, 2)) {   /* C broadcasts to [M, N] */
        plan->axis[2] = broadcast_axis(g, p->in[2], y, a);
        if (plan->axis[2] == -2) {
            snprintf(why, n, "C does not broadcast along the row axis");
            return 0;
        }
    }
    return 1;
}

/* Output axis a of a view (Reshape, Squeeze, Unsqueeze, Identity) is input
 * axis a' when both have the same size and the same product of the dims in
 * front: then in C order output row r is input row r. Returns a' or -1. */
static int view_axis(const fu_value *x, const fu_value *y, int a) {
    fu_dim y_front = fu_dim_const(1);
    for (int i = 0; i < a; i++) y_front = fu_dim_mul(y_front, y->shape[i]);
    fu_dim x_front = fu_dim_const(1);
    for (int i = 0; i < x->rank; i++) {
        if (fu_dim_eq(x_front, y_front) && fu_dim_eq(x->shape[i], y->shape[a])) return i;
        x_front = fu_dim_mul(x_front, x->shape[i]);
    }
    return -1;
}

/* Reshape's target after selection: kept when the row entry is -1 (or 0
 * copying the same axis) and no other entry copies the row axis; otherwise a
 * new constant of the output's static dims with -1 for the rows. */
static int plan_reshape_target(const fu_graph *g, const fu_node *p, int a, int in_axis, row_plan *plan, char *why,
                               size_t n) {
    const fu_value *y = &g->values[p->out[0]];
    int64_t count = const_numel(g, p->in[1]);
    int allowzero = fu_attr_int(p, "allowzero", 0) != 0;
    if (count == y->rank) {
        const fu_value *shape = &g->values[p->in[1]];
        int64_t row = fu_const_get_i(shape, a);
        int keeps = row == -1 || (row == 0 && !allowzero && in_axis == a);
        for (int i = 0; i < y->rank && keeps; i++)
            if (i != a && i == in_axis && fu_const_get_i(shape, i) == 0 && !allowzero) keeps = 0;
        if (keeps) return 1;
    }
    for (int i = 0; i < y->rank; i++) {
        if (i == a) {
            plan->new_shape[i] = -1;
        } else if (fu_dim_is_const(y->shape[i]) && (y->shape[i].coef > 0 || allowzero)) {
            plan->new_shape[i] = y->shape[i].coef;
        } else {
            snprintf(why, n, "the target shape fixes the row count and dim %d is not static", i);
            return 0;
        }
    }
    plan->new_shape_rank = y->rank;
    return 1;
}

static int plan_view(const fu_graph *g, const fu_node *p, int a, row_plan *plan, char *why, size_t n) {
    const fu_value *x = &g->values[p->in[0]], *y = &g->values[p->out[0]];
    if (p->op_id == FU_OP_Squeeze && !input_present(p, 1) && !fu_node_attr(p, "axes")) {
        snprintf(why, n, "a Squeeze without axes could drop the row axis");
        return 0;
    }
    int in_axis = view_axis(x, y, a);
    if (in_axis < 0) {
        snprintf(why, n, "the row axis %d is merged or split by the view", a);
        return 0;
    }
    plan->axis[0] = in_axis;
    if (p->op_id == FU_OP_Reshape) return plan_reshape_target(g, p, a, in_axis, plan, why, n);
    return 1;
}

static int plan_transpose(const fu_graph *g, const fu_node *p, int a, row_plan *plan, char *why, size_t n) {
    (void)why, (void)n;
    const fu_attr *perm = fu_node_attr(p, "perm");
    int rank = g->values[p->in[0]].rank;
    plan->axis[0] = perm && perm->kind == FU_ATTR_INTS && perm->n == rank ? (int)perm->ints[a] : rank - 1 - a;
    return 1;
}

/* Softmax / LogSoftmax over one axis, ReduceMean/Sum/Max over some: row-wise
 * when the row axis is not among them. */
static int plan_reduction(const fu_graph *g, const fu_node *p, int a, row_plan *plan, char *why, size_t n) {
    int rank = g->values[p->in[0]].rank;
    if (p->op_id == FU_OP_Softmax || p->op_id == FU_OP_LogSoftmax) {
        if (norm_axis(fu_attr_int(p, "axis", -1), rank) == a) {
            snprintf(why, n, "it normalises across rows (axis %d)", a);
            return 0;
        }
        plan->axis[0] = a;
        return 1;
    }
    int64_t axes[FU_MAX_RANK];
    int count;
    int all;
    if (fu_m_reduce_axes(g, (int)(p - g->nodes), axes, FU_MAX_RANK, &count, &all) || all || count == 0) {
        snprintf(why, n, "it reduces over every axis");
        return 0;
    }
    int reduced[FU_MAX_RANK] = {0};
    for (int i = 0; i < count; i++)
        if (axes[i] >= 0 && axes[i] < rank) reduced[axes[i]] = 1;
    int in_axis = a;
    if (!fu_attr_int(p, "keepdims", 1))   /* the a-th axis that is kept */
        for (int i = 0, kept = 0; i < rank; i++)
            if (!reduced[i] && kept++ == a) in_axis = i;
    if (reduced[in_axis]) {
        snprintf(why, n, "it reduces over the row axis %d", in_axis);
        return 0;
    }
    plan->axis[0] = in_axis;
    return 1;
}

static int plan_concat(const fu_graph *g, const fu_node *p, int a, row_plan *plan, char *why, size_t n) {
    int rank = g->values[p->out[0]].rank;
    if (norm_axis(fu_attr_int(p, "axis", 0), rank) == a) {
        snprintf(why, n, "it concatenates along the row axis");
        return 0;
    }
    return plan_broadcast_all(g, p, a, plan, why, n);
}

/* Sequence axis of a 3-D [B, L, H*D] or 4-D (layout BHSD / BSHD) tensor. */
static int seq_axis(int rank, const char *layout, size_t len) {
    if (rank == 3) return 1;
    return len == 4 && strncmp(layout, "BSHD", 4) == 0 ? 1 : 2;
}

/* Where the full row count comes from once the rows are pruned: a constant,
 * or the dim of a graph input (never pruned). Returns the input (-1 for a
 * constant) and its axis, or -2 when neither exists. */
static int row_count_source(const fu_graph *g, fu_dim count, int *axis) {
    if (fu_dim_is_const(count)) return -1;
    for (int i = 0; i < g->n_inputs; i++) {
        const fu_value *x = &g->values[g->inputs[i]];
        for (int d = 0; d < x->rank; d++)
            if (fu_dim_eq(x->shape[d], count)) {
                *axis = d;
                return g->inputs[i];
            }
    }
    return -2;
}

/* The op needs the kept rows' positions in input `slot`. */
static int plan_positions(const fu_graph *g, row_plan *plan, int slot, fu_dim count, int64_t offset, char *why,
                          size_t n) {
    int axis;
    if (row_count_source(g, count, &axis) == -2) {
        char text[64];
        fu_dim_str(g, count, text, sizeof text);
        snprintf(why, n, "the row count %s is no dim of a graph input, so positions cannot be rebuilt", text);
        return 0;
    }
    plan->positions_slot = slot;
    plan->positions_count = count;
    plan->positions_offset = offset;
    return 1;
}

/* Attention: the query side. Q rows are selected; K, V and sinks are read
 * whole; a mask varying along the query axis is selected too; a causal node
 * gets the kept queries' positions (input 7). */
static int plan_attention(const fu_graph *g, const fu_node *p, int a, row_plan *plan, char *why, size_t n) {
    const fu_value *q = &g->values[p->in[0]], *k = &g->values[p->in[1]], *y = &g->values[p->out[0]];
    const char *out_layout = fu_attr_string(p, "out_layout", "BHSD");
    if (a != seq_axis(y->rank, out_layout, strlen(out_layout))) {
        snprintf(why, n, "the selected axis %d is not the query axis", a);
        return 0;
    }
    const char *layout = fu_attr_string(p, "qkv_layout", "BHSD");
    const char *comma = strchr(layout, ',');
    int q_axis = seq_axis(q->rank, layout, comma ? (size_t)(comma - layout) : strlen(layout));
    int k_axis = seq_axis(k->rank, comma ? comma + 1 : layout, 4);
    plan->axis[0] = q_axis;
    if (input_present(p, 3)) {   /* mask broadcast to [B, Hq, Lq, Lk]: Lq is scores axis 2 */
        const fu_value *m = &g->values[p->in[3]];
        int ax = 2 - (4 - m->rank);
        if (ax >= 0 && !fu_dim_is_one(m->shape[ax])) plan->axis[3] = ax;
    }
    if (input_present(p, 7)) {
        plan->axis[7] = 0;
        return 1;
    }
    if (!fu_attr_int(p, "is_causal", 0)) return 1;
    fu_dim lq = q->shape[q_axis], lk = k->shape[k_axis];
    int64_t offset;
    if (fu_dim_eq(lq, lk) || !fu_attention_causal_end(p)) {
        offset = 0;   /* equal lengths, or ONNX's alignment to the start */
    } else if (fu_dim_is_const(lq) && fu_dim_is_const(lk)) {
        offset = lk.coef - lq.coef;   /* end-aligned queries */
    } else {
        snprintf(why, n, "the causal offset (key length - query length) is not known at compile time");
        return 0;
    }
    return plan_positions(g, plan, 7, lq, offset, why, n);
}

/* RotaryEmbedding: X rows along its sequence axis, with their positions
 * (selected position_ids, selected per-row caches, or new position_ids). */
static int plan_rotary(const fu_graph *g, const fu_node *p, int a, row_plan *plan, char *why, size_t n) {
    const fu_value *x = &g->values[p->in[0]];
    const char *layout = fu_attr_string(p, "layout", "BHSD");
    int s_axis = seq_axis(x->rank, layout, strlen(layout));
    if (a != s_axis) {
        snprintf(why, n, "the selected axis %d is not the sequence axis %d", a, s_axis);
        return 0;
    }
    plan->axis[0] = s_axis;
    if (input_present(p, 3)) {
        plan->axis[3] = g->values[p->in[3]].rank - 1;   /* position_ids [S] or [B, S] */
    } else if (input_present(p, 1) && g->values[p->in[1]].rank == 3) {
        plan->axis[1] = plan->axis[2] = 1;              /* per-row caches [B, S, half] */
    } else {
        return plan_positions(g, plan, 3, x->shape[s_axis], fu_attr_int(p, "pos_offset", 0), why, n);
    }
    return 1;
}

/* Fills plan when producer p computes output row r (axis a) from row r of
 * its inputs only; else writes why not and returns 0. */
static int plan_producer(const fu_graph *g, int producer, int a, row_plan *plan, char *why, size_t n) {
    const fu_node *p = &g->nodes[producer];
    memset(plan, 0, sizeof *plan);
    for (int i = 0; i < MAX_PLAN_INPUTS; i++) plan->axis[i] = -1;
    plan->positions_slot = -1;
    if (p->n_out != 1) {
        snprintf(why, n, "it has %d outputs", p->n_out);
        return 0;
    }
    if (p->n_in > MAX_PLAN_INPUTS) {
        snprintf(why, n, "it has %d inputs", p->n_in);
        return 0;
    }
    if (p->def && p->def->elementwise_operands > 0 && p->n_in <= p->def->elementwise_operands)
        return plan_broadcast_all(g, p, a, plan, why, n);
    switch (p->op_id) {
    case FU_OP_SwiGLU: case FU_OP_Gelu: return plan_broadcast_all(g, p, a, plan, why, n);
    case FU_OP_RMSNormalization: case FU_OP_LayerNormalization: return plan_norm(g, p, a, plan, why, n);
    case FU_OP_MatMul: case FU_OP_FusedMatMul: case FU_OP_Gemm: return plan_matmul(g, p, a, plan, why, n);
    case FU_OP_Reshape: case FU_OP_Squeeze: case FU_OP_Unsqueeze: case FU_OP_Identity: return plan_view(g, p, a, plan, why, n);
    case FU_OP_Transpose: return plan_transpose(g, p, a, plan, why, n);
    case FU_OP_Softmax: case FU_OP_LogSoftmax: case FU_OP_ReduceMean: case FU_OP_ReduceSum: case FU_OP_ReduceMax:
        return plan_reduction(g, p, a, plan, why, n);
    case FU_OP_Concat: return plan_concat(g, p, a, plan, why, n);
    case FU_OP_Attention: return plan_attention(g, p, a, plan, why, n);
    case FU_OP_RotaryEmbedding: return plan_rotary(g, p, a, plan, why, n);
    default: break;
    }
    snprintf(why, n, "%s is not known to be row-wise", p->op);
    return 0;
}

/* ---- rewriting ------------------------------------------------------------------- */

/* Adds node `op` (named after its output) with one new output value named
 * after `base`; returns the output value or -1. */
static int add_node(fu_graph *g, const char *base, const char *op, int n_in, const int *in, fu_err *err) {
    char *name = fu_graph_unique_name(g, base);
    int v = name ? fu_graph_add_value(g, name, FU_VAL_NODE) : -1;
    int node = v >= 0 ? fu_graph_add_node(g, name, op, n_in, in, 1, &v) : -1;
    free(name);
    if (node < 0) return fu_fail(err, "%s: out of memory while pruning rows", g->path ? g->path : "model");
    return v;
}

static int add_i64(fu_graph *g, const char *base, int rank, int64_t count, const int64_t *data, fu_err *err) {
    return fu_graph_add_const(g, base, FU_I64, rank, &count, data, err);
}

/* Name of value v with a suffix, for new values derived from it. */
static void derived_name(const fu_graph *g, int v, const char *suffix, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s", g->values[v].name, suffix);
}

/* The rows `sel` selects, of value u along axis: an existing selection of
 * the same rows is reused (two paths meeting at one value share it). The
 * selection must not be scalar (canonical form). */
static int select_rows(fu_graph *g, const row_sel *sel, int u, int axis, fu_err *err) {
    for (int k = 0; k < g->n_nodes; k++) {
        const fu_node *n = &g->nodes[k];
        if (n->dead || n->n_out != 1 || n->n_in < 2 || n->in[0] != u) continue;
        if (sel->kind == SEL_GATHER && n->op_id == FU_OP_Gather && n->in[1] == sel->index &&
            fu_attr_int(n, "axis", 0) == axis)
            return n->out[0];
        if (sel->kind == SEL_SLICE && n->op_id == FU_OP_Slice && n->n_in >= 4 && n->in[1] == sel->starts &&
            n->in[2] == sel->ends && const_numel(g, n->in[3]) == 1 &&
            fu_const_get_i(&g->values[n->in[3]], 0) == axis &&
            (n->n_in > 4 ? n->in[4] : -1) == sel->steps)
            return n->out[0];
    }
    char base[256];
    derived_name(g, u, "rows", base, sizeof base);
    if (sel->kind == SEL_GATHER) {
        int in[2] = {u, sel->index};
        int out = add_node(g, base, "Gather", 2, in, err);
        if (out < 0) return -1;
        fu_node_set_attr_int(&g->nodes[g->values[out].producer], "axis", axis);
        return out;
    }
    int64_t axis64 = axis;
    int axes = add_i64(g, "prune_rows/axis", 1, 1, &axis64, err);
    if (axes < 0) return -1;
    int in[5] = {u, sel->starts, sel->ends, axes, sel->steps};
    return add_node(g, base, "Slice", sel->steps >= 0 ? 5 : 4, in, err);
}

/* A scalar index as a one-element list (Unsqueeze), reused when it exists. */
static int index_as_list(fu_graph *g, int index, fu_err *err) {
    for (int k = 0; k < g->n_nodes; k++) {
        const fu_node *n = &g->nodes[k];
        if (!n->dead && n->op_id == FU_OP_Unsqueeze && n->n_in == 2 && n->in[0] == index &&
            const_numel(g, n->in[1]) == 1 && fu_const_get_i(&g->values[n->in[1]], 0) == 0)
            return n->out[0];
    }
    int64_t zero = 0;
    int axes = add_i64(g, "prune_rows/axis", 1, 1, &zero, err);
    if (axes < 0) return -1;
    char base[256];
    derived_name(g, index, "as_list", base, sizeof base);
    int in[2] = {index, axes};
    return add_node(g, base, "Unsqueeze", 2, in, err);
}

/* The full row count as an int64 scalar: a constant, or
 * Gather(Shape(input), axis) of the graph input row_count_source finds
 * (reusing such a pair when the graph has one). */
static int row_count_value(fu_graph *g, fu_dim count, fu_err *err) {
    int axis = 0;
    int input = row_count_source(g, count, &axis);
    if (input < 0) return add_i64(g, "prune_rows/row_count", 0, 1, &count.coef, err);
    for (int k = 0; k < g->n_nodes; k++) {
        const fu_node *n = &g->nodes[k];
        int shape = n->dead || n->op_id != FU_OP_Gather || n->n_in != 2 ? -1 : fu_m_producer(g, n->in[0], FU_OP_Shape);
        if (shape >= 0 && g->nodes[shape].in[0] == input && g->nodes[shape].n_in == 1 && !g->nodes[shape].n_attrs &&
            const_numel(g, n->in[1]) == 1 && g->values[n->in[1]].rank == 0 &&
            fu_const_get_i(&g->values[n->in[1]], 0) == axis && fu_attr_int(n, "axis", 0) == 0)
            return n->out[0];
    }
    char base[256];
    derived_name(g, input, "shape", base, sizeof base);
    int shape = add_node(g, base, "Shape", 1, &input, err);
    int64_t axis64 = axis;
    int which = shape < 0 ? -1 : add_i64(g, "prune_rows/axis", 0, 1, &axis64, err);
    if (which < 0) return -1;
    int in[2] = {shape, which};
    derived_name(g, input, "row_count", base, sizeof base);
    int length = add_node(g, base, "Gather", 2, in, err);
    if (length >= 0) fu_node_set_attr_int(&g->nodes[g->values[length].producer], "axis", 0);
    return length;
}

static int is_const_scalar(const fu_graph *g, int v, int64_t want) {
    return const_numel(g, v) == 1 && g->values[v].rank == 0 && fu_const_get_i(&g->values[v], 0) == want;
}

/* Range(0, length, 1), reused when the graph has it. */
static int row_numbers(fu_graph *g, int length, fu_err *err) {
    for (int k = 0; k < g->n_nodes; k++) {
        const fu_node *n = &g->nodes[k];
        if (!n->dead && n->op_id == FU_OP_Range && n->n_in == 3 && n->in[1] == length &&
            is_const_scalar(g, n->in[0], 0) && is_const_scalar(g, n->in[2], 1))
            return n->out[0];
    }
    int64_t zero = 0, one = 1;
    int start = add_i64(g, "prune_rows/zero", 0, 1, &zero, err);
    int step = start < 0 ? -1 : add_i64(g, "prune_rows/one", 0, 1, &one, err);
    if (step < 0) return -1;
    int range_in[3] = {start, length, step};
    return add_node(g, "prune_rows/positions", "Range", 3, range_in, err);
}

/* The positions of the kept rows: sel applied to offset + Range(0, count). */
static int kept_positions(fu_graph *g, const row_sel *sel, fu_dim count, int64_t offset, fu_err *err) {
    int length = row_count_value(g, count, err);
    int positions = length < 0 ? -1 : row_numbers(g, length, err);
    if (positions < 0) return -1;
    if (offset != 0) {
        int off = add_i64(g, "prune_rows/offset", 0, 1, &offset, err);
        int add_in[2] = {positions, off};
        positions = off < 0 ? -1 : add_node(g, "prune_rows/positions", "Add", 2, add_in, err);
        if (positions < 0) return -1;
    }
    return select_rows(g, sel, positions, 0, err);
}

/* Sets input `slot` of node k, growing its input list with omitted ones. */
static int set_input(fu_graph *g, int k, int slot, int v, fu_err *err) {
    fu_node *n = &g->nodes[k];
    if (slot >= n->n_in) {
        int *in = realloc(n->in, sizeof(int) * (size_t)(slot + 1));
        if (!in) return fu_fail(err, "%s: out of memory while pruning rows", g->path ? g->path : "model");
        for (int i = n->n_in; i <= slot; i++) in[i] = -1;
        n->in = in;
        n->n_in = slot + 1;
    }
    n->in[slot] = v;
    return 0;
}

/* Points every reader of value `from` at value `to`. */
static void replace_uses(fu_graph *g, int from, int to) {
    for (int k = 0; k < g->n_nodes; k++) {
        fu_node *n = &g->nodes[k];
        if (n->dead) continue;
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] == from) n->in[i] = to;
    }
}

/* Moves selection `sel` of value v above its producer, following plan. */
static int move_above(fu_graph *g, const row_sel *sel, int producer, const row_plan *plan, fu_err *err) {
    int v = g->nodes[sel->node].in[0], sel_out = g->nodes[sel->node].out[0];
    row_sel rows = *sel;   /* as selected on each input: never scalar */
    if (sel->scalar) {
        rows.index = index_as_list(g, sel->index, err);
        if (rows.index < 0) return -1;
        rows.scalar = 0;
    }
    int n_in = g->nodes[producer].n_in;
    for (int i = 0; i < n_in; i++) {
        if (plan->axis[i] < 0) continue;
        int r = select_rows(g, &rows, g->nodes[producer].in[i], plan->axis[i], err);
        if (r < 0) return -1;
        g->nodes[producer].in[i] = r;
    }
    if (plan->new_shape_rank > 0) {
        int shape = add_i64(g, "prune_rows/shape", 1, plan->new_shape_rank, plan->new_shape, err);
        if (shape < 0) return -1;
        g->nodes[producer].in[1] = shape;
    }
    if (plan->positions_slot >= 0) {
        int pos = kept_positions(g, &rows, plan->positions_count, plan->positions_offset, err);
        if (pos < 0 || set_input(g, producer, plan->positions_slot, pos, err)) return -1;
    }

    /* The selection's result now comes from the producer (through a Squeeze
     * for a scalar index); other selections of v read it too. */
    g->nodes[sel->node].dead = 1;
    g->nodes[sel->node].out[0] = -1;
    if (sel->scalar) {
        char base[256];
        derived_name(g, v, "rows", base, sizeof base);
        char *name = fu_graph_unique_name(g, base);
        int w = name ? fu_graph_add_value(g, name, FU_VAL_NODE) : -1;
        free(name);
        if (w < 0) return fu_fail(err, "%s: out of memory while pruning rows", g->path ? g->path : "model");
        g->nodes[producer].out[0] = w;
        g->values[w].producer = producer;
        int64_t axis64 = sel->axis;
        int axes = add_i64(g, "prune_rows/axis", 1, 1, &axis64, err);
        int in[2] = {w, axes};
        int squeeze = axes < 0 ? -1 : fu_graph_add_node(g, g->nodes[sel->node].name, "Squeeze", 2, in, 1, &sel_out);
        if (squeeze < 0) return axes < 0 ? -1 : fu_fail(err, "%s: out of memory while pruning rows", g->path ? g->path : "model");
    } else {
        g->nodes[producer].out[0] = sel_out;
        g->values[sel_out].producer = producer;
    }
    for (int k = 0; k < g->n_nodes; k++) {
        row_sel other;
        if (g->nodes[k].dead || !read_selection(g, k, &other) || g->nodes[k].in[0] != v) continue;
        int other_out = g->nodes[k].out[0];
        g->nodes[k].dead = 1;
        if (!g->values[other_out].is_output) {
            replace_uses(g, other_out, sel_out);
            continue;
        }
        g->nodes[k].out[0] = -1;   /* an exported duplicate becomes an alias of the result */
        if (fu_graph_add_node(g, "prune_rows/same_rows", "Identity", 1, &sel_out, 1, &other_out) < 0)
            return fu_fail(err, "%s: out of memory while pruning rows", g->path ? g->path : "model");
    }
    return 0;
}

/* ---- the pass --------------------------------------------------------------------- */

/* Whether selection `sel` can move above its producer; fills plan, or
 * writes why not. */
static int movable(const fu_graph *g, const row_sel *sel, int *producer, row_plan *plan, char *why, size_t n) {
    int v = g->nodes[sel->node].in[0];
    *producer = fu_m_producer(g, v, -1);
    if (*producer < 0) return 0;   /* a graph input or constant: nothing above */
    if (!read_only_by_selections(g, sel, v, why, n)) return 0;
    return plan_producer(g, *producer, sel->axis, plan, why, n);
}

/* Finds one selection that can move and moves it; *moved = 0 when none. */
static int move_one(fu_graph *g, fu_fusion_log *log, int *moved, fu_err *err) {
    *moved = 0;
    for (int k = g->n_nodes - 1; k >= 0; k--) {
        row_sel sel;
        int producer;
        row_plan plan;
        char why[256];
        if (!read_selection(g, k, &sel) || !movable(g, &sel, &producer, &plan, why, sizeof why)) continue;
        char rows[64], name[96];
        fu_dim_str(g, g->values[g->nodes[producer].out[0]].shape[sel.axis], rows, sizeof rows);
        fu_sanitize(g->nodes[k].name, name, sizeof name);
        fu_fusion_log_add(log, "prune_rows", g, producer, 1, "computes only the rows that '%s' selects on axis %d (of %s)", name, sel.axis,
                       rows);
        if (move_above(g, &sel, producer, &plan, err)) return -1;
        *moved = 1;
        return 0;
    }
    return 0;
}

/* Logs where each remaining selection stops and why; returns how many. */
static int log_stops(fu_graph *g, fu_fusion_log *log) {
    int stops = 0;
    for (int k = 0; k < g->n_nodes; k++) {
        row_sel sel;
        int producer;
        row_plan plan;
        char why[256] = "";
        if (!read_selection(g, k, &sel) || movable(g, &sel, &producer, &plan, why, sizeof why) || producer < 0)
            continue;
        char name[96];
        fu_sanitize(g->nodes[k].name, name, sizeof name);
        fu_fusion_log_add(log, "prune_rows", g, producer, 0, "the row selection '%s' (axis %d) stops here: %s", name, sel.axis, why);
        stops++;
    }
    return stops;
}

int fu_pass_prune_rows(fu_graph *g, const fu_pass_opts *o, fu_err *err) {
    fu_fusion_log *log = o ? o->fusion_log : NULL;
    /* Readers that feed no output (a fusion leaves its replaced nodes for
     * dce) would otherwise pin every row. */
    if (fu_pass_dce(g, o, err)) return -1;
    int moves = 0;
    for (;;) {
        int moved;
        if (move_one(g, log, &moved, err)) return -1;
        if (!moved) break;
        moves++;
        fu_graph_compact(g);
        if (fu_graph_toposort(g, err) || fu_infer(g, err)) {
            fu_err inner = *err;
            return fu_fail(err, "row pruning produced an invalid graph: %s", inner.msg);
        }
    }
    int stops = log_stops(g, log);
    if (o && o->verbose)
        fprintf(stderr, "prune_rows: %d nodes now compute only selected rows; %d row selections stop below a producer\n",
                moves, stops);
    return 0;
}
