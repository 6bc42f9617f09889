/* Tests for the IR core: JSON reader/writer, safetensors, .npy, graph
 * helpers, half-precision conversions and fu_infer's structural checks.
 * The inference tests use Add, MatMul and Relu with ONNX semantics. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "testutil.h"
#include "../ir/ir.h"
#include "../ir/json_ir.h"
#include "../ir/npy.h"
#include "../ops/infer.h"
#include "../ir/weights.h"
#include "graph_builder.h"

/* ---- helpers ----------------------------------------------------------- */

/* Writes a safetensors file: header length (or `claimed_len` when >= 0),
 * header text, then the data area. Returns a malloc'd path. */
static char *write_safetensors(const char *header, const void *data, size_t nbytes,
                               long long claimed_len) {
    char *path = tu_write_temp(".safetensors", "");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t n = claimed_len >= 0 ? (uint64_t)claimed_len : strlen(header);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(n >> (8 * i));
    fwrite(len8, 1, 8, f);
    fputs(header, f);
    if (nbytes) fwrite(data, 1, nbytes, f);
    fclose(f);
    return path;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static fu_graph *parse_ok(const char *json) {
    fu_err err = {0};
    fu_graph *g = fu_ir_parse(json, "/tmp/model.json", &err);
    if (!g) fail_msg("parse failed: %s", err.msg);
    return g;
}

/* A model fu_ir_write wrote names its weights file by absolute path, so
 * reading it back takes the opt-in (ir/files.h). */
static fu_graph *parse_written(const char *json) {
    fu_err err = {0};
    fu_ir_opts o = {.allow_external_weights = 1};
    fu_graph *g = fu_ir_parse_opts(json, "/tmp/model.json", &o, &err);
    if (!g) fail_msg("parse failed: %s", err.msg);
    return g;
}

/* Parses json as a file in /tmp (so relative weights paths resolve there)
 * and expects failure with `want` in the message. */
static void expect_load_error(const char *json, const char *want) {
    char *path = tu_write_temp(".json", json);
    fu_err err = {0};
    fu_graph *g = fu_ir_load(path, &err);
    unlink(path);
    free(path);
    if (g) {
        fu_graph_free(g);
        fail_msg("expected an error containing \"%s\", but the model loaded", want);
    }
    if (!strstr(err.msg, want)) fail_msg("error \"%s\" does not contain \"%s\"", err.msg, want);
}

/* Loads (which must succeed) and expects fu_infer to fail with `want`. */
static void expect_infer_error(const char *json, const char *want) {
    fu_graph *g = parse_ok(json);
    fu_err err = {0};
    int rc = fu_infer(g, &err);
    fu_graph_free(g);
    if (rc == 0) fail_msg("expected inference error containing \"%s\"", want);
    if (!strstr(err.msg, want)) fail_msg("error \"%s\" does not contain \"%s\"", err.msg, want);
}

/* Writes g as JSON IR into a string (caller frees). */
static char *write_to_string(const fu_graph *g) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    fu_err err = {0};
    if (fu_ir_write(g, f, &err)) fail_msg("write failed: %s", err.msg);
    fclose(f);
    return buf;
}

static void assert_same_structure(const fu_graph *a, const fu_graph *b) {
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->n_syms, b->n_syms);
    for (int i = 0; i < a->n_syms; i++) {
        assert_string_equal(a->sym_names[i], b->sym_names[i]);
        assert_int_equal(a->sym_max[i], b->sym_max[i]);
    }
    assert_int_equal(a->n_inputs, b->n_inputs);
    assert_int_equal(a->n_outputs, b->n_outputs);
    assert_int_equal(a->n_nodes, b->n_nodes);
    for (int i = 0; i < a->n_inputs; i++) {
        const fu_value *x = &a->values[a->inputs[i]], *y = &b->values[b->inputs[i]];
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->dtype, y->dtype);
        assert_int_equal(x->rank, y->rank);
        for (int d = 0; d < x->rank; d++) assert_true(fu_dim_eq(x->shape[d], y->shape[d]));
    }
    for (int i = 0; i < a->n_outputs; i++)
        assert_string_equal(a->values[a->outputs[i]].name, b->values[b->outputs[i]].name);
    for (int k = 0; k < a->n_nodes; k++) {
        const fu_node *x = &a->nodes[k], *y = &b->nodes[k];
        assert_string_equal(x->name, y->name);
        assert_string_equal(x->op, y->op);
        assert_int_equal(x->n_in, y->n_in);
        assert_int_equal(x->n_out, y->n_out);
        for (int i = 0; i < x->n_in; i++) {
            if (x->in[i] < 0) assert_int_equal(y->in[i], -1);
            else assert_string_equal(a->values[x->in[i]].name, b->values[y->in[i]].name);
        }
        for (int i = 0; i < x->n_out; i++)
            assert_string_equal(a->values[x->out[i]].name, b->values[y->out[i]].name);
        assert_int_equal(x->n_attrs, y->n_attrs);
        for (int i = 0; i < x->n_attrs; i++) {
            const fu_attr *p = &x->attrs[i], *q = &y->attrs[i];
            assert_string_equal(p->name, q->name);
            assert_int_equal(p->kind, q->kind);
            assert_int_equal(p->n, q->n);
            if (p->kind == FU_ATTR_INT) assert_int_equal(p->i, q->i);
            if (p->kind == FU_ATTR_FLOAT)
                assert_true(p->f == q->f || (p->f != p->f && q->f != q->f));
            if (p->kind == FU_ATTR_INTS) assert_memory_equal(p->ints, q->ints, sizeof(int64_t) * (size_t)p->n);
            if (p->kind == FU_ATTR_FLOATS)
                for (int j = 0; j < p->n; j++)
                    assert_true(p->floats[j] == q->floats[j] ||
                                (p->floats[j] != p->floats[j] && q->floats[j] != q->floats[j]));
            if (p->kind == FU_ATTR_STRING) assert_string_equal(p->s, q->s);
            if (p->kind == FU_ATTR_TENSOR) {
                assert_int_equal(p->t_dtype, q->t_dtype);
                assert_int_equal(p->t_rank, q->t_rank);
                size_t nb = fu_dtype_size(p->t_dtype);
                for (int d = 0; d < p->t_rank; d++) nb *= (size_t)p->t_shape[d];
                assert_memory_equal(p->t_data, q->t_data, nb);
            }
        }
    }
    /* constants: same data bytes */
    for (int i = 0; i < a->n_values; i++) {
        const fu_value *x = &a->values[i];
        if (x->kind != FU_VAL_CONST) continue;
        int j = fu_graph_find_value(b, x->name);
        assert_true(j >= 0);
        const fu_value *y = &b->values[j];
        assert_int_equal(y->kind, FU_VAL_CONST);
        assert_int_equal(x->dtype, y->dtype);
        assert_int_equal(x->external, y->external);
        assert_int_equal(x->nbytes, y->nbytes);
        assert_memory_equal(x->data, y->data, x->nbytes);
    }
}

/* ---- a model using every feature of the format --------------------------- */

/* 2x2 float32 weight "w" and an int64 [2] "idx" in a safetensors file. */
static char *write_tiny_weights(void) {
    static const char header[] =
        "{\"__metadata__\": {\"format\": \"pt\"},"
        " \"w\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 16]},"
        " \"idx\": {\"dtype\": \"I64\", \"shape\": [2], \"data_offsets\": [16, 32]}}";
    unsigned char data[32];
    float w[4] = {1, 2, 3, 4};
    int64_t idx[2] = {7, -1};
    memcpy(data, w, 16);
    memcpy(data + 16, idx, 16);
    return write_safetensors(header, data, sizeof data, -1);
}

