/* Routing many conversations: one forward per conversation (the unbatched
 * router) against batches through the batched router (model_batch.json),
 * in conversations per second, over the 37 eval cases' transcripts repeated.
 * Checks each batched row's decision equals the one it gets alone.
 * usage: bench_router_batch [CONFIG...] (default: tiny, and qwen3-0.6b when
 * build/router-models/qwen3-0.6b/model_batch.json exists: one round of
 * batches of 16 against one at a time, a few minutes). Run from the
 * repository root after `make` (and `build/router route --config tiny --batch ...`
 * or gen_router.py to write the models). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "examples/router/fusec_router.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* conversations per second over rounds of routing all texts */
static double rate(fusec_router *r, const char *const *texts, int n, fusec_router_result *res, double min_seconds,
                   int warm) {
    if (warm) fusec_router_route(r, texts, n, res);   /* arena, page faults */
    int rounds = 0;
    double t0 = now(), dt;
    do {
        if (fusec_router_route(r, texts, n, res)) {
            fprintf(stderr, "bench_router_batch: %s\n", fusec_router_error(r));
            return 0;
        }
        rounds++;
        dt = now() - t0;
    } while (dt < min_seconds);
    return (double)rounds * n / dt;
}

static int bench(const char *config, const char *const *texts, int n) {
    char model[256], batch[256], err[2048];
    snprintf(model, sizeof model, "build/router-models/%s/model.json", config);
    snprintf(batch, sizeof batch, "build/router-models/%s/model_batch.json", config);
    if (access(model, R_OK) || access(batch, R_OK)) {
        printf("router batches (%s): n/a (no %s; `build/router route --config %s --batch FILE` writes it)\n", config,
               batch, config);
        return 0;
    }
    fusec_router_options one = {.profile = "fast", .backend = "aot", .max_batch = 1};
    fusec_router_options many = {.profile = "fast", .backend = "aot"};
    fusec_router *r1 = fusec_router_open(model, "build/tokenizer/tokenizer.json", &one, err, sizeof err);
    fusec_router *rb = r1 ? fusec_router_open(model, "build/tokenizer/tokenizer.json", &many, err, sizeof err) : NULL;
    if (!r1 || !rb) {
        fprintf(stderr, "bench_router_batch: %s\n", err);
        fusec_router_close(r1);
        return 1;
    }
    fusec_router_result *a = calloc((size_t)n, sizeof *a), *b = calloc((size_t)n, sizeof *b);
    int tiny = !strcmp(config, "tiny");
    double min_s = tiny ? 1.0 : 0.1;   /* the 0.6B model: one timed round (tens of seconds) */
    double alone = rate(r1, texts, n, a, min_s, tiny);
    int status = 0;
    for (int bs = tiny ? 4 : 16; bs <= (tiny ? fusec_router_batch_size(rb) * 2 : 16); bs *= 4) {
        int size = bs > fusec_router_batch_size(rb) ? fusec_router_batch_size(rb) : bs;
        fusec_router_options o = many;
        o.max_batch = size;
        fusec_router *rs = fusec_router_open(model, "build/tokenizer/tokenizer.json", &o, err, sizeof err);
        if (!rs) break;
        double batched = rate(rs, texts, n, b, min_s, tiny);
        int same = 0;
        for (int i = 0; i < n; i++) same += a[i].agent_id == b[i].agent_id && a[i].role_id == b[i].role_id;
        printf("router batches (%s, fast/aot, %d conversations of 3-65 tokens): one at a time %.4g/s, "
               "batches of %d %.4g/s (%.2fx); decisions equal to alone %d/%d\n",
               config, n, alone, size, batched, batched / alone, same, n);
        if (same != n) status = 1;
        fusec_router_close(rs);
        if (size == fusec_router_batch_size(rb)) break;
    }
    free(a);
    free(b);
    fusec_router_close(r1);
    fusec_router_close(rb);
    return status;
}

int main(int argc, char **argv) {
    json_object *root = json_object_from_file("fixtures/router/cases.json"), *cases;
    if (!root || !json_object_object_get_ex(root, "cases", &cases)) {
        fprintf(stderr, "bench_router_batch: cannot read fixtures/router/cases.json (run from the repository root)\n");
        return 2;
    }
    int n = (int)json_object_array_length(cases);
    char **texts = calloc((size_t)n, sizeof *texts);
    for (int i = 0; i < n; i++) {
        json_object *m;
        json_object_object_get_ex(json_object_array_get_idx(cases, (size_t)i), "messages", &m);
        const char *js = json_object_to_json_string(m);
        char err[256];
        if (fusec_router_transcript(js, strlen(js), &texts[i], err, sizeof err)) return 2;
    }
    int status = 0;
    if (argc > 1)
        for (int i = 1; i < argc; i++) status |= bench(argv[i], (const char *const *)texts, n);
    else
        status |= bench("tiny", (const char *const *)texts, n) | bench("qwen3-0.6b", (const char *const *)texts, n);
    for (int i = 0; i < n; i++) free(texts[i]);
    free(texts);
    json_object_put(root);
    return status;
}
