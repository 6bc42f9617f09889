/* The ONNX reader (ir/onnx_read.c) under the sanitizers: every fixture
 * model in fixtures/onnx loads and passes the verifier; the unsupported one
 * lists its ops; and every truncation of a model and single-byte change of
 * its first bytes is refused cleanly or read, never a crash or a leak (this
 * binary also runs under ASan + UBSan). Numerics against numpy are checked
 * by tests/cli/test_onnx.sh. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "../ir/ir.h"
#include "../ir/json_ir.h"
#include "../ir/onnx_read.h"
#include "../ir/weights.h"
#include "../ops/infer.h"

static const char *const models[] = {"constant", "dim_param", "external_data", "large_inline", "mlp_float_data",
                                     "mlp_raw", "reducemean_attr", "reducemean_input", "reducesum_input",
                                     "squeeze_unsqueeze"};
static const fu_ir_opts opts = {.sym_max = "seq=8"};

static uint8_t *read_model(const char *name, size_t *len) {
    char path[256];
    snprintf(path, sizeof path, "fixtures/onnx/%s/model.onnx", name);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_int_equal(fread(buf, 1, *len, f), *len);
    fclose(f);
    return buf;
}

static void test_fixtures_load_and_verify(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "fixtures/onnx/%s/model.onnx", models[i]);
        fu_err err = {0};
        fu_graph *g = fu_onnx_load(path, &opts, &err);
        if (!g) fail_msg("%s: %s", path, err.msg);
        if (fu_infer(g, &err)) fail_msg("%s: verifier: %s", path, err.msg);
        assert_true(g->n_nodes > 0 && g->n_inputs > 0 && g->n_outputs > 0);
        fu_graph_free(g);
    }
}

static void test_unsupported_ops_listed(void **state) {
    (void)state;
    fu_err err = {0};
    fu_graph *g = fu_onnx_load("fixtures/onnx/unsupported/model.onnx", &opts, &err);
    assert_null(g);
    if (!strstr(err.msg, "unsupported ops:")) fail_msg("got '%s'", err.msg);
}

static void test_no_bound_names_the_dim(void **state) {
    (void)state;
    fu_err err = {0};
    fu_graph *g = fu_onnx_load("fixtures/onnx/dim_param/model.onnx", NULL, &err);
    assert_null(g);
    if (!strstr(err.msg, "'seq'")) fail_msg("got '%s'", err.msg);
}

/* Hostile files (fixtures/onnx_hostile, made by scripts/gen_onnx_fixtures.py):
 * each refused with the reason expected.txt names. */
static void test_hostile_files(void **state) {
    (void)state;
    FILE *list = fopen("fixtures/onnx_hostile/expected.txt", "r");
    assert_non_null(list);
    char line[512];
    int cases = 0;
    while (fgets(line, sizeof line, list)) {
        line[strcspn(line, "\n")] = 0;
        char *bar = strchr(line, '|');
        assert_non_null(bar);
        *bar = 0;
        char path[600];
        snprintf(path, sizeof path, "fixtures/onnx_hostile/%s.onnx", line);
        fu_err err = {0};
        fu_graph *g = fu_onnx_load(path, &opts, &err);
        if (g) fail_msg("%s: loaded", path);
        if (!strstr(err.msg, bar + 1)) fail_msg("%s: got '%s', want '%s'", path, err.msg, bar + 1);
        cases++;
    }
    fclose(list);
    assert_true(cases >= 8);
}

/* External data is mapped, not copied: the values point into the files the
 * weights table maps (but one at a misaligned offset is copied); a large inline initializer is a weight too, a small
 * one a constant of the code. */
static void test_weights_mapped_or_held(void **state) {
    (void)state;
    fu_err err = {0};
    fu_graph *g = fu_onnx_load("fixtures/onnx/external_data/model.onnx", &opts, &err);
    if (!g) fail_msg("%s", err.msg);
    assert_int_equal(fu_weights_n_files(g->weights), 2);
    int external = 0;
    for (int i = 0; i < g->n_values; i++) {
        const fu_value *v = &g->values[i];
        if (v->kind != FU_VAL_CONST) continue;
        const void *data;
        if (fu_weights_find(g->weights, v->name, NULL, NULL, NULL, &data, NULL) == 0) {
            assert_ptr_equal(data, v->data);
            assert_true(v->external && !v->owns_data);
            external++;
        }
    }
    assert_int_equal(external, 3);   /* w1, b1, w2; b2 sits at an odd offset: copied, aligned */
    const fu_value *b2 = &g->values[fu_graph_find_value(g, "b2")];
    assert_true(b2->owns_data && !b2->external);
    fu_graph_free(g);

    g = fu_onnx_load("fixtures/onnx/large_inline/model.onnx", &opts, &err);
    if (!g) fail_msg("%s", err.msg);
    const fu_value *wl = &g->values[fu_graph_find_value(g, "wl")], *ax = &g->values[fu_graph_find_value(g, "ax0")];
    const fu_value *c = &g->values[fu_graph_find_value(g, "c")];
    assert_true(wl->external && c->external && !ax->external && ax->owns_data);
    fu_weights *w = fu_onnx_weights_open("fixtures/onnx/large_inline/model.onnx", 0, &err);
    if (!w) fail_msg("%s", err.msg);
    assert_string_equal(fu_weights_identity(w), fu_weights_identity(g->weights));
    size_t nbytes;
    const void *data;
    assert_int_equal(fu_weights_find(w, "wl", NULL, NULL, NULL, &data, &nbytes), 0);
    assert_int_equal(nbytes, 64 * 64 * 4);
    assert_memory_equal(data, wl->data, nbytes);
    assert_int_not_equal(fu_weights_find(w, "ax0", NULL, NULL, NULL, NULL, NULL), 0);
    fu_weights_close(w);
    fu_graph_free(g);
}

/* Truncated and altered bytes of every fixture: a clean refusal (with a
 * message) or a graph, never a crash. */
static void test_damaged_bytes(void **state) {
    (void)state;
    int refused = 0;
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        size_t len;
        uint8_t *good = read_model(models[m], &len), *buf = malloc(len);
        for (size_t cut = 0; cut < len; cut += 1 + cut / 64) {
            fu_err err = {0};
            fu_graph *g = fu_onnx_parse(good, cut, "cut.onnx", &opts, &err);
            if (g) fu_graph_free(g);
            else refused++, assert_true(err.msg[0] != 0);
        }
        for (size_t at = 0; at < len; at += 1 + at / 512)
            for (int bit = 0; bit < 8; bit += 3) {
                memcpy(buf, good, len);
                buf[at] ^= (uint8_t)(1u << bit);
                fu_err err = {0};
                fu_graph *g = fu_onnx_parse(buf, len, "flip.onnx", &opts, &err);
                if (g) {
                    fu_infer(g, &err);
                    fu_graph_free(g);
                } else {
                    assert_true(err.msg[0] != 0);
                }
            }
        free(buf);
        free(good);
    }
    assert_true(refused > 0);   /* the short prefixes at least */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures_load_and_verify),
        cmocka_unit_test(test_unsupported_ops_listed),
        cmocka_unit_test(test_no_bound_names_the_dim),
        cmocka_unit_test(test_damaged_bytes),
        cmocka_unit_test(test_hostile_files),
        cmocka_unit_test(test_weights_mapped_or_held),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
