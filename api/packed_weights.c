/* Packed weights in the build cache (contract in api/packed_weights.h).
 *
 * File layout (little-endian, every offset a multiple of 4096 so the
 * copies are page- and cache-line-aligned in the mapping):
 *   header   magic "FUSECPW1", version, entry count, file size, key (hex
 *            sha256 of the packing's inputs), then one entry per copy
 *            {layout, transposed, N, K, offset, bytes, xxh3 of the bytes},
 *            and last the xxh3 of everything before it;
 *   data     the packed copies, in request order. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "packed_weights.h"
#include "../compiler/progress.h"
#include "../runtime/gemm.h"
#include "../runtime/parallel.h"
#include "../compiler/backend.h"

#define MAGIC "FUSECPW1"
#define VERSION 1
#define ALIGN 4096

typedef struct {
    uint32_t layout, transposed;
    int64_t n, k;
    uint64_t offset, bytes, checksum;
} entry;

typedef struct {
    char magic[8];
    uint32_t version, n_entries;
    uint64_t file_size;
    char key[64];
} file_header;

struct fu_packed_weights {
    void *map;          /* the file mapping, or the in-memory copies */
    size_t size;
    int in_memory;
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static uint64_t align_up(uint64_t x) { return (x + ALIGN - 1) / ALIGN * ALIGN; }

/* What each copy is packed from, looked up in the weights file. */
typedef struct {
    const void *src;
    const fu_weights *from;   /* the table src belongs to */
    int src_bf16;
    int64_t n, k;
    int layout;
    int64_t bytes;
} source;

static int find_sources(fu_weights *w, const fu_packed_request *req, int n, source *src, fu_err *err) {
    for (int i = 0; i < n; i++) {
        fu_dtype dtype;
        int rank;
        int64_t shape[FU_MAX_RANK];
        size_t nbytes;
        if (fu_weights_find(w, req[i].name, &dtype, &rank, shape, &src[i].src, &nbytes) != 0)
            return fu_fail(err, "weight '%s' to pack is missing from the weights file", req[i].name);
        if (rank != 2 || (dtype != FU_F32 && dtype != FU_BF16))
            return fu_fail(err, "weight '%s' to pack is not a 2-D float32 or bfloat16 tensor", req[i].name);
        src[i].from = w;
        src[i].src_bf16 = dtype == FU_BF16;
        src[i].n = req[i].transposed ? shape[1] : shape[0];
        src[i].k = req[i].transposed ? shape[0] : shape[1];
        src[i].layout = req[i].bf16 ? FU_RT_PACK_BF16 : FU_RT_PACK_F32;
        src[i].bytes = fu_rt_packed_bytes(src[i].layout, src[i].n, src[i].k);
        if (src[i].bytes < 0) return fu_fail(err, "weight '%s' cannot be packed (empty)", req[i].name);
    }
    return 0;
}

