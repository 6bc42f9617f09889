/* Byte-level BPE from a Hugging Face tokenizer.json (tokenizer/tokenizer.h). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/tokenizer.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <pcre2.h>
#include <utf8proc.h>
#include <xxhash.h>

typedef struct {
    char *bytes;
    size_t len;
    int32_t id;
    int special;
} added_token;

typedef struct {
    uint64_t key;       /* left << 32 | right */
    int32_t rank;       /* -1: empty slot */
    int32_t new_id;
} merge_slot;

struct fu_tokenizer {
    char *path;
    int32_t n_ids;              /* largest id + 1 */
    char **tok;                 /* per id: its bytes (NULL: unused id) */
    uint32_t *tok_len;
    unsigned char *is_added, *is_special;
    int32_t *vocab_table;       /* bytes -> id + 1 (0: empty), open addressing */
    size_t vocab_mask;
    merge_slot *merges;
    size_t merge_mask;
    int32_t byte_id[256];       /* the token of each single byte */
    added_token *added;         /* longest first */
    int n_added;
    unsigned char added_first[256];
    int nfc;
    pcre2_code *re;
    int re_jit;
};

static void set_err(char *err, size_t size, const char *fmt, ...) {
    if (!err || !size) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, size, fmt, ap);
    va_end(ap);
}

/* ---- the ByteLevel alphabet ------------------------------------------------ */

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the
 * others for 256, 257, ... in byte order. */
static void byte_level_alphabet(int32_t byte_to_cp[256], int16_t cp_to_byte[512]) {
    for (int i = 0; i < 512; i++) cp_to_byte[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        byte_to_cp[b] = printable ? b : 256 + extra++;
        cp_to_byte[byte_to_cp[b]] = (int16_t)b;
    }
}

/* A byte-level token's text (UTF-8 of alphabet characters) to its bytes;
 * NULL (and *bad set) if a character is outside the alphabet. */
static char *byte_level_decode(const char *s, const int16_t cp_to_byte[512], size_t *out_len, int *bad) {
    size_t n = strlen(s);
    char *out = malloc(n + 1);
    if (!out) return NULL;
    size_t o = 0;
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
    utf8proc_ssize_t left = (utf8proc_ssize_t)n;
    while (left > 0) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(p, left, &cp);
        if (k <= 0 || cp < 0 || cp >= 512 || cp_to_byte[cp] < 0) {
            free(out);
            *bad = 1;
            return NULL;
        }
        out[o++] = (char)cp_to_byte[cp];
        p += k;
        left -= k;
    }
    out[o] = 0;
    *out_len = o;
    return out;
}

/* ---- tables ------------------------------------------------------------------ */

static uint64_t hash_bytes(const char *s, size_t n) { return XXH3_64bits(s, n); }

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static size_t table_size_for(size_t n) {
    size_t size = 16;
    while (size < 2 * n) size <<= 1;
    return size;
}

static int32_t vocab_find(const fu_tokenizer *t, const char *s, size_t n) {
    size_t i = hash_bytes(s, n) & t->vocab_mask;
    for (;;) {
        int32_t v = t->vocab_table[i];
        if (!v) return -1;
        int32_t id = v - 1;
        if (t->tok_len[id] == n && !memcmp(t->tok[id], s, n)) return id;
        i = (i + 1) & t->vocab_mask;
    }
}

/* Inserts id under its bytes; an id already under the same bytes wins. */
static void vocab_insert(fu_tokenizer *t, int32_t id) {
    size_t i = hash_bytes(t->tok[id], t->tok_len[id]) & t->vocab_mask;
    for (;;) {
        int32_t v = t->vocab_table[i];
        if (!v) {
            t->vocab_table[i] = id + 1;
            return;
        }
        if (t->tok_len[v - 1] == t->tok_len[id] && !memcmp(t->tok[v - 1], t->tok[id], t->tok_len[id])) return;
        i = (i + 1) & t->vocab_mask;
    }
}

static const merge_slot *merge_find(const fu_tokenizer *t, int32_t left, int32_t right) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t i = mix64(key) & t->merge_mask;
    for (;;) {
        const merge_slot *m = &t->merges[i];
        if (m->rank < 0) return NULL;
        if (m->key == key) return m;
        i = (i + 1) & t->merge_mask;
    }
}

