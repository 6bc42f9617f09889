/* The graph: value and node tables, names, dims, errors, copying and ordering
 * (attributes and constant data: ir/attrs.c). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ir.h"
#include "op_ids.h"
#include "weights.h"

/* ---- errors ---------------------------------------------------------- */

int fu_fail(fu_err *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->needs_values = 0;
    }
    return -1;
}

/* The escape of byte c (\n, \t, \r, \\, \xNN) into e; its length. */
static size_t escape_byte(unsigned char c, char e[5]) {
    static const char hex[] = "0123456789abcdef";
    char short_form = c == '\n' ? 'n' : c == '\t' ? 't' : c == '\r' ? 'r' : c == '\\' ? '\\' : 0;
    e[0] = '\\';
    if (short_form) {
        e[1] = short_form;
        return 2;
    }
    e[1] = 'x', e[2] = hex[c >> 4], e[3] = hex[c & 15];
    return 4;
}

/* keep(c): 1 as is, 0 as '?', -1 escaped. */
static void escape_into(const char *s, char *buf, size_t n, int (*keep)(unsigned char)) {
    if (n == 0) return;
    size_t j = 0;
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        int k = keep(c);
        char e[5];
        size_t len = 1;
        if (k > 0) e[0] = (char)c;
        else if (k == 0) e[0] = '?';
        else len = escape_byte(c, e);
        if (j + len + 1 > n) break;
        memcpy(buf + j, e, len);
        j += len;
    }
    buf[j] = 0;
}

static int is_control(unsigned char c) { return c < 0x20 || c >= 0x7f; }

static int sanitize_keep(unsigned char c) {
    if (is_control(c)) return -1;
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == ':' || c == '/' || c == ' ' || c == '-';
}

static int escape_keep(unsigned char c) { return is_control(c) || c == '\\' ? -1 : 1; }

void fu_sanitize(const char *s, char *buf, size_t n) { escape_into(s, buf, n, sanitize_keep); }

void fu_escape(const char *s, char *buf, size_t n) { escape_into(s, buf, n, escape_keep); }

static int controls_keep(unsigned char c) { return is_control(c) ? -1 : 1; }

void fu_escape_controls(const char *s, char *buf, size_t n) { escape_into(s, buf, n, controls_keep); }

fu_safe_str fu_safe(const char *s) {
    fu_safe_str r;
    fu_sanitize(s ? s : "", r.s, sizeof r.s);
    return r;
}

int fu_node_fail(fu_err *err, const fu_graph *g, const fu_node *n, const char *fmt, ...) {
    if (!err) return -1;
    char name[128], op[64], reason[FU_ERR_LEN];
    fu_sanitize(n && n->name ? n->name : "?", name, sizeof name);
    fu_sanitize(n && n->op ? n->op : "?", op, sizeof op);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    return fu_fail(err, "%s: node '%s' (%s): %s", g && g->path ? g->path : "model", name, op,
                   reason);
}

/* ---- dims ------------------------------------------------------------ */

fu_dim fu_dim_const(int64_t c) {
    fu_dim d;
    memset(&d, 0, sizeof d);
    d.coef = c;
    return d;
}

fu_dim fu_dim_sym(int sym) {
    fu_dim d = fu_dim_const(1);
    if (sym >= 0 && sym < FU_MAX_SYMS) d.pow[sym] = 1;
    return d;
}

int fu_dim_is_const(fu_dim d) {
    for (int i = 0; i < FU_MAX_SYMS; i++)
        if (d.pow[i]) return 0;
    return 1;
}

int fu_dim_eq(fu_dim a, fu_dim b) {
    if (a.coef != b.coef) return 0;
    if (a.coef == 0) return 1;  /* 0 * anything is 0 */
    return memcmp(a.pow, b.pow, sizeof a.pow) == 0;
}

