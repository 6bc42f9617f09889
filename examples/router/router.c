/* router eval: routes the 37 prompt-eval cases through the router model
 * compiled by fusec, and checks every route against a reference snapshot.
 *
 *   router eval [--config NAME] [--model MODEL.json] [--profile bare|fast]
 *               [--backend jit|aot] [--case ID]... [--determinism-runs N] ...
 *
 * The router (examples/router/gen_router.py) maps token ids [1, T] to 10
 * logits: slots 0-6 score the agents, 7-9 the roles (Worker, Thinker,
 * Verifier). Each decision is an argmax (first index wins ties); its margin
 * is top-1 minus top-2 in double. route_hash is the sha256 of
 * "agent=<a>;role=<r>;logits=<l0>,...,<l9>" with each logit printed "%.6f"
 * and "-0.000000" written "0.000000" (examples/router/README.md).
 *
 * A case fails when its agent or role differs from the reference snapshot,
 * when a margin is below its floor (default 80% of the reference's worst),
 * when repeated runs give different route_hashes, or when it cannot run.
 * Exit status: 0 every case passed, 1 some case failed, 2 usage or setup
 * error. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "api/fusec.h"
#include "examples/router/fusec_router.h"
#include "examples/router/router_text.h"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_SETUP = 2 };

#define N_AGENTS 7
#define N_ROLES 3
#define N_LOGITS (N_AGENTS + N_ROLES)
#define MAX_LANES 6
#define PYTHON "/usr/bin/python3"
#define DEFAULT_CONFIG "qwen3-0.6b"
/* The configs examples/router/gen_router.py (CONFIGS) and reference.py make. */
#define KNOWN_CONFIGS "qwen3-0.6b or tiny"
static int known_config(const char *name) { return !strcmp(name, "qwen3-0.6b") || !strcmp(name, "tiny"); }
#define FLOOR_FRACTION 0.8   /* default margin floors: this much of the reference's worst */

extern char **environ;

static const char help_text[] =
    "usage: router eval [options]\n"
    "       router tokenize|detokenize|route ... (router COMMAND --help)\n"
    "\n"
    "Compiles the router with fusec and routes every eval case (fixtures/router/cases.json),\n"
    "comparing each route with a reference snapshot from an independent numpy forward pass.\n"
    "Without --profile/--backend/--precision it runs six lanes side by side: bare/fast x\n"
    "jit/aot in float32, and fast x jit/aot with --precision bf16 (fast/jit/bf16, fast/aot/bf16).\n"
    "\n"
    "options:\n"
    "  --config NAME            qwen3-0.6b (default) or tiny; the model is generated under\n"
    "                           build/router-models/NAME/ when missing (installed: under\n"
    "                           router-models/NAME/ in the fusec cache, ~/.cache/fusec)\n"
    "  --model MODEL.json       route with this router IR instead (e.g. a real checkpoint)\n"
    "  --profile bare|fast      run only this profile\n"
    "  --backend jit|aot        run only this backend\n"
    "  --precision f32|bf16     run only this matmul precision (bf16: activations rounded to\n"
    "                           bfloat16 against bfloat16-packed weights; fast profile only)\n"
    "  --case ID                route only this case (repeatable)\n"
    "  --list-cases             print the cases and exit\n"
    "  --determinism-runs N     runs per case; all must give one route_hash (default 2)\n"
    "  --min-agent-margin X     agent margin floor (default 80% of the reference's worst;\n"
    "                           bf16 lanes: none unless given, their margin drift is reported)\n"
    "  --min-role-margin X      role margin floor (default 80% of the reference's worst; as above)\n"
    "  --snapshot FILE          reference snapshot (default fixtures/router/NAME/reference.json)\n"
    "  --snapshot-out PATH      write this run's snapshot: a file for one lane; for several,\n"
    "                           a directory getting PROFILE.json (or PROFILE-BACKEND.json)\n"
    "  --cases FILE             eval cases (default fixtures/router/cases.json)\n"
    "  --verbose                logits and margins of every case, compile steps\n"
    "  -h, --help               this text\n"
    "\n"
    "Exit status: 0 all cases passed, 1 a case failed, 2 usage or setup error.\n";

typedef struct {
    const char *config;
    int config_given;
    const char *model;
    const char *profile;   /* NULL: both */
    const char *backend;   /* NULL: both */
    const char *precision; /* NULL: both */
    const char **case_ids;
    int n_case_ids;
    int list_cases;
    int determinism_runs;
    double min_agent_margin, min_role_margin;   /* NAN: from the reference */
    const char *snapshot;
    const char *snapshot_out;
    const char *cases;
    int verbose;
} options;

typedef struct {
    char *id;
    int64_t *input_ids;
    int token_count;
} eval_case;

/* One routing decision: what a snapshot stores per case (decided by
 * fusec_router_decide, examples/router/fusec_router.c). */
