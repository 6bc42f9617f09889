/* Tests of the "rms_norm" and "layer_norm" fusion rules and of the fused
 * RMSNormalization / LayerNormalization ops.
 *
 * Each case builds the composed subgraph as JSON IR (one knob per exporter
 * variant or near miss), runs the fast pipeline with a fusion log, and
 * checks what fused. Fused cases are then compiled with the JIT in the bare
 * and the fast profile, run on the same random inputs, and must agree within
 * 1e-5 x the output's scale. Near misses must fuse nothing and log a reason
 * naming the cause. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "testutil.h"
#include "../ir/ir.h"
#include "../ir/json_ir.h"
#include "../compiler/driver.h"
#include "../passes/passes.h"
#include "../passes/fusion.h"
#include "../compiler/emit.h"
#include "../api/fusec.h"
#include "graphutil.h"
#include "graph_builder.h"

/* ---- model builders ------------------------------------------------------ */

/* A short int list in a spec: LIST(1, 7, 64); n 0 means "not given". */
typedef struct {
    int n;
    int64_t v[4];
} int_list;
#define LIST(...) {(int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), {__VA_ARGS__}}
#define SEQ (-1)   /* in a shape: the symbol "seq" */

/* A constant of `count` pseudo-random values around `base` (float32, or
 * float16 from the same values), shape [count] or [1, count]. */
static int add_vector(tb_graph *b, const char *name, fu_dtype t, int row, int count, double base, unsigned seed) {
    float *v = malloc(sizeof(float) * (size_t)count);
    for (int i = 0; i < count; i++) {
        seed = seed * 1103515245u + 12345u;
        v[i] = (float)(base + ((seed >> 8) % 1000) / 1000.0 - 0.5);
    }
    int c = row ? tb_const_cast(b, name, t, TB_DIMS(1, count), v) : tb_const_cast(b, name, t, TB_DIMS(count), v);
    free(v);
    return c;
}

/* Node `name` computing op(a) or op(a, c) (c < 0: unary) into `out`. */
static int add_node(tb_graph *b, const char *name, const char *op, int a, int c, const char *out) {
    return tb_name(b, c < 0 ? tb_op(b, op, out, a) : tb_op(b, op, out, a, c), name);
}

/* Binary node with operands swapped when `swap`. */
static int add_binary(tb_graph *b, const char *name, const char *op, int a, int c, int swap, const char *out) {
    return add_node(b, name, op, swap ? c : a, swap ? a : c, out);
}

static int add_cast(tb_graph *b, const char *name, int in, int to, const char *out) {
    return tb_attr_int(b, add_node(b, name, "Cast", in, -1, out), "to", to);
}

/* ReduceMean node with axes as attribute or as a constant input. */
static int add_reduce_mean(tb_graph *b, const char *name, int in, const char *out, int_list axes, int axes_input,
                           int keepdims) {
    int y;
    if (axes_input) {
        char axes_name[64];
        snprintf(axes_name, sizeof axes_name, "%s_axes", name);
        y = add_node(b, name, "ReduceMean", in, tb_const_ints(b, axes_name, axes.n, axes.v), out);
    } else {
        y = tb_attr_ints(b, add_node(b, name, "ReduceMean", in, -1, out), "axes", axes.n, axes.v);
    }
    return tb_attr_int(b, y, "keepdims", keepdims);
}

/* The divide step: out = num / den as Div, Mul(num, Reciprocal(den)) or
 * Mul(num, Div(1, den)); num_right puts num on the right of the Mul. */
static int add_divide(tb_graph *b, const char *divide, int num, int den, int num_right, const char *out) {
    if (strcmp(divide, "div") == 0) return add_node(b, "divide", "Div", num, den, out);
    int inv = strcmp(divide, "recip") == 0 ? add_node(b, "inverse", "Reciprocal", den, -1, "inv")
                                           : add_node(b, "inverse", "Div", tb_scalar_f32(b, "one", 1.0f), den, "inv");
    return add_binary(b, "divide", "Mul", num, inv, num_right, out);
}