fu_dim fu_dim_mul(fu_dim a, fu_dim b) {
    fu_dim d;
    if (__builtin_mul_overflow(a.coef, b.coef, &d.coef)) d.coef = INT64_MAX;
    for (int i = 0; i < FU_MAX_SYMS; i++) {
        unsigned p = (unsigned)a.pow[i] + b.pow[i];
        d.pow[i] = (uint8_t)(p > 255 ? 255 : p);
    }
    if (d.coef == 0) memset(d.pow, 0, sizeof d.pow);
    return d;
}

int fu_dim_div(fu_dim a, fu_dim b, fu_dim *out) {
    if (b.coef == 0 || a.coef % b.coef != 0) return -1;
    fu_dim d;
    d.coef = a.coef / b.coef;
    for (int i = 0; i < FU_MAX_SYMS; i++) {
        if (a.pow[i] < b.pow[i] && a.coef != 0) return -1;
        d.pow[i] = a.coef == 0 ? 0 : (uint8_t)(a.pow[i] - b.pow[i]);
    }
    *out = d;
    return 0;
}

/* Saturates at INT64_MAX so absurd sizes stay detectable instead of wrapping. */
int64_t fu_dim_eval(fu_dim d, const int64_t *sym_values) {
    int64_t v = d.coef;
    for (int i = 0; i < FU_MAX_SYMS; i++)
        for (int p = 0; p < d.pow[i]; p++) {
            int64_t s = sym_values ? sym_values[i] : 0;
            if (__builtin_mul_overflow(v, s, &v)) return INT64_MAX;
        }
    return v;
}

void fu_dim_str(const fu_graph *g, fu_dim d, char *buf, size_t n) {
    if (n == 0) return;
    size_t len = 0;
    buf[0] = 0;
    int any_sym = !fu_dim_is_const(d);
    if (!any_sym || d.coef != 1) len += (size_t)snprintf(buf, n, "%lld", (long long)d.coef);
    for (int i = 0; i < FU_MAX_SYMS && d.coef != 0; i++) {
        if (!d.pow[i] || len >= n) continue;
        char sname[32];
        if (g && i < g->n_syms && g->sym_names[i]) snprintf(sname, sizeof sname, "%s", g->sym_names[i]);
        else snprintf(sname, sizeof sname, "s%d", i);
        len += (size_t)snprintf(buf + len, n - len, "%s%s", len ? "*" : "", sname);
        if (d.pow[i] > 1 && len < n) len += (size_t)snprintf(buf + len, n - len, "^%d", d.pow[i]);
    }
}

/* ---- graph tables ---------------------------------------------------- */

/* Value names -> indices: open addressing with linear probing over a
 * power-of-two table, at most half full. It covers values [0, n_indexed);
 * values appended since (fu_graph_add_value inserts at once; a clone or a
 * test's hand-made values do not) are indexed on the next lookup, and
 * fu_graph_compact, which renumbers values, drops the table for a rebuild.
 * The first of two equal names wins, as a scan in index order would.
 * fu_graph_unique_name keeps, per base, the next suffix to try. */
typedef struct {
    char *base;
    long next;
} name_hint;

struct fu_name_index {
    int *slots;          /* value index + 1; 0 = empty */
    uint32_t *tags;      /* per slot: high bits of the name's hash (skips most strcmp) */
    size_t mask;         /* slot count - 1 */
    int n_indexed;
    name_hint *hints;
    size_t hint_mask;    /* hint slot count - 1, 0 before the first */
    size_t n_hints;
};

static void index_free(struct fu_name_index *ix);

fu_graph *fu_graph_new(const char *name) {
    fu_graph *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->name = strdup(name ? name : "model");
    g->names = calloc(1, sizeof *g->names);
    if (!g->name || !g->names) {
        free(g->name);
        free(g->names);
        free(g);
        return NULL;
    }
    return g;
}

static void free_value(fu_value *v) {
    free(v->name);
    if (v->owns_data) free(v->data);
    free(v->known);
}

