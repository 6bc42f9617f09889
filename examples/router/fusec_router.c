/* fusec_router: the router in-process (examples/router/fusec_router.h). */
#include "examples/router/fusec_router.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "api/fusec.h"
#include "tokenizer/tokenizer.h"

struct fusec_router {
    fusec_model *model;
    fu_tokenizer *tok;
    int max_tokens;
    fusec_router_truncate truncate;
    /* the batched model: loaded on the first call with several texts */
    char *batch_path;          /* NULL: none */
    fusec_model *batch;
    int batch_tried, max_batch, batch_max_tokens;
    char *profile, *backend, *precision, *cache_dir;
    int verbose;
    char err[1024];
};

static void set_err(char *err, size_t size, const char *fmt, ...) {
    if (!err || !size) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, size, fmt, ap);
    va_end(ap);
}

/* ---- decisions ------------------------------------------------------------------ */

/* argmax (first index wins ties) and top-1 minus top-2. */
static void decide(const double *scores, int n, int *best_out, double *margin_out) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (scores[i] > scores[best]) best = i;
    double runner_up = -INFINITY;
    for (int i = 0; i < n; i++)
        if (i != best && scores[i] > runner_up) runner_up = scores[i];
    *best_out = best;
    *margin_out = scores[best] - runner_up;
}

/* The route_hash text: "agent=A;role=R;logits=l0,...,l9", logits "%.6f"
 * with negative zero written as zero (reference.py writes the same bytes). */
static void route_text(const fusec_router_result *r, char *buf, size_t size) {
    size_t used = (size_t)snprintf(buf, size, "agent=%d;role=%d;logits=", r->agent_id, r->role_id);
    for (int i = 0; i < FUSEC_ROUTER_LOGITS && used < size; i++) {
        char num[64];
        snprintf(num, sizeof num, "%.6f", r->logits[i]);
        if (!strcmp(num, "-0.000000")) strcpy(num, "0.000000");
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? "," : "", num);
    }
}

void fusec_router_decide(const float *logits, fusec_router_result *r) {
    for (int i = 0; i < FUSEC_ROUTER_LOGITS; i++) r->logits[i] = (double)logits[i];
    decide(r->logits, FUSEC_ROUTER_AGENTS, &r->agent_id, &r->agent_margin);
    decide(r->logits + FUSEC_ROUTER_AGENTS, FUSEC_ROUTER_ROLES, &r->role_id, &r->role_margin);
    char text[1024];
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    route_text(r, text, sizeof text);
    if (!EVP_Digest(text, strlen(text), digest, &digest_len, EVP_sha256(), NULL) || digest_len != 32) {
        strcpy(r->route_hash, "sha256-failed");
        return;
    }
    for (unsigned i = 0; i < digest_len; i++) sprintf(r->route_hash + 2 * i, "%02x", digest[i]);
}

/* ---- transcripts ------------------------------------------------------------------ */

static const char *const known_roles[] = {"system", "user", "assistant", "tool"};

