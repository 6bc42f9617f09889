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
#include "../ops/infer.h"

static const char *const models[] = {"constant", "dim_param", "mlp_float_data", "mlp_raw", "reducemean_attr",
                                     "reducemean_input", "reducesum_input", "squeeze_unsqueeze"};
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
        fu_err err = {{0}};
        fu_graph *g = fu_onnx_load(path, &opts, &err);
        if (!g) fail_msg("%s: %s", path, err.msg);
        if (fu_infer(g, &err)) fail_msg("%s: verifier: %s", path, err.msg);
        assert_true(g->n_nodes > 0 && g->n_inputs > 0 && g->n_outputs > 0);
        fu_graph_free(g);
    }
}

static void test_unsupported_ops_listed(void **state) {
    (void)state;
    fu_err err = {{0}};
    fu_graph *g = fu_onnx_load("fixtures/onnx/unsupported/model.onnx", &opts, &err);
    assert_null(g);
    if (!strstr(err.msg, "unsupported ops:")) fail_msg("got '%s'", err.msg);
}

static void test_no_bound_names_the_dim(void **state) {
    (void)state;
    fu_err err = {{0}};
    fu_graph *g = fu_onnx_load("fixtures/onnx/dim_param/model.onnx", NULL, &err);
    assert_null(g);
    if (!strstr(err.msg, "'seq'")) fail_msg("got '%s'", err.msg);
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
            fu_err err = {{0}};
            fu_graph *g = fu_onnx_parse(good, cut, "cut.onnx", &opts, &err);
            if (g) fu_graph_free(g);
            else refused++, assert_true(err.msg[0] != 0);
        }
        for (size_t at = 0; at < len; at += 1 + at / 512)
            for (int bit = 0; bit < 8; bit += 3) {
                memcpy(buf, good, len);
                buf[at] ^= (uint8_t)(1u << bit);
                fu_err err = {{0}};
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
