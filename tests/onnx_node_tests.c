/* ONNX's node conformance tests (Debian's libonnx-testdata) on fusec.
 *
 * For every directory <data>/<test>/ with a model.onnx: decide whether the
 * test is within what fusec claims (every op in FU_OPS, every graph input
 * and output a tensor of a dtype fusec has, default-domain opset 13..23, or
 * older where every op means the same since, ir/onnx_opset.c);
 * if so load model.onnx with fusec_load, feed each test_data_set_N's
 * input_K.pb (matched to the graph inputs by order, as ONNX's backend test
 * runner does), run, and compare output_K.pb with the graph's output K:
 * same dtype and shape, floats within |got - want| <= atol + rtol * |want|
 * (rtol 1e-3, atol 1e-7: the defaults of onnx/backend/test/case/node),
 * NaN equal to NaN, integers and bools exact.
 *
 * Each test runs in a child process (a crash or hang is that test's
 * failure, not the runner's). Prints the counts and exits non-zero when
 * the pass rate over applicable tests is below 97%, when a test fails
 * that the known-failures file does not list, or when a listed test
 * passes (the file must stay honest) or is not applicable.
 *
 * Usage: onnx_node_tests [--data DIR] [--known FILE] [--backend jit|aot]
 *                        [--cache DIR] [--profile fast|bare] [-v] [TEST...]
 * With TEST names only those run (the 97% bar is then not checked). */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "onnx.pb-c.h"
#include "api/fusec.h"
#include "ir/op_ids.h"
#include "ir/onnx_opset.h"

/* Messages and paths are cut to their buffers on purpose. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#define DEFAULT_DATA "/usr/share/libonnx-testdata/data/node"
#define DEFAULT_KNOWN "tests/onnx_node_known_failures.txt"
#define RTOL 1e-3
#define ATOL 1e-7
#define MIN_PASS_RATE 0.97
#define OPSET_MIN 13
#define OPSET_MAX 23
#define TEST_SECONDS 60
#define MSG_LEN 512

/* Why a test is not applicable. */
enum { NA_OP, NA_DTYPE, NA_NONTENSOR, NA_OPSET, NA_COUNT };
static const char *na_names[NA_COUNT] = {
    "op outside fusec's op set (FU_OPS)",
    "dtype outside fusec's set (f32 f16 bf16 i64 i32 bool)",
    "non-tensor input/output (sequence, optional)",
    "old opset: an op whose meaning changed since the model's opset (ir/onnx_opset.c)",
};

static const char *backend = "jit";
static const char *cache_dir;   /* AOT cache; NULL: fusec's default */
static const char *profile;     /* NULL: fusec's default (fast) */
static int verbose;

/* ---- files ------------------------------------------------------------ */

static uint8_t *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (n < cap) break;
        uint8_t *nb = realloc(buf, cap *= 2);
        if (!nb) free(buf);
        buf = nb;
    }
    fclose(f);
    *len = n;
    return buf;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- dtypes ----------------------------------------------------------- */

static int fusec_dt(int32_t onnx) {
    switch (onnx) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: return FUSEC_FLOAT32;
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16: return FUSEC_FLOAT16;
    case ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16: return FUSEC_BFLOAT16;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return FUSEC_INT64;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: return FUSEC_INT32;
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: return FUSEC_BOOL;
    default: return 0;
    }
}

static size_t dt_size(int dt) {
    switch (dt) {
    case FUSEC_FLOAT32: case FUSEC_INT32: return 4;
    case FUSEC_FLOAT16: case FUSEC_BFLOAT16: return 2;
    case FUSEC_INT64: return 8;
    case FUSEC_BOOL: return 1;
    default: return 0;
    }
}

static const char *dt_name(int dt) {
    static const char *n[] = {"?", "float32", "float16", "bfloat16", "int64", "int32", "bool"};
    return dt >= 1 && dt <= 6 ? n[dt] : "?";
}

static double half_to_double(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 0) v = ldexp(m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexp(m + 1024, e - 25);
    return (h & 0x8000) ? -v : v;
}