int fusec_router_transcript(const char *json, size_t len, char **text, char *err, size_t errlen) {
    *text = NULL;
    size_t bad;
    if (fu_utf8_check(json, len, &bad)) {
        set_err(err, errlen, "the conversation is not UTF-8 (byte 0x%02x at offset %zu)", (unsigned char)json[bad],
                bad);
        return -1;
    }
    json_tokener *tk = json_tokener_new();
    if (!tk) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    json_object *root = json_tokener_parse_ex(tk, json, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tk);
    size_t used = json_tokener_get_parse_end(tk);
    json_tokener_free(tk);
    if (!root || jerr != json_tokener_success) {
        set_err(err, errlen, "the conversation is not JSON: %s",
                jerr == json_tokener_continue ? "unexpected end of input" : json_tokener_error_desc(jerr));
        if (root) json_object_put(root);
        return -1;
    }
    for (; used < len; used++)
        if (!strchr(" \t\r\n", json[used])) {
            set_err(err, errlen, "the conversation has trailing text after its JSON (offset %zu)", used);
            json_object_put(root);
            return -1;
        }
    json_object *list = root;
    if (json_object_is_type(root, json_type_object) && !json_object_object_get_ex(root, "messages", &list)) {
        set_err(err, errlen, "the conversation is an object without \"messages\"");
        json_object_put(root);
        return -1;
    }
    if (!json_object_is_type(list, json_type_array)) {
        set_err(err, errlen, "the conversation is not a list of {role, content} messages");
        json_object_put(root);
        return -1;
    }
    size_t n = json_object_array_length(list);
    if (n == 0) {
        set_err(err, errlen, "the conversation has no messages");
        json_object_put(root);
        return -1;
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(list, i), *role, *content;
        if (!json_object_is_type(m, json_type_object) || !json_object_object_get_ex(m, "role", &role) ||
            !json_object_is_type(role, json_type_string) || !json_object_object_get_ex(m, "content", &content) ||
            !json_object_is_type(content, json_type_string)) {
            set_err(err, errlen, "message %zu is not {\"role\": STRING, \"content\": STRING}", i);
            json_object_put(root);
            return -1;
        }
        const char *r = json_object_get_string(role);
        int known = 0;
        for (size_t k = 0; k < sizeof known_roles / sizeof *known_roles; k++) known |= !strcmp(r, known_roles[k]);
        if (!known) {
            set_err(err, errlen, "message %zu has unknown role '%.64s' (system, user, assistant or tool)", i, r);
            json_object_put(root);
            return -1;
        }
        size_t clen = (size_t)json_object_get_string_len(content);
        const char *c = json_object_get_string(content);
        if (memchr(c, 0, clen)) {
            set_err(err, errlen, "message %zu: content has a NUL character", i);
            json_object_put(root);
            return -1;
        }
        if (fu_utf8_check(c, clen, &bad)) {
            set_err(err, errlen, "message %zu: content is not UTF-8 (an unpaired \\u surrogate?)", i);
            json_object_put(root);
            return -1;
        }
        total += strlen(r) + 2 + clen + 1;
    }
    char *out = malloc(total + 1);
    if (!out) {
        set_err(err, errlen, "out of memory");
        json_object_put(root);
        return -1;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(list, i), *role, *content;
        json_object_object_get_ex(m, "role", &role);
        json_object_object_get_ex(m, "content", &content);
        if (i) out[o++] = '\n';
        size_t rl = strlen(json_object_get_string(role)), cl = (size_t)json_object_get_string_len(content);
        memcpy(out + o, json_object_get_string(role), rl);
        o += rl;
        out[o++] = ':';
        out[o++] = ' ';
        memcpy(out + o, json_object_get_string(content), cl);
        o += cl;
    }
    out[o] = 0;
    json_object_put(root);
    *text = out;
    return 0;
}

/* ---- the router ------------------------------------------------------------------- */

static int ensure_batch(fusec_router *r);