/* Hex sha256 of the packing's inputs: the weights file and every request. */
static int packing_key(fu_weights *w, const fu_packed_request *req, const source *src, int n, char key[65],
                       fu_err *err) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    char line[256];
    snprintf(line, sizeof line, "fusec packed weights v%d panel %d\n", VERSION, 32);
    ok = ok && EVP_DigestUpdate(ctx, line, strlen(line));
    const char *id = fu_weights_identity(w);
    ok = ok && EVP_DigestUpdate(ctx, id, strlen(id) + 1);
    for (int i = 0; ok && i < n; i++) {
        snprintf(line, sizeof line, "|%d %d %d %lld %lld|", src[i].layout, req[i].transposed, src[i].src_bf16,
                 (long long)src[i].n, (long long)src[i].k);
        ok = EVP_DigestUpdate(ctx, req[i].name, strlen(req[i].name) + 1) && EVP_DigestUpdate(ctx, line, strlen(line));
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    ok = ok && EVP_DigestFinal_ex(ctx, md, &md_len);
    EVP_MD_CTX_free(ctx);
    if (!ok) return fu_fail(err, "sha256 of the packed weights' key failed");
    for (unsigned i = 0; i < 32; i++) snprintf(key + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* Header size: the fixed part, the entries and the trailing checksum. */
static uint64_t header_bytes(int n) { return sizeof(file_header) + sizeof(entry) * (uint64_t)n + sizeof(uint64_t); }

/* The file's layout for these sources: entries filled but for checksums. */
static uint64_t plan_file(const source *src, int n, entry *e) {
    uint64_t off = align_up(header_bytes(n));
    for (int i = 0; i < n; i++) {
        e[i] = (entry){(uint32_t)src[i].layout, 0, src[i].n, src[i].k, off, (uint64_t)src[i].bytes, 0};
        off = align_up(off + (uint64_t)src[i].bytes);
    }
    return off;
}

/* ---- checksums, shared across cores --------------------------------------------- */

typedef struct {
    const unsigned char *base;
    const entry *e;
    uint64_t *sums;
} sum_job;

static void sum_entries(void *arg, int64_t begin, int64_t end) {
    sum_job *j = arg;
    for (int64_t i = begin; i < end; i++) j->sums[i] = XXH3_64bits(j->base + j->e[i].offset, j->e[i].bytes);
}

static void checksums(const unsigned char *base, const entry *e, int n, uint64_t *sums) {
    sum_job job = {base, e, sums};
    fu_rt_parallel_for(n, 1, sum_entries, &job);
}

/* ---- reading a cached file ------------------------------------------------------- */

/* Maps and checks the cache file; NULL (and why, in reason) when it is
 * missing or not exactly what this model needs. */
static void *map_valid(const char *path, const char *key, const source *src, const fu_packed_request *req, int n,
                       size_t *size_out, char *reason, size_t reason_len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        snprintf(reason, reason_len, "%s", errno == ENOENT ? "not built yet" : strerror(errno));
        return NULL;
    }
    struct stat st;
    char why[128];
    entry *want = malloc(sizeof(entry) * (size_t)(n + 1));
    uint64_t size = want ? plan_file(src, n, want) : 0;
    const char *bad_file = NULL;
    if (!want || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != size)
        bad_file = "truncated or the wrong size";
    /* Someone else could change it under the mapping after it is checked. */
    else if (fu_cache_untrusted(&st, why, sizeof why))
        bad_file = why;
    if (bad_file) {
        snprintf(reason, reason_len, "%s", bad_file);
        close(fd);
        free(want);
        return NULL;
    }
    unsigned char *map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        snprintf(reason, reason_len, "mmap: %s", strerror(errno));
        free(want);
        return NULL;
    }
    const file_header *h = (const file_header *)map;
    const entry *have = (const entry *)(map + sizeof *h);
    uint64_t header_sum;
    memcpy(&header_sum, map + header_bytes(n) - sizeof header_sum, sizeof header_sum);
    const char *bad = NULL;
    if (memcmp(h->magic, MAGIC, 8) != 0 || h->version != VERSION) bad = "not a fusec packed-weights file";
    else if (h->n_entries != (uint32_t)n || h->file_size != size || memcmp(h->key, key, 64) != 0)
        bad = "made for other weights";
    else if (XXH3_64bits(map, header_bytes(n) - sizeof header_sum) != header_sum) bad = "corrupt header";
    for (int i = 0; !bad && i < n; i++) {
        if (have[i].layout != want[i].layout || have[i].transposed != (uint32_t)req[i].transposed ||
            have[i].n != want[i].n || have[i].k != want[i].k || have[i].offset != want[i].offset ||
            have[i].bytes != want[i].bytes)
            bad = "entries do not match";
    }
    if (!bad) {
        uint64_t *sums = malloc(sizeof(uint64_t) * (size_t)(n + 1));
        if (!sums) bad = "out of memory";
        else checksums(map, have, n, sums);
        for (int i = 0; !bad && i < n; i++)
            if (sums[i] != have[i].checksum) bad = "corrupt data (checksum mismatch)";
        free(sums);
    }
    free(want);
    if (bad) {
        snprintf(reason, reason_len, "%s", bad);
        munmap(map, (size_t)size);
        return NULL;
    }
    *size_out = (size_t)size;
    return map;
}

