/* The two back ends and the public API: JIT and AOT agree with hand-computed
 * values, repeated runs are bit-identical, the AOT cache hits, a failed gcc
 * build leaves nothing behind, input checks report clear errors, and two
 * models run concurrently in two threads. */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <cmocka.h>
#include "testutil.h"

#include "../compiler/backend.h"
#include "../compiler/emit.h"
#include "../ir/json_ir.h"
#include "../compiler/driver.h"
#include "../passes/passes.h"
#include "../api/fusec.h"
#include "graph_builder.h"

/* y = Relu(x + b) @ W, x [2,3], b [3], W [3,2]; W in the safetensors file
 * `weights` (tb_external) when given. */
static tb_graph *small_model_with(const char *weights) {
    tb_graph *b = tb_new(weights ? "external" : "small");
    int x = tb_input(b, "x", FU_F32, TB_DIMS(2, 3));
    int bias = tb_const_f32(b, "b", TB_DIMS(3), (const float[]){0.5f, -1, 0.25f});
    int w;
    if (weights) {
        tb_weights_file(b, weights);
        w = tb_external(b, "W", FU_F32, TB_DIMS(3, 2));
    } else {
        w = tb_const_f32(b, "W", TB_DIMS(3, 2), (const float[]){1, 2, 3, 4, 5, 6});
    }
    int s = tb_name(b, tb_op(b, "Add", "s", x, bias), "add");
    int r = tb_name(b, tb_op(b, "Relu", "r", s), "relu");
    tb_output_decl(b, tb_name(b, tb_op(b, "MatMul", "y", r, w), "mm"), FU_F32, TB_DIMS(2, 2));
    return b;
}

static tb_graph *small_model(void) {
    return small_model_with(NULL);
}

/* z = x * 3 - 1, a second model for the thread test. */
static tb_graph *affine_model(void) {
    tb_graph *b = tb_new("affine");
    int x = tb_input(b, "x", FU_F32, TB_DIMS(5));
    int t = tb_name(b, tb_op(b, "Mul", "t", x, tb_scalar_f32(b, "three", 3)), "mul");
    tb_output_decl(b, tb_name(b, tb_op(b, "Sub", "z", t, tb_scalar_f32(b, "one", 1)), "sub"), FU_F32, TB_DIMS(5));
    return b;
}

static const float small_x[6] = {1, 2, 3, -4, 0.5, 1};
static const int64_t small_x_shape[2] = {2, 3};

/* Reference: Relu(x + b) @ W in double. */
static void small_expected(float *y) {
    static const float b[3] = {0.5f, -1, 0.25f}, W[6] = {1, 2, 3, 4, 5, 6};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            double acc = 0;
            for (int k = 0; k < 3; k++) {
                double r = small_x[i * 3 + k] + b[k];
                acc += (r > 0 ? r : 0) * W[k * 2 + j];
            }
            y[i * 2 + j] = (float)acc;
        }
}

static char temp_dir[64];

static int make_temp_dir(void **state) {
    (void)state;
    snprintf(temp_dir, sizeof temp_dir, "/tmp/fusec_backends_XXXXXX");
    return mkdtemp(temp_dir) ? 0 : -1;
}

/* Removes the files of a directory (one level of subdirectories). */
static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0) remove_tree(path);
    }
    closedir(d);
    rmdir(dir);
}