static double bf16_to_double(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static double elem(int dt, const void *p, int64_t i) {
    const uint8_t *b = p;
    switch (dt) {
    case FUSEC_FLOAT32: { float f; memcpy(&f, b + i * 4, 4); return f; }
    case FUSEC_FLOAT16: { uint16_t h; memcpy(&h, b + i * 2, 2); return half_to_double(h); }
    case FUSEC_BFLOAT16: { uint16_t h; memcpy(&h, b + i * 2, 2); return bf16_to_double(h); }
    case FUSEC_INT32: { int32_t x; memcpy(&x, b + i * 4, 4); return x; }
    case FUSEC_BOOL: return b[i] != 0;
    default: return 0;
    }
}

/* ---- tensors ---------------------------------------------------------- */

typedef struct {
    int dt;
    int rank;
    int64_t shape[8];
    int64_t numel;
    void *data;
} tensor;

/* Reads a serialized TensorProto. Returns 0, or -1 with msg set. */
static int read_tensor_pb(const char *path, int want_dt, tensor *t, char *msg) {
    size_t len;
    uint8_t *buf = read_all(path, &len);
    memset(t, 0, sizeof *t);
    if (!buf) return snprintf(msg, MSG_LEN, "%s: cannot read", path), -1;
    Onnx__TensorProto *p = onnx__tensor_proto__unpack(NULL, len, buf);
    free(buf);
    if (!p) return snprintf(msg, MSG_LEN, "%s: not a TensorProto", path), -1;
    int rc = -1;
    t->dt = fusec_dt(p->data_type);
    /* numpy has no bfloat16: ONNX's test data holds bfloat16 bits as uint16 */
    if (p->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__UINT16 && want_dt == FUSEC_BFLOAT16) t->dt = FUSEC_BFLOAT16;
    if (!t->dt) {
        snprintf(msg, MSG_LEN, "%s: data type %d", path, (int)p->data_type);
        goto out;
    }
    if (p->n_dims > 8) {
        snprintf(msg, MSG_LEN, "%s: rank %zu", path, p->n_dims);
        goto out;
    }
    t->rank = (int)p->n_dims;
    t->numel = 1;
    for (size_t d = 0; d < p->n_dims; d++) t->numel *= (t->shape[d] = p->dims[d]);
    size_t es = dt_size(t->dt), want = (size_t)t->numel * es;
    t->data = calloc(want ? want : 1, 1);
    if (!t->data) goto out;
    if (p->has_raw_data) {
        if (p->raw_data.len != want) {
            snprintf(msg, MSG_LEN, "%s: raw_data %zu bytes, want %zu", path, p->raw_data.len, want);
            goto out;
        }
        memcpy(t->data, p->raw_data.data, want);
    } else if (t->dt == FUSEC_FLOAT32 && p->n_float_data == (size_t)t->numel) {
        memcpy(t->data, p->float_data, want);
    } else if (t->dt == FUSEC_INT64 && p->n_int64_data == (size_t)t->numel) {
        memcpy(t->data, p->int64_data, want);
    } else if (t->dt != FUSEC_FLOAT32 && t->dt != FUSEC_INT64 && p->n_int32_data == (size_t)t->numel) {
        uint8_t *b = t->data;
        for (int64_t i = 0; i < t->numel; i++) {
            int32_t x = p->int32_data[i];
            if (t->dt == FUSEC_INT32) memcpy(b + i * 4, &x, 4);
            else if (t->dt == FUSEC_BOOL) b[i] = x != 0;
            else { uint16_t h = (uint16_t)x; memcpy(b + i * 2, &h, 2); }
        }
    } else {
        snprintf(msg, MSG_LEN, "%s: the data does not match the shape", path);
        goto out;
    }
    rc = 0;
out:
    onnx__tensor_proto__free_unpacked(p, NULL);
    return rc;
}

/* Compares output `name`. Returns 0, or -1 with msg set. */
static int compare(const char *name, const tensor *want, int dt, int rank, const int64_t *shape,
                   const void *data, char *msg) {
    if (dt != want->dt)
        return snprintf(msg, MSG_LEN, "output '%s': dtype %s, expected %s", name, dt_name(dt), dt_name(want->dt)), -1;
    int same = rank == want->rank;
    for (int d = 0; same && d < rank; d++) same = shape[d] == want->shape[d];
    if (!same) {
        char a[128] = "", b[128] = "";
        size_t la = 0, lb = 0;
        for (int d = 0; d < rank && la < sizeof a; d++) la += (size_t)snprintf(a + la, sizeof a - la, "%s%lld", d ? "," : "", (long long)shape[d]);
        for (int d = 0; d < want->rank && lb < sizeof b; d++) lb += (size_t)snprintf(b + lb, sizeof b - lb, "%s%lld", d ? "," : "", (long long)want->shape[d]);
        return snprintf(msg, MSG_LEN, "output '%s': shape [%s], expected [%s]", name, a, b), -1;
    }
    int64_t bad = 0, first = -1;
    double worst = 0, fw = 0, fg = 0;
    for (int64_t i = 0; i < want->numel; i++) {
        int ok;
        double g, w;
        if (dt == FUSEC_INT64) {
            int64_t x, y;
            memcpy(&x, (const uint8_t *)data + i * 8, 8);
            memcpy(&y, (const uint8_t *)want->data + i * 8, 8);
            ok = x == y;
            g = (double)x, w = (double)y;
        } else {
            g = elem(dt, data, i), w = elem(dt, want->data, i);
            if (dt == FUSEC_INT32 || dt == FUSEC_BOOL) ok = g == w;
            else if (isnan(w) || isnan(g)) ok = isnan(w) && isnan(g);
            else if (isinf(w) || isinf(g)) ok = g == w;
            else ok = fabs(g - w) <= ATOL + RTOL * fabs(w);
        }
        if (!ok) {
            if (first < 0) first = i, fw = w, fg = g;
            double e = fabs(g - w);
            if (e > worst || isnan(e)) worst = e;
            bad++;
        }
    }
    if (bad)
        return snprintf(msg, MSG_LEN, "output '%s': %lld of %lld elements differ; first [%lld] %.9g, expected %.9g; "
                        "max abs error %.3g", name, (long long)bad, (long long)want->numel, (long long)first, fg, fw,
                        worst), -1;
    return 0;
}

/* ---- applicability ---------------------------------------------------- */

static const char *onnx_type_name(int32_t t) {
    static const char *names[] = {"undefined", "float", "uint8", "int8", "uint16", "int16", "int32", "int64",
                                  "string", "bool", "float16", "double", "uint32", "uint64", "complex64",
                                  "complex128", "bfloat16"};
    return t >= 0 && t <= 16 ? names[t] : "unknown";
}

/* Tally of the not-applicable reasons' details (the op, the dtype). */
typedef struct {
    char key[64];
    int n;
} tally;
static tally tallies[NA_COUNT][128];
static int n_tallies[NA_COUNT];

static void tally_add(int cat, const char *key) {
    for (int i = 0; i < n_tallies[cat]; i++)
        if (!strcmp(tallies[cat][i].key, key)) {
            tallies[cat][i].n++;
            return;
        }
    if (n_tallies[cat] == 128) return;
    snprintf(tallies[cat][n_tallies[cat]].key, sizeof tallies[cat][0].key, "%s", key);
    tallies[cat][n_tallies[cat]++].n = 1;
}

static int cmp_tally(const void *a, const void *b) {
    const tally *x = a, *y = b;
    return x->n != y->n ? y->n - x->n : strcmp(x->key, y->key);
}

/* -1: applicable, else NA_* with why set (the op, the dtype, ...). */
static int applicability(const Onnx__ModelProto *m, char *why) {
    const Onnx__GraphProto *g = m->graph;
    for (size_t k = 0; k < g->n_node; k++) {
        const Onnx__NodeProto *n = g->node[k];
        const char *d = n->domain ? n->domain : "";
        if ((*d && strcmp(d, "ai.onnx")) || fu_op_id_find(n->op_type ? n->op_type : "") < 0) {
            snprintf(why, MSG_LEN, "%s%s%s", *d ? d : "", *d ? ":" : "", n->op_type ? n->op_type : "?");
            return NA_OP;
        }
    }
    for (int side = 0; side < 2; side++) {
        size_t nv = side ? g->n_output : g->n_input;
        Onnx__ValueInfoProto **vs = side ? g->output : g->input;
        for (size_t i = 0; i < nv; i++) {
            const Onnx__TypeProto *tp = vs[i]->type;
            if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type) {
                snprintf(why, MSG_LEN, "%s '%s'", side ? "output" : "input", vs[i]->name ? vs[i]->name : "");
                return NA_NONTENSOR;
            }
            if (!fusec_dt(tp->tensor_type->elem_type)) {
                snprintf(why, MSG_LEN, "%s", onnx_type_name(tp->tensor_type->elem_type));
                return NA_DTYPE;
            }
        }
    }
    int64_t opset = -1;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const char *d = m->opset_import[i]->domain ? m->opset_import[i]->domain : "";
        if (!*d || !strcmp(d, "ai.onnx")) opset = m->opset_import[i]->version;
    }
    if (opset < 1 || opset > OPSET_MAX) {
        snprintf(why, MSG_LEN, "opset %lld", (long long)opset);
        return NA_OPSET;
    }
    for (size_t k = 0; k < g->n_node && opset < OPSET_MIN; k++)
        if (fu_onnx_op_since(g->node[k]->op_type) > opset) {
            snprintf(why, MSG_LEN, "opset %lld, %s since %lld", (long long)opset, g->node[k]->op_type,
                     (long long)fu_onnx_op_since(g->node[k]->op_type));
            return NA_OPSET;
        }
    return -1;
}