typedef struct {
    int_list shape;         /* x shape, e.g. LIST(1, 7, 64); SEQ: the symbol "seq" */
    int n;                  /* its last dim */
    int seq;                /* bound of "seq" when the shape uses it */
    int_list reshape_to;    /* reshape x to this constant shape first (per-head norms) */
    const char *square;     /* "pow" (default) or "mul" */
    const char *divide;     /* "div" (default), "recip", "div1" */
    int x_right;            /* x on the right of Mul(x, inverse) */
    int eps_left;           /* Add(eps, mean) */
    int axes_input;         /* ReduceMean axes as an input */
    int scale;              /* 0 none, 1 float32 [n], 2 float32 [1, n] */
    int scale_left;         /* Mul(scale, normed) */
    int bias;               /* layer norm: 0 none, 1 [n] */
    int bias_left;          /* Add(bias, scaled) */
    int casts;              /* 0 none, 1 identity casts, 2 float16 in and out */
    /* near misses */
    int_list axes;          /* ReduceMean axes (default [-1]); layer norm: of the mean */
    int_list var_axes;      /* layer norm: of the variance */
    int keepdims0;          /* the (variance) ReduceMean has keepdims=0 */
    double exponent;        /* Pow exponent (default 2) */
    int eps_input;          /* epsilon is a graph input */
    int square_other;       /* square a second input instead of x (or d) */
    int mean_other;         /* layer norm: subtract the mean of a second input */
    int expose;             /* 1: the Sqrt output is a graph output; 2: the mean is used elsewhere */
} norm_spec;

/* The composed RMS norm (layer_norm = 0) or layer norm model. */
static tb_graph *build_model(const norm_spec *s, int layer_norm) {
    const int_list last = LIST(-1);
    int_list axes = s->axes.n ? s->axes : last, var_axes = s->var_axes.n ? s->var_axes : last;
    const char *square = s->square ? s->square : "pow";
    const char *divide = s->divide ? s->divide : "div";
    fu_dtype fdtype = s->casts == 2 ? FU_F16 : FU_F32;
    tb_graph *b = tb_new("norm");
    int64_t x_shape[4];
    for (int i = 0; i < s->shape.n; i++)
        x_shape[i] = s->shape.v[i] == SEQ ? tb_symbol(b, "seq", s->seq) : s->shape.v[i];
    int x = tb_input(b, "x", fdtype, s->shape.n, x_shape);
    int x2 = -1, eps_in = -1;
    if (s->square_other || s->mean_other)
        x2 = s->reshape_to.n ? tb_input(b, "x2", FU_F32, s->reshape_to.n, s->reshape_to.v)
                             : tb_input(b, "x2", FU_F32, s->shape.n, x_shape);
    if (s->eps_input) eps_in = tb_input(b, "eps_in", FU_F32, TB_SCALAR);
    /* A large epsilon, so that a dropped or misread one shows in the numbers. */
    int eps = tb_scalar_f32(b, "eps", 0.01f);

    x = add_node(b, "enter", "Identity", x, -1, "x0");
    if (s->reshape_to.n)
        x = add_node(b, "split_heads", "Reshape", x, tb_const_ints(b, "heads_shape", s->reshape_to.n, s->reshape_to.v), "xh");
    if (s->casts) x = add_cast(b, "cast_in", x, 1, "xf");
    int centred = x;  /* what is squared and normalised */
    if (layer_norm) {
        int mu = add_reduce_mean(b, "mean", s->mean_other ? x2 : x, "mu", axes, s->axes_input, 1);
        centred = add_node(b, "centre", "Sub", x, mu, "d");
    }
    int squared = s->square_other ? x2 : centred, sq;
    if (strcmp(square, "mul") == 0)
        sq = add_node(b, "square", "Mul", squared, squared, "sq");
    else
        sq = add_node(b, "square", "Pow", squared, tb_scalar_f32(b, "two", (float)(s->exponent ? s->exponent : 2.0)), "sq");
    int ms = add_reduce_mean(b, "var", sq, "ms", layer_norm ? var_axes : axes, s->axes_input, !s->keepdims0);
    int ms_eps = add_binary(b, "add_eps", "Add", ms, s->eps_input ? eps_in : eps, s->eps_left, "ms_eps");
    int rms = add_node(b, "root", "Sqrt", ms_eps, -1, "rms");
    int y = add_divide(b, divide, centred, rms, s->x_right, "normed");
    if (s->casts == 1) y = add_cast(b, "cast_mid", y, 1, "normed_c");
    else if (s->casts == 2) y = add_cast(b, "cast_back", y, 10, "normed16");
    if (s->scale)
        y = add_binary(b, "scale", "Mul", y, add_vector(b, "w", fdtype, s->scale == 2, s->n, 1.0, 7), s->scale_left,
                       "scaled");
    if (s->bias) y = add_binary(b, "bias", "Add", y, add_vector(b, "b", fdtype, 0, s->n, 0.0, 11), s->bias_left, "biased");
    if (s->casts == 2) y = add_cast(b, "cast_out", y, 1, "yf");
    tb_output(b, add_node(b, "exit", "Identity", y, -1, "y"));
    if (s->expose == 1) tb_output(b, rms);
    if (s->expose == 2) tb_output(b, add_node(b, "mean_user", "Neg", ms, -1, "neg_ms"));
    return b;
}

