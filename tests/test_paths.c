/* A model stays in its folder, files are opened only when regular, no
 * message echoes bytes of a file that failed validation, a weights file
 * truncated under a loaded model is an error (not SIGBUS), and names are
 * escaped (docs/security.md, "Paths and files"). */
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <cmocka.h>
#include "testutil.h"

#include "../api/fusec.h"
#include "../ir/json_ir.h"
#include "../ir/mapguard.h"
#include "../ir/npy.h"
#include "../ir/weights.h"

static char root[64];        /* /tmp/fusec_paths_XXXXXX */
static char mdir[128];       /* root/m: the model folder */
static char outside[128];    /* root/out: a folder beside it */

#define N_W 4096             /* floats in each weights file: several pages */

static void path_in(char *buf, size_t n, const char *dir, const char *name) {
    snprintf(buf, n, "%s/%s", dir, name);
}

/* A safetensors file with tensor "w" [N_W] = 0.5 * i, header padded so the
 * data is aligned (the API maps it instead of copying). */
static void write_weights(const char *path) {
    char header[256];
    int len = snprintf(header, sizeof header,
                       "{\"w\": {\"dtype\": \"F32\", \"shape\": [%d], \"data_offsets\": [0, %d]}}", N_W, 4 * N_W);
    while (len % 8) header[len++] = ' ';
    header[len] = 0;
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t n = (uint64_t)len;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(n >> (8 * i));
    fwrite(len8, 1, 8, f);
    fputs(header, f);
    for (int i = 0; i < N_W; i++) {
        float v = 0.5f * (float)i;
        fwrite(&v, 4, 1, f);
    }
    fclose(f);
}

/* y = x + w, x and w [N_W] float32, w from the weights file `weights`;
 * written to mdir/<name>. */
static void write_model(const char *name, const char *weights, const char *input_name) {
    char path[256];
    path_in(path, sizeof path, mdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "{\"ir_version\": 1, \"name\": \"paths\", \"weights\": \"%s\",\n"
            " \"inputs\": [{\"name\": \"%s\", \"dtype\": \"float32\", \"shape\": [%d]}],\n"
            " \"outputs\": [{\"name\": \"y\", \"dtype\": \"float32\", \"shape\": [%d]}],\n"
            " \"initializers\": [{\"name\": \"w\", \"dtype\": \"float32\", \"shape\": [%d]}],\n"
            " \"nodes\": [{\"name\": \"add\", \"op\": \"Add\", \"inputs\": [\"%s\", \"w\"], \"outputs\": [\"y\"]}]}\n",
            weights, input_name, N_W, N_W, N_W, input_name);
    fclose(f);
}