static char *full_model(const char *weights_name) {
    static char buf[8192];
    snprintf(buf, sizeof buf,
             "{\"ir_version\": 1, \"name\": \"tiny\", \"weights\": \"%s\",\n"
             " \"symbols\": {\"seq\": 65, \"batch\": 4},\n"
             " \"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [\"batch\", \"seq\", 2]}],\n"
             " \"outputs\": [{\"name\": \"y\", \"dtype\": \"float32\", \"shape\": [\"batch\", \"seq\", 2]}],\n"
             " \"initializers\": [\n"
             "   {\"name\": \"w\", \"dtype\": \"float32\", \"shape\": [2, 2]},\n"
             "   {\"name\": \"idx\", \"dtype\": \"int64\", \"shape\": [2]},\n"
             "   {\"name\": \"eps\", \"dtype\": \"float32\", \"shape\": [], \"data\": [1e-6]},\n"
             "   {\"name\": \"big\", \"dtype\": \"int64\", \"shape\": [2], \"data\": [9223372036854775807, -5]},\n"
             "   {\"name\": \"h\", \"dtype\": \"float16\", \"shape\": [3], \"data\": [1.5, \"inf\", -2]},\n"
             "   {\"name\": \"b\", \"dtype\": \"bfloat16\", \"shape\": [2], \"data\": [0.25, \"nan\"]},\n"
             "   {\"name\": \"i\", \"dtype\": \"int32\", \"shape\": [2, 1], \"data\": [-3, 2147483647]},\n"
             "   {\"name\": \"m\", \"dtype\": \"bool\", \"shape\": [3], \"data\": [true, 0, 1]}],\n"
             " \"nodes\": [\n"
             "   {\"name\": \"mm\", \"op\": \"MatMul\", \"inputs\": [\"x\", \"w\"], \"outputs\": [\"t\"],\n"
             "    \"attrs\": {\"i\": 3, \"f\": 0.5, \"ints\": [1, -2], \"floats\": [1, 2.5, \"-inf\"],\n"
             "              \"s\": \"hello \\\"q\\\"\", \"empty\": [], \"inf\": {\"float\": \"inf\"},\n"
             "              \"tensor\": {\"dtype\": \"int32\", \"shape\": [2], \"data\": [4, 5]}}},\n"
             "   {\"op\": \"Add\", \"inputs\": [\"t\", \"eps\"], \"outputs\": [\"u\"]},\n"
             "   {\"name\": \"relu\", \"op\": \"Relu\", \"inputs\": [\"u\"], \"outputs\": [\"y\"]},\n"
             "   {\"name\": \"keep\", \"op\": \"Add\", \"inputs\": [\"idx\", \"big\"], \"outputs\": [\"k\"]},\n"
             "   {\"name\": \"keep2\", \"op\": \"Add\", \"inputs\": [\"h\", \"h\"], \"outputs\": [\"hh\"]},\n"
             "   {\"name\": \"keep3\", \"op\": \"Add\", \"inputs\": [\"b\", \"b\"], \"outputs\": [\"bb\"]},\n"
             "   {\"name\": \"keep4\", \"op\": \"Add\", \"inputs\": [\"i\", \"i\"], \"outputs\": [\"ii\"]},\n"
             "   {\"name\": \"keep5\", \"op\": \"Not\", \"inputs\": [\"m\"], \"outputs\": [\"mm_out\"]}]}\n",
             weights_name);
    return buf;
}

static void test_parse_full_model(void **state) {
    (void)state;
    char *wpath = write_tiny_weights();
    fu_graph *g = parse_ok(full_model(base_name(wpath)));
    assert_string_equal(g->name, "tiny");
    assert_int_equal(g->n_syms, 2);
    assert_string_equal(g->sym_names[0], "seq");
    assert_int_equal(g->sym_max[0], 65);
    assert_int_equal(g->n_nodes, 8);
    assert_string_equal(g->nodes[1].name, "node_1");  /* generated */

    const fu_value *x = &g->values[g->inputs[0]];
    assert_int_equal(x->rank, 3);
    assert_true(fu_dim_eq(x->shape[0], fu_dim_sym(1)));
    assert_true(fu_dim_eq(x->shape[1], fu_dim_sym(0)));
    assert_true(fu_dim_eq(x->shape[2], fu_dim_const(2)));

    const fu_value *w = &g->values[fu_graph_find_value(g, "w")];
    assert_int_equal(w->external, 1);
    assert_int_equal(w->owns_data, 0);
    assert_int_equal(w->nbytes, 16);
    assert_true(fu_const_get_f(w, 3) == 4.0);
    const fu_value *idx = &g->values[fu_graph_find_value(g, "idx")];
    assert_int_equal(fu_const_get_i(idx, 1), -1);

    const fu_value *eps = &g->values[fu_graph_find_value(g, "eps")];
    assert_int_equal(eps->rank, 0);
    assert_true(fu_const_get_f(eps, 0) == (double)1e-6f);
    const fu_value *big = &g->values[fu_graph_find_value(g, "big")];
    assert_true(fu_const_get_i(big, 0) == INT64_MAX);
    assert_int_equal(fu_const_get_i(big, 1), -5);
    const fu_value *h = &g->values[fu_graph_find_value(g, "h")];
    assert_int_equal(h->nbytes, 6);
    assert_true(fu_const_get_f(h, 0) == 1.5);
    assert_true(isinf(fu_const_get_f(h, 1)));
    assert_true(fu_const_get_f(h, 2) == -2.0);
    const fu_value *b = &g->values[fu_graph_find_value(g, "b")];
    assert_true(fu_const_get_f(b, 0) == 0.25);
    assert_true(isnan(fu_const_get_f(b, 1)));
    const fu_value *i32 = &g->values[fu_graph_find_value(g, "i")];
    assert_int_equal(fu_const_get_i(i32, 0), -3);
    assert_int_equal(fu_const_get_i(i32, 1), 2147483647);
    const fu_value *m = &g->values[fu_graph_find_value(g, "m")];
    assert_int_equal(fu_const_get_i(m, 0), 1);
    assert_int_equal(fu_const_get_i(m, 1), 0);

    const fu_node *mm = &g->nodes[0];
    assert_int_equal(fu_attr_int(mm, "i", 0), 3);
    assert_true(fu_attr_float(mm, "f", 0) == 0.5);
    assert_int_equal(fu_node_attr(mm, "ints")->kind, FU_ATTR_INTS);
    assert_int_equal(fu_node_attr(mm, "ints")->ints[1], -2);
    const fu_attr *fl = fu_node_attr(mm, "floats");
    assert_int_equal(fl->kind, FU_ATTR_FLOATS);
    assert_int_equal(fl->n, 3);
    assert_true(fl->floats[1] == 2.5 && isinf(fl->floats[2]) && fl->floats[2] < 0);
    assert_string_equal(fu_attr_string(mm, "s", ""), "hello \"q\"");
    assert_int_equal(fu_node_attr(mm, "empty")->kind, FU_ATTR_INTS);
    assert_int_equal(fu_node_attr(mm, "empty")->n, 0);
    assert_int_equal(fu_node_attr(mm, "inf")->kind, FU_ATTR_FLOAT);
    assert_true(isinf(fu_node_attr(mm, "inf")->f));
    const fu_attr *t = fu_node_attr(mm, "tensor");
    assert_int_equal(t->kind, FU_ATTR_TENSOR);
    assert_int_equal(t->t_dtype, FU_I32);
    assert_int_equal(t->t_rank, 1);
    assert_int_equal(((int32_t *)t->t_data)[1], 5);

    /* the output declaration is kept for the verifier */
    const fu_value *y = &g->values[g->outputs[0]];
    assert_int_equal(y->decl_dtype, FU_F32);
    assert_int_equal(y->decl_rank, 3);
    assert_int_equal(y->rank, -1);
    assert_int_equal(y->is_output, 1);

    fu_graph_free(g);
    unlink(wpath);
    free(wpath);
}

static void test_round_trip(void **state) {
    (void)state;
    char *wpath = write_tiny_weights();
    fu_graph *g = parse_ok(full_model(base_name(wpath)));
    char *text = write_to_string(g);
    fu_graph *g2 = parse_written(text);
    assert_same_structure(g, g2);
    /* and again: the writer's output is a fixed point */
    char *text2 = write_to_string(g2);
    assert_string_equal(text, text2);
    free(text);
    free(text2);
    fu_graph_free(g2);
    fu_graph_free(g);
    unlink(wpath);
    free(wpath);
}

