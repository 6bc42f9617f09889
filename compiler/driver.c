/* The compile driver (compiler/driver.h). */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <unistd.h>
#include "driver.h"
#include "../ir/safetensors_write.h"
#include "../ir/json_ir.h"
#include "../ir/mapguard.h"
#include "../ir/weights.h"
#include "../ops/infer.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int fu_backend_parse(const char *s, fu_target *out) {
    if (s && strcmp(s, "jit") == 0) *out = FU_TARGET_JIT;
    else if (s && strcmp(s, "aot") == 0) *out = FU_TARGET_AOT;
    else return -1;
    return 0;
}

/* Back-end errors name the model they were compiling. */
static int backend_fail(const char *path, fu_err *err) {
    fu_err inner = *err;
    return fu_fail(err, "%s: %s", path, inner.msg);
}

/* Hex sha256 of a file's bytes. */
static int file_sha256(const char *path, char hex[65], fu_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return fu_fail(err, "%s: cannot read: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
    char buf[65536];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, f)) > 0) ok = EVP_DigestUpdate(ctx, buf, n) == 1;
    ok = ok && !ferror(f);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    ok = ok && EVP_DigestFinal_ex(ctx, md, &md_len) == 1 && md_len >= 32;
    EVP_MD_CTX_free(ctx);
    fclose(f);
    if (!ok) return fu_fail(err, "%s: cannot hash the model file", path);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}

static fu_pass_opts pass_opts(const fu_compile_opts *o) {
    return (fu_pass_opts){.profile = o->profile,
                          .verbose = o->verbose,
                          .fusion_log = o->fusion_log,
                          .precision = o->precision,
                          .evaluate = fu_evaluate_graph};
}

/* Passes (up to stop_after) on a loaded graph, then C unless the target is
 * the graph itself. */
static int passes_and_c(fu_graph *g, const fu_compile_opts *o, fu_sb *c_source, fu_err *err) {
    fu_pass_opts popts = pass_opts(o);
    const char *stop = o->target == FU_TARGET_GRAPH ? o->stop_after : NULL;
    if (fu_run_pipeline(g, &popts, stop, err)) return -1;
    if (o->target == FU_TARGET_GRAPH) return 0;
    return fu_emit_graph(g, c_source, err);
}

/* JIT: passes, C and libtcc; the graph (consumed) is freed before tcc runs. */
static int compile_jit(const char *path, fu_graph *g, const fu_compile_opts *o, fu_compile_result *out,
                       fu_err *err) {
    double t0 = now_ms();
    fu_sb c_source = {0};
    int rc = passes_and_c(g, o, &c_source, err);
    fu_graph_free(g);
    double t1 = now_ms();
    if (rc == 0 && o->verbose)
        fprintf(stderr, "fusec: %s: passes and emission %.1f ms, %zu bytes of C\n", path, t1 - t0, c_source.len);
    if (rc == 0 && fu_jit_compile(c_source.s, &out->code, err)) rc = backend_fail(path, err);
    if (rc == 0 && o->verbose) fprintf(stderr, "fusec: %s: tcc compile %.1f ms\n", path, now_ms() - t1);
    fu_sb_free(&c_source);
    return rc;
}

/* AOT: the library is cached under a key of the model's inputs (the model
 * file, the weights, the options), so a cache hit skips the passes and the
 * emission. The graph is consumed. */