/* ---- running --------------------------------------------------------------- */

/* Symbol values used when binding inputs: a bit below each bound. */
static void symbol_values(const fu_graph *g, int64_t *sym) {
    for (int i = 0; i < FU_MAX_SYMS; i++) sym[i] = 1;
    for (int i = 0; i < g->n_syms; i++) sym[i] = g->sym_max[i] > 2 ? g->sym_max[i] - 2 : g->sym_max[i];
}

/* Compiles the model in a profile, binds deterministic random inputs (the
 * same for both profiles) and runs it. Returns the model (caller frees). */
/* Deterministic inputs with a non-zero mean, the same for both profiles. */
static void fill_norm(const fu_value *v, int k, const int64_t *shape, int64_t numel, void *data) {
    (void)shape;
    unsigned seed = 1234u + 77u * (unsigned)k;
    for (int64_t i = 0; i < numel; i++) {
        seed = seed * 1664525u + 1013904223u;
        float value = (float)((seed >> 9) % 4001) / 1000.0f - 1.7f;  /* mean not zero */
        if (v->dtype == FU_F16) ((uint16_t *)data)[i] = fu_f32_to_f16(value);
        else ((float *)data)[i] = value;
    }
}

static fusec_model *run_profile(const char *path, const fu_graph *g, const char *profile) {
    int64_t sym[FU_MAX_SYMS];
    symbol_values(g, sym);
    return tu_run_profile(path, g, profile, sym, fill_norm);
}

typedef struct {
    const char *rule;       /* "rms_norm" or "layer_norm" */
    const char *op;         /* fused op */
    int fused;              /* expected fused nodes of that op */
    int n_inputs;           /* inputs of the fused node incl. omitted ones (0: not checked) */
    const char *reason;     /* near miss: a substring of the logged reason */
    double tolerance;       /* relative; 0 means 1e-5 */
} expectation;

