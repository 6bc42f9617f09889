/* The AOT build cache can't be planted (compiler/aot_cache.c, docs/security.md):
 * a library in the cache is loaded only after its sha256 matches the
 * sidecar its build wrote and it, its sidecar and the cache directory are
 * private (owned by us, not group- or other-writable); a planted, garbage,
 * empty or shared-writable entry is rebuilt and never dlopen'ed; a
 * shared-writable or symlinked cache directory is refused with a clear
 * error; build folders of dead builders are removed by the next build; and
 * two processes building one model end with one good library. */
#include <dirent.h>
#include <setjmp.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <cmocka.h>
#include "testutil.h"

#include "../ir/ir.h"
#include "../ir/json_ir.h"
#include "../api/fusec.h"
#include "graph_builder.h"

extern char **environ;

static char temp_dir[256], model_path[300], marker[300], planted_so[300];

/* z = x * 3 - 1, x [5]. */
static void write_model(const char *path) {
    tb_graph *b = tb_new("affine");
    int x = tb_input(b, "x", FU_F32, TB_DIMS(5));
    int t = tb_name(b, tb_op(b, "Mul", "t", x, tb_scalar_f32(b, "three", 3)), "mul");
    tb_output_decl(b, tb_name(b, tb_op(b, "Sub", "z", t, tb_scalar_f32(b, "one", 1)), "sub"), FU_F32, TB_DIMS(5));
    tb_save_to(b, path);
    tb_free(b);
}

/* Loads model_path with the AOT back end and the cache in `cache`; runs it
 * and checks the result. Returns 0, or -1 with the load error in err. */
static int load_aot(const char *cache, char *err, size_t errlen) {
    fusec_options o = {.profile = "fast", .backend = "aot", .cache_dir = cache};
    fusec_model *m = fusec_load(model_path, &o, err, errlen);
    if (!m) return -1;
    const float x[5] = {0, 1, 2, -1, 0.5f};
    int64_t shape[1] = {5};
    assert_int_equal(fusec_set_input(m, "x", FUSEC_FLOAT32, 1, shape, x), 0);
    if (fusec_run(m) != 0) fail_msg("run: %s", fusec_last_error(m));
    const void *data;
    assert_int_equal(fusec_get_output(m, "z", NULL, NULL, NULL, &data), 0);
    const float *z = data;
    for (int i = 0; i < 5; i++) assert_true(fabsf(z[i] - (x[i] * 3 - 1)) <= 1e-6f);
    fusec_free(m);
    return 0;
}

static void must_load(const char *cache) {
    char err[FU_ERR_LEN];
    if (load_aot(cache, err, sizeof err) != 0) fail_msg("fusec_load (aot): %s", err);
}

/* Names in `d` ending with `suffix` (or starting with it, prefix = 1); the
 * last match's full path goes to `path` when given. */
static int count_names(const char *d, const char *affix, int prefix, char *path, size_t len) {
    DIR *dh = opendir(d);
    if (!dh) return 0;
    int n = 0;
    size_t k = strlen(affix);
    for (struct dirent *e; (e = readdir(dh));) {
        size_t l = strlen(e->d_name);
        int hit = prefix ? strncmp(e->d_name, affix, k) == 0 : (l > k && strcmp(e->d_name + l - k, affix) == 0);
        if (hit && path) snprintf(path, len, "%s/%s", d, e->d_name);
        n += hit;
    }
    closedir(dh);
    return n;
}

/* The one library in the cache (after a load). */
static void entry_path(const char *cache, char *path, size_t len) {
    assert_int_equal(count_names(cache, ".so", 0, path, len), 1);
}

static void run_cmd(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (system(cmd) != 0) fail_msg("command failed: %s", cmd);
}

static void copy_file(const char *from, const char *to) {
    run_cmd("cp '%s' '%s'", from, to);
}

static int file_exists(const char *path) {
    return access(path, F_OK) == 0;
}

