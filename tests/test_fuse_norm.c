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

/* ---- model builders ------------------------------------------------------ */

/* Appends a float32 initializer of `count` pseudo-random values around `base`. */
static void add_vector(fu_sb *b, const char *name, const char *dtype, const char *shape, int count,
                       double base, unsigned seed) {
    fu_sb_printf(b, ",\n    {\"name\": \"%s\", \"dtype\": \"%s\", \"shape\": %s, \"data\": [", name, dtype, shape);
    for (int i = 0; i < count; i++) {
        seed = seed * 1103515245u + 12345u;
        fu_sb_printf(b, "%s%.4f", i ? ", " : "", base + ((seed >> 8) % 1000) / 1000.0 - 0.5);
    }
    fu_sb_printf(b, "]}");
}

/* ReduceMean node with axes as attribute or as a constant input. */
static void add_reduce_mean(fu_sb *nodes, fu_sb *inits, const char *name, const char *in, const char *out,
                            const char *axes, int axes_input, int keepdims) {
    if (axes_input) {
        int count = 1;
        for (const char *p = axes; *p; p++) count += *p == ',';
        fu_sb_printf(inits, ",\n    {\"name\": \"%s_axes\", \"dtype\": \"int64\", \"shape\": [%d], \"data\": %s}", name,
                     count, axes);
        fu_sb_printf(nodes, ",\n    {\"name\": \"%s\", \"op\": \"ReduceMean\", \"inputs\": [\"%s\", \"%s_axes\"], "
                            "\"outputs\": [\"%s\"], \"attrs\": {\"keepdims\": %d}}",
                     name, in, name, out, keepdims);
    } else {
        fu_sb_printf(nodes, ",\n    {\"name\": \"%s\", \"op\": \"ReduceMean\", \"inputs\": [\"%s\"], "
                            "\"outputs\": [\"%s\"], \"attrs\": {\"axes\": %s, \"keepdims\": %d}}",
                     name, in, out, axes, keepdims);
    }
}

static void add_node(fu_sb *nodes, const char *name, const char *op, const char *a, const char *b, const char *out) {
    if (b)
        fu_sb_printf(nodes, ",\n    {\"name\": \"%s\", \"op\": \"%s\", \"inputs\": [\"%s\", \"%s\"], \"outputs\": [\"%s\"]}",
                     name, op, a, b, out);
    else
        fu_sb_printf(nodes, ",\n    {\"name\": \"%s\", \"op\": \"%s\", \"inputs\": [\"%s\"], \"outputs\": [\"%s\"]}", name,
                     op, a, out);
}

/* Binary node with operands swapped when `swap`. */
static void add_binary(fu_sb *nodes, const char *name, const char *op, const char *a, const char *b, int swap,
                       const char *out) {
    add_node(nodes, name, op, swap ? b : a, swap ? a : b, out);
}

static void add_cast(fu_sb *nodes, const char *name, const char *in, int to, const char *out) {
    fu_sb_printf(nodes, ",\n    {\"name\": \"%s\", \"op\": \"Cast\", \"inputs\": [\"%s\"], \"outputs\": [\"%s\"], "
                        "\"attrs\": {\"to\": %d}}",
                 name, in, out, to);
}

/* The divide step: out = num / den as Div, Mul(num, Reciprocal(den)) or
 * Mul(num, Div(1, den)); num_right puts num on the right of the Mul. */
static void add_divide(fu_sb *nodes, fu_sb *inits, const char *divide, const char *num, const char *den,
                       int num_right, const char *out) {
    if (strcmp(divide, "div") == 0) {
        add_node(nodes, "divide", "Div", num, den, out);
    } else if (strcmp(divide, "recip") == 0) {
        add_node(nodes, "inverse", "Reciprocal", den, NULL, "inv");
        add_binary(nodes, "divide", "Mul", num, "inv", num_right, out);
    } else {
        fu_sb_printf(inits, ",\n    {\"name\": \"one\", \"dtype\": \"float32\", \"shape\": [], \"data\": [1.0]}");
        add_node(nodes, "inverse", "Div", "one", den, "inv");
        add_binary(nodes, "divide", "Mul", num, "inv", num_right, out);
    }
}

