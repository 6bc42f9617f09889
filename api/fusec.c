/* The public C API (api/fusec.h).
 *
 * Whatever the source of the code (a JSON model compiled now, or a library
 * made by `fusec compile`), a model is instantiated the same way: from the
 * metadata JSON the generated code carries. It names the symbols, the
 * inputs and outputs with their symbolic shapes, the weights to look up in
 * the weights file, and the arena size. */
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <xxhash.h>

#include "fusec.h"
#include "../compiler/driver.h"
#include "../compiler/progress.h"
#include "../ir/mapguard.h"
#include "../ir/onnx_read.h"
#include "../ir/shape.h"
#include "../ir/weights.h"
#include "packed_weights.h"
#include "../runtime/fault.h"
#include "../runtime/gemm.h"
#include "../runtime/profile.h"

typedef struct {
    char *name;
    fu_dtype dtype;
    int rank;
    fu_dim shape[FU_MAX_RANK];
} io_tensor;

struct fusec_model {
    char *path;
    fu_compiled code;

    int n_syms;
    char *sym_names[FU_MAX_SYMS];
    int64_t sym_max[FU_MAX_SYMS];

    int n_inputs, n_outputs, n_weights;
    io_tensor *inputs, *outputs;
    json_object *compiled_in;   /* names of the inputs compiled in, or NULL */

    fu_weights *weights_file;
    const void **weight_ptrs;   /* w[] for the entry point: raw weights, then packed copies */
    void **weight_copies;       /* aligned copies of misaligned weights, else NULL */
    int n_packed;
    fu_packed_weights *packed;  /* the packed copies' mapping */
    fu_packed_info packed_info;
    char *cache_dir;            /* build cache: AOT libraries and packed weights */
    int verbose;
    double code_ms, weights_ms; /* load time: the code, then the weights (fusec_get_load_info) */

    int64_t arena_bytes;
    void *arena;

    /* Bindings: data pointer and shape per input. */
    const void **input_data;
    int64_t (*input_shape)[FU_MAX_RANK];
    int *input_bound;

    struct model_profile *profile;   /* per-node profile; NULL until first enabled */

    /* Results of the last successful run. */
    int has_run;
    int64_t sym_values[FU_MAX_SYMS];
    void **output_data;

    char err[FU_ERR_LEN];
};

/* ---- errors ---------------------------------------------------------------- */

static int model_fail(fusec_model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int model_fail(fusec_model *m, const char *fmt, ...) {
    char raw[sizeof m->err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    fu_escape_controls(raw, m->err, sizeof m->err);  /* names from the model: no terminal controls */
    return -1;
}

/* Load errors always start with the model path. */
static void load_error(char *buf, size_t len, const char *path, const char *msg) {
    if (!buf || len == 0) return;
    size_t plen = strlen(path);
    char raw[2 * FU_ERR_LEN];
    if (strncmp(msg, path, plen) == 0)
        snprintf(raw, sizeof raw, "%s", msg);
    else
        snprintf(raw, sizeof raw, "%s: %s", path, msg);
    fu_escape_controls(raw, buf, len);  /* names from the model: no terminal controls */
}

/* The weights mapping was hit by SIGBUS (ir/mapguard.h): the file shrank
 * while the model used it. */
static int weights_gone(const fusec_model *m) { return fu_weights_faulted(m->weights_file); }
#define WEIGHTS_GONE_FMT "%s: the weights file %s was truncated while the model was using it (SIGBUS caught); " \
                         "its data is gone: load the model again"

static fusec_dtype to_api_dtype(fu_dtype t) {
    switch (t) {
    case FU_F32: return FUSEC_FLOAT32;
    case FU_F16: return FUSEC_FLOAT16;
    case FU_BF16: return FUSEC_BFLOAT16;
    case FU_I64: return FUSEC_INT64;
    case FU_I32: return FUSEC_INT32;
    case FU_BOOL: return FUSEC_BOOL;
    default: return (fusec_dtype)0;
    }
}

static fu_dtype from_api_dtype(fusec_dtype t) {
    switch (t) {
    case FUSEC_FLOAT32: return FU_F32;
    case FUSEC_FLOAT16: return FU_F16;
    case FUSEC_BFLOAT16: return FU_BF16;
    case FUSEC_INT64: return FU_I64;
    case FUSEC_INT32: return FU_I32;
    case FUSEC_BOOL: return FU_BOOL;
    default: return FU_UNDEF;
    }
}

/* ---- metadata -------------------------------------------------------------- */

static json_object *get_field(json_object *o, const char *key, json_type type) {
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, type)) return NULL;
    return v;
}

static int parse_dim(const fusec_model *m, json_object *d, fu_dim *out, fu_err *err) {
    memset(out, 0, sizeof *out);
    if (json_object_is_type(d, json_type_int)) {   /* weights: plain ints */
        out->coef = json_object_get_int64(d);
        return out->coef < 0 ? fu_fail(err, "negative dim in metadata") : 0;
    }
    if (!json_object_is_type(d, json_type_array) ||
        (int)json_object_array_length(d) != m->n_syms + 1)
        return fu_fail(err, "bad dim in metadata (expected [coef, pow...] of %d numbers)",
                       m->n_syms + 1);
    out->coef = json_object_get_int64(json_object_array_get_idx(d, 0));
    if (out->coef < 0) return fu_fail(err, "negative dim in metadata");
    for (int s = 0; s < m->n_syms; s++) {
        int64_t p = json_object_get_int64(json_object_array_get_idx(d, (size_t)s + 1));
        if (p < 0 || p > 16) return fu_fail(err, "bad symbol power %lld in metadata", (long long)p);
        out->pow[s] = (uint8_t)p;
    }
    return 0;
}

