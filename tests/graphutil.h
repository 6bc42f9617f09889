/* Helpers for tests that inspect a rewritten graph and read model outputs.
 * Include after <cmocka.h>, testutil.h, ir/ir.h and api/fusec.h. */
#ifndef FUSEC_GRAPHUTIL_H
#define FUSEC_GRAPHUTIL_H

/* Live nodes of op `op` in g. */
static inline int tu_count_op(const fu_graph *g, const char *op) {
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++) n += !g->nodes[i].dead && strcmp(g->nodes[i].op, op) == 0;
    return n;
}

/* The first live node of op `op`, or NULL. */
static inline const fu_node *tu_find_op(const fu_graph *g, const char *op) {
    for (int i = 0; i < g->n_nodes; i++)
        if (!g->nodes[i].dead && strcmp(g->nodes[i].op, op) == 0) return &g->nodes[i];
    return NULL;
}

/* Output `name` of the last run as float32 (float16 widened); malloc'd,
 * element count in *numel. Fails the test when it cannot be read. */
static inline float *tu_output_f32(fusec_model *m, const char *name, long *numel) {
    fusec_dtype t;
    int rank;
    int64_t shape[FU_MAX_RANK];
    const void *data;
    if (fusec_get_output(m, name, &t, &rank, shape, &data)) fail_msg("get_output: %s", fusec_last_error(m));
    if (t != FUSEC_FLOAT32 && t != FUSEC_FLOAT16) fail_msg("output %s is not float32 or float16", name);
    *numel = 1;
    for (int d = 0; d < rank; d++) *numel *= (long)shape[d];
    float *out = malloc(sizeof(float) * (size_t)(*numel ? *numel : 1));
    for (long i = 0; i < *numel; i++)
        out[i] = t == FUSEC_FLOAT16 ? fu_f16_to_f32(((const uint16_t *)data)[i]) : ((const float *)data)[i];
    return out;
}

/* Fills input k (value v, `numel` elements of v's dtype, shape `shape`). */
typedef void (*tu_fill_fn)(const fu_value *v, int k, const int64_t *shape, int64_t numel, void *data);

/* Compiles the model at `path` in `profile` with the JIT, binds every input
 * of g (dims at the symbol values `sym`, or the bounds when NULL) filled by
 * `fill`, and runs it. The same fill gives both profiles the same inputs. */
static inline fusec_model *tu_run_profile(const char *path, const fu_graph *g, const char *profile,
                                          const int64_t *sym, tu_fill_fn fill) {
    char err[FU_ERR_LEN];
    fusec_options opts = {.profile = profile, .backend = "jit"};
    fusec_model *m = fusec_load(path, &opts, err, sizeof err);
    if (!m) fail_msg("fusec_load (%s): %s", profile, err);
    void *buffers[8] = {0};
    assert_true(g->n_inputs <= 8);
    for (int k = 0; k < g->n_inputs; k++) {
        const fu_value *v = &g->values[g->inputs[k]];
        int64_t shape[FU_MAX_RANK], numel = 1;
        for (int d = 0; d < v->rank; d++) numel *= shape[d] = fu_dim_eval(v->shape[d], sym ? sym : g->sym_max);
        buffers[k] = malloc((size_t)(numel ? numel : 1) * fu_dtype_size(v->dtype));
        fill(v, k, shape, numel, buffers[k]);
        if (fusec_set_input(m, v->name, (fusec_dtype)v->dtype, v->rank, shape, buffers[k]))
            fail_msg("set_input %s: %s", v->name, fusec_last_error(m));
    }
    int rc = fusec_run(m);
    for (int k = 0; k < 8; k++) free(buffers[k]);
    if (rc) fail_msg("run (%s): %s", profile, fusec_last_error(m));
    return m;
}

#endif