typedef fusec_router_result route;

typedef struct {
    const char *profile, *backend, *precision;
    char name[32];          /* "fast/aot", or "fast/aot/bf16" */
    int loaded;
    route *routes;          /* per selected case (first run) */
    char **failure;         /* per selected case: NULL or why it failed */
    int *ran;               /* per selected case: every run gave logits */
    int *deterministic;     /* per selected case */
    double load_seconds, forward_seconds, wall_seconds;
    int forward_runs;
} lane;

typedef struct {
    route *routes;          /* per selected case, matched by id */
    double worst_agent_margin, worst_role_margin;
} snapshot;

static void die_oom(void) {
    fprintf(stderr, "router: out of memory\n");
    exit(EXIT_SETUP);
}

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) die_oom();
    return p;
}

static char *xstrdup(const char *s) {
    char *p = strdup(s);
    if (!p) die_oom();
    return p;
}

static char *xasprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) die_oom();
    return s;
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- options ---------------------------------------------------------------- */

static int parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static int parse_options(int argc, char **argv, options *o) {
    o->config = DEFAULT_CONFIG;
    o->determinism_runs = 2;
    o->min_agent_margin = o->min_role_margin = NAN;
    o->case_ids = xcalloc((size_t)argc, sizeof *o->case_ids);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        int takes_value = 1;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(help_text, stdout);
            exit(EXIT_OK);
        } else if (!strcmp(a, "--list-cases")) {
            o->list_cases = 1, takes_value = 0;
        } else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
            o->verbose = 1, takes_value = 0;
        }
        if (!takes_value) continue;
        if (!value) {
            fprintf(stderr, "router: unknown option or missing value: %s (see router eval --help)\n", a);
            return -1;
        }
        i++;
        if (!strcmp(a, "--config")) o->config = value, o->config_given = 1;
        else if (!strcmp(a, "--model")) o->model = value;
        else if (!strcmp(a, "--profile")) o->profile = value;
        else if (!strcmp(a, "--backend")) o->backend = value;
        else if (!strcmp(a, "--precision")) o->precision = value;
        else if (!strcmp(a, "--case")) o->case_ids[o->n_case_ids++] = value;
        else if (!strcmp(a, "--snapshot")) o->snapshot = value;
        else if (!strcmp(a, "--snapshot-out")) o->snapshot_out = value;
        else if (!strcmp(a, "--cases")) o->cases = value;
        else if (!strcmp(a, "--determinism-runs")) {
            char *end;
            long n = strtol(value, &end, 10);
            if (*end || end == value || n < 1 || n > 1000) {
                fprintf(stderr, "router: --determinism-runs wants 1..1000, got '%s'\n", value);
                return -1;
            }
            o->determinism_runs = (int)n;
        } else if (!strcmp(a, "--min-agent-margin") || !strcmp(a, "--min-role-margin")) {
            double *floor = a[6] == 'a' ? &o->min_agent_margin : &o->min_role_margin;
            if (parse_double(value, floor)) {
                fprintf(stderr, "router: %s wants a number, got '%s'\n", a, value);
                return -1;
            }
        } else {
            fprintf(stderr, "router: unknown option %s (see router eval --help)\n", a);
            return -1;
        }
    }
    if (o->profile && strcmp(o->profile, "bare") && strcmp(o->profile, "fast")) {
        fprintf(stderr, "router: --profile wants bare or fast, got '%s'\n", o->profile);
        return -1;
    }
    if (o->precision && strcmp(o->precision, "f32") && strcmp(o->precision, "bf16")) {
        fprintf(stderr, "router: --precision wants f32 or bf16, got '%s'\n", o->precision);
        return -1;
    }
    if (o->precision && o->profile && !strcmp(o->precision, "bf16") && !strcmp(o->profile, "bare")) {
        fprintf(stderr, "router: --precision bf16 needs the fast profile\n");
        return -1;
    }
    if (o->backend && strcmp(o->backend, "jit") && strcmp(o->backend, "aot")) {
        fprintf(stderr, "router: --backend wants jit or aot, got '%s'\n", o->backend);
        return -1;
    }
    /* A model of one's own is compared with a reference that must be named:
     * silently using the default config's would report nonsense. */
    if (o->model && !o->config_given && !o->snapshot) {
        fprintf(stderr, "router: --model needs the reference its decisions are compared with: --config NAME "
                        "(fixtures/router/NAME/reference.json; %s) or --snapshot FILE\n", KNOWN_CONFIGS);
        return -1;
    }
    if (!o->snapshot && !known_config(o->config)) {
        fprintf(stderr, "router: unknown --config '%s' (%s; or give --snapshot FILE)\n", o->config, KNOWN_CONFIGS);
        return -1;
    }
    /* The config name becomes a path component under build/ and fixtures/. */
    if (!o->config[0] || o->config[0] == '.' || strspn(o->config, "abcdefghijklmnopqrstuvwxyz"
                                                       "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != strlen(o->config)) {
        fprintf(stderr, "router: bad --config name '%s'\n", o->config);
        return -1;
    }
    return 0;
}

