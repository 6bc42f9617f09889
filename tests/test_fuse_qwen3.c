/* The fast profile on the small Qwen3-style decoder (fixtures/qwen3_small):
 * every RMSNorm (per-layer, per-head q/k, final), every RoPE, every
 * attention and every SwiGLU fuses, nothing is a near miss, and the fast
 * outputs match the bare ones at several sequence lengths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "testutil.h"
#include "../ir/json_ir.h"
#include "../ir/npy.h"
#include "../passes/fusion.h"
#include "../compiler/driver.h"
#include "../passes/passes.h"
#include "../api/fusec.h"
#include "graphutil.h"

#define MODEL "fixtures/qwen3_small/model.json"
#define LAYERS 2

static void test_fast_profile_fuses_every_pattern(void **state) {
    (void)state;
    fu_err err;
    fu_graph *g = fu_ir_load(MODEL, &err);
    if (!g) fail_msg("%s", err.msg);
    fu_fusion_log log = {0};
    fu_pass_opts o = {.profile = FU_PROFILE_FAST, .verbose = 0, .fusion_log = &log, .evaluate = fu_evaluate_graph};
    if (fu_run_pipeline(g, &o, NULL, &err)) fail_msg("%s", err.msg);
    /* 2 per layer + q/k norms per layer + final norm */
    assert_int_equal(fu_fusion_log_count(&log, "rms_norm", 1), 4 * LAYERS + 1);
    assert_int_equal(tu_count_op(g, "RMSNormalization"), 4 * LAYERS + 1);
    assert_int_equal(fu_fusion_log_count(&log, "rotary_embedding", 1), 2 * LAYERS);
    assert_int_equal(tu_count_op(g, "RotaryEmbedding"), 2 * LAYERS);
    assert_int_equal(fu_fusion_log_count(&log, "attention", 1), LAYERS);
    assert_int_equal(tu_count_op(g, "Attention"), LAYERS);
    assert_int_equal(fu_fusion_log_count(&log, "swiglu", 1), LAYERS);
    assert_int_equal(tu_count_op(g, "SwiGLU"), LAYERS);
    /* The head transposes around attention became layouts: Q and K are
     * read (and roped) as [B, S, H, D], the output written that way. */
    assert_true(fu_fusion_log_count(&log, "attention_layouts", 1) >= LAYERS);
    assert_int_equal(tu_count_op(g, "Transpose"), 0);
    for (int i = 0; i < g->n_nodes; i++) {
        const fu_node *n = &g->nodes[i];
        if (!strcmp(n->op, "Attention")) {
            assert_string_equal(fu_attr_string(n, "qkv_layout", ""), "BSHD,BSHD,BSHD");
            assert_string_equal(fu_attr_string(n, "out_layout", ""), "BSHD");
        }
        if (!strcmp(n->op, "RotaryEmbedding")) assert_string_equal(fu_attr_string(n, "layout", ""), "BSHD");
    }
    assert_int_equal(fu_fusion_log_count(&log, NULL, 0), 0);
    /* What the patterns were built from is gone. */
    assert_int_equal(tu_count_op(g, "Softmax"), 0);
    assert_int_equal(tu_count_op(g, "ReduceMean"), 0);
    assert_int_equal(tu_count_op(g, "Sigmoid"), 0);
    assert_int_equal(tu_count_op(g, "Cos"), 0);
    fu_fusion_log_free(&log);
    fu_graph_free(g);
}

static void test_fast_matches_bare(void **state) {
    (void)state;
    char err[1024];
    fusec_options bare_o = {.profile = "bare", .backend = "jit", .cache_dir = "build/cache"}, fast_o = {.profile = "fast", .backend = "jit", .cache_dir = "build/cache"};
    fusec_model *bare = fusec_load(MODEL, &bare_o, err, sizeof err);
    if (!bare) fail_msg("%s", err);
    fusec_model *fast = fusec_load(MODEL, &fast_o, err, sizeof err);
    if (!fast) fail_msg("%s", err);
    static const int lengths[] = {1, 3, 17, 32};
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        int64_t ids[32], shape[2] = {1, lengths[i]};
        for (int t = 0; t < lengths[i]; t++) ids[t] = (t * 37 + 11) % 256;
        const float *outs[2];
        int64_t out_shape[2][8];
        fusec_model *models[2] = {bare, fast};
        for (int m = 0; m < 2; m++) {
            fusec_dtype dt;
            int rank;
            assert_int_equal(fusec_set_input(models[m], "input_ids", FUSEC_INT64, 2, shape, ids), 0);
            if (fusec_run(models[m])) fail_msg("%s", fusec_last_error(models[m]));
            assert_int_equal(fusec_get_output(models[m], "logits", &dt, &rank, out_shape[m], (const void **)&outs[m]), 0);
            assert_int_equal(rank, 3);
            assert_int_equal(out_shape[m][1], lengths[i]);
        }
        long n = (long)out_shape[0][0] * out_shape[0][1] * out_shape[0][2];
        double scale = tu_max_abs(outs[0], n), diff = tu_max_abs_diff(outs[0], outs[1], n);
        if (!(diff <= 1e-5 * scale))
            fail_msg("seq %d: fast differs from bare by %g (scale %g)", lengths[i], diff, scale);
    }
    fusec_free(bare);
    fusec_free(fast);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fast_profile_fuses_every_pattern),
        cmocka_unit_test(test_fast_matches_bare),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
