/* Specialising a graph on the values of the inputs that decide its shapes
 * (compiler/specialize.h). Inference says which value it needed
 * (fu_err.needs_values); the graph inputs that value is computed from are
 * the ones to compile in. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include "../ops/emit.h"
#include "../ops/infer.h"
#include "specialize.h"

static const char *graph_path(const fu_graph *g) { return g->path ? g->path : "model"; }

static int graph_input_slot(const fu_graph *g, int v) {
    for (int i = 0; i < g->n_inputs; i++)
        if (g->inputs[i] == v) return i;
    return -1;
}

static int find_known(const fu_known_input *known, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(known[i].name, name) == 0) return i;
    return -1;
}

static int is_int(fu_dtype t) { return t == FU_I64 || t == FU_I32; }

/* Graph input `v` becomes a constant holding k's values. */
static int compile_in(fu_graph *g, int v, const fu_known_input *k, fu_sb *variant, fu_err *err) {
    fu_value *val = &g->values[v];
    char name[128];
    fu_sanitize(val->name, name, sizeof name);
    if (k->dtype != val->dtype && !(is_int(k->dtype) && is_int(val->dtype)))
        return fu_fail(err, "%s: input '%s' is %s, its given value %s", graph_path(g), name,
                       fu_dtype_name(val->dtype), fu_dtype_name(k->dtype));
    if (k->rank != val->rank)
        return fu_fail(err, "%s: input '%s' has rank %d, its given value rank %d", graph_path(g), name, val->rank,
                       k->rank);
    int64_t numel = 1;
    for (int d = 0; d < k->rank; d++) {
        if (!fu_dim_is_const(val->shape[d]))
            return fu_fail(err, "%s: input '%s' decides shapes but has a symbolic dim %d: it cannot be compiled in",
                           graph_path(g), name, d);
        if (val->shape[d].coef != k->shape[d])
            return fu_fail(err, "%s: input '%s': dim %d is %lld, its given value has %lld", graph_path(g), name, d,
                           (long long)val->shape[d].coef, (long long)k->shape[d]);
        numel *= k->shape[d];
    }
    size_t es = fu_dtype_size(val->dtype);
    unsigned char *data = malloc(numel * es + 1);
    if (!data) return fu_fail(err, "%s: out of memory", graph_path(g));
    for (int64_t i = 0; i < numel; i++) {
        if (k->dtype == val->dtype) {
            memcpy(data + i * es, (const unsigned char *)k->data + i * es, es);
            continue;
        }
        int64_t x;   /* int32 <-> int64 */
        if (k->dtype == FU_I64) {
            memcpy(&x, (const int64_t *)k->data + i, 8);
        } else {
            int32_t y;
            memcpy(&y, (const int32_t *)k->data + i, 4);
            x = y;
        }
        if (val->dtype == FU_I32) {
            if (x < INT32_MIN || x > INT32_MAX) {
                free(data);
                return fu_fail(err, "%s: input '%s': value %lld does not fit int32", graph_path(g), name, (long long)x);
            }
            int32_t y = (int32_t)x;
            memcpy(data + i * 4, &y, 4);
        } else {
            memcpy(data + i * 8, &x, 8);
        }
    }
    int rc = fu_value_set_data(val, data, (size_t)numel * es);
    free(data);
    if (rc) return fu_fail(err, "%s: out of memory", graph_path(g));
    char **grown = realloc(g->compiled_in, sizeof *grown * (size_t)(g->n_compiled_in + 1));
    if (!grown || !(grown[g->n_compiled_in] = strdup(val->name))) {
        if (grown) g->compiled_in = grown;
        return fu_fail(err, "%s: out of memory", graph_path(g));
    }
    g->compiled_in = grown;
    g->n_compiled_in++;
    val->kind = FU_VAL_CONST;
    val->producer = -1;
    val->external = 0;
    val->storage = FU_STORE_NONE;
    val->index = -1;
    int slot = graph_input_slot(g, v);
    memmove(&g->inputs[slot], &g->inputs[slot + 1], sizeof(int) * (size_t)(g->n_inputs - slot - 1));
    g->n_inputs--;
    fu_sb_printf(variant, "%s%s=%s%lld:%016llx", variant->len ? "," : "", name, fu_dtype_name(val->dtype),
                 (long long)numel, (unsigned long long)XXH3_64bits(val->data, val->nbytes));
    return 0;
}

/* Marks in `is_source` the graph inputs value v is computed from. */
static void sources(const fu_graph *g, int v, char *seen, char *is_source) {
    if (v < 0 || seen[v]) return;
    seen[v] = 1;
    const fu_value *val = &g->values[v];
    if (val->kind == FU_VAL_INPUT) {
        is_source[v] = 1;
        return;
    }
    if (val->producer < 0) return;
    const fu_node *n = &g->nodes[val->producer];
    for (int i = 0; i < n->n_in; i++) sources(g, n->in[i], seen, is_source);
}

int fu_specialize(fu_graph *g, const fu_known_input *known, int n_known, int always, char **variant, fu_err *err) {
    fu_sb done = {0};
    fu_sb_printf(&done, "%s", "");
    *variant = NULL;
    int rc = 0;
    for (int k = 0; always && rc == 0 && k < n_known; k++) {
        int v = fu_graph_find_value(g, known[k].name);
        if (v < 0 || graph_input_slot(g, v) < 0)
            rc = fu_fail(err, "%s: --specialize %s: the model has no input named '%s'", graph_path(g),
                         fu_safe(known[k].name).s, fu_safe(known[k].name).s);
        else
            rc = compile_in(g, v, &known[k], &done, err);
    }
    char *seen = NULL, *is_source = NULL;
    while (rc == 0) {
        if (fu_infer(g, err) == 0) break;
        rc = -1;
        if (!err->needs_values) break;
        free(seen), free(is_source);
        seen = calloc((size_t)g->n_values + 1, 1);
        is_source = calloc((size_t)g->n_values + 1, 1);
        if (!seen || !is_source) {
            fu_fail(err, "%s: out of memory", graph_path(g));
            break;
        }
        sources(g, err->needs_values - 1, seen, is_source);
        char missing[512] = "";
        size_t len = 0;
        int compiled = 0, n_missing = 0;
        fu_err sub = {0};
        for (int v = 0; v < g->n_values; v++) {
            if (!is_source[v]) continue;
            int k = find_known(known, n_known, g->values[v].name);
            if (k >= 0) {
                if (compile_in(g, v, &known[k], &done, &sub)) {
                    *err = sub;
                    n_missing = -1;
                    break;
                }
                compiled++;
            } else if (len < sizeof missing) {
                len += (size_t)snprintf(missing + len, sizeof missing - len, "%s'%s'", n_missing++ ? ", " : "",
                                        fu_safe(g->values[v].name).s);
            }
        }
        if (n_missing > 0) {
            char first[FU_ERR_LEN];
            snprintf(first, sizeof first, "%s", err->msg);
            fu_fail(err, "%s; it is computed from input%s %s, whose values decide shapes: give %s (fusec compile "
                    "--specialize NAME=VALUE; fusec run specialises on its --input values; "
                    "fusec_options.known_inputs)", first, n_missing > 1 ? "s" : "", missing,
                    n_missing > 1 ? "them" : "it");
            break;
        }
        if (n_missing < 0 || compiled == 0) break;
        rc = 0;
    }
    free(seen), free(is_source);
    if (rc == 0) {
        *variant = done.s;
        return 0;
    }
    fu_sb_free(&done);
    return -1;
}
