/* The C emitter: turns a planned graph into one C translation unit. Op
 * files write their statements with the toolkit of ops/emit.h (fu_sb,
 * fu_emitf, fu_emit_ptr ...), which this header brings along. */
#ifndef FUSEC_EMIT_H
#define FUSEC_EMIT_H

#include "../ops/emit.h"

/* Emits the whole translation unit for a planned graph. */
int fu_emit_graph(const fu_graph *g, fu_sb *out, fu_err *err);

/* Inside the emitter (compiler/emit_loop.c): emits the loop of the loop
 * group whose members (node indices, in order) are given, and the typedef
 * of the context its range functions receive. */
int fu_emit_loop_group(fu_emit *e, const int *members, int n_members, fu_err *err);
extern const char fu_loop_context_type[];

#endif