/* ---- building -------------------------------------------------------------------- */

/* The header for entries e (checksums filled) of a file of `size` bytes:
 * written to out (header_bytes(n) bytes). */
static void write_header(unsigned char *out, uint64_t size, const char *key, const entry *e, int n) {
    file_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, MAGIC, 8);
    h.version = VERSION;
    h.n_entries = (uint32_t)n;
    h.file_size = size;
    memcpy(h.key, key, 64);
    memcpy(out, &h, sizeof h);
    memcpy(out + sizeof h, e, sizeof(entry) * (size_t)n);
    uint64_t header_sum = XXH3_64bits(out, header_bytes(n) - sizeof header_sum);
    memcpy(out + header_bytes(n) - sizeof header_sum, &header_sum, sizeof header_sum);
}

static void pack_entry(unsigned char *out, const source *src, const fu_packed_request *req, entry *e) {
    fu_rt_pack_weight(out, src->src, src->src_bf16, req->transposed, src->layout, src->n, src->k);
    e->transposed = (uint32_t)req->transposed;
    e->checksum = XXH3_64bits(out, e->bytes);
    /* The model reads the packed copy from now on: drop the source's pages
     * from this process, so packing does not double the RSS. */
    fu_weights_drop_pages(src->from, src->src, (size_t)(src->n * src->k * (src->src_bf16 ? 2 : 4)));
}