/* Runs the fast pipeline on the model and checks fusion and numerics. */
static void check_model(tb_graph *b, const expectation *want) {
    char *path = tb_save(b);
    tb_free(b);
    fu_err err = {0};
    fu_graph *g = fu_ir_load(path, &err);
    if (!g) fail_msg("load: %s", err.msg);
    fu_fusion_log log = {0};
    fu_pass_opts opts = {.profile = FU_PROFILE_FAST, .verbose = 0, .fusion_log = &log, .evaluate = fu_evaluate_graph};
    if (fu_run_pipeline(g, &opts, NULL, &err)) fail_msg("pipeline: %s", err.msg);

    int fused_nodes = tu_count_op(g, want->op);
    if (fused_nodes != want->fused || fu_fusion_log_count(&log, want->rule, 1) != want->fused) {
        for (int i = 0; i < log.n; i++)
            print_message("  log: %s %s %s: %s\n", log.events[i].fused ? "fused" : "miss", log.events[i].rule,
                          log.events[i].node, log.events[i].reason);
        fail_msg("expected %d %s, got %d in the graph and %d in the log", want->fused, want->op, fused_nodes,
                 fu_fusion_log_count(&log, want->rule, 1));
    }
    /* A fused norm leaves none of its reductions behind. */
    if (want->fused) {
        assert_int_equal(tu_count_op(g, "ReduceMean"), 0);
        assert_int_equal(tu_count_op(g, "Sqrt"), 0);
    }
    /* Neither norm may be mistaken for the other. */
    const char *other = strcmp(want->op, "RMSNormalization") == 0 ? "LayerNormalization" : "RMSNormalization";
    assert_int_equal(tu_count_op(g, other), 0);
    if (want->n_inputs) {
        for (int i = 0; i < g->n_nodes; i++)
            if (strcmp(g->nodes[i].op, want->op) == 0) assert_int_equal(g->nodes[i].n_in, want->n_inputs);
    }
    if (want->reason) {
        int found = 0;
        for (int i = 0; i < log.n; i++)
            if (!log.events[i].fused && strcmp(log.events[i].rule, want->rule) == 0 &&
                strstr(log.events[i].reason, want->reason))
                found = 1;
        if (!found) {
            for (int i = 0; i < log.n; i++)
                print_message("  log: %s %s: %s\n", log.events[i].rule, log.events[i].node, log.events[i].reason);
            fail_msg("no %s near miss mentions '%s'", want->rule, want->reason);
        }
    }
    fu_fusion_log_free(&log);

    if (want->fused) {
        fusec_model *bare = run_profile(path, g, "bare"), *fast = run_profile(path, g, "fast");
        for (int o = 0; o < fusec_num_outputs(bare); o++) {
            const char *name = fusec_output_name(bare, o);
            long n_ref, n_got;
            float *ref = tu_output_f32(bare, name, &n_ref), *got = tu_output_f32(fast, name, &n_got);
            assert_int_equal(n_ref, n_got);
            double scale = tu_max_abs(ref, n_ref);
            double tolerance = (want->tolerance ? want->tolerance : 1e-5) * scale;
            double diff = tu_max_abs_diff(ref, got, n_ref);
            assert_true(scale > 0.1);
            if (!(diff <= tolerance)) fail_msg("output %s: max diff %g > %g", name, diff, tolerance);
            free(ref);
            free(got);
        }
        fusec_free(bare);
        fusec_free(fast);
    }
    fu_graph_free(g);
    tb_remove(path);
}

static void check_rms(const norm_spec *s, int fused, int n_inputs, const char *reason) {
    expectation want = {"rms_norm", "RMSNormalization", fused, n_inputs, reason, s->casts == 2 ? 1.0 / 1024 : 0};
    check_model(build_model(s, 0), &want);
}

static void check_ln(const norm_spec *s, int fused, int n_inputs, const char *reason) {
    expectation want = {"layer_norm", "LayerNormalization", fused, n_inputs, reason,
                        s->casts == 2 ? 1.0 / 1024 : 0};
    check_model(build_model(s, 1), &want);
}

#define HIDDEN .shape = LIST(1, 7, 64), .n = 64
#define PER_HEAD .shape = LIST(1, 5, 4, 128), .n = 128

/* ---- RMSNormalization: accepted variants ---------------------------------- */

