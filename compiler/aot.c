/* AOT back end: builds the generated translation unit into a shared library
 * with gcc, links it against libfusec_rt.so, and loads it with dlopen.
 *
 * Builds happen in a private temp directory next to the target and end
 * with a rename, so a library path either holds a complete library or
 * nothing; a failed build leaves no files behind. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "backend.h"

/* The Makefile defines FU_RUNTIME_DIR as the absolute build directory. */
#ifndef FU_RUNTIME_DIR
#define FU_RUNTIME_DIR "build"
#endif

extern char **environ;

/* Compiler flags; also part of the cache key. */
static const char *const gcc_flags[] = {"-O3", "-march=native", "-fPIC", "-shared",
                                        "-std=c11", "-w"};
#define N_GCC_FLAGS (sizeof gcc_flags / sizeof gcc_flags[0])

const char *fu_runtime_dir(void) {
    const char *env = getenv("FUSEC_RUNTIME_DIR");
    return env && *env ? env : FU_RUNTIME_DIR;
}

/* ---- small file helpers ------------------------------------------------ */

static int write_file(const char *path, const char *text, fu_err *err) {
    FILE *f = fopen(path, "w");
    if (!f) return fu_fail(err, "aot: cannot write %s: %s", path, strerror(errno));
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n;
    ok &= fclose(f) == 0;
    if (!ok) return fu_fail(err, "aot: cannot write %s: %s", path, strerror(errno));
    return 0;
}

/* Directory part of a path ("." when there is none); malloc'd. */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

int fu_make_dirs(const char *dir, fu_err *err) {
    char *p = strdup(dir);
    if (!p) return fu_fail(err, "aot: out of memory");
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == 0) {
            char saved = *s;
            *s = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                fu_fail(err, "aot: cannot create directory %s: %s", p, strerror(errno));
                free(p);
                return -1;
            }
            *s = saved;
            if (!saved) break;
        }
    }
    free(p);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return fu_fail(err, "aot: %s is not a directory", dir);
    return 0;
}

/* ---- running gcc ------------------------------------------------------- */

/* Runs argv[0] (looked up in PATH) with stdout and stderr captured into
 * `output` (truncated to outlen-1 bytes). Returns the exit status, or -1
 * with err set if the program could not run. */
static int run_captured(char *const argv[], char *output, size_t outlen, fu_err *err) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return fu_fail(err, "aot: pipe: %s", strerror(errno));
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        return fu_fail(err, "aot: cannot run %s: %s", argv[0], strerror(rc));
    }
    /* Read to EOF so the child never blocks on a full pipe. */
    size_t len = 0;
    char chunk[4096];
    for (;;) {
        ssize_t k = read(fds[0], chunk, sizeof chunk);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        size_t take = (size_t)k;
        if (len + take > outlen - 1) take = outlen - 1 - len;
        memcpy(output + len, chunk, take);
        len += take;
    }
    output[len] = 0;
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return fu_fail(err, "aot: waitpid: %s", strerror(errno));
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
        return fu_fail(err, "aot: cannot run %s", argv[0]);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Keeps the first `max_lines` lines of text, joined by " | ". */
static void first_lines(const char *text, int max_lines, char *buf, size_t n) {
    size_t len = 0;
    int lines = 0;
    buf[0] = 0;
    while (*text && lines < max_lines && len + 4 < n) {
        const char *eol = strchr(text, '\n');
        size_t line_len = eol ? (size_t)(eol - text) : strlen(text);
        if (line_len) {
            int k = snprintf(buf + len, n - len, "%s%.*s", lines ? " | " : "", (int)line_len, text);
            if (k < 0) break;
            len += (size_t)k < n - len ? (size_t)k : n - len - 1;
            lines++;
        }
        text += line_len;
        if (*text == '\n') text++;
    }
}

