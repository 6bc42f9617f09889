/* Progress lines (compiler/progress.h): a watcher thread per slow step
 * waits on a condition variable until the step ends or its delay passes. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "progress.h"

struct fu_progress {
    pthread_t watcher;
    pthread_mutex_t lock;
    pthread_cond_t done_cond;
    int done, printed;
    long delay_ms;
    struct timespec start;
    char what[256];
};

static int enabled;

void fu_progress_enable(int on) { enabled = on; }

static void *watch(void *arg) {
    fu_progress *p = arg;
    struct timespec until = p->start;
    until.tv_sec += p->delay_ms / 1000;
    until.tv_nsec += (p->delay_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&p->lock);
    int rc = 0;
    while (!p->done && rc == 0) rc = pthread_cond_timedwait(&p->done_cond, &p->lock, &until);
    if (!p->done) {
        fprintf(stderr, "fusec: %s ...\n", p->what);
        p->printed = 1;
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

fu_progress *fu_progress_begin(const char *fmt, ...) {
    if (!enabled) return NULL;
    fu_progress *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->what, sizeof p->what, fmt, ap);
    va_end(ap);
    const char *env = getenv("FUSEC_PROGRESS_AFTER_MS");
    p->delay_ms = env && *env ? atol(env) : 1000;
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&p->done_cond, &attr);
    pthread_condattr_destroy(&attr);
    clock_gettime(CLOCK_MONOTONIC, &p->start);
    if (pthread_create(&p->watcher, NULL, watch, p) != 0) {
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->done_cond);
        free(p);
        return NULL;
    }
    return p;
}

void fu_progress_end(fu_progress *p) {
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->done = 1;
    pthread_cond_signal(&p->done_cond);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->watcher, NULL);
    if (p->printed) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double s = (double)(now.tv_sec - p->start.tv_sec) + (now.tv_nsec - p->start.tv_nsec) / 1e9;
        fprintf(stderr, "fusec: %s: done in %.1f s\n", p->what, s);
    }
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->done_cond);
    free(p);
}