/* Where the eval cases, references and generator scripts are: the
 * repository root, two levels above this executable (build/router), when
 * the eval cases are there; else, for an installed router (PREFIX/bin),
 * PREFIX/share/fusec, which holds them in the repository's layout
 * (`make install`), and *installed is set; else the current directory. */
static char *find_root(int *installed) {
    *installed = 0;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        for (int up = 0; up < 2; up++) {
            char *slash = strrchr(exe, '/');
            if (slash) *slash = 0;
        }
        char *probe = xasprintf("%s/fixtures/router/cases.json", exe);
        int found = access(probe, R_OK) == 0;
        free(probe);
        if (found) return xstrdup(exe);
        probe = xasprintf("%s/share/fusec/fixtures/router/cases.json", exe);
        found = access(probe, R_OK) == 0;
        free(probe);
        if (found) {
            *installed = 1;
            return xasprintf("%s/share/fusec", exe);
        }
    }
    return xstrdup(".");
}

/* The user's fusec cache, as fusec_load's default (api/fusec.h): an
 * installed router generates its models there, not under PREFIX. */
static char *user_cache_dir(void) {
    const char *own = getenv("FUSEC_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (own && *own) return xstrdup(own);
    if (xdg && *xdg == '/') return xasprintf("%s/fusec", xdg);
    if (home && *home) return xasprintf("%s/.cache/fusec", home);
    return xasprintf("/tmp/fusec-cache-%ld", (long)getuid());
}

/* ---- cases and snapshots ---------------------------------------------------- */

static json_object *read_json(const char *path) {
    json_object *j = json_object_from_file(path);
    if (!j) fprintf(stderr, "router: %s: %s\n", path, json_util_get_last_err());
    return j;
}

static void free_cases(eval_case *cases, int n) {
    for (int i = 0; i < n; i++) {
        free(cases[i].id);
        free(cases[i].input_ids);
    }
    free(cases);
}

static int load_cases(const char *path, eval_case **out, int *n_out) {
    json_object *root = read_json(path), *list;
    if (!root) return -1;
    if (!json_object_object_get_ex(root, "cases", &list) || !json_object_is_type(list, json_type_array)) {
        fprintf(stderr, "router: %s: no \"cases\" array\n", path);
        json_object_put(root);
        return -1;
    }
    int n = (int)json_object_array_length(list);
    eval_case *cases = xcalloc((size_t)n, sizeof *cases);
    for (int i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(list, (size_t)i), *id, *ids;
        if (!json_object_object_get_ex(c, "id", &id) || !json_object_is_type(id, json_type_string) ||
            !json_object_object_get_ex(c, "input_ids", &ids) || !json_object_is_type(ids, json_type_array) ||
            json_object_array_length(ids) == 0) {
            fprintf(stderr, "router: %s: case %d needs an \"id\" and non-empty \"input_ids\"\n", path, i);
            free_cases(cases, i + 1);
            json_object_put(root);
            return -1;
        }
        cases[i].id = xstrdup(json_object_get_string(id));
        cases[i].token_count = (int)json_object_array_length(ids);
        cases[i].input_ids = xcalloc((size_t)cases[i].token_count, sizeof(int64_t));
        for (int t = 0; t < cases[i].token_count; t++) {
            json_object *tok = json_object_array_get_idx(ids, (size_t)t);
            if (!json_object_is_type(tok, json_type_int) || json_object_get_int64(tok) < 0) {
                fprintf(stderr, "router: %s: case '%s': token %d is not a non-negative integer\n", path,
                        cases[i].id, t);
                free_cases(cases, i + 1);
                json_object_put(root);
                return -1;
            }
            cases[i].input_ids[t] = json_object_get_int64(tok);
        }
    }
    json_object_put(root);
    *out = cases;
    *n_out = n;
    return 0;
}

static int get_number(json_object *obj, const char *key, double *out) {
    json_object *v;
    if (!json_object_object_get_ex(obj, key, &v) ||
        !(json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int)))
        return -1;
    *out = json_object_get_double(v);
    return 0;
}

/* Reads the routes of the selected cases from a snapshot file (reference.json
 * or one written by --snapshot-out). */