static int parse_tensor_list(fusec_model *m, json_object *meta, const char *key, io_tensor **out,
                             int *count, fu_err *err) {
    json_object *list = get_field(meta, key, json_type_array);
    if (!list) return fu_fail(err, "metadata lacks the \"%s\" list", key);
    int n = (int)json_object_array_length(list);
    *count = n;
    *out = calloc((size_t)n + 1, sizeof **out);
    if (!*out) return fu_fail(err, "out of memory");
    for (int i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(list, (size_t)i);
        json_object *name = get_field(t, "name", json_type_string);
        json_object *dtype = get_field(t, "dtype", json_type_string);
        json_object *shape = get_field(t, "shape", json_type_array);
        if (!name || !dtype || !shape) return fu_fail(err, "%s[%d] in metadata is malformed", key, i);
        io_tensor *io = &(*out)[i];
        if (!(io->name = strdup(json_object_get_string(name)))) return fu_fail(err, "out of memory");
        io->dtype = fu_dtype_from_name(json_object_get_string(dtype));
        if (io->dtype == FU_UNDEF)
            return fu_fail(err, "%s '%s': unknown dtype '%s' in metadata", key, io->name,
                           json_object_get_string(dtype));
        io->rank = (int)json_object_array_length(shape);
        if (io->rank > FU_MAX_RANK)
            return fu_fail(err, "%s '%s': rank %d exceeds %d", key, io->name, io->rank, FU_MAX_RANK);
        for (int k = 0; k < io->rank; k++)
            if (parse_dim(m, json_object_array_get_idx(shape, (size_t)k), &io->shape[k], err))
                return -1;
    }
    return 0;
}

static int parse_symbols(fusec_model *m, json_object *meta, fu_err *err) {
    json_object *syms = get_field(meta, "symbols", json_type_array);
    if (!syms) return fu_fail(err, "metadata lacks the \"symbols\" list");
    int n = (int)json_object_array_length(syms);
    if (n > FU_MAX_SYMS) return fu_fail(err, "metadata has %d symbols, at most %d allowed", n, FU_MAX_SYMS);
    for (int s = 0; s < n; s++) {
        json_object *o = json_object_array_get_idx(syms, (size_t)s);
        json_object *name = get_field(o, "name", json_type_string);
        json_object *max = get_field(o, "max", json_type_int);
        if (!name || !max) return fu_fail(err, "symbols[%d] in metadata is malformed", s);
        if (!(m->sym_names[s] = strdup(json_object_get_string(name)))) return fu_fail(err, "out of memory");
        m->n_syms = s + 1;
        m->sym_max[s] = json_object_get_int64(max);
        if (m->sym_max[s] < 1)
            return fu_fail(err, "symbol '%s' has bad max %lld", m->sym_names[s], (long long)m->sym_max[s]);
    }
    return 0;
}

/* The packed copies the code reads (metadata "packed", after the weights
 * in w[]), mapped from the build cache or packed now. */
static int bind_packed(fusec_model *m, json_object *list, fu_err *err) {
    fu_packed_request *req = calloc((size_t)m->n_packed + 1, sizeof *req);
    if (!req) return fu_fail(err, "out of memory");
    int rc = 0;
    for (int i = 0; i < m->n_packed && rc == 0; i++) {
        json_object *o = json_object_array_get_idx(list, (size_t)i);
        json_object *name = get_field(o, "weight", json_type_string);
        json_object *layout = get_field(o, "layout", json_type_string);
        json_object *transposed = get_field(o, "transposed", json_type_boolean);
        if (!name || !layout || !transposed ||
            (strcmp(json_object_get_string(layout), "f32") != 0 && strcmp(json_object_get_string(layout), "bf16") != 0))
            rc = fu_fail(err, "packed[%d] in metadata is malformed", i);
        else
            req[i] = (fu_packed_request){json_object_get_string(name),
                                         strcmp(json_object_get_string(layout), "bf16") == 0,
                                         json_object_get_boolean(transposed)};
    }
    if (rc == 0) {
        char default_dir[4096];
        const char *cache = m->cache_dir ? m->cache_dir : fu_default_cache_dir(default_dir, sizeof default_dir);
        m->packed = fu_packed_weights_open(m->weights_file, cache, req, m->n_packed, m->weight_ptrs + m->n_weights,
                                           &m->packed_info, err);
        if (!m->packed) rc = -1;
        else if (m->verbose)
            fprintf(stderr, "fusec: %s: %d packed weights (%.1f MB) %s in %.1f ms%s%s\n", m->path, m->n_packed,
                    m->packed_info.bytes / 1e6, m->packed_info.built ? "packed" : "mapped and checked",
                    m->packed_info.ms, m->packed_info.in_memory ? " (in memory: the cache is not writable or not private)" : "",
                    m->packed_info.path[0] ? m->packed_info.path : "");
    }
    free(req);
    return rc;
}

/* Where a model's weights are: fusec_options.weights if given; for a
 * compiled library, a file of the recorded name beside the library if there
 * is one (a model moved or shipped with its weights); else the path
 * recorded at compile time. *beside receives a malloc'd path to free. */
static const char *weights_location(const fusec_model *m, const fusec_options *o, json_object *meta,
                                    const char *recorded, char **beside) {
    *beside = NULL;
    if (o && o->weights && *o->weights) return o->weights;
    json_object *name = get_field(meta, "weights_name", json_type_string);
    size_t len = strlen(m->path);
    if (!name || len < 3 || strcmp(m->path + len - 3, ".so") != 0) return recorded;
    const char *slash = strrchr(m->path, '/');
    int dir_len = slash ? (int)(slash - m->path) : 1;
    if (asprintf(beside, "%.*s/%s", dir_len, slash ? m->path : ".", json_object_get_string(name)) < 0) {
        *beside = NULL;
        return recorded;
    }
    struct stat st;
    return stat(*beside, &st) == 0 && S_ISREG(st.st_mode) ? *beside : recorded;
}