static void free_node(fu_node *n) {
    free(n->name);
    free(n->op);
    free(n->in);
    free(n->out);
    for (int i = 0; i < n->n_attrs; i++) fu_attr_free(&n->attrs[i]);
    free(n->attrs);
}

void fu_graph_free(fu_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->n_values; i++) free_value(&g->values[i]);
    for (int i = 0; i < g->n_nodes; i++) free_node(&g->nodes[i]);
    free(g->values);
    free(g->nodes);
    free(g->inputs);
    free(g->outputs);
    for (int i = 0; i < g->n_syms; i++) free(g->sym_names[i]);
    if (g->weights) fu_weights_close(g->weights);  /* drops this graph's reference */
    free(g->name);
    free(g->path);
    free(g->weights_path);
    for (int i = 0; i < g->n_compiled_in; i++) free(g->compiled_in[i]);
    free(g->compiled_in);
    free(g->packed);
    index_free(g->names);
    free(g);
}

/* ---- value names ------------------------------------------------------ */

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h ^ (h >> 29);
}

/* Slot of name: its entry, or the empty slot where it would go. */
static size_t index_slot(const struct fu_name_index *ix, const fu_graph *g, const char *name, uint32_t *tag) {
    uint64_t h = name_hash(name);
    size_t i = (size_t)h & ix->mask;
    *tag = (uint32_t)(h >> 32);
    while (ix->slots[i] && (ix->tags[i] != *tag || strcmp(g->values[ix->slots[i] - 1].name, name) != 0))
        i = (i + 1) & ix->mask;
    return i;
}

static void index_put(struct fu_name_index *ix, const fu_graph *g, int v) {
    uint32_t tag;
    size_t i = index_slot(ix, g, g->values[v].name, &tag);
    if (ix->slots[i]) return;   /* a duplicate name: the first stays */
    ix->slots[i] = v + 1;
    ix->tags[i] = tag;
}

static void index_clear(struct fu_name_index *ix) {
    free(ix->slots);
    free(ix->tags);
    ix->slots = NULL;
    ix->tags = NULL;
    ix->mask = 0;
    ix->n_indexed = 0;
}

/* Brings the table up to the graph's values; -1 when out of memory (the
 * table is then empty and lookups scan). */
static int index_sync(const fu_graph *g) {
    struct fu_name_index *ix = g->names;
    if (ix->n_indexed > g->n_values) index_clear(ix);
    if (ix->n_indexed == g->n_values && ix->slots) return 0;
    size_t want = 16;
    while (want < 2 * (size_t)g->n_values + 2) want *= 2;
    if (want > ix->mask + 1 || !ix->slots) {
        int *slots = calloc(want, sizeof *slots);
        uint32_t *tags = malloc(want * sizeof *tags);
        if (!slots || !tags) {
            free(slots), free(tags);
            index_clear(ix);
            return -1;
        }
        index_clear(ix);
        ix->slots = slots;
        ix->tags = tags;
        ix->mask = want - 1;
        ix->n_indexed = 0;   /* re-inserted below */
    }
    for (int v = ix->n_indexed; v < g->n_values; v++) index_put(ix, g, v);
    ix->n_indexed = g->n_values;
    return 0;
}

static void index_free(struct fu_name_index *ix) {
    if (!ix) return;
    index_clear(ix);
    for (size_t i = 0; ix->hint_mask && i <= ix->hint_mask; i++) free(ix->hints[i].base);
    free(ix->hints);
    free(ix);
}

int fu_graph_find_value(const fu_graph *g, const char *name) {
    if (!name) return -1;
    if (g->names && index_sync(g) == 0) {
        uint32_t tag;
        return g->names->slots[index_slot(g->names, g, name, &tag)] - 1;
    }
    for (int i = 0; i < g->n_values; i++)   /* out of memory: scan */
        if (strcmp(g->values[i].name, name) == 0) return i;
    return -1;
}

