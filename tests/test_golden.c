/* Golden tests: fusec against outputs computed independently by numpy
 * (scripts/gen_op_fixtures.py, scripts/gen_qwen3_small.py).
 *
 * fixtures/ops: one small model per case, every op; run through JIT (bare
 * profile) and AOT (fast profile).
 * fixtures/qwen3_small: a 2-layer Qwen3-style decoder; ONE compiled model
 * per lane (bare/fast x jit/aot) serves every sequence length, repeated runs
 * must be bit-identical, and every lane must match numpy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <json-c/json.h>
#include "testutil.h"
#include "../ir/npy.h"
#include "../api/fusec.h"

typedef struct {
    char dir[512];
    char model[512];
    json_object *spec;      /* the case entry of index.json */
    const char *profile, *backend;
    char name[256];
} golden_case;

static void path_join(char *out, size_t n, const char *dir, const char *file) { snprintf(out, n, "%s/%s", dir, file); }

/* Binds the case's inputs, runs, compares every output; returns max error
 * relative to tolerance through *worst. Output data is copied to *first_out
 * when non-NULL (for the determinism check). */
static void run_case(fusec_model *m, const golden_case *c, json_object *spec, float **copy_out, long *copy_n) {
    json_object *inputs, *outputs, *tol_obj;
    assert_true(json_object_object_get_ex(spec, "inputs", &inputs));
    assert_true(json_object_object_get_ex(spec, "outputs", &outputs));
    double tol = json_object_object_get_ex(spec, "tolerance", &tol_obj) ? json_object_get_double(tol_obj) : 1e-5;
    fu_array in_arrays[16];
    int n_in = 0;
    fu_err err;
    json_object_object_foreach(inputs, in_name, in_file) {
        char path[1024];
        path_join(path, sizeof path, c->dir, json_object_get_string(in_file));
        assert_int_equal(fu_npy_read(path, &in_arrays[n_in], &err), 0);
        int rc = fusec_set_input(m, in_name, (fusec_dtype)in_arrays[n_in].dtype, in_arrays[n_in].rank,
                                 in_arrays[n_in].shape, in_arrays[n_in].data);
        if (rc) fail_msg("%s: set_input %s: %s", c->name, in_name, fusec_last_error(m));
        n_in++;
    }
    if (fusec_run(m)) fail_msg("%s: run: %s", c->name, fusec_last_error(m));
    json_object_object_foreach(outputs, out_name, out_file) {
        char path[1024];
        path_join(path, sizeof path, c->dir, json_object_get_string(out_file));
        fu_array want;
        assert_int_equal(fu_npy_read(path, &want, &err), 0);
        fusec_dtype dt;
        int rank;
        int64_t shape[8];
        const void *data;
        if (fusec_get_output(m, out_name, &dt, &rank, shape, &data))
            fail_msg("%s: get_output %s: %s", c->name, out_name, fusec_last_error(m));
        assert_int_equal((int)dt, (int)want.dtype);
        assert_int_equal(rank, want.rank);
        long numel = 1;
        for (int k = 0; k < rank; k++) {
            assert_int_equal(shape[k], want.shape[k]);
            numel *= (long)shape[k];
        }
        if (want.dtype == FU_F32) {
            double diff = tu_max_abs_diff(data, want.data, numel);
            if (!(diff <= tol))
                fail_msg("%s [%s/%s]: output %s differs from numpy by %g (tolerance %g)", c->name, c->backend,
                         c->profile, out_name, diff, tol);
            if (copy_out) {
                *copy_out = malloc(sizeof(float) * (size_t)(numel ? numel : 1));
                memcpy(*copy_out, data, sizeof(float) * (size_t)numel);
                *copy_n = numel;
            }
        } else if (want.dtype == FU_F16 || want.dtype == FU_BF16) {
            const uint16_t *got = data, *exp = want.data;
            for (long i = 0; i < numel; i++) {
                float a = want.dtype == FU_F16 ? fu_f16_to_f32(got[i]) : fu_bf16_to_f32(got[i]);
                float b = want.dtype == FU_F16 ? fu_f16_to_f32(exp[i]) : fu_bf16_to_f32(exp[i]);
                if (!(fabs((double)a - b) <= tol) && !(a != a && b != b))
                    fail_msg("%s: output %s[%ld] = %g, numpy %g", c->name, out_name, i, a, b);
            }
        } else if (memcmp(data, want.data, want.nbytes) != 0) {
            fail_msg("%s [%s/%s]: output %s differs from numpy", c->name, c->backend, c->profile, out_name);
        }
        fu_array_free(&want);
    }
    for (int i = 0; i < n_in; i++) fu_array_free(&in_arrays[i]);
}

