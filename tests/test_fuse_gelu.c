/* Tests of the "gelu" fusion rule (passes/fuse_gelu.c).
 *
 * Each case builds the GELU spelling of one exporter (or a near miss) on
 * x [seq, 24] = x_in @ w. The fast pipeline runs with a fusion log; fused
 * cases are compiled with the JIT in the bare profile (the composed ops) and
 * the fast profile (the Gelu kernel), run on the same inputs, and must agree
 * within 1e-5 x the output's scale. Near misses fuse nothing and log a
 * reason naming the cause. */
#include <math.h>
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
#include "../api/fusec.h"
#include "graphutil.h"
#include "graph_builder.h"

typedef struct {
    const char *form;       /* "erf_div", "erf_mul", "erf_half_last", "tanh_pow", "tanh_cube" */
    double divisor;         /* erf forms: x / divisor (0: sqrt(2)) */
    double coefficient;     /* tanh forms: cubic coefficient (0: 0.044715) */
    int expose_inner;       /* the Erf / Tanh output is also a graph output */
    int cube_of_other;      /* tanh forms: the cube is of another tensor */
} gelu_spec;

static char *build(const gelu_spec *s) {
    tb_graph *b = tb_new("gelu");
    b->node_suffix = "_node";
    int64_t seq = tb_symbol(b, "seq", 7);
    float w[16 * 24];
    for (int i = 0; i < 16 * 24; i++) w[i] = (float)sin(0.37 * i) * 0.6f;
    int x_in = tb_input(b, "x_in", FU_F32, TB_DIMS(seq, 16)), other = tb_input(b, "other", FU_F32, TB_DIMS(seq, 24));
    int x = tb_op(b, "MatMul", "x", x_in, tb_const_f32(b, "w", TB_DIMS(16, 24), w));
    int half = tb_scalar_f32(b, "half", 0.5f), one = tb_scalar_f32(b, "one", 1.0f), inner, y;
    if (!strncmp(s->form, "erf", 3)) {
        int arg = !strcmp(s->form, "erf_mul")
                      ? tb_op(b, "Mul", "scaled", x, tb_scalar_f32(b, "inv_sqrt2", (float)M_SQRT1_2))
                      : tb_op(b, "Div", "scaled", x, tb_scalar_f32(b, "sqrt2", (float)(s->divisor ? s->divisor : M_SQRT2)));
        inner = tb_op(b, "Erf", "erf", arg);
        int plus = tb_op(b, "Add", "plus", one, inner);
        if (!strcmp(s->form, "erf_half_last")) {   /* (x * (1 + erf)) * 0.5 */
            y = tb_op(b, "Mul", "y", tb_op(b, "Mul", "xp", x, plus), half);
        } else {                                   /* (0.5 * x) * (1 + erf) */
            y = tb_op(b, "Mul", "y", tb_op(b, "Mul", "hx", half, x), plus);
        }
    } else {
        int base = s->cube_of_other ? other : x, cube;
        if (!strcmp(s->form, "tanh_pow")) cube = tb_op(b, "Pow", "cube", base, tb_scalar_f32(b, "three", 3.0f));
        else cube = tb_op(b, "Mul", "cube", base, tb_op(b, "Mul", "sq", base, base));
        float k = (float)(s->coefficient ? s->coefficient : 0.044715);
        int sum = tb_op(b, "Add", "sum", x, tb_op(b, "Mul", "kc", tb_scalar_f32(b, "kappa", k), cube));
        inner = tb_op(b, "Tanh", "tanh", tb_op(b, "Mul", "u", tb_scalar_f32(b, "beta", 0.7978845608f), sum));
        int plus = tb_op(b, "Add", "plus", inner, one);
        y = tb_op(b, "Mul", "y", tb_op(b, "Mul", "hx", x, half), plus);   /* x * 0.5 first */
    }
    tb_output(b, y);
    if (s->expose_inner) tb_output(b, inner);
    char *path = tb_save(b);
    tb_free(b);
    return path;
}