/* The hint slot of base (NULL when there is no table and none can be made). */
static name_hint *hint_slot(struct fu_name_index *ix, const char *base) {
    if (2 * (ix->n_hints + 1) > ix->hint_mask + 1 || !ix->hint_mask) {
        size_t cap = ix->hint_mask ? 2 * (ix->hint_mask + 1) : 16;
        name_hint *h = calloc(cap, sizeof *h);
        if (!h) return NULL;
        for (size_t i = 0; ix->hint_mask && i <= ix->hint_mask; i++) {
            if (!ix->hints[i].base) continue;
            size_t j = (size_t)name_hash(ix->hints[i].base) & (cap - 1);
            while (h[j].base) j = (j + 1) & (cap - 1);
            h[j] = ix->hints[i];
        }
        free(ix->hints);
        ix->hints = h;
        ix->hint_mask = cap - 1;
    }
    size_t i = (size_t)name_hash(base) & ix->hint_mask;
    while (ix->hints[i].base && strcmp(ix->hints[i].base, base) != 0) i = (i + 1) & ix->hint_mask;
    if (!ix->hints[i].base) {
        if (!(ix->hints[i].base = strdup(base))) return NULL;
        ix->hints[i].next = 0;
        ix->n_hints++;
    }
    return &ix->hints[i];
}

int fu_graph_add_value(fu_graph *g, const char *name, fu_val_kind kind) {
    if (!name || fu_graph_find_value(g, name) >= 0) return -1;
    int indexed = g->names && g->names->slots && g->names->n_indexed == g->n_values;
    if (g->n_values == g->cap_values) {
        int cap = g->cap_values ? g->cap_values * 2 : 16;
        fu_value *nv = realloc(g->values, (size_t)cap * sizeof *nv);
        if (!nv) return -1;
        g->values = nv;
        g->cap_values = cap;
    }
    fu_value *v = &g->values[g->n_values];
    memset(v, 0, sizeof *v);
    v->name = strdup(name);
    if (!v->name) return -1;
    v->kind = kind;
    v->rank = -1;
    v->producer = -1;
    v->decl_rank = -1;
    v->alias_of = -1;
    v->index = -1;
    if (indexed) {   /* fu_graph_find_value left name's slot empty; the table stays under half full */
        if (2 * ((size_t)g->n_values + 2) > g->names->mask + 1) {
            g->n_values++;
            index_clear(g->names);   /* rebuilt larger on the next lookup */
            return g->n_values - 1;
        }
        index_put(g->names, g, g->n_values);
        g->names->n_indexed = g->n_values + 1;
    }
    return g->n_values++;
}

char *fu_graph_unique_name(const fu_graph *g, const char *base) {
    size_t n = strlen(base) + 24;
    char *s = malloc(n);
    if (!s) return NULL;
    name_hint *hint = g->names ? hint_slot(g->names, base) : NULL;
    long k = hint ? hint->next : 0;
    for (;; k++) {
        if (k) snprintf(s, n, "%s_%ld", base, k);
        else snprintf(s, n, "%s", base);
        if (fu_graph_find_value(g, s) < 0) break;
    }
    if (hint) hint->next = k + 1;
    return s;
}

