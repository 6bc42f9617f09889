/* The ONNX writer (ir/onnx_write.c) under the sanitizers (this binary also
 * runs under ASan + UBSan): qwen3_small, composed and fused, is written and
 * read back by the ONNX reader with the same nodes, ops and constants; a
 * failed write leaves nothing behind. Numerics under ONNX Runtime and the
 * round trip of every fixture: tests/cli/test_onnx_export.sh. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include "../compiler/driver.h"
#include "../ir/ir.h"
#include "../ir/onnx_read.h"
#include "../ir/onnx_write.h"
#include "../ops/infer.h"

static const char *const model = "fixtures/qwen3_small/model.json";

static fu_graph *load_after(const char *path, const char *after) {
    fu_compile_opts o = {.target = FU_TARGET_GRAPH, .profile = FU_PROFILE_FAST, .stop_after = after};
    fu_compile_result r;
    fu_err err = {0};
    if (fu_compile(path, &o, &r, &err)) fail_msg("%s", err.msg);
    return r.graph;
}

static int live_nodes(const fu_graph *g, const char *op) {
    int n = 0;
    for (int k = 0; k < g->n_nodes; k++)
        if (!g->nodes[k].dead && (!op || strcmp(g->nodes[k].op, op) == 0)) n++;
    return n;
}

static char *temp_dir(void) {
    char *d = strdup("/tmp/fusec_onnx_write_XXXXXX");
    if (!mkdtemp(d)) fail_msg("mkdtemp");
    return d;
}

static int entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    closedir(d);
    rmdir(dir);
}

/* Writes the graph after `after`, reads it back, checks ops and constants. */
static void round_trip(const char *after) {
    fu_graph *g = load_after(model, after);
    char *dir = temp_dir(), path[512];
    snprintf(path, sizeof path, "%s/m.onnx", dir);
    fu_err err = {0};
    fu_onnx_write_info info;
    if (fu_onnx_write(g, path, &info, &err)) fail_msg("%s", err.msg);
    assert_true(info.data_created);
    assert_false(info.data_copied);
    assert_string_equal(info.data_location, "m.safetensors");
    fu_graph *h = fu_onnx_load(path, NULL, &err);
    if (!h) fail_msg("%s", err.msg);
    if (fu_infer(h, &err)) fail_msg("%s", err.msg);
    /* the weights are mapped from m.safetensors (a link to the source), not copied */
    assert_non_null(h->weights);
    int w = fu_graph_find_value(h, "model.embed_tokens.weight");
    assert_true(w >= 0 && h->values[w].external && !h->values[w].owns_data);
    assert_int_equal(h->n_syms, g->n_syms);
    assert_int_equal(h->sym_max[0], g->sym_max[0]);
    static const char *const ops[] = {"MatMul", "Add", "Mul", "SwiGLU", "FusedMatMul", "Attention",
                                      "RMSNormalization", "RotaryEmbedding", "Gather", "Softmax"};
    int composed_ops = strcmp(after, "infer") == 0;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        /* fused: rope and attention gain Reshape/Shape helpers, the rest is 1:1 */
        if (!composed_ops && strcmp(ops[i], "Add") == 0) continue;
        assert_int_equal(live_nodes(h, ops[i]), live_nodes(g, ops[i]));
    }
    if (composed_ops) assert_int_equal(live_nodes(h, NULL), live_nodes(g, NULL));
    else assert_true(live_nodes(g, "SwiGLU") == 2 && live_nodes(g, "Attention") == 2);
    /* every constant of g that h uses has the same bytes */
    int checked = 0;
    for (int i = 0; i < h->n_values; i++) {
        const fu_value *b = &h->values[i];
        int j = fu_graph_find_value(g, b->name);
        if (b->kind != FU_VAL_CONST || j < 0) continue;
        const fu_value *a = &g->values[j];
        assert_int_equal(a->nbytes, b->nbytes);
        assert_true(a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0);
        checked++;
    }
    assert_true(checked >= 20);
    fu_graph_free(h);
    fu_graph_free(g);
    remove_dir(dir);
    free(dir);
}

static void test_composed(void **state) {
    (void)state;
    round_trip("infer");
}

static void test_fused(void **state) {
    (void)state;
    round_trip("fuse");
}

static void test_failed_write_leaves_nothing(void **state) {
    (void)state;
    fu_graph *g = load_after(model, "fuse");
    char *dir = temp_dir(), path[512], block[512];
    /* OUT.safetensors cannot be made: a folder holds its name */
    snprintf(block, sizeof block, "%s/m.safetensors", dir);
    assert_int_equal(mkdir(block, 0700), 0);
    snprintf(path, sizeof path, "%s/m.onnx", dir);
    fu_err err = {0};
    assert_int_equal(fu_onnx_write(g, path, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "m.safetensors"));
    assert_int_equal(entries(dir), 1);
    rmdir(block);
    /* a folder that does not exist */
    snprintf(path, sizeof path, "%s/no/m.onnx", dir);
    assert_int_equal(fu_onnx_write(g, path, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "cannot create"));
    assert_int_equal(entries(dir), 0);
    fu_graph_free(g);
    remove_dir(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_composed),
        cmocka_unit_test(test_fused),
        cmocka_unit_test(test_failed_write_leaves_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