/* ---- one test ---------------------------------------------------------- */

static int io_dt(const Onnx__ValueInfoProto *v) { return fusec_dt(v->type->tensor_type->elem_type); }

/* 1 when the loaded model still takes input `name` (fusec_input_compiled_in
 * misses an input compiled in whose constant a pass then folded away). */
static int model_has_input(const fusec_model *m, const char *name) {
    for (int i = 0; i < fusec_num_inputs(m); i++)
        if (!strcmp(fusec_input_name(m, i), name)) return 1;
    return 0;
}

/* Runs test `dir` (applicable). Every input of a data set is also given as
 * known before compiling (fusec_options.known_inputs): fusec compiles in
 * those whose values decide shapes (Reshape's shape, Slice's bounds,
 * Range's operands...; ONNX's test models take them as inputs), so the
 * model is compiled again for each data set when it has any; the others
 * are bound at run time. Returns 0 (pass) or -1 with msg set; *compiled_in
 * counts the inputs fusec compiled in. */
static int run_test(const char *dir, const Onnx__ModelProto *mp, char *msg, int *compiled_in) {
    const Onnx__GraphProto *g = mp->graph;
    char path[4200], sets[64][64];
    int n_sets = 0;
    *compiled_in = 0;
    DIR *dd = opendir(dir);
    if (!dd) return snprintf(msg, MSG_LEN, "cannot list %s", dir), -1;
    struct dirent *e;
    while ((e = readdir(dd)) && n_sets < 64)
        if (!strncmp(e->d_name, "test_data_set_", 14)) snprintf(sets[n_sets++], 64, "%s", e->d_name);
    closedir(dd);
    if (!n_sets) return snprintf(msg, MSG_LEN, "no test_data_set_*"), -1;
    if (g->n_input > 32) return snprintf(msg, MSG_LEN, "more than 32 inputs"), -1;

    /* symbolic dims: bound by the largest size the data sets give them */
    char sym[1024] = "";
    size_t sl = 0;
    for (size_t i = 0; i < g->n_input; i++) {
        const Onnx__TensorShapeProto *sh = g->input[i]->type->tensor_type->shape;
        for (size_t d = 0; sh && d < sh->n_dim; d++) {
            const Onnx__TensorShapeProto__Dimension *dm = sh->dim[d];
            if (dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) continue;
            int64_t mx = 1;
            for (int s = 0; s < n_sets; s++) {
                tensor t;
                snprintf(path, sizeof path, "%s/%s/input_%zu.pb", dir, sets[s], i);
                if (read_tensor_pb(path, io_dt(g->input[i]), &t, msg) == 0 && (int)d < t.rank && t.shape[d] > mx)
                    mx = t.shape[d];
                free(t.data);
            }
            const char *nm = dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM && dm->dim_param
                                 ? dm->dim_param : "";
            if (*nm && !strstr(sym, nm) && sl < sizeof sym)
                sl += (size_t)snprintf(sym + sl, sizeof sym - sl, "%s%s=%lld", sl ? "," : "", nm, (long long)mx);
        }
    }
    fusec_options o = {0};
    o.backend = backend;
    o.cache_dir = cache_dir;
    o.profile = profile;
    o.sym_max = sl ? sym : NULL;
    char err[1024];
    fusec_model *m = NULL;
    int rc = 0;
    for (int s = 0; s < n_sets && !rc; s++) {
        tensor in[32] = {{0}};
        fusec_tensor known[32];
        int n_in = 0;
        for (size_t i = 0; i < g->n_input; i++) {
            snprintf(path, sizeof path, "%s/%s/input_%zu.pb", dir, sets[s], i);
            if (!exists(path)) break;
            if (read_tensor_pb(path, io_dt(g->input[i]), &in[i], msg)) { rc = -1; break; }
            known[i] = (fusec_tensor){g->input[i]->name, (fusec_dtype)in[i].dt, in[i].rank, in[i].shape, in[i].data};
            n_in++;
        }
        if (!rc && (!m || *compiled_in)) {   /* values compiled in: a model per data set */
            fusec_free(m);
            o.known_inputs = known;
            o.n_known_inputs = n_in;
            snprintf(path, sizeof path, "%s/model.onnx", dir);
            if (!(m = fusec_load(path, &o, err, sizeof err))) {
                snprintf(msg, MSG_LEN, "load: %s", err);
                rc = -1;
            }
            *compiled_in = 0;
            for (int i = 0; m && i < n_in; i++) *compiled_in += !model_has_input(m, g->input[i]->name);
        }
        for (int i = 0; !rc && i < n_in; i++) {
            if (!model_has_input(m, g->input[i]->name)) continue;   /* compiled in */
            if (fusec_set_input(m, g->input[i]->name, in[i].dt, in[i].rank, in[i].shape, in[i].data)) {
                snprintf(msg, MSG_LEN, "%s: set input '%s': %s", sets[s], g->input[i]->name, fusec_last_error(m));
                rc = -1;
            }
        }
        if (!rc && fusec_run(m)) {
            snprintf(msg, MSG_LEN, "%s: run: %s", sets[s], fusec_last_error(m));
            rc = -1;
        }
        for (size_t k = 0; !rc && k < g->n_output; k++) {
            tensor want;
            snprintf(path, sizeof path, "%s/%s/output_%zu.pb", dir, sets[s], k);
            if (read_tensor_pb(path, io_dt(g->output[k]), &want, msg)) { rc = -1; free(want.data); break; }
            fusec_dtype dt;
            int rank;
            int64_t shape[8];
            const void *data;
            if (fusec_get_output(m, g->output[k]->name, &dt, &rank, shape, &data)) {
                snprintf(msg, MSG_LEN, "%s: output '%s': %s", sets[s], g->output[k]->name, fusec_last_error(m));
                rc = -1;
            } else {
                char cm[MSG_LEN];
                if (compare(g->output[k]->name, &want, (int)dt, rank, shape, data, cm)) {
                    snprintf(msg, MSG_LEN, "%s: %s", sets[s], cm);
                    rc = -1;
                }
            }
            free(want.data);
        }
        for (size_t i = 0; i < g->n_input; i++) free(in[i].data);
    }
    fusec_free(m);
    return rc;
}