typedef struct {
    const char *shape;      /* x shape (JSON), e.g. "[1, 7, 64]" */
    int n;                  /* its last dim */
    const char *symbols;    /* "symbols" object or NULL */
    const char *reshape_to; /* reshape x to this constant shape first (per-head norms) */
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
    const char *axes;       /* ReduceMean axes (default "[-1]"); layer norm: of the mean */
    const char *var_axes;   /* layer norm: of the variance */
    int keepdims0;          /* the (variance) ReduceMean has keepdims=0 */
    double exponent;        /* Pow exponent (default 2) */
    int eps_input;          /* epsilon is a graph input */
    int square_other;       /* square a second input instead of x (or d) */
    int mean_other;         /* layer norm: subtract the mean of a second input */
    int expose;             /* 1: the Sqrt output is a graph output; 2: the mean is used elsewhere */
} norm_spec;

/* Writes the composed RMS norm (layer_norm = 0) or layer norm model. */
static char *build_model(const norm_spec *s, int layer_norm) {
    fu_sb nodes = {0}, inits = {0}, outs = {0};
    const char *axes = s->axes ? s->axes : "[-1]";
    const char *var_axes = s->var_axes ? s->var_axes : "[-1]";
    const char *square = s->square ? s->square : "pow";
    const char *divide = s->divide ? s->divide : "div";
    const char *fdtype = s->casts == 2 ? "float16" : "float32";
    char x_shape[128];
    snprintf(x_shape, sizeof x_shape, "%s", s->shape);
    /* A large epsilon, so that a dropped or misread one shows in the numbers. */
    fu_sb_printf(&inits, "    {\"name\": \"eps\", \"dtype\": \"float32\", \"shape\": [], \"data\": [0.01]}");
    fu_sb_printf(&nodes, "    {\"name\": \"enter\", \"op\": \"Identity\", \"inputs\": [\"x\"], \"outputs\": [\"x0\"]}");
    const char *x = "x0";
    if (s->reshape_to) {
        fu_sb_printf(&inits, ",\n    {\"name\": \"heads_shape\", \"dtype\": \"int64\", \"shape\": [4], \"data\": %s}",
                     s->reshape_to);
        add_node(&nodes, "split_heads", "Reshape", "x0", "heads_shape", "xh");
        x = "xh";
    }
    if (s->casts) {
        add_cast(&nodes, "cast_in", x, 1, "xf");
        x = "xf";
    }
    const char *centred = x;  /* what is squared and normalised */
    if (layer_norm) {
        add_reduce_mean(&nodes, &inits, "mean", s->mean_other ? "x2" : x, "mu", axes, s->axes_input, 1);
        add_node(&nodes, "centre", "Sub", x, "mu", "d");
        centred = "d";
    }
    const char *squared = s->square_other ? "x2" : centred;
    if (strcmp(square, "mul") == 0) {
        add_node(&nodes, "square", "Mul", squared, squared, "sq");
    } else {
        fu_sb_printf(&inits, ",\n    {\"name\": \"two\", \"dtype\": \"float32\", \"shape\": [], \"data\": [%g]}",
                     s->exponent ? s->exponent : 2.0);
        add_node(&nodes, "square", "Pow", squared, "two", "sq");
    }
    add_reduce_mean(&nodes, &inits, "var", "sq", "ms", layer_norm ? var_axes : axes, s->axes_input,
                    !s->keepdims0);
    add_binary(&nodes, "add_eps", "Add", "ms", s->eps_input ? "eps_in" : "eps", s->eps_left, "ms_eps");
    add_node(&nodes, "root", "Sqrt", "ms_eps", NULL, "rms");
    add_divide(&nodes, &inits, divide, centred, "rms", s->x_right, "normed");
    const char *y = "normed";
    if (s->casts == 1) {
        add_cast(&nodes, "cast_mid", y, 1, "normed_c");
        y = "normed_c";
    } else if (s->casts == 2) {
        add_cast(&nodes, "cast_back", y, 10, "normed16");
        y = "normed16";
    }
    if (s->scale) {
        char shape[64];
        snprintf(shape, sizeof shape, s->scale == 1 ? "[%d]" : "[1, %d]", s->n);
        add_vector(&inits, "w", fdtype, shape, s->n, 1.0, 7);
        add_binary(&nodes, "scale", "Mul", y, "w", s->scale_left, "scaled");
        y = "scaled";
    }
    if (s->bias) {
        char shape[64];
        snprintf(shape, sizeof shape, "[%d]", s->n);
        add_vector(&inits, "b", fdtype, shape, s->n, 0.0, 11);
        add_binary(&nodes, "bias", "Add", y, "b", s->bias_left, "biased");
        y = "biased";
    }
    if (s->casts == 2) {
        add_cast(&nodes, "cast_out", y, 1, "yf");
        y = "yf";
    }
    add_node(&nodes, "exit", "Identity", y, NULL, "y");
    fu_sb_printf(&outs, "{\"name\": \"y\"}");
    if (s->expose == 1) fu_sb_printf(&outs, ", {\"name\": \"rms\"}");
    if (s->expose == 2) {
        add_node(&nodes, "mean_user", "Neg", "ms", NULL, "neg_ms");
        fu_sb_printf(&outs, ", {\"name\": \"neg_ms\"}");
    }

    fu_sb model = {0};
    fu_sb_printf(&model, "{\"ir_version\": 1, \"name\": \"norm\",%s%s%s\n \"inputs\": [\n",
                 s->symbols ? " \"symbols\": " : "", s->symbols ? s->symbols : "", s->symbols ? "," : "");
    fu_sb_printf(&model, "    {\"name\": \"x\", \"dtype\": \"%s\", \"shape\": %s}", fdtype, x_shape);
    const char *x2_shape = s->reshape_to ? s->reshape_to : x_shape;
    if (s->square_other || s->mean_other)
        fu_sb_printf(&model, ",\n    {\"name\": \"x2\", \"dtype\": \"float32\", \"shape\": %s}", x2_shape);
    if (s->eps_input) fu_sb_printf(&model, ",\n    {\"name\": \"eps_in\", \"dtype\": \"float32\", \"shape\": []}");
    fu_sb_printf(&model, "],\n \"outputs\": [%s],\n \"initializers\": [\n%s],\n \"nodes\": [\n%s]}\n", outs.s, inits.s,
                 nodes.s);
    assert_false(model.oom || nodes.oom || inits.oom || outs.oom);
    fu_sb_free(&nodes);
    fu_sb_free(&inits);
    fu_sb_free(&outs);
    return model.s;
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
static void check_model(const char *json, const expectation *want) {
    char *path = tu_write_temp(".json", json);
    fu_err err = {{0}};
    fu_graph *g = fu_ir_load(path, &err);
    if (!g) fail_msg("load: %s\n%s", err.msg, json);
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
    unlink(path);
    free(path);
}

static void check_rms(const norm_spec *s, int fused, int n_inputs, const char *reason) {
    char *json = build_model(s, 0);
    expectation want = {"rms_norm", "RMSNormalization", fused, n_inputs, reason, s->casts == 2 ? 1.0 / 1024 : 0};
    check_model(json, &want);
    free(json);
}

static void check_ln(const norm_spec *s, int fused, int n_inputs, const char *reason) {
    char *json = build_model(s, 1);
    expectation want = {"layer_norm", "LayerNormalization", fused, n_inputs, reason,
                        s->casts == 2 ? 1.0 / 1024 : 0};
    check_model(json, &want);
    free(json);
}

#define HIDDEN .shape = "[1, 7, 64]", .n = 64
#define PER_HEAD .shape = "[1, 5, 4, 128]", .n = 128

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
    check_rms(&(norm_spec){HIDDEN, .axes = "[2]", .scale = 1}, 1, 2, NULL);  /* positive last axis */
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
    check_rms(&(norm_spec){.shape = "[1, 5, 512]", .n = 128, .reshape_to = "[1, 5, 4, 128]", .scale = 1, .divide = "recip"}, 1, 2,
              NULL);
    check_rms(&(norm_spec){.shape = "[1, 5, 4, 64]", .n = 64, .square = "mul", .scale = 1, .scale_left = 1}, 1, 2, NULL);
}

