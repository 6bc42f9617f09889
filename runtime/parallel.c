/* Work sharing for the runtime kernels: fu_rt_parallel_for.
 *
 * The calling thread always works: it claims chunks of the index range
 * like the pool's workers do, and at the end waits only for chunks that a
 * worker has already claimed. A worker the OS has not scheduled therefore
 * never delays the caller (a fork-join barrier would wait a whole time
 * slice for it on a busy 2-core machine). One job runs at a time; a second
 * caller that finds the pool busy (two models in two threads) simply runs
 * its range itself, so threads are never oversubscribed.
 *
 * Which chunks a thread runs may vary, but each index is computed by
 * exactly one call of fn, so results do not depend on the scheduling.
 *
 * The pool is the process's, started on first use: nproc - 1 workers, or
 * FUSEC_NUM_THREADS - 1 when that is set (FUSEC_NUM_THREADS=1: no pool). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include "parallel.h"

#define MAX_WORKERS 63
/* A claim packs the job's generation with the next index, so a worker
 * that wakes late can never take a chunk of a newer job. */
#define INDEX_BITS 40
#define INDEX_MASK (((uint64_t)1 << INDEX_BITS) - 1)

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_flag busy;                 /* a job is running */
    _Atomic uint64_t next;            /* generation << INDEX_BITS | next index */
    _Atomic int64_t done;             /* indices finished in the current job */
    _Atomic uint64_t generation;
    fu_rt_range_fn fn;
    void *ctx;
    int64_t n, grain;
    int workers;
} pool_t;

static pool_t pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, ATOMIC_FLAG_INIT, 0, 0, 0, 0, 0, 0, 0, 0};
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

/* Claims and runs chunks of job `gen` until none is left. */
static void work_on(uint64_t gen, fu_rt_range_fn fn, void *ctx, int64_t n, int64_t grain) {
    for (;;) {
        uint64_t cur = atomic_load(&pool.next);
        if (cur >> INDEX_BITS != (gen & (((uint64_t)1 << (64 - INDEX_BITS)) - 1))) return;
        int64_t begin = (int64_t)(cur & INDEX_MASK);
        if (begin >= n) return;
        int64_t end = begin + grain < n ? begin + grain : n;
        uint64_t want = (cur & ~INDEX_MASK) | (uint64_t)end;
        if (!atomic_compare_exchange_weak(&pool.next, &cur, want)) continue;
        fn(ctx, begin, end);
        atomic_fetch_add(&pool.done, end - begin);
    }
}

static void *worker_main(void *arg) {
    (void)arg;
    uint64_t seen = 0;
    for (;;) {
        /* Spin briefly for the next job (kernels come in quick bursts),
         * then sleep on the condition variable. */
        uint64_t gen = atomic_load(&pool.generation);
        for (int spin = 0; gen == seen && spin < 200; spin++) {
            sched_yield();
            gen = atomic_load(&pool.generation);
        }
        if (gen == seen) {
            pthread_mutex_lock(&pool.lock);
            while ((gen = atomic_load(&pool.generation)) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
            pthread_mutex_unlock(&pool.lock);
        }
        seen = gen;
        pthread_mutex_lock(&pool.lock);
        fu_rt_range_fn fn = pool.fn;
        void *ctx = pool.ctx;
        int64_t n = pool.n, grain = pool.grain;
        int current = atomic_load(&pool.generation) == gen;
        pthread_mutex_unlock(&pool.lock);
        if (current) work_on(gen, fn, ctx, n, grain);
    }
    return NULL;
}

static void start_pool(void) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    const char *env = getenv("FUSEC_NUM_THREADS");
    if (env && atoi(env) > 0) cpus = atoi(env);
    int workers = cpus > 1 ? (int)(cpus - 1) : 0;
    if (workers > MAX_WORKERS) workers = MAX_WORKERS;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (int i = 0; i < workers; i++) {
        pthread_t t;
        if (pthread_create(&t, &attr, worker_main, NULL) != 0) break;
        pool.workers++;
    }
    pthread_attr_destroy(&attr);
}

int fu_rt_threads(void) {
    pthread_once(&pool_once, start_pool);
    return pool.workers + 1;
}

void fu_rt_parallel_for(int64_t n, int64_t grain, fu_rt_range_fn fn, void *ctx) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    pthread_once(&pool_once, start_pool);
    if (pool.workers == 0 || n <= grain || atomic_flag_test_and_set(&pool.busy)) {
        fn(ctx, 0, n);  /* nothing to share, or the pool serves another caller */
        return;
    }
    pthread_mutex_lock(&pool.lock);
    uint64_t gen = atomic_load(&pool.generation) + 1;
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n = n;
    pool.grain = grain;
    atomic_store(&pool.done, 0);
    atomic_store(&pool.next, (gen & (((uint64_t)1 << (64 - INDEX_BITS)) - 1)) << INDEX_BITS);
    atomic_store(&pool.generation, gen);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);

    work_on(gen, fn, ctx, n, grain);
    /* Every chunk is claimed; wait for the ones workers are running. */
    while (atomic_load(&pool.done) < n) sched_yield();
    atomic_flag_clear(&pool.busy);
}
