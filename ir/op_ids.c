/* Op names by id, from the FU_OPS list (ir/op_ids.h). */
#include <string.h>
#include "op_ids.h"

#define NAME(name) #name,
static const char *const op_names[] = {FU_OPS(NAME)};
#undef NAME

_Static_assert(sizeof op_names / sizeof op_names[0] == FU_OP_COUNT, "one name per op id");

int fu_op_id_find(const char *name) {
    for (int i = 0; name && i < FU_OP_COUNT; i++)
        if (strcmp(op_names[i], name) == 0) return i;
    return -1;
}

const char *fu_op_name(int id) { return id >= 0 && id < FU_OP_COUNT ? op_names[id] : NULL; }
