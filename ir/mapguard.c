/* SIGBUS on truncated mapped files becomes an error (ir/mapguard.h). */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "mapguard.h"

#define SLOTS 1024

/* The handler reads these without locks: a slot is published by storing
 * len last and retired by clearing len first. */
static struct {
    _Atomic uintptr_t start;
    _Atomic size_t len;      /* 0: free */
    _Atomic int faulted;
    _Atomic int used;        /* claimed by fu_mapguard_add */
} slots[SLOTS];

static _Atomic uintptr_t page_size;
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;
static int depth;
static struct sigaction previous;

static void chain(int sig, siginfo_t *si, void *uc) {
    if ((previous.sa_flags & SA_SIGINFO) && previous.sa_sigaction) {
        previous.sa_sigaction(sig, si, uc);
    } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        previous.sa_handler(sig);
    } else {
        /* Default action: returning re-runs the faulting access, which
         * then kills the process as it would have without fusec. */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigaction(SIGBUS, &dfl, NULL);
    }
}

static void on_sigbus(int sig, siginfo_t *si, void *uc) {
    uintptr_t a = (uintptr_t)si->si_addr, page = atomic_load(&page_size);
    for (int i = 0; page && i < SLOTS; i++) {
        size_t len = atomic_load(&slots[i].len);
        uintptr_t start = atomic_load(&slots[i].start);
        if (!len || a < start || a - start >= len) continue;
        uintptr_t from = a & ~(page - 1), end = start + len;
        /* mmap is a plain system call: safe here in practice. */
        void *z = mmap((void *)from, end - from, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (z == MAP_FAILED) break;
        atomic_store(&slots[i].faulted, 1);
        return;
    }
    chain(sig, si, uc);
}

int fu_mapguard_add(const void *addr, size_t len) {
    if (!addr || !len) return -1;
    if (!atomic_load(&page_size)) {
        long p = sysconf(_SC_PAGESIZE);
        atomic_store(&page_size, (uintptr_t)(p > 0 ? p : 4096));
    }
    uintptr_t page = atomic_load(&page_size);
    size_t span = (len + page - 1) & ~(page - 1);
    for (int i = 0; i < SLOTS; i++) {
        int expect = 0;
        if (!atomic_compare_exchange_strong(&slots[i].used, &expect, 1)) continue;
        atomic_store(&slots[i].faulted, 0);
        atomic_store(&slots[i].start, (uintptr_t)addr);
        atomic_store(&slots[i].len, span);
        return i;
    }
    return -1;
}

void fu_mapguard_remove(int slot) {
    if (slot < 0 || slot >= SLOTS) return;
    atomic_store(&slots[slot].len, 0);
    atomic_store(&slots[slot].start, 0);
    atomic_store(&slots[slot].used, 0);
}

int fu_mapguard_faulted(int slot) {
    return slot >= 0 && slot < SLOTS && atomic_load(&slots[slot].faulted);
}

void fu_mapguard_enter(void) {
    pthread_mutex_lock(&install_lock);
    if (depth++ == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_sigbus;
        sa.sa_flags = SA_SIGINFO | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGBUS, &sa, &previous);
    }
    pthread_mutex_unlock(&install_lock);
}

void fu_mapguard_leave(void) {
    pthread_mutex_lock(&install_lock);
    if (depth > 0 && --depth == 0) sigaction(SIGBUS, &previous, NULL);
    pthread_mutex_unlock(&install_lock);
}
