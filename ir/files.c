/* Opening files named by users and models (ir/files.h). */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "files.h"

/* fstat the freshly opened fd, refuse anything but a regular file, then
 * make it blocking again. Closes fd on failure. */
static int finish_open(int fd, const char *path, const char *what, struct stat *st, fu_err *err) {
    struct stat s;
    if (fstat(fd, &s) != 0) {
        int e = errno;
        close(fd);
        return fu_fail(err, "%s: cannot open %s: %s", path, what, strerror(e));
    }
    if (!S_ISREG(s.st_mode)) {
        close(fd);
        return fu_fail(err, "%s: cannot open %s: not a regular file (%s)", path, what,
                       S_ISDIR(s.st_mode) ? "a directory" : S_ISFIFO(s.st_mode) ? "a FIFO"
                       : S_ISSOCK(s.st_mode) ? "a socket" : "a device");
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        return fu_fail(err, "%s: cannot open %s: %s", path, what, strerror(e));
    }
    if (st) *st = s;
    return fd;
}

int fu_open_regular(const char *path, const char *what, struct stat *st, fu_err *err) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return fu_fail(err, "%s: cannot open %s: %s", path, what, strerror(errno));
    return finish_open(fd, path, what, st, err);
}

static char *join(const char *dir, const char *rel) {
    size_t d = strlen(dir), r = strlen(rel);
    char *s = malloc(d + r + 2);
    if (!s) return NULL;
    memcpy(s, dir, d);
    size_t k = d;
    if (d == 0 || dir[d - 1] != '/') s[k++] = '/';
    memcpy(s + k, rel, r + 1);
    return s;
}

/* The model file's folder, as given ("." when the path has no slash). */
static char *model_dir(const char *model_path) {
    const char *slash = model_path ? strrchr(model_path, '/') : NULL;
    if (!slash) return strdup(".");
    if (slash == model_path) return strdup("/");
    return strndup(model_path, (size_t)(slash - model_path));
}

/* rel inside realdir, all symlinks resolved: openat2 with RESOLVE_BENEATH.
 * Returns the fd, -1 with errno set, or -2 when the kernel (or a seccomp
 * filter) refuses openat2 itself. */
static int open_beneath(const char *realdir, const char *rel) {
#ifdef SYS_openat2
    int dfd = open(realdir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return -1;
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    int fd = (int)syscall(SYS_openat2, dfd, rel, &how, sizeof how);
    int e = errno;
    close(dfd);
    if (fd < 0 && (e == ENOSYS || e == EPERM)) return -2;
    errno = e;
    return fd;
#else
    (void)realdir, (void)rel;
    return -2;
#endif
}

int fu_open_model_file(const char *model_path, const char *rel, int allow_external, const char *what,
                       char **resolved, struct stat *st, fu_err *err) {
    const char *mp = model_path ? model_path : "model";
    char shown[256];
    fu_sanitize(rel, shown, sizeof shown);
    if (resolved) *resolved = NULL;
    if (!rel[0]) return fu_fail(err, "%s: %s path is empty", mp, what);
    char *dir = model_dir(model_path);
    if (!dir) return fu_fail(err, "%s: out of memory", mp);
    int fd = -1;
    char *joined = NULL, *real = NULL, *realdir = NULL;
    if (allow_external) {
        joined = rel[0] == '/' ? strdup(rel) : join(dir, rel);
        if (!joined) {
            fu_fail(err, "%s: out of memory", mp);
            goto done;
        }
        fu_err inner;
        fd = fu_open_regular(joined, what, st, &inner);
        if (fd >= 0) real = realpath(joined, NULL);
        else fu_fail(err, "%s: %s", mp, inner.msg);
        goto done;
    }
    if (rel[0] == '/') {
        fu_fail(err, "%s: %s path '%s' is absolute; a model's files must be inside its folder "
                "(allow it with --allow-external-weights, or fusec_options.allow_external_weights)",
                mp, what, shown);
        goto done;
    }
    if (!(realdir = realpath(dir, NULL))) {
        fu_fail(err, "%s: cannot resolve the model's folder %s: %s", mp, dir, strerror(errno));
        goto done;
    }
    if (!(joined = join(realdir, rel))) {
        fu_fail(err, "%s: out of memory", mp);
        goto done;
    }
    static const char outside[] = "%s: %s path '%s' leads outside the model's folder %s "
                                  "(allow it with --allow-external-weights, or "
                                  "fusec_options.allow_external_weights)";
    fd = open_beneath(realdir, rel);
    if (fd == -2) {
        /* No openat2: resolve, check the prefix, open without following a
         * symlink planted in the last component since. */
        if (!(real = realpath(joined, NULL))) {
            fu_fail(err, "%s: cannot open %s %s: %s", mp, what, joined, strerror(errno));
            fd = -1;
            goto done;
        }
        size_t n = strlen(realdir);
        int inside = strncmp(real, realdir, n) == 0 && (real[n] == '/' || (n == 1 && realdir[0] == '/'));
        if (!inside) {
            fu_fail(err, outside, mp, what, shown, realdir);
            fd = -1;
            goto done;
        }
        fd = open(real, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
        if (fd < 0) {
            fu_fail(err, "%s: cannot open %s %s: %s", mp, what, joined, strerror(errno));
            goto done;
        }
        fd = finish_open(fd, joined, what, st, err);
        goto done;
    }
    if (fd < 0) {
        if (errno == EXDEV) fu_fail(err, outside, mp, what, shown, realdir);
        else fu_fail(err, "%s: cannot open %s %s: %s", mp, what, joined, strerror(errno));
        goto done;
    }
    fd = finish_open(fd, joined, what, st, err);
    if (fd >= 0) real = realpath(joined, NULL);
done:
    if (fd >= 0 && resolved) {
        *resolved = real ? real : joined;
        if (real) free(joined);
        joined = real = NULL;
    }
    free(real);
    free(joined);
    free(realdir);
    free(dir);
    return fd;
}
