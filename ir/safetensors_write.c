/* Writing a graph's constants as a safetensors file (fusec import): the
 * header (JSON built with json-c, padded to 8 bytes) then each tensor's
 * bytes, in value order. */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "safetensors_write.h"

static const char *st_dtype(fu_dtype t) {
    switch (t) {
    case FU_F32: return "F32";
    case FU_F16: return "F16";
    case FU_BF16: return "BF16";
    case FU_I64: return "I64";
    case FU_I32: return "I32";
    case FU_BOOL: return "BOOL";
    default: return NULL;
    }
}

static int stored(const fu_value *v) { return v->kind == FU_VAL_CONST && v->data && v->rank >= 0; }

/* only: which values to write (NULL: every stored constant) */
static int write_filtered(const fu_graph *g, const char *path, const char *only, fu_err *err);

int fu_safetensors_write(const fu_graph *g, const char *path, fu_err *err) {
    return write_filtered(g, path, NULL, err);
}

int fu_safetensors_write_code_weights(const fu_graph *g, const char *path, fu_err *err) {
    char *only = calloc((size_t)g->n_values + 1, 1);
    if (!only) return fu_fail(err, "%s: out of memory", path);
    for (int v = 0; v < g->n_values; v++) only[v] = g->values[v].storage == FU_STORE_WEIGHT;
    for (int i = 0; i < g->n_packed; i++) only[g->packed[i].value] = 1;   /* read packed only */
    int rc = write_filtered(g, path, only, err);
    free(only);
    return rc;
}

static int write_filtered(const fu_graph *g, const char *path, const char *only, fu_err *err) {
    json_object *hdr = json_object_new_object();
    if (!hdr) return fu_fail(err, "%s: out of memory", path);
    uint64_t off = 0;
    for (int i = 0; i < g->n_values; i++) {
        const fu_value *v = &g->values[i];
        if (!stored(v) || (only && !only[i])) continue;
        const char *dt = st_dtype(v->dtype);
        json_object *e = json_object_new_object(), *shape = json_object_new_array(), *offs = json_object_new_array();
        if (!dt || !e || !shape || !offs) {
            json_object_put(e), json_object_put(shape), json_object_put(offs), json_object_put(hdr);
            return fu_fail(err, "%s: cannot write constant '%s'", path, v->name);
        }
        for (int d = 0; d < v->rank; d++) json_object_array_add(shape, json_object_new_int64(v->shape[d].coef));
        json_object_array_add(offs, json_object_new_int64((int64_t)off));
        json_object_array_add(offs, json_object_new_int64((int64_t)(off + v->nbytes)));
        json_object_object_add(e, "dtype", json_object_new_string(dt));
        json_object_object_add(e, "shape", shape);
        json_object_object_add(e, "data_offsets", offs);
        json_object_object_add(hdr, v->name, e);
        off += v->nbytes;
    }
    const char *text = json_object_to_json_string_ext(hdr, JSON_C_TO_STRING_PLAIN);
    size_t hlen = strlen(text), padded = (hlen + 7) & ~(size_t)7;
    FILE *f = fopen(path, "wb");
    if (!f) {
        json_object_put(hdr);
        return fu_fail(err, "%s: cannot create the weights file", path);
    }
    uint8_t len8[8];
    for (int k = 0; k < 8; k++) len8[k] = (uint8_t)((uint64_t)padded >> (8 * k));
    int bad = fwrite(len8, 1, 8, f) != 8 || fwrite(text, 1, hlen, f) != hlen;
    for (size_t k = hlen; k < padded && !bad; k++) bad = fputc(' ', f) == EOF;
    json_object_put(hdr);
    for (int i = 0; i < g->n_values && !bad; i++) {
        const fu_value *v = &g->values[i];
        if (stored(v) && (!only || only[i]) && v->nbytes) bad = fwrite(v->data, 1, v->nbytes, f) != v->nbytes;
    }
    if (fclose(f) != 0) bad = 1;
    if (bad) {
        remove(path);
        return fu_fail(err, "%s: write error", path);
    }
    return 0;
}
