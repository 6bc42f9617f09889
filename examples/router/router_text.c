/* router tokenize | detokenize | route: the router on text
 * (examples/router/router_text.h, examples/router/README.md).
 *
 *   router tokenize [TEXT | --file FILE] [--json]       ids of a text (stdin without either)
 *   router detokenize [ID... | --file FILE]             the text of ids (stdin without either)
 *   router route [--messages FILE.json] [--json] ...     who acts next in a conversation
 *   router route --batch FILE.jsonl [--json] ...         one conversation a line
 *
 * Exit status: 0 done, 1 an input could not be routed/encoded, 2 usage or
 * setup error (a missing model or tokenizer.json). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "examples/router/fusec_router.h"
#include "examples/router/router_text.h"
#include "tokenizer/tokenizer.h"

enum { T_OK = 0, T_FAILED = 1, T_SETUP = 2 };

static const char *const role_names[FUSEC_ROUTER_ROLES] = {"Worker", "Thinker", "Verifier"};

static const char tokenize_help[] =
    "usage: router tokenize [TEXT | --file FILE | -] [--json] [--tokenizer tokenizer.json]\n"
    "\n"
    "Prints the Qwen3 token ids of TEXT (or of FILE's bytes, or stdin's), space-separated,\n"
    "or as a JSON array with --json. No special tokens are added; special tokens written in\n"
    "the text (<|im_start|>...) are matched as such. The text must be UTF-8.\n"
    "The tokenizer defaults to build/tokenizer/tokenizer.json (fetched by make).\n";

static const char detokenize_help[] =
    "usage: router detokenize [ID... | --file FILE | -] [--skip-special] [--tokenizer tokenizer.json]\n"
    "\n"
    "Prints the text of token ids given as arguments, or read from FILE or stdin (numbers\n"
    "separated by spaces, commas or newlines, or a JSON array), exactly as bytes with no\n"
    "newline added. --skip-special drops special tokens.\n";

static const char route_help[] =
    "usage: router route [--messages FILE.json | -] [--batch FILE.jsonl] [options]\n"
    "\n"
    "Routes a conversation: a JSON list of {\"role\", \"content\"} messages (roles system, user,\n"
    "assistant, tool), or an object with that list under \"messages\", from FILE or stdin. Its\n"
    "transcript (\"<role>: <content>\" joined with \"\\n\", as the eval cases) is tokenized and\n"
    "routed; prints the agent, the role, both margins and the route_hash.\n"
    "\n"
    "options:\n"
    "  --messages FILE.json     the conversation (default: stdin)\n"
    "  --batch FILE.jsonl       route many conversations, one JSON conversation a line, in\n"
    "                           batches through the batched model (model_batch.json)\n"
    "  --batch-size N           conversations per forward (default: the batched model's bound,\n"
    "                           64; 1: one at a time through the unbatched model)\n"
    "  --json                   print JSON (one object a conversation, a line each)\n"
    "  --truncate left|right    route a conversation longer than the model's bound by keeping\n"
    "                           its last (left: drop the start) or first tokens; default: refuse\n"
    "  --config NAME            qwen3-0.6b (default) or tiny (build/router-models/NAME/)\n"
    "  --model MODEL.json       this router model instead\n"
    "  --profile bare|fast      (default fast)\n"
    "  --backend jit|aot        (default jit)\n"
    "  --precision f32|bf16     (default f32)\n"
    "  --tokenizer FILE         tokenizer.json (default build/tokenizer/tokenizer.json)\n"
    "  --verbose                compile steps\n"
    "\n"
    "Exit status: 0 routed, 1 a conversation could not be routed, 2 usage or setup error.\n";

/* ---- small helpers ----------------------------------------------------------------- */

static int read_stream(FILE *f, char **out, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) return -1;
    for (;;) {
        if (n == cap) {
            char *b = realloc(buf, 2 * cap + 1);
            if (!b) {
                free(buf);
                return -1;
            }
            buf = b;
            cap *= 2;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) break;
    }
    if (ferror(f)) {
        free(buf);
        return -1;
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}