/* Every float32 bit pattern class survives write + parse exactly. */
static void test_float_data_round_trip(void **state) {
    (void)state;
    fu_graph *g = fu_graph_new("floats");
    g->path = strdup("/tmp/floats.json");
    int v = fu_graph_add_value(g, "c", FU_VAL_CONST);
    enum { N = 4096 };
    uint32_t bits[N];
    uint32_t seed = 12345;
    for (int i = 0; i < N; i++) {
        seed = seed * 1664525u + 1013904223u;
        bits[i] = seed;
        if ((bits[i] & 0x7f800000u) == 0x7f800000u) bits[i] &= ~0x00400000u;  /* keep inf/nan rare but present */
    }
    bits[0] = 0x7f800000u;  /* inf */
    bits[1] = 0x00000001u;  /* smallest subnormal */
    bits[2] = 0x80000000u;  /* -0 */
    g->values[v].dtype = FU_F32;
    g->values[v].rank = 1;
    g->values[v].shape[0] = fu_dim_const(N);
    assert_int_equal(fu_value_set_data(&g->values[v], bits, sizeof bits), 0);
    g->outputs = malloc(sizeof(int));
    g->outputs[0] = v;
    g->n_outputs = 1;
    char *text = write_to_string(g);
    fu_graph *g2 = parse_written(text);
    const fu_value *c = &g2->values[fu_graph_find_value(g2, "c")];
    assert_int_equal(c->nbytes, sizeof bits);
    for (int i = 0; i < N; i++) {
        uint32_t b;
        memcpy(&b, (const char *)c->data + 4 * i, 4);
        if ((bits[i] & 0x7fffffffu) > 0x7f800000u) assert_true((b & 0x7fffffffu) > 0x7f800000u);
        else assert_int_equal(b, bits[i]);
    }
    free(text);
    fu_graph_free(g2);
    fu_graph_free(g);
}

/* Every prefix of a valid model is rejected cleanly (no crash, no leak). */
static void test_truncated_models(void **state) {
    (void)state;
    char *wpath = write_tiny_weights();
    const char *full = full_model(base_name(wpath));
    size_t len = strlen(full);
    char *buf = malloc(len + 1);
    for (size_t cut = 0; cut + 2 < len; cut++) {
        memcpy(buf, full, cut);
        buf[cut] = 0;
        fu_err err = {0};
        fu_graph *g = fu_ir_parse(buf, "/tmp/model.json", &err);
        if (g) fail_msg("prefix of %zu bytes parsed", cut);
        assert_true(err.msg[0] != 0);
    }
    free(buf);
    unlink(wpath);
    free(wpath);
}

/* Corrupted safetensors headers never crash the reader. */
static void test_corrupt_safetensors(void **state) {
    (void)state;
    static const char header[] =
        "{\"w\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 16]},"
        " \"idx\": {\"dtype\": \"I64\", \"shape\": [2], \"data_offsets\": [16, 32]}}";
    unsigned char data[32] = {0};
    uint32_t seed = 7;
    for (int trial = 0; trial < 300; trial++) {
        char h[sizeof header];
        memcpy(h, header, sizeof header);
        for (int k = 0; k < 3; k++) {
            seed = seed * 1664525u + 1013904223u;
            size_t pos = (seed >> 8) % (sizeof header - 1);
            static const char pool[] = "{}[]\":,0123456789-eE \\x";
            h[pos] = pool[(seed >> 20) % (sizeof pool - 1)];
        }
        char *path = write_safetensors(h, data, sizeof data, -1);
        fu_err err = {0};
        fu_weights *w = fu_weights_open(path, &err);
        if (w) {
            fu_dtype t;
            int rank;
            int64_t shape[FU_MAX_RANK];
            const void *d;
            size_t nb;
            if (fu_weights_find(w, "w", &t, &rank, shape, &d, &nb) == 0) assert_true(nb <= sizeof data);
            fu_weights_close(w);
        } else {
            assert_non_null(strstr(err.msg, path));
        }
        unlink(path);
        free(path);
    }
}

/* Inference, then round trip: value_info holds inferred shapes. */
static void test_infer_and_write(void **state) {
    (void)state;
    char *wpath = write_tiny_weights();
    fu_graph *g = parse_ok(full_model(base_name(wpath)));
    fu_err err = {0};
    if (fu_infer(g, &err)) fail_msg("infer: %s", err.msg);
    const fu_value *y = &g->values[g->outputs[0]];
    assert_int_equal(y->rank, 3);
    assert_int_equal(y->dtype, FU_F32);
    assert_true(fu_dim_eq(y->shape[1], fu_dim_sym(0)));
    assert_int_equal(y->is_output, 1);
    for (int k = 0; k < g->n_nodes; k++) assert_non_null(g->nodes[k].def);
    /* idempotent */
    if (fu_infer(g, &err)) fail_msg("second infer: %s", err.msg);

    char *text = write_to_string(g);
    assert_non_null(strstr(text, "\"value_info\""));
    assert_non_null(strstr(text, "{\"name\": \"t\", \"dtype\": \"float32\", \"shape\": [\"batch\", \"seq\", 2]}"));
    fu_graph *g2 = parse_written(text);
    if (fu_infer(g2, &err)) fail_msg("infer after round trip: %s", err.msg);
    assert_same_structure(g, g2);
    free(text);

    /* dot output mentions ops and escapes names */
    char *dot = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&dot, &len);
    assert_int_equal(fu_ir_write_dot(g, f, &err), 0);
    fclose(f);
    assert_non_null(strstr(dot, "digraph"));
    assert_non_null(strstr(dot, "MatMul"));
    assert_non_null(strstr(dot, "float32 [batch,seq,2]"));
    free(dot);

    /* a clone shares the weights mapping and outlives the original */
    fu_graph *c = fu_graph_clone(g);
    assert_non_null(c);
    fu_graph_free(g);
    const fu_value *w = &c->values[fu_graph_find_value(c, "w")];
    assert_true(fu_const_get_f(w, 2) == 3.0);
    if (fu_infer(c, &err)) fail_msg("infer on clone: %s", err.msg);
    fu_graph_free(c);
    fu_graph_free(g2);
    unlink(wpath);
    free(wpath);
}

/* Nodes out of order in the file are sorted; a clone is independent. */
static void test_toposort_clone_compact(void **state) {
    (void)state;
    fu_graph *g = parse_ok(
        "{\"ir_version\": 1, \"symbols\": {\"n\": 8},"
        " \"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [\"n\"]}],"
        " \"outputs\": [{\"name\": \"z\"}],"
        " \"nodes\": [{\"name\": \"second\", \"op\": \"Relu\", \"inputs\": [\"y\"], \"outputs\": [\"z\"]},"
        "            {\"name\": \"first\", \"op\": \"Relu\", \"inputs\": [\"x\"], \"outputs\": [\"y\"]},"
        "            {\"name\": \"unused\", \"op\": \"Relu\", \"inputs\": [\"x\"], \"outputs\": [\"w\"]}]}");
    fu_err err = {0};
    if (fu_infer(g, &err)) fail_msg("infer: %s", err.msg);
    assert_string_equal(g->nodes[0].name, "first");
    assert_string_equal(g->nodes[1].name, "second");
    assert_int_equal(g->values[fu_graph_find_value(g, "z")].producer, 1);

    int *uses = fu_graph_use_counts(g);
    assert_int_equal(uses[fu_graph_find_value(g, "x")], 2);
    assert_int_equal(uses[fu_graph_find_value(g, "z")], 1);  /* graph output */
    assert_int_equal(uses[fu_graph_find_value(g, "w")], 0);
    free(uses);

    fu_graph *c = fu_graph_clone(g);
    assert_non_null(c);
    c->nodes[2].dead = 1;
    fu_graph_compact(c);
    assert_int_equal(c->n_nodes, 2);
    assert_int_equal(fu_graph_find_value(c, "w"), -1);
    assert_int_equal(c->values[c->outputs[0]].producer, 1);
    if (fu_infer(c, &err)) fail_msg("infer after compact: %s", err.msg);
    assert_int_equal(g->n_nodes, 3);  /* original untouched */
    fu_graph_free(c);

    char *u = fu_graph_unique_name(g, "x");
    assert_string_equal(u, "x_1");
    free(u);
    fu_node *n = &g->nodes[0];
    fu_node_set_attr_int(n, "axis", 2);
    fu_node_set_attr_int(n, "axis", 3);  /* replaces */
    int64_t perm[2] = {1, 0};
    fu_node_set_attr_ints(n, "perm", 2, perm);
    fu_node_set_attr_float(n, "alpha", 0.25);
    assert_int_equal(n->n_attrs, 3);
    assert_int_equal(fu_attr_int(n, "axis", 0), 3);
    assert_int_equal(fu_attr_int(n, "missing", 42), 42);
    assert_true(fu_attr_float(n, "alpha", 0) == 0.25);
    assert_int_equal(fu_node_attr(n, "perm")->ints[0], 1);
    fu_graph_free(g);
}

