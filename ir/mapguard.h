/* Mapped weights can't kill the host (docs/security.md, "Paths and files").
 *
 * A weights file is mapped read-only, not copied. If someone truncates it
 * while a model is loaded, touching a page past the new end raises SIGBUS,
 * which would kill the host process. fusec therefore installs a SIGBUS
 * handler while it works with mapped files (loading, packing, compiling,
 * each forward: fu_mapguard_enter/leave, counted, so nested and concurrent
 * users share one installation; the host's own handler is back when no
 * one is inside).
 *
 * The handler does not longjmp: the forward runs on worker threads too
 * (runtime/parallel.c), and jumping out of one thread's chunk would leave
 * the pool and its locks half-way. Instead, on a fault inside a registered
 * mapping, whatever thread took it replaces the rest of that mapping (from
 * the faulting page to its end) with zero pages, marks the mapping faulted
 * and returns; the instruction reads zeros and the work finishes. The
 * caller then checks fu_mapguard_faulted and reports an error naming the
 * file; the results are thrown away, and the mapping stays faulted, so
 * every later run of that model fails the same way (load it again). A
 * SIGBUS at any other address goes to the host's handler, or kills the
 * process as it would have without fusec. */
#ifndef FUSEC_MAPGUARD_H
#define FUSEC_MAPGUARD_H

#include <stddef.h>

/* Registers a mapping [addr, addr + len); returns its slot, or -1 when all
 * slots are taken (the mapping is then unguarded). */
int fu_mapguard_add(const void *addr, size_t len);
/* Unregisters slot (before the mapping is unmapped); -1 is ignored. */
void fu_mapguard_remove(int slot);
/* 1 once a SIGBUS hit the mapping of slot. */
int fu_mapguard_faulted(int slot);

/* Installs the handler (first user) / restores the previous one (last). */
void fu_mapguard_enter(void);
void fu_mapguard_leave(void);

#endif