static int load_snapshot(const char *path, eval_case *const *selected, int n_selected, snapshot *s) {
    json_object *root = read_json(path), *list;
    if (!root) return -1;
    int rc = -1;
    s->routes = xcalloc((size_t)n_selected, sizeof *s->routes);
    if (get_number(root, "worst_agent_margin", &s->worst_agent_margin) ||
        get_number(root, "worst_role_margin", &s->worst_role_margin) ||
        !json_object_object_get_ex(root, "cases", &list) || !json_object_is_type(list, json_type_array)) {
        fprintf(stderr, "router: %s: not a router snapshot (needs worst_agent_margin, worst_role_margin, cases)\n",
                path);
        goto done;
    }
    for (int k = 0; k < n_selected; k++) {
        json_object *found = NULL;
        for (size_t i = 0; i < json_object_array_length(list); i++) {
            json_object *c = json_object_array_get_idx(list, i), *id;
            if (json_object_object_get_ex(c, "id", &id) && !strcmp(json_object_get_string(id), selected[k]->id)) {
                found = c;
                break;
            }
        }
        route *r = &s->routes[k];
        json_object *hash, *logits;
        double agent, role;
        if (!found || get_number(found, "agent_id", &agent) || get_number(found, "role_id", &role) ||
            get_number(found, "agent_margin", &r->agent_margin) ||
            get_number(found, "role_margin", &r->role_margin) ||
            !json_object_object_get_ex(found, "route_hash", &hash) ||
            strlen(json_object_get_string(hash)) != 64 ||
            !json_object_object_get_ex(found, "logits", &logits) ||
            json_object_array_length(logits) != N_LOGITS) {
            fprintf(stderr, "router: %s: no complete entry for case '%s'\n", path, selected[k]->id);
            goto done;
        }
        r->agent_id = (int)agent;
        r->role_id = (int)role;
        snprintf(r->route_hash, sizeof r->route_hash, "%s", json_object_get_string(hash));
        for (int j = 0; j < N_LOGITS; j++)
            r->logits[j] = json_object_get_double(json_object_array_get_idx(logits, (size_t)j));
    }
    rc = 0;
done:
    json_object_put(root);
    return rc;
}

/* ---- routing ------------------------------------------------------------------ */

static void route_from_logits(const float *logits, route *r) { fusec_router_decide(logits, r); }

static int logits_finite(const route *r) {
    for (int i = 0; i < N_LOGITS; i++)
        if (!isfinite(r->logits[i])) return 0;
    return 1;
}

/* One forward pass of a case; fills r. On error returns -1 with *why set. */
static int route_case(fusec_model *m, const eval_case *c, route *r, char **why) {
    int64_t shape[8] = {1, c->token_count};
    fusec_dtype dtype;
    int rank;
    const void *data;
    if (fusec_set_input(m, "input_ids", FUSEC_INT64, 2, shape, c->input_ids) || fusec_run(m) ||
        fusec_get_output(m, "logits", &dtype, &rank, shape, &data)) {
        *why = xasprintf("run failed: %s", fusec_last_error(m));
        return -1;
    }
    if (dtype != FUSEC_FLOAT32 || rank != 2 || shape[0] != 1 || shape[1] != N_LOGITS) {
        *why = xasprintf("output 'logits' is not float32 [1, %d]", N_LOGITS);
        return -1;
    }
    route_from_logits(data, r);
    return 0;
}

static void print_route(const eval_case *c, const route *r, int ran, const char *why, int verbose) {
    const char *status = why ? "FAIL" : "ok";
    if (!ran) {
        printf("  %-4s %-26s T=%-3d %s\n", status, c->id, c->token_count, why);
        return;
    }
    printf("  %-4s %-26s T=%-3d agent %d (+%.3f)  role %d (+%.3f)  %.16s%s%s\n", status, c->id, c->token_count,
           r->agent_id, r->agent_margin, r->role_id, r->role_margin, r->route_hash, why ? "  " : "",
           why ? why : "");
    if (verbose) {
        printf("       logits");
        for (int i = 0; i < N_LOGITS; i++) printf(" %.6f", r->logits[i]);
        printf("\n");
    }
}

typedef struct {
    const options *opts;
    const char *model_path;
    const char *cache_dir;
    eval_case *const *cases;
    int n_cases;
    const snapshot *reference;
    double agent_floor, role_floor;
    int print_every_case;
} eval_setup;