fusec_router *fusec_router_open(const char *model_json, const char *tokenizer_json, const fusec_router_options *opts,
                                char *err, size_t errlen) {
    fusec_router_options dflt = {0};
    if (!opts) opts = &dflt;
    fusec_router *r = calloc(1, sizeof *r);
    if (!r) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    r->truncate = opts->truncate;
    r->max_batch = opts->max_batch;
    r->verbose = opts->verbose;
    if (!(r->profile = strdup(opts->profile ? opts->profile : "fast")) ||
        !(r->backend = strdup(opts->backend ? opts->backend : "jit")) ||
        !(r->precision = strdup(opts->precision ? opts->precision : "f32")) ||
        (opts->cache_dir && !(r->cache_dir = strdup(opts->cache_dir)))) {
        set_err(err, errlen, "out of memory");
        goto fail;
    }
    if (opts->max_batch != 1) {
        if (opts->batch_model) {
            r->batch_path = strdup(opts->batch_model);
        } else {   /* model_batch.json beside the model, when there */
            const char *slash = strrchr(model_json, '/');
            size_t dir = slash ? (size_t)(slash - model_json + 1) : 0;
            r->batch_path = malloc(dir + sizeof "model_batch.json");
            if (r->batch_path) {
                memcpy(r->batch_path, model_json, dir);
                strcpy(r->batch_path + dir, "model_batch.json");
                FILE *f = fopen(r->batch_path, "rb");
                if (f) fclose(f);
                else {
                    free(r->batch_path);
                    r->batch_path = NULL;
                    r->batch_tried = 1;
                }
            }
        }
        if (!r->batch_path && !r->batch_tried) {
            set_err(err, errlen, "out of memory");
            goto fail;
        }
    } else {
        r->batch_tried = 1;
    }
    if (tokenizer_json && !(r->tok = fu_tokenizer_load(tokenizer_json, err, errlen))) goto fail;
    fusec_options fo = {.profile = r->profile, .backend = r->backend, .precision = r->precision,
                        .cache_dir = r->cache_dir, .verbose = r->verbose};
    if (!(r->model = fusec_load(model_json, &fo, err, errlen))) goto fail;
    int idx = -1;
    for (int i = 0; i < fusec_num_inputs(r->model); i++)
        if (!strcmp(fusec_input_name(r->model, i), "input_ids")) idx = i;
    int rank = 0;
    int64_t dims[8];
    if (idx < 0 || fusec_input_shape(r->model, idx, &rank, dims, NULL, 0) || rank != 2 || dims[1] < 1) {
        set_err(err, errlen, "%s: not a router: no input 'input_ids' of shape [1, T]", model_json);
        goto fail;
    }
    r->max_tokens = dims[1] > 0x7fffffff ? 0x7fffffff : (int)dims[1];
    if (r->batch_path && ensure_batch(r)) {   /* compiled now, not on the first batch */
        set_err(err, errlen, "%s", r->err);
        goto fail;
    }
    return r;
fail:
    fusec_router_close(r);
    return NULL;
}

void fusec_router_close(fusec_router *r) {
    if (!r) return;
    if (r->model) fusec_free(r->model);
    if (r->batch) fusec_free(r->batch);
    fu_tokenizer_free(r->tok);
    free(r->batch_path);
    free(r->profile);
    free(r->backend);
    free(r->precision);
    free(r->cache_dir);
    free(r);
}

const char *fusec_router_error(const fusec_router *r) { return r ? r->err : "no router"; }
int fusec_router_max_tokens(const fusec_router *r) { return r->max_tokens; }

/* Loads the batched model once; 0 when there is one to use. */
static int ensure_batch(fusec_router *r) {
    if (r->batch) return 0;
    if (r->batch_tried) return -1;
    r->batch_tried = 1;
    fusec_options fo = {.profile = r->profile, .backend = r->backend, .precision = r->precision,
                        .cache_dir = r->cache_dir, .verbose = r->verbose};
    char err[1024];
    if (!(r->batch = fusec_load(r->batch_path, &fo, err, sizeof err))) {
        set_err(r->err, sizeof r->err, "the batched model: %s", err);
        return -1;
    }
    int ids = -1, mask = -1;
    for (int i = 0; i < fusec_num_inputs(r->batch); i++) {
        if (!strcmp(fusec_input_name(r->batch, i), "input_ids")) ids = i;
        if (!strcmp(fusec_input_name(r->batch, i), "attention_mask")) mask = i;
    }
    int rank = 0;
    int64_t dims[8];
    if (ids < 0 || mask < 0 || fusec_input_shape(r->batch, ids, &rank, dims, NULL, 0) || rank != 2 || dims[0] < 1 ||
        dims[1] < 1) {
        set_err(r->err, sizeof r->err, "%s: not a batched router (input_ids [batch, seq] and attention_mask)",
                r->batch_path);
        fusec_free(r->batch);
        r->batch = NULL;
        return -1;
    }
    int64_t b = dims[0];
    if (r->max_batch > 1 && r->max_batch < b) b = r->max_batch;
    r->max_batch = b > 4096 ? 4096 : (int)b;
    r->batch_max_tokens = dims[1] > 0x7fffffff ? 0x7fffffff : (int)dims[1];
    return 0;
}