static int remove_temp_dir(void **state) {
    (void)state;
    remove_tree(temp_dir);
    return 0;
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

/* Writes the model as temp_dir/name (freeing the builder); returns the path. */
static char *write_model(const char *name, tb_graph *b) {
    char *path = malloc(512);
    snprintf(path, 512, "%s/%s", temp_dir, name);
    tb_save_to(b, path);
    tb_free(b);
    return path;
}

/* Loads, runs once and copies output y (4 floats). */
static void run_small(fusec_model *m, float *y) {
    assert_int_equal(fusec_set_input(m, "x", FUSEC_FLOAT32, 2, small_x_shape, small_x), 0);
    assert_int_equal(fusec_run(m), 0);
    fusec_dtype t;
    int rank;
    int64_t shape[8];
    const void *data;
    assert_int_equal(fusec_get_output(m, "y", &t, &rank, shape, &data), 0);
    assert_int_equal(t, FUSEC_FLOAT32);
    assert_int_equal(rank, 2);
    assert_int_equal(shape[0], 2);
    assert_int_equal(shape[1], 2);
    memcpy(y, data, 4 * sizeof(float));
}

static void test_jit_matches_reference(void **state) {
    (void)state;
    char *path = write_model("small_jit.json", small_model());
    char err[1024];
    fusec_model *m = fusec_load(path, NULL, err, sizeof err);
    if (!m) fail_msg("load failed: %s", err);
    assert_int_equal(fusec_num_inputs(m), 1);
    assert_int_equal(fusec_num_outputs(m), 1);
    assert_string_equal(fusec_input_name(m, 0), "x");
    assert_string_equal(fusec_output_name(m, 0), "y");
    assert_int_equal(fusec_input_dtype(m, 0), FUSEC_FLOAT32);

    float want[4], first[4], again[4];
    small_expected(want);
    run_small(m, first);
    assert_true(tu_max_abs_diff(first, want, 4) <= 1e-6);
    for (int r = 0; r < 5; r++) {
        run_small(m, again);
        assert_memory_equal(first, again, sizeof first);
    }
    fusec_free(m);
    free(path);
}

static void test_aot_matches_jit(void **state) {
    (void)state;
    char *path = write_model("small_aot.json", small_model());
    char cache[256], err[1024];
    snprintf(cache, sizeof cache, "%s/cache", temp_dir);
    fusec_options aot = {.profile = "fast", .backend = "aot", .cache_dir = cache};
    fusec_model *m_aot = fusec_load(path, &aot, err, sizeof err);
    if (!m_aot) fail_msg("aot load failed: %s", err);
    fusec_model *m_jit = fusec_load(path, NULL, err, sizeof err);
    if (!m_jit) fail_msg("jit load failed: %s", err);
    float y_aot[4], y_jit[4], y_again[4], want[4];
    small_expected(want);
    run_small(m_aot, y_aot);
    run_small(m_jit, y_jit);
    assert_true(tu_max_abs_diff(y_aot, want, 4) <= 1e-6);
    assert_true(tu_max_abs_diff(y_aot, y_jit, 4) <= 1e-6);
    run_small(m_aot, y_again);
    assert_memory_equal(y_aot, y_again, sizeof y_aot);
    fusec_free(m_aot);
    fusec_free(m_jit);
    free(path);
}

/* Emits the C of a model file through the normal pipeline. */
static char *emit_model_c(const char *path) {
    fu_err err = {0};
    fu_graph *g = fu_ir_load(path, &err);
    if (!g) fail_msg("%s", err.msg);
    fu_pass_opts opts = {.profile = FU_PROFILE_FAST, .verbose = 0, .fusion_log = NULL, .evaluate = fu_evaluate_graph};
    if (fu_run_pipeline(g, &opts, NULL, &err)) fail_msg("%s", err.msg);
    fu_sb c = {0};
    if (fu_emit_graph(g, &c, &err)) fail_msg("%s", err.msg);
    fu_graph_free(g);
    return c.s;
}

static void test_aot_cache_hit(void **state) {
    (void)state;
    char *path = write_model("small_cache.json", small_model());
    char *c = emit_model_c(path);
    char cache[256];
    snprintf(cache, sizeof cache, "%s/cache2/nested", temp_dir);
    fu_err err = {0};
    char *so1 = NULL, *so2 = NULL, *so3 = NULL;
    int exists = -1;
    const char *key[2] = {"model hash", "fast"};
    assert_int_equal(fu_aot_cache_path(cache, key, 2, &so1, &exists, &err), 0);
    assert_int_equal(exists, 0);
    assert_int_equal(fu_aot_cache_build(c, so1, &err), 0);
    assert_int_equal(fu_aot_cache_path(cache, key, 2, &so2, &exists, &err), 0);
    assert_int_equal(exists, 1);
    assert_string_equal(so1, so2);
    assert_int_equal(count_entries(cache), 2);   /* the library and its sha256 */
    /* Another key part, another library; parts cannot run together. */
    const char *other[2] = {"model hashf", "ast"};
    assert_int_equal(fu_aot_cache_path(cache, other, 2, &so3, &exists, &err), 0);
    assert_int_equal(exists, 0);
    assert_string_not_equal(so1, so3);
    free(so3);

    /* The cached library runs like the JIT. */
    fu_compiled code;
    char why[256];
    if (fu_aot_cache_load(so1, &code, why, sizeof why, &err) != 0) fail_msg("%s%s", why, err.msg);
    assert_non_null(code.run);
    assert_true(code.meta_len > 0);
    assert_non_null(strstr((const char *)code.meta, "\"fusec_meta\""));
    fu_compiled_free(&code);
    free(so1);
    free(so2);
    free(c);
    free(path);
}

static void test_failed_build_leaves_nothing(void **state) {
    (void)state;
    char dir[256], so[300], header[300];
    snprintf(dir, sizeof dir, "%s/failed", temp_dir);
    assert_int_equal(mkdir(dir, 0777), 0);
    snprintf(so, sizeof so, "%s/libbad.so", dir);
    snprintf(header, sizeof header, "%s/bad.h", dir);
    fu_err err = {0};
    assert_int_equal(fu_aot_build("int fusec_model_run( { not C", so, header, &err), -1);
    assert_non_null(strstr(err.msg, "gcc failed"));
    assert_int_equal(count_entries(dir), 0);
    assert_int_not_equal(access(so, F_OK), 0);

    /* JIT errors are collected, never printed. */
    fu_compiled code;
    assert_int_equal(fu_jit_compile("int f( { not C", &code, &err), -1);
    assert_non_null(strstr(err.msg, "tcc"));
    assert_int_equal(fu_jit_compile("int g(void) { return 0; }", &code, &err), -1);
    assert_non_null(strstr(err.msg, "fusec_model_run"));
}

/* Every function declared in runtime/fusec_kernels.h links in the JIT:
 * the JIT links nothing but its explicit symbol list, so a kernel added to
 * the header but not to compiler/jit.c fails here. The header is taken as
 * generated code gets it (embedded, after runtime/numerics.h, which only
 * holds static inline functions and macros). */
extern const char fu_kernels_header[];
static void test_jit_links_every_kernel(void **state) {
    (void)state;
    long n = (long)strlen(fu_kernels_header);
    char *header = strdup(fu_kernels_header);
    assert_non_null(header);

    size_t cap = (size_t)n + 8192;
    char *src = malloc(cap);
    size_t len = (size_t)snprintf(src, cap, "%s\nvoid *const fusec_probe[] = {\n", header);
    int found = 0;
    /* Declarations start a line with a type and are not static inline. */
    for (char *line = header; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, "static", 6) == 0 || !(*line >= 'a' && *line <= 'z')) continue;
        char *paren = strchr(line, '(');
        char *eol = strchr(line, '\n');
        char *equals = strchr(line, '=');
        if (!paren || (eol && paren > eol) || (equals && equals < paren)) continue;
        char *end = paren;
        while (end > line && end[-1] == ' ') end--;
        char *start = end;
        while (start > line && (start[-1] == '_' || (start[-1] >= 'a' && start[-1] <= 'z') ||
                                (start[-1] >= '0' && start[-1] <= '9')))
            start--;
        if (start == end) continue;
        len += (size_t)snprintf(src + len, cap - len, "    (void *)%.*s,\n", (int)(end - start), start);
        found++;
    }
    snprintf(src + len, cap - len,
             "};\nconst unsigned char fusec_model_meta[] = \"{}\";\n"
             "const unsigned long fusec_model_meta_len = 2;\n"
             "int fusec_model_run(const int64_t *s, const void *const *i, const void *const *w, void *a,"
             " void **o) { (void)s; (void)i; (void)w; (void)a; (void)o; return fusec_probe[0] == 0; }\n");
    assert_true(found >= 20);
    fu_compiled code;
    fu_err err = {0};
    if (fu_jit_compile(src, &code, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(code.run(NULL, NULL, NULL, NULL, NULL), 0);
    fu_compiled_free(&code);
    free(src);
    free(header);
}

static void test_build_writes_header(void **state) {
    (void)state;
    char *path = write_model("small_lib.json", small_model());
    char *c = emit_model_c(path);
    char so[300], header[300], err_text[1024];
    snprintf(so, sizeof so, "%s/libsmall.so", temp_dir);
    snprintf(header, sizeof header, "%s/small.h", temp_dir);
    fu_err err = {0};
    assert_int_equal(fu_aot_build(c, so, header, &err), 0);
    assert_int_equal(access(header, R_OK), 0);
    /* The library loads through the public API like a JSON model. */
    fusec_model *m = fusec_load(so, NULL, err_text, sizeof err_text);
    if (!m) fail_msg("%s", err_text);
    float y[4], want[4];
    small_expected(want);
    run_small(m, y);
    assert_true(tu_max_abs_diff(y, want, 4) <= 1e-6);
    fusec_free(m);
    free(c);
    free(path);
}

static void test_input_errors(void **state) {
    (void)state;
    char *path = write_model("small_err.json", small_model());
    char err[1024];
    fusec_model *m = fusec_load(path, NULL, err, sizeof err);
    if (!m) fail_msg("%s", err);
    int64_t bad_shape[2] = {2, 4};
    assert_int_equal(fusec_set_input(m, "nope", FUSEC_FLOAT32, 2, small_x_shape, small_x), -1);
    assert_non_null(strstr(fusec_last_error(m), "no input named 'nope'"));
    assert_int_equal(fusec_set_input(m, "x", FUSEC_INT64, 2, small_x_shape, small_x), -1);
    assert_non_null(strstr(fusec_last_error(m), "dtype"));
    assert_int_equal(fusec_set_input(m, "x", FUSEC_FLOAT32, 1, small_x_shape, small_x), -1);
    assert_non_null(strstr(fusec_last_error(m), "rank"));
    assert_int_equal(fusec_set_input(m, "x", FUSEC_FLOAT32, 2, bad_shape, small_x), -1);
    assert_non_null(strstr(fusec_last_error(m), "dim 1 = 4"));
    /* Nothing bound: run refuses, outputs are unavailable. */
    assert_int_equal(fusec_run(m), -1);
    assert_non_null(strstr(fusec_last_error(m), "'x' is not set"));
    assert_int_equal(fusec_get_output(m, "y", NULL, NULL, NULL, NULL), -1);
    fusec_free(m);

    /* Load errors name the file. */
    assert_null(fusec_load("/nonexistent/model.json", NULL, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/model.json"));
    fusec_options bad_profile = {.profile = "turbo", .backend = NULL, .cache_dir = NULL};
    assert_null(fusec_load(path, &bad_profile, err, sizeof err));
    assert_non_null(strstr(err, "turbo"));
    assert_null(fusec_load("/nonexistent/libx.so", NULL, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/libx.so"));
    free(path);
}

/* y = a + b with a symbolic first dim. */
static tb_graph *symbolic_model(void) {
    tb_graph *b = tb_new("symbolic");
    int64_t seq = tb_symbol(b, "seq", 8);
    int a = tb_input(b, "a", FU_F32, TB_DIMS(seq, 2)), c = tb_input(b, "b", FU_F32, TB_DIMS(seq, 2));
    tb_output_decl(b, tb_name(b, tb_op(b, "Add", "y", a, c), "add"), FU_F32, TB_DIMS(seq, 2));
    return b;
}

static void test_symbolic_shapes(void **state) {
    (void)state;
    char *path = write_model("symbolic.json", symbolic_model());
    char err[1024];
    fusec_model *m = fusec_load(path, NULL, err, sizeof err);
    if (!m) fail_msg("%s", err);
    float a[18], b[18];
    for (int i = 0; i < 18; i++) a[i] = (float)i, b[i] = (float)(100 * i);
    int64_t too_long[2] = {9, 2}, zero[2] = {0, 2}, s3[2] = {3, 2}, s4[2] = {4, 2}, s5[2] = {5, 2};
    assert_int_equal(fusec_set_input(m, "a", FUSEC_FLOAT32, 2, too_long, a), -1);
    assert_string_equal(fusec_last_error(m), "input 'a' dim 0 = 9 exceeds the bound 8 of symbol 'seq'");
    assert_int_equal(fusec_set_input(m, "a", FUSEC_FLOAT32, 2, zero, a), -1);
    assert_non_null(strstr(fusec_last_error(m), "at least 1"));

    /* Inputs disagreeing on seq: each binding is fine, the run is not. */
    assert_int_equal(fusec_set_input(m, "a", FUSEC_FLOAT32, 2, s3, a), 0);
    assert_int_equal(fusec_set_input(m, "b", FUSEC_FLOAT32, 2, s4, b), 0);
    assert_int_equal(fusec_run(m), -1);
    assert_non_null(strstr(fusec_last_error(m), "symbol 'seq'"));

    /* Rebinding both, one at a time, works. */
    assert_int_equal(fusec_set_input(m, "a", FUSEC_FLOAT32, 2, s5, a), 0);
    assert_int_equal(fusec_set_input(m, "b", FUSEC_FLOAT32, 2, s5, b), 0);
    assert_int_equal(fusec_run(m), 0);
    fusec_dtype t;
    int rank;
    int64_t shape[8];
    const void *data;
    assert_int_equal(fusec_get_output(m, "y", &t, &rank, shape, &data), 0);
    assert_int_equal(rank, 2);
    assert_int_equal(shape[0], 5);
    assert_int_equal(shape[1], 2);
    const float *y = data;
    for (int i = 0; i < 10; i++) assert_true(y[i] == a[i] + b[i]);
    fusec_free(m);
    free(path);
}

/* The small model with W in a safetensors file, stored at an offset that is
 * not a multiple of 4 (after a 2-byte tensor): the API must realign it. */
static void write_safetensors(const char *path) {
    char header[128];
    int n = snprintf(header, sizeof header,
                     "{\"pad\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]},"
                     "\"W\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[2,26]}}");
    while (n % 8) header[n++] = ' ';   /* data area starts 8-aligned */
    uint64_t header_len = (uint64_t)n;
    static const float W[6] = {1, 2, 3, 4, 5, 6};
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(&header_len, 8, 1, f);
    fwrite(header, 1, (size_t)n, f);
    fwrite("\0\0", 1, 2, f);
    fwrite(W, sizeof W, 1, f);
    fclose(f);
}

static void test_external_weights(void **state) {
    (void)state;
    char wpath[300], so[300], err[1024];
    snprintf(wpath, sizeof wpath, "%s/w.safetensors", temp_dir);
    write_safetensors(wpath);
    char *path = write_model("external.json", small_model_with("w.safetensors"));
    fusec_model *m = fusec_load(path, NULL, err, sizeof err);
    if (!m) fail_msg("%s", err);
    float y[4], want[4];
    small_expected(want);
    run_small(m, y);
    assert_true(tu_max_abs_diff(y, want, 4) <= 1e-6);
    fusec_free(m);

    /* A compiled library maps the same file at load time... */
    char *c = emit_model_c(path);
    snprintf(so, sizeof so, "%s/libexternal.so", temp_dir);
    fu_err e = {0};
    assert_int_equal(fu_aot_build(c, so, NULL, &e), 0);
    m = fusec_load(so, NULL, err, sizeof err);
    if (!m) fail_msg("%s", err);
    run_small(m, y);
    assert_true(tu_max_abs_diff(y, want, 4) <= 1e-6);
    fusec_free(m);

    /* A touched file is the same weights: it still binds. */
    struct timespec times[2] = {{1000000, 0}, {1000000, 0}};
    assert_int_equal(utimensat(AT_FDCWD, wpath, times, 0), 0);
    m = fusec_load(so, NULL, err, sizeof err);
    if (!m) fail_msg("touched weights: %s", err);
    fusec_free(m);

    /* Moved with its weights into another folder, the library finds them
     * beside it (the original is gone). */
    char moved_dir[300], moved_so[400], moved_w[400];
    snprintf(moved_dir, sizeof moved_dir, "%s/shipped", temp_dir);
    assert_int_equal(mkdir(moved_dir, 0755), 0);
    snprintf(moved_so, sizeof moved_so, "%s/libexternal.so", moved_dir);
    snprintf(moved_w, sizeof moved_w, "%s/w.safetensors", moved_dir);
    assert_int_equal(rename(so, moved_so), 0);
    assert_int_equal(rename(wpath, moved_w), 0);
    m = fusec_load(moved_so, NULL, err, sizeof err);
    if (!m) fail_msg("moved: %s", err);
    run_small(m, y);
    assert_true(tu_max_abs_diff(y, want, 4) <= 1e-6);
    fusec_free(m);

    /* Other weights (another header) are refused, never misread. */
    FILE *f = fopen(moved_w, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, 8 + 20, SEEK_SET), 0);   /* inside the header: "BF16" -> "BF17" */
    char byte;
    assert_int_equal(fread(&byte, 1, 1, f), 1);
    fclose(f);
    write_safetensors(moved_w);
    f = fopen(moved_w, "r+b");
    assert_non_null(f);
    fseek(f, 8, SEEK_SET);
    fputc('{', f);
    fseek(f, 8 + 2, SEEK_SET);
    fputc('q', f);   /* "pad" -> "pqd": same size, another header */
    fclose(f);
    assert_null(fusec_load(moved_so, NULL, err, sizeof err));
    if (!strstr(err, "holds other weights than the model was compiled with")) fail_msg("got: %s", err);
    /* fusec_options.weights names the right file wherever it is. */
    snprintf(wpath, sizeof wpath, "%s/elsewhere.safetensors", temp_dir);
    write_safetensors(wpath);
    fusec_options o = {.weights = wpath};
    m = fusec_load(moved_so, &o, err, sizeof err);
    if (!m) fail_msg("fusec_options.weights: %s", err);
    run_small(m, y);
    assert_true(tu_max_abs_diff(y, want, 4) <= 1e-6);
    fusec_free(m);
    free(c);
    free(path);
}

/* ---- two models, two threads ---------------------------------------------- */

typedef struct {
    fusec_model *m;
    int is_small;
    int failures;
} thread_job;

static void *run_many(void *arg) {
    thread_job *job = arg;
    for (int r = 0; r < 200; r++) {
        const void *data;
        fusec_dtype t;
        int rank;
        int64_t shape[8];
        if (job->is_small) {
            float want[4];
            small_expected(want);
            if (fusec_set_input(job->m, "x", FUSEC_FLOAT32, 2, small_x_shape, small_x) || fusec_run(job->m) ||
                fusec_get_output(job->m, "y", &t, &rank, shape, &data) ||
                tu_max_abs_diff(data, want, 4) > 1e-6)
                job->failures++;
        } else {
            float x[5], want[5];
            for (int i = 0; i < 5; i++) x[i] = (float)(r + i), want[i] = (float)(r + i) * 3 - 1;
            int64_t x_shape[1] = {5};
            if (fusec_set_input(job->m, "x", FUSEC_FLOAT32, 1, x_shape, x) || fusec_run(job->m) ||
                fusec_get_output(job->m, "z", &t, &rank, shape, &data) ||
                tu_max_abs_diff(data, want, 5) > 0)
                job->failures++;
        }
    }
    return NULL;
}

static void test_two_models_two_threads(void **state) {
    (void)state;
    char *p1 = write_model("thread_small.json", small_model());
    char *p2 = write_model("thread_affine.json", affine_model());
    char err[1024];
    fusec_model *m1 = fusec_load(p1, NULL, err, sizeof err);
    if (!m1) fail_msg("%s", err);
    fusec_model *m2 = fusec_load(p2, NULL, err, sizeof err);
    if (!m2) fail_msg("%s", err);
    thread_job jobs[2] = {{m1, 1, 0}, {m2, 0, 0}};
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&threads[i], NULL, run_many, &jobs[i]), 0);
    for (int i = 0; i < 2; i++) pthread_join(threads[i], NULL);
    assert_int_equal(jobs[0].failures, 0);
    assert_int_equal(jobs[1].failures, 0);
    fusec_free(m1);
    fusec_free(m2);
    free(p1);
    free(p2);
}

/* Two threads compiling at once share libtcc safely. */
static void *load_and_free(void *arg) {
    const char *path = arg;
    char err[1024];
    for (int i = 0; i < 5; i++) {
        fusec_model *m = fusec_load(path, NULL, err, sizeof err);
        if (!m) return (void *)1;
        fusec_free(m);
    }
    return NULL;
}

static void test_concurrent_jit_compiles(void **state) {
    (void)state;
    char *p1 = write_model("conc_small.json", small_model());
    char *p2 = write_model("conc_affine.json", affine_model());
    pthread_t t1, t2;
    void *r1, *r2;
    assert_int_equal(pthread_create(&t1, NULL, load_and_free, p1), 0);
    assert_int_equal(pthread_create(&t2, NULL, load_and_free, p2), 0);
    pthread_join(t1, &r1);
    pthread_join(t2, &r2);
    assert_null(r1);
    assert_null(r2);
    free(p1);
    free(p2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jit_matches_reference),
        cmocka_unit_test(test_aot_matches_jit),
        cmocka_unit_test(test_aot_cache_hit),
        cmocka_unit_test(test_failed_build_leaves_nothing),
        cmocka_unit_test(test_jit_links_every_kernel),
        cmocka_unit_test(test_build_writes_header),
        cmocka_unit_test(test_input_errors),
        cmocka_unit_test(test_symbolic_shapes),
        cmocka_unit_test(test_external_weights),
        cmocka_unit_test(test_two_models_two_threads),
        cmocka_unit_test(test_concurrent_jit_compiles),
    };
    return cmocka_run_group_tests(tests, make_temp_dir, remove_temp_dir);
}
