/* The in-process router API (examples/router/fusec_router.h) on the tiny
 * router: fusec_router_route on the 37 eval cases' transcripts (one batch,
 * through model_batch.json) gives the reference snapshot's decisions
 * (fixtures/router/tiny/reference.json) and, row by row, the decision of
 * routing its input_ids alone; errors come back as -1 with a message, never
 * an exit.
 *
 * Run from the repository root after `make` (the tiny model is
 * build/router-models/tiny/model.json, the tokenizer
 * build/tokenizer/tokenizer.json). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "examples/router/fusec_router.h"

#define MODEL "build/router-models/tiny/model.json"
#define TOKENIZER "build/tokenizer/tokenizer.json"

static fusec_router *router;

static int setup(void **state) {
    (void)state;
    char err[2048];
    fusec_router_options o = {.profile = "fast", .backend = "jit", .precision = "f32"};
    router = fusec_router_open(MODEL, TOKENIZER, &o, err, sizeof err);
    if (!router) fprintf(stderr, "fusec_router_open: %s\n", err);
    return router ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    fusec_router_close(router);
    return 0;
}

static void test_eval_cases(void **state) {
    (void)state;
    json_object *cases_root = json_object_from_file("fixtures/router/cases.json"), *cases;
    json_object *ref_root = json_object_from_file("fixtures/router/tiny/reference.json"), *refs;
    assert_non_null(cases_root);
    assert_non_null(ref_root);
    assert_true(json_object_object_get_ex(cases_root, "cases", &cases));
    assert_true(json_object_object_get_ex(ref_root, "cases", &refs));
    int n = (int)json_object_array_length(cases);
    assert_int_equal(n, 37);
    char **texts = calloc((size_t)n, sizeof *texts);
    fusec_router_result *res = calloc((size_t)n, sizeof *res);
    for (int i = 0; i < n; i++) {
        json_object *messages;
        json_object_object_get_ex(json_object_array_get_idx(cases, (size_t)i), "messages", &messages);
        const char *js = json_object_to_json_string(messages);
        char err[512];
        assert_int_equal(fusec_router_transcript(js, strlen(js), &texts[i], err, sizeof err), 0);
    }
    assert_int_equal(fusec_router_route(router, (const char *const *)texts, n, res), 0);
    int decisions = 0, hashes = 0, alone = 0;
    double max_diff = 0;
    for (int i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(cases, (size_t)i), *id, *ids, *ref = NULL, *v;
        json_object_object_get_ex(c, "id", &id);
        json_object_object_get_ex(c, "input_ids", &ids);
        for (size_t k = 0; k < json_object_array_length(refs); k++) {
            json_object *r = json_object_array_get_idx(refs, k), *rid;
            if (json_object_object_get_ex(r, "id", &rid) && !strcmp(json_object_get_string(rid), json_object_get_string(id)))
                ref = r;
        }
        assert_non_null(ref);
        json_object_object_get_ex(ref, "agent_id", &v);
        int agent = json_object_get_int(v);
        json_object_object_get_ex(ref, "role_id", &v);
        int role = json_object_get_int(v);
        if (res[i].agent_id == agent && res[i].role_id == role) decisions++;
        else fprintf(stderr, "%s: %d/%d, reference %d/%d\n", json_object_get_string(id), res[i].agent_id, res[i].role_id, agent, role);
        int nid = (int)json_object_array_length(ids);
        assert_int_equal(res[i].n_tokens, nid);
        int64_t *wide = malloc((size_t)nid * sizeof *wide);
        for (int k = 0; k < nid; k++) wide[k] = json_object_get_int64(json_object_array_get_idx(ids, (size_t)k));
        fusec_router_result by_ids;
        assert_int_equal(fusec_router_route_ids(router, wide, nid, &by_ids), 0);
        if (!strcmp(by_ids.route_hash, res[i].route_hash)) hashes++;
        if (by_ids.agent_id == res[i].agent_id && by_ids.role_id == res[i].role_id) alone++;
        for (int k = 0; k < FUSEC_ROUTER_LOGITS; k++) {
            double d = by_ids.logits[k] - res[i].logits[k];
            if (d < 0) d = -d;
            if (d > max_diff) max_diff = d;
        }
        free(wide);
        free(texts[i]);
    }
    printf("C API (%d texts per forward): %d/%d decisions = reference, %d/%d decisions = each alone, "
           "%d/%d route_hash = alone, max |logit - alone| %.3g\n", fusec_router_batch_size(router), decisions, n,
           alone, n, hashes, n, max_diff);
    /* A batch row's decision is the one it gets alone; its logits move by
     * float32 rounding only (other matmul shapes), which the route_hash's
     * sixth decimal may show. */
    assert_int_equal(decisions, n);
    assert_int_equal(alone, n);
    assert_true(max_diff < 1e-3);
    free(texts);
    free(res);
    json_object_put(cases_root);
    json_object_put(ref_root);
}

static void test_errors(void **state) {
    (void)state;
    fusec_router_result res[2];
    const char *empty[] = {"user: hi", ""};
    assert_int_equal(fusec_router_route(router, empty, 2, res), -1);
    assert_non_null(strstr(fusec_router_error(router), "text 1: nothing to route"));
    const char *bad_utf8[] = {"user: caf\xe9"};
    assert_int_equal(fusec_router_route(router, bad_utf8, 1, res), -1);
    assert_non_null(strstr(fusec_router_error(router), "text 0: invalid UTF-8 at byte offset 9"));
    size_t n = 4000;
    char *long_text = malloc(n * 5 + 8);
    strcpy(long_text, "user:");
    for (size_t i = 0; i < n; i++) memcpy(long_text + 5 + 5 * i, " word", 6);
    const char *texts[] = {long_text};
    assert_int_equal(fusec_router_route(router, texts, 1, res), -1);
    assert_non_null(strstr(fusec_router_error(router), "more than the model's bound of"));
    free(long_text);

    char err[2048] = "";
    assert_null(fusec_router_open(MODEL, "/nonexistent/tokenizer.json", NULL, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/tokenizer.json: cannot open"));
    assert_null(fusec_router_open("/nonexistent/model.json", TOKENIZER, NULL, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/model.json"));
}

static void test_truncate(void **state) {
    (void)state;
    char err[2048];
    fusec_router_options o = {.truncate = FUSEC_ROUTER_TRUNCATE_LEFT};
    fusec_router *r = fusec_router_open(MODEL, TOKENIZER, &o, err, sizeof err);
    assert_non_null(r);
    int bound = fusec_router_max_tokens(r);
    assert_true(bound > 0);
    /* "user:" then bound + 10 times " word": keeping the last `bound` tokens
     * drops "user", ":" and 10 words. */
    size_t words = (size_t)bound + 10;
    char *text = malloc(6 + 5 * words);
    strcpy(text, "user:");
    for (size_t i = 0; i < words; i++) memcpy(text + 5 + 5 * i, " word", 6);
    const char *texts[] = {text};
    fusec_router_result res;
    assert_int_equal(fusec_router_route(r, texts, 1, &res), 0);
    assert_int_equal(res.n_tokens, bound);
    assert_int_equal(res.n_dropped, 12);
    /* the same as routing just the kept words */
    fusec_router_result alone;
    const char *kept[] = {text + 5 + 5 * 10};
    assert_int_equal(fusec_router_route(r, kept, 1, &alone), 0);
    assert_int_equal(alone.n_tokens, bound);
    assert_string_equal(alone.route_hash, res.route_hash);
    free(text);
    fusec_router_close(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eval_cases),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_truncate),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
