/* The functions generated code may call, by name and address: every
 * function declared (not static inline) in runtime/fusec_kernels.h, runtime
 * kernels and the libm/libc functions it declares. The table is generated
 * from that header at build time (build/jit_symbols.c, see the Makefile),
 * so a new kernel needs no second edit. */
#ifndef FUSEC_JIT_SYMBOLS_H
#define FUSEC_JIT_SYMBOLS_H

typedef struct {
    const char *name;
    const void *addr;
} fu_jit_symbol;

extern const fu_jit_symbol fu_jit_symbols[];
extern const int fu_jit_n_symbols;

#endif
