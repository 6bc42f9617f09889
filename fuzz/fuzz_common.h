/* Shared by the libFuzzer harnesses (fuzz/fuzz_*.c, built by `make fuzz`).
 *
 * The readers under test take paths, so a harness writes each input into a
 * regular file of a private scratch folder (made once per process, removed
 * at exit, or by a later harness if it crashed) and hands the reader that
 * path: the readers see what they see in production (open, fstat, mmap of a
 * regular file), and no entry point is added only for fuzzing. The folder
 * also holds a small safetensors file, `w.safetensors`, for models that
 * name weights (fuzz_ir, fuzz_compile). */
#ifndef FUSEC_FUZZ_COMMON_H
#define FUSEC_FUZZ_COMMON_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char fz_dir[256];

static inline void fz_cleanup(void) {
    char cmd[300];
    if (!fz_dir[0]) return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fz_dir);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: cannot remove %s\n", fz_dir);
}

/* Removes scratch folders of harness processes that are gone: a crash
 * ends the process with _Exit, so their atexit cleanup never ran. The
 * folder's name carries its creator's pid (fusec-fuzz-<pid>-XXXXXX). */
static inline void fz_remove_stale(const char *base) {
    DIR *d = opendir(base);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        int pid = 0;
        char cmd[600];
        struct stat st;
        if (sscanf(e->d_name, "fusec-fuzz-%d-", &pid) != 1 || pid <= 0) continue;
        if (kill(pid, 0) == 0 || errno != ESRCH) continue;
        snprintf(cmd, sizeof cmd, "%s/%s", base, e->d_name);
        if (lstat(cmd, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != getuid()) continue;
        snprintf(cmd, sizeof cmd, "rm -rf '%s/%s'", base, e->d_name);
        if (system(cmd) != 0) fprintf(stderr, "fuzz: cannot remove %s/%s\n", base, e->d_name);
    }
    closedir(d);
}

/* The scratch folder: under /dev/shm when there is one (no disk writes). */
static inline const char *fz_scratch(void) {
    if (fz_dir[0]) return fz_dir;
    struct stat st;
    const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
    fz_remove_stale(base);
    snprintf(fz_dir, sizeof fz_dir, "%s/fusec-fuzz-%d-XXXXXX", base, (int)getpid());
    if (!mkdtemp(fz_dir)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(fz_cleanup);
    return fz_dir;
}

/* A file of the scratch folder, kept open: each input is written into it in
 * place (truncate, write) and read back through its path by the reader. */
typedef struct {
    int fd;
    char path[320];
} fz_file;

static inline void fz_file_open(fz_file *f, const char *name) {
    snprintf(f->path, sizeof f->path, "%s/%s", fz_scratch(), name);
    f->fd = open(f->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (f->fd < 0) {
        perror(f->path);
        abort();
    }
}

static inline void fz_file_set(fz_file *f, const uint8_t *data, size_t size) {
    if (ftruncate(f->fd, 0) != 0 || (size && pwrite(f->fd, data, size, 0) != (ssize_t)size)) {
        perror(f->path);
        abort();
    }
}

/* Reads every byte of p[0..n) (so memory that is not there faults). */
static volatile unsigned fz_sink;
static inline void fz_touch(const void *p, size_t n) {
    unsigned sum = 0;
    for (size_t j = 0; j < n; j++) sum += ((const unsigned char *)p)[j];
    fz_sink += sum;
}

/* A NUL-terminated copy of the input (the JSON readers take C strings). */
static inline char *fz_cstr(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) abort();
    memcpy(s, data, size);
    s[size] = 0;
    return s;
}

/* Writes w.safetensors into the scratch folder: tensors of every dtype the
 * IR knows, named as in the seed models (fuzz/corpus/ir), each 8-aligned:
 *   i I64 [2] = {0, 3}, w F32 [3,2], b F32 [2], e F32 [4,3] (an embedding),
 *   k I32 [2], h BF16 [2,2], f F16 [2], m BOOL [2], z F32 [0]. */
static inline void fz_write_weights(void) {
    struct { const char *name, *dtype, *shape; size_t bytes; } t[] = {
        {"i", "I64", "[2]", 16}, {"w", "F32", "[3,2]", 24}, {"b", "F32", "[2]", 8},
        {"e", "F32", "[4,3]", 48}, {"k", "I32", "[2]", 8}, {"h", "BF16", "[2,2]", 8},
        {"f", "F16", "[2]", 4},  {"m", "BOOL", "[2]", 2},  {"z", "F32", "[0]", 0},
    };
    char header[2048];
    size_t hl = 0, off = 0;
    hl += (size_t)snprintf(header + hl, sizeof header - hl, "{");
    for (size_t j = 0; j < sizeof t / sizeof t[0]; j++) {
        hl += (size_t)snprintf(header + hl, sizeof header - hl,
                               "%s\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                               j ? "," : "", t[j].name, t[j].dtype, t[j].shape, off, off + t[j].bytes);
        off += t[j].bytes;
    }
    hl += (size_t)snprintf(header + hl, sizeof header - hl, "}");
    while (hl % 8) header[hl++] = ' ';
    unsigned char data[128] = {0};
    const int64_t i64[2] = {0, 3};
    memcpy(data, i64, sizeof i64);
    float wf[6 + 2 + 12];                                              /* w, b, e */
    for (int j = 0; j < 20; j++) wf[j] = 0.25f * (float)(j - 7);
    memcpy(data + 16, wf, sizeof wf);
    const int32_t i32[2] = {1, -1};
    memcpy(data + 96, i32, sizeof i32);
    const uint16_t h[6] = {0x3f80, 0xbf00, 0x4000, 0x3e80, 0x3c00, 0xb800}; /* bf16 x4, f16 x2 */
    memcpy(data + 104, h, sizeof h);
    data[116] = 1;
    fz_file f;
    fz_file_open(&f, "w.safetensors");
    uint64_t n = hl;
    unsigned char le[8];
    for (int j = 0; j < 8; j++) le[j] = (unsigned char)(n >> (8 * j));
    if (write(f.fd, le, 8) != 8 || write(f.fd, header, hl) != (ssize_t)hl || write(f.fd, data, off) != (ssize_t)off) {
        perror(f.path);
        abort();
    }
    close(f.fd);
}

#endif
