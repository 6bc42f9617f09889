/* Packed weights in the build cache (api/packed_weights.c) through
 * the C API: a miss packs and writes the file, a hit maps it; a changed
 * weights file, a corrupt, truncated or foreign cache file, and two
 * processes building at once all end with correct results; an unwritable
 * cache packs into memory, and so does one others can write (a file
 * others can write is rebuilt, never mapped); temp files of dead packings
 * are removed. The model multiplies by three weights: f32
 * [N, K] (Transpose + MatMul), f32 [K, N] (plain MatMul) and bf16 [N, K]
 * (Cast + Transpose + MatMul), so every packing path is used; results are
 * checked against a float64 reference computed here. */
#include <dirent.h>
#include <setjmp.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <cmocka.h>
#include "testutil.h"
#include "../ir/ir.h"
#include "../ir/json_ir.h"
#include "../api/fusec.h"
#include "graph_builder.h"

extern char **environ;

/* W1 and W3 have more than 65536 elements, so constant folding leaves
 * their Transpose / Cast to the fusion rules instead of baking a copy. */
enum { M = 5, K1 = 256, N1 = 300, N2 = 256, N3 = 272 };

/* y = ((x W1^T) W2) W3^T, the weights from w.safetensors (write_weights). */
static tb_graph *model(void) {
    tb_graph *b = tb_new("packed");
    int64_t m = tb_symbol(b, "m", 8);
    int x = tb_input(b, "x", FU_F32, TB_DIMS(m, 256));
    tb_weights_file(b, "w.safetensors");
    int w1 = tb_external(b, "W1", FU_F32, TB_DIMS(300, 256));
    int w2 = tb_external(b, "W2", FU_F32, TB_DIMS(300, 256));
    int w3 = tb_external(b, "W3", FU_BF16, TB_DIMS(272, 256));
    int w1t = tb_name(b, tb_attr_ints(b, tb_op(b, "Transpose", "W1t", w1), "perm", TB_INTS(1, 0)), "t1");
    int h1 = tb_name(b, tb_op(b, "MatMul", "h1", x, w1t), "mm1");
    int h2 = tb_name(b, tb_op(b, "MatMul", "h2", h1, w2), "mm2");
    int w3f = tb_name(b, tb_attr_int(b, tb_op(b, "Cast", "W3f", w3), "to", 1), "c3");
    int w3t = tb_name(b, tb_attr_ints(b, tb_op(b, "Transpose", "W3t", w3f), "perm", TB_INTS(1, 0)), "t3");
    tb_output_decl(b, tb_name(b, tb_op(b, "MatMul", "y", h2, w3t), "mm3"), FU_F32, TB_DIMS(m, 272));
    return b;
}

static char dir[256], model_path[300], weights_path[300];
static float W1[N1 * K1], W2[N1 * N2], W3[N3 * N2];   /* W3 holds bf16-exact values */
static float X[M * K1];

static float value(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 65536.0f - 0.5f;
}

/* The weights and the input from `seed` (in memory only). */
static void fill_values(unsigned seed, uint16_t *w3) {
    for (int i = 0; i < N1 * K1; i++) W1[i] = value(&seed);
    for (int i = 0; i < N1 * N2; i++) W2[i] = value(&seed);
    for (int i = 0; i < N3 * N2; i++) {
        w3[i] = fu_f32_to_bf16(value(&seed));
        W3[i] = fu_bf16_to_f32(w3[i]);
    }
    unsigned xs = 99;
    for (int i = 0; i < M * K1; i++) X[i] = value(&xs);
}

static void set_paths(const char *d) {
    snprintf(dir, sizeof dir, "%s", d);
    snprintf(model_path, sizeof model_path, "%s/model.json", dir);
    snprintf(weights_path, sizeof weights_path, "%s/w.safetensors", dir);
}

/* Writes the weights file from `seed`; W2 starts 2 bytes into the data
 * area (after a 1-element tensor), so packing reads a misaligned source. */
