/* .npy files (numpy format 1.0/2.0; little-endian, C order) and arrays
 * from nested JSON lists. */
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "files.h"
#include "npy.h"

static const char npy_magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

void fu_array_free(fu_array *a) {
    if (!a) return;
    free(a->data);
    a->data = NULL;
    a->nbytes = 0;
}

static const struct {
    const char *descr;
    fu_dtype t;
} npy_types[] = {
    {"<f4", FU_F32}, {"<f2", FU_F16}, {"<i8", FU_I64}, {"<i4", FU_I32}, {"|b1", FU_BOOL},
};

/* Finds 'key' (single or double quoted) in a header dict; returns the text
 * after the following ':' with spaces skipped, or NULL. */
static const char *dict_value(const char *h, const char *key) {
    char q1[64], q2[64];
    snprintf(q1, sizeof q1, "'%s'", key);
    snprintf(q2, sizeof q2, "\"%s\"", key);
    const char *p = strstr(h, q1);
    if (!p) p = strstr(h, q2);
    if (!p) return NULL;
    p += strlen(q1);
    while (*p == ' ') p++;
    if (*p != ':') return NULL;
    p++;
    while (*p == ' ') p++;
    return p;
}

static int parse_npy_header(const char *path, const char *h, fu_array *out, fu_err *err) {
    const char *p = dict_value(h, "descr");
    if (!p || (*p != '\'' && *p != '"'))
        return fu_fail(err, "%s: npy header has no 'descr'", path);
    char quote = *p++;
    char descr[32];
    size_t n = 0;
    while (*p && *p != quote && n + 1 < sizeof descr) descr[n++] = *p++;
    descr[n] = 0;
    if (*p != quote) return fu_fail(err, "%s: npy header 'descr' is malformed", path);
    out->dtype = FU_UNDEF;
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
        if (strcmp(descr, npy_types[i].descr) == 0) out->dtype = npy_types[i].t;
    if (out->dtype == FU_UNDEF) {
        char safe[32];  /* keep the type characters ('<', '|', '>') readable */
        for (n = 0; descr[n]; n++) {
            char c = descr[n];
            int ok = c == '<' || c == '>' || c == '|' || c == '=' || (c >= '0' && c <= '9') ||
                     (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
            safe[n] = ok ? c : '?';
        }
        safe[n] = 0;
        return fu_fail(err, "%s: unsupported npy dtype '%s' (supported: <f4 <f2 <i8 <i4 |b1%s)",
                       path, safe, descr[0] == '>' ? "; big-endian data is not supported" : "");
    }

    p = dict_value(h, "fortran_order");
    if (!p) return fu_fail(err, "%s: npy header has no 'fortran_order'", path);
    if (strncmp(p, "True", 4) == 0)
        return fu_fail(err, "%s: Fortran-order npy arrays are not supported (use C order)", path);
    if (strncmp(p, "False", 5) != 0)
        return fu_fail(err, "%s: npy header 'fortran_order' is malformed", path);

    p = dict_value(h, "shape");
    if (!p || *p != '(') return fu_fail(err, "%s: npy header has no 'shape' tuple", path);
    p++;
    out->rank = 0;
    for (;;) {
        while (*p == ' ') p++;
        if (*p == ')') break;
        if (*p < '0' || *p > '9') return fu_fail(err, "%s: npy header 'shape' is malformed", path);
        if (out->rank == FU_MAX_RANK)
            return fu_fail(err, "%s: npy array rank exceeds %d", path, FU_MAX_RANK);
        errno = 0;
        char *end;
        long long d = strtoll(p, &end, 10);
        if (errno || d > FU_MAX_NUMEL)
            return fu_fail(err, "%s: npy shape entry too large", path);
        out->shape[out->rank++] = d;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') p++;
        else if (*p != ')') return fu_fail(err, "%s: npy header 'shape' is malformed", path);
    }
    return 0;
}

int fu_npy_read(const char *path, fu_array *out, fu_err *err) {
    memset(out, 0, sizeof *out);
    int fd = fu_open_regular(path, ".npy file", NULL, err);  /* a FIFO never blocks */
    if (fd < 0) return -1;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return fu_fail(err, "%s: cannot open: %s", path, strerror(errno));
    }
    struct stat st;
    unsigned char pre[12];
    char *header = NULL;
    int rc = -1;
    if (fstat(fileno(f), &st) != 0 || fread(pre, 1, 10, f) != 10 || memcmp(pre, npy_magic, 6)) {
        fu_fail(err, "%s: not an .npy file (bad magic or too short)", path);
        goto done;
    }
    int major = pre[6];
    uint64_t hlen, prefix;
    if (major == 1) {
        hlen = pre[8] | (uint64_t)pre[9] << 8;
        prefix = 10;
    } else if (major == 2 || major == 3) {
        if (fread(pre + 10, 1, 2, f) != 2) {
            fu_fail(err, "%s: truncated .npy header", path);
            goto done;
        }
        hlen = pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 | (uint64_t)pre[11] << 24;
        prefix = 12;
    } else {
        fu_fail(err, "%s: unsupported .npy format version %d", path, major);
        goto done;
    }
    if (prefix + hlen > (uint64_t)st.st_size || hlen > 1 << 24) {
        fu_fail(err, "%s: truncated .npy header", path);
        goto done;
    }
    header = malloc(hlen + 1);
    if (!header || fread(header, 1, hlen, f) != hlen) {
        fu_fail(err, "%s: cannot read .npy header", path);
        goto done;
    }
    header[hlen] = 0;
    if (parse_npy_header(path, header, out, err)) goto done;

    int64_t numel = 1;
    for (int i = 0; i < out->rank; i++)
        if (__builtin_mul_overflow(numel, out->shape[i], &numel) || numel > FU_MAX_NUMEL) {
            fu_fail(err, "%s: npy array too large", path);
            goto done;
        }
    uint64_t want = (uint64_t)numel * fu_dtype_size(out->dtype);
    uint64_t have = (uint64_t)st.st_size - prefix - hlen;
    if (have != want) {
        fu_fail(err, "%s: npy data is %llu bytes but shape and dtype need %llu (%s)", path,
                (unsigned long long)have, (unsigned long long)want,
                have < want ? "truncated" : "trailing bytes");
        goto done;
    }
    out->nbytes = (size_t)want;
    out->data = malloc(want ? want : 1);
    if (!out->data || (want && fread(out->data, 1, want, f) != want)) {
        fu_fail(err, "%s: cannot read npy data", path);
        goto done;
    }
    if (out->dtype == FU_BOOL)  /* normalise so every consumer can rely on 0/1 */
        for (size_t i = 0; i < want; i++) ((unsigned char *)out->data)[i] = ((unsigned char *)out->data)[i] != 0;
    rc = 0;
done:
    free(header);
    fclose(f);
    if (rc) fu_array_free(out);
    return rc;
}