static void test_rms_pow_div_scale(void **state) {
    (void)state;
    check_rms(&(norm_spec){HIDDEN, .scale = 1}, 1, 2, NULL);
}

static void test_rms_mul_square(void **state) {
    (void)state;
    check_rms(&(norm_spec){HIDDEN, .square = "mul", .scale = 1}, 1, 2, NULL);
}

static void test_rms_reciprocal(void **state) {
    (void)state;
    check_rms(&(norm_spec){HIDDEN, .divide = "recip", .scale = 1}, 1, 2, NULL);
    check_rms(&(norm_spec){HIDDEN, .divide = "recip", .x_right = 1, .scale = 1}, 1, 2, NULL);
}

static void test_rms_div_one(void **state) {
    (void)state;
    check_rms(&(norm_spec){HIDDEN, .divide = "div1", .scale = 1}, 1, 2, NULL);
    check_rms(&(norm_spec){HIDDEN, .divide = "div1", .x_right = 1, .scale = 1, .scale_left = 1}, 1, 2, NULL);
}

static void test_rms_eps_left_axes_input(void **state) {
    (void)state;
    check_rms(&(norm_spec){HIDDEN, .eps_left = 1, .scale = 1}, 1, 2, NULL);
    check_rms(&(norm_spec){HIDDEN, .axes_input = 1, .scale = 1}, 1, 2, NULL);
    check_rms(&(norm_spec){HIDDEN, .axes = LIST(2), .scale = 1}, 1, 2, NULL);  /* positive last axis */
}

static void test_rms_scale_left(void **state) {
    (void)state;
    check_rms(&(norm_spec){HIDDEN, .scale = 1, .scale_left = 1}, 1, 2, NULL);
}

static void test_rms_no_scale(void **state) {
    (void)state;
    check_rms(&(norm_spec){HIDDEN}, 1, 1, NULL);
    check_rms(&(norm_spec){HIDDEN, .divide = "recip"}, 1, 1, NULL);
}

/* A [1, n] scale is not a [n] vector: the core fuses, the Mul stays. */
static void test_rms_scale_not_vector(void **state) {
    (void)state;
    check_rms(&(norm_spec){HIDDEN, .scale = 2}, 1, 1, NULL);
}

static void test_rms_identity_casts(void **state) {
    (void)state;
    check_rms(&(norm_spec){HIDDEN, .casts = 1, .scale = 1, .divide = "recip"}, 1, 2, NULL);
}

/* float16 model: x cast to float, the result cast back before an f16 scale
 * Mul (as HF exports). The float32 core fuses, the casts and Mul stay; the
 * back-cast rounds to float16, hence the float16 tolerance. */
static void test_rms_float16_edges(void **state) {
    (void)state;
    check_rms(&(norm_spec){HIDDEN, .casts = 2, .scale = 1, .divide = "recip"}, 1, 1, NULL);
}

/* Qwen3's per-head q/k norm: [1, seq, heads*head_dim] reshaped to heads,
 * normalised over head_dim. */
static void test_rms_per_head(void **state) {
    (void)state;
    check_rms(&(norm_spec){PER_HEAD, .scale = 1, .divide = "recip"}, 1, 2, NULL);
    check_rms(&(norm_spec){.shape = LIST(1, 5, 512), .n = 128, .reshape_to = LIST(1, 5, 4, 128), .scale = 1, .divide = "recip"}, 1, 2,
              NULL);
    check_rms(&(norm_spec){.shape = LIST(1, 5, 4, 64), .n = 64, .square = "mul", .scale = 1, .scale_left = 1}, 1, 2, NULL);
}

static void test_rms_symbolic_seq(void **state) {
    (void)state;
    check_rms(&(norm_spec){.shape = LIST(1, SEQ, 64), .n = 64, .seq = 9, .scale = 1}, 1, 2, NULL);
}

/* ---- RMSNormalization: near misses ------------------------------------------- */