/* The entry's file name in a fresh cache: the key does not depend on the
 * cache directory, so it is the name a first build in another cache gets. */
static void name_in(const char *cache, char *path, size_t len) {
    char probe[300], built[600];
    snprintf(probe, sizeof probe, "%s/probe_cache", temp_dir);
    if (!file_exists(probe)) must_load(probe);
    entry_path(probe, built, sizeof built);
    snprintf(path, len, "%s/%s", cache, strrchr(built, '/') + 1);
}

static int setup(void **state) {
    (void)state;
    snprintf(temp_dir, sizeof temp_dir, "/tmp/fusec_aot_cache_XXXXXX");
    if (!mkdtemp(temp_dir)) return -1;
    snprintf(model_path, sizeof model_path, "%s/affine.json", temp_dir);
    write_model(model_path);
    /* A library whose constructor leaves a marker file: what an attacker
     * would plant under the key's name. */
    snprintf(marker, sizeof marker, "%s/PLANTED_CODE_RAN", temp_dir);
    snprintf(planted_so, sizeof planted_so, "%s/planted.so", temp_dir);
    char src[300];
    snprintf(src, sizeof src, "%s/planted.c", temp_dir);
    FILE *f = fopen(src, "w");
    if (!f) return -1;
    fprintf(f,
            "#include <stdio.h>\n"
            "__attribute__((constructor)) static void planted(void) {\n"
            "    FILE *f = fopen(\"%s\", \"w\");\n"
            "    if (f) fclose(f);\n"
            "}\n"
            "int fusec_model_run(void) { return 0; }\n",
            marker);
    fclose(f);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "gcc -shared -fPIC -o '%s' '%s'", planted_so, src);
    return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[700];
    snprintf(cmd, sizeof cmd, "chmod -R u+rwx '%s' 2>/dev/null; rm -rf '%s'", temp_dir, temp_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A fresh cache directory path (not created). */
static void fresh_cache(char *cache, size_t len, const char *name) {
    snprintf(cache, len, "%s/%s", temp_dir, name);
    run_cmd("rm -rf '%s'", cache);
}

/* The entry is a real build again: loads, and is not the planted file. */
static void assert_rebuilt(const char *entry) {
    assert_false(file_exists(marker));
    run_cmd("! cmp -s '%s' '%s'", entry, planted_so);
    struct stat st;
    assert_int_equal(stat(entry, &st), 0);
    assert_int_equal(st.st_mode & 022, 0);
    assert_int_equal(st.st_uid, geteuid());
}

static void test_planted_library_is_never_loaded(void **state) {
    (void)state;
    char cache[300], entry[600];
    /* Planted before the first build (no sidecar at all). */
    fresh_cache(cache, sizeof cache, "cache_planted_first");
    assert_int_equal(mkdir(cache, 0755), 0);
    name_in(cache, entry, sizeof entry);
    copy_file(planted_so, entry);
    must_load(cache);
    assert_rebuilt(entry);
    must_load(cache);   /* and the rebuilt entry is a hit */
    assert_false(file_exists(marker));

    /* Planted over a good entry (its sidecar left as it was). */
    fresh_cache(cache, sizeof cache, "cache_planted_over");
    must_load(cache);
    entry_path(cache, entry, sizeof entry);
    copy_file(planted_so, entry);
    must_load(cache);
    assert_rebuilt(entry);
}

static void test_garbage_or_empty_entry_is_rebuilt(void **state) {
    (void)state;
    static const char *const contents[] = {"", "this is not an ELF file\n", "\177ELF"};
    for (size_t i = 0; i < sizeof contents / sizeof contents[0]; i++) {
        char cache[300], entry[600];
        fresh_cache(cache, sizeof cache, "cache_garbage");
        must_load(cache);
        entry_path(cache, entry, sizeof entry);
        FILE *f = fopen(entry, "w");
        assert_non_null(f);
        fputs(contents[i], f);
        fclose(f);
        must_load(cache);
        struct stat st;
        assert_int_equal(stat(entry, &st), 0);
        assert_true(st.st_size > 1000);
        must_load(cache);
        /* The same with the sidecar gone or garbage too. */
        f = fopen(entry, "w");
        assert_non_null(f);
        fputs(contents[i], f);
        fclose(f);
        run_cmd("echo nonsense > '%s.sha256'", entry);
        must_load(cache);
        assert_int_equal(stat(entry, &st), 0);
        assert_true(st.st_size > 1000);
    }
}

/* A planted library with a sidecar that matches it: only its mode or its
 * owner keeps it from being trusted. */
static void plant_with_sidecar(const char *entry) {
    copy_file(planted_so, entry);
    char *base = strrchr(entry, '/') + 1;
    run_cmd("cd \"$(dirname '%s')\" && printf '%%s  %%s\\n' \"$(sha256sum < '%s' | cut -c1-64)\" '%s' > '%s.sha256'",
            entry, planted_so, base, entry);
}

static void test_shared_writable_entry_is_not_trusted(void **state) {
    (void)state;
    char cache[300], entry[600];
    fresh_cache(cache, sizeof cache, "cache_mode");
    must_load(cache);
    entry_path(cache, entry, sizeof entry);
    static const mode_t modes[] = {0775, 0757};
    for (size_t i = 0; i < 2; i++) {
        plant_with_sidecar(entry);
        assert_int_equal(chmod(entry, modes[i]), 0);
        must_load(cache);
        assert_rebuilt(entry);
    }
    /* A group-writable sidecar beside the planted library. */
    plant_with_sidecar(entry);
    char sidecar[700];
    snprintf(sidecar, sizeof sidecar, "%s.sha256", entry);
    assert_int_equal(chmod(entry, 0755), 0);
    assert_int_equal(chmod(sidecar, 0666), 0);
    must_load(cache);
    assert_rebuilt(entry);
    /* Owned by another user (only root can make one). */
    if (geteuid() == 0) {
        plant_with_sidecar(entry);
        assert_int_equal(chmod(entry, 0755), 0);
        assert_int_equal(chown(entry, 65534, 65534), 0);
        must_load(cache);
        assert_rebuilt(entry);
    }
}

static void test_shared_writable_cache_dir_is_refused(void **state) {
    (void)state;
    char cache[300], err[FU_ERR_LEN];
    static const mode_t modes[] = {0775, 0757, 01777};
    for (size_t i = 0; i < 3; i++) {
        fresh_cache(cache, sizeof cache, "cache_shared");
        assert_int_equal(mkdir(cache, 0700), 0);
        assert_int_equal(chmod(cache, modes[i]), 0);
        assert_int_equal(load_aot(cache, err, sizeof err), -1);
        if (!strstr(err, cache) || !strstr(err, "writable by") || !strstr(err, "chmod go-w"))
            fail_msg("unclear error: %s", err);
        assert_int_equal(count_names(cache, "", 1, NULL, 0), 2);   /* nothing written: . and .. */
    }
    /* A symlink to a private directory is refused too. */
    char target[300];
    fresh_cache(target, sizeof target, "cache_target");
    fresh_cache(cache, sizeof cache, "cache_link");
    assert_int_equal(mkdir(target, 0700), 0);
    assert_int_equal(symlink(target, cache), 0);
    assert_int_equal(load_aot(cache, err, sizeof err), -1);
    if (!strstr(err, cache) || !strstr(err, "symbolic link")) fail_msg("unclear error: %s", err);
    assert_int_equal(unlink(cache), 0);
    /* Another user's directory (only root can make one). */
    if (geteuid() == 0) {
        assert_int_equal(chown(target, 65534, 65534), 0);
        assert_int_equal(load_aot(target, err, sizeof err), -1);
        if (!strstr(err, target) || !strstr(err, "owned by uid 65534")) fail_msg("unclear error: %s", err);
    }
    /* A directory fusec creates is private even under a permissive umask. */
    fresh_cache(cache, sizeof cache, "cache_umask");
    mode_t old = umask(0);
    must_load(cache);
    umask(old);
    struct stat st;
    assert_int_equal(stat(cache, &st), 0);
    assert_int_equal(st.st_mode & 022, 0);
}

/* A pid that is not running: a child that has exited and been reaped. */
static pid_t dead_pid(void) {
    pid_t pid;
    char *argv[] = {"true", NULL};
    assert_int_equal(posix_spawnp(&pid, "true", NULL, NULL, argv, environ), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return pid;
}

static void test_dead_builders_folders_are_removed(void **state) {
    (void)state;
    char cache[300], dead[400], live[400], old[400];
    fresh_cache(cache, sizeof cache, "cache_stale");
    assert_int_equal(mkdir(cache, 0755), 0);
    snprintf(dead, sizeof dead, "%s/.fusec-build-%d-Ab12Cd", cache, (int)dead_pid());
    snprintf(live, sizeof live, "%s/.fusec-build-%d-Xy34Zw", cache, (int)getpid());
    snprintf(old, sizeof old, "%s/.fusec-build-Qq9Rr8", cache);   /* an older fusec's name, no pid */
    assert_int_equal(mkdir(dead, 0700), 0);
    assert_int_equal(mkdir(live, 0700), 0);
    assert_int_equal(mkdir(old, 0700), 0);
    run_cmd("echo 'int x;' > '%s/model.c' && cp '%s' '%s/model.so'", dead, planted_so, dead);
    run_cmd("echo 'int x;' > '%s/model.c' && touch -d '2 days ago' '%s'", old, old);
    must_load(cache);
    assert_false(file_exists(dead));
    assert_false(file_exists(old));
    assert_true(file_exists(live));   /* its builder (this process) is alive */
    assert_false(file_exists(marker));
}

/* This binary run as `test_aot_cache --load MODEL CACHE`: one AOT load. */
static int child_load(const char *model, const char *cache) {
    snprintf(model_path, sizeof model_path, "%s", model);
    char err[FU_ERR_LEN];
    if (load_aot(cache, err, sizeof err) != 0) {
        fprintf(stderr, "child: %s\n", err);
        return 1;
    }
    return 0;
}

static void test_two_processes_build_one_library(void **state) {
    (void)state;
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(n > 0);
    self[n] = 0;
    for (int round = 0; round < 3; round++) {
        char cache[300], entry[600];
        fresh_cache(cache, sizeof cache, "cache_race");
        pid_t pids[2];
        for (int i = 0; i < 2; i++) {
            char *argv[] = {self, "--load", model_path, cache, NULL};
            assert_int_equal(posix_spawn(&pids[i], self, NULL, NULL, argv, environ), 0);
        }
        for (int i = 0; i < 2; i++) {
            int status;
            assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
            assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        entry_path(cache, entry, sizeof entry);
        assert_int_equal(count_names(cache, ".so.sha256", 0, NULL, 0), 1);
        assert_int_equal(count_names(cache, ".fusec-build-", 1, NULL, 0), 0);
        run_cmd("cd '%s' && sha256sum --quiet -c \"$(basename '%s').sha256\"", cache, entry);
        must_load(cache);
    }
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--load")) return child_load(argv[2], argv[3]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_planted_library_is_never_loaded),
        cmocka_unit_test(test_garbage_or_empty_entry_is_rebuilt),
        cmocka_unit_test(test_shared_writable_entry_is_not_trusted),
        cmocka_unit_test(test_shared_writable_cache_dir_is_refused),
        cmocka_unit_test(test_dead_builders_folders_are_removed),
        cmocka_unit_test(test_two_processes_build_one_library),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
