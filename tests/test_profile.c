/* The per-node profile (fusec_profile_* in api/fusec.h) on the
 * Qwen3-style decoder fixture, both back ends: the records cover every node
 * of the planned graph exactly once, in execution order, under the model's
 * own node names; their times add up to about the whole forward; profiling
 * changes no output bit; it belongs to one model; enabling again clears it;
 * code without the profiled entry point is refused with a message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "testutil.h"
#include "../compiler/backend.h"
#include "../ir/json_ir.h"
#include "../ops/ops.h"
#include "../ir/npy.h"
#include "../compiler/driver.h"
#include "../passes/passes.h"
#include "../api/fusec.h"

#define MODEL FIXTURE("qwen3_small/model.json")
#define INPUT FIXTURE("qwen3_small/input_ids_17.npy")

static fusec_model *load(const char *backend) {
    fusec_options o = {.profile = "fast", .backend = backend, .cache_dir = "build/cache"};
    char err[1024];
    fusec_model *m = fusec_load(MODEL, &o, err, sizeof err);
    if (!m) fail_msg("load (%s): %s", backend, err);
    return m;
}

/* Binds the 17-token input and runs once; returns the logits (malloc'd). */
static float *run(fusec_model *m, long *numel) {
    fu_array ids;
    fu_err err;
    assert_int_equal(fu_npy_read(INPUT, &ids, &err), 0);
    if (fusec_set_input(m, "input_ids", (fusec_dtype)ids.dtype, ids.rank, ids.shape, ids.data) || fusec_run(m))
        fail_msg("run: %s", fusec_last_error(m));
    fusec_dtype t;
    int rank;
    int64_t shape[8];
    const void *data;
    assert_int_equal(fusec_get_output(m, "logits", &t, &rank, shape, &data), 0);
    *numel = 1;
    for (int k = 0; k < rank; k++) *numel *= (long)shape[k];
    float *copy = malloc(sizeof(float) * (size_t)*numel);
    memcpy(copy, data, sizeof(float) * (size_t)*numel);
    fu_array_free(&ids);
    return copy;
}

/* The planned graph the model was compiled from. */
static fu_graph *planned_graph(void) {
    fu_err err = {0};
    fu_graph *g = fu_ir_load(MODEL, &err);
    if (!g) fail_msg("%s", err.msg);
    fu_pass_opts o = {.profile = FU_PROFILE_FAST, .evaluate = fu_evaluate_graph};
    if (fu_run_pipeline(g, &o, NULL, &err)) fail_msg("%s", err.msg);
    return g;
}

static void check_covers_every_node(const char *backend) {
    fusec_model *m = load(backend);
    assert_int_equal(fusec_profile_count(m), 0);
    long n_plain, n_profiled;
    float *plain = run(m, &n_plain);
    if (fusec_profile_enable(m, 1)) fail_msg("enable: %s", fusec_last_error(m));
    float *profiled = NULL;
    for (int r = 0; r < 3; r++) {
        free(profiled);
        profiled = run(m, &n_profiled);
    }
    /* The profiled entry point computes exactly what the plain one does. */
    assert_int_equal(n_plain, n_profiled);
    assert_memory_equal(plain, profiled, sizeof(float) * (size_t)n_plain);

    fu_graph *g = planned_graph();
    int live = 0, views = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].dead) continue;
        live++;
        views += g->nodes[i].def->is_view;
    }
    int n = fusec_profile_count(m), covered = 0, last_node = -1;
    assert_true(n > 0);
    double nodes_ms = 0;
    for (int i = 0; i < n; i++) {
        fusec_profile_node rec;
        assert_int_equal(fusec_profile_get(m, i, &rec), 0);
        /* execution order, each record a live node under its own name */
        assert_true(rec.node > last_node && rec.node < g->n_nodes);
        last_node = rec.node;
        const fu_node *node = &g->nodes[rec.node];
        assert_false(node->dead);
        assert_false(node->def->is_view);
        assert_string_equal(rec.name, node->name);
        if (node->loop_group >= 0)
            assert_true(strncmp(rec.op, "Loop:", 5) == 0 && strstr(rec.op, node->op));
        else
            assert_string_equal(rec.op, node->op), assert_int_equal(rec.ops, 1);
        assert_true(rec.total_ms >= 0);
        covered += rec.ops;
        nodes_ms += rec.total_ms;
    }
    /* every live node is timed once (loop group members in their group's
     * record) or is a view, which runs no code */
    assert_int_equal(covered + views, live);
    fusec_profile_node rec;
    assert_int_equal(fusec_profile_get(m, n, &rec), -1);
    assert_int_equal(fusec_profile_get(m, -1, &rec), -1);

    int64_t runs;
    double forward_ms;
    assert_int_equal(fusec_profile_runs(m, &runs, &forward_ms), 0);
    assert_int_equal(runs, 3);
    /* the nodes account for the forward, less the clock reads between them */
    if (!(nodes_ms <= forward_ms && nodes_ms >= 0.8 * forward_ms))
        fail_msg("%s: nodes sum to %.4f ms of a %.4f ms forward", backend, nodes_ms, forward_ms);
    fu_graph_free(g);
    free(plain);
    free(profiled);
    fusec_free(m);
}

