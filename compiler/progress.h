/* Progress lines for slow steps (compiler/progress.c): a step still running
 * after a second (FUSEC_PROGRESS_AFTER_MS overrides) says so on stderr,
 * "fusec: building libx.so with gcc ...", and then how long it took. Off
 * unless fu_progress_enable(1): the fusec and router tools turn it on; a
 * program embedding fusec stays quiet. */
#ifndef FUSEC_PROGRESS_H
#define FUSEC_PROGRESS_H

typedef struct fu_progress fu_progress;

void fu_progress_enable(int on);
/* Starts timing a step (printf-style description); NULL when off. */
fu_progress *fu_progress_begin(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Ends it (NULL is ignored): "... done in 2.3 s" if its line was printed. */
void fu_progress_end(fu_progress *p);

#endif