static void test_rms_symbolic_seq(void **state) {
    (void)state;
    check_rms(&(norm_spec){.shape = "[1, \"seq\", 64]", .n = 64, .symbols = "{\"seq\": 9}", .scale = 1}, 1, 2, NULL);
}

/* ---- RMSNormalization: near misses ------------------------------------------- */

static void test_rms_miss_axis(void **state) {
    (void)state;
    check_rms(&(norm_spec){HIDDEN, .axes = "[1]", .scale = 1}, 0, 0, "not only the last axis");
    check_rms(&(norm_spec){PER_HEAD, .axes = "[-2]", .axes_input = 1, .scale = 1}, 0, 0, "not only the last axis");
    check_rms(&(norm_spec){HIDDEN, .axes = "[1, 2]", .scale = 1}, 0, 0, "not only the last axis");
}

static void test_rms_miss_keepdims(void **state) {
    (void)state;
    /* [1, 7] + eps then Div with [1, 7, 64]: broadcasting that still infers only
     * when the reduced dims line up, so use a last dim equal to 7. */
    check_rms(&(norm_spec){.shape = "[1, 7, 7]", .n = 7, .keepdims0 = 1}, 0, 0, "keepdims=0");
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
    check_ln(&(norm_spec){.shape = "[1, \"seq\", 64]", .n = 64, .symbols = "{\"seq\": 9}", .scale = 1, .bias = 1}, 1, 3, NULL);
}

