/* Weights: a table of named tensors over read-only mapped files (and,
 * for ONNX initializers stored inside the model, owned copies). A
 * safetensors file is read here: it is mapped read-only and its header
 * checked in full before any tensor is handed out. The ONNX reader fills
 * a table through fu_weights_new / _map_file / _add / _seal.
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
#include "onnx_read.h"
#include "weights.h"

/* Headers beyond this are not real safetensors files. */
#define MAX_HEADER_BYTES ((uint64_t)100 * 1024 * 1024)

typedef struct {
    char *name;
    fu_dtype dtype;
    int rank;
    int64_t shape[FU_MAX_RANK];
    uint64_t begin, end;  /* safetensors: within the data area */
    const unsigned char *data;   /* set once the table is sealed */
    int folded;           /* constant folding baked values computed from it into code */
} tensor_entry;

typedef struct {
    char *path;
    unsigned char *map;
    size_t size;
    int guard;                /* fu_mapguard slot of the mapping, or -1 */
    int borrowed;             /* bytes of someone else's (a library's image): not unmapped */
    struct stat st;
} mapped_file;

struct fu_weights {
    int refs;
    char *path;               /* the file that names the tensors */
    int n_files;
    mapped_file *files;       /* files[0]: the safetensors file */
    int n_owned;
    void **owned;             /* tensor copies the table owns (ONNX inline data) */
    size_t owned_bytes;
    uint64_t data_start;      /* safetensors: 8 + N */
    int n, cap;
    tensor_entry *tensors;    /* sorted by name once sealed */
    char identity[4096 + 128];
    char content_id[256];     /* what the bytes are, wherever the files lie */
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
    uint64_t data_size = w->files[0].size - w->data_start;
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
    for (int i = 7; i >= 0; i--) n = (n << 8) | w->files[0].map[i];
    /* The length is 8 bytes of a file not yet known to be safetensors:
     * never echoed (it could be the first bytes of /etc/shadow). */
    if (n > MAX_HEADER_BYTES)
        return fu_fail(err, "%s: not a safetensors file (header length over the %llu-byte limit)", p,
                       (unsigned long long)MAX_HEADER_BYTES);
    if (n > w->files[0].size - 8)
        return fu_fail(err, "%s: not a safetensors file (header length exceeds the file size %zu)", p,
                       w->files[0].size);
    w->data_start = 8 + n;

    json_tokener *tok = json_tokener_new();
    if (!tok) return fu_fail(err, "%s: out of memory", p);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
    json_object *root = json_tokener_parse_ex(tok, (const char *)w->files[0].map + 8, (int)n);
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
        char c = (char)w->files[0].map[8 + i];
        if (c != ' ' && c != '\n' && c != '\t' && c != '\r' && c != 0) {
            json_object_put(root);
            return fu_fail(err, "%s: safetensors header has trailing bytes after the JSON", p);
        }
    }
    fu_json_issue issue;  /* duplicate tensor names, out-of-range numbers */
    if (fu_json_check((const char *)w->files[0].map + 8, end, &issue)) {
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
    /* From here on a tensor is its bytes: data, and end as their count. */
    for (int i = 0; i < w->n; i++) {
        tensor_entry *t = &w->tensors[i];
        t->data = w->files[0].map + w->data_start + t->begin;
        t->end -= t->begin;
        t->begin = 0;
    }
    return 0;
}

/* "path:size:mtime" of a mapped file, appended to the identity. */
static void add_file_identity(fu_weights *w, const mapped_file *f) {
    size_t len = strlen(w->identity);
    snprintf(w->identity + len, sizeof w->identity - len, "%s%s:%zu:%lld.%09ld", len ? "|" : "", f->path,
             f->size, (long long)f->st.st_mtim.tv_sec, (long)f->st.st_mtim.tv_nsec);
}

/* safetensors identity: the file, plus a hash of its header. */
static int make_identity(fu_weights *w, fu_err *err) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (!EVP_Digest(w->files[0].map + 8, w->data_start - 8, md, &md_len, EVP_sha256(), NULL))
        return fu_fail(err, "%s: sha256 of the header failed", w->path);
    char hex[2 * EVP_MAX_MD_SIZE + 2] = ":";
    for (unsigned i = 0; i < md_len; i++) snprintf(hex + 1 + 2 * i, 3, "%02x", md[i]);
    add_file_identity(w, &w->files[0]);
    size_t len = strlen(w->identity);
    snprintf(w->identity + len, sizeof w->identity - len, "%s", hex);
    snprintf(w->content_id, sizeof w->content_id, "safetensors:%zu%s", w->files[0].size, hex);
    return 0;
}

fu_weights *fu_weights_new(const char *path, fu_err *err) {
    fu_weights *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        fu_fail(err, "%s: out of memory", path);
        return NULL;
    }
    w->refs = 1;
    return w;
}

