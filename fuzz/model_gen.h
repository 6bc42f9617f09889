/* fuzz_compile's model generator: turns arbitrary bytes into a JSON IR
 * model that is usually valid, so that most inputs get past the verifier
 * and reach the passes, the emitter and libtcc (mutating JSON text
 * directly, barely 1 input in 70 verifies).
 *
 * The bytes are read in order (0 once they run out): the graph's dtype
 * (float32, int64 or int32), the input's shape, then up to 8 nodes, each an
 * op from a small table applied to the newest value (elementwise unary and
 * binary ops, Cast, Softmax, RMS/LayerNormalization, MatMul against an
 * initializer), whose other operand is an earlier value or a new
 * initializer (a scalar or a row, with values taken from the bytes as raw
 * bits: any int64, any float including inf and nan) and whose float
 * attributes (epsilon) are raw doubles too. The last value is the output. */
#ifndef FUSEC_FUZZ_MODEL_GEN_H
#define FUSEC_FUZZ_MODEL_GEN_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    size_t n, at;
} mg_bytes;

static unsigned mg_u8(mg_bytes *b) { return b->at < b->n ? b->p[b->at++] : 0; }
static uint64_t mg_u64(mg_bytes *b, int nbytes) {
    uint64_t v = 0;
    for (int i = 0; i < nbytes; i++) v |= (uint64_t)mg_u8(b) << (8 * i);
    return v;
}

typedef struct {
    char *s;
    size_t len, cap;
} mg_out;

