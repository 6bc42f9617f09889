/* AOT back end: builds the generated translation unit into a shared library
 * with gcc, links it against libfusec_rt.so, and loads it with dlopen.
 *
 * Builds happen in a private temp directory next to the target and end
 * with a rename, so a library path either holds a complete library or
 * nothing; a failed build leaves no files behind. Its name holds the
 * builder's pid, so a build killed on the way (SIGKILL) leaves a folder
 * that the next build in that directory removes.
 *
 * A cache build writes <key>.so.sha256 beside <key>.so (in `sha256sum`
 * format) and installs the pair under an exclusive flock of the cache
 * directory; compiler/aot_cache.c keys the cache and checks a cached
 * library before fu_aot_load dlopens it (docs/security.md). */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aot_cache.h"
#include "backend.h"
#include "progress.h"
#include "../ir/files.h"
#include "../runtime/fusec_kernels.h"

extern char **environ;

/* Compiler flags; also part of the cache key. */
/* -Bsymbolic: the library's own calls bind to its own definitions, so any
 * number of compiled models can be linked into one program. */
const char *const fu_aot_gcc_flags[] = {"-O3", "-fPIC", "-shared", "-std=c11", "-w", "-Wl,-Bsymbolic", NULL};

/* The instruction set: this machine's unless FUSEC_AOT_MARCH names a gcc
 * -march target (e.g. x86-64-v3: a library for any AVX2 machine, or one
 * that valgrind, which knows no AVX-512, can run). */