/* Runs the test in a child: 0 pass, -1 fail (msg set); *compiled_in as
 * run_test's. */
static int run_isolated(const char *dir, const Onnx__ModelProto *mp, char *msg, int *compiled_in) {
    int fd[2];
    *compiled_in = 0;
    if (pipe(fd)) return snprintf(msg, MSG_LEN, "pipe: %s", strerror(errno)), -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return snprintf(msg, MSG_LEN, "fork: %s", strerror(errno)), -1;
    if (pid == 0) {
        close(fd[0]);
        alarm(TEST_SECONDS);
        /* to the parent: "%7d " (inputs compiled in), then the failure */
        char m[MSG_LEN + 16] = "", head[9];
        int ci = 0;
        int rc = run_test(dir, mp, m + 8, &ci);
        snprintf(head, sizeof head, "%7d ", ci);
        memcpy(m, head, 8);
        if (!rc) m[8] = 0;
        if (write(fd[1], m, strlen(m)) < 0) _exit(3);
        _exit(rc ? 1 : 0);
    }
    close(fd[1]);
    char out[MSG_LEN + 16] = "";
    size_t n = 0;
    ssize_t k;
    while (n < sizeof out - 1 && (k = read(fd[0], out + n, sizeof out - 1 - n)) > 0) n += (size_t)k;
    out[n] = 0;
    close(fd[0]);
    if (n >= 8) *compiled_in = atoi(out);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
    if (WIFSIGNALED(st))
        snprintf(msg, MSG_LEN, "crashed: signal %d (%s)", WTERMSIG(st),
                 WTERMSIG(st) == SIGALRM ? "timeout" : strsignal(WTERMSIG(st)));
    else
        snprintf(msg, MSG_LEN, "%s", n > 8 ? out + 8 : "failed");
    /* one line */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return -1;
}