/* Header declaring what the library exports, for C users. */
static int write_header(const char *header_path, const char *so_path, fu_err *err) {
    /* Names go into a comment and a macro: keep only harmless characters. */
    char so_name[256], guard[256];
    const char *base = strrchr(so_path, '/');
    base = base ? base + 1 : so_path;
    size_t i;
    for (i = 0; base[i] && i < sizeof so_name - 1; i++) {
        char c = base[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '.' || c == '-';
        so_name[i] = ok ? c : '_';
    }
    so_name[i] = 0;
    const char *hbase = strrchr(header_path, '/');
    hbase = hbase ? hbase + 1 : header_path;
    size_t g = 0;
    g += (size_t)snprintf(guard, sizeof guard, "FUSEC_MODEL_");
    for (i = 0; hbase[i] && g < sizeof guard - 1; i++, g++) {
        char c = hbase[i];
        if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
        guard[g] = ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) ? c : '_';
    }
    guard[g] = 0;

    char text[4096];
    snprintf(text, sizeof text,
             "/* Generated by fusec for %s. Do not edit.\n"
             " *\n"
             " * The easiest way to use the library is the fusec C API (api/fusec.h):\n"
             " *   fusec_model *m = fusec_load(\"%s\", NULL, err, sizeof err);\n"
             " *   fusec_set_input(m, \"name\", FUSEC_FLOAT32, rank, shape, data);\n"
             " *   fusec_run(m); fusec_get_output(m, \"name\", &dtype, &rank, shape, &data);\n"
             " * which checks shapes, maps the weights and owns the arena.\n"
             " *\n"
             " * The raw entry point below is what that API calls: sym[] holds the symbol\n"
             " * values, in[] / w[] / out[] the input, weight and output pointers in the\n"
             " * order given by the metadata JSON (fusec_model_meta; w[] lists the\n"
             " * \"weights\", then their packed copies, \"packed\", which fusec_load\n"
             " * makes and caches), and arena points to\n"
             " * arena_bytes bytes aligned to 64. It returns 0, or 1 + the index of the\n"
             " * node that failed on bad index data. The library needs libfusec_rt.so. */\n"
             "#ifndef %s\n"
             "#define %s\n"
             "\n"
             "#include <stdint.h>\n"
             "\n"
             "#ifdef __cplusplus\n"
             "extern \"C\" {\n"
             "#endif\n"
             "\n"
             "int fusec_model_run(const int64_t *sym, const void *const *in, const void *const *w,\n"
             "                    void *arena, void **out);\n"
             "/* Model signature as JSON bytes (not NUL-terminated). */\n"
             "extern const unsigned char fusec_model_meta[];\n"
             "extern const unsigned long fusec_model_meta_len;\n"
             "\n"
             "#ifdef __cplusplus\n"
             "}\n"
             "#endif\n"
             "#endif\n",
             so_name, so_name, guard, guard);

    size_t plen = strlen(header_path);
    char *tmp = malloc(plen + 16);
    if (!tmp) return fu_fail(err, "aot: out of memory");
    snprintf(tmp, plen + 16, "%s.tmpXXXXXX", header_path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        fu_fail(err, "aot: cannot write %s: %s", header_path, strerror(errno));
        free(tmp);
        return -1;
    }
    size_t n = strlen(text);
    int ok = write(fd, text, n) == (ssize_t)n;
    ok &= close(fd) == 0;
    ok &= fchmodat(AT_FDCWD, tmp, 0644, 0) == 0;
    if (!ok || rename(tmp, header_path) != 0) {
        fu_fail(err, "aot: cannot write %s: %s", header_path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

int fu_aot_build(const char *c_source, const char *so_path, const char *header_path,
                 fu_err *err) {
    err->msg[0] = 0;
    const char *rt = fu_runtime_dir();
    char *dir = dir_of(so_path);
    if (!dir) return fu_fail(err, "aot: out of memory");
    size_t dlen = strlen(dir) + 64 + strlen(rt) * 2;
    char *tmpdir = malloc(dlen), *c_path = malloc(dlen), *tmp_so = malloc(dlen);
    char *lib_dir_flag = malloc(dlen), *rpath_flag = malloc(dlen);
    char *output = malloc(8192);
    int rc = -1, have_tmpdir = 0;
    if (!tmpdir || !c_path || !tmp_so || !lib_dir_flag || !rpath_flag || !output) {
        fu_fail(err, "aot: out of memory");
        goto done;
    }
    snprintf(tmpdir, dlen, "%s/.fusec-build-XXXXXX", dir);
    if (!mkdtemp(tmpdir)) {
        fu_fail(err, "aot: cannot create a build directory in %s: %s", dir, strerror(errno));
        goto done;
    }
    have_tmpdir = 1;
    snprintf(c_path, dlen, "%s/model.c", tmpdir);
    snprintf(tmp_so, dlen, "%s/model.so", tmpdir);
    snprintf(lib_dir_flag, dlen, "-L%s", rt);
    snprintf(rpath_flag, dlen, "-Wl,-rpath,%s", rt);
    if (write_file(c_path, c_source, err) != 0) goto done;

    char *argv[32];
    int argc = 0;
    argv[argc++] = "gcc";
    for (size_t i = 0; i < N_GCC_FLAGS; i++) argv[argc++] = (char *)gcc_flags[i];
    argv[argc++] = "-o";
    argv[argc++] = tmp_so;
    argv[argc++] = c_path;
    argv[argc++] = lib_dir_flag;
    argv[argc++] = "-lfusec_rt";
    argv[argc++] = rpath_flag;
    argv[argc++] = "-lm";
    argv[argc] = NULL;
    int status = run_captured(argv, output, 8192, err);
    if (status < 0) goto done;
    if (status != 0) {
        char lines[700];
        first_lines(output, 6, lines, sizeof lines);
        fu_fail(err, "aot: gcc failed building %s (exit %d): %s", so_path, status, lines);
        goto done;
    }
    if (rename(tmp_so, so_path) != 0) {
        fu_fail(err, "aot: cannot move the library to %s: %s", so_path, strerror(errno));
        goto done;
    }
    if (header_path && write_header(header_path, so_path, err) != 0) {
        unlink(so_path);
        goto done;
    }
    rc = 0;
done:
    if (have_tmpdir) {
        unlink(c_path);
        unlink(tmp_so);
        rmdir(tmpdir);
    }
    free(dir);
    free(tmpdir);
    free(c_path);
    free(tmp_so);
    free(lib_dir_flag);
    free(rpath_flag);
    free(output);
    return rc;
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
    if (run_captured(argv, output, sizeof output, &err) != 0) return;
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

    char rt_lib[4096], rt_identity[128];
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
    for (size_t i = 0; ok && i < N_GCC_FLAGS; i++)
        ok = EVP_DigestUpdate(ctx, gcc_flags[i], strlen(gcc_flags[i]) + 1) == 1;
    ok = ok && EVP_DigestUpdate(ctx, rt_lib, strlen(rt_lib) + 1) == 1;
    ok = ok && EVP_DigestUpdate(ctx, rt_identity, strlen(rt_identity) + 1) == 1;
    ok = ok && EVP_DigestFinal_ex(ctx, digest, &digest_len) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok) return fu_fail(err, "aot: sha256 failed");
    hex_encode(digest, digest_len, hex);
    return 0;
}

int fu_aot_cache_path(const char *cache_dir, const char *const *key_parts, int n_parts, char **so_path_out,
                      int *exists, fu_err *err) {
    *so_path_out = NULL;
    *exists = 0;
    err->msg[0] = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    if (cache_key(key_parts, n_parts, hex, err) != 0) return -1;
    if (fu_make_dirs(cache_dir, err) != 0) return -1;
    size_t n = strlen(cache_dir) + strlen(hex) + 8;
    char *path = malloc(n);
    if (!path) return fu_fail(err, "aot: out of memory");
    snprintf(path, n, "%s/%s.so", cache_dir, hex);
    /* Libraries only ever appear complete (rename), so existing is enough. */
    *exists = access(path, R_OK) == 0;
    *so_path_out = path;
    return 0;
}

int fu_aot_load(const char *so_path, fu_compiled *out, fu_err *err) {
    memset(out, 0, sizeof *out);
    err->msg[0] = 0;
    /* dlopen searches the library path for names without a slash. */
    char local[4096];
    const char *open_path = so_path;
    if (!strchr(so_path, '/')) {
        snprintf(local, sizeof local, "./%s", so_path);
        open_path = local;
    }
    void *h = dlopen(open_path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        return fu_fail(err, "%s: cannot load the library: %s", so_path, why ? why : "unknown error");
    }
    void *run = dlsym(h, "fusec_model_run");
    const unsigned char *meta = dlsym(h, "fusec_model_meta");
    const unsigned long *meta_len = dlsym(h, "fusec_model_meta_len");
    if (!run || !meta || !meta_len) {
        dlclose(h);
        return fu_fail(err, "%s: not a fusec model library (fusec_model_run, fusec_model_meta or "
                            "fusec_model_meta_len missing)", so_path);
    }
    memcpy(&out->run, &run, sizeof run);
    void *run_profiled = dlsym(h, "fusec_model_run_profiled");   /* optional: older libraries lack it */
    memcpy(&out->run_profiled, &run_profiled, sizeof run_profiled);
    out->meta = meta;
    out->meta_len = *meta_len;
    out->dl_handle = h;
    return 0;
}