__attribute__((format(printf, 2, 3))) static void mg_put(mg_out *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(o->s + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (k > 0) o->len = o->len + (size_t)k < o->cap ? o->len + (size_t)k : o->cap - 1;
}

enum { MG_F32, MG_I64, MG_I32 };
static const char *const mg_dtype_name[] = {"float32", "int64", "int32"};
static const int mg_onnx_dtype[] = {1, 7, 6};   /* Cast's "to" */

typedef struct {
    int dtype, rank;
    int dims[3];
} mg_val;

/* A JSON number (or "inf"/"-inf"/"nan" string) for a value of dtype t read
 * from the bytes. */
static void mg_scalar(mg_out *o, mg_bytes *b, int t) {
    if (t == MG_I64) {
        mg_put(o, "%lld", (long long)(int64_t)mg_u64(b, 8));
    } else if (t == MG_I32) {
        mg_put(o, "%d", (int)(int32_t)(uint32_t)mg_u64(b, 4));
    } else {
        uint32_t bits = (uint32_t)mg_u64(b, 4);
        float f;
        memcpy(&f, &bits, sizeof f);
        if (isnan(f)) mg_put(o, "\"nan\"");
        else if (isinf(f)) mg_put(o, f > 0 ? "\"inf\"" : "\"-inf\"");
        else mg_put(o, "%.9g", (double)f);
    }
}

static void mg_shape(mg_out *o, const mg_val *v) {
    mg_put(o, "[");
    for (int i = 0; i < v->rank; i++) mg_put(o, "%s%d", i ? ", " : "", v->dims[i]);
    mg_put(o, "]");
}

/* Writes the model into out (NUL-terminated, truncated at cap). */
static void mg_generate(const uint8_t *data, size_t size, char *out, size_t cap) {
    mg_bytes b = {data, size, 0};
    mg_out o = {out, 0, cap};
    mg_out inits = {malloc(1 << 16), 0, 1 << 16}, nodes = {malloc(1 << 16), 0, 1 << 16};
    if (!inits.s || !nodes.s) abort();
    inits.s[0] = nodes.s[0] = 0;
    mg_val vals[16];
    int nv = 1;
    vals[0].dtype = (int)(mg_u8(&b) % 3);
    vals[0].rank = 1 + (int)(mg_u8(&b) % 3);
    for (int i = 0; i < vals[0].rank; i++) vals[0].dims[i] = 1 + (int)(mg_u8(&b) % 4);
    int n_nodes = 1 + (int)(mg_u8(&b) % 8), n_inits = 0;
    static const char *const unary_f[] = {"Relu", "Neg", "Abs", "Exp", "Sigmoid", "Tanh", "Sqrt",
                                          "Sin", "Cos", "Erf", "Reciprocal", "Identity", "Log"};
    static const char *const unary_i[] = {"Neg", "Abs", "Identity", "Relu"};
    static const char *const binary_f[] = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"};
    static const char *const binary_i[] = {"Add", "Sub", "Mul", "Max", "Min"};
    for (int k = 0; k < n_nodes && nv < 16; k++) {
        mg_val x = vals[nv - 1], y = x;
        int t = x.dtype, isf = t == MG_F32;
        char in2[32] = "";
        const char *op;
        char attrs[160] = "";
        unsigned kind = mg_u8(&b) % 8;
        if (kind <= 1) {                                    /* unary */
            op = isf ? unary_f[mg_u8(&b) % 13] : unary_i[mg_u8(&b) % 4];
        } else if (kind <= 4) {                             /* binary: earlier value or new constant */
            op = isf ? binary_f[mg_u8(&b) % 7] : binary_i[mg_u8(&b) % 5];
            unsigned which = mg_u8(&b);
            if (which % 2 == 0) {
                int j = (int)(which / 2 % (unsigned)nv);
                if (vals[j].dtype != t || vals[j].rank != x.rank || memcmp(vals[j].dims, x.dims, sizeof x.dims))
                    j = nv - 1;
                snprintf(in2, sizeof in2, "v%d", j);
            } else {
                int row = which % 4 == 3;                   /* a row along the last axis, else a scalar */
                snprintf(in2, sizeof in2, "c%d", n_inits++);
                mg_put(&inits, "%s{\"name\": \"%s\", \"dtype\": \"%s\", \"shape\": [", inits.len ? ",\n  " : "",
                       in2, mg_dtype_name[t]);
                int len = row ? x.dims[x.rank - 1] : 1;
                if (row) mg_put(&inits, "%d", len);
                mg_put(&inits, "], \"data\": [");
                for (int i = 0; i < len; i++) {
                    if (i) mg_put(&inits, ", ");
                    mg_scalar(&inits, &b, t);
                }
                mg_put(&inits, "]}");
            }
        } else if (kind == 5) {                             /* Cast */
            op = "Cast";
            y.dtype = (int)(mg_u8(&b) % 3);
            snprintf(attrs, sizeof attrs, "{\"to\": %d}", mg_onnx_dtype[y.dtype]);
        } else if (!isf) {
            op = "Identity";
        } else if (kind == 6) {                             /* Softmax / norms, epsilon from raw bits */
            unsigned which = mg_u8(&b) % 3;
            double eps;
            uint64_t bits = mg_u64(&b, 8);
            memcpy(&eps, &bits, sizeof eps);
            char e[64];
            if (isnan(eps)) snprintf(e, sizeof e, "{\"float\": \"nan\"}");
            else if (isinf(eps)) snprintf(e, sizeof e, "{\"float\": \"%s\"}", eps > 0 ? "inf" : "-inf");
            else snprintf(e, sizeof e, "%.17g", eps);
            if (which == 0) {
                op = "Softmax";
                snprintf(attrs, sizeof attrs, "{\"axis\": -1}");
            } else {
                op = which == 1 ? "RMSNormalization" : "LayerNormalization";
                snprintf(attrs, sizeof attrs, "{\"axis\": -1, \"epsilon\": %s}", e);
                snprintf(in2, sizeof in2, "c%d", n_inits++);
                int len = x.dims[x.rank - 1];
                mg_put(&inits, "%s{\"name\": \"%s\", \"dtype\": \"float32\", \"shape\": [%d], \"data\": [",
                       inits.len ? ",\n  " : "", in2, len);
                for (int i = 0; i < len; i++) {
                    if (i) mg_put(&inits, ", ");
                    mg_scalar(&inits, &b, MG_F32);
                }
                mg_put(&inits, "]}");
            }
        } else {                                            /* MatMul by a [last, m] weight */
            op = "MatMul";
            int kdim = x.dims[x.rank - 1], m = 1 + (int)(mg_u8(&b) % 4);
            y.dims[y.rank - 1] = m;
            snprintf(in2, sizeof in2, "c%d", n_inits++);
            mg_put(&inits, "%s{\"name\": \"%s\", \"dtype\": \"float32\", \"shape\": [%d, %d], \"data\": [",
                   inits.len ? ",\n  " : "", in2, kdim, m);
            for (int i = 0; i < kdim * m; i++) {
                if (i) mg_put(&inits, ", ");
                mg_scalar(&inits, &b, MG_F32);
            }
            mg_put(&inits, "]}");
        }
        mg_put(&nodes, "%s{\"name\": \"n%d\", \"op\": \"%s\", \"inputs\": [\"v%d\"%s%s%s], \"outputs\": [\"v%d\"]%s%s}",
               nodes.len ? ",\n  " : "", k, op, nv - 1, in2[0] ? ", \"" : "", in2, in2[0] ? "\"" : "", nv,
               attrs[0] ? ", \"attrs\": " : "", attrs);
        vals[nv++] = y;
    }
    mg_put(&o, "{\"ir_version\": 1, \"name\": \"generated\",\n \"inputs\": [{\"name\": \"v0\", \"dtype\": \"%s\", \"shape\": ",
           mg_dtype_name[vals[0].dtype]);
    mg_shape(&o, &vals[0]);
    mg_put(&o, "}],\n \"outputs\": [{\"name\": \"v%d\", \"dtype\": \"%s\", \"shape\": ", nv - 1,
           mg_dtype_name[vals[nv - 1].dtype]);
    mg_shape(&o, &vals[nv - 1]);
    mg_put(&o, "}],\n \"initializers\": [%s],\n \"nodes\": [%s]}\n", inits.s, nodes.s);
    free(inits.s);
    free(nodes.s);
}

#endif