/* ---- LayerNormalization: near misses ---------------------------------------------- */

static void test_ln_miss_axis(void **state) {
    (void)state;
    check_ln(&(norm_spec){HIDDEN, .axes = "[1]", .scale = 1, .bias = 1}, 0, 0, "mean's ReduceMean reduces");
    check_ln(&(norm_spec){HIDDEN, .var_axes = "[1]", .scale = 1, .bias = 1}, 0, 0, "variance's ReduceMean reduces");
}

static void test_ln_miss_keepdims(void **state) {
    (void)state;
    check_ln(&(norm_spec){.shape = "[1, 7, 7]", .n = 7, .keepdims0 = 1}, 0, 0, "keepdims=0");
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

static fu_graph *load_text(const char *json, fu_err *err) {
    char *path = tu_write_temp(".json", json);
    fu_graph *g = fu_ir_load(path, err);
    unlink(path);
    free(path);
    return g;
}

static void expect_infer_error(const char *json, const char *substring) {
    fu_err err = {{0}};
    fu_graph *g = load_text(json, &err);
    if (g) {
        fu_pass_opts opts = {.profile = FU_PROFILE_BARE, .verbose = 0, .fusion_log = NULL, .evaluate = fu_evaluate_graph};
        int rc = fu_run_pipeline(g, &opts, "infer", &err);
        fu_graph_free(g);
        assert_int_equal(rc, -1);
    }
    if (!strstr(err.msg, substring)) fail_msg("error '%s' lacks '%s'", err.msg, substring);
}

static void test_ops_infer_errors(void **state) {
    (void)state;
    expect_infer_error(
        "{\"ir_version\": 1, \"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [2, 8]}],"
        " \"outputs\": [{\"name\": \"y\"}],"
        " \"initializers\": [{\"name\": \"s\", \"dtype\": \"float32\", \"shape\": [8], \"data\": [1,1,1,1,1,1,1,1]}],"
        " \"nodes\": [{\"op\": \"RMSNormalization\", \"inputs\": [\"x\", \"s\"], \"outputs\": [\"y\"],"
        " \"attrs\": {\"axis\": 0}}]}",
        "only axis = -1");
    expect_infer_error(
        "{\"ir_version\": 1, \"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [2, 8]}],"
        " \"outputs\": [{\"name\": \"y\"}],"
        " \"initializers\": [{\"name\": \"s\", \"dtype\": \"float32\", \"shape\": [4], \"data\": [1,1,1,1]}],"
        " \"nodes\": [{\"op\": \"LayerNormalization\", \"inputs\": [\"x\", \"s\"], \"outputs\": [\"y\"]}]}",
        "scale must have shape [8]");
    expect_infer_error(
        "{\"ir_version\": 1, \"inputs\": [{\"name\": \"x\", \"dtype\": \"int64\", \"shape\": [2, 8]}],"
        " \"outputs\": [{\"name\": \"y\"}],"
        " \"nodes\": [{\"op\": \"RMSNormalization\", \"inputs\": [\"x\"], \"outputs\": [\"y\"]}]}",
        "expected float32");
    expect_infer_error(
        "{\"ir_version\": 1, \"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": []}],"
        " \"outputs\": [{\"name\": \"y\"}],"
        " \"nodes\": [{\"op\": \"LayerNormalization\", \"inputs\": [\"x\"], \"outputs\": [\"y\"]}]}",
        "rank >= 1");
}

/* A LayerNormalization written directly in the model (axis = 1 = rank-1,
 * omitted Scale, a bias) runs through the kernel in both profiles. */
static void test_ops_direct_layer_norm(void **state) {
    (void)state;
    const char *json =
        "{\"ir_version\": 1, \"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [3, 4]}],"
        " \"outputs\": [{\"name\": \"y\"}],"
        " \"initializers\": [{\"name\": \"b\", \"dtype\": \"float32\", \"shape\": [4], \"data\": [1, 2, 3, 4]}],"
        " \"nodes\": [{\"op\": \"LayerNormalization\", \"inputs\": [\"x\", \"\", \"b\"], \"outputs\": [\"y\"],"
        " \"attrs\": {\"axis\": 1, \"epsilon\": 0.0}}]}";
    char *path = tu_write_temp(".json", json);
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
    unlink(path);
    free(path);
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