static void test_rms_miss_axis(void **state) {
    (void)state;
    check_rms(&(norm_spec){HIDDEN, .axes = LIST(1), .scale = 1}, 0, 0, "not only the last axis");
    check_rms(&(norm_spec){PER_HEAD, .axes = LIST(-2), .axes_input = 1, .scale = 1}, 0, 0, "not only the last axis");
    check_rms(&(norm_spec){HIDDEN, .axes = LIST(1, 2), .scale = 1}, 0, 0, "not only the last axis");
}

static void test_rms_miss_keepdims(void **state) {
    (void)state;
    /* [1, 7] + eps then Div with [1, 7, 64]: broadcasting that still infers only
     * when the reduced dims line up, so use a last dim equal to 7. */
    check_rms(&(norm_spec){.shape = LIST(1, 7, 7), .n = 7, .keepdims0 = 1}, 0, 0, "keepdims=0");
}

static void test_rms_miss_exponent(void **state) {
    (void)state;
    check_rms(&(norm_spec){HIDDEN, .exponent = 3, .scale = 1}, 0, 0, "exponent is 3, not 2");
}

static void test_rms_miss_eps_not_constant(void **state) {
    (void)state;
    check_rms(&(norm_spec){HIDDEN, .eps_input = 1, .scale = 1}, 0, 0, "epsilon is not a constant");
}

static void test_rms_miss_square_other(void **state) {
    (void)state;
    check_rms(&(norm_spec){HIDDEN, .square_other = 1, .scale = 1}, 0, 0, "different tensor");
    check_rms(&(norm_spec){HIDDEN, .square_other = 1, .square = "mul"}, 0, 0, "different tensor");
}

static void test_rms_miss_intermediate_used(void **state) {
    (void)state;
    check_rms(&(norm_spec){HIDDEN, .expose = 1, .scale = 1}, 0, 0, "is a graph output");
    check_rms(&(norm_spec){HIDDEN, .expose = 2, .scale = 1}, 0, 0, "used outside the pattern");
}

/* ---- LayerNormalization: accepted variants ------------------------------------ */

static void test_ln_scale_bias(void **state) {
    (void)state;
    check_ln(&(norm_spec){HIDDEN, .scale = 1, .bias = 1}, 1, 3, NULL);
    check_ln(&(norm_spec){HIDDEN, .scale = 1, .bias = 1, .scale_left = 1, .bias_left = 1}, 1, 3, NULL);
}

static void test_ln_square_and_divide_variants(void **state) {
    (void)state;
    check_ln(&(norm_spec){HIDDEN, .square = "mul", .scale = 1, .bias = 1}, 1, 3, NULL);
    check_ln(&(norm_spec){HIDDEN, .divide = "recip", .scale = 1, .bias = 1}, 1, 3, NULL);
    check_ln(&(norm_spec){HIDDEN, .divide = "div1", .x_right = 1, .scale = 1, .bias = 1}, 1, 3, NULL);
    check_ln(&(norm_spec){HIDDEN, .eps_left = 1, .axes_input = 1, .scale = 1, .bias = 1}, 1, 3, NULL);
}

static void test_ln_optional_scale_bias(void **state) {
    (void)state;
    check_ln(&(norm_spec){HIDDEN, .scale = 1}, 1, 2, NULL);           /* no bias */
    check_ln(&(norm_spec){HIDDEN, .bias = 1, .bias_left = 1}, 1, 3, NULL);  /* bias, no scale */
    check_ln(&(norm_spec){HIDDEN}, 1, 1, NULL);                       /* neither */
    check_ln(&(norm_spec){HIDDEN, .scale = 2, .bias = 1}, 1, 1, NULL); /* [1, n] scale stays outside */
}

