/* ONNX tensors: TensorProto -> dtype, shape and bytes (inline, or a byte
 * range of an external-data file mapped into the weights table), initializers
 * -> constants or weights, and the weights table sealed with the model's
 * content id. The graph is built by ir/onnx_read.c; ir/onnx_read.h is the
 * interface. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/evp.h>
#include "files.h"
#include "mapguard.h"
#include "model_limits.h"
#include "onnx_read_impl.h"

/* Initializers from this size up are weights (w[], mapped or held by the
 * weights table) rather than constants embedded in the generated C. */
#define INLINE_WEIGHT_BYTES 4096

fu_dtype fu_onnx_dtype(int32_t t) {
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

/* A non-negative decimal integer of an external_data entry. */
static int parse_u64(const char *s, uint64_t *out) {
    if (!s || *s < '0' || *s > '9') return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10) return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

/* External data: "location" (inside the model's folder unless allowed),
 * "offset" (default 0) and "length" (default: what the shape needs). */
static int external_data(reader *r, const Onnx__TensorProto *t, const char *what, fu_onnx_tensor *tb) {
    const char *location = NULL;
    uint64_t offset = 0, length = tb->nbytes;
    for (size_t i = 0; i < t->n_external_data; i++) {
        const char *k = onnx_str(t->external_data[i]->key), *v = t->external_data[i]->value;
        if (!strcmp(k, "location")) location = onnx_str(v);
        else if (!strcmp(k, "offset") && parse_u64(v, &offset))
            return fu_fail(r->err, "%s: %s: external data offset '%s' is not a non-negative integer", r->path, what,
                           fu_safe(onnx_str(v)).s);
        else if (!strcmp(k, "length") && parse_u64(v, &length))
            return fu_fail(r->err, "%s: %s: external data length '%s' is not a non-negative integer", r->path, what,
                           fu_safe(onnx_str(v)).s);
    }
    if (!location || !*location) return fu_fail(r->err, "%s: %s: external data has no location", r->path, what);
    if (length != tb->nbytes)
        return fu_fail(r->err, "%s: %s: external data length %llu but the shape needs %zu bytes", r->path, what,
                       (unsigned long long)length, tb->nbytes);
    if (!r->w && !(r->w = fu_weights_new(r->path, r->err))) return -1;
    char *resolved = NULL;
    char whatfile[300];
    snprintf(whatfile, sizeof whatfile, "external data of %s", what);
    int fd = fu_open_model_file(r->path, location, r->o && r->o->allow_external_weights, whatfile, &resolved, NULL,
                                r->err);
    if (fd < 0) return -1;
    int file = fu_weights_map_file(r->w, fd, resolved, r->err);
    if (file < 0) {
        free(resolved);
        return -1;
    }
    size_t size;
    const uint8_t *map = fu_weights_mapped_bytes(r->w, file, &size);
    if (offset > size || tb->nbytes > size - offset) {
        fu_fail(r->err, "%s: %s: external data [%llu, %llu) is past the end of %s (%zu bytes)", r->path, what,
                (unsigned long long)offset, (unsigned long long)(offset + tb->nbytes), resolved, size);
        free(resolved);
        return -1;
    }
    free(resolved);
    if (offset % fu_dtype_size(tb->dt)) {   /* misaligned for its type: held as an aligned copy */
        if (!(tb->data = malloc(tb->nbytes ? tb->nbytes : 1)))
            return fu_fail(r->err, "%s: %s: out of memory", r->path, what);
        fu_mapguard_enter();
        memcpy(tb->data, map + offset, tb->nbytes);
        fu_mapguard_leave();
        if (fu_weights_faulted(r->w)) {
            free(tb->data);
            tb->data = NULL;
            return fu_fail(r->err, "%s: %s: its external data file shrank while it was read", r->path, what);
        }
        return 0;
    }
    tb->file = file;
    tb->offset = offset;
    return 0;
}

int fu_onnx_read_tensor(reader *r, const Onnx__TensorProto *t, const char *what, fu_onnx_tensor *tb) {
    memset(tb, 0, sizeof *tb);
    tb->file = -1;
    tb->dt = fu_onnx_dtype(t->data_type);
    if (tb->dt == FU_UNDEF)
        return fu_fail(r->err, "%s: %s: data type %d is not supported (float32, float16, bfloat16, int64, "
                       "int32, bool)", r->path, what, (int)t->data_type);
    if (t->segment) return fu_fail(r->err, "%s: %s: segmented tensors are not supported", r->path, what);
    if (t->n_dims > FU_MAX_RANK)
        return fu_fail(r->err, "%s: %s: rank %zu exceeds %d", r->path, what, t->n_dims, FU_MAX_RANK);
    int64_t numel = 1;
    for (size_t d = 0; d < t->n_dims; d++) {
        if (t->dims[d] < 0 || t->dims[d] > FU_MAX_NUMEL || (t->dims[d] && numel > FU_MAX_NUMEL / t->dims[d]))
            return fu_fail(r->err, "%s: %s: dims are negative or too large", r->path, what);
        numel *= t->dims[d];
        tb->shape[d] = t->dims[d];
    }
    tb->rank = (int)t->n_dims;
    fu_dtype dt = tb->dt;
    size_t es = fu_dtype_size(dt), want = (size_t)numel * es;
    tb->nbytes = want;
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return external_data(r, t, what, tb);
    size_t have;
    const char *field;
    if (t->has_raw_data) {
        have = t->raw_data.len / es;
        field = "raw_data";
        if (t->raw_data.len != want) have = (size_t)-1;
    } else if (dt == FU_F32) {
        have = t->n_float_data;
        field = "float_data";
    } else if (dt == FU_I64) {
        have = t->n_int64_data;
        field = "int64_data";
    } else {
        have = t->n_int32_data;
        field = "int32_data";
    }
    if (have != (size_t)numel) {
        if (have == (size_t)-1)
            return fu_fail(r->err, "%s: %s: raw_data has %zu bytes but the shape needs %zu", r->path, what,
                           t->raw_data.len, want);
        return fu_fail(r->err, "%s: %s: %s has %zu elements but the shape needs %lld", r->path, what, field,
                       have, (long long)numel);
    }
    uint8_t *buf = malloc(want ? want : 1);
    if (!buf) return fu_fail(r->err, "%s: %s: out of memory", r->path, what);
    if (t->has_raw_data) {
        if (want) memcpy(buf, t->raw_data.data, want);   /* little-endian, as the host */
    } else if (dt == FU_F32) {
        if (want) memcpy(buf, t->float_data, want);
    } else if (dt == FU_I64) {
        if (want) memcpy(buf, t->int64_data, want);
    } else {
        for (int64_t i = 0; i < numel; i++) {
            int32_t x = t->int32_data[i];
            if (dt == FU_I32) memcpy(buf + i * 4, &x, 4);
            else if (dt == FU_BOOL) buf[i] = x != 0;
            else {
                uint16_t h = (uint16_t)x;   /* float16 / bfloat16 bits */
                memcpy(buf + i * 2, &h, 2);
            }
        }
    }
    tb->data = buf;
    return 0;
}

/* A named tensor of the model (an initializer, or a Constant node's
 * value): a weight when it is external data or large, else a constant
 * embedded in the code. Without a graph (r->g NULL) only weights are
 * kept. */
int fu_onnx_add_tensor(reader *r, const char *name, const Onnx__TensorProto *t, const char *what) {
    fu_onnx_tensor tb;
    if (fu_onnx_read_tensor(r, t, what, &tb)) return -1;
    const void *data = tb.data;
    int weight = tb.file >= 0 || tb.nbytes >= INLINE_WEIGHT_BYTES;
    if (weight && !r->w && !(r->w = fu_weights_new(r->path, r->err))) {
        free(tb.data);
        return -1;
    }
    if (tb.file >= 0) {
        if (fu_weights_add(r->w, name, tb.dt, tb.rank, tb.shape, tb.file, tb.offset, tb.nbytes, &data, r->err))
            return -1;
    } else if (weight) {
        if (fu_weights_add_owned(r->w, name, tb.dt, tb.rank, tb.shape, tb.data, tb.nbytes, r->err)) return -1;
    }
    if (!r->g) {
        if (!weight) free(tb.data);
        return 0;
    }
    int vi = fu_graph_add_value(r->g, name, FU_VAL_CONST);
    if (vi < 0) {
        if (!weight) free(tb.data);
        return fu_fail(r->err, "%s: %s: duplicate name '%s'", r->path, what, fu_safe(name).s);
    }
    fu_value *v = &r->g->values[vi];
    v->dtype = tb.dt;
    v->rank = tb.rank;
    for (int d = 0; d < tb.rank; d++) v->shape[d] = fu_dim_const(tb.shape[d]);
    v->producer = -1;
    v->data = (void *)data;
    v->nbytes = tb.nbytes;
    v->owns_data = !weight;
    v->external = weight;
    return 0;
}

/* "onnx:<sha256 of the model's bytes>", then each external file's size:
 * the same model and data anywhere (a compiled model may move). */
static void content_id(reader *r, const uint8_t *buf, size_t len) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    char id[256] = "onnx:";
    size_t n = strlen(id);
    if (EVP_Digest(buf, len, md, &md_len, EVP_sha256(), NULL))
        for (unsigned i = 0; i < md_len && n + 3 < sizeof id; i++, n += 2) snprintf(id + n, 3, "%02x", md[i]);
    for (int f = 0; f < fu_weights_n_files(r->w) && n < sizeof id; f++) {
        size_t size;
        fu_weights_mapped_bytes(r->w, f, &size);
        n += (size_t)snprintf(id + n, sizeof id - n, ":%zu", size);
    }
    fu_weights_set_content_id(r->w, id);
}

/* Seals r->w and hands it to the graph (or to the caller). */
int fu_onnx_finish_weights(reader *r, const char *identity, const uint8_t *buf, size_t len) {
    if (!r->w) return 0;
    content_id(r, buf, len);
    if (fu_weights_seal(r->w, identity, r->err)) return -1;
    if (fu_limit_check(FU_LIMIT_WEIGHTS_BYTES, (int64_t)fu_weights_file_size(r->w), r->path,
                       "the weights' size in bytes", r->err))
        return -1;
    if (!r->g) return 0;
    char *real = realpath(r->path, NULL);
    r->g->weights_path = real ? real : strdup(r->path);
    if (!r->g->weights_path) return fu_fail(r->err, "%s: out of memory", r->path);
    r->g->weights = r->w;
    r->w = NULL;
    return 0;
}