int fu_aot_march_flag(char *out, size_t n, fu_err *err) {
    const char *m = getenv("FUSEC_AOT_MARCH");
    if (!m || !*m) m = "native";
    if (strlen(m) > 64 || strspn(m, "abcdefghijklmnopqrstuvwxyz0123456789-_.") != strlen(m)) {
        char t[80];
        fu_sanitize(m, t, sizeof t);
        return fu_fail(err, "aot: FUSEC_AOT_MARCH '%s' is not a gcc -march name", t);
    }
    snprintf(out, n, "-march=%s", m);
    return 0;
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
char *fu_aot_dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* ---- where the runtime is ------------------------------------------------- */

/* The folder of the libfusec_rt.so this process runs on (the build tree's
 * build/, or PREFIX/lib once installed), found from the address of one of
 * its functions, so that AOT libraries link against the very runtime that
 * is loaded. "" if it cannot be found. */
static pthread_once_t runtime_dir_once = PTHREAD_ONCE_INIT;
static char loaded_runtime_dir[4096];

static void find_runtime_dir(void) {
    Dl_info info;
    if (!dladdr((const void *)fu_rt_gather, &info) || !info.dli_fname || !strchr(info.dli_fname, '/')) return;
    char *dir = fu_aot_dir_of(info.dli_fname);
    char *real = dir ? realpath(dir, NULL) : NULL;
    if (real && strlen(real) < sizeof loaded_runtime_dir) snprintf(loaded_runtime_dir, sizeof loaded_runtime_dir, "%s", real);
    free(real);
    free(dir);
}

const char *fu_runtime_dir(void) {
    const char *env = getenv("FUSEC_RUNTIME_DIR");
    if (env && *env) return env;
    pthread_once(&runtime_dir_once, find_runtime_dir);
    return loaded_runtime_dir;
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
int fu_aot_run_captured(char *const argv[], char *output, size_t outlen, fu_err *err) {
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

/* The C name of a library's model: libNAME.so -> NAME, every other
 * character than [A-Za-z0-9_] made '_' ("model" if nothing is left). */
static void model_prefix(const char *so_path, char *out, size_t n) {
    const char *base = strrchr(so_path, '/');
    base = base ? base + 1 : so_path;
    size_t len = strlen(base);
    if (len > 3 && strcmp(base + len - 3, ".so") == 0) len -= 3;
    if (len > 3 && strncmp(base, "lib", 3) == 0) base += 3, len -= 3;
    size_t k = 0;
    if (len && base[0] >= '0' && base[0] <= '9' && k + 1 < n) out[k++] = '_';
    for (size_t i = 0; i < len && k + 1 < n; i++) {
        char c = base[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
        out[k++] = ok ? c : '_';
    }
    out[k] = 0;
    if (!k) snprintf(out, n, "model");
}

/* What fusec compile adds to the generated C: entry points named after
 * the model, so that two compiled models linked into one program never
 * answer for each other (the generic fusec_model_* stay, for dlopen). */
static char *with_named_entry_points(const char *c_source, const char *prefix) {
    char *out = NULL;
    if (asprintf(&out,
                 "%s\n/* entry points named after the model (compiler/aot.c) */\n#include <stdint.h>\n"
                 "int fusec_%s_run(const int64_t *sym, const void *const *in, const void *const *w, void *arena,\n"
                 "                 void **out) { return fusec_model_run(sym, in, w, arena, out); }\n"
                 "const unsigned char *fusec_%s_meta(unsigned long *len) {\n"
                 "    if (len) *len = fusec_model_meta_len;\n"
                 "    return fusec_model_meta;\n}\n",
                 c_source, prefix, prefix) < 0)
        return NULL;
    return out;
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

    char prefix[200];
    model_prefix(so_path, prefix, sizeof prefix);
    char text[8192];
    snprintf(text, sizeof text,
             "/* Generated by fusec for %s. Do not edit.\n"
             " *\n"
             " * The easiest way to use the library is the fusec C API (api/fusec.h):\n"
             " *   fusec_model *m = fusec_load(\"%s\", NULL, err, sizeof err);\n"
             " *   fusec_set_input(m, \"name\", FUSEC_FLOAT32, rank, shape, data);\n"
             " *   fusec_run(m); fusec_get_output(m, \"name\", &dtype, &rank, shape, &data);\n"
             " * which checks shapes, finds and maps the weights (beside the library, or\n"
             " * fusec_options.weights), packs them for the GEMM and owns the arena.\n"
             " *\n"
             " * Linked directly (-l%s), the library answers to the names below, which\n"
             " * carry the model's name, so several compiled models can be linked into one\n"
             " * program. fusec_%s_meta() returns the model's signature, a JSON object\n"
             " * (*len bytes, not NUL-terminated): \"inputs\", \"outputs\", \"weights\"\n"
             " * (each with name, dtype, shape), \"symbols\", \"arena_bytes\", ...\n"
             " *\n"
             " * fusec_%s_run is the raw entry point the API calls. Ownership:\n"
             " *   sym[]   the value of each symbol (symbolic dim), in \"symbols\" order;\n"
             " *   in[]    one pointer per input, in \"inputs\" order; read, never written;\n"
             " *   w[]     one pointer per weight, in \"weights\" order, then their packed\n"
             " *           copies (\"packed\"; fusec_load makes them); read only;\n"
             " *   arena   arena_bytes bytes aligned to 64, owned by the caller; the model\n"
             " *           writes every intermediate and every output there;\n"
             " *   out[]   filled BY the model with one pointer per output, in \"outputs\"\n"
             " *           order, into the arena (or to the input or constant an output\n"
             " *           merely views): do not pass buffers of your own (they are\n"
             " *           ignored); copy what you keep before the next run.\n"
             " * It returns 0, or 1 + the index of the node whose runtime check failed\n"
             " * (an index out of range). The library needs libfusec_rt.so. */\n"
             "#ifndef %s\n"
             "#define %s\n"
             "\n"
             "#include <stdint.h>\n"
             "\n"
             "#ifdef __cplusplus\n"
             "extern \"C\" {\n"
             "#endif\n"
             "\n"
             "int fusec_%s_run(const int64_t *sym, const void *const *in, const void *const *w, void *arena,\n"
             "                 void **out);\n"
             "const unsigned char *fusec_%s_meta(unsigned long *len);\n"
             "\n"
             "#ifdef __cplusplus\n"
             "}\n"
             "#endif\n"
             "#endif\n",
             so_name, so_name, prefix, prefix, prefix, guard, guard, prefix, prefix);

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

/* Builds so_path (and header_path if not NULL); with `sidecar`, a cache
 * entry: so_path.sha256 is written too, and both are installed together
 * under the directory's lock. */
/* The weights image a library carries (fusec compile --embed-weights):
 * gas includes the file, found through -I (the name holds only the
 * characters mkstemp and the caller chose, never a model's). */
static char *with_weights_image(const char *c_source, const char *image_name) {
    char *out = NULL;
    if (asprintf(&out,
                 "%s\n/* the weights, embedded (compiler/aot.c) */\n"
                 "__asm__(\".section .rodata\\n.balign 64\\n.globl fusec_weights_image\\n.hidden fusec_weights_image\\n"
                 "fusec_weights_image:\\n.incbin \\\"%s\\\"\\n.globl fusec_weights_image_end\\n"
                 ".hidden fusec_weights_image_end\\nfusec_weights_image_end:\\n.previous\");\n"
                 "extern const unsigned char fusec_weights_image[], fusec_weights_image_end[];\n"
                 "const unsigned char *fusec_model_weights(unsigned long *len) {\n"
                 "    *len = (unsigned long)(fusec_weights_image_end - fusec_weights_image);\n"
                 "    return fusec_weights_image;\n}\n",
                 c_source, image_name) < 0)
        return NULL;
    return out;
}

static int build(const char *c_source, const char *so_path, const char *header_path, int sidecar,
                 const char *weights_image, fu_err *err) {
    err->msg[0] = 0;
    const char *rt = fu_runtime_dir();
    if (!rt[0]) return fu_fail(err, "aot: cannot tell where libfusec_rt.so is loaded from (set FUSEC_RUNTIME_DIR)");
    char *dir = fu_aot_dir_of(so_path);
    if (!dir) return fu_fail(err, "aot: out of memory");
    size_t dlen = strlen(dir) + strlen(so_path) + 64 + strlen(rt) * 2;
    char *tmpdir = malloc(dlen), *c_path = malloc(dlen), *tmp_so = malloc(dlen), *tmp_side = malloc(dlen);
    char *side_path = malloc(dlen), *lib_dir_flag = malloc(dlen), *rpath_flag = malloc(dlen);
    char *output = malloc(8192);
    int rc = -1, have_tmpdir = 0;
    if (!tmpdir || !c_path || !tmp_so || !tmp_side || !side_path || !lib_dir_flag || !rpath_flag || !output) {
        fu_fail(err, "aot: out of memory");
        goto done;
    }
    fu_cache_remove_stale(dir);
    snprintf(tmpdir, dlen, "%s/.fusec-build-%d-XXXXXX", dir, (int)getpid());
    if (!mkdtemp(tmpdir)) {
        fu_fail(err, "aot: cannot create a build directory in %s: %s", dir, strerror(errno));
        goto done;
    }
    have_tmpdir = 1;
    snprintf(c_path, dlen, "%s/model.c", tmpdir);
    snprintf(tmp_so, dlen, "%s/model.so", tmpdir);
    snprintf(tmp_side, dlen, "%s/model.so.sha256", tmpdir);
    snprintf(side_path, dlen, "%s.sha256", so_path);
    snprintf(lib_dir_flag, dlen, "-L%s", rt);
    snprintf(rpath_flag, dlen, "-Wl,-rpath,%s", rt);
    char *named = NULL, *embedded = NULL, *image_dir = NULL, image_flag[4200] = "";
    if (header_path || !sidecar) {   /* fusec compile: a library to link, not only to dlopen */
        char prefix[200];
        model_prefix(so_path, prefix, sizeof prefix);
        if (!(named = with_named_entry_points(c_source, prefix))) {
            fu_fail(err, "aot: out of memory");
            goto done;
        }
    }
    if (weights_image) {
        const char *base = strrchr(weights_image, '/');
        image_dir = fu_aot_dir_of(weights_image);
        if (!image_dir || !(embedded = with_weights_image(named ? named : c_source, base ? base + 1 : weights_image))) {
            free(named), free(image_dir);
            fu_fail(err, "aot: out of memory");
            goto done;
        }
        snprintf(image_flag, sizeof image_flag, "-Wa,-I%s", image_dir);
        free(image_dir);
    }
    int wrote = write_file(c_path, embedded ? embedded : named ? named : c_source, err);
    free(named), free(embedded);
    if (wrote != 0) goto done;

    char *argv[32];
    int argc = 0;
    argv[argc++] = "gcc";
    for (size_t i = 0; fu_aot_gcc_flags[i]; i++) argv[argc++] = (char *)fu_aot_gcc_flags[i];
    char march[80];
    if (fu_aot_march_flag(march, sizeof march, err)) goto done;
    argv[argc++] = march;
    argv[argc++] = "-o";
    argv[argc++] = tmp_so;
    argv[argc++] = c_path;
    argv[argc++] = lib_dir_flag;
    argv[argc++] = "-lfusec_rt";
    argv[argc++] = rpath_flag;
    argv[argc++] = "-lm";
    if (image_flag[0]) argv[argc++] = image_flag;
    argv[argc] = NULL;
    int status = fu_aot_run_captured(argv, output, 8192, err);
    if (status < 0) goto done;
    if (status != 0) {
        char lines[700];
        first_lines(output, 6, lines, sizeof lines);
        fu_fail(err, "aot: gcc failed building %s (exit %d): %s", so_path, status, lines);
        goto done;
    }
    /* gcc's mode follows the umask: make it what the cache trusts. */
    if (chmod(tmp_so, 0755) != 0) {
        fu_fail(err, "aot: chmod %s: %s", tmp_so, strerror(errno));
        goto done;
    }
    if (sidecar) {
        char hex[65], text[4200];
        int fd = open(tmp_so, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        int ok = fd >= 0 && fu_aot_sha256_fd(fd, hex) == 0;
        if (fd >= 0) close(fd);
        if (!ok) {
            fu_fail(err, "aot: cannot hash %s", tmp_so);
            goto done;
        }
        fu_aot_sidecar_text(hex, so_path, text, sizeof text);
        if (write_file(tmp_side, text, err) != 0) goto done;
        if (chmod(tmp_side, 0644) != 0) {
            fu_fail(err, "aot: chmod %s: %s", tmp_side, strerror(errno));
            goto done;
        }
    }
    int lock = sidecar ? fu_aot_lock_dir(dir, LOCK_EX) : -1;
    int moved = rename(tmp_so, so_path) == 0;
    if (!moved) fu_fail(err, "aot: cannot move the library to %s: %s", so_path, strerror(errno));
    if (moved && sidecar && rename(tmp_side, side_path) != 0) {
        fu_fail(err, "aot: cannot move the library's sha256 to %s: %s", side_path, strerror(errno));
        unlink(so_path);
        moved = 0;
    }
    fu_aot_unlock_dir(lock);
    if (!moved) goto done;
    if (header_path && write_header(header_path, so_path, err) != 0) {
        unlink(so_path);
        goto done;
    }
    rc = 0;
done:
    if (have_tmpdir) {
        unlink(c_path);
        unlink(tmp_so);
        unlink(tmp_side);
        rmdir(tmpdir);
    }
    free(dir);
    free(tmpdir);
    free(c_path);
    free(tmp_so);
    free(tmp_side);
    free(side_path);
    free(lib_dir_flag);
    free(rpath_flag);
    free(output);
    return rc;
}

int fu_aot_build(const char *c_source, const char *so_path, const char *header_path, fu_err *err) {
    fu_progress *p = fu_progress_begin("building %s with gcc -O3", so_path);
    int rc = build(c_source, so_path, header_path, 0, NULL, err);
    fu_progress_end(p);
    return rc;
}

int fu_aot_build_embedded(const char *c_source, const char *so_path, const char *header_path,
                          const char *weights_image, fu_err *err) {
    fu_progress *p = fu_progress_begin("building %s with gcc -O3, its weights embedded", so_path);
    int rc = build(c_source, so_path, header_path, 0, weights_image, err);
    fu_progress_end(p);
    return rc;
}

int fu_aot_cache_build(const char *c_source, const char *so_path, fu_err *err) {
    fu_progress *p = fu_progress_begin("building %s with gcc -O3 (the build cache)", so_path);
    int rc = build(c_source, so_path, NULL, 1, NULL, err);
    fu_progress_end(p);
    return rc;
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
    /* A FIFO or device named *.so would block dlopen: regular files only. */
    int fd = fu_open_regular(so_path, "library", NULL, err);
    if (fd < 0) return -1;
    close(fd);
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
    /* A library built for another CPU (-march) would die of SIGILL. */
    void *isa = dlsym(h, "fusec_model_missing_isa");   /* optional: older libraries lack it */
    const char *(*missing_isa)(void) = NULL;
    memcpy(&missing_isa, &isa, sizeof isa);
    const char *missing = missing_isa ? missing_isa() : NULL;
    if (missing) {
        char what[32];
        fu_sanitize(missing, what, sizeof what);
        dlclose(h);
        return fu_fail(err, "%s: built for a CPU with %s, which this CPU lacks (build it here, or for older "
                            "machines with FUSEC_AOT_MARCH=x86-64-v3)", so_path, what);
    }
    memcpy(&out->run, &run, sizeof run);
    void *run_profiled = dlsym(h, "fusec_model_run_profiled");   /* optional: older libraries lack it */
    memcpy(&out->run_profiled, &run_profiled, sizeof run_profiled);
    void *weights = dlsym(h, "fusec_model_weights");   /* only with --embed-weights */
    memcpy(&out->weights_image, &weights, sizeof weights);
    out->meta = meta;
    out->meta_len = *meta_len;
    out->dl_handle = h;
    return 0;
}