/* The weights found must hold what the model was compiled with: the same
 * content identity (header hash and size), and the same bytes in every
 * tensor whose values the code holds (constant folding). A moved or copied
 * file passes; a changed one is refused, never misread. */
static int check_weights_content(const fu_weights *w, json_object *meta, const char *path, fu_err *err) {
    json_object *content = get_field(meta, "weights_content", json_type_string);
    if (content && json_object_get_string_len(content) > 0 &&
        strcmp(json_object_get_string(content), fu_weights_content_id(w)) != 0)
        return fu_fail(err, "weights file %s holds other weights than the model was compiled with (its header "
                       "differs); compile it again, or give the right file (fusec_options.weights)", path);
    json_object *folded = get_field(meta, "folded_weights", json_type_array);
    for (size_t i = 0; folded && i < json_object_array_length(folded); i++) {
        json_object *f = json_object_array_get_idx(folded, i);
        json_object *name = get_field(f, "name", json_type_string), *hash = get_field(f, "xxh3", json_type_string);
        const void *data;
        size_t nbytes;
        if (!name || !hash) return fu_fail(err, "malformed \"folded_weights\" in the metadata");
        if (fu_weights_find(w, json_object_get_string(name), NULL, NULL, NULL, &data, &nbytes) != 0)
            return fu_fail(err, "weight '%s' is missing from %s", json_object_get_string(name), path);
        char have[24];
        snprintf(have, sizeof have, "%016llx", (unsigned long long)XXH3_64bits(data, nbytes));
        if (strcmp(have, json_object_get_string(hash)) != 0)
            return fu_fail(err, "weights file %s changed since the model was compiled: weight '%s', whose values "
                           "the compiled code holds, differs; compile it again", path, json_object_get_string(name));
    }
    return 0;
}

/* Maps the weights file and fills w[] in metadata order: the raw weights,
 * then the packed copies. */
static int bind_weights(fusec_model *m, const fusec_options *o, json_object *meta, fu_err *err) {
    io_tensor *ws = NULL;
    int rc = -1;
    if (parse_tensor_list(m, meta, "weights", &ws, &m->n_weights, err)) goto done;
    json_object *packed = get_field(meta, "packed", json_type_array);
    m->n_packed = packed ? (int)json_object_array_length(packed) : 0;
    m->weight_ptrs = calloc((size_t)(m->n_weights + m->n_packed) + 1, sizeof *m->weight_ptrs);
    m->weight_copies = calloc((size_t)m->n_weights + 1, sizeof *m->weight_copies);
    if (!m->weight_ptrs || !m->weight_copies) {
        fu_fail(err, "out of memory");
        goto done;
    }
    if (m->n_weights + m->n_packed == 0) {
        rc = 0;
        goto done;
    }
    json_object *file = get_field(meta, "weights_file", json_type_string);
    if (!file) {
        fu_fail(err, "the model needs %d weights but names no weights file", m->n_weights + m->n_packed);
        goto done;
    }
    if (m->code.weights_image) {   /* fusec compile --embed-weights: the library carries them */
        unsigned long len = 0;
        const unsigned char *image = m->code.weights_image(&len);
        if (!(m->weights_file = fu_weights_open_memory(image, len, m->path, err))) goto done;
        goto bind;
    }
    char *beside = NULL;
    const char *wpath = weights_location(m, o, meta, json_object_get_string(file), &beside);
    json_object *outside = get_field(meta, "weights_allow_external", json_type_boolean);
    if (fu_is_onnx_path(wpath))   /* an ONNX model's initializers */
        m->weights_file = fu_onnx_weights_open(wpath, outside && json_object_get_boolean(outside), err);
    else
        m->weights_file = fu_weights_open(wpath, err);
    if (m->weights_file && check_weights_content(m->weights_file, meta, wpath, err)) {
        fu_weights_close(m->weights_file);
        m->weights_file = NULL;
    }
    free(beside);
    if (!m->weights_file) goto done;
bind:
    for (int i = 0; i < m->n_weights; i++) {
        const io_tensor *want = &ws[i];
        fu_dtype dtype;
        int rank;
        int64_t shape[FU_MAX_RANK];
        const void *data;
        size_t nbytes;
        if (fu_weights_find(m->weights_file, want->name, &dtype, &rank, shape, &data, &nbytes) != 0) {
            fu_fail(err, "weight '%s' is missing from %s", want->name, fu_weights_path(m->weights_file));
            goto done;
        }
        int same = dtype == want->dtype && rank == want->rank;
        for (int k = 0; same && k < rank; k++) same = shape[k] == want->shape[k].coef;
        if (!same) {
            fu_fail(err, "weight '%s' in %s has another dtype or shape than the model was compiled for",
                    want->name, fu_weights_path(m->weights_file));
            goto done;
        }
        size_t elem = fu_dtype_size(dtype);
        if ((uintptr_t)data % elem != 0) {
            /* safetensors offsets need not be aligned; kernels need it. */
            size_t alloc = (nbytes + 63) / 64 * 64;
            void *copy = aligned_alloc(64, alloc ? alloc : 64);
            if (!copy) {
                fu_fail(err, "out of memory copying weight '%s'", want->name);
                goto done;
            }
            memcpy(copy, data, nbytes);
            m->weight_copies[i] = copy;
            data = copy;
        }
        m->weight_ptrs[i] = data;
    }
    if (m->n_packed > 0 && bind_packed(m, packed, err)) goto done;
    rc = 0;
done:
    for (int i = 0; ws && i < m->n_weights; i++) free(ws[i].name);
    free(ws);
    return rc;
}

