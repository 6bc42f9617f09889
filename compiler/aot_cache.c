/* The AOT build cache (compiler/backend.h): the key a library is cached
 * under, and whether a cached library may be loaded. Building and loading
 * are compiler/aot.c's.
 *
 * The key is a sha256 over what decides the library's bytes (the caller's
 * description of the model, fusec's build, gcc's version and flags, the
 * runtime library). The cache can't be planted (docs/security.md): the
 * directory must be a real directory only we (or root) can write, and a
 * library is dlopen'ed only after it and its <key>.so.sha256 sidecar are
 * found private and its sha256 matches, all under a shared flock of the
 * directory (installs take it exclusively), so the file checked is the file
 * dlopen maps. Temp entries left by killed builders are removed here too. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "aot_cache.h"
#include "backend.h"

/* ---- trusting the cache --------------------------------------------------- */

/* NULL when st is something only we or root can change (owner, and no
 * group or other write bit), else why not, in buf. */
const char *fu_cache_untrusted(const struct stat *st, char *buf, size_t n) {
    if (st->st_uid != geteuid() && st->st_uid != 0)
        snprintf(buf, n, "owned by uid %u, not by you (uid %u)", (unsigned)st->st_uid, (unsigned)geteuid());
    else if (st->st_mode & S_IWGRP)
        snprintf(buf, n, "writable by its group (mode %04o)", (unsigned)(st->st_mode & 07777));
    else if (st->st_mode & S_IWOTH)
        snprintf(buf, n, "writable by other users (mode %04o)", (unsigned)(st->st_mode & 07777));
    else
        return NULL;
    return buf;
}

int fu_cache_dir_check(const char *dir, fu_err *err) {
    struct stat st;
    if (lstat(dir, &st) != 0 && errno == ENOENT) {
        /* Parents as mkdir -p makes them; the cache itself private whatever the umask. */
        char *parent = fu_aot_dir_of(dir);
        if (!parent) return fu_fail(err, "out of memory");
        int rc = fu_make_dirs(parent, err);
        free(parent);
        if (rc) return -1;
        if (mkdir(dir, 0755) != 0 && errno != EEXIST)
            return fu_fail(err, "cannot create the cache directory %s: %s", dir, strerror(errno));
    }
    if (lstat(dir, &st) != 0) return fu_fail(err, "cache directory %s: %s", dir, strerror(errno));
    if (S_ISLNK(st.st_mode))
        return fu_fail(err, "refusing the cache directory %s: it is a symbolic link; give the directory it points "
                            "to instead", dir);
    if (!S_ISDIR(st.st_mode)) return fu_fail(err, "cache directory %s is not a directory", dir);
    char why[128];
    if (fu_cache_untrusted(&st, why, sizeof why)) {
        if (st.st_uid != geteuid() && st.st_uid != 0)
            return fu_fail(err, "refusing the cache directory %s: it is %s, who could plant code in it; use a "
                                "cache directory of your own", dir, why);
        return fu_fail(err, "refusing the cache directory %s: it is %s, so others could plant code in it; fix it "
                            "with `chmod go-w %s`, or use a private cache directory", dir, why, dir);
    }
    return 0;
}

/* Locks directory `dir` (flock `op`: LOCK_SH or LOCK_EX); returns the
 * descriptor to unlock with fu_aot_unlock_dir, or -1 when it cannot be locked
 * (then callers go on unlocked: a lost race costs a rebuild, not a load of
 * anything unverified). */
int fu_aot_lock_dir(const char *dir, int op) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return -1;
    while (flock(fd, op) != 0) {
        if (errno != EINTR) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

void fu_aot_unlock_dir(int fd) {
    if (fd >= 0) close(fd);   /* closing the only descriptor releases the lock */
}

/* Removes dir/name, a folder of plain files (openat: never follows links). */
static void remove_build_dir(int dirfd, const char *name) {
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlinkat(fd, e->d_name, 0);
    closedir(d);
    unlinkat(dirfd, name, AT_REMOVEDIR);
}

/* Whether a temp entry named <prefix><pid>-XXXXXX was left by a builder
 * that is gone: its pid is not running, or (a reused pid) it is a day old.
 * Names without a pid (older fusec) are stale after an hour. */
static int left_by_dead_builder(const char *rest, const struct stat *st) {
    double age = difftime(time(NULL), st->st_mtime);
    char *end;
    errno = 0;
    long pid = strtol(rest, &end, 10);
    if (end == rest || *end != '-' || errno || pid <= 0 || pid != (pid_t)pid) return age > 3600;
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) return 1;
    return age > 24 * 3600;
}