/* Inserts a merge; the first (lowest rank) of duplicates wins. */
static void merge_insert(fu_tokenizer *t, int32_t left, int32_t right, int32_t rank, int32_t new_id) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t i = mix64(key) & t->merge_mask;
    for (;;) {
        merge_slot *m = &t->merges[i];
        if (m->rank < 0) {
            m->key = key;
            m->rank = rank;
            m->new_id = new_id;
            return;
        }
        if (m->key == key) return;
        i = (i + 1) & t->merge_mask;
    }
}

/* ---- loading ------------------------------------------------------------------- */

void fu_tokenizer_free(fu_tokenizer *t) {
    if (!t) return;
    if (t->tok)
        for (int32_t i = 0; i < t->n_ids; i++) free(t->tok[i]);
    free(t->tok);
    free(t->tok_len);
    free(t->is_added);
    free(t->is_special);
    free(t->vocab_table);
    free(t->merges);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].bytes);
    free(t->added);
    if (t->re) pcre2_code_free(t->re);
    free(t->path);
    free(t);
}

static const char *type_of(json_object *o) {
    json_object *ty;
    if (!o || !json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, "type", &ty) ||
        !json_object_is_type(ty, json_type_string))
        return NULL;
    return json_object_get_string(ty);
}

static int get_bool(json_object *o, const char *key, int dflt) {
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !v) return dflt;
    return json_object_get_boolean(v);
}

static int load_normalizer(fu_tokenizer *t, json_object *norm, char *err, size_t es) {
    if (!norm || json_object_is_type(norm, json_type_null)) return 0;
    const char *ty = type_of(norm);
    if (ty && !strcmp(ty, "NFC")) {
        t->nfc = 1;
        return 0;
    }
    if (ty && !strcmp(ty, "Sequence")) {
        json_object *list;
        if (json_object_object_get_ex(norm, "normalizers", &list) && json_object_is_type(list, json_type_array)) {
            for (size_t i = 0; i < json_object_array_length(list); i++)
                if (load_normalizer(t, json_object_array_get_idx(list, i), err, es)) return -1;
            return 0;
        }
    }
    set_err(err, es, "%s: unsupported normalizer '%s' (only NFC is)", t->path, ty ? ty : "?");
    return -1;
}

static int compile_regex(fu_tokenizer *t, const char *pattern, char *err, size_t es) {
    int code;
    PCRE2_SIZE offset;
    t->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &code, &offset, NULL);
    if (!t->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        set_err(err, es, "%s: the pre-tokenizer's regex does not compile at offset %zu: %s", t->path,
                (size_t)offset, (const char *)msg);
        return -1;
    }
    t->re_jit = pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE) == 0;
    return 0;
}

static int load_pre_tokenizer(fu_tokenizer *t, json_object *pre, char *err, size_t es) {
    const char *ty = type_of(pre);
    if (ty && !strcmp(ty, "Sequence")) {
        json_object *list;
        if (!json_object_object_get_ex(pre, "pretokenizers", &list) || !json_object_is_type(list, json_type_array)) {
            set_err(err, es, "%s: pre_tokenizer Sequence without a 'pretokenizers' list", t->path);
            return -1;
        }
        for (size_t i = 0; i < json_object_array_length(list); i++)
            if (load_pre_tokenizer(t, json_object_array_get_idx(list, i), err, es)) return -1;
        return 0;
    }
    if (ty && !strcmp(ty, "Split")) {
        json_object *pat, *rx, *beh;
        if (t->re) {
            set_err(err, es, "%s: more than one regex Split pre-tokenizer is not supported", t->path);
            return -1;
        }
        if (!json_object_object_get_ex(pre, "pattern", &pat) || !json_object_object_get_ex(pat, "Regex", &rx) ||
            !json_object_is_type(rx, json_type_string)) {
            set_err(err, es, "%s: Split pre-tokenizer without a {\"Regex\": ...} pattern", t->path);
            return -1;
        }
        if (!json_object_object_get_ex(pre, "behavior", &beh) || strcmp(json_object_get_string(beh), "Isolated") ||
            get_bool(pre, "invert", 0)) {
            set_err(err, es, "%s: Split pre-tokenizer: only behavior Isolated without invert is supported", t->path);
            return -1;
        }
        return compile_regex(t, json_object_get_string(rx), err, es);
    }
    if (ty && !strcmp(ty, "ByteLevel")) {
        if (get_bool(pre, "add_prefix_space", 0)) {
            set_err(err, es, "%s: ByteLevel add_prefix_space is not supported", t->path);
            return -1;
        }
        if (get_bool(pre, "use_regex", 1)) {
            if (t->re) {
                set_err(err, es, "%s: ByteLevel use_regex after a Split is not supported", t->path);
                return -1;
            }
            /* GPT-2's split, which ByteLevel applies itself when asked */
            return compile_regex(t, "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
                                 err, es);
        }
        return 0;
    }
    set_err(err, es, "%s: unsupported pre_tokenizer '%s'", t->path, ty ? ty : "?");
    return -1;
}