int fu_graph_add_node(fu_graph *g, const char *name, const char *op, int n_in, const int *in,
                      int n_out, const int *out) {
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? g->cap_nodes * 2 : 16;
        fu_node *nn = realloc(g->nodes, (size_t)cap * sizeof *nn);
        if (!nn) return -1;
        g->nodes = nn;
        g->cap_nodes = cap;
    }
    int idx = g->n_nodes;
    fu_node *n = &g->nodes[idx];
    memset(n, 0, sizeof *n);
    char generated[32];
    if (!name) snprintf(generated, sizeof generated, "node_%d", idx);
    n->name = strdup(name ? name : generated);
    n->op = strdup(op ? op : "");
    n->op_id = fu_op_id_find(op ? op : "");
    n->in = malloc(sizeof(int) * (size_t)(n_in > 0 ? n_in : 1));
    n->out = malloc(sizeof(int) * (size_t)(n_out > 0 ? n_out : 1));
    if (!n->name || !n->op || !n->in || !n->out) {
        free_node(n);
        return -1;
    }
    n->n_in = n_in;
    n->n_out = n_out;
    if (n_in) memcpy(n->in, in, sizeof(int) * (size_t)n_in);
    if (n_out) memcpy(n->out, out, sizeof(int) * (size_t)n_out);
    n->loop_group = -1;
    for (int i = 0; i < n_out; i++)
        if (out[i] >= 0 && out[i] < g->n_values) g->values[out[i]].producer = idx;
    g->n_nodes++;
    return idx;
}

/* Producer of each value from the live nodes (the field may be stale after
 * passes reorder or kill nodes). */
static void recompute_producers(fu_graph *g) {
    for (int i = 0; i < g->n_values; i++) g->values[i].producer = -1;
    for (int k = 0; k < g->n_nodes; k++) {
        if (g->nodes[k].dead) continue;
        for (int o = 0; o < g->nodes[k].n_out; o++) {
            int v = g->nodes[k].out[o];
            if (v >= 0 && v < g->n_values) g->values[v].producer = k;
        }
    }
}

void fu_graph_compact(fu_graph *g) {
    /* Drop dead nodes, keeping order. */
    int kept = 0;
    for (int k = 0; k < g->n_nodes; k++) {
        if (g->nodes[k].dead) free_node(&g->nodes[k]);
        else g->nodes[kept++] = g->nodes[k];
    }
    g->n_nodes = kept;

    /* Mark values still referenced. */
    char *used = calloc((size_t)g->n_values + 1, 1);
    int *remap = malloc(sizeof(int) * ((size_t)g->n_values + 1));
    if (!used || !remap) {  /* out of memory: leave values as they are */
        free(used);
        free(remap);
        recompute_producers(g);
        return;
    }
    for (int i = 0; i < g->n_inputs; i++) used[g->inputs[i]] = 1;
    for (int i = 0; i < g->n_outputs; i++) used[g->outputs[i]] = 1;
    for (int k = 0; k < g->n_nodes; k++) {
        for (int i = 0; i < g->nodes[k].n_in; i++)
            if (g->nodes[k].in[i] >= 0) used[g->nodes[k].in[i]] = 1;
        for (int i = 0; i < g->nodes[k].n_out; i++)
            if (g->nodes[k].out[i] >= 0) used[g->nodes[k].out[i]] = 1;
    }
    for (int i = 0; i < g->n_values; i++)  /* an alias keeps its target alive */
        if (used[i] && g->values[i].alias_of >= 0) used[g->values[i].alias_of] = 1;

    int nv = 0;
    for (int i = 0; i < g->n_values; i++) {
        if (used[i]) {
            remap[i] = nv;
            g->values[nv++] = g->values[i];
        } else {
            remap[i] = -1;
            free_value(&g->values[i]);
        }
    }
    g->n_values = nv;
    if (g->names) index_clear(g->names);   /* renumbered: rebuilt on the next lookup */
    for (int i = 0; i < nv; i++)
        if (g->values[i].alias_of >= 0) g->values[i].alias_of = remap[g->values[i].alias_of];
    for (int i = 0; i < g->n_inputs; i++) g->inputs[i] = remap[g->inputs[i]];
    for (int i = 0; i < g->n_outputs; i++) g->outputs[i] = remap[g->outputs[i]];
    for (int k = 0; k < g->n_nodes; k++) {
        fu_node *n = &g->nodes[k];
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] >= 0) n->in[i] = remap[n->in[i]];
        for (int i = 0; i < n->n_out; i++)
            if (n->out[i] >= 0) n->out[i] = remap[n->out[i]];
    }
    free(used);
    free(remap);
    recompute_producers(g);
}

