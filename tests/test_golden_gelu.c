/* Golden tests of GELU: fusec against numpy's float64 formula
 * (scripts/gen_gelu_fixtures.py, fixtures/gelu/). Every case runs through
 * the JIT in the bare and the fast profile: the composed spellings that
 * exporters emit (erf and tanh forms) and models using the ONNX-20 Gelu op
 * directly (also through AOT, fast profile). An element passes when
 * |got - expected| <= atol + rtol * |expected|, the case's tolerances in
 * index.json; the direct Gelu node is held to about 1 ulp, tails included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <json-c/json.h>
#include "testutil.h"
#include "../ir/npy.h"
#include "../api/fusec.h"

#define DIR "fixtures/gelu"

typedef struct {
    json_object *spec; /* the case entry of index.json */
    const char *profile, *backend;
    char name[256];
} gelu_case;

static const char *spec_string(json_object *spec, const char *key) {
    return json_object_get_string(json_object_object_get(spec, key));
}

static double spec_double(json_object *spec, const char *key) {
    json_object *v;
    if (!json_object_object_get_ex(spec, key, &v)) fail_msg("index.json: case without '%s'", key);
    return json_object_get_double(v);
}

static void test_case(void **state) {
    gelu_case *c = *state;
    const char *name = spec_string(c->spec, "name");
    char path[512];
    snprintf(path, sizeof path, DIR "/%s/model.json", name);
    fusec_options o = {.profile = c->profile, .backend = c->backend, .cache_dir = "build/cache"};
    char err[1024];
    fusec_model *m = fusec_load(path, &o, err, sizeof err);
    if (!m) fail_msg("%s: load: %s", c->name, err);

    fu_err ferr;
    fu_array x, want;
    snprintf(path, sizeof path, DIR "/%s/%s", name, spec_string(json_object_object_get(c->spec, "inputs"), "x"));
    assert_int_equal(fu_npy_read(path, &x, &ferr), 0);
    snprintf(path, sizeof path, DIR "/%s/%s", name, spec_string(json_object_object_get(c->spec, "outputs"), "y"));
    assert_int_equal(fu_npy_read(path, &want, &ferr), 0);
    assert_int_equal(x.dtype, FU_F32);
    assert_int_equal(want.dtype, FU_F32);
    if (fusec_set_input(m, "x", FUSEC_FLOAT32, x.rank, x.shape, x.data))
        fail_msg("%s: set_input: %s", c->name, fusec_last_error(m));
    if (fusec_run(m)) fail_msg("%s: run: %s", c->name, fusec_last_error(m));

    fusec_dtype dt;
    int rank;
    int64_t shape[8];
    const void *data;
    if (fusec_get_output(m, "y", &dt, &rank, shape, &data)) fail_msg("%s: get_output: %s", c->name, fusec_last_error(m));
    assert_int_equal(dt, FUSEC_FLOAT32);
    assert_int_equal(rank, want.rank);
    long numel = 1;
    for (int k = 0; k < rank; k++) {
        assert_int_equal(shape[k], want.shape[k]);
        numel *= (long)shape[k];
    }
    double atol = spec_double(c->spec, "atol"), rtol = spec_double(c->spec, "rtol");
    const float *got = data, *exp = want.data;
    double worst = 0; /* largest |error| / (atol + rtol |expected|) */
    long at = 0;
    for (long i = 0; i < numel; i++) {
        double ratio = fabs((double)got[i] - exp[i]) / (atol + rtol * fabs(exp[i]));
        if (!(ratio <= worst)) worst = ratio, at = i;
    }
    if (!(worst <= 1.0))
        fail_msg("%s: y[%ld] = %.9g, numpy %.9g (%.2f x the tolerance %g + %g |y|)", c->name, at, got[at], exp[at], worst,
                 atol, rtol);
    fu_array_free(&x);
    fu_array_free(&want);
    fusec_free(m);
}

int main(void) {
    json_object *index = json_object_from_file(DIR "/index.json");
    if (!index) {
        fprintf(stderr, "cannot read " DIR "/index.json\n");
        return 1;
    }
    json_object *list = json_object_object_get(index, "cases");
    size_t n = json_object_array_length(list);
    static const char *lanes[3][2] = {{"bare", "jit"}, {"fast", "jit"}, {"fast", "aot"}};
    struct CMUnitTest *tests = calloc(n * 3, sizeof *tests);
    gelu_case *cases = calloc(n * 3, sizeof *cases);
    size_t t = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *spec = json_object_array_get_idx(list, i);
        const char *name = spec_string(spec, "name");
        int direct = strstr(name, "direct") != NULL || strstr(name, "mlp") != NULL;
        for (int lane = 0; lane < (direct ? 3 : 2); lane++, t++) {
            gelu_case *c = &cases[t];
            c->spec = spec;
            c->profile = lanes[lane][0];
            c->backend = lanes[lane][1];
            snprintf(c->name, sizeof c->name, "gelu/%s [%s %s]", name, c->backend, c->profile);
            tests[t] = (struct CMUnitTest){c->name, test_case, NULL, NULL, c};
        }
    }
    int failed = _cmocka_run_group_tests("golden_gelu", tests, t, NULL, NULL);
    free(tests);
    free(cases);
    json_object_put(index);
    return failed;
}