static int add_token(fu_tokenizer *t, int32_t id, char *bytes, size_t len, char *err, size_t es) {
    if (id < 0 || id >= t->n_ids) {
        free(bytes);
        set_err(err, es, "%s: token id %d out of range", t->path, (int)id);
        return -1;
    }
    if (t->tok[id]) {   /* an added token that is also a vocab entry keeps the entry's bytes */
        free(bytes);
        return 0;
    }
    t->tok[id] = bytes;
    t->tok_len[id] = (uint32_t)len;
    return 0;
}

static int cmp_added(const void *a, const void *b) {
    const added_token *x = a, *y = b;
    return x->len < y->len ? 1 : x->len > y->len ? -1 : 0;
}

fu_tokenizer *fu_tokenizer_load(const char *path, char *err, size_t es) {
    fu_tokenizer *t = calloc(1, sizeof *t);
    json_object *root = NULL;
    if (!t || !(t->path = strdup(path))) goto oom;
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_err(err, es, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    fclose(f);
    root = json_object_from_file(path);
    if (!root || !json_object_is_type(root, json_type_object)) {
        set_err(err, es, "%s: not a JSON object: %s", path, root ? "wrong type" : json_util_get_last_err());
        goto fail;
    }
    json_object *model, *vocab, *merges, *added = NULL, *norm = NULL, *pre = NULL, *dec = NULL;
    if (!json_object_object_get_ex(root, "model", &model) || !json_object_is_type(model, json_type_object)) {
        set_err(err, es, "%s: no 'model' object (not a tokenizer.json?)", path);
        goto fail;
    }
    const char *mty = type_of(model);
    if (mty && strcmp(mty, "BPE")) {
        set_err(err, es, "%s: model type '%s' is not supported (only BPE)", path, mty);
        goto fail;
    }
    if (get_bool(model, "byte_fallback", 0) || get_bool(model, "ignore_merges", 0)) {
        set_err(err, es, "%s: BPE byte_fallback / ignore_merges are not supported", path);
        goto fail;
    }
    json_object *dropout;
    if (json_object_object_get_ex(model, "dropout", &dropout) && dropout && json_object_get_double(dropout) > 0) {
        set_err(err, es, "%s: BPE dropout is not supported", path);
        goto fail;
    }
    if (!json_object_object_get_ex(model, "vocab", &vocab) || !json_object_is_type(vocab, json_type_object) ||
        !json_object_object_get_ex(model, "merges", &merges) || !json_object_is_type(merges, json_type_array)) {
        set_err(err, es, "%s: model without a 'vocab' object and a 'merges' list", path);
        goto fail;
    }
    json_object_object_get_ex(root, "added_tokens", &added);
    json_object_object_get_ex(root, "normalizer", &norm);
    json_object_object_get_ex(root, "pre_tokenizer", &pre);
    json_object_object_get_ex(root, "decoder", &dec);
    if (added && !json_object_is_type(added, json_type_array) && !json_object_is_type(added, json_type_null)) {
        set_err(err, es, "%s: 'added_tokens' is not a list", path);
        goto fail;
    }
    size_t n_added = added && json_object_is_type(added, json_type_array) ? json_object_array_length(added) : 0;

    /* ids */
    int64_t max_id = -1;
    json_object_object_foreach(vocab, key0, val0) {
        (void)key0;
        if (!json_object_is_type(val0, json_type_int)) {
            set_err(err, es, "%s: vocab entry '%s' has no integer id", path, key0);
            goto fail;
        }
        int64_t id = json_object_get_int64(val0);
        if (id < 0 || id > 0x7ffffff) {
            set_err(err, es, "%s: vocab entry '%s' has id %lld out of range", path, key0, (long long)id);
            goto fail;
        }
        if (id > max_id) max_id = id;
    }
    for (size_t i = 0; i < n_added; i++) {
        json_object *a = json_object_array_get_idx(added, i), *id, *content;
        if (!json_object_object_get_ex(a, "id", &id) || !json_object_is_type(id, json_type_int) ||
            !json_object_object_get_ex(a, "content", &content) || !json_object_is_type(content, json_type_string) ||
            json_object_get_int64(id) < 0 || json_object_get_int64(id) > 0x7ffffff ||
            !json_object_get_string_len(content)) {
            set_err(err, es, "%s: added_tokens[%zu] needs an id and a non-empty content", path, i);
            goto fail;
        }
        if (json_object_get_int64(id) > max_id) max_id = json_object_get_int64(id);
    }
    if (max_id < 0) {
        set_err(err, es, "%s: empty vocab", path);
        goto fail;
    }
    t->n_ids = (int32_t)max_id + 1;
    t->tok = calloc((size_t)t->n_ids, sizeof *t->tok);
    t->tok_len = calloc((size_t)t->n_ids, sizeof *t->tok_len);
    t->is_added = calloc((size_t)t->n_ids, 1);
    t->is_special = calloc((size_t)t->n_ids, 1);
    if (!t->tok || !t->tok_len || !t->is_added || !t->is_special) goto oom;

    int32_t byte_to_cp[256];
    int16_t cp_to_byte[512];
    byte_level_alphabet(byte_to_cp, cp_to_byte);
    size_t n_vocab = 0;
    json_object_object_foreach(vocab, key, val) {
        size_t len;
        int bad = 0;
        char *bytes = byte_level_decode(key, cp_to_byte, &len, &bad);
        if (!bytes) {
            if (bad) set_err(err, es, "%s: vocab entry '%s' is not byte-level text", path, key);
            else goto oom;
            goto fail;
        }
        int32_t id = (int32_t)json_object_get_int64(val);
        if (t->tok[id]) {
            free(bytes);
            set_err(err, es, "%s: id %d appears twice in the vocab", path, (int)id);
            goto fail;
        }
        if (add_token(t, id, bytes, len, err, es)) goto fail;
        n_vocab++;
    }
    t->vocab_mask = table_size_for(n_vocab) - 1;
    t->vocab_table = calloc(t->vocab_mask + 1, sizeof *t->vocab_table);
    if (!t->vocab_table) goto oom;
    for (int32_t id = 0; id < t->n_ids; id++)
        if (t->tok[id]) vocab_insert(t, id);
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_id[b] = vocab_find(t, &c, 1);
        if (t->byte_id[b] < 0) {
            set_err(err, es, "%s: the vocab lacks the byte 0x%02x (not a byte-level vocab)", path, b);
            goto fail;
        }
    }

    /* merges: "a b" strings or ["a", "b"] pairs, in rank order */
    size_t n_merges = json_object_array_length(merges);
    t->merge_mask = table_size_for(n_merges) - 1;
    t->merges = malloc((t->merge_mask + 1) * sizeof *t->merges);
    if (!t->merges) goto oom;
    for (size_t i = 0; i <= t->merge_mask; i++) t->merges[i].rank = -1;
    for (size_t r = 0; r < n_merges; r++) {
        json_object *m = json_object_array_get_idx(merges, r);
        const char *parts[2] = {NULL, NULL};
        char *copy = NULL;
        if (json_object_is_type(m, json_type_array) && json_object_array_length(m) == 2) {
            parts[0] = json_object_get_string(json_object_array_get_idx(m, 0));
            parts[1] = json_object_get_string(json_object_array_get_idx(m, 1));
        } else if (json_object_is_type(m, json_type_string)) {
            if (!(copy = strdup(json_object_get_string(m)))) goto oom;
            char *space = strchr(copy, ' ');
            if (space) {
                *space = 0;
                parts[0] = copy;
                parts[1] = space + 1;
            }
        }
        int32_t ids[2] = {-1, -1}, new_id = -1;
        char *pb[2] = {NULL, NULL};
        size_t pl[2] = {0, 0};
        int bad = 0;
        for (int k = 0; k < 2 && parts[0] && parts[1]; k++) {
            pb[k] = byte_level_decode(parts[k], cp_to_byte, &pl[k], &bad);
            if (pb[k]) ids[k] = vocab_find(t, pb[k], pl[k]);
        }
        if (pb[0] && pb[1]) {
            char *joined = malloc(pl[0] + pl[1] + 1);
            if (joined) {
                memcpy(joined, pb[0], pl[0]);
                memcpy(joined + pl[0], pb[1], pl[1]);
                new_id = vocab_find(t, joined, pl[0] + pl[1]);
                free(joined);
            }
        }
        free(pb[0]);
        free(pb[1]);
        free(copy);
        if (ids[0] < 0 || ids[1] < 0 || new_id < 0) {
            set_err(err, es, "%s: merges[%zu] is not a pair of vocab tokens whose join is in the vocab", path, r);
            goto fail;
        }
        merge_insert(t, ids[0], ids[1], (int32_t)r, new_id);
    }

    /* added tokens: their content as is, matched before anything else */
    t->added = calloc(n_added ? n_added : 1, sizeof *t->added);
    if (!t->added) goto oom;
    for (size_t i = 0; i < n_added; i++) {
        json_object *a = json_object_array_get_idx(added, i), *id, *content;
        json_object_object_get_ex(a, "id", &id);
        json_object_object_get_ex(a, "content", &content);
        if (get_bool(a, "lstrip", 0) || get_bool(a, "rstrip", 0) || get_bool(a, "single_word", 0)) {
            set_err(err, es, "%s: added token '%s': lstrip/rstrip/single_word are not supported", path,
                    json_object_get_string(content));
            goto fail;
        }
        added_token *at = &t->added[t->n_added++];
        at->len = (size_t)json_object_get_string_len(content);
        at->id = (int32_t)json_object_get_int64(id);
        at->special = get_bool(a, "special", 0);
        if (!(at->bytes = malloc(at->len + 1))) goto oom;
        memcpy(at->bytes, json_object_get_string(content), at->len + 1);
        char *copy = malloc(at->len + 1);
        if (!copy) goto oom;
        memcpy(copy, at->bytes, at->len + 1);
        if (add_token(t, at->id, copy, at->len, err, es)) goto fail;
        t->is_added[at->id] = 1;
        t->is_special[at->id] = (unsigned char)at->special;
        t->added_first[(unsigned char)at->bytes[0]] = 1;
    }
    qsort(t->added, (size_t)t->n_added, sizeof *t->added, cmp_added);

    if (load_normalizer(t, norm, err, es)) goto fail;
    if (pre && !json_object_is_type(pre, json_type_null) && load_pre_tokenizer(t, pre, err, es)) goto fail;
    const char *dty = type_of(dec);
    if (dec && !json_object_is_type(dec, json_type_null) && (!dty || strcmp(dty, "ByteLevel"))) {
        set_err(err, es, "%s: unsupported decoder '%s' (only ByteLevel)", path, dty ? dty : "?");
        goto fail;
    }
    json_object_put(root);
    return t;
oom:
    set_err(err, es, "%s: out of memory", path);
fail:
    if (root) json_object_put(root);
    fu_tokenizer_free(t);
    return NULL;
}