/* Min-heap of node indices: Kahn's algorithm always takes the earliest ready
 * node, so an already sorted graph keeps its order. */
static void heap_push(int *h, int *n, int x) {
    int i = (*n)++;
    h[i] = x;
    while (i > 0 && h[(i - 1) / 2] > h[i]) {
        int p = (i - 1) / 2, t = h[p];
        h[p] = h[i];
        h[i] = t;
        i = p;
    }
}

static int heap_pop(int *h, int *n) {
    int top = h[0];
    h[0] = h[--(*n)];
    for (int i = 0;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && h[l] < h[m]) m = l;
        if (r < *n && h[r] < h[m]) m = r;
        if (m == i) break;
        int t = h[m];
        h[m] = h[i];
        h[i] = t;
        i = m;
    }
    return top;
}

int fu_graph_toposort(fu_graph *g, fu_err *err) {
    int nn = g->n_nodes;
    if (nn == 0) return 0;
    recompute_producers(g);
    int *indeg = calloc((size_t)nn, sizeof(int));
    int *heap = malloc(sizeof(int) * (size_t)nn);
    int *order = malloc(sizeof(int) * (size_t)nn);
    /* consumers as CSR: for each producing node, the consuming nodes */
    int *cstart = calloc((size_t)nn + 1, sizeof(int));
    int n_edges = 0;
    for (int k = 0; k < nn; k++) n_edges += g->nodes[k].n_in;
    int *cons = malloc(sizeof(int) * (size_t)(n_edges + 1));
    int *fill = calloc((size_t)nn + 1, sizeof(int));
    fu_node *sorted = malloc(sizeof(fu_node) * (size_t)nn);
    int rc = -1;
    if (!indeg || !heap || !order || !cstart || !cons || !fill || !sorted) {
        fu_fail(err, "%s: out of memory sorting nodes", g->path ? g->path : "model");
        goto done;
    }
    for (int k = 0; k < nn; k++) {
        fu_node *n = &g->nodes[k];
        if (n->dead) continue;
        for (int i = 0; i < n->n_in; i++) {
            int v = n->in[i];
            if (v < 0 || v >= g->n_values || g->values[v].producer < 0) continue;
            indeg[k]++;
            cstart[g->values[v].producer + 1]++;
        }
    }
    for (int k = 0; k < nn; k++) cstart[k + 1] += cstart[k];
    for (int k = 0; k < nn; k++) {
        fu_node *n = &g->nodes[k];
        if (n->dead) continue;
        for (int i = 0; i < n->n_in; i++) {
            int v = n->in[i];
            if (v < 0 || v >= g->n_values || g->values[v].producer < 0) continue;
            int p = g->values[v].producer;
            cons[cstart[p] + fill[p]++] = k;
        }
    }
    int hn = 0, n_order = 0, n_live = 0;
    for (int k = 0; k < nn; k++) {
        if (g->nodes[k].dead) continue;
        n_live++;
        if (indeg[k] == 0) heap_push(heap, &hn, k);
    }
    while (hn > 0) {
        int k = heap_pop(heap, &hn);
        order[n_order++] = k;
        for (int e = cstart[k]; e < cstart[k + 1]; e++)
            if (--indeg[cons[e]] == 0) heap_push(heap, &hn, cons[e]);
    }
    if (n_order < n_live) {
        /* Walk back along unsorted producers: after n_live steps we are on a cycle. */
        int k = 0;
        while (g->nodes[k].dead || indeg[k] == 0) k++;
        for (int step = 0; step < n_live; step++) {
            fu_node *n = &g->nodes[k];
            for (int i = 0; i < n->n_in; i++) {
                int v = n->in[i];
                if (v < 0 || v >= g->n_values) continue;
                int p = g->values[v].producer;
                if (p >= 0 && indeg[p] > 0) {
                    k = p;
                    break;
                }
            }
        }
        fu_node_fail(err, g, &g->nodes[k], "cycle in graph");
        goto done;
    }
    /* Dead nodes go last, in their old order, until compaction drops them. */
    for (int k = 0; k < nn; k++)
        if (g->nodes[k].dead) order[n_order++] = k;
    for (int k = 0; k < nn; k++) sorted[k] = g->nodes[order[k]];
    memcpy(g->nodes, sorted, sizeof(fu_node) * (size_t)nn);
    recompute_producers(g);
    rc = 0;
done:
    free(indeg);
    free(heap);
    free(order);
    free(cstart);
    free(cons);
    free(fill);
    free(sorted);
    return rc;
}