/* Reads FILE ("-" or NULL: stdin); prints why on failure. */
static int read_input(const char *path, char **out, size_t *len) {
    if (!path || !strcmp(path, "-")) {
        if (read_stream(stdin, out, len)) {
            fprintf(stderr, "router: cannot read stdin: %s\n", strerror(errno));
            return -1;
        }
        return 0;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "router: %s: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    int rc = read_stream(f, out, len);
    if (rc) fprintf(stderr, "router: %s: cannot read: %s\n", path, strerror(errno));
    fclose(f);
    return rc;
}

static char *default_tokenizer(void) {
    char *root = router_root();
    size_t n = strlen(root) + 64;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/build/tokenizer/tokenizer.json", root);
    free(root);
    return p;
}

static fu_tokenizer *open_tokenizer(const char *path) {
    char *dflt = path ? NULL : default_tokenizer();
    char err[1024];
    fu_tokenizer *t = fu_tokenizer_load(path ? path : dflt, err, sizeof err);
    if (!t) fprintf(stderr, "router: %s%s\n", err, path ? "" : " (make fetches it; or give --tokenizer FILE)");
    free(dflt);
    return t;
}

static int wants_help(int argc, char **argv) {
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 1;
    return 0;
}

/* ---- tokenize / detokenize ------------------------------------------------------------ */

int tokenize_main(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        fputs(tokenize_help, stdout);
        return T_OK;
    }
    const char *text = NULL, *file = NULL, *tok_path = NULL;
    int json = 0, from_stdin = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "-")) from_stdin = 1;
        else if ((!strcmp(a, "--file") || !strcmp(a, "--tokenizer")) && i + 1 < argc)
            *(a[2] == 'f' ? &file : &tok_path) = argv[++i];
        else if (!strcmp(a, "--")) {
            if (i + 1 < argc) text = argv[++i];
        } else if (a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "router: unknown option or missing value: %s (see router tokenize --help)\n", a);
            return T_SETUP;
        } else if (!text) text = a;
        else {
            fprintf(stderr, "router: tokenize takes one TEXT (quote it)\n");
            return T_SETUP;
        }
    }
    if ((text != NULL) + (file != NULL) + from_stdin > 1) {
        fprintf(stderr, "router: tokenize wants one of TEXT, --file FILE or - (stdin)\n");
        return T_SETUP;
    }
    char *buf = NULL;
    size_t len;
    if (text) len = strlen(text);
    else if (read_input(file, &buf, &len)) return T_SETUP;
    fu_tokenizer *t = open_tokenizer(tok_path);
    if (!t) {
        free(buf);
        return T_SETUP;
    }
    int32_t *ids;
    size_t n;
    char err[512];
    int status = T_OK;
    if (fu_tokenizer_encode(t, text ? text : buf, len, &ids, &n, err, sizeof err)) {
        fprintf(stderr, "router: %s: %s\n", text ? "the text" : file && strcmp(file, "-") ? file : "stdin", err);
        status = T_FAILED;
    } else {
        if (json) putchar('[');
        for (size_t i = 0; i < n; i++) printf(i ? (json ? ", %d" : " %d") : "%d", (int)ids[i]);
        puts(json ? "]" : "");
        free(ids);
    }
    fu_tokenizer_free(t);
    free(buf);
    return status;
}

/* Parses ids: numbers separated by spaces, commas, newlines, brackets. */
static int parse_ids(const char *s, int32_t **out, size_t *n_out) {
    size_t cap = 64, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return -1;
    while (*s) {
        if (strchr(" \t\r\n,[]", *s)) {
            s++;
            continue;
        }
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (end == s || errno || v < 0 || v > 0x7fffffff || !strchr(" \t\r\n,[]", *end)) {
            fprintf(stderr, "router: not a token id: '%.20s'\n", s);
            free(ids);
            return -1;
        }
        if (n == cap) {
            int32_t *b = realloc(ids, 2 * cap * sizeof *ids);
            if (!b) {
                free(ids);
                return -1;
            }
            ids = b;
            cap *= 2;
        }
        ids[n++] = (int32_t)v;
        s = end;
    }
    *out = ids;
    *n_out = n;
    return 0;
}