static void test_jit_profile_covers_every_node(void **state) {
    (void)state;
    check_covers_every_node("jit");
}

static void test_aot_profile_covers_every_node(void **state) {
    (void)state;
    check_covers_every_node("aot");
}

/* Profiling is a property of one model: turning it off keeps the records
 * and stops adding to them; turning it on again clears them. */
static void test_profile_belongs_to_one_model(void **state) {
    (void)state;
    fusec_model *a = load("jit"), *b = load("jit");
    long n;
    assert_int_equal(fusec_profile_enable(a, 1), 0);
    free(run(a, &n));
    free(run(b, &n));
    int64_t runs;
    double ms, first_ms;
    fusec_profile_runs(b, &runs, &ms);
    assert_int_equal(runs, 0);
    assert_int_equal(fusec_profile_count(b), 0);
    fusec_profile_runs(a, &runs, &ms);
    assert_int_equal(runs, 1);

    fusec_profile_node rec;
    assert_int_equal(fusec_profile_get(a, 0, &rec), 0);
    first_ms = rec.total_ms;
    assert_int_equal(fusec_profile_enable(a, 0), 0);
    free(run(a, &n));
    fusec_profile_runs(a, &runs, &ms);
    assert_int_equal(runs, 1);
    assert_int_equal(fusec_profile_get(a, 0, &rec), 0);
    assert_true(rec.total_ms == first_ms);

    assert_int_equal(fusec_profile_enable(a, 1), 0);
    fusec_profile_runs(a, &runs, &ms);
    assert_int_equal(runs, 0);
    assert_true(ms == 0);
    for (int i = 0; i < fusec_profile_count(a); i++) {
        assert_int_equal(fusec_profile_get(a, i, &rec), 0);
        assert_true(rec.total_ms == 0);
    }
    fusec_free(a);
    fusec_free(b);
}

/* A library without fusec_model_run_profiled (built by an older fusec)
 * still runs, but profiling it is refused with a reason. */
static void test_library_without_profiled_entry(void **state) {
    (void)state;
    static const char source[] =
        "const unsigned char fusec_model_meta[] = \"{\\\"fusec_meta\\\": 1, \\\"name\\\": \\\"old\\\", "
        "\\\"symbols\\\": [], \\\"inputs\\\": [], \\\"outputs\\\": [], \\\"weights\\\": [], "
        "\\\"arena_bytes\\\": 0}\";\n"
        "const unsigned long fusec_model_meta_len = sizeof fusec_model_meta - 1;\n"
        "int fusec_model_run(const void *s, const void *i, const void *w, void *a, void **o)\n"
        "{ (void)s; (void)i; (void)w; (void)a; (void)o; return 0; }\n";
    char so[256];
    snprintf(so, sizeof so, "/tmp/fusec_test_profile_%d.so", (int)getpid());
    fu_err err = {0};
    if (fu_aot_build(source, so, NULL, &err)) fail_msg("%s", err.msg);
    char text[1024];
    fusec_model *m = fusec_load(so, NULL, text, sizeof text);
    if (!m) fail_msg("%s", text);
    assert_int_equal(fusec_run(m), 0);
    assert_int_equal(fusec_profile_enable(m, 1), -1);
    assert_non_null(strstr(fusec_last_error(m), "cannot be profiled"));
    assert_int_equal(fusec_profile_count(m), 0);
    assert_int_equal(fusec_run(m), 0);
    fusec_free(m);
    unlink(so);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jit_profile_covers_every_node),
        cmocka_unit_test(test_aot_profile_covers_every_node),
        cmocka_unit_test(test_profile_belongs_to_one_model),
        cmocka_unit_test(test_library_without_profiled_entry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
