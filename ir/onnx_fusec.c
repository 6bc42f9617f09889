/* Reading back what fusec export writes: ir/onnx_fusec.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "files.h"
#include "onnx_fusec.h"
#include "weights.h"

static int parse_u64(const char *s, uint64_t *out) {
    if (!s || !*s) return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10) return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

/* location, offset and length of an external tensor. */
static int ext_fields(const Onnx__TensorProto *t, const char *model_path, const char *what, size_t want,
                      const char **location, uint64_t *offset, fu_err *err) {
    uint64_t length = want;
    int has_length = 0;
    *location = NULL;
    *offset = 0;
    for (size_t i = 0; i < t->n_external_data; i++) {
        const char *k = t->external_data[i]->key ? t->external_data[i]->key : "";
        const char *v = t->external_data[i]->value ? t->external_data[i]->value : "";
        if (strcmp(k, "location") == 0) *location = v;
        else if (strcmp(k, "offset") == 0 && parse_u64(v, offset))
            return fu_fail(err, "%s: %s: external data offset '%s' is not a number", model_path, what, fu_safe(v).s);
        else if (strcmp(k, "length") == 0) {
            if (parse_u64(v, &length))
                return fu_fail(err, "%s: %s: external data length '%s' is not a number", model_path, what, fu_safe(v).s);
            has_length = 1;
        }
    }
    if (!*location || !**location) return fu_fail(err, "%s: %s: external data has no location", model_path, what);
    if (has_length && length != want)
        return fu_fail(err, "%s: %s: external data length %llu but the shape needs %zu bytes", model_path, what,
                       (unsigned long long)length, want);
    return 0;
}

static fu_dtype tensor_dtype(int32_t t) {
    switch (t) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: return FU_F32;
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16: return FU_F16;
    case ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16: return FU_BF16;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return FU_I64;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: return FU_I32;
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: return FU_BOOL;
    default: return FU_UNDEF;
    }
}

int fu_onnx_add_mapped(fu_graph *g, const char *name, const Onnx__TensorProto *t, const char *model_path,
                       int allow_external, const char *what, fu_err *err) {
    fu_dtype dt = tensor_dtype(t->data_type);
    if (dt == FU_UNDEF || t->n_dims > FU_MAX_RANK || t->segment) return 0;   /* the reader says why */
    int64_t numel = 1;
    for (size_t d = 0; d < t->n_dims; d++) {
        if (t->dims[d] < 0 || t->dims[d] > FU_MAX_NUMEL || (t->dims[d] && numel > FU_MAX_NUMEL / t->dims[d])) return 0;
        numel *= t->dims[d];
    }
    size_t want = (size_t)numel * fu_dtype_size(dt);
    const char *location;
    uint64_t offset;
    if (ext_fields(t, model_path, what, want, &location, &offset, err)) return -1;
    char *resolved = NULL;
    int fd = fu_open_model_file(model_path, location, allow_external, "external data file", &resolved, NULL, err);
    if (fd < 0) return -1;
    if (g->weights && (!g->weights_path || strcmp(resolved, g->weights_path) != 0)) {
        close(fd);
        free(resolved);
        return 0;   /* a second file: read into memory */
    }
    if (!g->weights) {
        fu_err werr;
        fu_weights *w = fu_weights_open_fd(fd, resolved, &werr);
        if (!w) {
            free(resolved);
            return 0;   /* not a safetensors file: read into memory */
        }
        g->weights = w;
        free(g->weights_path);
        g->weights_path = resolved;
    } else {
        close(fd);
        free(resolved);
    }
    const void *data = fu_weights_at(g->weights, offset, want);
    if (!data)
        return fu_fail(err, "%s: %s: external data [%llu, +%zu) is not inside the data of '%s'", model_path, what,
                       (unsigned long long)offset, want, fu_safe(location).s);
    int vi = fu_graph_add_value(g, name, FU_VAL_CONST);
    if (vi < 0) return fu_fail(err, "%s: %s: duplicate name '%s'", model_path, what, fu_safe(name).s);
    fu_value *v = &g->values[vi];
    v->dtype = dt;
    v->rank = (int)t->n_dims;
    for (size_t d = 0; d < t->n_dims; d++) v->shape[d] = fu_dim_const(t->dims[d]);
    v->producer = -1;
    v->data = (void *)data;
    v->nbytes = want;
    v->owns_data = 0;
    v->external = 1;
    return 1;
}

int fu_onnx_read_external(const Onnx__TensorProto *t, const char *model_path, int allow_external, const char *what,
                          void *buf, size_t want, fu_err *err) {
    const char *location;
    uint64_t offset;
    if (ext_fields(t, model_path, what, want, &location, &offset, err)) return -1;
    struct stat st;
    int fd = fu_open_model_file(model_path, location, allow_external, "external data file", NULL, &st, err);
    if (fd < 0) return -1;
    if (offset > (uint64_t)st.st_size || want > (uint64_t)st.st_size - offset) {
        close(fd);
        return fu_fail(err, "%s: %s: external data [%llu, +%zu) lies past the end of '%s' (%lld bytes)", model_path,
                       what, (unsigned long long)offset, want, fu_safe(location).s, (long long)st.st_size);
    }
    size_t got = 0;
    while (got < want) {
        ssize_t k = pread(fd, (char *)buf + got, want - got, (off_t)(offset + got));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
    }
    close(fd);
    if (got != want) return fu_fail(err, "%s: %s: read error in '%s'", model_path, what, fu_safe(location).s);
    return 0;
}

const char *fu_onnx_fusec_op(const char *domain, const char *op_type) {
    if (!domain || strcmp(domain, "fusec") != 0 || !op_type) return NULL;
    if (strcmp(op_type, "SwiGLU") == 0) return "SwiGLU";
    if (strncmp(op_type, "FusedMatMul", 11) == 0) return "FusedMatMul";
    return NULL;
}

/* FusedMatMul[_tA][_tB<rank>][_alpha<float bits hex>][_bias] */
int fu_onnx_fusec_attrs(fu_node *n, const char *op_type) {
    if (strncmp(op_type, "FusedMatMul", 11) != 0) return 0;
    const char *p = op_type + 11;
    while (*p == '_') {
        p++;
        if (strncmp(p, "tA", 2) == 0) {
            if (!fu_node_set_attr_int(n, "transA", 1)) return -1;
        } else if (strncmp(p, "tB", 2) == 0) {
            if (!fu_node_set_attr_int(n, "transB", 1)) return -1;
        } else if (strncmp(p, "alpha", 5) == 0) {
            uint32_t bits = (uint32_t)strtoul(p + 5, NULL, 16);
            float f;
            memcpy(&f, &bits, 4);
            if (!fu_node_set_attr_float(n, "alpha", f)) return -1;
        }
        p = strchr(p, '_');
        if (!p) break;
    }
    return 0;
}