static void test_dims_and_messages(void **state) {
    (void)state;
    fu_graph *g = fu_graph_new("g");
    g->sym_names[0] = strdup("seq");
    g->sym_max[0] = 10;
    g->n_syms = 1;
    char buf[64];
    fu_dim two_seq = fu_dim_mul(fu_dim_const(2), fu_dim_sym(0));
    fu_dim_str(g, two_seq, buf, sizeof buf);
    assert_string_equal(buf, "2*seq");
    fu_dim_str(g, fu_dim_mul(fu_dim_sym(0), fu_dim_sym(0)), buf, sizeof buf);
    assert_string_equal(buf, "seq^2");
    fu_dim_str(g, fu_dim_const(64), buf, sizeof buf);
    assert_string_equal(buf, "64");
    fu_dim q;
    assert_int_equal(fu_dim_div(two_seq, fu_dim_sym(0), &q), 0);
    assert_true(fu_dim_eq(q, fu_dim_const(2)));
    assert_int_equal(fu_dim_div(fu_dim_const(3), fu_dim_const(2), &q), -1);
    assert_int_equal(fu_dim_div(fu_dim_const(3), fu_dim_sym(0), &q), -1);
    assert_int_equal(fu_dim_eval(two_seq, g->sym_max), 20);

    fu_sanitize("a*/b\"c\n", buf, sizeof buf);
    assert_string_equal(buf, "a?/b?c\\n");
    fu_sanitize("abcdef", buf, 4);
    assert_string_equal(buf, "abc");

    int in[1] = {-1}, out[1];
    out[0] = fu_graph_add_value(g, "v", FU_VAL_NODE);
    assert_int_equal(fu_graph_add_value(g, "v", FU_VAL_NODE), -1);  /* duplicate */
    int k = fu_graph_add_node(g, "bad*/name", "Op", 1, in, 1, out);
    fu_err err;
    assert_int_equal(fu_node_fail(&err, g, &g->nodes[k], "reason %d", 7), -1);
    assert_string_equal(err.msg, "model: node 'bad?/name' (Op): reason 7");
    fu_graph_free(g);
}