static void test_ln_casts_and_shapes(void **state) {
    (void)state;
    check_ln(&(norm_spec){HIDDEN, .casts = 1, .scale = 1, .bias = 1}, 1, 3, NULL);
    check_ln(&(norm_spec){HIDDEN, .casts = 2, .scale = 1, .bias = 1}, 1, 1, NULL);
    check_ln(&(norm_spec){PER_HEAD, .scale = 1, .bias = 1, .divide = "recip"}, 1, 3, NULL);
    check_ln(&(norm_spec){.shape = LIST(1, SEQ, 64), .n = 64, .seq = 9, .scale = 1, .bias = 1}, 1, 3, NULL);
}

/* ---- LayerNormalization: near misses ---------------------------------------------- */

static void test_ln_miss_axis(void **state) {
    (void)state;
    check_ln(&(norm_spec){HIDDEN, .axes = LIST(1), .scale = 1, .bias = 1}, 0, 0, "mean's ReduceMean reduces");
    check_ln(&(norm_spec){HIDDEN, .var_axes = LIST(1), .scale = 1, .bias = 1}, 0, 0, "variance's ReduceMean reduces");
}

static void test_ln_miss_keepdims(void **state) {
    (void)state;
    check_ln(&(norm_spec){.shape = LIST(1, 7, 7), .n = 7, .keepdims0 = 1}, 0, 0, "keepdims=0");
}

static void test_ln_miss_exponent_eps(void **state) {
    (void)state;
    check_ln(&(norm_spec){HIDDEN, .exponent = 1.5, .scale = 1, .bias = 1}, 0, 0, "exponent is 1.5, not 2");
    check_ln(&(norm_spec){HIDDEN, .eps_input = 1, .scale = 1, .bias = 1}, 0, 0, "epsilon is not a constant");
}

static void test_ln_miss_other_tensor(void **state) {
    (void)state;
    check_ln(&(norm_spec){HIDDEN, .square_other = 1, .scale = 1, .bias = 1}, 0, 0, "different tensor");
    check_ln(&(norm_spec){HIDDEN, .mean_other = 1, .scale = 1, .bias = 1}, 0, 0, "mean subtracted is not the mean");
}

static void test_ln_miss_intermediate_used(void **state) {
    (void)state;
    check_ln(&(norm_spec){HIDDEN, .expose = 1, .scale = 1, .bias = 1}, 0, 0, "is a graph output");
    check_ln(&(norm_spec){HIDDEN, .expose = 2, .scale = 1, .bias = 1}, 0, 0, "used outside the pattern");
}

/* ---- the fused ops on their own --------------------------------------------- */

/* A model y = op(x [, s]) with x of dtype t and shape dims, s a float32
 * [scale_len] of ones when scale_len > 0. */
static tb_graph *norm_op(const char *op, fu_dtype t, int rank, const int64_t *dims, int scale_len) {
    tb_graph *b = tb_new("model");
    int x = tb_input(b, "x", t, rank, dims);
    float ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    int y = scale_len ? tb_op(b, op, "y", x, tb_const_f32(b, "s", TB_DIMS(scale_len), ones)) : tb_op(b, op, "y", x);
    tb_output(b, y);
    return b;
}

static void expect_infer_error(tb_graph *b, const char *substring) {
    fu_err err = {0};
    fu_graph *g = tb_load(b);
    tb_free(b);
    fu_pass_opts opts = {.profile = FU_PROFILE_BARE, .verbose = 0, .fusion_log = NULL, .evaluate = fu_evaluate_graph};
    int rc = fu_run_pipeline(g, &opts, "infer", &err);
    fu_graph_free(g);
    assert_int_equal(rc, -1);
    if (!strstr(err.msg, substring)) fail_msg("error '%s' lacks '%s'", err.msg, substring);
}

static void test_ops_infer_errors(void **state) {
    (void)state;
    tb_graph *b = norm_op("RMSNormalization", FU_F32, TB_DIMS(2, 8), 8);
    tb_attr_int(b, tb_val(b, "y"), "axis", 0);
    expect_infer_error(b, "only axis = -1");
    expect_infer_error(norm_op("LayerNormalization", FU_F32, TB_DIMS(2, 8), 4), "scale must have shape [8]");
    expect_infer_error(norm_op("RMSNormalization", FU_I64, TB_DIMS(2, 8), 0), "expected float32");
    expect_infer_error(norm_op("LayerNormalization", FU_F32, TB_SCALAR, 0), "rank >= 1");
}