/* ---- encoding ------------------------------------------------------------------ */

int fu_utf8_check(const char *text, size_t len, size_t *bad_offset) {
    size_t i = 0;
    while (i < len) {
        if ((unsigned char)text[i] < 0x80) {
            i++;
            continue;
        }
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)text + i, (utf8proc_ssize_t)(len - i), &cp);
        if (k <= 0 || cp < 0) {
            if (bad_offset) *bad_offset = i;
            return -1;
        }
        i += (size_t)k;
    }
    return 0;
}

typedef struct {
    int32_t *v;
    size_t n, cap;
} ids_vec;

static int push_id(ids_vec *o, int32_t id) {
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 256;
        int32_t *v = realloc(o->v, cap * sizeof *v);
        if (!v) return -1;
        o->v = v;
        o->cap = cap;
    }
    o->v[o->n++] = id;
    return 0;
}

typedef struct {
    int32_t rank, pos, new_id;
} heap_item;

/* A cache of short words' ids within one encode call (text repeats its
 * words): open addressing, word bytes -> a run of ids in a pool. */
#define CACHE_MAX_WORD 48
#define CACHE_SLOTS 65536
typedef struct {
    uint64_t hash;
    uint32_t text_off, ids_off;   /* into cache_text, cache_ids */
    uint8_t len, n_ids;           /* len 0: empty slot */
} cache_slot;