int fu_weights_map_file(fu_weights *w, int fd, const char *path, fu_err *err) {
    for (int i = 0; i < w->n_files; i++)
        if (strcmp(w->files[i].path, path) == 0) {
            close(fd);
            return i;
        }
    mapped_file *grown = realloc(w->files, sizeof *grown * (size_t)(w->n_files + 1));
    if (!grown) {
        close(fd);
        return fu_fail(err, "%s: out of memory", path);
    }
    w->files = grown;
    mapped_file *f = &w->files[w->n_files];
    memset(f, 0, sizeof *f);
    f->guard = -1;
    if (fstat(fd, &f->st) != 0 || !S_ISREG(f->st.st_mode)) {
        close(fd);
        return fu_fail(err, "%s: not a regular file", path);
    }
    if (!(f->path = strdup(path))) {
        close(fd);
        return fu_fail(err, "%s: out of memory", path);
    }
    f->size = (size_t)f->st.st_size;
    if (f->size) {
        void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            close(fd);
            int e = errno;
            free(f->path);
            return fu_fail(err, "%s: mmap failed: %s", path, strerror(e));
        }
        f->map = m;
        f->guard = fu_mapguard_add(m, f->size);
    }
    close(fd);
    return w->n_files++;
}

const void *fu_weights_mapped_bytes(const fu_weights *w, int file, size_t *size) {
    int ok = w && file >= 0 && file < w->n_files;
    *size = ok ? w->files[file].size : 0;
    return ok ? w->files[file].map : NULL;
}

static tensor_entry *new_entry(fu_weights *w, const char *name, fu_dtype dtype, int rank, const int64_t *shape,
                               fu_err *err) {
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        tensor_entry *grown = realloc(w->tensors, sizeof *grown * (size_t)cap);
        if (!grown) {
            fu_fail(err, "%s: out of memory", w->path);
            return NULL;
        }
        w->tensors = grown;
        w->cap = cap;
    }
    tensor_entry *t = &w->tensors[w->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) {
        fu_fail(err, "%s: out of memory", w->path);
        return NULL;
    }
    w->n++;
    t->dtype = dtype;
    t->rank = rank;
    memcpy(t->shape, shape, sizeof(int64_t) * (size_t)rank);
    return t;
}

int fu_weights_add(fu_weights *w, const char *name, fu_dtype dtype, int rank, const int64_t *shape, int file,
                   uint64_t offset, uint64_t nbytes, const void **data, fu_err *err) {
    const mapped_file *f = &w->files[file];
    if (offset > f->size || nbytes > f->size - offset)
        return fu_fail(err, "%s: bytes [%llu, %llu) are past the end of the file (%zu bytes)", f->path,
                       (unsigned long long)offset, (unsigned long long)offset + nbytes, f->size);
    tensor_entry *t = new_entry(w, name, dtype, rank, shape, err);
    if (!t) return -1;
    t->data = f->map ? f->map + offset : (const unsigned char *)"";
    t->end = nbytes;
    *data = t->data;
    return 0;
}

int fu_weights_add_owned(fu_weights *w, const char *name, fu_dtype dtype, int rank, const int64_t *shape,
                         void *data, size_t nbytes, fu_err *err) {
    /* data stays where it is: the caller keeps its pointer */
    void **grown = realloc(w->owned, sizeof *grown * (size_t)(w->n_owned + 1));
    tensor_entry *t = grown ? (w->owned = grown, new_entry(w, name, dtype, rank, shape, err)) : NULL;
    if (!t) {
        free(data);
        return grown ? -1 : fu_fail(err, "%s: out of memory", w->path);
    }
    w->owned[w->n_owned++] = data;
    w->owned_bytes += nbytes;
    t->data = data;
    t->end = nbytes;
    return 0;
}

int fu_weights_seal(fu_weights *w, const char *extra_identity, fu_err *err) {
    qsort(w->tensors, (size_t)w->n, sizeof(tensor_entry), by_name);
    for (int i = 1; i < w->n; i++)
        if (strcmp(w->tensors[i - 1].name, w->tensors[i].name) == 0)
            return fu_fail(err, "%s: two weights are named '%s'", w->path, fu_safe(w->tensors[i].name).s);
    w->identity[0] = 0;
    for (int i = 0; i < w->n_files; i++) add_file_identity(w, &w->files[i]);
    size_t len = strlen(w->identity);
    snprintf(w->identity + len, sizeof w->identity - len, "%s%s", len ? "|" : "", extra_identity ? extra_identity : "");
    return 0;
}

fu_weights *fu_weights_open(const char *path, fu_err *err) {
    if (fu_is_onnx_path(path)) return fu_onnx_weights_open(path, 0, err);
    struct stat st;
    int fd = fu_open_regular(path, "weights file", &st, err);
    if (fd < 0) return NULL;
    return fu_weights_open_fd(fd, path, err);
}