/* Builds the model's tables from the compiled code's metadata. */
static int instantiate(fusec_model *m, const fusec_options *o, fu_err *err) {
    json_tokener *tok = json_tokener_new();
    if (!tok) return fu_fail(err, "out of memory");
    json_object *meta = json_tokener_parse_ex(tok, (const char *)m->code.meta, (int)m->code.meta_len);
    int ok = meta && json_tokener_get_error(tok) == json_tokener_success;
    json_tokener_free(tok);
    int rc = -1;
    json_object *version = ok ? get_field(meta, "fusec_meta", json_type_int) : NULL;
    json_object *arena = ok ? get_field(meta, "arena_bytes", json_type_int) : NULL;
    if (!ok || !version || json_object_get_int(version) != 1 || !arena) {
        fu_fail(err, "the compiled code carries no valid fusec metadata (version 1)");
        goto done;
    }
    /* A library's precision is fixed when it is built. */
    json_object *precision = get_field(meta, "precision", json_type_string);
    const char *built = precision ? json_object_get_string(precision) : "f32";
    if (o->precision && strcmp(o->precision, built) != 0) {
        fu_fail(err, "the compiled code has precision %s, not %s", built, o->precision);
        goto done;
    }
    if (parse_symbols(m, meta, err) || parse_tensor_list(m, meta, "inputs", &m->inputs, &m->n_inputs, err) ||
        parse_tensor_list(m, meta, "outputs", &m->outputs, &m->n_outputs, err) || bind_weights(m, o, meta, err))
        goto done;
    json_object *compiled_in = get_field(meta, "compiled_in", json_type_array);
    if (compiled_in) m->compiled_in = json_object_get(compiled_in);
    m->arena_bytes = json_object_get_int64(arena);
    if (m->arena_bytes < 0) {
        fu_fail(err, "negative arena size in metadata");
        goto done;
    }
    size_t arena_alloc = (size_t)(m->arena_bytes + 63) / 64 * 64;
    m->arena = aligned_alloc(64, arena_alloc ? arena_alloc : 64);
    m->input_data = calloc((size_t)m->n_inputs + 1, sizeof *m->input_data);
    m->input_shape = calloc((size_t)m->n_inputs + 1, sizeof *m->input_shape);
    m->input_bound = calloc((size_t)m->n_inputs + 1, sizeof *m->input_bound);
    m->output_data = calloc((size_t)m->n_outputs + 1, sizeof *m->output_data);
    if (!m->arena || !m->input_data || !m->input_shape || !m->input_bound || !m->output_data) {
        fu_fail(err, "out of memory allocating a %lld-byte arena", (long long)m->arena_bytes);
        goto done;
    }
    rc = 0;
done:
    json_object_put(meta);
    return rc;
}

/* ---- loading --------------------------------------------------------------- */

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* JSON model -> fu_compile (JIT, or AOT through the build cache). */
static int compile_json_model(fusec_model *m, const fusec_options *o, fu_err *err) {
    fu_compile_opts copts = {.target = FU_TARGET_JIT, .profile = FU_PROFILE_FAST, .verbose = o->verbose,
                             .cache_dir = o->cache_dir, .allow_external_weights = o->allow_external_weights,
                             .sym_max = o->sym_max};
    if (o->precision && fu_precision_parse(o->precision, &copts.precision) != 0)
        return fu_fail(err, "unknown precision '%s' (expected f32 or bf16)", o->precision);
    if (o->profile && fu_profile_parse(o->profile, &copts.profile) != 0)
        return fu_fail(err, "unknown profile '%s' (expected fast or bare)", o->profile);
    if (o->backend && fu_backend_parse(o->backend, &copts.target) != 0)
        return fu_fail(err, "unknown backend '%s' (expected jit or aot)", o->backend);
    fu_known_input *known = calloc((size_t)o->n_known_inputs + 1, sizeof *known);
    if (!known) return fu_fail(err, "out of memory");
    for (int i = 0; i < o->n_known_inputs; i++) {
        const fusec_tensor *t = &o->known_inputs[i];
        known[i] = (fu_known_input){t->name, (fu_dtype)t->dtype, t->rank, t->shape, t->data};
        if (!t->name || t->rank < 0 || t->rank > FU_MAX_RANK || (!t->data && t->rank)) {
            free(known);
            return fu_fail(err, "known input %d is malformed (no name, a rank outside 0..%d or no data)", i,
                           FU_MAX_RANK);
        }
    }
    copts.known = known;
    copts.n_known = o->n_known_inputs;
    fu_compile_result r;
    int rc = fu_compile(m->path, &copts, &r, err);
    free(known);
    if (rc) return -1;
    m->code = r.code;
    return 0;
}

fusec_model *fusec_load(const char *path, const fusec_options *opts, char *err, size_t errlen) {
    static const fusec_options defaults = {0};
    const fusec_options *o = opts ? opts : &defaults;
    if (err && errlen) err[0] = 0;
    if (!path) {
        if (err && errlen) snprintf(err, errlen, "fusec_load: no model path given");
        return NULL;
    }
    fu_err e = {0};
    fusec_model *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        load_error(err, errlen, path, "out of memory");
        return NULL;
    }
    m->verbose = o->verbose;
    if (o->cache_dir && !(m->cache_dir = strdup(o->cache_dir))) {
        fusec_free(m);
        load_error(err, errlen, path, "out of memory");
        return NULL;
    }
    int rc;
    double t0 = now_ms();
    fu_mapguard_enter();  /* compiling, mapping and packing read the mapped weights */
    if (ends_with(path, ".so"))
        rc = fu_aot_load(path, &m->code, &e);
    else
        rc = compile_json_model(m, o, &e);
    double t1 = now_ms();
    if (rc == 0) rc = instantiate(m, o, &e);
    fu_mapguard_leave();
    if (rc == 0 && weights_gone(m))
        rc = fu_fail(&e, WEIGHTS_GONE_FMT, path, fu_weights_path(m->weights_file));
    m->code_ms = t1 - t0;
    m->weights_ms = now_ms() - t1;
    if (rc != 0) {
        load_error(err, errlen, path, e.msg[0] ? e.msg : "failed to load");
        fusec_free(m);
        return NULL;
    }
    return m;
}