static void run_lane(const eval_setup *s, lane *L) {
    double start = now_seconds();
    int n = s->n_cases;
    L->routes = xcalloc((size_t)n, sizeof *L->routes);
    L->failure = xcalloc((size_t)n, sizeof *L->failure);
    L->ran = xcalloc((size_t)n, sizeof *L->ran);
    L->deterministic = xcalloc((size_t)n, sizeof *L->deterministic);
    printf("lane %s: ", L->name);
    fflush(stdout);

    fusec_options fo = {.profile = L->profile, .backend = L->backend, .cache_dir = s->cache_dir,
                        .verbose = s->opts->verbose, .precision = L->precision};
    char err[4096] = "";
    fusec_model *m = fusec_load(s->model_path, &fo, err, sizeof err);
    L->load_seconds = now_seconds() - start;
    if (!m) {
        printf("load failed\n");
        fprintf(stderr, "router: %s\n", err);
        for (int k = 0; k < n; k++) L->failure[k] = xasprintf("model did not load");
        L->wall_seconds = now_seconds() - start;
        return;
    }
    L->loaded = 1;
    printf("compiled and loaded in %.2fs\n", L->load_seconds);
    /* bf16 precision moves every logit by design: its lanes must keep the
     * reference's decisions, and report how far the margins drift, but the
     * default floors (fractions of the float64 margins) do not apply. */
    int bf16 = !strcmp(L->precision, "bf16");
    double agent_floor = bf16 && isnan(s->opts->min_agent_margin) ? 0.0 : s->agent_floor;
    double role_floor = bf16 && isnan(s->opts->min_role_margin) ? 0.0 : s->role_floor;

    for (int k = 0; k < n; k++) {
        const eval_case *c = s->cases[k];
        const route *ref = &s->reference->routes[k];
        route *r = &L->routes[k];
        char *why = NULL;
        double t0 = now_seconds();
        int ok = route_case(m, c, r, &why) == 0;
        int deterministic = ok;
        for (int run = 1; ok && run < s->opts->determinism_runs; run++) {
            route again;
            if (route_case(m, c, &again, &why)) {
                ok = deterministic = 0;
            } else if (strcmp(again.route_hash, r->route_hash)) {
                deterministic = 0;
            }
        }
        L->forward_seconds += now_seconds() - t0;
        L->forward_runs += s->opts->determinism_runs;
        L->deterministic[k] = deterministic;
        L->ran[k] = ok;
        if (ok) {
            if (!logits_finite(r)) why = xasprintf("non-finite logits");
            else if (r->agent_id != ref->agent_id || r->role_id != ref->role_id)
                why = xasprintf("decision %d/%d, reference %d/%d", r->agent_id, r->role_id, ref->agent_id,
                                ref->role_id);
            else if (r->agent_margin < agent_floor)
                why = xasprintf("agent margin %.4f below floor %.4f", r->agent_margin, agent_floor);
            else if (r->role_margin < role_floor)
                why = xasprintf("role margin %.4f below floor %.4f", r->role_margin, role_floor);
            else if (!deterministic)
                why = xasprintf("route_hash differs between runs");
        }
        L->failure[k] = why;
        if (s->print_every_case || why || s->opts->verbose) print_route(c, r, ok, why, s->opts->verbose);
    }
    fusec_free(m);
    L->wall_seconds = now_seconds() - start;
}

/* ---- summaries ------------------------------------------------------------------- */

typedef struct {
    int passed, decisions, drift, deterministic;
    double worst_agent, worst_role;
    double max_logit_error;   /* largest |logit - reference logit| */
    double agent_margin_drift, role_margin_drift;   /* largest |margin - reference margin| */
} lane_stats;

static lane_stats stats_of(const eval_setup *s, const lane *L) {
    lane_stats st = {.worst_agent = INFINITY, .worst_role = INFINITY};
    for (int k = 0; k < s->n_cases; k++) {
        const route *r = &L->routes[k], *ref = &s->reference->routes[k];
        st.passed += L->failure[k] == NULL;
        st.deterministic += L->deterministic[k];
        if (!L->ran[k]) {
            st.drift++;
            continue;
        }
        st.decisions += r->agent_id == ref->agent_id && r->role_id == ref->role_id;
        st.drift += strcmp(r->route_hash, ref->route_hash) != 0;
        if (r->agent_margin < st.worst_agent) st.worst_agent = r->agent_margin;
        if (r->role_margin < st.worst_role) st.worst_role = r->role_margin;
        for (int i = 0; i < N_LOGITS; i++) st.max_logit_error = fmax(st.max_logit_error, fabs(r->logits[i] - ref->logits[i]));
        st.agent_margin_drift = fmax(st.agent_margin_drift, fabs(r->agent_margin - ref->agent_margin));
        st.role_margin_drift = fmax(st.role_margin_drift, fabs(r->role_margin - ref->role_margin));
    }
    return st;
}

static void print_summary(const eval_setup *s, const lane *L) {
    lane_stats st = stats_of(s, L);
    int n = s->n_cases;
    printf("%s: passed %d/%d · decisions vs reference %d/%d · route_hash drift vs reference %d/%d · "
           "deterministic %d/%d · worst margins %.3f/%.3f · margin drift %.2g/%.2g · max |logit - reference| %.2g · "
           "wall-clock %.2fs\n",
           L->name, st.passed, n, st.decisions, n, st.drift, n, st.deterministic, n, st.worst_agent, st.worst_role,
           st.agent_margin_drift, st.role_margin_drift, st.max_logit_error, L->wall_seconds);
}

/* Cases whose route_hash differs between a fast lane and the bare lane of
 * the same backend; -1 when that bare lane was not run. */