void fu_cache_remove_stale(const char *dir) {
    static const char *const prefixes[] = {".fusec-build-", ".packed-"};
    int lock = fu_aot_lock_dir(dir, LOCK_EX);
    if (lock < 0) return;
    DIR *d = fdopendir(dup(lock));
    for (struct dirent *e; d && (e = readdir(d));) {
        for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
            size_t k = strlen(prefixes[i]);
            struct stat st;
            if (strncmp(e->d_name, prefixes[i], k) != 0 ||
                fstatat(lock, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !left_by_dead_builder(e->d_name + k, &st))
                continue;
            if (S_ISDIR(st.st_mode)) remove_build_dir(lock, e->d_name);
            else unlinkat(lock, e->d_name, 0);
        }
    }
    if (d) closedir(d);
    fu_aot_unlock_dir(lock);
}

/* Hex sha256 of everything readable from fd (from its start). */
int fu_aot_sha256_fd(int fd, char hex[65]) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char buf[1 << 16], md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
    for (off_t off = 0; ok;) {
        ssize_t k = pread(fd, buf, sizeof buf, off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            ok = k == 0;
            break;
        }
        ok = EVP_DigestUpdate(ctx, buf, (size_t)k) == 1;
        off += k;
    }
    ok = ok && EVP_DigestFinal_ex(ctx, md, &md_len) == 1 && md_len == 32;
    EVP_MD_CTX_free(ctx);
    if (!ok) return -1;
    for (unsigned i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* The sidecar's text for a library of sha256 `hex` named so_path: one
 * `sha256sum` line, so `sha256sum -c <key>.so.sha256` checks it too. */
void fu_aot_sidecar_text(const char *hex, const char *so_path, char *out, size_t n) {
    const char *base = strrchr(so_path, '/');
    snprintf(out, n, "%s  %s\n", hex, base ? base + 1 : so_path);
}

/* ---- cache ------------------------------------------------------------- */

/* First line of `gcc --version`, computed once per process. */
static pthread_once_t gcc_version_once = PTHREAD_ONCE_INIT;
static char gcc_version[256];
static int gcc_version_ok;

static void read_gcc_version(void) {
    char *argv[] = {"gcc", "--version", NULL};
    char output[1024];
    fu_err err;
    if (fu_aot_run_captured(argv, output, sizeof output, &err) != 0) return;
    output[strcspn(output, "\n")] = 0;
    snprintf(gcc_version, sizeof gcc_version, "%.200s", output);
    gcc_version_ok = 1;
}

static void hex_encode(const unsigned char *bytes, unsigned n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (unsigned i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = 0;
}

extern const char fu_build_id[];   /* hash of fusec's own sources (Makefile: build/build_id.c) */

/* sha256 over everything that decides the library's bytes: the caller's
 * parts (what the model is), fusec's build, gcc and its flags, and the
 * runtime library the code links against. */
static int cache_key(const char *const *parts, int n_parts, char *hex, fu_err *err) {
    pthread_once(&gcc_version_once, read_gcc_version);
    if (!gcc_version_ok) return fu_fail(err, "aot: cannot run `gcc --version`; is gcc installed?");

    char rt_lib[4096], rt_identity[128], march[80];
    if (fu_aot_march_flag(march, sizeof march, err)) return -1;
    if (!fu_runtime_dir()[0])
        return fu_fail(err, "aot: cannot tell where libfusec_rt.so is loaded from (set FUSEC_RUNTIME_DIR)");
    snprintf(rt_lib, sizeof rt_lib, "%s/libfusec_rt.so", fu_runtime_dir());
    struct stat st;
    if (stat(rt_lib, &st) != 0)
        return fu_fail(err, "aot: runtime library %s not found (set FUSEC_RUNTIME_DIR)", rt_lib);
    snprintf(rt_identity, sizeof rt_identity, "%lld:%lld.%09ld", (long long)st.st_size,
             (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);

    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) return fu_fail(err, "aot: out of memory");
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned digest_len = 0;
    /* Each part is followed by a NUL so that parts cannot run together. */
    int ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
    for (int i = 0; ok && i < n_parts; i++) ok = EVP_DigestUpdate(ctx, parts[i], strlen(parts[i]) + 1) == 1;
    ok = ok && EVP_DigestUpdate(ctx, fu_build_id, strlen(fu_build_id) + 1) == 1;
    ok = ok && EVP_DigestUpdate(ctx, gcc_version, strlen(gcc_version) + 1) == 1;
    for (size_t i = 0; ok && fu_aot_gcc_flags[i]; i++)
        ok = EVP_DigestUpdate(ctx, fu_aot_gcc_flags[i], strlen(fu_aot_gcc_flags[i]) + 1) == 1;
    ok = ok && EVP_DigestUpdate(ctx, march, strlen(march) + 1) == 1;
    ok = ok && EVP_DigestUpdate(ctx, rt_lib, strlen(rt_lib) + 1) == 1;
    ok = ok && EVP_DigestUpdate(ctx, rt_identity, strlen(rt_identity) + 1) == 1;
    ok = ok && EVP_DigestFinal_ex(ctx, digest, &digest_len) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok) return fu_fail(err, "aot: sha256 failed");
    hex_encode(digest, digest_len, hex);
    return 0;
}

char *fu_default_cache_dir(char *buf, size_t n) {
    const char *own = getenv("FUSEC_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (own && *own) snprintf(buf, n, "%s", own);
    else if (xdg && *xdg == '/') snprintf(buf, n, "%s/fusec", xdg);   /* relative XDG paths are to be ignored */
    else if (home && *home) snprintf(buf, n, "%s/.cache/fusec", home);
    else snprintf(buf, n, "/tmp/fusec-cache-%ld", (long)getuid());
    return buf;
}

int fu_aot_cache_path(const char *cache_dir, const char *const *key_parts, int n_parts, char **so_path_out,
                      int *exists, fu_err *err) {
    *so_path_out = NULL;
    *exists = 0;
    err->msg[0] = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    if (cache_key(key_parts, n_parts, hex, err) != 0) return -1;
    if (fu_cache_dir_check(cache_dir, err) != 0) return -1;
    size_t n = strlen(cache_dir) + strlen(hex) + 8;
    char *path = malloc(n);
    if (!path) return fu_fail(err, "aot: out of memory");
    snprintf(path, n, "%s/%s.so", cache_dir, hex);
    /* Libraries only ever appear complete (rename); fu_aot_cache_load
     * decides whether one is trusted. */
    char side[4200];
    snprintf(side, sizeof side, "%s.sha256", path);
    *exists = access(path, R_OK) == 0 && access(side, R_OK) == 0;
    *so_path_out = path;
    return 0;
}

/* Opens `path` (no symlinks, a regular file only we can change) into *fd;
 * NULL, or why it is not trusted. */
static const char *open_private(const char *path, int *fd, struct stat *st, char *why, size_t n) {
    *fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (*fd < 0) {
        snprintf(why, n, "%s: %s", path, errno == ENOENT ? "missing" : errno == ELOOP ? "a symbolic link" : strerror(errno));
        return why;
    }
    char reason[128];
    if (fstat(*fd, st) != 0 || !S_ISREG(st->st_mode))
        snprintf(why, n, "%s: not a regular file", path);
    else if (fu_cache_untrusted(st, reason, sizeof reason))
        snprintf(why, n, "%s: %s", path, reason);
    else
        return NULL;
    close(*fd);
    *fd = -1;
    return why;
}

int fu_aot_cache_load(const char *so_path, fu_compiled *out, char *why, size_t why_len, fu_err *err) {
    memset(out, 0, sizeof *out);
    err->msg[0] = 0;
    why[0] = 0;
    char side_path[4200], want[4200], have[4200] = "", hex[65];
    snprintf(side_path, sizeof side_path, "%s.sha256", so_path);
    char *dir = fu_aot_dir_of(so_path);
    if (!dir) return fu_fail(err, "aot: out of memory");
    /* Under the shared lock no install can happen: the pair is as one
     * install left it, and the file checked is the file dlopen maps. */
    int lock = fu_aot_lock_dir(dir, LOCK_SH);
    free(dir);
    int so_fd = -1, side_fd = -1, rc = 1;
    struct stat so_st, side_st, now;
    if (open_private(so_path, &so_fd, &so_st, why, why_len) || open_private(side_path, &side_fd, &side_st, why, why_len))
        goto done;
    ssize_t k = side_st.st_size < (off_t)sizeof have ? pread(side_fd, have, sizeof have - 1, 0) : -1;
    have[k > 0 ? k : 0] = 0;
    /* so_fd pins the file we hash; only we can write it or its directory. */
    if (fu_aot_sha256_fd(so_fd, hex) != 0) {
        rc = fu_fail(err, "aot: cannot read %s: %s", so_path, strerror(errno));
        goto done;
    }
    fu_aot_sidecar_text(hex, so_path, want, sizeof want);
    if (strcmp(have, want) != 0)
        snprintf(why, why_len, "%s: its sha256 does not match %s", so_path, side_path);
    else if (lstat(so_path, &now) != 0 || now.st_dev != so_st.st_dev || now.st_ino != so_st.st_ino)
        snprintf(why, why_len, "%s: replaced while it was checked", so_path);   /* only when unlocked */
    else
        rc = fu_aot_load(so_path, out, err);
done:
    if (so_fd >= 0) close(so_fd);
    if (side_fd >= 0) close(side_fd);
    fu_aot_unlock_dir(lock);
    return rc;
}