/* ---- known failures ---------------------------------------------------- */

typedef struct {
    char name[128];
    int seen;   /* 1 failed as listed, 2 passed, 3 not applicable */
} known;

static known *known_list;
static int n_known;

static int load_known(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "onnx_node_tests: cannot open the known-failures file %s\n", path);
        return -1;
    }
    char line[1024];
    int ln = 0;
    while (fgets(line, sizeof line, f)) {
        ln++;
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '#' || *p == '\n' || !*p) continue;
        size_t len = strcspn(p, " \t\n");
        const char *reason = p + len;
        while (*reason == ' ' || *reason == '\t') reason++;
        if (len >= sizeof known_list[0].name || *reason == '\n' || !*reason) {
            fprintf(stderr, "%s:%d: want 'test_name reason'\n", path, ln);
            fclose(f);
            return -1;
        }
        known *nk = realloc(known_list, sizeof *known_list * (size_t)(n_known + 1));
        if (!nk) { fclose(f); return -1; }
        known_list = nk;
        memset(&known_list[n_known], 0, sizeof *known_list);
        memcpy(known_list[n_known].name, p, len);
        n_known++;
    }
    fclose(f);
    return 0;
}

static known *find_known(const char *name) {
    for (int i = 0; i < n_known; i++)
        if (!strcmp(known_list[i].name, name)) return &known_list[i];
    return NULL;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    const char *data = DEFAULT_DATA, *known_path = DEFAULT_KNOWN;
    char **only = calloc((size_t)argc + 1, sizeof(char *));
    int n_only = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc) data = argv[++i];
        else if (!strcmp(argv[i], "--known") && i + 1 < argc) known_path = argv[++i];
        else if (!strcmp(argv[i], "--backend") && i + 1 < argc) backend = argv[++i];
        else if (!strcmp(argv[i], "--cache") && i + 1 < argc) cache_dir = argv[++i];
        else if (!strcmp(argv[i], "--profile") && i + 1 < argc) profile = argv[++i];
        else if (!strcmp(argv[i], "-v")) verbose = 1;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: %s [--data DIR] [--known FILE] [--backend jit|aot] [--cache DIR] [--profile fast|bare] [-v] [TEST...]\n", argv[0]);
            return 2;
        } else only[n_only++] = argv[i];
    }
    if (load_known(known_path)) return 2;
    DIR *dd = opendir(data);
    if (!dd) {
        fprintf(stderr, "onnx_node_tests: cannot open %s: %s (apt-get install libonnx-testdata)\n", data, strerror(errno));
        return 2;
    }
    char **names = NULL;
    int n_names = 0;
    struct dirent *e;
    while ((e = readdir(dd))) {
        if (strncmp(e->d_name, "test_", 5)) continue;
        if (n_only) {
            int want = 0;
            for (int i = 0; i < n_only; i++) want |= !strcmp(only[i], e->d_name);
            if (!want) continue;
        }
        char **nn = realloc(names, sizeof(char *) * (size_t)(n_names + 1));
        if (!nn) return 2;
        names = nn;
        names[n_names++] = strdup(e->d_name);
    }
    closedir(dd);
    qsort(names, (size_t)n_names, sizeof(char *), cmp_str);

    int total = 0, applicable = 0, passed = 0, failed = 0, na[NA_COUNT] = {0};
    int unexpected = 0, fixed = 0, bad_known = 0, specialized = 0;
    for (int t = 0; t < n_names; t++) {
        char dir[4096], path[4200], why[MSG_LEN] = "", msg[MSG_LEN] = "";
        snprintf(dir, sizeof dir, "%s/%s", data, names[t]);
        snprintf(path, sizeof path, "%s/model.onnx", dir);
        size_t len;
        uint8_t *buf = read_all(path, &len);
        if (!buf) continue;
        total++;
        Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, buf);
        known *k = find_known(names[t]);
        int cat = mp && mp->graph ? applicability(mp, why) : NA_OP;
        if (cat >= 0) {
            na[cat]++;
            if (cat == NA_OP || cat == NA_DTYPE) tally_add(cat, why);
            if (verbose) printf("n/a   %s: %s\n", names[t], why);
            if (k) k->seen = 3;
        } else {
            applicable++;
            int compiled_in;
            int rc = run_isolated(dir, mp, msg, &compiled_in);
            if (compiled_in) specialized++;
            if (rc == 0) {
                passed++;
                if (k) k->seen = 2;
                if (verbose) printf("pass  %s\n", names[t]);
            } else {
                failed++;
                if (k) k->seen = 1;
                else unexpected++;
                if (!k || verbose) printf("%s  %s: %s\n", k ? "FAIL (known)" : "FAIL", names[t], msg);
            }
        }
        if (mp) onnx__model_proto__free_unpacked(mp, NULL);
        free(buf);
    }
    for (int i = 0; i < n_known; i++) {
        if (known_list[i].seen == 2) {
            printf("PASSES but is listed in %s: %s (remove the line)\n", known_path, known_list[i].name);
            fixed++;
        } else if (known_list[i].seen == 3) {
            printf("not applicable but listed in %s: %s (remove the line)\n", known_path, known_list[i].name);
            bad_known++;
        } else if (!known_list[i].seen && !n_only) {
            printf("listed in %s but no such test: %s\n", known_path, known_list[i].name);
            bad_known++;
        }
    }
    double rate = applicable ? (double)passed / applicable : 1.0;
    printf("ONNX node tests (%s, %s backend, %s profile): %d total, %d applicable, %d passed, %d failed (%d unexpected), "
           "pass rate %.1f%%\n", data, backend, profile ? profile : "fast", total, applicable, passed, failed, unexpected, 100.0 * rate);
    printf("  %d of the applicable tests have inputs that decide shapes, compiled in with the data "
           "set's values (fusec_options.known_inputs)\n", specialized);
    printf("  not applicable: %d\n", total - applicable);
    for (int c = 0; c < NA_COUNT; c++) {
        printf("    %4d  %s", na[c], na_names[c]);
        qsort(tallies[c], (size_t)n_tallies[c], sizeof(tally), cmp_tally);
        for (int i = 0; i < n_tallies[c] && i < 10; i++)
            printf("%s%s %d", i ? ", " : ": ", tallies[c][i].key, tallies[c][i].n);
        printf("%s\n", n_tallies[c] > 10 ? ", ..." : "");
    }
    int ok = !unexpected && !fixed && !bad_known && (n_only || rate >= MIN_PASS_RATE);
    if (!n_only && rate < MIN_PASS_RATE) printf("pass rate below %.0f%%\n", 100.0 * MIN_PASS_RATE);
    for (int i = 0; i < n_names; i++) free(names[i]);
    free(names);
    free(only);
    free(known_list);
    return ok ? 0 : 1;
}