static int drift_vs_bare(const eval_setup *s, const lane *lanes, int n_lanes, const lane *L) {
    if (strcmp(L->profile, "fast")) return -1;
    for (int i = 0; i < n_lanes; i++) {
        const lane *bare = &lanes[i];
        if (strcmp(bare->profile, "bare") || strcmp(bare->backend, L->backend)) continue;
        int drift = 0;
        for (int k = 0; k < s->n_cases; k++)
            drift += !bare->ran[k] || !L->ran[k] || strcmp(bare->routes[k].route_hash, L->routes[k].route_hash);
        return drift;
    }
    return -1;
}

static void print_table(const eval_setup *s, const lane *lanes, int n_lanes) {
    int n = s->n_cases;
    printf("\n%-14s %-7s %-9s %-9s %-10s %-13s %-13s %-15s %-9s %7s %9s %8s\n", "lane", "passed", "decisions",
           "drift/ref", "drift/bare", "deterministic", "worst a/r", "margin drift", "max|dlog|", "load", "fwd/case",
           "wall");
    for (int i = 0; i < n_lanes; i++) {
        const lane *L = &lanes[i];
        lane_stats st = stats_of(s, L);
        char passed[32], decisions[32], drift[32], bare[32], det[32], worst[64], margin_drift[64];
        snprintf(passed, sizeof passed, "%d/%d", st.passed, n);
        snprintf(decisions, sizeof decisions, "%d/%d", st.decisions, n);
        snprintf(drift, sizeof drift, "%d/%d", st.drift, n);
        int vs_bare = drift_vs_bare(s, lanes, n_lanes, L);
        if (vs_bare < 0) snprintf(bare, sizeof bare, "-");
        else snprintf(bare, sizeof bare, "%d/%d", vs_bare, n);
        snprintf(det, sizeof det, "%d/%d", st.deterministic, n);
        snprintf(worst, sizeof worst, "%.3f/%.3f", st.worst_agent, st.worst_role);
        snprintf(margin_drift, sizeof margin_drift, "%.2g/%.2g", st.agent_margin_drift, st.role_margin_drift);
        double per_case_ms = L->forward_runs ? 1e3 * L->forward_seconds / L->forward_runs : 0.0;
        printf("%-14s %-7s %-9s %-9s %-10s %-13s %-13s %-15s %-9.2g %6.2fs %7.1fms %7.2fs\n", L->name, passed,
               decisions, drift, bare, det, worst, margin_drift, st.max_logit_error, L->load_seconds, per_case_ms,
               L->wall_seconds);
    }
}

/* ---- snapshots out ------------------------------------------------------------------ */

static json_object *json_number(double v) {
    char text[64];
    snprintf(text, sizeof text, "%.9g", v);
    return json_object_new_double_s(v, text);
}

static int write_snapshot(const char *path, const char *config, const eval_setup *s, const lane *L) {
    json_object *root = json_object_new_object(), *list = json_object_new_array();
    double worst_agent = INFINITY, worst_role = INFINITY;
    for (int k = 0; k < s->n_cases; k++) {
        const route *r = &L->routes[k];
        json_object *c = json_object_new_object(), *logits = json_object_new_array();
        json_object_object_add(c, "id", json_object_new_string(s->cases[k]->id));
        json_object_object_add(c, "token_count", json_object_new_int(s->cases[k]->token_count));
        json_object_object_add(c, "agent_id", json_object_new_int(r->agent_id));
        json_object_object_add(c, "role_id", json_object_new_int(r->role_id));
        json_object_object_add(c, "agent_margin", json_number(r->agent_margin));
        json_object_object_add(c, "role_margin", json_number(r->role_margin));
        json_object_object_add(c, "route_hash", json_object_new_string(r->route_hash));
        for (int i = 0; i < N_LOGITS; i++) json_object_array_add(logits, json_number(r->logits[i]));
        json_object_object_add(c, "logits", logits);
        json_object_array_add(list, c);
        if (r->agent_margin < worst_agent) worst_agent = r->agent_margin;
        if (r->role_margin < worst_role) worst_role = r->role_margin;
    }
    char *source = xasprintf("router eval (fusec, profile %s, backend %s, precision %s)", L->profile, L->backend,
                             L->precision);
    json_object_object_add(root, "schema_version", json_object_new_int(1));
    json_object_object_add(root, "config", json_object_new_string(config));
    json_object_object_add(root, "source", json_object_new_string(source));
    json_object_object_add(root, "worst_agent_margin", json_number(worst_agent));
    json_object_object_add(root, "worst_role_margin", json_number(worst_role));
    json_object_object_add(root, "cases", list);
    free(source);
    char *partial = xasprintf("%s.partial", path);
    int rc = json_object_to_file_ext(partial, root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
    if (rc == 0 && rename(partial, path) != 0) rc = -1;
    if (rc) {
        fprintf(stderr, "router: cannot write snapshot %s: %s\n", path, strerror(errno));
        unlink(partial);
    } else {
        printf("wrote snapshot %s\n", path);
    }
    free(partial);
    json_object_put(root);
    return rc;
}

/* ---- model generation ------------------------------------------------------------ */

/* Runs gen_router.py for the config (no shell: the name goes as an argument). */
static int generate_model(const char *root, const char *config, const char *out_dir) {
    char *script = xasprintf("%s/examples/router/gen_router.py", root);
    char *argv[] = {PYTHON, script, "--config", (char *)config, "--out", (char *)out_dir, NULL};
    printf("generating the %s router under %s\n", config, out_dir);
    fflush(stdout);
    pid_t pid;
    int rc = posix_spawn(&pid, PYTHON, NULL, NULL, argv, environ);
    free(script);
    if (rc) {
        fprintf(stderr, "router: cannot run %s: %s\n", PYTHON, strerror(rc));
        return -1;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            fprintf(stderr, "router: waitpid: %s\n", strerror(errno));
            return -1;
        }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "router: gen_router.py failed for config '%s'\n", config);
        return -1;
    }
    return 0;
}