static int compile_aot(const char *path, fu_graph *g, const char *variant, const fu_compile_opts *o,
                       fu_compile_result *out, fu_err *err) {
    double t0 = now_ms();
    char model_hash[65];
    /* the symbols' bounds and the inputs compiled in change the code too */
    size_t vlen = strlen(variant) + (o->sym_max ? strlen(o->sym_max) : 0) + 32;
    char *options = malloc(vlen);
    if (!options) return fu_fail(err, "%s: out of memory", path);
    snprintf(options, vlen, "max=%s;inputs=%s", o->sym_max ? o->sym_max : "", variant);
    const char *key[5] = {model_hash, g->weights ? fu_weights_identity(g->weights) : "no weights",
                          o->profile == FU_PROFILE_FAST ? "fast" : "bare",
                          o->precision == FU_PRECISION_BF16 ? "bf16" : "f32", options};
    char *so_path = NULL, why[4400] = "";
    int cached = 0;
    fu_sb c_source = {0};
    int rc = file_sha256(path, model_hash, err);
    char default_dir[4096];
    const char *dir = o->cache_dir ? o->cache_dir : fu_default_cache_dir(default_dir, sizeof default_dir);
    if (rc == 0 && fu_aot_cache_path(dir, key, 5, &so_path, &cached, err))
        rc = backend_fail(path, err);
    /* A cached library is dlopen'ed only once it is trusted (its sidecar's
     * sha256, owner and mode); anything else is built again over it. */
    int loaded = 0, r;
    if (rc == 0 && cached) {
        if ((r = fu_aot_cache_load(so_path, &out->code, why, sizeof why, err)) < 0) rc = backend_fail(path, err);
        loaded = r == 0;
        if (r > 0 && o->verbose) fprintf(stderr, "fusec: %s: cached library not trusted (%s): building it again\n", path, why);
    }
    if (rc == 0 && !loaded) {
        cached = 0;
        rc = passes_and_c(g, o, &c_source, err);
        fu_graph_free(g);
        g = NULL;
        if (rc == 0 && fu_aot_cache_build(c_source.s, so_path, err)) rc = backend_fail(path, err);
        if (rc == 0 && (r = fu_aot_cache_load(so_path, &out->code, why, sizeof why, err)) != 0)
            rc = r < 0 ? backend_fail(path, err) : fu_fail(err, "%s: the library just built is not trusted: %s", path, why);
    }
    fu_graph_free(g);
    if (rc == 0 && o->verbose)
        fprintf(stderr, "fusec: %s: %s %s (%.1f ms)\n", path, cached ? "cache hit" : "built", so_path, now_ms() - t0);
    free(so_path);
    free(options);
    fu_sb_free(&c_source);
    return rc;
}

int fu_compile(const char *path, const fu_compile_opts *o, fu_compile_result *out, fu_err *err) {
    memset(out, 0, sizeof *out);
    fu_ir_opts io = {.allow_external_weights = o->allow_external_weights, .sym_max = o->sym_max};
    /* Folding and emission read the mapped weights (ir/mapguard.h). */
    fu_mapguard_enter();
    fu_graph *g = fu_ir_load_opts(path, &io, err);
    if (!g) {
        fu_mapguard_leave();
        return -1;
    }
    fu_weights *weights = fu_weights_retain(g->weights);
    char *variant = NULL;
    int rc = fu_specialize(g, o->known, o->n_known, o->specialize_always, &variant, err);
    if (rc) {
    } else if (o->target == FU_TARGET_JIT) {
        rc = compile_jit(path, g, o, out, err), g = NULL;
    } else if (o->target == FU_TARGET_AOT) {
        rc = compile_aot(path, g, variant, o, out, err), g = NULL;
    } else {
        rc = passes_and_c(g, o, &out->c_source, err);
        if (rc == 0) out->graph = g, g = NULL;
    }
    free(variant);
    fu_graph_free(g);
    fu_mapguard_leave();
    if (rc == 0 && fu_weights_faulted(weights))
        rc = fu_fail(err, "%s: the weights file %s was truncated while it was being read (SIGBUS caught)", path,
                     fu_weights_path(weights));
    fu_weights_close(weights);
    if (rc) fu_compile_result_free(out);
    return rc;
}

