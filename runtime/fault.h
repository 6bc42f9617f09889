/* Why the generated code stopped, when a kernel knows: the value and the
 * limit it broke (runtime/kernels.c). Per thread: the kernel that checks
 * runs on the thread that called the model, and fusec_run reads it there
 * to name the node and the bad value in its error. */
#ifndef FUSEC_RT_FAULT_H
#define FUSEC_RT_FAULT_H

#include <stdint.h>

typedef struct {
    const char *what;     /* "index", or NULL when no kernel said why */
    int64_t value, size;  /* the index and the size of the axis it indexes */
} fu_rt_fault;

void fu_rt_fault_clear(void);
fu_rt_fault fu_rt_fault_last(void);

#endif