static int copy_attr(fu_attr *dst, const fu_attr *src) {
    *dst = *src;
    dst->name = NULL;
    dst->ints = NULL;
    dst->floats = NULL;
    dst->s = NULL;
    dst->t_data = NULL;
    dst->name = strdup(src->name);
    if (!dst->name) return -1;
    if (src->ints) {
        dst->ints = malloc(sizeof(int64_t) * (size_t)(src->n ? src->n : 1));
        if (!dst->ints) return -1;
        memcpy(dst->ints, src->ints, sizeof(int64_t) * (size_t)src->n);
    }
    if (src->floats) {
        dst->floats = malloc(sizeof(double) * (size_t)(src->n ? src->n : 1));
        if (!dst->floats) return -1;
        memcpy(dst->floats, src->floats, sizeof(double) * (size_t)src->n);
    }
    if (src->s && !(dst->s = strdup(src->s))) return -1;
    if (src->t_data) {
        size_t nb = fu_dtype_size(src->t_dtype);
        for (int i = 0; i < src->t_rank; i++) nb *= (size_t)src->t_shape[i];
        dst->t_data = malloc(nb ? nb : 1);
        if (!dst->t_data) return -1;
        memcpy(dst->t_data, src->t_data, nb);
    }
    return 0;
}

fu_graph *fu_graph_clone(const fu_graph *g) {
    fu_graph *c = fu_graph_new(g->name);
    if (!c) return NULL;
    if (g->path && !(c->path = strdup(g->path))) goto fail;
    if (g->weights_path && !(c->weights_path = strdup(g->weights_path))) goto fail;
    c->weights_allow_external = g->weights_allow_external;
    if (g->n_compiled_in) {
        if (!(c->compiled_in = calloc((size_t)g->n_compiled_in, sizeof *c->compiled_in))) goto fail;
        for (; c->n_compiled_in < g->n_compiled_in; c->n_compiled_in++)
            if (!(c->compiled_in[c->n_compiled_in] = strdup(g->compiled_in[c->n_compiled_in]))) goto fail;
    }
    for (int i = 0; i < g->n_syms; i++) {
        if (!(c->sym_names[i] = strdup(g->sym_names[i]))) goto fail;
        c->sym_max[i] = g->sym_max[i];
        c->n_syms = i + 1;
    }
    c->values = calloc((size_t)g->n_values + 1, sizeof(fu_value));
    c->nodes = calloc((size_t)g->n_nodes + 1, sizeof(fu_node));
    c->inputs = malloc(sizeof(int) * ((size_t)g->n_inputs + 1));
    c->outputs = malloc(sizeof(int) * ((size_t)g->n_outputs + 1));
    if (!c->values || !c->nodes || !c->inputs || !c->outputs) goto fail;
    c->cap_values = g->n_values + 1;
    c->cap_nodes = g->n_nodes + 1;
    for (int i = 0; i < g->n_values; i++) {
        const fu_value *s = &g->values[i];
        fu_value *d = &c->values[i];
        *d = *s;
        d->name = NULL;
        d->known = NULL;
        if (s->owns_data) d->data = NULL;
        c->n_values = i + 1;  /* from here on, fu_graph_free cleans d up */
        if (!(d->name = strdup(s->name))) goto fail;
        if (s->owns_data && s->data) {
            if (!(d->data = malloc(s->nbytes ? s->nbytes : 1))) goto fail;
            memcpy(d->data, s->data, s->nbytes);
        }
        if (s->known && s->n_known > 0) {
            if (!(d->known = malloc(sizeof(fu_dim) * (size_t)s->n_known))) goto fail;
            memcpy(d->known, s->known, sizeof(fu_dim) * (size_t)s->n_known);
        }
    }
    for (int k = 0; k < g->n_nodes; k++) {
        const fu_node *s = &g->nodes[k];
        fu_node *d = &c->nodes[k];
        *d = *s;
        d->name = d->op = NULL;
        d->in = d->out = NULL;
        d->attrs = NULL;
        d->n_attrs = 0;
        c->n_nodes = k + 1;
        if (!(d->name = strdup(s->name)) || !(d->op = strdup(s->op))) goto fail;
        d->in = malloc(sizeof(int) * (size_t)(s->n_in ? s->n_in : 1));
        d->out = malloc(sizeof(int) * (size_t)(s->n_out ? s->n_out : 1));
        if (!d->in || !d->out) goto fail;
        memcpy(d->in, s->in, sizeof(int) * (size_t)s->n_in);
        memcpy(d->out, s->out, sizeof(int) * (size_t)s->n_out);
        if (s->n_attrs) {
            if (!(d->attrs = calloc((size_t)s->n_attrs, sizeof(fu_attr)))) goto fail;
            for (int a = 0; a < s->n_attrs; a++) {
                d->n_attrs = a + 1;
                if (copy_attr(&d->attrs[a], &s->attrs[a])) goto fail;
            }
        }
    }
    memcpy(c->inputs, g->inputs, sizeof(int) * (size_t)g->n_inputs);
    memcpy(c->outputs, g->outputs, sizeof(int) * (size_t)g->n_outputs);
    c->n_inputs = g->n_inputs;
    c->n_outputs = g->n_outputs;
    memcpy(c->profile, g->profile, sizeof c->profile);
    memcpy(c->precision, g->precision, sizeof c->precision);
    c->arena_bytes = g->arena_bytes;
    c->n_loop_groups = g->n_loop_groups;
    /* The mapping is shared; the reference count keeps it alive until the
     * last graph using it is freed. */
    if (g->weights) c->weights = fu_weights_retain(g->weights);
    return c;
fail:
    fu_graph_free(c);
    return NULL;
}