static int setup(void **state) {
    (void)state;
    snprintf(root, sizeof root, "/tmp/fusec_paths_XXXXXX");
    if (!mkdtemp(root)) return -1;
    path_in(mdir, sizeof mdir, root, "m");
    path_in(outside, sizeof outside, root, "out");
    if (mkdir(mdir, 0755) || mkdir(outside, 0755)) return -1;
    char p[256];
    path_in(p, sizeof p, mdir, "w.safetensors");
    write_weights(p);
    path_in(p, sizeof p, mdir, "sub");
    mkdir(p, 0755);
    path_in(p, sizeof p, outside, "secret.safetensors");
    write_weights(p);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

/* Loads mdir/<name> (o: NULL for the defaults); returns the error ("" when
 * it loaded). */
static const char *load(const char *name, const fu_ir_opts *o) {
    static fu_err err;
    char path[256];
    path_in(path, sizeof path, mdir, name);
    memset(&err, 0, sizeof err);
    fu_graph *g = fu_ir_load_opts(path, o, &err);
    if (g) {
        fu_graph_free(g);
        return "";
    }
    assert_true(err.msg[0] != 0);
    return err.msg;
}

static void expect_error(const char *msg, const char *want) {
    if (!strstr(msg, want)) fail_msg("error \"%s\" does not contain \"%s\"", msg, want);
}

static void test_inside_loads(void **state) {
    (void)state;
    write_model("in.json", "w.safetensors", "x");
    assert_string_equal(load("in.json", NULL), "");
    write_model("in_dotdot.json", "sub/../w.safetensors", "x");  /* .. that stays inside */
    assert_string_equal(load("in_dotdot.json", NULL), "");
    char link[256];
    path_in(link, sizeof link, mdir, "inside_link.safetensors");
    assert_int_equal(symlink("w.safetensors", link), 0);         /* a symlink that stays inside */
    write_model("in_link.json", "inside_link.safetensors", "x");
    assert_string_equal(load("in_link.json", NULL), "");
}

static void test_dotdot_refused(void **state) {
    (void)state;
    write_model("dotdot.json", "../out/secret.safetensors", "x");
    expect_error(load("dotdot.json", NULL), "leads outside the model's folder");
    write_model("shadow.json", "../../../../../../../../etc/shadow", "x");
    const char *msg = load("shadow.json", NULL);
    expect_error(msg, "leads outside the model's folder");
    assert_null(strstr(msg, "header length"));  /* refused before a byte was read */
}

static void test_absolute_refused(void **state) {
    (void)state;
    char abs[256], model[512];
    path_in(abs, sizeof abs, mdir, "w.safetensors");  /* absolute even though it is inside */
    write_model("abs.json", abs, "x");
    expect_error(load("abs.json", NULL), "is absolute");
    write_model("abs2.json", "/etc/passwd", "x");
    expect_error(load("abs2.json", NULL), "is absolute");
    (void)model;
}

static void test_symlink_out_refused(void **state) {
    (void)state;
    char link[256];
    path_in(link, sizeof link, mdir, "link.safetensors");
    assert_int_equal(symlink("../out/secret.safetensors", link), 0);
    write_model("link.json", "link.safetensors", "x");
    expect_error(load("link.json", NULL), "leads outside the model's folder");
    /* a symlinked folder on the way out */
    path_in(link, sizeof link, mdir, "d");
    assert_int_equal(symlink(outside, link), 0);
    write_model("dirlink.json", "d/secret.safetensors", "x");
    expect_error(load("dirlink.json", NULL), "leads outside the model's folder");
}

/* The opt-in: fu_ir_opts, fusec_options. */
static void test_opt_in(void **state) {
    (void)state;
    fu_ir_opts allow = {.allow_external_weights = 1};
    char abs[256];
    path_in(abs, sizeof abs, outside, "secret.safetensors");
    write_model("ext_abs.json", abs, "x");
    write_model("ext_dotdot.json", "../out/secret.safetensors", "x");
    char link[256];
    path_in(link, sizeof link, mdir, "ext_link.safetensors");
    assert_int_equal(symlink(abs, link), 0);
    write_model("ext_link.json", "ext_link.safetensors", "x");
    const char *names[] = {"ext_abs.json", "ext_dotdot.json", "ext_link.json"};
    for (int i = 0; i < 3; i++) {
        assert_true(load(names[i], NULL)[0] != 0);
        assert_string_equal(load(names[i], &allow), "");
    }

    char model[256], err[512];
    path_in(model, sizeof model, mdir, "ext_dotdot.json");
    fusec_model *m = fusec_load(model, NULL, err, sizeof err);
    assert_null(m);
    expect_error(err, "leads outside the model's folder");
    fusec_options o = {.allow_external_weights = 1};
    m = fusec_load(model, &o, err, sizeof err);
    if (!m) fail_msg("opt-in load: %s", err);
    fusec_free(m);
}

/* A FIFO never blocks: weights, the model itself, an .npy input. alarm()
 * turns a hang into a failure. */
static void test_fifos(void **state) {
    (void)state;
    alarm(20);
    char fifo[256];
    path_in(fifo, sizeof fifo, mdir, "fifo.safetensors");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    write_model("fifo.json", "fifo.safetensors", "x");
    expect_error(load("fifo.json", NULL), "not a regular file (a FIFO)");
    fu_ir_opts allow = {.allow_external_weights = 1};
    expect_error(load("fifo.json", &allow), "not a regular file (a FIFO)");
    fu_err err = {0};
    assert_null(fu_weights_open(fifo, &err));
    expect_error(err.msg, "not a regular file");

    char npy[256];
    path_in(npy, sizeof npy, mdir, "fifo.npy");
    assert_int_equal(mkfifo(npy, 0600), 0);
    fu_array a;
    assert_int_equal(fu_npy_read(npy, &a, &err), -1);
    expect_error(err.msg, "not a regular file (a FIFO)");

    path_in(npy, sizeof npy, mdir, "fifo_model.json");
    assert_int_equal(mkfifo(npy, 0600), 0);
    expect_error(load("fifo_model.json", NULL), "not a regular file (a FIFO)");
    alarm(0);
}

/* A file that is not safetensors: the error says so and echoes nothing
 * derived from its bytes. */
static void test_no_echoed_bytes(void **state) {
    (void)state;
    const char *shadow = "root:*:20000:0:99999:7:::\ndaemon:*:20000:0:99999:7:::\n";
    char p[256];
    path_in(p, sizeof p, mdir, "shadow.safetensors");
    FILE *f = fopen(p, "wb");
    fputs(shadow, f);
    fclose(f);
    write_model("echo.json", "shadow.safetensors", "x");
    const char *msg = load("echo.json", NULL);
    expect_error(msg, "not a safetensors file");
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | (unsigned char)shadow[i];
    char num[32];
    snprintf(num, sizeof num, "%llu", (unsigned long long)n);
    assert_null(strstr(msg, num));
    assert_null(strstr(msg, "root:"));

    /* a length under the limit but past the end of the file */
    unsigned char fake[64] = {0};
    uint64_t len = 50000000;
    for (int i = 0; i < 8; i++) fake[i] = (unsigned char)(len >> (8 * i));
    path_in(p, sizeof p, mdir, "short.safetensors");
    f = fopen(p, "wb");
    fwrite(fake, 1, sizeof fake, f);
    fclose(f);
    write_model("short.json", "short.safetensors", "x");
    msg = load("short.json", NULL);
    expect_error(msg, "not a safetensors file (header length exceeds the file size 64)");
    assert_null(strstr(msg, "50000000"));
}

/* The weights file truncated under a loaded model: the run fails with an
 * error naming the file, the process lives, later runs fail too. */
static void test_truncated_while_loaded(void **state) {
    (void)state;
    char wpath[256], model[256], err[1024];
    path_in(wpath, sizeof wpath, mdir, "trunc.safetensors");
    write_weights(wpath);
    write_model("trunc.json", "trunc.safetensors", "x");
    path_in(model, sizeof model, mdir, "trunc.json");
    const char *profiles[] = {"bare", "fast"};
    for (int p = 0; p < 2; p++) {
        write_weights(wpath);
        fusec_options o = {.profile = profiles[p]};
        fusec_model *m = fusec_load(model, &o, err, sizeof err);
        if (!m) fail_msg("load: %s", err);
        static float x[N_W];
        int64_t shape[1] = {N_W};
        assert_int_equal(fusec_set_input(m, "x", FUSEC_FLOAT32, 1, shape, x), 0);
        assert_int_equal(fusec_run(m), 0);
        const void *y;
        assert_int_equal(fusec_get_output(m, "y", NULL, NULL, NULL, &y), 0);
        assert_true(((const float *)y)[N_W - 1] == 0.5f * (N_W - 1));

        assert_int_equal(truncate(wpath, 0), 0);
        assert_int_equal(fusec_run(m), -1);
        expect_error(fusec_last_error(m), "trunc.safetensors was truncated while the model was using it");
        assert_int_equal(fusec_run(m), -1);  /* the data is gone for good */
        expect_error(fusec_last_error(m), "load the model again");
        fusec_free(m);
    }
}

/* The forward's worker threads fault too: SIGBUS goes to the thread that
 * touched the page, so the guard must work on any thread. */
static void *read_last_page(void *arg) {
    const volatile unsigned char *p = arg;
    unsigned sum = 0;
    for (size_t i = 0; i < 4 * N_W; i += 512) sum += p[i];
    return (void *)(uintptr_t)sum;
}

static void test_truncated_on_a_worker_thread(void **state) {
    (void)state;
    char wpath[256];
    path_in(wpath, sizeof wpath, mdir, "thread.safetensors");
    write_weights(wpath);
    int fd = open(wpath, O_RDONLY);
    assert_true(fd >= 0);
    size_t size = (size_t)lseek(fd, 0, SEEK_END);
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    assert_true(map != MAP_FAILED);
    int slot = fu_mapguard_add(map, size);
    assert_true(slot >= 0);
    assert_int_equal(truncate(wpath, 0), 0);
    fu_mapguard_enter();
    pthread_t t;
    void *ret;
    assert_int_equal(pthread_create(&t, NULL, read_last_page, map), 0);
    assert_int_equal(pthread_join(t, &ret), 0);
    fu_mapguard_leave();
    assert_true(fu_mapguard_faulted(slot));
    assert_true(ret == NULL);  /* the thread read zeros and finished */
    fu_mapguard_remove(slot);
    munmap(map, size);
}

/* Names with control characters are escaped: the sanitiser, the escaper,
 * and the API's error messages. */
static void test_escaped_names(void **state) {
    (void)state;
    char buf[64];
    fu_sanitize("a\x1b[31m\nb", buf, sizeof buf);
    assert_string_equal(buf, "a\\x1b?31m\\nb");
    fu_escape("a\x1b[31m\nb\\\t\xc2\x9b", buf, sizeof buf);
    assert_string_equal(buf, "a\\x1b[31m\\nb\\\\\\t\\xc2\\x9b");
    fu_escape("ab\x1b", buf, 5);  /* an escape is never cut in half */
    assert_string_equal(buf, "ab");

    write_model("esc.json", "w.safetensors", "x\\u001b]0;owned\\u0007\\n");
    char model[256], err[512];
    path_in(model, sizeof model, mdir, "esc.json");
    fusec_model *m = fusec_load(model, NULL, err, sizeof err);
    if (!m) fail_msg("load: %s", err);
    assert_int_equal(fusec_run(m), -1);  /* input not set: the message names it */
    const char *msg = fusec_last_error(m);
    expect_error(msg, "input 'x\\x1b]0;owned\\x07\\n' is not set");
    for (const char *c = msg; *c; c++) assert_true((unsigned char)*c >= 0x20 && (unsigned char)*c < 0x7f);
    fusec_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inside_loads),
        cmocka_unit_test(test_dotdot_refused),
        cmocka_unit_test(test_absolute_refused),
        cmocka_unit_test(test_symlink_out_refused),
        cmocka_unit_test(test_opt_in),
        cmocka_unit_test(test_fifos),
        cmocka_unit_test(test_no_echoed_bytes),
        cmocka_unit_test(test_truncated_while_loaded),
        cmocka_unit_test(test_truncated_on_a_worker_thread),
        cmocka_unit_test(test_escaped_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