static void free_profile(struct model_profile *p);

void fusec_free(fusec_model *m) {
    if (!m) return;
    json_object_put(m->compiled_in);
    free_profile(m->profile);
    fu_compiled_free(&m->code);
    for (int s = 0; s < m->n_syms; s++) free(m->sym_names[s]);
    for (int i = 0; m->inputs && i < m->n_inputs; i++) free(m->inputs[i].name);
    for (int i = 0; m->outputs && i < m->n_outputs; i++) free(m->outputs[i].name);
    free(m->inputs);
    free(m->outputs);
    for (int i = 0; m->weight_copies && i < m->n_weights; i++) free(m->weight_copies[i]);
    free(m->weight_copies);
    free(m->weight_ptrs);
    fu_packed_weights_close(m->packed);
    if (m->weights_file) fu_weights_close(m->weights_file);
    free(m->cache_dir);
    free(m->arena);
    free(m->input_data);
    free(m->input_shape);
    free(m->input_bound);
    free(m->output_data);
    free(m->path);
    free(m);
}

/* ---- introspection --------------------------------------------------------- */

int fusec_input_compiled_in(const fusec_model *m, const char *name) {
    for (size_t i = 0; m && name && m->compiled_in && i < json_object_array_length(m->compiled_in); i++)
        if (strcmp(json_object_get_string(json_object_array_get_idx(m->compiled_in, i)), name) == 0) return 1;
    return 0;
}

void fusec_progress(int on) { fu_progress_enable(on); }

int fusec_num_inputs(const fusec_model *m) { return m ? m->n_inputs : 0; }
int fusec_num_outputs(const fusec_model *m) { return m ? m->n_outputs : 0; }

const char *fusec_input_name(const fusec_model *m, int i) {
    return m && i >= 0 && i < m->n_inputs ? m->inputs[i].name : NULL;
}

const char *fusec_output_name(const fusec_model *m, int i) {
    return m && i >= 0 && i < m->n_outputs ? m->outputs[i].name : NULL;
}

fusec_dtype fusec_input_dtype(const fusec_model *m, int i) {
    return m && i >= 0 && i < m->n_inputs ? to_api_dtype(m->inputs[i].dtype) : (fusec_dtype)0;
}
fusec_dtype fusec_output_dtype(const fusec_model *m, int i) {
    return m && i >= 0 && i < m->n_outputs ? to_api_dtype(m->outputs[i].dtype) : (fusec_dtype)0;
}

const char *fusec_last_error(const fusec_model *m) { return m ? m->err : "no model"; }

int64_t fusec_arena_bytes(const fusec_model *m) { return m ? m->arena_bytes : 0; }

/* One tensor's shape: upper bounds, and its text with symbol names. */
static int tensor_shape(const fusec_model *m, const io_tensor *t, int *rank, int64_t *max_dims, char *text,
                        size_t textlen) {
    fu_graph names;   /* only the symbol names, for fu_shape_str */
    memset(&names, 0, sizeof names);
    names.n_syms = m->n_syms;
    for (int s = 0; s < m->n_syms; s++) names.sym_names[s] = m->sym_names[s];
    if (rank) *rank = t->rank;
    for (int k = 0; max_dims && k < t->rank; k++) max_dims[k] = fu_dim_eval(t->shape[k], m->sym_max);
    if (text && textlen) fu_shape_str(&names, t->rank, t->shape, ", ", text, textlen);
    return 0;
}

int fusec_input_shape(const fusec_model *m, int i, int *rank, int64_t *max_dims, char *text, size_t textlen) {
    if (!m || i < 0 || i >= m->n_inputs) return -1;
    return tensor_shape(m, &m->inputs[i], rank, max_dims, text, textlen);
}

int fusec_output_shape(const fusec_model *m, int i, int *rank, int64_t *max_dims, char *text, size_t textlen) {
    if (!m || i < 0 || i >= m->n_outputs) return -1;
    return tensor_shape(m, &m->outputs[i], rank, max_dims, text, textlen);
}

int fusec_num_symbols(const fusec_model *m) { return m ? m->n_syms : 0; }

const char *fusec_symbol_name(const fusec_model *m, int i) {
    return m && i >= 0 && i < m->n_syms ? m->sym_names[i] : NULL;
}

int64_t fusec_symbol_max(const fusec_model *m, int i) { return m && i >= 0 && i < m->n_syms ? m->sym_max[i] : -1; }

const char *fusec_weights_path(const fusec_model *m) {
    return m && m->weights_file ? fu_weights_path(m->weights_file) : NULL;
}

int fusec_get_load_info(const fusec_model *m, fusec_load_info *info) {
    if (!m || !info) return -1;
    memset(info, 0, sizeof *info);
    info->code_ms = m->code_ms;
    info->weights_ms = m->weights_ms;
    info->packed_weights = m->n_packed;
    info->packed_bytes = m->packed_info.bytes;
    info->packed_built = m->packed_info.built;
    info->packed_in_memory = m->packed_info.in_memory;
    info->packed_path = m->packed_info.path;
    info->gemm_variant = fu_rt_gemm_variant();
    return 0;
}