int *fu_graph_use_counts(const fu_graph *g) {
    int *uses = calloc((size_t)g->n_values + 1, sizeof(int));
    if (!uses) return NULL;
    for (int k = 0; k < g->n_nodes; k++) {
        const fu_node *n = &g->nodes[k];
        if (n->dead) continue;
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] >= 0 && n->in[i] < g->n_values) uses[n->in[i]]++;
    }
    for (int i = 0; i < g->n_outputs; i++) uses[g->outputs[i]]++;
    return uses;
}

int64_t fu_value_numel_max(const fu_graph *g, const fu_value *v) {
    if (v->rank < 0) return -1;
    int64_t n = 1;
    for (int i = 0; i < v->rank; i++) {
        int64_t d = fu_dim_eval(v->shape[i], g->sym_max);
        if (d < 0 || __builtin_mul_overflow(n, d, &n)) return INT64_MAX;
    }
    return n;
}

int fu_value_numel_const(const fu_value *v, int64_t *out) {
    if (v->rank < 0) return -1;
    int64_t n = 1;
    for (int i = 0; i < v->rank; i++) {
        if (!fu_dim_is_const(v->shape[i])) return -1;
        if (__builtin_mul_overflow(n, v->shape[i].coef, &n)) return -1;
    }
    *out = n;
    return 0;
}
