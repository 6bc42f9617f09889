/* fu_json_check (ir/json_check.h): one pass over JSON text that json-c has
 * already accepted, for what json-c's tree cannot show (duplicate keys)
 * or silently changes (out-of-range numbers, NaN / Infinity, \u0000).
 * Iterative, so deep nesting cannot overflow the stack; every read is
 * bounded by len. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ir.h"
#include "json_check.h"

typedef struct {
    const char *s;   /* decoded key bytes (into the text, or `own`) */
    size_t len;
    size_t off;      /* where the key starts in the text */
    char *own;       /* malloc'd when the key had escapes */
} key_ent;

typedef struct {
    int is_object;
    size_t index;            /* arrays: current element */
    const char *key;         /* objects: raw text of the current member's key */
    size_t key_len;
    key_ent *keys;
    size_t n_keys, cap;
} frame;

typedef struct {
    const char *t;
    size_t len, pos;
    frame *st;
    size_t depth, cap;
    fu_json_issue *issue;
} scanner;

static void append(char *buf, size_t n, const char *s) {
    size_t l = strlen(buf);
    if (l + 1 < n) snprintf(buf + l, n - l, "%s", s);
}

/* Path of the containers up to depth `upto` ("nodes[3].attrs"). */
static void build_path(const scanner *sc, size_t upto, char *buf, size_t n) {
    buf[0] = 0;
    for (size_t i = 0; i < upto; i++) {
        const frame *f = &sc->st[i];
        char part[96];
        if (f->is_object) {
            if (!f->key) break;
            char raw[64], safe[80];
            size_t k = f->key_len < sizeof raw - 1 ? f->key_len : sizeof raw - 1;
            memcpy(raw, f->key, k);
            raw[k] = 0;
            fu_sanitize(raw, safe, sizeof safe);
            snprintf(part, sizeof part, "%s%s%s", buf[0] ? "." : "", safe, k < f->key_len ? "..." : "");
        } else {
            snprintf(part, sizeof part, "[%zu]", f->index);
        }
        append(buf, n, part);
    }
}