int fusec_router_batch_size(const fusec_router *r) {
    if (r->batch) return r->max_batch;
    return r->batch_path && !r->batch_tried ? -1 : 1;   /* -1: not loaded yet */
}
const struct fu_tokenizer *fusec_router_tokenizer(const fusec_router *r) { return r->tok; }

int fusec_router_route_ids(fusec_router *r, const int64_t *ids, int n_ids, fusec_router_result *res) {
    memset(res, 0, sizeof *res);
    if (n_ids < 1) {
        set_err(r->err, sizeof r->err, "nothing to route: no tokens");
        return -1;
    }
    if (n_ids > r->max_tokens) {
        set_err(r->err, sizeof r->err, "%d tokens, more than the model's bound of %d", n_ids, r->max_tokens);
        return -1;
    }
    int64_t shape[8] = {1, n_ids};
    fusec_dtype dtype;
    int rank;
    const void *data;
    if (fusec_set_input(r->model, "input_ids", FUSEC_INT64, 2, shape, ids) || fusec_run(r->model) ||
        fusec_get_output(r->model, "logits", &dtype, &rank, shape, &data)) {
        set_err(r->err, sizeof r->err, "run failed: %s", fusec_last_error(r->model));
        return -1;
    }
    if (dtype != FUSEC_FLOAT32 || rank != 2 || shape[0] != 1 || shape[1] != FUSEC_ROUTER_LOGITS) {
        set_err(r->err, sizeof r->err, "output 'logits' is not float32 [1, %d]", FUSEC_ROUTER_LOGITS);
        return -1;
    }
    fusec_router_decide(data, res);
    res->n_tokens = n_ids;
    return 0;
}

static void fail_row(fusec_router_result *res, const char *fmt, ...) {
    res->status = -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->error, sizeof res->error, fmt, ap);
    va_end(ap);
}

/* One forward of the batched model over rows idx[0..n) (ids[k], len[k]). */
static void run_batch(fusec_router *r, int64_t **ids, const int *len, const int *idx, int n,
                      fusec_router_result *results) {
    if (n <= 0) return;
    int width = 1;
    for (int k = 0; k < n; k++)
        if (len[idx[k]] > width) width = len[idx[k]];
    size_t cells = (size_t)(unsigned)n * (size_t)(unsigned)width;
    int64_t *in = calloc(cells, sizeof *in), *mask = calloc(cells, sizeof *mask);
    if (!in || !mask) {
        for (int k = 0; k < n; k++) fail_row(&results[idx[k]], "%s", "out of memory");
        free(in);
        free(mask);
        return;
    }
    for (int k = 0; k < n; k++) {   /* padded on the right with id 0, masked out */
        memcpy(in + (size_t)k * (size_t)width, ids[idx[k]], (size_t)len[idx[k]] * sizeof *in);
        for (int t = 0; t < len[idx[k]]; t++) mask[(size_t)k * (size_t)width + (size_t)t] = 1;
    }
    int64_t shape[8] = {n, width};
    fusec_dtype dtype;
    int rank;
    const void *data;
    if (fusec_set_input(r->batch, "input_ids", FUSEC_INT64, 2, shape, in) ||
        fusec_set_input(r->batch, "attention_mask", FUSEC_INT64, 2, shape, mask) || fusec_run(r->batch) ||
        fusec_get_output(r->batch, "logits", &dtype, &rank, shape, &data)) {
        for (int k = 0; k < n; k++) fail_row(&results[idx[k]], "batched run failed: %s", fusec_last_error(r->batch));
    } else if (dtype != FUSEC_FLOAT32 || rank != 2 || shape[0] != n || shape[1] != FUSEC_ROUTER_LOGITS) {
        for (int k = 0; k < n; k++) fail_row(&results[idx[k]], "%s", "batched output 'logits' is not [batch, 10]");
    } else {
        for (int k = 0; k < n; k++) {
            fusec_router_result *res = &results[idx[k]];
            int dropped = res->n_dropped;
            fusec_router_decide((const float *)data + (size_t)k * FUSEC_ROUTER_LOGITS, res);
            res->n_tokens = len[idx[k]];
            res->n_dropped = dropped;
            res->status = 0;
        }
    }
    free(in);
    free(mask);
}