static void write_weights(unsigned seed) {
    static uint16_t w3[N3 * N2];
    fill_values(seed, w3);
    size_t s1 = sizeof W1, s2 = sizeof W2, s3 = sizeof w3;
    char header[512];
    int n = snprintf(header, sizeof header,
                     "{\"pad\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]},"
                     "\"W2\":{\"dtype\":\"F32\",\"shape\":[300,256],\"data_offsets\":[2,%zu]},"
                     "\"W1\":{\"dtype\":\"F32\",\"shape\":[300,256],\"data_offsets\":[%zu,%zu]},"
                     "\"W3\":{\"dtype\":\"BF16\",\"shape\":[272,256],\"data_offsets\":[%zu,%zu]}}",
                     2 + s2, 2 + s2, 2 + s2 + s1, 2 + s2 + s1, 2 + s2 + s1 + s3);
    while (n % 8) header[n++] = ' ';
    uint64_t len = (uint64_t)n;
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s.tmp", weights_path);
    FILE *f = fopen(tmp, "wb");
    assert_non_null(f);
    fwrite(&len, 8, 1, f);
    fwrite(header, 1, (size_t)n, f);
    fwrite("\0\0", 1, 2, f);
    fwrite(W2, s2, 1, f);
    fwrite(W1, s1, 1, f);
    fwrite(w3, s3, 1, f);
    fclose(f);
    assert_int_equal(rename(tmp, weights_path), 0);
}

/* y = ((x W1^T) W2) W3^T in float64, optionally with every operand of
 * every product rounded to bfloat16 (precision bf16); mag[i] = sum of the
 * |products| of y[i], the scale of its rounding error. */
static void reference(double *y, double *mag, int round) {
#define R(v) (round ? (double)fu_bf16_to_f32(fu_f32_to_bf16((float)(v))) : (double)(v))
    static double h1[M * N1], h2[M * N2];
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N1; n++) {
            double s = 0;
            for (int k = 0; k < K1; k++) s += R(X[m * K1 + k]) * R(W1[n * K1 + k]);
            h1[m * N1 + n] = (float)s;
        }
        for (int n = 0; n < N2; n++) {
            double s = 0;
            for (int k = 0; k < N1; k++) s += R(h1[m * N1 + k]) * R(W2[k * N2 + n]);
            h2[m * N2 + n] = (float)s;
        }
        for (int n = 0; n < N3; n++) {
            double s = 0, a = 0;
            for (int k = 0; k < N2; k++) {
                s += R(h2[m * N2 + k]) * W3[n * N2 + k];
                a += fabs(R(h2[m * N2 + k]) * W3[n * N2 + k]);
            }
            y[m * N3 + n] = s;
            if (mag) mag[m * N3 + n] = a;
        }
    }
#undef R
}

/* Loads with the cache in `cache`, runs, checks against the reference and
 * returns the load info (path copied into path_out if given). */
static void load_and_check(const char *cache, const char *precision, fusec_load_info *info_out, char *path_out) {
    fusec_options o = {.profile = "fast", .backend = "jit", .cache_dir = cache, .precision = precision};
    char err[FU_ERR_LEN];
    fusec_model *m = fusec_load(model_path, &o, err, sizeof err);
    if (!m) fail_msg("fusec_load: %s", err);
    int64_t shape[2] = {M, K1};
    assert_int_equal(fusec_set_input(m, "x", FUSEC_FLOAT32, 2, shape, X), 0);
    if (fusec_run(m) != 0) fail_msg("run: %s", fusec_last_error(m));
    const void *data;
    fusec_dtype dt;
    int rank;
    int64_t oshape[8];
    assert_int_equal(fusec_get_output(m, "y", &dt, &rank, oshape, &data), 0);
    static double want[M * N3], mag[M * N3];
    int bf16 = precision && !strcmp(precision, "bf16");
    reference(want, mag, bf16);
    const float *y = data;
    for (int i = 0; i < M * N3; i++) {
        double tol = bf16 ? 2e-2 * (1 + mag[i]) : 1e-5 * (1 + mag[i]);
        if (!(fabs(y[i] - want[i]) <= tol)) fail_msg("y[%d] = %.9g, want %.9g (%s)", i, y[i], want[i], precision ? precision : "f32");
    }
    fusec_load_info info;
    assert_int_equal(fusec_get_load_info(m, &info), 0);
    assert_int_equal(info.packed_weights, 3);
    assert_true(info.packed_bytes > 0);
    if (path_out) snprintf(path_out, 4096, "%s", info.packed_path);
    info.packed_path = NULL;   /* owned by the model, freed below */
    info.gemm_variant = NULL;
    if (info_out) *info_out = info;
    fusec_free(m);
}