static int write_all(int fd, const void *buf, size_t len, uint64_t off) {
    const unsigned char *p = buf;
    while (len > 0) {
        ssize_t k = pwrite(fd, p, len, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k, len -= (size_t)k, off += (uint64_t)k;
    }
    return 0;
}

/* Writes the cache file: each copy packed into one reusable buffer and
 * written to a temp file, which is renamed into place once complete; then
 * maps it read-only. NULL with the reason in err when the cache cannot be
 * written. */
static void *build_file(fu_weights *w, const char *cache_dir, const char *path, const char *key, const source *src,
                        const fu_packed_request *req, int n, size_t *size_out, fu_err *err) {
    fu_cache_remove_stale(cache_dir);   /* temp files of packings killed on the way */
    entry *e = malloc(sizeof(entry) * (size_t)(n + 1));
    uint64_t size = e ? plan_file(src, n, e) : 0, largest = align_up(header_bytes(n));
    for (int i = 0; e && i < n; i++) largest = e[i].bytes > largest ? e[i].bytes : largest;
    unsigned char *buf = e ? aligned_alloc(64, (size_t)align_up(largest)) : NULL;
    if (!buf) {
        free(e);
        fu_fail(err, "out of memory");
        return NULL;
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/.packed-%d-XXXXXX", cache_dir, (int)getpid());
    int fd = mkostemp(tmp, O_CLOEXEC);
    int ok = fd >= 0;
    if (!ok) fu_fail(err, "cannot create a file in %s: %s", cache_dir, strerror(errno));
    for (int i = 0; ok && i < n; i++) {
        pack_entry(buf, &src[i], &req[i], &e[i]);
        ok = write_all(fd, buf, (size_t)e[i].bytes, e[i].offset) == 0;
    }
    if (ok) {
        memset(buf, 0, (size_t)align_up(header_bytes(n)));
        write_header(buf, size, key, e, n);
        /* the header block, and the file's full length (the last copy's padding) */
        ok = write_all(fd, buf, (size_t)align_up(header_bytes(n)), 0) == 0 && ftruncate(fd, (off_t)size) == 0 &&
             fchmod(fd, 0644) == 0;   /* readable like the libraries beside it */
    }
    if (fd >= 0 && !ok && !err->msg[0]) fu_fail(err, "cannot write %s: %s", tmp, strerror(errno));
    /* A weights file truncated under the packing read zeros (ir/mapguard.h):
     * those must not be installed under the file's identity. */
    if (ok && fu_weights_faulted(w)) {
        fu_fail(err, "the weights file was truncated while it was packed");
        ok = 0;
    }
    if (ok && rename(tmp, path) != 0) {
        fu_fail(err, "cannot install %s: %s", path, strerror(errno));
        ok = 0;
    }
    void *map = MAP_FAILED;
    if (ok && (map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0)) == MAP_FAILED)
        fu_fail(err, "mmap of %s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    if (!ok && fd >= 0) unlink(tmp);
    free(buf);
    free(e);
    if (map == MAP_FAILED) return NULL;
    *size_out = (size_t)size;
    return map;
}

/* Without a usable cache: the same layout in anonymous memory. */
static void *build_in_memory(const char *key, const source *src, const fu_packed_request *req, int n,
                             size_t *size_out) {
    entry *e = malloc(sizeof(entry) * (size_t)(n + 1));
    if (!e) return NULL;
    uint64_t size = plan_file(src, n, e);
    unsigned char *map = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map != MAP_FAILED) {
        for (int i = 0; i < n; i++) pack_entry(map + e[i].offset, &src[i], &req[i], &e[i]);
        write_header(map, size, key, e, n);
        *size_out = (size_t)size;
    }
    free(e);
    return map == MAP_FAILED ? NULL : map;
}

fu_packed_weights *fu_packed_weights_open(fu_weights *w, const char *cache_dir, const fu_packed_request *req, int n,
                                          const void **ptrs, fu_packed_info *info, fu_err *err) {
    double t0 = now_ms();
    fu_packed_info scratch_info;
    if (!info) info = &scratch_info;
    memset(info, 0, sizeof *info);
    fu_packed_weights *p = calloc(1, sizeof *p);
    source *src = calloc((size_t)n + 1, sizeof *src);
    if (!p || !src) {
        free(p), free(src);
        fu_fail(err, "out of memory");
        return NULL;
    }
    char key[65];
    if (find_sources(w, req, n, src, err) || packing_key(w, req, src, n, key, err)) goto fail;
    snprintf(info->path, sizeof info->path, "%s/packed-%.32s.bin", cache_dir, key);
    char reason[128];
    /* A cache directory others can write is neither read nor written
     * (fu_cache_dir_check): the copies are packed into memory. */
    fu_err cache_err = {0};
    int private_dir = fu_cache_dir_check(cache_dir, &cache_err) == 0;
    p->map = private_dir ? map_valid(info->path, key, src, req, n, &p->size, reason, sizeof reason) : NULL;
    if (!p->map) {
        info->built = 1;
        int64_t bytes = 0;
        for (int i = 0; i < n; i++) bytes += src[i].bytes;
        fu_progress *progress = fu_progress_begin("packing %d weights (%.0f MB) for the GEMM kernels", n, bytes / 1e6);
        if (private_dir) p->map = build_file(w, cache_dir, info->path, key, src, req, n, &p->size, &cache_err);
        if (!p->map) {
            /* The cache is not writable: pack for this process only. */
            info->in_memory = p->in_memory = 1;
            info->path[0] = 0;
            p->map = build_in_memory(key, src, req, n, &p->size);
            if (!p->map) {
                fu_progress_end(progress);
                fu_fail(err, "out of memory packing %d weights (%s)", n, cache_err.msg);
                goto fail;
            }
        }
        fu_progress_end(progress);
    }
    const entry *e = (const entry *)((const unsigned char *)p->map + sizeof(file_header));
    for (int i = 0; i < n; i++) {
        ptrs[i] = (const unsigned char *)p->map + e[i].offset;
        info->bytes += (int64_t)e[i].bytes;
    }
    info->ms = now_ms() - t0;
    free(src);
    return p;
fail:
    free(src);
    free(p);
    return NULL;
}

void fu_packed_weights_close(fu_packed_weights *p) {
    if (!p) return;
    if (p->map) munmap(p->map, p->size);
    free(p);
}