int fu_build_library(const fu_compile_result *r, const char *so_path, const char *header_path, int embed_weights,
                     fu_err *err) {
    if (!embed_weights) return fu_aot_build(r->c_source.s, so_path, header_path, err);
    /* The weights the code reads, as a safetensors image in a private temp
     * folder (a plain name for gas's .incbin). */
    char dir[] = "/tmp/fusec-embed-XXXXXX", image[64];
    if (!mkdtemp(dir)) return fu_fail(err, "cannot create a temp folder: %s", strerror(errno));
    snprintf(image, sizeof image, "%s/weights.safetensors", dir);
    fu_mapguard_enter();
    int rc = fu_safetensors_write_code_weights(r->graph, image, err) ||
             fu_aot_build_embedded(r->c_source.s, so_path, header_path, image, err);
    fu_mapguard_leave();
    unlink(image);
    rmdir(dir);
    return rc ? -1 : 0;
}

void fu_compile_result_free(fu_compile_result *r) {
    fu_graph_free(r->graph);
    fu_sb_free(&r->c_source);
    fu_compiled_free(&r->code);
    memset(r, 0, sizeof *r);
}

/* ---- constant folding's evaluator ------------------------------------------ */

static const char *graph_path(const fu_graph *g) { return g->path ? g->path : "model"; }

/* Runs compiled code of a graph without inputs; copies its outputs. */
static int run_once(fu_graph *fg, const fu_compiled *code, void **results, fu_err *err) {
    int n_weights = 0;
    for (int v = 0; v < fg->n_values; v++)
        if (fg->values[v].storage == FU_STORE_WEIGHT && fg->values[v].index >= n_weights)
            n_weights = fg->values[v].index + 1;
    const void **w = calloc((size_t)n_weights + 1, sizeof *w);
    size_t arena_size = (size_t)(fg->arena_bytes > 0 ? fg->arena_bytes : 1);
    arena_size = (arena_size + 63) / 64 * 64;
    void *arena = aligned_alloc(64, arena_size);
    void **out = calloc((size_t)fg->n_outputs + 1, sizeof *out);
    int64_t sym[FU_MAX_SYMS] = {0};
    int rc = 0;
    if (!w || !arena || !out) {
        rc = fu_fail(err, "%s: out of memory folding constants", graph_path(fg));
        goto done;
    }
    for (int v = 0; v < fg->n_values; v++)
        if (fg->values[v].storage == FU_STORE_WEIGHT) w[fg->values[v].index] = fg->values[v].data;

    int status = code->run(sym, NULL, w, arena, out);
    if (status != 0) {
        if (status - 1 < fg->n_nodes)
            rc = fu_node_fail(err, fg, &fg->nodes[status - 1], "failed while folding constants (bad index data?)");
        else
            rc = fu_fail(err, "%s: constant folding failed (code %d)", graph_path(fg), status);
        goto done;
    }
    for (int i = 0; i < fg->n_outputs && rc == 0; i++) {
        const fu_value *v = &fg->values[fg->outputs[i]];
        int64_t numel = 0;
        fu_value_numel_const(v, &numel);
        size_t bytes = (size_t)numel * fu_dtype_size(v->dtype);
        results[i] = malloc(bytes ? bytes : 1);
        if (!results[i] || (bytes && !out[i])) {
            rc = fu_fail(err, "%s: constant folding produced no data for '%s'", graph_path(fg), v->name);
            break;
        }
        if (bytes) memcpy(results[i], out[i], bytes);
    }
done:
    free(w), free(arena), free(out);
    return rc;
}

int fu_evaluate_graph(fu_graph *g, const fu_pass_opts *o, void **outputs, fu_err *err) {
    fu_pass_opts quiet = {.profile = o ? o->profile : FU_PROFILE_BARE};
    if (fu_infer(g, err) || fu_pass_plan(g, &quiet, err)) return -1;
    fu_sb source = {0};
    if (fu_emit_graph(g, &source, err)) return -1;
    fu_compiled code = {0};
    int rc = fu_jit_compile(source.s, &code, err);
    fu_sb_free(&source);
    if (rc == 0) rc = run_once(g, &code, outputs, err);
    fu_compiled_free(&code);
    return rc;
}