/* ---- main ------------------------------------------------------------------------ */

static int eval_main(int argc, char **argv) {
    options o = {0};
    if (parse_options(argc, argv, &o)) {
        free(o.case_ids);
        return EXIT_SETUP;
    }
    int installed;
    char *root = find_root(&installed);
    char *user_cache = installed ? user_cache_dir() : NULL;
    char *cases_path = o.cases ? xstrdup(o.cases) : xasprintf("%s/fixtures/router/cases.json", root);
    char *model_dir = installed ? xasprintf("%s/router-models/%s", user_cache, o.config)
                                : xasprintf("%s/build/router-models/%s", root, o.config);
    char *model_path = o.model ? xstrdup(o.model) : xasprintf("%s/model.json", model_dir);
    char *snapshot_path = o.snapshot ? xstrdup(o.snapshot)
                                     : xasprintf("%s/fixtures/router/%s/reference.json", root, o.config);
    char *cache_dir = installed ? NULL : xasprintf("%s/build/cache", root);   /* installed: the default */
    eval_case *cases = NULL;
    eval_case **selected = NULL;
    snapshot reference = {0};
    lane lanes[MAX_LANES] = {{0}};
    int n_lanes = 0, n_cases = 0, n_selected = 0, status = EXIT_SETUP;

    if (load_cases(cases_path, &cases, &n_cases)) goto done;
    if (o.list_cases) {
        for (int i = 0; i < n_cases; i++) printf("%-26s %d tokens\n", cases[i].id, cases[i].token_count);
        status = EXIT_OK;
        goto done;
    }
    selected = xcalloc((size_t)n_cases, sizeof *selected);
    if (o.n_case_ids == 0) {
        for (int i = 0; i < n_cases; i++) selected[n_selected++] = &cases[i];
    } else {
        for (int i = 0; i < n_cases; i++)
            for (int j = 0; j < o.n_case_ids; j++)
                if (!strcmp(cases[i].id, o.case_ids[j])) {
                    selected[n_selected++] = &cases[i];
                    break;
                }
        for (int j = 0; j < o.n_case_ids; j++) {
            int known = 0;
            for (int i = 0; i < n_cases; i++) known |= !strcmp(cases[i].id, o.case_ids[j]);
            if (!known) {
                fprintf(stderr, "router: no case '%s' in %s (see --list-cases)\n", o.case_ids[j], cases_path);
                goto done;
            }
        }
    }
    if (load_snapshot(snapshot_path, selected, n_selected, &reference)) {
        fprintf(stderr, "router: make a reference with: %s examples/router/reference.py --config %s\n", PYTHON,
                o.config);
        goto done;
    }
    if (!o.model && access(model_path, R_OK) != 0 && generate_model(root, o.config, model_dir)) goto done;

    static const char *const profiles[] = {"bare", "fast"}, *const backends[] = {"jit", "aot"},
                             *const precisions[] = {"f32", "bf16"};
    for (int x = 0; x < 2; x++)
        for (int p = 0; p < 2; p++)
            for (int b = 0; b < 2; b++) {
                if ((o.profile && strcmp(o.profile, profiles[p])) || (o.backend && strcmp(o.backend, backends[b])) ||
                    (o.precision && strcmp(o.precision, precisions[x])))
                    continue;
                if (x == 1 && p == 0) continue;   /* bf16 precision is a fast-profile option */
                lane *L = &lanes[n_lanes++];
                L->profile = profiles[p];
                L->backend = backends[b];
                L->precision = precisions[x];
                snprintf(L->name, sizeof L->name, "%s/%s%s", L->profile, L->backend, x ? "/bf16" : "");
            }

    eval_setup setup = {
        .opts = &o, .model_path = model_path, .cache_dir = cache_dir, .cases = selected, .n_cases = n_selected,
        .reference = &reference,
        .agent_floor = isnan(o.min_agent_margin) ? FLOOR_FRACTION * reference.worst_agent_margin : o.min_agent_margin,
        .role_floor = isnan(o.min_role_margin) ? FLOOR_FRACTION * reference.worst_role_margin : o.min_role_margin,
        .print_every_case = n_lanes == 1,
    };
    printf("router eval: %s, %d cases, reference %s, floors %.3f/%.3f, %d run%s per case\n", model_path,
           n_selected, snapshot_path, setup.agent_floor, setup.role_floor, o.determinism_runs,
           o.determinism_runs == 1 ? "" : "s");
    for (int i = 0; i < n_lanes; i++) run_lane(&setup, &lanes[i]);

    printf("\n");
    int failed = 0;
    for (int i = 0; i < n_lanes; i++) {
        print_summary(&setup, &lanes[i]);
        failed |= stats_of(&setup, &lanes[i]).passed != n_selected;
    }
    if (n_lanes > 1) print_table(&setup, lanes, n_lanes);

    if (o.snapshot_out) {
        if (n_lanes > 1 && mkdir(o.snapshot_out, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "router: cannot create %s: %s\n", o.snapshot_out, strerror(errno));
            failed = 1;
        }
        int same_backend = 1;
        for (int i = 1; i < n_lanes; i++) same_backend &= !strcmp(lanes[i].backend, lanes[0].backend);
        for (int i = 0; i < n_lanes; i++) {
            int complete = lanes[i].loaded;
            for (int k = 0; k < n_selected; k++) complete &= lanes[i].ran[k];
            if (!complete) {
                printf("no snapshot for %s: some cases did not run\n", lanes[i].name);
                failed = 1;
                continue;
            }
            const char *suffix = strcmp(lanes[i].precision, "f32") ? "-bf16" : "";
            char *path = n_lanes == 1 ? xstrdup(o.snapshot_out)
                         : same_backend ? xasprintf("%s/%s%s.json", o.snapshot_out, lanes[i].profile, suffix)
                                        : xasprintf("%s/%s-%s%s.json", o.snapshot_out, lanes[i].profile,
                                                    lanes[i].backend, suffix);
            if (write_snapshot(path, o.config, &setup, &lanes[i])) failed = 1;
            free(path);
        }
    }
    status = failed ? EXIT_FAILED : EXIT_OK;

done:
    for (int i = 0; i < n_lanes; i++) {
        for (int k = 0; k < n_selected; k++) free(lanes[i].failure ? lanes[i].failure[k] : NULL);
        free(lanes[i].failure);
        free(lanes[i].routes);
        free(lanes[i].ran);
        free(lanes[i].deterministic);
    }
    free(reference.routes);
    free(selected);
    free_cases(cases, n_cases);
    free(root);
    free(cases_path);
    free(model_dir);
    free(model_path);
    free(snapshot_path);
    free(cache_dir);
    free(user_cache);
    free(o.case_ids);
    return status;
}

