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
#include "json_check.h"
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

/* The header is the repr of a Python dict,
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 * padded with spaces and a '\n'. It is read as exactly that: a small
 * tokenizer for quoted strings (no escapes), True/False and tuples of
 * non-negative integers; each of the three keys exactly once, no other
 * key, nothing but whitespace after the '}'. */
typedef struct {
    const char *path;
    const char *p;
    fu_err *err;
} npy_reader;

static void npy_ws(npy_reader *r) {
    while (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r') r->p++;
}

static int npy_bad(npy_reader *r, const char *what) {
    return fu_fail(r->err, "%s: npy header is malformed: %s", r->path, what);
}

/* A quoted string into buf (at most n - 1 bytes). */
static int npy_string(npy_reader *r, char *buf, size_t n) {
    char q = *r->p;
    if (q != '\'' && q != '"') return npy_bad(r, "expected a quoted string");
    r->p++;
    size_t len = 0;
    while (*r->p && *r->p != q) {
        if (*r->p == '\\') return npy_bad(r, "escapes in strings are not supported");
        if (len + 1 >= n) return npy_bad(r, "string too long");
        buf[len++] = *r->p++;
    }
    if (*r->p != q) return npy_bad(r, "unterminated string");
    r->p++;
    buf[len] = 0;
    return 0;
}

static int npy_shape(npy_reader *r, fu_array *out) {
    if (*r->p != '(') return npy_bad(r, "'shape' must be a tuple like (2, 3) or (3,)");
    r->p++;
    out->rank = 0;
    int commas = 0;
    for (;;) {
        npy_ws(r);
        if (*r->p == ')') break;
        if (*r->p < '0' || *r->p > '9') return npy_bad(r, "'shape' holds something other than a non-negative integer");
        if (out->rank == FU_MAX_RANK)
            return fu_fail(r->err, "%s: npy array rank exceeds %d", r->path, FU_MAX_RANK);
        errno = 0;
        char *end;
        long long d = strtoll(r->p, &end, 10);
        if (errno || d > FU_MAX_NUMEL) return fu_fail(r->err, "%s: npy shape entry too large", r->path);
        out->shape[out->rank++] = d;
        r->p = end;
        npy_ws(r);
        if (*r->p == ',') {
            r->p++;
            commas++;
        } else if (*r->p != ')') {
            return npy_bad(r, "expected ',' or ')' in 'shape'");
        }
    }
    r->p++;
    /* (3) is the integer 3 in Python, not a tuple */
    if (out->rank == 1 && commas == 0) return npy_bad(r, "'shape' (n) is not a tuple (write (n,))");
    return 0;
}

static int parse_npy_header(const char *path, const char *h, size_t hlen, fu_array *out, fu_err *err) {
    if (strlen(h) != hlen) return fu_fail(err, "%s: npy header holds a NUL byte", path);
    npy_reader rd = {path, h, err}, *r = &rd;
    char descr[32] = "";
    int seen[3] = {0, 0, 0}, fortran = 0;
    npy_ws(r);
    if (*r->p != '{') return npy_bad(r, "it is not a dict");
    r->p++;
    for (;;) {
        npy_ws(r);
        if (*r->p == '}') break;
        char key[32];
        if (npy_string(r, key, sizeof key)) return -1;
        npy_ws(r);
        if (*r->p != ':') return npy_bad(r, "expected ':' after a key");
        r->p++;
        npy_ws(r);
        int k = strcmp(key, "descr") == 0 ? 0 : strcmp(key, "fortran_order") == 0 ? 1
                : strcmp(key, "shape") == 0 ? 2 : -1;
        if (k < 0) {
            char safe[48];
            fu_sanitize(key, safe, sizeof safe);
            return fu_fail(err, "%s: npy header has an unknown key '%s' (only 'descr', 'fortran_order' "
                           "and 'shape')", path, safe);
        }
        if (seen[k]) return fu_fail(err, "%s: npy header has the key '%s' twice", path, key);
        seen[k] = 1;
        if (k == 0) {
            if (*r->p != '\'' && *r->p != '"')
                return fu_fail(err, "%s: npy 'descr' is not a simple dtype string (structured arrays "
                               "are not supported)", path);
            if (npy_string(r, descr, sizeof descr)) return -1;
        } else if (k == 1) {
            if (strncmp(r->p, "True", 4) == 0) fortran = 1, r->p += 4;
            else if (strncmp(r->p, "False", 5) == 0) r->p += 5;
            else return npy_bad(r, "'fortran_order' must be True or False");
        } else if (npy_shape(r, out)) {
            return -1;
        }
        npy_ws(r);
        if (*r->p == ',') r->p++;
        else if (*r->p != '}') return npy_bad(r, "expected ',' or '}' after a value");
    }
    r->p++;
    npy_ws(r);
    if (*r->p) return npy_bad(r, "text after the dict");
    if (!seen[0]) return fu_fail(err, "%s: npy header has no 'descr'", path);
    if (!seen[1]) return fu_fail(err, "%s: npy header has no 'fortran_order'", path);
    if (!seen[2]) return fu_fail(err, "%s: npy header has no 'shape' tuple", path);

    out->dtype = FU_UNDEF;
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
        if (strcmp(descr, npy_types[i].descr) == 0) out->dtype = npy_types[i].t;
    if (out->dtype == FU_UNDEF) {
        char safe[32];  /* keep the type characters ('<', '|', '>') readable */
        size_t n;
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
    if (fortran) return fu_fail(err, "%s: Fortran-order npy arrays are not supported (use C order)", path);
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
    if (parse_npy_header(path, header, hlen, out, err)) goto done;

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
        if (!(d == floor(d)))
            return fu_fail(err, "element %g is not an integer (dtype %s)", d, fu_dtype_name(t));
        /* [-2^63, 2^63) exactly: beyond it the conversion would saturate */
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
            return fu_fail(err, "element %g is outside the int64 range", d);
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
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
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
    fu_json_issue issue;
    if (fu_json_check(text, len, &issue)) {
        json_object_put(root);
        return fu_fail(err, "JSON array: offset %zu: %s", issue.offset, issue.reason);
    }
    fu_err inner;
    int rc = fu_array_from_json_value(root, t, out, &inner);
    json_object_put(root);
    if (rc) return fu_fail(err, "JSON array: %s", inner.msg);
    return 0;
}
