/* safetensors reader: the file is mapped read-only and its header checked
 * in full before any tensor is handed out.
 *
 * Layout: u64 little-endian header length N, N bytes of JSON
 *   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {...}}
 * then the data area; offsets are relative to its start. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "json_check.h"
#include "files.h"
#include "mapguard.h"
#include "weights.h"

/* Headers beyond this are not real safetensors files. */
#define MAX_HEADER_BYTES ((uint64_t)100 * 1024 * 1024)

typedef struct {
    char *name;
    fu_dtype dtype;
    int rank;
    int64_t shape[FU_MAX_RANK];
    uint64_t begin, end;  /* within the data area */
} tensor_entry;

struct fu_weights {
    int refs;
    char *path;
    unsigned char *map;
    size_t size;
    uint64_t data_start;      /* 8 + N */
    int n;
    tensor_entry *tensors;    /* sorted by name */
    char identity[4096 + 128];
    int guard;                /* fu_mapguard slot of the mapping, or -1 */
};

static fu_dtype st_dtype(const char *s) {
    static const struct { const char *name; fu_dtype t; } map[] = {
        {"F32", FU_F32}, {"F16", FU_F16}, {"BF16", FU_BF16},
        {"I64", FU_I64}, {"I32", FU_I32}, {"BOOL", FU_BOOL},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(s, map[i].name) == 0) return map[i].t;
    return FU_UNDEF;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const tensor_entry *)a)->name, ((const tensor_entry *)b)->name);
}

/* By begin, then end: an empty tensor at a tensor's first byte sorts
 * before it. */