static void test_half_conversions(void **state) {
    (void)state;
    assert_int_equal(fu_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(fu_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(fu_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(fu_f32_to_f16(65520.0f), 0x7c00);           /* rounds to inf */
    assert_int_equal(fu_f32_to_f16(ldexpf(1, -24)), 0x0001);      /* smallest subnormal */
    assert_int_equal(fu_f32_to_f16(ldexpf(1, -25)), 0x0000);      /* tie -> even (0) */
    assert_int_equal(fu_f32_to_f16(1.0f + ldexpf(1, -11)), 0x3c00); /* tie -> even */
    assert_int_equal(fu_f32_to_f16(1.0f + 3 * ldexpf(1, -11)), 0x3c02);
    assert_int_equal(fu_f32_to_f16(INFINITY), 0x7c00);
    assert_true((fu_f32_to_f16(NAN) & 0x7fff) > 0x7c00);
    for (uint32_t h = 0; h < 0x10000; h++) {  /* every finite half round-trips */
        if ((h & 0x7c00) == 0x7c00) continue;
        assert_int_equal(fu_f32_to_f16(fu_f16_to_f32((uint16_t)h)), h);
    }
    assert_true(fu_f16_to_f32(0x0001) == ldexpf(1, -24));
    assert_int_equal(fu_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(fu_f32_to_bf16(1.0f + ldexpf(1, -8)), 0x3f80);   /* tie -> even */
    assert_int_equal(fu_f32_to_bf16(1.0f + 3 * ldexpf(1, -8)), 0x3f82);
    assert_true(isnan(fu_bf16_to_f32(fu_f32_to_bf16(NAN))));
    assert_true(fu_bf16_to_f32(0x4049) == 3.140625f);
    assert_string_equal(fu_dtype_name(FU_BF16), "bfloat16");
    assert_int_equal(fu_dtype_from_name("int32"), FU_I32);
    assert_int_equal(fu_dtype_from_name("float64"), FU_UNDEF);
    assert_int_equal(fu_dtype_size(FU_I64), 8);
}

/* ---- bad models -------------------------------------------------------- */

#define HEAD "{\"ir_version\": 1, "
#define X_IN "\"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [4]}], "
#define Y_OUT "\"outputs\": [{\"name\": \"y\"}], "

static void test_bad_json(void **state) {
    (void)state;
    expect_load_error("{\"ir_version\": 1,\n \"inputs\": [\n  {\"name\": \"x\",, }]}", "line 3");
    expect_load_error("{\"ir_version\": 1,\n \"inputs\": [", "unexpected end of data");
    expect_load_error("{\"ir_version\": 1} trailing", "text after the top-level object");
    expect_load_error("[1, 2]", "must be a JSON object");
    expect_load_error(HEAD X_IN "\"outputs\": [{\"name\": \"y\"}]}", "missing field \"nodes\"");
    expect_load_error("{\"inputs\": [], \"outputs\": [], \"nodes\": []}", "missing field \"ir_version\"");
    expect_load_error("{\"ir_version\": 2, \"inputs\": [], \"outputs\": [], \"nodes\": []}",
                      "unsupported ir_version 2");
    expect_load_error(HEAD X_IN Y_OUT "\"nodes\": [], \"nodez\": 1}", "unknown field 'nodez'");
    expect_load_error(HEAD "\"inputs\": {}, " Y_OUT "\"nodes\": []}",
                      "field \"inputs\" must be a JSON array");
    expect_load_error(HEAD "\"inputs\": [{\"name\": \"x\", \"shape\": [4]}], " Y_OUT "\"nodes\": []}",
                      "input 'x': missing field \"dtype\"");
    expect_load_error(HEAD X_IN Y_OUT "\"nodes\": [{\"name\": \"n\", \"inputs\": [\"x\"], \"outputs\": [\"y\"]}]}",
                      "missing field \"op\"");
}

/* Strict, unambiguous JSON: what json-c would let through (a second key
 * silently winning, saturated integers, NaN / Infinity, 1e400 read as inf,
 * a \u0000 cutting a name short, non-standard syntax) is an error that
 * says where. */
static void test_strict_json(void **state) {
    (void)state;
    /* duplicate keys: top level, in a node, among attributes, escaped alike */
    expect_load_error(HEAD X_IN Y_OUT "\"nodes\": [], \"nodes\": [{\"op\": \"Relu\", \"inputs\": [\"x\"], "
                      "\"outputs\": [\"y\"]}]}", "line 1, column 121: duplicate key \"nodes\"");
    expect_load_error(HEAD X_IN Y_OUT "\"nodes\": [{\"op\": \"Relu\", \"op\": \"Neg\", \"inputs\": [\"x\"], "
                      "\"outputs\": [\"y\"]}]}", "nodes[0]: duplicate key \"op\"");
    expect_load_error(HEAD X_IN Y_OUT "\"nodes\": [{\"op\": \"Relu\", \"\\u006fp\": \"Neg\", \"inputs\": [\"x\"], "
                      "\"outputs\": [\"y\"]}]}", "nodes[0]: duplicate key \"op\"");
    expect_load_error(HEAD X_IN Y_OUT "\"nodes\": [{\"op\": \"Softmax\", \"inputs\": [\"x\"], \"outputs\": [\"y\"], "
                      "\"attrs\": {\"axis\": 0, \"axis\": -1}}]}", "nodes[0].attrs: duplicate key \"axis\"");
    expect_load_error(HEAD "\"symbols\": {\"s\": 2, \"s\": 3}, " X_IN Y_OUT "\"nodes\": []}",
                      "symbols: duplicate key \"s\"");
    /* 18 keys: the sorted path of the check */
    expect_load_error(HEAD X_IN Y_OUT "\"nodes\": [{\"op\": \"Relu\", \"inputs\": [\"x\"], \"outputs\": [\"y\"], "
                      "\"attrs\": {\"a\": 1, \"b\": 1, \"c\": 1, \"d\": 1, \"e\": 1, \"f\": 1, \"g\": 1, \"h\": 1, "
                      "\"i\": 1, \"j\": 1, \"k\": 1, \"l\": 1, \"m\": 1, \"n\": 1, \"o\": 1, \"p\": 1, \"q\": 1, "
                      "\"f\": 2}}]}", "nodes[0].attrs: duplicate key \"f\"");
    /* numbers json-c would saturate or make non-finite */
    const char *init = HEAD X_IN Y_OUT "\"initializers\": [{\"name\": \"c\", \"dtype\": \"%s\", \"shape\": [1], "
                       "\"data\": [%s]}], \"nodes\": []}";
    char json[1024];
    snprintf(json, sizeof json, init, "int64", "9223372036854775808");
    expect_load_error(json, "initializers[0].data[0]: integer 9223372036854775808 is outside the int64 range");
    snprintf(json, sizeof json, init, "int64", "-9223372036854775809");
    expect_load_error(json, "integer -9223372036854775809 is outside the int64 range");
    snprintf(json, sizeof json, init, "int64", "100000000000000000000000");
    expect_load_error(json, "is outside the int64 range");
    snprintf(json, sizeof json, init, "int64", "1e23");
    expect_load_error(json, "initializer 'c': data: element 1e+23 is outside the int64 range");
    snprintf(json, sizeof json, init, "int64", "9.3e18");
    expect_load_error(json, "is outside the int64 range");
    snprintf(json, sizeof json, init, "float32", "1e400");
    expect_load_error(json, "number 1e400 is too large for a double");
    snprintf(json, sizeof json, init, "float32", "NaN");
    expect_load_error(json, "NaN and Infinity are not JSON numbers");
    snprintf(json, sizeof json, init, "float32", "-Infinity");
    expect_load_error(json, "initializers[0].data[0]: NaN and Infinity are not JSON numbers");
    expect_load_error(HEAD X_IN Y_OUT "\"nodes\": [{\"op\": \"Softmax\", \"inputs\": [\"x\"], \"outputs\": [\"y\"], "
                      "\"attrs\": {\"axis\": 1e400}}]}", "nodes[0].attrs.axis: number 1e400 is too large");
    expect_load_error(HEAD X_IN Y_OUT "\"nodes\": [{\"op\": \"Softmax\", \"inputs\": [\"x\"], \"outputs\": [\"y\"], "
                      "\"attrs\": {\"axis\": NaN}}]}", "nodes[0].attrs.axis: NaN and Infinity");
    expect_load_error(HEAD X_IN Y_OUT "\"nodes\": [{\"op\": \"Softmax\", \"inputs\": [\"x\"], \"outputs\": [\"y\"], "
                      "\"attrs\": {\"axis\": 18446744073709551615}}]}", "outside the int64 range");
    /* a NUL in a name would make "y\u0000z" the value "y" */
    expect_load_error(HEAD X_IN Y_OUT "\"nodes\": [{\"op\": \"Relu\", \"inputs\": [\"x\"], \"outputs\": [\"y\\u0000z\"]}]}",
                      "nodes[0].outputs[0]: a string holds \\u0000");
    /* not JSON: trailing comma, comment, single quotes */
    expect_load_error(HEAD X_IN Y_OUT "\"nodes\": [],}", "invalid JSON");
    expect_load_error(HEAD X_IN Y_OUT "\"nodes\": [] /* c */}", "invalid JSON");
    expect_load_error(HEAD X_IN Y_OUT "'nodes': []}", "line 1");

    /* still fine: the int64 extremes, "inf" strings, equal keys in different objects */
    snprintf(json, sizeof json, HEAD X_IN "\"outputs\": [{\"name\": \"c\"}], \"initializers\": [{\"name\": \"c\", \"dtype\": \"int64\", "
             "\"shape\": [2], \"data\": [-9223372036854775808, 9223372036854775807]}, {\"name\": \"f\", "
             "\"dtype\": \"float32\", \"shape\": [3], \"data\": [\"inf\", \"-inf\", 1e-300]}], \"nodes\": []}");
    fu_graph *g = parse_ok(json);
    const fu_value *c = &g->values[fu_graph_find_value(g, "c")];
    assert_true(((const int64_t *)c->data)[0] == INT64_MIN);
    assert_true(((const int64_t *)c->data)[1] == INT64_MAX);
    fu_graph_free(g);
}

/* The JSON-array inputs of `fusec run` follow the same rules. */
static void test_strict_json_arrays(void **state) {
    (void)state;
    fu_array a;
    fu_err err = {0};
    assert_int_equal(fu_array_from_json("[1, 9223372036854775808]", FU_I64, &a, &err), -1);
    assert_non_null(strstr(err.msg, "outside the int64 range"));
    assert_int_equal(fu_array_from_json("[NaN]", FU_F32, &a, &err), -1);
    assert_non_null(strstr(err.msg, "NaN and Infinity"));
    assert_int_equal(fu_array_from_json("[1e400]", FU_F32, &a, &err), -1);
    assert_non_null(strstr(err.msg, "too large for a double"));
    assert_int_equal(fu_array_from_json("[1e19]", FU_I64, &a, &err), -1);
    assert_non_null(strstr(err.msg, "outside the int64 range"));
    assert_int_equal(fu_array_from_json("[-9223372036854775808, 2]", FU_I64, &a, &err), 0);
    assert_true(((int64_t *)a.data)[0] == INT64_MIN);
    fu_array_free(&a);
}

static void test_bad_names_and_shapes(void **state) {
    (void)state;
    expect_load_error(HEAD "\"inputs\": [{\"name\": \"x\", \"dtype\": \"float64\", \"shape\": [4]}], "
                      Y_OUT "\"nodes\": []}", "unknown dtype 'float64'");
    expect_load_error(HEAD X_IN Y_OUT "\"nodes\": [{\"name\": \"n1\", \"op\": \"Add\", \"inputs\": "
                      "[\"x\", \"foo\"], \"outputs\": [\"y\"]}]}",
                      "node 'n1' (Add): dangling input 'foo'");
    expect_load_error(HEAD X_IN Y_OUT "\"nodes\": [{\"name\": \"n1\", \"op\": \"Relu\", \"inputs\": "
                      "[\"x\"], \"outputs\": [\"x\"]}]}", "node 'n1' (Relu): duplicate name 'x'");
    expect_load_error(HEAD X_IN Y_OUT "\"nodes\": ["
                      "{\"name\": \"a\", \"op\": \"Relu\", \"inputs\": [\"x\"], \"outputs\": [\"y\"]},"
                      "{\"name\": \"b\", \"op\": \"Relu\", \"inputs\": [\"x\"], \"outputs\": [\"y\"]}]}",
                      "node 'b' (Relu): duplicate name 'y'");
    expect_load_error(HEAD "\"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [4]},"
                      "{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [4]}], " Y_OUT "\"nodes\": []}",
                      "input 'x': duplicate name");
    expect_load_error(HEAD "\"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [\"seq\"]}], "
                      Y_OUT "\"nodes\": []}", "symbol 'seq' has no bound in \"symbols\"");
    expect_load_error(HEAD "\"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [1000000000000]}], "
                      Y_OUT "\"nodes\": []}", "dim 1000000000000 exceeds the limit");
    expect_load_error(HEAD "\"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [100000, 100000, 100000]}], "
                      Y_OUT "\"nodes\": []}", "more than 17179869184 elements");
    expect_load_error(HEAD "\"symbols\": {\"s\": 1000000}, \"inputs\": [{\"name\": \"x\", \"dtype\": "
                      "\"float32\", \"shape\": [\"s^3\"]}], " Y_OUT "\"nodes\": []}", "exceeds");
    expect_load_error(HEAD "\"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [-1]}], "
                      Y_OUT "\"nodes\": []}", "negative dim -1");
    expect_load_error(HEAD "\"symbols\": {\"seq\": 0}, " X_IN Y_OUT "\"nodes\": []}", "out of range");
    expect_load_error(HEAD X_IN "\"outputs\": [{\"name\": \"nope\"}], \"nodes\": []}",
                      "output 'nope' is not produced");
    expect_load_error(HEAD X_IN Y_OUT "\"initializers\": [{\"name\": \"c\", \"dtype\": \"float32\", "
                      "\"shape\": [3], \"data\": [1, 2]}], \"nodes\": []}",
                      "initializer 'c': data has 2 elements but the shape needs 3");
    expect_load_error(HEAD X_IN Y_OUT "\"initializers\": [{\"name\": \"c\", \"dtype\": \"int32\", "
                      "\"shape\": [1], \"data\": [1.5]}], \"nodes\": []}", "not an integer");
    expect_load_error(HEAD X_IN Y_OUT "\"initializers\": [{\"name\": \"c\", \"dtype\": \"float32\", "
                      "\"shape\": [1]}], \"nodes\": []}", "has no \"data\" and the model names no");
    expect_load_error(HEAD X_IN Y_OUT "\"nodes\": [{\"name\": \"n1\", \"op\": \"Relu\", \"inputs\": "
                      "[\"x\"], \"outputs\": [\"y\"], \"attrs\": {\"a\": null}}]}",
                      "node 'n1' (Relu): attribute 'a' has unsupported JSON type null");
}

/* x [4] -> node 'a' (op, `n_in` times x) -> y, y declared as given. */
static tb_graph *one_node(const char *op, int n_in, fu_dtype y_dtype, int y_rank, int64_t y_dim) {
    tb_graph *b = tb_new("model");
    int x = tb_input(b, "x", FU_F32, TB_DIMS(4));
    int y = tb_name(b, tb_node(b, op, "y", n_in, (const int[]){x, x, x}), "a");
    if (y_dtype == FU_UNDEF) tb_output(b, y);
    else tb_output_decl(b, y, y_dtype, y_rank, &y_dim);
    return b;
}

/* Loads the builder's model (which must succeed) and expects fu_infer to
 * fail with `want`. */
static void expect_built_infer_error(tb_graph *b, const char *want) {
    fu_graph *g = tb_load(b);
    tb_free(b);
    fu_err err = {0};
    int rc = fu_infer(g, &err);
    fu_graph_free(g);
    if (rc == 0) fail_msg("expected inference error containing \"%s\"", want);
    if (!strstr(err.msg, want)) fail_msg("error \"%s\" does not contain \"%s\"", err.msg, want);
}

static void test_bad_graphs_for_infer(void **state) {
    (void)state;
    /* nodes naming a value produced later: only a file can say that */
    expect_infer_error(HEAD X_IN Y_OUT "\"nodes\": ["
                       "{\"name\": \"a\", \"op\": \"Add\", \"inputs\": [\"x\", \"z\"], \"outputs\": [\"y\"]},"
                       "{\"name\": \"b\", \"op\": \"Relu\", \"inputs\": [\"y\"], \"outputs\": [\"z\"]}]}",
                       "cycle in graph");
    expect_built_infer_error(one_node("Foo", 1, FU_UNDEF, 0, 0), "node 'a' (Foo): unknown op 'Foo'");
    expect_built_infer_error(one_node("Add", 3, FU_UNDEF, 0, 0), "node 'a' (Add): expects 2 inputs, got 3");
    expect_built_infer_error(one_node("Relu", 1, FU_F32, 1, 5), "output 'y' declared float32 [5] but inferred float32 [4]");
    expect_built_infer_error(one_node("Relu", 1, FU_I64, -1, 0), "declared int64 but inferred float32 [4]");

    /* a pass killing a producer leaves a dangling input */
    tb_graph *b = tb_new("model");
    int t = tb_name(b, tb_op(b, "Relu", "t", tb_input(b, "x", FU_F32, TB_DIMS(4))), "a");
    tb_output(b, tb_name(b, tb_op(b, "Relu", "y", t), "b"));
    fu_graph *g = tb_load(b);
    tb_free(b);
    g->nodes[0].dead = 1;
    fu_err err = {0};
    assert_int_equal(fu_infer(g, &err), -1);
    assert_non_null(strstr(err.msg, "node 'b' (Relu): dangling input 't'"));
    fu_graph_free(g);
}

/* ---- safetensors ----------------------------------------------------------- */

static void expect_weights_error(const char *header, size_t nbytes, long long claimed,
                                 const char *want) {
    unsigned char data[64] = {0};
    char *path = write_safetensors(header, data, nbytes, claimed);
    fu_err err = {0};
    fu_weights *w = fu_weights_open(path, &err);
    unlink(path);
    if (w) {
        fu_weights_close(w);
        fail_msg("expected weights error containing \"%s\"", want);
    }
    if (!strstr(err.msg, want)) fail_msg("error \"%s\" does not contain \"%s\"", err.msg, want);
    if (!strstr(err.msg, path)) fail_msg("error \"%s\" does not name the file", err.msg);
    free(path);
}

static void test_safetensors(void **state) {
    (void)state;
    char *path = write_tiny_weights();
    fu_err err = {0};
    fu_weights *w = fu_weights_open(path, &err);
    if (!w) fail_msg("open: %s", err.msg);
    fu_dtype t;
    int rank;
    int64_t shape[FU_MAX_RANK];
    const void *data;
    size_t nbytes;
    assert_int_equal(fu_weights_find(w, "w", &t, &rank, shape, &data, &nbytes), 0);
    assert_int_equal(t, FU_F32);
    assert_int_equal(rank, 2);
    assert_int_equal(shape[1], 2);
    assert_int_equal(nbytes, 16);
    float f;
    memcpy(&f, (const char *)data + 12, 4);
    assert_true(f == 4.0f);
    assert_int_equal(fu_weights_find(w, "nope", &t, &rank, shape, &data, &nbytes), -1);
    const char *id = fu_weights_identity(w);
    assert_true(strncmp(id, path, strlen(path)) == 0);
    assert_int_equal(strlen(strrchr(id, ':') + 1), 64);  /* sha256 hex */
    assert_true(fu_weights_file_size(w) > 8);
    fu_weights_close(w);
    unlink(path);
    free(path);

    /* truncated: fewer than 8 bytes */
    char *shortp = tu_write_temp(".safetensors", "abc");
    w = fu_weights_open(shortp, &err);
    assert_null(w);
    assert_non_null(strstr(err.msg, "truncated"));
    unlink(shortp);
    free(shortp);

    const char *ok = "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}";
    expect_weights_error(ok, 8, 100000, "exceeds the file size");
    expect_weights_error(ok, 8, 1LL << 40, "not a safetensors file (header length over");
    expect_weights_error(ok, 4, -1, "past the end of the file");
    expect_weights_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", 8, -1,
                         "tensor 'a': 8 data bytes but shape and dtype need 12");
    expect_weights_error("{\"a\": {\"dtype\": \"F64\", \"shape\": [1], \"data_offsets\": [0, 8]}}", 8, -1,
                         "unsupported dtype 'F64'");
    expect_weights_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", 8, -1,
                         "end 4 < begin 8");
    expect_weights_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 8, -1,
                         "not a non-negative integer");
    expect_weights_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], "
                         "\"data_offsets\": [0, 4]}}", 8, -1, "shape too large");
    expect_weights_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                         " \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [2, 6]}}", 8, -1,
                         "overlap");
    expect_weights_error("{\"a\": {\"dtype\": \"F32\"", 8, -1, "not valid JSON");
}