static fusec_model *load(const golden_case *c) {
    fusec_options o = {.profile = c->profile, .backend = c->backend, .cache_dir = "build/cache"};
    char err[1024];
    fusec_model *m = fusec_load(c->model, &o, err, sizeof err);
    if (!m) fail_msg("%s: load: %s", c->name, err);
    return m;
}

static void test_op_case(void **state) {
    golden_case *c = *state;
    fusec_model *m = load(c);
    run_case(m, c, c->spec, NULL, NULL);
    fusec_free(m);
}

/* One compiled model serves every sequence length; repeats are identical. */
static void test_qwen3_lane(void **state) {
    golden_case *c = *state;
    fusec_model *m = load(c);
    json_object *cases;
    assert_true(json_object_object_get_ex(c->spec, "cases", &cases));
    for (size_t i = 0; i < json_object_array_length(cases); i++) {
        json_object *spec = json_object_array_get_idx(cases, i);
        float *first = NULL, *second = NULL;
        long n1 = 0, n2 = 0;
        snprintf(c->name, sizeof c->name, "qwen3_small/%s", json_object_get_string(json_object_object_get(spec, "name")));
        run_case(m, c, spec, &first, &n1);
        run_case(m, c, spec, &second, &n2);
        assert_int_equal(n1, n2);
        if (memcmp(first, second, sizeof(float) * (size_t)n1) != 0)
            fail_msg("%s [%s/%s]: repeated runs are not bit-identical", c->name, c->backend, c->profile);
        free(first);
        free(second);
    }
    fusec_free(m);
}

static json_object *read_index(const char *dir) {
    char path[1024];
    path_join(path, sizeof path, dir, "index.json");
    json_object *idx = json_object_from_file(path);
    if (!idx) fprintf(stderr, "cannot read %s\n", path);
    return idx;
}

int main(void) {
    json_object *ops = read_index("fixtures/ops"), *qwen = read_index("fixtures/qwen3_small");
    if (!ops || !qwen) return 1;
    json_object *op_cases = json_object_object_get(ops, "cases");
    size_t n_ops = json_object_array_length(op_cases);
    static const char *lanes[4][2] = {{"bare", "jit"}, {"fast", "aot"}, {"fast", "jit"}, {"bare", "aot"}};
    size_t n_tests = n_ops * 2 + 4;
    struct CMUnitTest *tests = calloc(n_tests, sizeof *tests);
    golden_case *cases = calloc(n_tests, sizeof *cases);
    size_t t = 0;
    for (size_t i = 0; i < n_ops; i++)
        for (int lane = 0; lane < 2; lane++, t++) {
            json_object *spec = json_object_array_get_idx(op_cases, i);
            const char *name = json_object_get_string(json_object_object_get(spec, "name"));
            golden_case *c = &cases[t];
            snprintf(c->dir, sizeof c->dir, "fixtures/ops/%s", name);
            snprintf(c->model, sizeof c->model, "%s/model.json", c->dir);
            c->spec = spec;
            c->profile = lanes[lane][0];
            c->backend = lanes[lane][1];
            snprintf(c->name, sizeof c->name, "ops/%s [%s %s]", name, c->backend, c->profile);
            tests[t] = (struct CMUnitTest){c->name, test_op_case, NULL, NULL, c};
        }
    for (int lane = 0; lane < 4; lane++, t++) {
        golden_case *c = &cases[t];
        snprintf(c->dir, sizeof c->dir, "fixtures/qwen3_small");
        snprintf(c->model, sizeof c->model, "fixtures/qwen3_small/%s",
                 json_object_get_string(json_object_object_get(qwen, "model")));
        c->spec = qwen;
        c->profile = lanes[lane][0];
        c->backend = lanes[lane][1];
        char *title = malloc(64);
        snprintf(title, 64, "qwen3_small [%s %s]", c->backend, c->profile);
        tests[t] = (struct CMUnitTest){title, test_qwen3_lane, NULL, NULL, c};
    }
    int failed = _cmocka_run_group_tests("golden", tests, t, NULL, NULL);
    for (int lane = 0; lane < 4; lane++) free((void *)tests[n_ops * 2 + (size_t)lane].name);
    free(tests);
    free(cases);
    json_object_put(ops);
    json_object_put(qwen);
    return failed;
}