/* For the text commands (examples/router/router_text.c). */
char *router_root(void) {
    int installed;
    return find_root(&installed);
}

char *router_model_path(const char *root, const char *config, int want_batch) {
    int installed;
    free(find_root(&installed));
    char *user_cache = installed ? user_cache_dir() : NULL;
    char *model_dir = installed ? xasprintf("%s/router-models/%s", user_cache, config)
                                : xasprintf("%s/build/router-models/%s", root, config);
    free(user_cache);
    char *model_path = xasprintf("%s/model.json", model_dir);
    char *batch_path = xasprintf("%s/model_batch.json", model_dir);
    if (access(model_path, R_OK) != 0 && generate_model(root, config, model_dir)) {
        free(model_path);
        model_path = NULL;
    } else if (want_batch && access(batch_path, R_OK) != 0) {   /* a model from before batches */
        char *script = xasprintf("%s/examples/router/gen_router.py", root);
        char *argv[] = {PYTHON, script, "--config", (char *)config, "--out", model_dir, "--batch-only", NULL};
        pid_t pid;
        int status = 0;
        if (posix_spawn(&pid, PYTHON, NULL, NULL, argv, environ) == 0)
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
        free(script);
    }
    free(batch_path);
    free(model_dir);
    return model_path;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);   /* progress lines show up in logs as they happen */
    fusec_progress(1);                  /* and fusec's: gcc builds, weight packing */
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help"))) {
        fputs(help_text, stdout);
        return EXIT_OK;
    }
    if (argc >= 2 && !strcmp(argv[1], "tokenize")) return tokenize_main(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "detokenize")) return detokenize_main(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "route")) return route_main(argc, argv);
    if (argc < 2 || strcmp(argv[1], "eval")) {
        fputs(help_text, stderr);
        return EXIT_SETUP;
    }
    return eval_main(argc, argv);
}