static int by_begin(const void *a, const void *b) {
    const tensor_entry *x = *(tensor_entry *const *)a, *y = *(tensor_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Reads a JSON integer >= 0 (json-c keeps big values as uint64). */
static int json_u64(json_object *o, uint64_t *out) {
    if (!o || !json_object_is_type(o, json_type_int)) return -1;
    errno = 0;
    int64_t s = json_object_get_int64(o);
    if (s < 0) return -1;
    if (s == INT64_MAX) {
        *out = json_object_get_uint64(o);
        return 0;
    }
    *out = (uint64_t)s;
    return 0;
}

static int parse_entry(fu_weights *w, const char *key, json_object *desc, tensor_entry *t,
                       fu_err *err) {
    char safe[128];
    fu_sanitize(key, safe, sizeof safe);
    const char *p = w->path;
    if (!json_object_is_type(desc, json_type_object))
        return fu_fail(err, "%s: tensor '%s': entry is not an object", p, safe);
    json_object *jd, *js, *jo;
    if (!json_object_object_get_ex(desc, "dtype", &jd) || !json_object_is_type(jd, json_type_string))
        return fu_fail(err, "%s: tensor '%s': missing \"dtype\"", p, safe);
    if (!json_object_object_get_ex(desc, "shape", &js) || !json_object_is_type(js, json_type_array))
        return fu_fail(err, "%s: tensor '%s': missing \"shape\"", p, safe);
    if (!json_object_object_get_ex(desc, "data_offsets", &jo) ||
        !json_object_is_type(jo, json_type_array) || json_object_array_length(jo) != 2)
        return fu_fail(err, "%s: tensor '%s': missing \"data_offsets\" [begin, end]", p, safe);
    char sd[32];
    fu_sanitize(json_object_get_string(jd), sd, sizeof sd);
    t->dtype = st_dtype(json_object_get_string(jd));
    if (t->dtype == FU_UNDEF)
        return fu_fail(err, "%s: tensor '%s': unsupported dtype '%s' (F32, F16, BF16, I64, I32, BOOL)",
                       p, safe, sd);
    size_t rank = json_object_array_length(js);
    if (rank > FU_MAX_RANK)
        return fu_fail(err, "%s: tensor '%s': rank %zu exceeds %d", p, safe, rank, FU_MAX_RANK);
    t->rank = (int)rank;
    uint64_t numel = 1;
    for (size_t i = 0; i < rank; i++) {
        uint64_t d;
        if (json_u64(json_object_array_get_idx(js, i), &d))
            return fu_fail(err, "%s: tensor '%s': shape entry %zu is not a non-negative integer", p,
                           safe, i);
        if (d > (uint64_t)FU_MAX_NUMEL || __builtin_mul_overflow(numel, d, &numel) ||
            numel > (uint64_t)FU_MAX_NUMEL)
            return fu_fail(err, "%s: tensor '%s': shape too large (over %lld elements)", p, safe,
                           (long long)FU_MAX_NUMEL);
        t->shape[i] = (int64_t)d;
    }
    if (json_u64(json_object_array_get_idx(jo, 0), &t->begin) ||
        json_u64(json_object_array_get_idx(jo, 1), &t->end))
        return fu_fail(err, "%s: tensor '%s': data_offsets must be non-negative integers", p, safe);
    if (t->end < t->begin)
        return fu_fail(err, "%s: tensor '%s': data_offsets end %llu < begin %llu", p, safe,
                       (unsigned long long)t->end, (unsigned long long)t->begin);
    uint64_t data_size = w->size - w->data_start;
    if (t->end > data_size)
        return fu_fail(err, "%s: tensor '%s': data_offsets end %llu is past the end of the file "
                       "(data area is %llu bytes)", p, safe, (unsigned long long)t->end,
                       (unsigned long long)data_size);
    uint64_t want = numel * fu_dtype_size(t->dtype);
    if (t->end - t->begin != want)
        return fu_fail(err, "%s: tensor '%s': %llu data bytes but shape and dtype need %llu", p,
                       safe, (unsigned long long)(t->end - t->begin), (unsigned long long)want);
    return 0;
}

static int parse_header(fu_weights *w, fu_err *err) {
    const char *p = w->path;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | w->map[i];
    /* The length is 8 bytes of a file not yet known to be safetensors:
     * never echoed (it could be the first bytes of /etc/shadow). */
    if (n > MAX_HEADER_BYTES)
        return fu_fail(err, "%s: not a safetensors file (header length over the %llu-byte limit)", p,
                       (unsigned long long)MAX_HEADER_BYTES);
    if (n > w->size - 8)
        return fu_fail(err, "%s: not a safetensors file (header length exceeds the file size %zu)", p,
                       w->size);
    w->data_start = 8 + n;

    json_tokener *tok = json_tokener_new();
    if (!tok) return fu_fail(err, "%s: out of memory", p);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
    json_object *root = json_tokener_parse_ex(tok, (const char *)w->map + 8, (int)n);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!root || jerr != json_tokener_success) {
        json_object_put(root);
        return fu_fail(err, "%s: safetensors header is not valid JSON (%s, near byte %zu)", p,
                       jerr == json_tokener_continue ? "unexpected end of header"
                                                     : json_tokener_error_desc(jerr),
                       8 + end);
    }
    for (size_t i = end; i < n; i++) {  /* only padding may follow the object */
        char c = (char)w->map[8 + i];
        if (c != ' ' && c != '\n' && c != '\t' && c != '\r' && c != 0) {
            json_object_put(root);
            return fu_fail(err, "%s: safetensors header has trailing bytes after the JSON", p);
        }
    }
    fu_json_issue issue;  /* duplicate tensor names, out-of-range numbers */
    if (fu_json_check((const char *)w->map + 8, end, &issue)) {
        json_object_put(root);
        return fu_fail(err, "%s: safetensors header, byte %zu%s%s: %s", p, 8 + issue.offset,
                       issue.path[0] ? ", " : "", issue.path, issue.reason);
    }
    if (!json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        return fu_fail(err, "%s: safetensors header is not a JSON object", p);
    }
    int count = json_object_object_length(root);
    w->tensors = calloc((size_t)count + 1, sizeof(tensor_entry));
    if (!w->tensors) {
        json_object_put(root);
        return fu_fail(err, "%s: out of memory", p);
    }
    int rc = 0;
    json_object_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) continue;
        tensor_entry *t = &w->tensors[w->n];
        if (!(t->name = strdup(key))) {
            rc = fu_fail(err, "%s: out of memory", p);
            break;
        }
        w->n++;
        if ((rc = parse_entry(w, key, val, t, err))) break;
    }
    json_object_put(root);
    if (rc) return rc;

    /* Tensors must not share bytes, and an empty tensor must not sit
     * strictly inside another's: in (begin, end) order each tensor starts
     * at or after the furthest end seen so far, empty ones included. */
    tensor_entry **order = malloc(sizeof(tensor_entry *) * ((size_t)w->n + 1));
    if (!order) return fu_fail(err, "%s: out of memory", p);
    for (int i = 0; i < w->n; i++) order[i] = &w->tensors[i];
    qsort(order, (size_t)w->n, sizeof *order, by_begin);
    const tensor_entry *furthest = NULL;
    for (int i = 0; i < w->n; i++) {
        if (furthest && order[i]->begin < furthest->end) {
            char a[128], b[128];
            fu_sanitize(furthest->name, a, sizeof a);
            fu_sanitize(order[i]->name, b, sizeof b);
            rc = fu_fail(err, "%s: tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) overlap", p, a,
                         (unsigned long long)furthest->begin, (unsigned long long)furthest->end, b,
                         (unsigned long long)order[i]->begin, (unsigned long long)order[i]->end);
            break;
        }
        if (!furthest || order[i]->end > furthest->end) furthest = order[i];
    }
    free(order);
    if (rc) return rc;
    qsort(w->tensors, (size_t)w->n, sizeof(tensor_entry), by_name);
    return 0;
}