/* Files in `d` whose names start with `prefix`. */
static int count_files(const char *d, const char *prefix) {
    DIR *dh = opendir(d);
    if (!dh) return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(dh));) n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(dh);
    return n;
}

static int setup(void **state) {
    (void)state;
    char d[256];
    snprintf(d, sizeof d, "/tmp/fusec_packed_%d", (int)getpid());
    set_paths(d);
    mkdir(dir, 0777);
    tb_graph *b = model();
    tb_save_to(b, model_path);
    tb_free(b);
    write_weights(1);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_miss_then_hit(void **state) {
    (void)state;
    char cache[300], path1[4096], path2[4096];
    snprintf(cache, sizeof cache, "%s/cache_hit", dir);
    fusec_load_info info;
    load_and_check(cache, NULL, &info, path1);
    assert_int_equal(info.packed_built, 1);
    assert_int_equal(info.packed_in_memory, 0);
    assert_int_equal(count_files(cache, "packed-"), 1);
    load_and_check(cache, NULL, &info, path2);
    assert_int_equal(info.packed_built, 0);
    assert_string_equal(path1, path2);
    assert_int_equal(count_files(cache, ".packed-"), 0);   /* no temp files left */
}

static void test_weights_change_invalidates(void **state) {
    (void)state;
    char cache[300], before[4096], after[4096];
    snprintf(cache, sizeof cache, "%s/cache_change", dir);
    fusec_load_info info;
    load_and_check(cache, NULL, &info, before);
    write_weights(2);   /* new values, same names and shapes */
    load_and_check(cache, NULL, &info, after);   /* checks against the new values */
    assert_int_equal(info.packed_built, 1);
    assert_string_not_equal(before, after);
    /* touching the file (same bytes, new mtime) is a change too */
    struct timespec times[2] = {{2000000, 0}, {2000000, 0}};
    assert_int_equal(utimensat(AT_FDCWD, weights_path, times, 0), 0);
    load_and_check(cache, NULL, &info, NULL);
    assert_int_equal(info.packed_built, 1);
    write_weights(1);
}

/* Damages the cache file with `how`, then loads: rebuilt, correct. */
static void damage_and_reload(const char *cache, const char *path, const char *how) {
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    if (!strcmp(how, "flip a data byte")) {
        fseek(f, st.st_size - 100, SEEK_SET);
        int c = fgetc(f);
        fseek(f, st.st_size - 100, SEEK_SET);
        fputc(c ^ 0x40, f);
    } else if (!strcmp(how, "garbage header")) {
        fseek(f, 0, SEEK_SET);
        fputs("not a packed file", f);
    } else if (!strcmp(how, "flip an entry")) {
        fseek(f, 100, SEEK_SET);   /* inside the entry table */
        int c = fgetc(f);
        fseek(f, 100, SEEK_SET);
        fputc(c ^ 1, f);
    }
    fclose(f);
    if (!strcmp(how, "truncate")) assert_int_equal(truncate(path, st.st_size / 2), 0);
    if (!strcmp(how, "empty")) assert_int_equal(truncate(path, 0), 0);
    fusec_load_info info;
    char again[4096];
    load_and_check(cache, NULL, &info, again);
    if (info.packed_built != 1) fail_msg("a cache file with '%s' was trusted", how);
    assert_string_equal(again, path);
    assert_int_equal(count_files(cache, "packed-"), 1);
    load_and_check(cache, NULL, &info, NULL);
    assert_int_equal(info.packed_built, 0);   /* the rebuilt file is good */
}

static void test_corrupt_file_is_rebuilt(void **state) {
    (void)state;
    char cache[300], path[4096];
    snprintf(cache, sizeof cache, "%s/cache_corrupt", dir);
    load_and_check(cache, NULL, NULL, path);
    static const char *const hows[] = {"flip a data byte", "garbage header", "flip an entry", "truncate", "empty"};
    for (size_t i = 0; i < sizeof hows / sizeof hows[0]; i++) damage_and_reload(cache, path, hows[i]);
}

/* This binary run as `test_packed_weights --load DIR CACHE` (the files
 * written with seed 1): loads once, exits 0 if the result is correct. */
static int child_load(const char *d, const char *cache) {
    set_paths(d);
    static uint16_t w3[N3 * N2];
    fill_values(1, w3);
    fusec_options o = {.profile = "fast", .backend = "jit", .cache_dir = cache};
    char err[FU_ERR_LEN];
    fusec_model *m = fusec_load(model_path, &o, err, sizeof err);
    if (!m) {
        fprintf(stderr, "child: %s\n", err);
        return 1;
    }
    int64_t shape[2] = {M, K1};
    const void *data;
    static double want[M * N3], mag[M * N3];
    reference(want, mag, 0);
    int bad = fusec_set_input(m, "x", FUSEC_FLOAT32, 2, shape, X) || fusec_run(m) ||
              fusec_get_output(m, "y", NULL, NULL, NULL, &data);
    for (int i = 0; !bad && i < M * N3; i++) bad = fabs(((const float *)data)[i] - want[i]) > 1e-5 * (1 + mag[i]);
    fusec_free(m);
    return bad;
}

static void test_two_processes_build_at_once(void **state) {
    (void)state;
    char cache[300];
    snprintf(cache, sizeof cache, "%s/cache_race", dir);
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(n > 0);
    self[n] = 0;
    for (int round = 0; round < 3; round++) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache);
        assert_int_equal(system(cmd), 0);
        pid_t pids[2];
        for (int i = 0; i < 2; i++) {
            char *argv[] = {self, "--load", dir, cache, NULL};
            assert_int_equal(posix_spawn(&pids[i], self, NULL, NULL, argv, environ), 0);
        }
        for (int i = 0; i < 2; i++) {
            int status;
            assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
            assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        assert_int_equal(count_files(cache, "packed-"), 1);
        assert_int_equal(count_files(cache, ".packed-"), 0);
    }
}