static int fail_at(scanner *sc, size_t off, size_t path_depth, const char *fmt, ...) {
    fu_json_issue *is = sc->issue;
    if (off > sc->len) off = sc->len;
    is->offset = off;
    is->line = 1;
    is->column = 1;
    for (size_t i = 0; i < off; i++) {
        if (sc->t[i] == '\n') is->line++, is->column = 1;
        else is->column++;
    }
    build_path(sc, path_depth, is->path, sizeof is->path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(is->reason, sizeof is->reason, fmt, ap);
    va_end(ap);
    return -1;
}

#define FAIL(...) fail_at(sc, sc->pos, sc->depth, __VA_ARGS__)

static void skip_ws(scanner *sc) {
    while (sc->pos < sc->len && strchr(" \t\r\n", sc->t[sc->pos]) && sc->t[sc->pos]) sc->pos++;
}

static int hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(unsigned cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* A string at pos (on its opening quote). With `key`, also its decoded
 * bytes: a pointer into the text when it has no escapes, else a malloc'd
 * copy (never longer than the raw text). */
static int scan_string(scanner *sc, key_ent *key) {
    size_t start = ++sc->pos;
    int escaped = 0;
    for (;;) {
        if (sc->pos >= sc->len) return FAIL("unterminated string");
        char c = sc->t[sc->pos];
        if (c == '"') break;
        if (c == 0) return FAIL("a string holds a NUL byte");
        if (c != '\\') {
            sc->pos++;
            continue;
        }
        escaped = 1;
        if (sc->pos + 1 >= sc->len) return FAIL("unterminated string");
        char e = sc->t[sc->pos + 1];
        if (e == 'u') {
            unsigned cp;
            if (sc->pos + 6 > sc->len || hex4(sc->t + sc->pos + 2, &cp)) return FAIL("bad \\u escape");
            if (cp == 0)
                return FAIL("a string holds \\u0000, which would cut the name or text short");
            sc->pos += 6;
        } else if (strchr("\"\\/bfnrt", e) && e) {
            sc->pos += 2;
        } else {
            return FAIL("bad escape in a string");
        }
    }
    size_t end = sc->pos++;  /* past the closing quote */
    if (!key) return 0;
    key->off = start - 1;
    key->own = NULL;
    if (!escaped) {
        key->s = sc->t + start;
        key->len = end - start;
        return 0;
    }
    char *d = malloc(end - start + 1);
    if (!d) return FAIL("out of memory");
    size_t n = 0;
    for (size_t i = start; i < end;) {
        if (sc->t[i] != '\\') {
            d[n++] = sc->t[i++];
            continue;
        }
        char e = sc->t[i + 1];
        if (e != 'u') {
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            d[n++] = to[strchr(from, e) - from];
            i += 2;
            continue;
        }
        unsigned cp, lo;
        hex4(sc->t + i + 2, &cp);
        i += 6;
        if (cp >= 0xd800 && cp < 0xdc00 && i + 6 <= end && sc->t[i] == '\\' && sc->t[i + 1] == 'u' &&
            hex4(sc->t + i + 2, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            i += 6;
        } else if (cp >= 0xd800 && cp < 0xe000) {
            cp = 0xfffd;  /* a lone surrogate: as json-c reads it */
        }
        n += put_utf8(cp, d + n);
    }
    key->s = d;
    key->own = d;
    key->len = n;
    return 0;
}

static int scan_number(scanner *sc) {
    size_t start = sc->pos;
    const char *t = sc->t;
    if (t[sc->pos] == '-') sc->pos++;
    if (sc->pos < sc->len && (t[sc->pos] == 'I' || t[sc->pos] == 'N'))
        return FAIL("NaN and Infinity are not JSON numbers (a float may be the string \"nan\", \"inf\" "
                    "or \"-inf\" where the format allows it)");
    int is_int = 1;
    size_t digits = 0;
    while (sc->pos < sc->len && t[sc->pos] >= '0' && t[sc->pos] <= '9') sc->pos++, digits++;
    if (sc->pos < sc->len && t[sc->pos] == '.') {
        is_int = 0;
        sc->pos++;
        while (sc->pos < sc->len && t[sc->pos] >= '0' && t[sc->pos] <= '9') sc->pos++;
    }
    if (sc->pos < sc->len && (t[sc->pos] == 'e' || t[sc->pos] == 'E')) {
        is_int = 0;
        sc->pos++;
        if (sc->pos < sc->len && (t[sc->pos] == '+' || t[sc->pos] == '-')) sc->pos++;
        while (sc->pos < sc->len && t[sc->pos] >= '0' && t[sc->pos] <= '9') sc->pos++;
    }
    if (!digits) return fail_at(sc, start, sc->depth, "malformed number");
    size_t n = sc->pos - start;
    char small[64], *buf = n < sizeof small ? small : malloc(n + 1);
    if (!buf) return FAIL("out of memory");
    memcpy(buf, t + start, n);
    buf[n] = 0;
    char shown[48];  /* the token, cut for the message */
    snprintf(shown, sizeof shown, "%.*s%s", n > 40 ? 40 : (int)n, buf, n > 40 ? "..." : "");
    int rc = 0;
    errno = 0;
    if (is_int) {
        (void)strtoll(buf, NULL, 10);
        if (errno == ERANGE)
            rc = fail_at(sc, start, sc->depth, "integer %s is outside the int64 range "
                         "[-9223372036854775808, 9223372036854775807]", shown);
    } else {
        double d = strtod(buf, NULL);
        if (isinf(d))
            rc = fail_at(sc, start, sc->depth, "number %s is too large for a double (the largest is "
                         "about 1.8e308)", shown);
    }
    if (buf != small) free(buf);
    return rc;
}

static int key_less(const key_ent *a, const key_ent *b) {
    if (a->len != b->len) return a->len < b->len;
    int c = memcmp(a->s, b->s, a->len);
    if (c) return c < 0;
    return a->off < b->off;
}

static int key_cmp(const void *x, const void *y) {
    const key_ent *a = x, *b = y;
    return key_less(a, b) ? -1 : key_less(b, a) ? 1 : 0;
}

static int same_key(const key_ent *a, const key_ent *b) {
    return a->len == b->len && memcmp(a->s, b->s, a->len) == 0;
}

/* The object on top of the stack closes: any key twice? Reports the
 * earliest second occurrence. */
static int check_keys(scanner *sc) {
    frame *f = &sc->st[sc->depth - 1];
    const key_ent *dup = NULL;
    if (f->n_keys <= 16) {
        for (size_t i = 1; i < f->n_keys; i++)
            for (size_t j = 0; j < i && !dup; j++)
                if (same_key(&f->keys[i], &f->keys[j])) dup = &f->keys[i];
    } else {
        qsort(f->keys, f->n_keys, sizeof *f->keys, key_cmp);
        for (size_t i = 1; i < f->n_keys; i++)
            if (same_key(&f->keys[i], &f->keys[i - 1]) && (!dup || f->keys[i].off < dup->off))
                dup = &f->keys[i];
    }
    if (!dup) return 0;
    char raw[64], safe[80];
    size_t k = dup->len < sizeof raw - 1 ? dup->len : sizeof raw - 1;
    memcpy(raw, dup->s, k);
    raw[k] = 0;
    fu_sanitize(raw, safe, sizeof safe);
    return fail_at(sc, dup->off, sc->depth - 1, "duplicate key \"%s%s\" (JSON readers differ on which "
                   "one wins, so fusec takes neither)", safe, k < dup->len ? "..." : "");
}

static void clear_keys(frame *f) {
    for (size_t i = 0; i < f->n_keys; i++) free(f->keys[i].own);
    f->n_keys = 0;
}

static int push(scanner *sc, int is_object) {
    if (sc->depth == sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 16;
        frame *st = realloc(sc->st, cap * sizeof *st);
        if (!st) return FAIL("out of memory");
        memset(st + sc->cap, 0, (cap - sc->cap) * sizeof *st);
        sc->st = st;
        sc->cap = cap;
    }
    frame *f = &sc->st[sc->depth++];
    f->is_object = is_object;
    f->index = 0;
    f->key = NULL;
    f->key_len = 0;
    f->n_keys = 0;
    return 0;
}

static int add_key(scanner *sc, const key_ent *k) {
    frame *f = &sc->st[sc->depth - 1];
    if (f->n_keys == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        key_ent *keys = realloc(f->keys, cap * sizeof *keys);
        if (!keys) {
            free(k->own);
            return FAIL("out of memory");
        }
        f->keys = keys;
        f->cap = cap;
    }
    f->keys[f->n_keys++] = *k;
    f->key = sc->t + k->off + 1;
    f->key_len = 0;
    while (k->off + 1 + f->key_len < sc->len && f->key[f->key_len] != '"') {
        if (f->key[f->key_len] == '\\') f->key_len++;
        f->key_len++;
    }
    return 0;
}

static int match_word(scanner *sc, const char *w) {
    size_t n = strlen(w);
    if (sc->len - sc->pos < n || memcmp(sc->t + sc->pos, w, n)) return FAIL("malformed JSON");
    sc->pos += n;
    return 0;
}

static int scan(scanner *sc) {
    enum { VALUE, AFTER, KEY } state = VALUE;
    for (;;) {
        skip_ws(sc);
        if (state == KEY) {
            if (sc->pos >= sc->len || sc->t[sc->pos] != '"') return FAIL("malformed JSON (expected a key)");
            key_ent k;
            if (scan_string(sc, &k) || add_key(sc, &k)) return -1;
            skip_ws(sc);
            if (sc->pos >= sc->len || sc->t[sc->pos] != ':') return FAIL("malformed JSON (expected ':')");
            sc->pos++;
            state = VALUE;
            continue;
        }
        if (state == AFTER) {
            if (sc->depth == 0) {
                if (sc->pos < sc->len) return FAIL("malformed JSON (text after the value)");
                return 0;
            }
            frame *f = &sc->st[sc->depth - 1];
            if (sc->pos >= sc->len) return FAIL("unexpected end of JSON");
            char c = sc->t[sc->pos];
            if (c == ',') {
                sc->pos++;
                if (f->is_object) {
                    state = KEY;
                } else {
                    f->index++;
                    state = VALUE;
                }
                continue;
            }
            if (c != (f->is_object ? '}' : ']')) return FAIL("malformed JSON");
            sc->pos++;
            if (f->is_object && check_keys(sc)) return -1;
            clear_keys(f);
            sc->depth--;
            continue;
        }
        /* a value */
        if (sc->pos >= sc->len) return FAIL("unexpected end of JSON");
        char c = sc->t[sc->pos];
        if (c == '{' || c == '[') {
            if (push(sc, c == '{')) return -1;
            sc->pos++;
            skip_ws(sc);
            if (sc->pos < sc->len && sc->t[sc->pos] == (c == '{' ? '}' : ']')) {
                sc->pos++;
                sc->depth--;
                state = AFTER;
            } else {
                state = c == '{' ? KEY : VALUE;
            }
            continue;
        }
        int rc;
        if (c == '"') rc = scan_string(sc, NULL);
        else if (c == '-' || (c >= '0' && c <= '9') || c == 'N' || c == 'I') rc = scan_number(sc);
        else if (c == 't') rc = match_word(sc, "true");
        else if (c == 'f') rc = match_word(sc, "false");
        else if (c == 'n') rc = match_word(sc, "null");
        else rc = FAIL("malformed JSON");
        if (rc) return -1;
        state = AFTER;
    }
}

int fu_json_check(const char *text, size_t len, fu_json_issue *issue) {
    scanner sc = {.t = text, .len = len, .issue = issue};
    memset(issue, 0, sizeof *issue);
    int rc = scan(&sc);
    for (size_t i = 0; i < sc.cap; i++) {
        clear_keys(&sc.st[i]);
        free(sc.st[i].keys);
    }
    free(sc.st);
    return rc;
}