fu_weights *fu_weights_open_fd(int fd, const char *path, fu_err *err) {
    fu_weights *w = fu_weights_new(path, err);
    if (!w) {
        close(fd);
        return NULL;
    }
    if (fu_weights_map_file(w, fd, path, err) < 0) {
        fu_weights_close(w);
        return NULL;
    }
    if (w->files[0].size < 8) {
        fu_fail(err, "%s: truncated safetensors file (%zu bytes, need at least 8)", path, w->files[0].size);
        fu_weights_close(w);
        return NULL;
    }
    fu_mapguard_enter();  /* the file may shrink under us while we read the header */
    int bad = parse_header(w, err) || make_identity(w, err);
    fu_mapguard_leave();
    if (fu_weights_faulted(w))
        bad = fu_fail(err, "%s: the weights file shrank while it was being read", path);
    if (bad) {
        fu_weights_close(w);
        return NULL;
    }
    return w;
}

fu_weights *fu_weights_open_memory(const void *bytes, size_t size, const char *name, fu_err *err) {
    fu_weights *w = fu_weights_new(name, err);
    mapped_file *f = w ? calloc(1, sizeof *f) : NULL;
    if (!f || !(f->path = strdup(name))) {
        if (f) free(f);
        fu_weights_close(w);
        fu_fail(err, "%s: out of memory", name);
        return NULL;
    }
    f->map = (unsigned char *)bytes;
    f->size = size;
    f->guard = -1;
    f->borrowed = 1;
    w->files = f;
    w->n_files = 1;
    if (size < 8 || parse_header(w, err) || make_identity(w, err)) {
        if (size < 8) fu_fail(err, "%s: truncated safetensors image (%zu bytes)", name, size);
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
    for (int i = 0; i < w->n_files; i++) {
        fu_mapguard_remove(w->files[i].guard);
        if (w->files[i].map && !w->files[i].borrowed) munmap(w->files[i].map, w->files[i].size);
        free(w->files[i].path);
    }
    free(w->files);
    for (int i = 0; i < w->n_owned; i++) free(w->owned[i]);
    free(w->owned);
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
    if (data) *data = t->data;
    if (nbytes) *nbytes = (size_t)t->end;
    return 0;
}

void fu_weights_drop_pages(const fu_weights *w, const void *p, size_t nbytes) {
    const unsigned char *b = p;
    for (int i = 0; w && i < w->n_files; i++) {
        const mapped_file *f = &w->files[i];
        if (!f->map || b < f->map || b + nbytes > f->map + f->size) continue;
        /* whole pages of a read-only file mapping: they stay in the page
         * cache and fault back in if anything reads them again */
        uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
        uintptr_t begin = (uintptr_t)b / page * page;
        madvise((void *)begin, (uintptr_t)(b + nbytes) - begin, MADV_DONTNEED);
        return;
    }
}

const char *fu_weights_identity(const fu_weights *w) { return w ? w->identity : ""; }

const char *fu_weights_content_id(const fu_weights *w) { return w ? w->content_id : ""; }

void fu_weights_set_content_id(fu_weights *w, const char *id) {
    snprintf(w->content_id, sizeof w->content_id, "%s", id);
}

void fu_weights_mark_folded(fu_weights *w, const char *name) {
    tensor_entry key;
    key.name = (char *)name;
    tensor_entry *t = w ? bsearch(&key, w->tensors, (size_t)w->n, sizeof key, by_name) : NULL;
    if (t) t->folded = 1;
}

int fu_weights_folded(const fu_weights *w, int i, const char **name, const void **data, size_t *nbytes) {
    for (int k = 0; w && k < w->n; k++) {
        if (!w->tensors[k].folded || i-- > 0) continue;
        *name = w->tensors[k].name;
        *data = w->tensors[k].data;
        *nbytes = (size_t)w->tensors[k].end;
        return 0;
    }
    return -1;
}

size_t fu_weights_file_size(const fu_weights *w) {
    size_t total = w ? w->owned_bytes : 0;
    for (int i = 0; w && i < w->n_files; i++) total += w->files[i].size;
    return total;
}

const char *fu_weights_path(const fu_weights *w) { return w ? w->path : ""; }

int fu_weights_n_files(const fu_weights *w) { return w ? w->n_files : 0; }

const char *fu_weights_file_path(const fu_weights *w, int i) {
    return w && i >= 0 && i < w->n_files ? w->files[i].path : "";
}

int fu_weights_faulted(const fu_weights *w) {
    for (int i = 0; w && i < w->n_files; i++)
        if (fu_mapguard_faulted(w->files[i].guard)) return 1;
    return 0;
}