static void fill(const fu_value *v, int k, const int64_t *shape, int64_t numel, void *data) {
    (void)v, (void)shape;
    for (int64_t i = 0; i < numel; i++) ((float *)data)[i] = (float)(3.0 * sin(1.3 * (double)i + k));
}

/* fused: expect one Gelu of this approximation; else a near miss mentioning `reason`. */
static void check(const gelu_spec *s, const char *approximate, const char *reason) {
    char *path = build(s);
    fu_err err = {0};
    fu_graph *g = fu_ir_load(path, &err);
    if (!g) fail_msg("load: %s", err.msg);
    fu_fusion_log log = {0};
    fu_pass_opts opts = {.profile = FU_PROFILE_FAST, .fusion_log = &log, .evaluate = fu_evaluate_graph};
    if (fu_run_pipeline(g, &opts, NULL, &err)) fail_msg("pipeline: %s", err.msg);
    int found = 0;
    for (int i = 0; i < log.n; i++) {
        if (getenv("FUSEC_TEST_LOG")) print_message("  %s %s: %s\n", log.events[i].rule, log.events[i].node, log.events[i].reason);
        found |= reason && !log.events[i].fused && !strcmp(log.events[i].rule, "gelu") && strstr(log.events[i].reason, reason);
    }
    if (reason) {
        assert_int_equal(tu_count_op(g, "Gelu"), 0);
        if (!found) fail_msg("%s: no gelu near miss mentions '%s'", s->form, reason);
    } else {
        assert_int_equal(tu_count_op(g, "Gelu"), 1);
        assert_int_equal(tu_count_op(g, "Erf") + tu_count_op(g, "Tanh"), 0);
        assert_string_equal(fu_attr_string(tu_find_op(g, "Gelu"), "approximate", "none"), approximate);
        fusec_model *bare = tu_run_profile(path, g, "bare", NULL, fill), *fast = tu_run_profile(path, g, "fast", NULL, fill);
        long n_ref, n_got;
        float *ref = tu_output_f32(bare, "y", &n_ref), *got = tu_output_f32(fast, "y", &n_got);
        assert_int_equal(n_ref, n_got);
        double scale = tu_max_abs(ref, n_ref), diff = tu_max_abs_diff(ref, got, n_ref);
        assert_true(scale > 0.5);
        if (!(diff <= 1e-5 * scale)) fail_msg("%s: max diff %g > %g", s->form, diff, 1e-5 * scale);
        free(ref);
        free(got);
        fusec_free(bare);
        fusec_free(fast);
    }
    fu_fusion_log_free(&log);
    fu_graph_free(g);
    tb_remove(path);
}

static void test_erf_spellings(void **state) {
    (void)state;
    check(&(gelu_spec){.form = "erf_div"}, "none", NULL);
    check(&(gelu_spec){.form = "erf_mul"}, "none", NULL);
    check(&(gelu_spec){.form = "erf_half_last"}, "none", NULL);
}

static void test_tanh_spellings(void **state) {
    (void)state;
    check(&(gelu_spec){.form = "tanh_pow"}, "tanh", NULL);
    check(&(gelu_spec){.form = "tanh_cube"}, "tanh", NULL);
}

static void test_near_misses(void **state) {
    (void)state;
    check(&(gelu_spec){.form = "erf_div", .divisor = 2.0}, NULL, "divisor is 2, not 1.41421");
    check(&(gelu_spec){.form = "tanh_pow", .coefficient = 0.05}, NULL, "cubic coefficient is 0.05");
    check(&(gelu_spec){.form = "erf_mul", .expose_inner = 1}, NULL, "'erf' is a graph output");
    check(&(gelu_spec){.form = "tanh_cube", .cube_of_other = 1}, NULL, "of a different tensor ('other')");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_erf_spellings),
        cmocka_unit_test(test_tanh_spellings),
        cmocka_unit_test(test_near_misses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