static int make_identity(fu_weights *w, const struct stat *st, fu_err *err) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (!EVP_Digest(w->map + 8, w->data_start - 8, md, &md_len, EVP_sha256(), NULL))
        return fu_fail(err, "%s: sha256 of the header failed", w->path);
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    for (unsigned i = 0; i < md_len; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    hex[2 * md_len] = 0;
    snprintf(w->identity, sizeof w->identity, "%s:%zu:%lld.%09ld:%s", w->path, w->size,
             (long long)st->st_mtim.tv_sec, (long)st->st_mtim.tv_nsec, hex);
    return 0;
}

fu_weights *fu_weights_open(const char *path, fu_err *err) {
    struct stat st;
    int fd = fu_open_regular(path, "weights file", &st, err);
    if (fd < 0) return NULL;
    return fu_weights_open_fd(fd, path, err);
}

fu_weights *fu_weights_open_fd(int fd, const char *path, fu_err *err) {
    fu_weights *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        close(fd);
        fu_fail(err, "%s: out of memory", path);
        return NULL;
    }
    w->refs = 1;
    w->guard = -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        fu_fail(err, "%s: not a regular file", path);
        close(fd);
        fu_weights_close(w);
        return NULL;
    }
    if (st.st_size < 8) {
        fu_fail(err, "%s: truncated safetensors file (%lld bytes, need at least 8)", path,
                (long long)st.st_size);
        close(fd);
        fu_weights_close(w);
        return NULL;
    }
    w->size = (size_t)st.st_size;
    void *m = mmap(NULL, w->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        fu_fail(err, "%s: mmap failed: %s", path, strerror(errno));
        fu_weights_close(w);
        return NULL;
    }
    w->map = m;
    w->guard = fu_mapguard_add(m, w->size);
    fu_mapguard_enter();  /* the file may shrink under us while we read the header */
    int bad = parse_header(w, err) || make_identity(w, &st, err);
    fu_mapguard_leave();
    if (fu_weights_faulted(w))
        bad = fu_fail(err, "%s: the weights file shrank while it was being read", path);
    if (bad) {
        fu_weights_close(w);
        return NULL;
    }
    return w;
}

fu_weights *fu_weights_retain(fu_weights *w) {
    if (w) w->refs++;
    return w;
}

void fu_weights_close(fu_weights *w) {
    if (!w || --w->refs > 0) return;
    fu_mapguard_remove(w->guard);
    if (w->map) munmap(w->map, w->size);
    for (int i = 0; i < w->n; i++) free(w->tensors[i].name);
    free(w->tensors);
    free(w->path);
    free(w);
}

int fu_weights_find(const fu_weights *w, const char *name, fu_dtype *dtype, int *rank,
                    int64_t *shape, const void **data, size_t *nbytes) {
    if (!w) return -1;
    tensor_entry key;
    key.name = (char *)name;
    const tensor_entry *t = bsearch(&key, w->tensors, (size_t)w->n, sizeof key, by_name);
    if (!t) return -1;
    if (dtype) *dtype = t->dtype;
    if (rank) *rank = t->rank;
    if (shape) memcpy(shape, t->shape, sizeof(int64_t) * (size_t)t->rank);
    if (data) *data = w->map + w->data_start + t->begin;
    if (nbytes) *nbytes = (size_t)(t->end - t->begin);
    return 0;
}

const char *fu_weights_identity(const fu_weights *w) { return w ? w->identity : ""; }

size_t fu_weights_file_size(const fu_weights *w) { return w ? w->size : 0; }

const char *fu_weights_path(const fu_weights *w) { return w ? w->path : ""; }

int fu_weights_faulted(const fu_weights *w) { return w && fu_mapguard_faulted(w->guard); }

int fu_weights_range(const fu_weights *w, const void *p, size_t n, uint64_t *offset) {
    if (!w || !w->map || !p) return -1;
    const unsigned char *b = p;
    if (b < w->map || b > w->map + w->size || n > (size_t)(w->map + w->size - b)) return -1;
    *offset = (uint64_t)(b - w->map);
    return 0;
}

const void *fu_weights_at(const fu_weights *w, uint64_t offset, size_t n) {
    if (!w || !w->map || offset < w->data_start || offset > w->size || n > w->size - offset) return NULL;
    return w->map + offset;
}
