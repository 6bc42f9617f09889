/* The emission toolkit (ops/emit.h): a growable string buffer and the
 * small API op files write their C statements with. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "emit.h"
#include "../ir/shape.h"

/* ---- string buffer -------------------------------------------------- */

void fu_sb_vprintf(fu_sb *b, const char *fmt, va_list ap) {
    if (b->oom) return;
    va_list ap2;
    va_copy(ap2, ap);
    int need = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (need < 0) return;
    if (b->len + (size_t)need + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->len + (size_t)need + 1 > cap) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = 1;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
    vsnprintf(b->s + b->len, (size_t)need + 1, fmt, ap);
    b->len += (size_t)need;
}

void fu_sb_printf(fu_sb *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fu_sb_vprintf(b, fmt, ap);
    va_end(ap);
}

void fu_sb_free(fu_sb *b) {
    free(b->s);
    memset(b, 0, sizeof *b);
}

void fu_emitf(fu_emit *e, const char *fmt, ...) {
    fu_sb_printf(&e->out, "%*s", e->indent * 4, "");
    va_list ap;
    va_start(ap, fmt);
    fu_sb_vprintf(&e->out, fmt, ap);
    va_end(ap);
    fu_sb_printf(&e->out, "\n");
}

static char *ring_next(fu_emit *e) {
    char *s = e->ring[e->ring_pos];
    e->ring_pos = (e->ring_pos + 1) % 32;
    return s;
}

/* ---- expressions ------------------------------------------------------ */

const char *fu_emit_dim(fu_emit *e, fu_dim d) {
    char *s = ring_next(e);
    size_t n = sizeof e->ring[0];
    int only_const = 1;
    for (int k = 0; k < FU_MAX_SYMS; k++)
        if (d.pow[k]) only_const = 0;
    if (only_const) {
        snprintf(s, n, "%lld", (long long)d.coef);
        return s;
    }
    size_t len = 0;
    len += (size_t)snprintf(s + len, n - len, "(");
    int first = 1;
    if (d.coef != 1) {
        len += (size_t)snprintf(s + len, n - len, "%lld", (long long)d.coef);
        first = 0;
    }
    for (int k = 0; k < FU_MAX_SYMS; k++)
        for (int p = 0; p < d.pow[k] && len < n; p++) {
            len += (size_t)snprintf(s + len, n - len, "%sS%d", first ? "" : "*", k);
            first = 0;
        }
    if (len < n) snprintf(s + len, n - len, ")");
    return s;
}

int fu_emit_dim_array(fu_emit *e, const char *name, int count, const fu_dim *dims) {
    fu_sb b = {0};
    fu_sb_printf(&b, "const int64_t %s[] = {", name);
    for (int i = 0; i < count; i++) fu_sb_printf(&b, "%s%s", i ? ", " : "", fu_emit_dim(e, dims[i]));
    if (count == 0) fu_sb_printf(&b, "1");
    fu_sb_printf(&b, "};");
    int ok = !b.oom;
    if (ok) fu_emitf(e, "%s", b.s);
    fu_sb_free(&b);
    return ok ? 0 : -1;
}

const char *fu_emit_numel(fu_emit *e, int v) { return fu_emit_dim(e, fu_value_numel_dim(&e->g->values[v])); }

const char *fu_c_type(fu_dtype t) {
    switch (t) {
    case FU_F32: return "float";
    case FU_F16:
    case FU_BF16: return "uint16_t";
    case FU_I64: return "int64_t";
    case FU_I32: return "int32_t";
    case FU_BOOL: return "uint8_t";
    default: return "void";
    }
}

const char *fu_rt_dtype(fu_dtype t) { return fu_dtype_name(t); }

const char *fu_emit_tmp(fu_emit *e, char *buf, size_t n) {
    snprintf(buf, n, "t%d", e->tmp_counter++);
    return buf;
}

int fu_float_literal(double v, char *buf, size_t n) {
    float f = (float)v;  /* what the generated code computes with */
    if (isnan(f)) return snprintf(buf, n, "FU_RT_NAN");
    if (isinf(f)) return snprintf(buf, n, f > 0 ? "FU_RT_INF" : "(-FU_RT_INF)");
    char tmp[FU_LITERAL_MAX];
    snprintf(tmp, sizeof tmp, "%.9g", (double)f);
    if (!strpbrk(tmp, ".e")) strcat(tmp, ".0");
    return snprintf(buf, n, "%sf", tmp);
}

int fu_int_literal(int64_t x, char *buf, size_t n) {
    if (x == INT64_MIN) return snprintf(buf, n, "(-9223372036854775807LL - 1)");
    return snprintf(buf, n, "%lldLL", (long long)x);
}

/* Address of value v's bytes, as an lvalue-free C expression. */
static const char *raw_address(fu_emit *e, int v) {
    const fu_graph *g = e->g;
    while (g->values[v].storage == FU_STORE_ALIAS) v = g->values[v].alias_of;
    const fu_value *val = &g->values[v];
    char *s = ring_next(e);
    size_t n = sizeof e->ring[0];
    switch (val->storage) {
    case FU_STORE_ARENA: snprintf(s, n, "(A + %lld)", (long long)val->offset); break;
    case FU_STORE_INPUT: snprintf(s, n, "in[%d]", val->index); break;
    case FU_STORE_WEIGHT: snprintf(s, n, "w[%d]", val->index); break;
    case FU_STORE_EMBEDDED: snprintf(s, n, "K%d", val->index); break;
    default: snprintf(s, n, "0 /* unplanned value */"); break;
    }
    return s;
}

const char *fu_emit_ptr(fu_emit *e, int v) {
    const char *addr = raw_address(e, v);
    char *s = ring_next(e);
    snprintf(s, sizeof e->ring[0], "((%s *)%s)", fu_c_type(e->g->values[v].dtype), addr);
    return s;
}

const char *fu_emit_packed_ptr(fu_emit *e, int v, int bf16, int transposed) {
    const fu_graph *g = e->g;
    for (int i = 0; i < g->n_packed; i++) {
        const struct fu_packed_slot *p = &g->packed[i];
        if (p->value == v && p->bf16 == bf16 && p->transposed == transposed) {
            char *s = ring_next(e);
            snprintf(s, sizeof e->ring[0], "((const %s *)w[%d])", bf16 ? "uint16_t" : "float", g->n_raw_weights + i);
            return s;
        }
    }
    return NULL;
}

const char *fu_emit_vptr(fu_emit *e, int v) {
    const char *addr = raw_address(e, v);
    char *s = ring_next(e);
    snprintf(s, sizeof e->ring[0], "((void *)%s)", addr);
    return s;
}