int fu_npy_write(const char *path, const fu_array *a, fu_err *err) {
    const char *descr = NULL;
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
        if (npy_types[i].t == a->dtype) descr = npy_types[i].descr;
    if (!descr)
        return fu_fail(err, "%s: dtype %s cannot be written to .npy (supported: float32, float16, "
                       "int64, int32, bool)", path, fu_dtype_name(a->dtype));
    if (a->rank < 0 || a->rank > FU_MAX_RANK) return fu_fail(err, "%s: bad array rank %d", path, a->rank);
    int64_t numel = 1;
    for (int i = 0; i < a->rank; i++) {
        if (a->shape[i] < 0 || __builtin_mul_overflow(numel, a->shape[i], &numel))
            return fu_fail(err, "%s: bad array shape", path);
    }
    if ((uint64_t)numel * fu_dtype_size(a->dtype) != a->nbytes)
        return fu_fail(err, "%s: array holds %zu bytes but its shape needs %llu", path, a->nbytes,
                       (unsigned long long)numel * fu_dtype_size(a->dtype));

    char dict[512];
    int len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < a->rank; i++)
        len += snprintf(dict + len, sizeof dict - (size_t)len, "%s%lld", i ? ", " : "",
                        (long long)a->shape[i]);
    len += snprintf(dict + len, sizeof dict - (size_t)len, "%s), }", a->rank == 1 ? "," : "");
    /* Pad with spaces so the data starts on a 64-byte boundary; '\n' ends it. */
    size_t prefix = 10, total = prefix + (size_t)len + 1;
    size_t padded = (total + 63) / 64 * 64;
    size_t hlen = padded - prefix;
    unsigned char head[600];
    memcpy(head, npy_magic, 6);
    head[6] = 1;
    head[7] = 0;
    head[8] = (unsigned char)(hlen & 0xff);
    head[9] = (unsigned char)(hlen >> 8);
    memcpy(head + prefix, dict, (size_t)len);
    memset(head + prefix + len, ' ', hlen - (size_t)len - 1);
    head[padded - 1] = '\n';

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) return fu_fail(err, "%s: out of memory", path);
    snprintf(tmp, plen + 16, "%s.tmpXXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        fu_fail(err, "%s: cannot create temporary file: %s", path, strerror(errno));
        free(tmp);
        return -1;
    }
    fchmod(fd, 0644);
    FILE *f = fdopen(fd, "wb");
    int ok = f != NULL;
    if (!f) close(fd);
    if (ok) ok = fwrite(head, 1, padded, f) == padded;
    if (ok && a->nbytes) ok = fwrite(a->data, 1, a->nbytes, f) == a->nbytes;
    if (f && fclose(f) != 0) ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        fu_fail(err, "%s: write failed: %s", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

/* ---- arrays from JSON -------------------------------------------------- */

static void store_float(fu_dtype t, void *dst, double x) {
    if (t == FU_F32) {
        float f = (float)x;
        memcpy(dst, &f, 4);
    } else if (t == FU_F16) {
        uint16_t h = fu_f32_to_f16((float)x);
        memcpy(dst, &h, 2);
    } else {
        uint16_t h = fu_f32_to_bf16((float)x);
        memcpy(dst, &h, 2);
    }
}

/* One JSON scalar into dtype t at dst. Integers go in exactly (int64 data
 * such as INT64_MAX slice ends must survive); floats may also be given as
 * "inf", "-inf" or "nan" since JSON has no such numbers. */
static int store_elem(json_object *o, fu_dtype t, void *dst, fu_err *err) {
    json_type jt = json_object_get_type(o);
    if (jt == json_type_string) {
        const char *s = json_object_get_string(o);
        double x;
        if (strcmp(s, "inf") == 0) x = INFINITY;
        else if (strcmp(s, "-inf") == 0) x = -INFINITY;
        else if (strcmp(s, "nan") == 0) x = NAN;
        else {
            char safe[40];
            fu_sanitize(s, safe, sizeof safe);
            return fu_fail(err, "element '%s' is not a number", safe);
        }
        if (!fu_dtype_is_float(t))
            return fu_fail(err, "element '%s' is not valid for %s", s, fu_dtype_name(t));
        store_float(t, dst, x);
        return 0;
    }
    int is_int = jt == json_type_int || jt == json_type_boolean;
    if (!is_int && jt != json_type_double)
        return fu_fail(err, "element of JSON type %s is not a number", json_type_to_name(jt));
    if (fu_dtype_is_float(t)) {
        store_float(t, dst, is_int ? (double)json_object_get_int64(o) : json_object_get_double(o));
        return 0;
    }
    int64_t v;
    if (is_int) {
        v = json_object_get_int64(o);
    } else {
        double d = json_object_get_double(o);
        if (!(d == floor(d)) || fabs(d) > 9.0e18)
            return fu_fail(err, "element %g is not an integer (dtype %s)", d, fu_dtype_name(t));
        v = (int64_t)d;
    }
    if (t == FU_I64) {
        memcpy(dst, &v, 8);
    } else if (t == FU_I32) {
        if (v < INT32_MIN || v > INT32_MAX)
            return fu_fail(err, "element %lld does not fit int32", (long long)v);
        int32_t x = (int32_t)v;
        memcpy(dst, &x, 4);
    } else if (t == FU_BOOL) {
        if (v != 0 && v != 1) return fu_fail(err, "element %lld is not a bool (0/1)", (long long)v);
        *(unsigned char *)dst = (unsigned char)v;
    } else {
        return fu_fail(err, "unsupported dtype");
    }
    return 0;
}

/* With dst NULL only checks the structure, so a ragged list claiming a huge
 * shape fails before anything is allocated. */
static int fill_array(json_object *v, int depth, const fu_array *a, unsigned char *dst,
                      int64_t *pos, fu_err *err) {
    if (depth == a->rank) {
        if (json_object_is_type(v, json_type_array))
            return fu_fail(err, "nested list is not rectangular (too deep at element %lld)",
                           (long long)*pos);
        size_t es = fu_dtype_size(a->dtype);
        if (dst && store_elem(v, a->dtype, dst + (size_t)(*pos) * es, err)) return -1;
        (*pos)++;
        return 0;
    }
    if (!json_object_is_type(v, json_type_array) ||
        (int64_t)json_object_array_length(v) != a->shape[depth])
        return fu_fail(err, "nested list is not rectangular (expected %lld elements at depth %d)",
                       (long long)a->shape[depth], depth);
    for (int64_t i = 0; i < a->shape[depth]; i++)
        if (fill_array(json_object_array_get_idx(v, (size_t)i), depth + 1, a, dst, pos, err))
            return -1;
    return 0;
}

int fu_array_from_json_value(struct json_object *v, fu_dtype t, fu_array *out, fu_err *err) {
    memset(out, 0, sizeof *out);
    out->dtype = t;
    if (fu_dtype_size(t) == 0) return fu_fail(err, "unsupported dtype");
    /* The shape comes from the first element at each depth; fill_array then
     * checks every list against it. */
    int64_t numel = 1;
    for (json_object *cur = v; json_object_is_type(cur, json_type_array);
         cur = json_object_array_get_idx(cur, 0)) {
        if (out->rank == FU_MAX_RANK) return fu_fail(err, "nested list deeper than %d", FU_MAX_RANK);
        int64_t len = (int64_t)json_object_array_length(cur);
        out->shape[out->rank++] = len;
        /* A ragged list can claim a huge shape; stop before allocating it. */
        if (__builtin_mul_overflow(numel, len, &numel) || numel > FU_MAX_NUMEL)
            return fu_fail(err, "nested list is not rectangular or too large");
        if (len == 0) break;
    }
    int64_t pos = 0;
    if (fill_array(v, 0, out, NULL, &pos, err)) return -1;
    out->nbytes = (size_t)numel * fu_dtype_size(t);
    out->data = malloc(out->nbytes ? out->nbytes : 1);
    if (!out->data) return fu_fail(err, "out of memory");
    pos = 0;
    if (fill_array(v, 0, out, out->data, &pos, err)) {
        fu_array_free(out);
        return -1;
    }
    return 0;
}

int fu_array_from_json(const char *text, fu_dtype t, fu_array *out, fu_err *err) {
    memset(out, 0, sizeof *out);
    json_tokener *tok = json_tokener_new();
    if (!tok) return fu_fail(err, "out of memory");
    /* The length includes the NUL so a bare number at the end completes. */
    size_t len = strlen(text);
    json_object *root = json_tokener_parse_ex(tok, text, (int)(len + 1));
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    if (end > len) end = len;
    json_tokener_free(tok);
    if (jerr != json_tokener_success) {
        json_object_put(root);
        return fu_fail(err, "JSON array: invalid JSON at offset %zu: %s", end,
                       jerr == json_tokener_continue ? "unexpected end of text"
                                                     : json_tokener_error_desc(jerr));
    }
    for (const char *p = text + end; *p; p++)
        if (*p != ' ' && *p != '\n' && *p != '\t' && *p != '\r') {
            json_object_put(root);
            return fu_fail(err, "JSON array: trailing text at offset %zu", (size_t)(p - text));
        }
    fu_err inner;
    int rc = fu_array_from_json_value(root, t, out, &inner);
    json_object_put(root);
    if (rc) return fu_fail(err, "JSON array: %s", inner.msg);
    return 0;
}