static void test_unwritable_cache_packs_in_memory(void **state) {
    (void)state;
    char cache[300];
    snprintf(cache, sizeof cache, "%s/model.json/cache", dir);   /* under a regular file */
    fusec_load_info info;
    char path[4096];
    load_and_check(cache, NULL, &info, path);
    assert_int_equal(info.packed_in_memory, 1);
    assert_string_equal(path, "");
}

/* A valid cache file that others could change under the mapping is packed
 * again (replacing it), never mapped. */
static void test_shared_writable_file_is_not_trusted(void **state) {
    (void)state;
    char cache[300], path[4096];
    snprintf(cache, sizeof cache, "%s/cache_shared_file", dir);
    load_and_check(cache, NULL, NULL, path);
    static const mode_t modes[] = {0664, 0646};
    fusec_load_info info;
    struct stat st;
    for (int i = 0; i < 2 + (geteuid() == 0); i++) {
        if (i < 2) assert_int_equal(chmod(path, modes[i]), 0);
        else assert_int_equal(chown(path, 65534, 65534), 0);   /* another user's (only root can) */
        load_and_check(cache, NULL, &info, NULL);
        assert_int_equal(info.packed_built, 1);
        assert_int_equal(info.packed_in_memory, 0);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 022, 0);
        assert_int_equal(st.st_uid, geteuid());
        load_and_check(cache, NULL, &info, NULL);
        assert_int_equal(info.packed_built, 0);   /* the new file is trusted */
    }
}