int detokenize_main(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        fputs(detokenize_help, stdout);
        return T_OK;
    }
    const char *file = NULL, *tok_path = NULL;
    int skip_special = 0, from_stdin = 0;
    size_t args_len = 0;
    char *args = calloc(1, 1);
    for (int i = 2; i < argc && args; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--skip-special")) skip_special = 1;
        else if (!strcmp(a, "-")) from_stdin = 1;
        else if ((!strcmp(a, "--file") || !strcmp(a, "--tokenizer")) && i + 1 < argc)
            *(a[2] == 'f' ? &file : &tok_path) = argv[++i];
        else if (a[0] == '-') {
            fprintf(stderr, "router: unknown option or missing value: %s (see router detokenize --help)\n", a);
            free(args);
            return T_SETUP;
        } else {
            size_t k = strlen(a);
            char *b = realloc(args, args_len + k + 2);
            if (!b) break;
            args = b;
            memcpy(args + args_len, a, k);
            args[args_len + k] = ' ';
            args[args_len + k + 1] = 0;
            args_len += k + 1;
        }
    }
    if (!args) return T_SETUP;
    if ((args_len > 0) + (file != NULL) + from_stdin > 1) {
        fprintf(stderr, "router: detokenize wants ids as arguments, --file FILE or - (stdin)\n");
        free(args);
        return T_SETUP;
    }
    char *buf = NULL;
    size_t len;
    if (!args_len && read_input(file, &buf, &len)) {
        free(args);
        return T_SETUP;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    int status = T_FAILED;
    fu_tokenizer *t = NULL;
    if (parse_ids(args_len ? args : buf, &ids, &n)) goto done;
    if (!(t = open_tokenizer(tok_path))) {
        status = T_SETUP;
        goto done;
    }
    char *text, err[512];
    if (fu_tokenizer_decode(t, ids, n, skip_special, &text, &len, err, sizeof err)) {
        fprintf(stderr, "router: %s\n", err);
        goto done;
    }
    fwrite(text, 1, len, stdout);
    free(text);
    status = T_OK;
done:
    fu_tokenizer_free(t);
    free(ids);
    free(buf);
    free(args);
    return status;
}

/* ---- route ---------------------------------------------------------------------------- */

static void print_result(const fusec_router_result *r, int json, const char *label) {
    if (json) {
        json_object *o = json_object_new_object();
        if (label) json_object_object_add(o, "line", json_object_new_string(label));
        json_object_object_add(o, "agent_id", json_object_new_int(r->agent_id));
        json_object_object_add(o, "role_id", json_object_new_int(r->role_id));
        json_object_object_add(o, "role", json_object_new_string(role_names[r->role_id]));
        json_object_object_add(o, "agent_margin", json_object_new_double(r->agent_margin));
        json_object_object_add(o, "role_margin", json_object_new_double(r->role_margin));
        json_object_object_add(o, "route_hash", json_object_new_string(r->route_hash));
        json_object_object_add(o, "tokens", json_object_new_int(r->n_tokens));
        json_object_object_add(o, "truncated_tokens", json_object_new_int(r->n_dropped));
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
        return;
    }
    printf("%s%sagent %d (+%.4f)  role %d %s (+%.4f)  route_hash %s  tokens %d", label ? label : "",
           label ? ": " : "", r->agent_id, r->agent_margin, r->role_id, role_names[r->role_id], r->role_margin,
           r->route_hash, r->n_tokens);
    if (r->n_dropped) printf(" (%d truncated)", r->n_dropped);
    putchar('\n');
}

