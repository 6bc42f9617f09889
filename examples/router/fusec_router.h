/* fusec_router: the router in-process. Opens a router model (the IR that
 * examples/router/gen_router.py writes) with fusec and a Hugging Face
 * tokenizer.json (tokenizer/tokenizer.h), and routes transcripts: text in,
 * the agent and role that act next out, with both margins and the
 * route_hash that `router eval` reports (examples/router/README.md).
 *
 *   char err[512];
 *   fusec_router *r = fusec_router_open("model.json", "tokenizer.json", NULL, err, sizeof err);
 *   const char *texts[] = {"user: What is 17 + 25?"};
 *   fusec_router_result res[1];
 *   if (r && fusec_router_route(r, texts, 1, res) == 0) printf("agent %d role %d\n", res[0].agent_id, res[0].role_id);
 *   fusec_router_close(r);
 *
 * A transcript is the conversation's messages as "<role>: <content>" joined
 * with "\n" (fusec_router_transcript builds it from JSON). Functions return
 * 0 or -1 and never exit; fusec_router_error names what failed. A router is
 * not for concurrent use from several threads (its model is not). */
#ifndef FUSEC_ROUTER_H
#define FUSEC_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#define FUSEC_ROUTER_AGENTS 7
#define FUSEC_ROUTER_ROLES 3
#define FUSEC_ROUTER_LOGITS (FUSEC_ROUTER_AGENTS + FUSEC_ROUTER_ROLES)

typedef enum {
    FUSEC_ROUTER_REFUSE = 0,   /* a text longer than the bound is an error (default) */
    FUSEC_ROUTER_TRUNCATE_LEFT,  /* keep its last tokens */
    FUSEC_ROUTER_TRUNCATE_RIGHT, /* keep its first tokens */
} fusec_router_truncate;

typedef struct {
    const char *profile;     /* "bare" or "fast" (default fast) */
    const char *backend;     /* "jit" or "aot" (default jit) */
    const char *precision;   /* "f32" or "bf16" (default f32) */
    const char *cache_dir;   /* AOT cache; NULL: fusec's default */
    int verbose;
    fusec_router_truncate truncate;
    /* Batches: fusec_router_route runs up to this many texts through one
     * forward of the batched model (model_batch.json beside the model, or
     * batch_model; examples/router/gen_router.py writes it; compiled by
     * fusec_router_open), padded on the right to a common length with an
     * attention mask, each row read out at its own T-2. 0: the batched
     * model's bound when it exists, else 1; 1: one text per forward of the
     * unbatched model. */
    int max_batch;
    const char *batch_model;   /* NULL: model_batch.json in the model's folder */
} fusec_router_options;

/* One routing decision. */
typedef struct {
    int agent_id, role_id;             /* argmax, first index wins ties */
    double agent_margin, role_margin;  /* top-1 minus top-2 */
    double logits[FUSEC_ROUTER_LOGITS];
    char route_hash[65];               /* sha256 hex (examples/router/README.md) */
    int n_tokens;                      /* tokens routed */
    int n_dropped;                     /* tokens cut by truncation */
    int status;                        /* 0 routed, -1 not (see error) */
    char error[256];
} fusec_router_result;

typedef struct fusec_router fusec_router;

fusec_router *fusec_router_open(const char *model_json, const char *tokenizer_json, const fusec_router_options *opts,
                                char *err, size_t errlen);
void fusec_router_close(fusec_router *r);

/* Routes n transcripts (UTF-8, NUL-terminated) into results[0..n), in
 * batches when a batched model is there (each row's decision is the one it
 * gets alone). A text that cannot be routed gets status -1 and its error;
 * the others are still routed. Returns 0 when all were, else -1 with the
 * first failure (and its index) in fusec_router_error. */
int fusec_router_route(fusec_router *r, const char *const *texts, int n, fusec_router_result *results);
/* Routes token ids directly (as `router eval` does). */
int fusec_router_route_ids(fusec_router *r, const int64_t *ids, int n_ids, fusec_router_result *result);

const char *fusec_router_error(const fusec_router *r);
/* The longest input the compiled model takes, in tokens. */
int fusec_router_max_tokens(const fusec_router *r);
/* Texts per forward fusec_router_route uses (1: no batched model). */
int fusec_router_batch_size(const fusec_router *r);
/* The router's tokenizer (a fu_tokenizer *, tokenizer/tokenizer.h). */
const struct fu_tokenizer *fusec_router_tokenizer(const fusec_router *r);

/* The transcript of a conversation given as JSON text: a list of
 * {"role": "system"|"user"|"assistant"|"tool", "content": STRING}, or an
 * object with such a list under "messages". *text is malloc'd. */
int fusec_router_transcript(const char *json, size_t len, char **text, char *err, size_t errlen);

/* The decision of 10 logits (agents, then roles): argmax, margins, route_hash. */
void fusec_router_decide(const float *logits, fusec_router_result *r);

#endif