/* A LayerNormalization written directly in the model (axis = 1 = rank-1,
 * omitted Scale, a bias) runs through the kernel in both profiles. */
static void test_ops_direct_layer_norm(void **state) {
    (void)state;
    tb_graph *b = tb_new("model");
    int in = tb_input(b, "x", FU_F32, TB_DIMS(3, 4));
    int ln = tb_op(b, "LayerNormalization", "y", in, TB_NONE, tb_const_f32(b, "b", TB_DIMS(4), (const float[]){1, 2, 3, 4}));
    tb_attr_int(b, ln, "axis", 1);
    tb_attr_float(b, ln, "epsilon", 0.0);
    tb_output(b, ln);
    char *path = tb_save(b);
    tb_free(b);
    char err[FU_ERR_LEN];
    fusec_model *m = fusec_load(path, NULL, err, sizeof err);
    if (!m) fail_msg("%s", err);
    const float x[12] = {1, 2, 3, 4, -1, -1, 1, 1, 5, 5, 5, 6};
    int64_t shape[2] = {3, 4};
    assert_int_equal(fusec_set_input(m, "x", FUSEC_FLOAT32, 2, shape, x), 0);
    assert_int_equal(fusec_run(m), 0);
    long n;
    float *y = tu_output_f32(m, "y", &n);
    assert_int_equal(n, 12);
    /* row 1: mean 0, var 1 -> x + b */
    const float want_row1[4] = {0, 1, 4, 5};
    for (int i = 0; i < 4; i++) assert_true(fabsf(y[4 + i] - want_row1[i]) < 1e-5f);
    /* row 0: mean 2.5, var 1.25 */
    assert_true(fabsf(y[0] - (float)(-1.5 / sqrt(1.25) + 1)) < 1e-5f);
    free(y);
    fusec_free(m);
    tb_remove(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rms_pow_div_scale),
        cmocka_unit_test(test_rms_mul_square),
        cmocka_unit_test(test_rms_reciprocal),
        cmocka_unit_test(test_rms_div_one),
        cmocka_unit_test(test_rms_eps_left_axes_input),
        cmocka_unit_test(test_rms_scale_left),
        cmocka_unit_test(test_rms_no_scale),
        cmocka_unit_test(test_rms_scale_not_vector),
        cmocka_unit_test(test_rms_identity_casts),
        cmocka_unit_test(test_rms_float16_edges),
        cmocka_unit_test(test_rms_per_head),
        cmocka_unit_test(test_rms_symbolic_seq),
        cmocka_unit_test(test_rms_miss_axis),
        cmocka_unit_test(test_rms_miss_keepdims),
        cmocka_unit_test(test_rms_miss_exponent),
        cmocka_unit_test(test_rms_miss_eps_not_constant),
        cmocka_unit_test(test_rms_miss_square_other),
        cmocka_unit_test(test_rms_miss_intermediate_used),
        cmocka_unit_test(test_ln_scale_bias),
        cmocka_unit_test(test_ln_square_and_divide_variants),
        cmocka_unit_test(test_ln_optional_scale_bias),
        cmocka_unit_test(test_ln_casts_and_shapes),
        cmocka_unit_test(test_ln_miss_axis),
        cmocka_unit_test(test_ln_miss_keepdims),
        cmocka_unit_test(test_ln_miss_exponent_eps),
        cmocka_unit_test(test_ln_miss_other_tensor),
        cmocka_unit_test(test_ln_miss_intermediate_used),
        cmocka_unit_test(test_ops_infer_errors),
        cmocka_unit_test(test_ops_direct_layer_norm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