/* Routes one conversation's JSON; prints the result or why not. */
static int route_one(fusec_router *r, const char *json, size_t len, const char *where, int json_out,
                     const char *label) {
    char *text, err[1024];
    if (fusec_router_transcript(json, len, &text, err, sizeof err)) {
        fprintf(stderr, "router: %s: %s\n", where, err);
        return -1;
    }
    const char *texts[1] = {text};
    fusec_router_result res;
    int rc = fusec_router_route(r, texts, 1, &res);
    if (rc) {
        const char *why = fusec_router_error(r);
        if (!strncmp(why, "text 0: ", 8)) why += 8;
        fprintf(stderr, "router: %s: %s\n", where, why);
    } else {
        print_result(&res, json_out, label);
    }
    free(text);
    return rc;
}

int route_main(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        fputs(route_help, stdout);
        return T_OK;
    }
    const char *messages = NULL, *batch = NULL, *config = "qwen3-0.6b", *model = NULL, *tok_path = NULL;
    fusec_router_options o = {.profile = "fast", .backend = "jit", .precision = "f32"};
    int json_out = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) {
            json_out = 1;
            continue;
        }
        if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
            o.verbose = 1;
            continue;
        }
        if (!strcmp(a, "-")) {
            messages = "-";
            continue;
        }
        if (!v) {
            fprintf(stderr, "router: unknown option or missing value: %s (see router route --help)\n", a);
            return T_SETUP;
        }
        i++;
        if (!strcmp(a, "--messages")) messages = v;
        else if (!strcmp(a, "--batch")) batch = v;
        else if (!strcmp(a, "--config")) config = v;
        else if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--tokenizer")) tok_path = v;
        else if (!strcmp(a, "--profile")) o.profile = v;
        else if (!strcmp(a, "--backend")) o.backend = v;
        else if (!strcmp(a, "--precision")) o.precision = v;
        else if (!strcmp(a, "--batch-size")) {
            char *end;
            long bs = strtol(v, &end, 10);
            if (*end || end == v || bs < 1 || bs > 4096) {
                fprintf(stderr, "router: --batch-size wants 1..4096, got '%s'\n", v);
                return T_SETUP;
            }
            o.max_batch = (int)bs;
        }
        else if (!strcmp(a, "--truncate")) {
            if (!strcmp(v, "left")) o.truncate = FUSEC_ROUTER_TRUNCATE_LEFT;
            else if (!strcmp(v, "right")) o.truncate = FUSEC_ROUTER_TRUNCATE_RIGHT;
            else {
                fprintf(stderr, "router: --truncate wants left or right, got '%s'\n", v);
                return T_SETUP;
            }
        } else {
            fprintf(stderr, "router: unknown option %s (see router route --help)\n", a);
            return T_SETUP;
        }
    }
    if (strcmp(o.profile, "bare") && strcmp(o.profile, "fast")) {
        fprintf(stderr, "router: --profile wants bare or fast, got '%s'\n", o.profile);
        return T_SETUP;
    }
    if (strcmp(o.backend, "jit") && strcmp(o.backend, "aot")) {
        fprintf(stderr, "router: --backend wants jit or aot, got '%s'\n", o.backend);
        return T_SETUP;
    }
    if (strcmp(o.precision, "f32") && strcmp(o.precision, "bf16")) {
        fprintf(stderr, "router: --precision wants f32 or bf16, got '%s'\n", o.precision);
        return T_SETUP;
    }
    if (!strcmp(o.precision, "bf16") && !strcmp(o.profile, "bare")) {
        fprintf(stderr, "router: --precision bf16 needs the fast profile\n");
        return T_SETUP;
    }
    if (messages && batch) {
        fprintf(stderr, "router: give --messages or --batch, not both\n");
        return T_SETUP;
    }
    if (!model && strcmp(config, "qwen3-0.6b") && strcmp(config, "tiny")) {
        fprintf(stderr, "router: unknown --config '%s' (qwen3-0.6b or tiny; or give --model)\n", config);
        return T_SETUP;
    }
    /* Read the input first: a bad conversation is refused before any compile. */
    char *input = NULL;
    size_t len = 0;
    if (read_input(batch ? batch : messages, &input, &len)) return T_SETUP;

    char *root = router_root();
    char *model_path = model ? strdup(model) : router_model_path(root, config, batch && o.max_batch != 1);
    char *tok_dflt = tok_path ? NULL : default_tokenizer();
    char *cache_dir = NULL;
    if (root && asprintf(&cache_dir, "%s/build/cache", root) < 0) cache_dir = NULL;
    o.cache_dir = cache_dir;
    int status = T_SETUP;
    fusec_router *r = NULL;
    if (!model_path) goto done;
    char err[2048];
    /* The tokenizer first: it is the cheap one to find missing. */
    fu_tokenizer *probe = open_tokenizer(tok_path);
    if (!probe) goto done;
    fu_tokenizer_free(probe);
    if (!batch) o.max_batch = 1;   /* one conversation: the batched model is not needed */
    if (!(r = fusec_router_open(model_path, tok_path ? tok_path : tok_dflt, &o, err, sizeof err))) {
        fprintf(stderr, "router: %s\n", err);
        goto done;
    }
    if (!batch) {
        status = route_one(r, input, len, messages && strcmp(messages, "-") ? messages : "stdin", json_out, NULL)
                     ? T_FAILED : T_OK;
        goto done;
    }
    /* A batch: one conversation a line (blank lines skipped), all routed by
     * one fusec_router_route call (batches of the batched model). */
    status = T_OK;
    int n_lines = 0, cap = 64, n_texts = 0, routed = 0, failed = 0;
    char **texts = calloc((size_t)cap, sizeof *texts);
    int *line_of = calloc((size_t)cap, sizeof *line_of);
    for (char *p = input; texts && line_of && p < input + len;) {
        char *nl = memchr(p, '\n', (size_t)(input + len - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(input + len - p);
        n_lines++;
        size_t k = 0;
        while (k < n && strchr(" \t\r", p[k])) k++;
        if (k < n) {
            char *text;
            if (fusec_router_transcript(p, n, &text, err, sizeof err)) {
                fprintf(stderr, "router: %s line %d: %s\n", batch, n_lines, err);
                failed++;
            } else {
                if (n_texts == cap) {
                    cap *= 2;
                    char **t2 = realloc(texts, (size_t)cap * sizeof *texts);
                    int *l2 = t2 ? realloc(line_of, (size_t)cap * sizeof *line_of) : NULL;
                    if (t2) texts = t2;
                    if (l2) line_of = l2;
                    if (!t2 || !l2) {
                        free(text);
                        break;
                    }
                }
                texts[n_texts] = text;
                line_of[n_texts++] = n_lines;
            }
        }
        p += n + 1;
    }
    fusec_router_result *res = calloc((size_t)n_texts + 1, sizeof *res);
    if (!texts || !line_of || !res) {
        fprintf(stderr, "router: out of memory\n");
        status = T_SETUP;
    } else if (n_texts) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        fusec_router_route(r, (const char *const *)texts, n_texts, res);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        for (int k = 0; k < n_texts; k++) {
            char label[32];
            snprintf(label, sizeof label, "%d", line_of[k]);
            if (res[k].status) {
                fprintf(stderr, "router: %s line %d: %s\n", batch, line_of[k], res[k].error);
                failed++;
            } else {
                print_result(&res[k], json_out, label);
                routed++;
            }
        }
        int per = fusec_router_batch_size(r);
        fprintf(stderr, "router: routed %d conversation%s in %.3fs (%.1f/s), %d per forward%s\n", routed,
                routed == 1 ? "" : "s", s, s > 0 ? routed / s : 0.0, per > 0 ? per : 1,
                per > 1 ? " (batched)" : "");
    }
    if (status == T_OK && (failed || !routed)) {
        if (!routed && !failed) fprintf(stderr, "router: %s: no conversations\n", batch);
        status = T_FAILED;
    }
    for (int k = 0; texts && k < n_texts; k++) free(texts[k]);
    free(texts);
    free(line_of);
    free(res);
done:
    fusec_router_close(r);
    free(input);
    free(root);
    free(model_path);
    free(tok_dflt);
    free(cache_dir);
    return status;
}