/* The safetensors header: overlap is checked over every tensor, empty ones
 * included (w [0,24) holds e [4,4) and v [8,12)); names are unique. */
static void test_safetensors_strict(void **state) {
    (void)state;
    expect_weights_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [6], \"data_offsets\": [0, 24]},"
                         " \"e\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 4]},"
                         " \"v\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]}}", 24, -1,
                         "overlap");
    /* an empty tensor strictly inside another's bytes */
    expect_weights_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                         " \"e\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 4]}}", 8, -1,
                         "tensors 'w' [0, 8) and 'e' [4, 4) overlap");
    /* a tensor inside a long one, past a short one that starts between */
    expect_weights_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [8], \"data_offsets\": [0, 32]},"
                         " \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]},"
                         " \"c\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [16, 20]}}", 32, -1,
                         "overlap");
    expect_weights_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                         " \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8, -1,
                         "duplicate key \"a\"");
    expect_weights_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 18446744073709551616]}}",
                         8, -1, "a.data_offsets[1]: integer 18446744073709551616 is outside the int64 range");
    /* empty tensors at a boundary, at the same offset, or at the end are fine */
    static const char ok[] =
        "{\"e0\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [0, 0]},"
        " \"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
        " \"e1\": {\"dtype\": \"I64\", \"shape\": [0, 3], \"data_offsets\": [8, 8]},"
        " \"e2\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 8]},"
        " \"v\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]},"
        " \"e3\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [12, 12]}}";
    unsigned char data[12] = {0};
    char *path = write_safetensors(ok, data, sizeof data, -1);
    fu_err err = {0};
    fu_weights *w = fu_weights_open(path, &err);
    if (!w) fail_msg("open: %s", err.msg);
    fu_weights_close(w);
    unlink(path);
    free(path);
}

