/* The emission toolkit: the small API op files (ops/) write their C
 * statements with. The whole-model emitter that drives it (loop groups,
 * constants, metadata, the translation unit) is compiler/emit.h. */
#ifndef FUSEC_OPS_EMIT_H
#define FUSEC_OPS_EMIT_H

#include <stdarg.h>
#include "../ir/ir.h"

/* Growable string buffer. */
typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} fu_sb;

void fu_sb_printf(fu_sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fu_sb_vprintf(fu_sb *b, const char *fmt, va_list ap);
void fu_sb_free(fu_sb *b);

typedef struct fu_emit {
    fu_sb out;
    fu_sb funcs;          /* static functions placed before the run function (parallel loops) */
    const fu_graph *g;
    int indent;
    int tmp_counter;
    char ring[32][320];   /* scratch strings returned by fu_emit_dim & co. */
    int ring_pos;
} fu_emit;

/* Writes one line at the current indent. */
void fu_emitf(fu_emit *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* C expression for a dim ("64", "(S0*16)"). Returns a pointer into a ring
 * of 32 scratch buffers inside the emitter: valid for the next 31 calls of
 * the fu_emit_* string functions; copy it if you need it longer. */
const char *fu_emit_dim(fu_emit *e, fu_dim d);
/* Emits `const int64_t name[] = {d0, ...};` (at least one element, so a
 * rank-0 array is still valid C). Returns -1 when out of memory. */
int fu_emit_dim_array(fu_emit *e, const char *name, int count, const fu_dim *dims);
/* C expression for the element count of value v. */
const char *fu_emit_numel(fu_emit *e, int v);
/* C expression for a pointer to value v's first element, cast to the C
 * element type of its dtype ("((float*)(A+4096))", "((const int64_t*)W[2])"). */
const char *fu_emit_ptr(fu_emit *e, int v);
/* The packed copy of weight v in the given layout (a plan slot), as a
 * typed pointer; NULL when the plan gave it no slot. */
const char *fu_emit_packed_ptr(fu_emit *e, int v, int bf16, int transposed);
/* Same, as `void *` / `const void *`. */
const char *fu_emit_vptr(fu_emit *e, int v);
/* C element type for a dtype: float, uint16_t, int64_t, int32_t, uint8_t. */
const char *fu_c_type(fu_dtype t);
/* Fresh identifier "t12". */
const char *fu_emit_tmp(fu_emit *e, char *buf, size_t n);
/* Room for any literal fu_float_literal or fu_int_literal writes, NUL
 * included; both return the length they needed (as snprintf does). */
#define FU_LITERAL_MAX 48
/* Formats v rounded to float32 as an exact C float literal. Values that
 * are not finite as a float (inf, nan, and finite doubles beyond the
 * float range such as 1e308) become FU_RT_INF / (-FU_RT_INF) / FU_RT_NAN
 * from the kernels header, which tcc and gcc both accept. */
int fu_float_literal(double v, char *buf, size_t n);
/* C literal for an int64 value ("123LL"; INT64_MIN has no literal of its
 * own and becomes "(-9223372036854775807LL - 1)"). */
int fu_int_literal(int64_t x, char *buf, size_t n);

#endif