/* Scratch space of one encode call. */
typedef struct {
    int32_t *sym, *prev, *next;
    heap_item *heap;
    size_t cap, heap_cap, heap_n;
    cache_slot *cache;            /* CACHE_SLOTS, NULL: no cache */
    char *cache_text;
    int32_t *cache_ids;
    size_t cache_used, text_used, text_cap, ids_used, ids_cap;
} bpe_work;

static int heap_less(const heap_item *a, const heap_item *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(bpe_work *w, heap_item it) {
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_less(&it, &w->heap[parent])) break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = it;
}

static heap_item heap_pop(bpe_work *w) {
    heap_item top = w->heap[0], last = w->heap[--w->heap_n];
    size_t i = 0, n = w->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_less(&w->heap[c + 1], &w->heap[c])) c++;
        if (!heap_less(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

static int work_reserve(bpe_work *w, size_t n) {
    if (n > w->cap) {
        size_t cap = n < 64 ? 64 : n;
        int32_t *a = realloc(w->sym, cap * sizeof *a);
        if (!a) return -1;
        w->sym = a;
        if (!(a = realloc(w->prev, cap * sizeof *a))) return -1;
        w->prev = a;
        if (!(a = realloc(w->next, cap * sizeof *a))) return -1;
        w->next = a;
        w->cap = cap;
    }
    /* each merge pushes at most two items: n initial pairs + 2 per merge */
    size_t need = 3 * n + 4;
    if (need > w->heap_cap) {
        heap_item *h = realloc(w->heap, need * sizeof *h);
        if (!h) return -1;
        w->heap = h;
        w->heap_cap = need;
    }
    return 0;
}

static void try_pair(const fu_tokenizer *t, bpe_work *w, int32_t left_pos) {
    int32_t right_pos = w->next[left_pos];
    if (right_pos < 0) return;
    const merge_slot *m = merge_find(t, w->sym[left_pos], w->sym[right_pos]);
    if (m) heap_push(w, (heap_item){m->rank, left_pos, m->new_id});
}

/* BPE of one pre-token's bytes: lowest-ranked pair first (leftmost among
 * equals), as Hugging Face's Word::merge_all does. */
static int bpe_word(const fu_tokenizer *t, bpe_work *w, const unsigned char *s, size_t n, ids_vec *out) {
    if (n == 1) return push_id(out, t->byte_id[s[0]]);
    if (work_reserve(w, n)) return -1;
    for (size_t i = 0; i < n; i++) {
        w->sym[i] = t->byte_id[s[i]];
        w->prev[i] = (int32_t)i - 1;
        w->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    w->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++) try_pair(t, w, (int32_t)i);
    while (w->heap_n) {
        heap_item top = heap_pop(w);
        int32_t l = top.pos;
        if (w->sym[l] < 0) continue;
        int32_t r = w->next[l];
        if (r < 0) continue;
        const merge_slot *m = merge_find(t, w->sym[l], w->sym[r]);
        if (!m || m->new_id != top.new_id) continue;
        w->sym[l] = m->new_id;
        w->sym[r] = -1;
        w->next[l] = w->next[r];
        if (w->next[r] >= 0) w->prev[w->next[r]] = l;
        if (w->prev[l] >= 0) try_pair(t, w, w->prev[l]);
        try_pair(t, w, l);
    }
    for (int32_t i = 0; i >= 0; i = w->next[i])
        if (push_id(out, w->sym[i])) return -1;
    return 0;
}

static int is_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return 0;
    return 1;
}

/* NFC of s. Only the stretches around non-ASCII characters go through
 * utf8proc: an ASCII character followed by another ASCII character (or the
 * end) is a starter that nothing composes with, so text splits there. */
static int nfc(const char *s, size_t n, char **out, size_t *out_len) {
    size_t cap = n + 16, o = 0;
    char *buf = malloc(cap);
    if (!buf) return -1;
    size_t i = 0;
    while (i < n) {
        /* ASCII run: copy all but its last character when non-ASCII follows */
        size_t j = i;
        while (j < n && (unsigned char)s[j] < 0x80) j++;
        size_t copy_end = j < n && j > i ? j - 1 : j;
        memcpy(buf + o, s + i, copy_end - i);
        o += copy_end - i;
        if (j >= n) break;
        /* from that character through the non-ASCII stretch, up to the next
         * ASCII character followed by ASCII (or the end) */
        size_t start = copy_end, k = j;
        while (k < n && !((unsigned char)s[k] < 0x80 && (k + 1 >= n || (unsigned char)s[k + 1] < 0x80))) k++;
        utf8proc_uint8_t *m = NULL;
        utf8proc_ssize_t ml = utf8proc_map((const utf8proc_uint8_t *)s + start, (utf8proc_ssize_t)(k - start), &m,
                                           UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (ml < 0) {
            free(buf);
            return -1;
        }
        if (o + (size_t)ml + (n - k) + 16 > cap) {
            cap = o + (size_t)ml + (n - k) + 16 + cap / 2;
            char *b = realloc(buf, cap);
            if (!b) {
                free(m);
                free(buf);
                return -1;
            }
            buf = b;
        }
        memcpy(buf + o, m, (size_t)ml);
        o += (size_t)ml;
        free(m);
        i = k;
    }
    *out = buf;
    *out_len = o;
    return 0;
}

/* bpe_word through the cache: a word seen before in this call gives its
 * ids again; a new short word is remembered (until the cache is half full). */
static int bpe_cached(const fu_tokenizer *t, bpe_work *w, const unsigned char *s, size_t n, ids_vec *out) {
    if (n == 1) return push_id(out, t->byte_id[s[0]]);
    if (!w->cache || n > CACHE_MAX_WORD) return bpe_word(t, w, s, n, out);
    uint64_t h = XXH3_64bits(s, n);
    size_t i = h & (CACHE_SLOTS - 1);
    for (;;) {
        cache_slot *c = &w->cache[i];
        if (!c->len) break;
        if (c->hash == h && c->len == n && !memcmp(w->cache_text + c->text_off, s, n)) {
            for (int k = 0; k < c->n_ids; k++)
                if (push_id(out, w->cache_ids[c->ids_off + (size_t)k])) return -1;
            return 0;
        }
        i = (i + 1) & (CACHE_SLOTS - 1);
    }
    size_t before = out->n;
    if (bpe_word(t, w, s, n, out)) return -1;
    size_t n_ids = out->n - before;
    if (w->cache_used >= CACHE_SLOTS / 2 || n_ids > 255) return 0;
    if (w->text_used + n > w->text_cap) {
        size_t cap = w->text_cap ? 2 * w->text_cap : 1 << 16;
        char *b = realloc(w->cache_text, cap);
        if (!b) return 0;   /* no room to remember: still encoded */
        w->cache_text = b;
        w->text_cap = cap;
    }
    if (w->ids_used + n_ids > w->ids_cap) {
        size_t cap = w->ids_cap ? 2 * w->ids_cap : 1 << 14;
        int32_t *b = realloc(w->cache_ids, cap * sizeof *b);
        if (!b) return 0;
        w->cache_ids = b;
        w->ids_cap = cap;
    }
    cache_slot *c = &w->cache[i];
    c->hash = h;
    c->len = (uint8_t)n;
    c->n_ids = (uint8_t)n_ids;
    c->text_off = (uint32_t)w->text_used;
    c->ids_off = (uint32_t)w->ids_used;
    memcpy(w->cache_text + w->text_used, s, n);
    memcpy(w->cache_ids + w->ids_used, out->v + before, n_ids * sizeof *out->v);
    w->text_used += n;
    w->ids_used += n_ids;
    w->cache_used++;
    return 0;
}

/* A stretch of text between added tokens: normalize, split, BPE. */
static int encode_segment(const fu_tokenizer *t, const char *s, size_t n, bpe_work *w, pcre2_match_data *md,
                          ids_vec *out, char *err, size_t es) {
    if (!n) return 0;
    char *normalized = NULL;
    if (t->nfc && !is_ascii(s, n)) {
        if (nfc(s, n, &normalized, &n)) {
            set_err(err, es, "NFC normalization failed (out of memory)");
            return -1;
        }
        s = normalized;
    }
    int rc = 0;
    if (!t->re) {
        rc = bpe_cached(t, w, (const unsigned char *)s, n, out);
    } else {
        size_t pos = 0;
        while (pos < n) {
            int m = t->re_jit ? pcre2_jit_match(t->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL)
                              : pcre2_match(t->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
            size_t a = n, b = n;
            if (m >= 0) {
                PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
                a = ov[0];
                b = ov[1];
            } else if (m != PCRE2_ERROR_NOMATCH) {
                PCRE2_UCHAR msg[256];
                pcre2_get_error_message(m, msg, sizeof msg);
                set_err(err, es, "pre-tokenizer regex failed: %s", (const char *)msg);
                rc = -1;
                break;
            }
            /* Isolated: the text between matches is a pre-token too */
            if (a > pos && (rc = bpe_cached(t, w, (const unsigned char *)s + pos, a - pos, out))) break;
            if (a >= n) break;
            if (b == a) {   /* an empty match: step one character */
                size_t step = 1;
                while (a + step < n && ((unsigned char)s[a + step] & 0xc0) == 0x80) step++;
                if ((rc = bpe_cached(t, w, (const unsigned char *)s + a, step, out))) break;
                pos = a + step;
                continue;
            }
            if ((rc = bpe_cached(t, w, (const unsigned char *)s + a, b - a, out))) break;
            pos = b;
        }
        if (rc > 0) rc = -1;
    }
    if (rc && !err[0]) set_err(err, es, "out of memory");
    free(normalized);
    return rc;
}

int fu_tokenizer_encode(const fu_tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n_ids,
                        char *err, size_t es) {
    *ids = NULL;
    *n_ids = 0;
    if (err && es) err[0] = 0;
    size_t bad;
    if (fu_utf8_check(text, len, &bad)) {
        set_err(err, es, "invalid UTF-8 at byte offset %zu (byte 0x%02x)", bad, (unsigned char)text[bad]);
        return -1;
    }
    ids_vec out = {0};
    bpe_work w = {0};
    if (len >= 4096) w.cache = calloc(CACHE_SLOTS, sizeof *w.cache);   /* only worth it on long texts */
    pcre2_match_data *md = t->re ? pcre2_match_data_create_from_pattern(t->re, NULL) : NULL;
    int rc = 0;
    char dummy[8];
    if (!err || !es) err = dummy, es = sizeof dummy, err[0] = 0;
    if (t->re && !md) {
        set_err(err, es, "out of memory");
        rc = -1;
    }
    size_t seg = 0, i = 0;
    while (!rc && i < len) {
        const added_token *hit = NULL;
        if (t->added_first[(unsigned char)text[i]])
            for (int k = 0; k < t->n_added; k++)   /* longest first */
                if (t->added[k].len <= len - i && !memcmp(text + i, t->added[k].bytes, t->added[k].len)) {
                    hit = &t->added[k];
                    break;
                }
        if (!hit) {
            i++;
            continue;
        }
        rc = encode_segment(t, text + seg, i - seg, &w, md, &out, err, es);
        if (!rc && push_id(&out, hit->id)) {
            set_err(err, es, "out of memory");
            rc = -1;
        }
        i += hit->len;
        seg = i;
    }
    if (!rc) rc = encode_segment(t, text + seg, len - seg, &w, md, &out, err, es);
    if (md) pcre2_match_data_free(md);
    free(w.sym);
    free(w.prev);
    free(w.next);
    free(w.heap);
    free(w.cache);
    free(w.cache_text);
    free(w.cache_ids);
    if (rc) {
        free(out.v);
        return -1;
    }
    if (!out.v && !(out.v = malloc(sizeof *out.v))) {
        set_err(err, es, "out of memory");
        return -1;
    }
    *ids = out.v;
    *n_ids = out.n;
    return 0;
}

/* ---- decoding ------------------------------------------------------------------ */

int fu_tokenizer_decode(const fu_tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **text,
                        size_t *len, char *err, size_t es) {
    *text = NULL;
    *len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_ids || !t->tok[ids[i]]) {
            set_err(err, es, "token id %lld (at %zu) is not in the vocabulary of %s (0..%d)", (long long)ids[i], i,
                    t->path, (int)t->n_ids - 1);
            return -1;
        }
        if (!(skip_special && t->is_special[ids[i]])) total += t->tok_len[ids[i]];
    }
    char *out = malloc(total + 1);
    if (!out) {
        set_err(err, es, "out of memory");
        return -1;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (skip_special && t->is_special[ids[i]]) continue;
        memcpy(out + o, t->tok[ids[i]], t->tok_len[ids[i]]);
        o += t->tok_len[ids[i]];
    }
    out[o] = 0;
    *text = out;
    *len = o;
    return 0;
}

int32_t fu_tokenizer_vocab_size(const fu_tokenizer *t) { return t->n_ids; }

const char *fu_tokenizer_token(const fu_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_ids || !t->tok[id]) return NULL;
    if (len) *len = t->tok_len[id];
    return t->tok[id];
}