/* ---- binding and shapes ------------------------------------------------------ */

/* A dim that is exactly one symbol (coef 1, power 1) binds that symbol. */
static int plain_symbol(const fusec_model *m, fu_dim d) {
    int found = -1;
    if (d.coef != 1) return -1;
    for (int s = 0; s < m->n_syms; s++) {
        if (d.pow[s] == 0) continue;
        if (d.pow[s] != 1 || found >= 0) return -1;
        found = s;
    }
    return found;
}

static void dim_text(const fusec_model *m, fu_dim d, char *buf, size_t n) {
    size_t len = (size_t)snprintf(buf, n, "%lld", (long long)d.coef);
    for (int s = 0; s < m->n_syms && len < n; s++)
        for (int p = 0; p < d.pow[s] && len < n; p++)
            len += (size_t)snprintf(buf + len, n - len, "*%s", m->sym_names[s]);
}

/* Symbols from the plain-symbol dims of one input: fails on a value out
 * of [1, max] or on a conflict with symbols already known. `source` says
 * where each known symbol came from, for messages. */
static int bind_symbols(fusec_model *m, int input, const int64_t *shape, int64_t *sym, int *source) {
    const io_tensor *in = &m->inputs[input];
    for (int k = 0; k < in->rank; k++) {
        int s = plain_symbol(m, in->shape[k]);
        if (s < 0) continue;
        if (shape[k] < 1)
            return model_fail(m, "input '%s' dim %d = %lld: symbol '%s' must be at least 1", in->name, k,
                              (long long)shape[k], m->sym_names[s]);
        if (shape[k] > m->sym_max[s])
            return model_fail(m, "input '%s' dim %d = %lld exceeds the bound %lld of symbol '%s'", in->name,
                              k, (long long)shape[k], (long long)m->sym_max[s], m->sym_names[s]);
        if (source[s] >= 0 && sym[s] != shape[k])
            return model_fail(m, "input '%s' dim %d = %lld, but symbol '%s' = %lld from input '%s'", in->name,
                              k, (long long)shape[k], m->sym_names[s], (long long)sym[s],
                              m->inputs[source[s]].name);
        sym[s] = shape[k];
        source[s] = input;
    }
    return 0;
}

/* A symbol that occurs only in compound dims (2*seq) is solved from a dim
 * where it is the one unknown, with power 1. Returns 1 if it solved one. */
static int solve_symbol(fusec_model *m, int input, const int64_t *shape, int64_t *sym, int *source) {
    const io_tensor *in = &m->inputs[input];
    for (int k = 0; k < in->rank; k++) {
        fu_dim d = in->shape[k];
        int unknown = -1, n_unknown = 0;
        int64_t known_part = d.coef;
        for (int s = 0; s < m->n_syms; s++) {
            if (!d.pow[s]) continue;
            if (source[s] < 0) {
                unknown = s;
                n_unknown++;
            } else {
                for (int p = 0; p < d.pow[s]; p++) known_part *= sym[s];
            }
        }
        if (n_unknown != 1 || d.pow[unknown] != 1 || known_part <= 0) continue;
        if (shape[k] % known_part != 0) continue;   /* reported by check_dims */
        sym[unknown] = shape[k] / known_part;
        source[unknown] = input;
        return 1;
    }
    return 0;
}

/* Checks every dim of an input against the (partly) known symbols. */
static int check_dims(fusec_model *m, int input, const int64_t *shape, const int64_t *sym, const int *source) {
    const io_tensor *in = &m->inputs[input];
    for (int k = 0; k < in->rank; k++) {
        fu_dim d = in->shape[k];
        int all_known = 1;
        for (int s = 0; s < m->n_syms; s++)
            if (d.pow[s] && source[s] < 0) all_known = 0;
        if (!all_known) continue;
        int64_t want = fu_dim_eval(d, sym);
        if (shape[k] != want) {
            char text[128];
            dim_text(m, d, text, sizeof text);
            if (fu_dim_is_const(d))
                return model_fail(m, "input '%s' dim %d = %lld, expected %lld", in->name, k,
                                  (long long)shape[k], (long long)want);
            return model_fail(m, "input '%s' dim %d = %lld, expected %s = %lld", in->name, k,
                              (long long)shape[k], text, (long long)want);
        }
    }
    return 0;
}

/* Shape of input i for resolve(): the candidate binding for `extra`, the
 * stored binding for the others (unless only the candidate counts). */
static const int64_t *shape_for(const fusec_model *m, int i, int extra, const int64_t *extra_shape,
                                int only_extra) {
    if (i == extra) return extra_shape;
    return !only_extra && m->input_bound[i] ? m->input_shape[i] : NULL;
}

/* Resolves the symbols from the bound inputs (plus a candidate binding for
 * input `extra`, if >= 0; only that one if `only_extra`) and checks each
 * such input's dims. With `require_all`, every symbol must become known. */