static int by_length(const void *a, const void *b, void *lengths) {
    const int *len = lengths;
    int x = len[*(const int *)a], y = len[*(const int *)b];
    return x < y ? -1 : x > y ? 1 : *(const int *)a - *(const int *)b;
}

int fusec_router_route(fusec_router *r, const char *const *texts, int n, fusec_router_result *results) {
    r->err[0] = 0;
    if (!r->tok) {
        set_err(r->err, sizeof r->err, "this router was opened without a tokenizer");
        return -1;
    }
    if (n < 0) {
        set_err(r->err, sizeof r->err, "negative count of texts");
        return -1;
    }
    int64_t **ids = calloc((size_t)n + 1, sizeof *ids);
    int *len = calloc((size_t)n + 1, sizeof *len), *order = calloc((size_t)n + 1, sizeof *order);
    if (!ids || !len || !order) {
        free(ids);
        free(len);
        free(order);
        set_err(r->err, sizeof r->err, "out of memory");
        return -1;
    }
    int n_ok = 0;
    for (int k = 0; k < n; k++) {
        fusec_router_result *res = &results[k];
        memset(res, 0, sizeof *res);
        res->status = -1;
        int32_t *tids = NULL;
        size_t n_ids = 0;
        char err[512];
        if (!texts[k]) {
            fail_row(res, "%s", "NULL text");
            continue;
        }
        if (fu_tokenizer_encode(r->tok, texts[k], strlen(texts[k]), &tids, &n_ids, err, sizeof err)) {
            fail_row(res, "%s", err);
            continue;
        }
        if (n_ids == 0) {
            fail_row(res, "%s", "nothing to route: no tokens");
            free(tids);
            continue;
        }
        size_t first = 0, keep = n_ids;
        if (n_ids > (size_t)r->max_tokens) {
            if (r->truncate == FUSEC_ROUTER_REFUSE) {
                snprintf(res->error, sizeof res->error,
                         "%zu tokens, more than the model's bound of %d (truncate left or right to route it)", n_ids,
                         r->max_tokens);
                free(tids);
                continue;
            }
            keep = (size_t)r->max_tokens;
            if (r->truncate == FUSEC_ROUTER_TRUNCATE_LEFT) first = n_ids - keep;
        }
        if (!(ids[k] = malloc(keep * sizeof **ids))) {
            fail_row(res, "%s", "out of memory");
            free(tids);
            continue;
        }
        for (size_t i = 0; i < keep; i++) ids[k][i] = tids[first + i];
        free(tids);
        len[k] = (int)keep;
        res->n_dropped = (int)(n_ids - keep);
        res->status = 0;
        order[n_ok++] = k;
    }
    if (n_ok >= 2 && ensure_batch(r) == 0) {
        /* rows of similar length together: less padding */
        qsort_r(order, (size_t)n_ok, sizeof *order, by_length, len);
        for (int k = 0; k < n_ok;) {
            int m = 0;
            while (k + m < n_ok && m < r->max_batch && len[order[k + m]] <= r->batch_max_tokens) m++;
            if (m == 0) {   /* longer than the batched model takes: alone */
                int i = order[k++], dropped = results[i].n_dropped;
                if (fusec_router_route_ids(r, ids[i], len[i], &results[i])) fail_row(&results[i], "%s", r->err);
                results[i].n_dropped = dropped;
                continue;
            }
            run_batch(r, ids, len, order + k, m, results);
            k += m;
        }
    } else {
        for (int j = 0; j < n_ok; j++) {
            int i = order[j], dropped = results[i].n_dropped;
            if (fusec_router_route_ids(r, ids[i], len[i], &results[i])) fail_row(&results[i], "%s", r->err);
            results[i].n_dropped = dropped;
        }
    }
    int status = 0;
    for (int k = 0; k < n; k++) {
        if (results[k].status && !status) {
            set_err(r->err, sizeof r->err, "text %d: %s", k, results[k].error);
            status = -1;
        }
        free(ids[k]);
    }
    free(ids);
    free(len);
    free(order);
    return status;
}
