/* The registry: the table behind fu_op_at / fu_op_find, in FU_OPS order
 * (ir/op_ids.h), so fu_op_at(FU_OP_Add) is Add. */
#include "ops.h"

#define DECLARE(name) extern const fu_op fu_op_##name;
FU_OPS(DECLARE)
#undef DECLARE

#define ENTRY(name) &fu_op_##name,
static const fu_op *const registry[] = {FU_OPS(ENTRY)};
#undef ENTRY

const fu_op *fu_op_at(int i) {
    if (i < 0 || i >= (int)(sizeof registry / sizeof registry[0])) return NULL;
    return registry[i];
}

const fu_op *fu_op_find(const char *name) { return fu_op_at(fu_op_id_find(name)); }