static void test_model_weights_errors(void **state) {
    (void)state;
    char *wpath = write_tiny_weights();
    char json[2048];
    const char *fmt = HEAD "\"weights\": \"%s\", " X_IN Y_OUT
                      "\"initializers\": [{\"name\": \"%s\", \"dtype\": \"%s\", \"shape\": %s}], \"nodes\": []}";
    snprintf(json, sizeof json, fmt, base_name(wpath), "missing", "float32", "[2, 2]");
    expect_load_error(json, "initializer 'missing' not found in weights file");
    snprintf(json, sizeof json, fmt, base_name(wpath), "w", "float16", "[2, 2]");
    expect_load_error(json, "initializer 'w' declared float16 but the weights file has float32");
    snprintf(json, sizeof json, fmt, base_name(wpath), "w", "float32", "[4]");
    expect_load_error(json, "initializer 'w' declared shape [4] but the weights file has [2,2]");
    snprintf(json, sizeof json, fmt, "no_such_file.safetensors", "w", "float32", "[2, 2]");
    expect_load_error(json, "cannot open weights file");
    unlink(wpath);
    free(wpath);

    /* a truncated weights file is reported through the model */
    char *bad = tu_write_temp(".safetensors", "1234");
    snprintf(json, sizeof json, fmt, base_name(bad), "w", "float32", "[2, 2]");
    expect_load_error(json, "truncated safetensors");
    unlink(bad);
    free(bad);
}

/* ---- npy and JSON arrays ----------------------------------------------------- */

static void test_npy_round_trip(void **state) {
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "/tmp/fusec_test_%d.npy", (int)getpid());
    const fu_dtype types[] = {FU_F32, FU_F16, FU_I64, FU_I32, FU_BOOL};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        fu_array a = {.dtype = types[t], .rank = 3, .shape = {2, 3, 1}};
        a.nbytes = 6 * fu_dtype_size(types[t]);
        a.data = malloc(a.nbytes);
        for (size_t i = 0; i < a.nbytes; i++) ((unsigned char *)a.data)[i] = (unsigned char)(i * 7 % 2);
        fu_err err = {0};
        if (fu_npy_write(path, &a, &err)) fail_msg("write: %s", err.msg);
        fu_array b;
        if (fu_npy_read(path, &b, &err)) fail_msg("read: %s", err.msg);
        assert_int_equal(b.dtype, a.dtype);
        assert_int_equal(b.rank, 3);
        assert_memory_equal(b.shape, a.shape, sizeof(int64_t) * 3);
        assert_int_equal(b.nbytes, a.nbytes);
        assert_memory_equal(b.data, a.data, a.nbytes);
        fu_array_free(&a);
        fu_array_free(&b);
    }
    /* scalar */
    float one = 1.0f;
    fu_array s = {.dtype = FU_F32, .rank = 0, .data = &one, .nbytes = 4};
    fu_err err = {0};
    assert_int_equal(fu_npy_write(path, &s, &err), 0);
    fu_array r;
    assert_int_equal(fu_npy_read(path, &r, &err), 0);
    assert_int_equal(r.rank, 0);
    assert_true(*(float *)r.data == 1.0f);
    fu_array_free(&r);
    /* the header is a multiple of 64 bytes, as numpy writes it */
    FILE *f = fopen(path, "rb");
    unsigned char head[10];
    assert_int_equal(fread(head, 1, 10, f), 10);
    fclose(f);
    assert_int_equal((10 + head[8] + 256 * head[9]) % 64, 0);

    fu_array bf = {.dtype = FU_BF16, .rank = 0, .data = &one, .nbytes = 2};
    assert_int_equal(fu_npy_write(path, &bf, &err), -1);
    assert_non_null(strstr(err.msg, "bfloat16 cannot be written"));
    unlink(path);
}

/* Writes an .npy file from a raw header dict and data bytes. */
static char *write_raw_npy(const char *dict, const void *data, size_t nbytes, int version) {
    char *path = tu_write_temp(".npy", "");
    FILE *f = fopen(path, "wb");
    size_t len = strlen(dict);
    fwrite("\x93NUMPY", 1, 6, f);
    unsigned char v[2] = {(unsigned char)version, 0};
    fwrite(v, 1, 2, f);
    unsigned char l[4] = {(unsigned char)len, (unsigned char)(len >> 8), 0, 0};
    fwrite(l, 1, version == 1 ? 2 : 4, f);
    fwrite(dict, 1, len, f);
    fwrite(data, 1, nbytes, f);
    fclose(f);
    return path;
}

static void expect_npy_error(const char *dict, size_t nbytes, const char *want) {
    unsigned char data[64] = {0};
    char *path = write_raw_npy(dict, data, nbytes, 1);
    fu_array a;
    fu_err err = {0};
    int rc = fu_npy_read(path, &a, &err);
    unlink(path);
    free(path);
    if (rc == 0) {
        fu_array_free(&a);
        fail_msg("expected npy error containing \"%s\"", want);
    }
    if (!strstr(err.msg, want)) fail_msg("error \"%s\" does not contain \"%s\"", err.msg, want);
}