/* A cache directory others can write is neither read nor written. */
static void test_shared_writable_dir_packs_in_memory(void **state) {
    (void)state;
    char cache[300], path[4096];
    snprintf(cache, sizeof cache, "%s/cache_shared_dir", dir);
    assert_int_equal(mkdir(cache, 0700), 0);
    assert_int_equal(chmod(cache, 0777), 0);
    fusec_load_info info;
    load_and_check(cache, NULL, &info, path);
    assert_int_equal(info.packed_in_memory, 1);
    assert_string_equal(path, "");
    assert_int_equal(count_files(cache, "packed-") + count_files(cache, ".packed-"), 0);
    /* A good file in a directory that became shared is not read either. */
    assert_int_equal(chmod(cache, 0755), 0);
    load_and_check(cache, NULL, &info, path);
    assert_int_equal(info.packed_in_memory, 0);
    assert_int_equal(chmod(cache, 0775), 0);
    load_and_check(cache, NULL, &info, path);
    assert_int_equal(info.packed_in_memory, 1);
    assert_int_equal(info.packed_built, 1);
}

/* A packing killed on the way leaves .packed-<pid>-XXXXXX: the next packing
 * in that cache removes it once its pid is gone. */
static void test_dead_packings_temp_files_are_removed(void **state) {
    (void)state;
    char cache[300], dead[400], live[400];
    snprintf(cache, sizeof cache, "%s/cache_stale", dir);
    assert_int_equal(mkdir(cache, 0755), 0);
    pid_t pid;
    char *argv[] = {"true", NULL};
    assert_int_equal(posix_spawnp(&pid, "true", NULL, NULL, argv, environ), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);   /* pid is dead now */
    snprintf(dead, sizeof dead, "%s/.packed-%d-Ab12Cd", cache, (int)pid);
    snprintf(live, sizeof live, "%s/.packed-%d-Xy34Zw", cache, (int)getpid());
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(i ? live : dead, "w");
        assert_non_null(f);
        fputs("half a packed file", f);
        fclose(f);
    }
    load_and_check(cache, NULL, NULL, NULL);
    assert_int_not_equal(access(dead, F_OK), 0);
    assert_int_equal(access(live, F_OK), 0);   /* its packer (this process) is alive */
}

static void test_precision_bf16(void **state) {
    (void)state;
    char cache[300], f32_path[4096], bf16_path[4096];
    snprintf(cache, sizeof cache, "%s/cache_precision", dir);
    load_and_check(cache, NULL, NULL, f32_path);
    fusec_load_info info;
    load_and_check(cache, "bf16", &info, bf16_path);
    assert_string_not_equal(f32_path, bf16_path);   /* another layout, another file */
    /* every copy is bfloat16: about half the bytes of the float32 ones */
    struct stat a, b;
    assert_int_equal(stat(f32_path, &a), 0);
    assert_int_equal(stat(bf16_path, &b), 0);
    assert_true(b.st_size < a.st_size);
    char err[FU_ERR_LEN];
    fusec_options bad = {.profile = "bare", .backend = "jit", .cache_dir = cache, .precision = "bf16"};
    assert_null(fusec_load(model_path, &bad, err, sizeof err));
    assert_non_null(strstr(err, "fast profile"));
    fusec_options unknown = {.cache_dir = cache, .precision = "fp8"};
    assert_null(fusec_load(model_path, &unknown, err, sizeof err));
    assert_non_null(strstr(err, "unknown precision"));
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--load")) return child_load(argv[2], argv[3]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_miss_then_hit),
        cmocka_unit_test(test_weights_change_invalidates),
        cmocka_unit_test(test_corrupt_file_is_rebuilt),
        cmocka_unit_test(test_two_processes_build_at_once),
        cmocka_unit_test(test_unwritable_cache_packs_in_memory),
        cmocka_unit_test(test_shared_writable_file_is_not_trusted),
        cmocka_unit_test(test_shared_writable_dir_packs_in_memory),
        cmocka_unit_test(test_dead_packings_temp_files_are_removed),
        cmocka_unit_test(test_precision_bf16),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