static int resolve(fusec_model *m, int extra, const int64_t *extra_shape, int only_extra, int require_all,
                   int64_t *sym) {
    int source[FU_MAX_SYMS];
    for (int s = 0; s < FU_MAX_SYMS; s++) source[s] = -1, sym[s] = 0;
    for (int i = 0; i < m->n_inputs; i++) {
        const int64_t *shape = shape_for(m, i, extra, extra_shape, only_extra);
        if (shape && bind_symbols(m, i, shape, sym, source)) return -1;
    }
    for (int progress = 1; progress;) {
        progress = 0;
        for (int i = 0; i < m->n_inputs; i++) {
            const int64_t *shape = shape_for(m, i, extra, extra_shape, only_extra);
            if (shape && solve_symbol(m, i, shape, sym, source)) progress = 1;
        }
    }
    for (int s = 0; s < m->n_syms; s++) {
        if (source[s] < 0) {
            if (require_all) return model_fail(m, "symbol '%s' cannot be determined from the inputs", m->sym_names[s]);
            continue;
        }
        if (sym[s] < 1 || sym[s] > m->sym_max[s])
            return model_fail(m, "symbol '%s' = %lld from input '%s' is outside [1, %lld]", m->sym_names[s],
                              (long long)sym[s], m->inputs[source[s]].name, (long long)m->sym_max[s]);
    }
    for (int i = 0; i < m->n_inputs; i++) {
        const int64_t *shape = shape_for(m, i, extra, extra_shape, only_extra);
        if (shape && check_dims(m, i, shape, sym, source)) return -1;
    }
    return 0;
}

static int find_input(const fusec_model *m, const char *name) {
    for (int i = 0; i < m->n_inputs; i++)
        if (strcmp(m->inputs[i].name, name) == 0) return i;
    return -1;
}

int fusec_set_input(fusec_model *m, const char *name, fusec_dtype dtype, int rank, const int64_t *shape,
                    const void *data) {
    if (!m) return -1;
    m->err[0] = 0;
    if (!name) return model_fail(m, "fusec_set_input: no input name given");
    int i = find_input(m, name);
    if (i < 0) {
        char names[512] = "";
        size_t len = 0;
        for (int k = 0; k < m->n_inputs && len < sizeof names; k++)
            len += (size_t)snprintf(names + len, sizeof names - len, "%s'%s'", k ? ", " : "", m->inputs[k].name);
        return model_fail(m, "no input named '%s' (inputs: %s)", name, names);
    }
    const io_tensor *in = &m->inputs[i];
    /* A rejected binding unbinds the input, so a later run cannot silently
     * use stale data. */
    m->input_bound[i] = 0;
    fu_dtype t = from_api_dtype(dtype);
    if (t != in->dtype)
        return model_fail(m, "input '%s' has dtype %s, got %s", name, fu_dtype_name(in->dtype),
                          t == FU_UNDEF ? "an unknown dtype" : fu_dtype_name(t));
    if (rank != in->rank) return model_fail(m, "input '%s' has rank %d, got rank %d", name, in->rank, rank);
    if (rank > 0 && !shape) return model_fail(m, "input '%s': no shape given", name);
    for (int k = 0; k < rank; k++)
        if (shape[k] < 0) return model_fail(m, "input '%s' dim %d is negative", name, k);
    if (!data) return model_fail(m, "input '%s': no data given", name);
    /* Checks against this input alone; conflicts between inputs are
     * reported by fusec_run so callers may rebind inputs one at a time. */
    int64_t sym[FU_MAX_SYMS];
    if (resolve(m, i, shape, 1, 0, sym) != 0) return -1;
    memcpy(m->input_shape[i], shape, sizeof(int64_t) * (size_t)rank);
    m->input_data[i] = data;
    m->input_bound[i] = 1;
    return 0;
}

static int run_code(fusec_model *m, const int64_t *sym);
static struct model_profile *load_profile(fusec_model *m);

static int run_failure(fusec_model *m, int node);

int fusec_run(fusec_model *m) {
    if (!m) return -1;
    m->err[0] = 0;
    m->has_run = 0;
    for (int i = 0; i < m->n_inputs; i++)
        if (!m->input_bound[i]) return model_fail(m, "input '%s' is not set", m->inputs[i].name);
    int64_t sym[FU_MAX_SYMS];
    if (resolve(m, -1, NULL, 0, 1, sym) != 0) return -1;
    for (int i = 0; i < m->n_outputs; i++) m->output_data[i] = NULL;
    if (weights_gone(m)) return model_fail(m, WEIGHTS_GONE_FMT, m->path, fu_weights_path(m->weights_file));
    /* Worker threads read the weights too: the guard is process-wide. */
    fu_mapguard_enter();
    fu_rt_fault_clear();
    int rc = run_code(m, sym);
    fu_mapguard_leave();
    if (weights_gone(m)) return model_fail(m, WEIGHTS_GONE_FMT, m->path, fu_weights_path(m->weights_file));
    if (rc != 0) return run_failure(m, rc - 1);
    for (int i = 0; i < m->n_outputs; i++)
        if (!m->output_data[i]) return model_fail(m, "%s: the model produced no data for output '%s'", m->path, m->outputs[i].name);
    memcpy(m->sym_values, sym, sizeof sym);
    m->has_run = 1;
    return 0;
}

int fusec_get_output(fusec_model *m, const char *name, fusec_dtype *dtype, int *rank, int64_t *shape,
                     const void **data) {
    if (!m) return -1;
    m->err[0] = 0;
    int i = -1;
    for (int k = 0; name && k < m->n_outputs; k++)
        if (strcmp(m->outputs[k].name, name) == 0) i = k;
    if (i < 0) return model_fail(m, "no output named '%s'", name ? name : "(null)");
    if (!m->has_run) return model_fail(m, "output '%s': the model has not run successfully yet", name);
    const io_tensor *out = &m->outputs[i];
    if (dtype) *dtype = to_api_dtype(out->dtype);
    if (rank) *rank = out->rank;
    for (int k = 0; shape && k < out->rank; k++) shape[k] = fu_dim_eval(out->shape[k], m->sym_values);
    if (data) *data = m->output_data[i];
    return 0;
}

/* ---- per-node profile ---------------------------------------------------------- */