static void test_npy_bad(void **state) {
    (void)state;
    /* version 2.0 header is accepted */
    int32_t vals[3] = {1, -2, 3};
    char *p2 = write_raw_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }\n", vals, 12, 2);
    fu_array a;
    fu_err err = {0};
    if (fu_npy_read(p2, &a, &err)) fail_msg("v2: %s", err.msg);
    assert_int_equal(((int32_t *)a.data)[1], -2);
    fu_array_free(&a);
    unlink(p2);
    free(p2);

    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }\n", 8, "truncated");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\n", 8, "trailing bytes");
    expect_npy_error("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }\n", 8, "Fortran-order");
    expect_npy_error("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }\n", 8,
                     "unsupported npy dtype '<f8'");
    expect_npy_error("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }\n", 4, "big-endian");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False}\n", 4, "no 'shape'");
    char *junk = tu_write_temp(".npy", "not numpy at all");
    assert_int_equal(fu_npy_read(junk, &a, &err), -1);
    assert_non_null(strstr(err.msg, "not an .npy file"));
    unlink(junk);
    free(junk);
    assert_int_equal(fu_npy_read("/nonexistent/x.npy", &a, &err), -1);
    assert_non_null(strstr(err.msg, "/nonexistent/x.npy"));
}

/* The .npy header is read as the Python dict it is: a 'descr' inside
 * another value cannot pose as the real one, keys come once, in any order,
 * and nothing else may follow. */
static void test_npy_header_strict(void **state) {
    (void)state;
    /* 8 bytes: two <f4, or one <i8; the spoof said <f4, the real descr <i8 */
    expect_npy_error("{'note': \"'descr': '<f4',\", 'descr': '<i8', 'fortran_order': False, 'shape': (2,), }\n", 8,
                     "unknown key 'note'");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'descr': '<i8', }\n", 8,
                     "the key 'descr' twice");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } junk\n", 8, "text after the dict");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2), }\n", 8, "is not a tuple");
    expect_npy_error("{'descr': '<f4', 'fortran_order': Falsey, 'shape': (2,), }\n", 8, "malformed");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -1), }\n", 8, "malformed");
    expect_npy_error("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }\n", 8,
                     "structured arrays");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,) \n", 8, "malformed");
    expect_npy_error("{'fortran_order': False, 'shape': (2,), }\n", 8, "no 'descr'");
    /* any key order, double quotes, no trailing comma, a scalar */
    int64_t two[2] = {5, -6};
    char *p = write_raw_npy("{\"shape\": (2,), \"fortran_order\": False, \"descr\": \"<i8\"}    \n", two, 16, 1);
    fu_array a;
    fu_err err = {0};
    if (fu_npy_read(p, &a, &err)) fail_msg("reordered header: %s", err.msg);
    assert_int_equal(a.dtype, FU_I64);
    assert_int_equal(a.rank, 1);
    assert_true(((int64_t *)a.data)[1] == -6);
    fu_array_free(&a);
    unlink(p);
    free(p);
    float one = 1;
    p = write_raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': ()}\n", &one, 4, 1);
    if (fu_npy_read(p, &a, &err)) fail_msg("scalar header: %s", err.msg);
    assert_int_equal(a.rank, 0);
    fu_array_free(&a);
    unlink(p);
    free(p);
}

static void test_array_from_json(void **state) {
    (void)state;
    fu_array a;
    fu_err err = {0};
    assert_int_equal(fu_array_from_json("[[1, 2, 3], [4, 5, 6]]", FU_F32, &a, &err), 0);
    assert_int_equal(a.rank, 2);
    assert_int_equal(a.shape[0], 2);
    assert_int_equal(a.shape[1], 3);
    assert_true(((float *)a.data)[5] == 6.0f);
    fu_array_free(&a);
    assert_int_equal(fu_array_from_json("7", FU_I64, &a, &err), 0);
    assert_int_equal(a.rank, 0);
    assert_int_equal(*(int64_t *)a.data, 7);
    fu_array_free(&a);
    assert_int_equal(fu_array_from_json("[[true, false]]", FU_BOOL, &a, &err), 0);
    assert_int_equal(((unsigned char *)a.data)[0], 1);
    fu_array_free(&a);
    assert_int_equal(fu_array_from_json("[0.5, \"-inf\"]", FU_F16, &a, &err), 0);
    assert_int_equal(((uint16_t *)a.data)[1], 0xfc00);
    fu_array_free(&a);

    assert_int_equal(fu_array_from_json("[[1, 2], [3]]", FU_F32, &a, &err), -1);
    assert_non_null(strstr(err.msg, "not rectangular"));
    assert_int_equal(fu_array_from_json("[[1, 2], 3]", FU_F32, &a, &err), -1);
    assert_non_null(strstr(err.msg, "not rectangular"));
    assert_int_equal(fu_array_from_json("[1, [2]]", FU_F32, &a, &err), -1);
    assert_non_null(strstr(err.msg, "not rectangular"));
    assert_int_equal(fu_array_from_json("[1, 2", FU_F32, &a, &err), -1);
    assert_non_null(strstr(err.msg, "invalid JSON"));
    assert_int_equal(fu_array_from_json("[\"x\"]", FU_F32, &a, &err), -1);
    assert_non_null(strstr(err.msg, "not a number"));
    assert_int_equal(fu_array_from_json("[3000000000]", FU_I32, &a, &err), -1);
    assert_non_null(strstr(err.msg, "does not fit int32"));
    /* A ragged list whose first elements claim 1000^3 elements must fail on
     * its structure before anything that large is allocated. */
    {
        /* build explicitly: inner = [1 x1000]; mid = [inner, 0 x999]; top = [mid, 0 x999] */
        char *inner = malloc(4000), *mid = malloc(8000), *top = malloc(12000);
        size_t n = (size_t)sprintf(inner, "[1");
        for (int i = 1; i < 1000; i++) n += (size_t)sprintf(inner + n, ",1");
        sprintf(inner + n, "]");
        n = (size_t)sprintf(mid, "[%s", inner);
        for (int i = 1; i < 1000; i++) n += (size_t)sprintf(mid + n, ",0");
        sprintf(mid + n, "]");
        n = (size_t)sprintf(top, "[%s", mid);
        for (int i = 1; i < 1000; i++) n += (size_t)sprintf(top + n, ",0");
        sprintf(top + n, "]");
        assert_int_equal(fu_array_from_json(top, FU_F32, &a, &err), -1);
        assert_non_null(strstr(err.msg, "not rectangular"));
        free(inner);
        free(mid);
        free(top);
    }
}

/* The complete example in docs/ir.md (its first json block) must parse
 * and verify, so the documentation cannot drift from the reader. */
static void test_doc_example(void **state) {
    (void)state;
    FILE *f = fopen("docs/ir.md", "r");
    if (!f) fail_msg("docs/ir.md not found (run tests from the repository root)");
    static char doc[65536];
    size_t n = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    doc[n] = 0;
    char *start = strstr(doc, "```json\n");
    assert_non_null(start);
    start += 8;
    char *end = strstr(start, "```");
    assert_non_null(end);
    *end = 0;
    fu_err err = {0};
    fu_graph *g = fu_ir_parse(start, "docs/ir.md", &err);
    if (!g) fail_msg("doc example: %s", err.msg);
    if (fu_infer(g, &err)) fail_msg("doc example: %s", err.msg);
    assert_int_equal(g->n_nodes, 5);
    fu_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_full_model),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_float_data_round_trip),
        cmocka_unit_test(test_truncated_models),
        cmocka_unit_test(test_corrupt_safetensors),
        cmocka_unit_test(test_infer_and_write),
        cmocka_unit_test(test_toposort_clone_compact),
        cmocka_unit_test(test_dims_and_messages),
        cmocka_unit_test(test_half_conversions),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_strict_json),
        cmocka_unit_test(test_strict_json_arrays),
        cmocka_unit_test(test_bad_names_and_shapes),
        cmocka_unit_test(test_bad_graphs_for_infer),
        cmocka_unit_test(test_safetensors),
        cmocka_unit_test(test_safetensors_strict),
        cmocka_unit_test(test_model_weights_errors),
        cmocka_unit_test(test_npy_round_trip),
        cmocka_unit_test(test_npy_bad),
        cmocka_unit_test(test_npy_header_strict),
        cmocka_unit_test(test_array_from_json),
        cmocka_unit_test(test_doc_example),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