/* One timed block of the generated code, from the metadata's "profile" list. */
typedef struct {
    int node, ops;
    char *name, *op;
} profile_slot;

struct model_profile {
    int enabled;
    int n_slots;
    profile_slot *slots;
    fu_rt_profile rt;      /* what the generated code adds to: rt.slot_ns[n_slots] */
    int64_t runs;
    double run_ms;
};

static void free_profile(struct model_profile *p) {
    if (!p) return;
    for (int i = 0; p->slots && i < p->n_slots; i++) {
        free(p->slots[i].name);
        free(p->slots[i].op);
    }
    free(p->slots);
    free(p->rt.slot_ns);
    free(p);
}

/* Runs the generated code: with the profile while profiling is on. */
static int run_code(fusec_model *m, const int64_t *sym) {
    struct model_profile *p = m->profile;
    if (!p || !p->enabled) return m->code.run(sym, m->input_data, m->weight_ptrs, m->arena, m->output_data);
    double t0 = now_ms();
    int rc = m->code.run_profiled(sym, m->input_data, m->weight_ptrs, m->arena, m->output_data, &p->rt);
    p->run_ms += now_ms() - t0;
    p->runs++;
    return rc;
}

/* The profile's slots from the compiled code's metadata. */
static struct model_profile *load_profile(fusec_model *m) {
    json_tokener *tok = json_tokener_new();
    json_object *meta = tok ? json_tokener_parse_ex(tok, (const char *)m->code.meta, (int)m->code.meta_len) : NULL;
    if (tok) json_tokener_free(tok);
    json_object *list = meta ? get_field(meta, "profile", json_type_array) : NULL;
    struct model_profile *p = calloc(1, sizeof *p);
    int ok = list && p;
    if (ok) {
        p->n_slots = p->rt.n_slots = (int)json_object_array_length(list);
        p->slots = calloc((size_t)p->n_slots + 1, sizeof *p->slots);
        p->rt.slot_ns = calloc((size_t)p->n_slots + 1, sizeof *p->rt.slot_ns);
        ok = p->slots && p->rt.slot_ns;
    }
    for (int i = 0; ok && i < p->n_slots; i++) {
        json_object *o = json_object_array_get_idx(list, (size_t)i);
        json_object *node = get_field(o, "node", json_type_int), *ops = get_field(o, "ops", json_type_int);
        json_object *name = get_field(o, "name", json_type_string), *op = get_field(o, "op", json_type_string);
        ok = node && ops && name && op;
        if (!ok) break;
        profile_slot *slot = &p->slots[i];
        slot->node = json_object_get_int(node);
        slot->ops = json_object_get_int(ops);
        slot->name = strdup(json_object_get_string(name));
        slot->op = strdup(json_object_get_string(op));
        ok = slot->name && slot->op;
    }
    json_object_put(meta);
    if (!ok) {
        model_fail(m, "%s: %s", m->path, !list ? "the metadata has no \"profile\" list"
                                               : "out of memory, or a malformed \"profile\" list in the metadata");
        free_profile(p);
        return NULL;
    }
    return p;
}

/* The error of a run the code stopped in node `node`: its name and op
 * (from the metadata's block list), and the bad value when the kernel
 * said (runtime/fault.h). */
static int run_failure(fusec_model *m, int node) {
    fu_rt_fault f = fu_rt_fault_last();
    struct model_profile *p = m->profile ? m->profile : load_profile(m);
    char where[400];
    snprintf(where, sizeof where, "node #%d", node);
    for (int i = 0; p && i < p->n_slots; i++)
        if (p->slots[i].node == node)
            snprintf(where, sizeof where, "node '%s' (%s)", fu_safe(p->slots[i].name).s, fu_safe(p->slots[i].op).s);
    if (p != m->profile) free_profile(p);
    if (f.what)
        return model_fail(m, "%s: run failed in %s: %s %lld is out of range for an axis of size %lld (valid: -%lld to "
                          "%lld)", m->path, where, f.what, (long long)f.value, (long long)f.size, (long long)f.size,
                          (long long)f.size - 1);
    return model_fail(m, "%s: run failed in %s: a runtime check failed (an index or a size out of range)", m->path,
                      where);
}

int fusec_profile_enable(fusec_model *m, int on) {
    if (!m) return -1;
    m->err[0] = 0;
    if (!on) {
        if (m->profile) m->profile->enabled = 0;
        return 0;
    }
    if (!m->code.run_profiled)
        return model_fail(m, "%s: the compiled code cannot be profiled (built by an older fusec); compile it again",
                          m->path);
    if (!m->profile && !(m->profile = load_profile(m))) return -1;
    struct model_profile *p = m->profile;
    memset(p->rt.slot_ns, 0, sizeof *p->rt.slot_ns * (size_t)p->n_slots);
    p->runs = 0;
    p->run_ms = 0;
    p->enabled = 1;
    return 0;
}

int fusec_profile_count(const fusec_model *m) { return m && m->profile ? m->profile->n_slots : 0; }

int fusec_profile_get(const fusec_model *m, int i, fusec_profile_node *out) {
    if (!m || !m->profile || i < 0 || i >= m->profile->n_slots || !out) return -1;
    const profile_slot *slot = &m->profile->slots[i];
    out->node = slot->node;
    out->name = slot->name;
    out->op = slot->op;
    out->ops = slot->ops;
    out->total_ms = (double)m->profile->rt.slot_ns[i] / 1e6;
    return 0;
}

int fusec_profile_runs(const fusec_model *m, int64_t *runs, double *total_ms) {
    if (!m) return -1;
    if (runs) *runs = m->profile ? m->profile->runs : 0;
    if (total_ms) *total_ms = m->profile ? m->profile->run_ms : 0.0;
    return 0;
}
