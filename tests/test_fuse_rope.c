/* Tests for the "rotary_embedding" fusion rule (passes/fuse_rotary_embedding.c)
 * and the RotaryEmbedding op (ir/ops/rotary.c).
 *
 * Each case writes a rotate-half RoPE subgraph as JSON IR (the way HF
 * Llama/Qwen exporters write it), checks that the fast pipeline replaced it
 * by one RotaryEmbedding node (and, where the angles are computed, that the
 * cos/sin subgraph died), then compiles the model with the bare and the fast
 * profile and compares the outputs on random inputs. Near misses must fuse
 * nothing and log why. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "testutil.h"
#include "../ir/ir.h"
#include "../ir/json_ir.h"
#include "../compiler/driver.h"
#include "../passes/passes.h"
#include "../passes/fusion.h"
#include "../compiler/emit.h"
#include "../api/fusec.h"

enum { ANGLES_RANGE, ANGLES_IDS_HF, ANGLES_CACHE };

typedef struct {
    int batch, heads, seq, head_dim;
    int rot;                 /* rotated channels; < head_dim for partial rotation */
    int partial_split;       /* partial rotation written with Split, not Slices */
    int bshd;                /* x is [B, S, H, D] and cos/sin [.., S, 1, D] */
    int angles;
    int symbolic;            /* sequence length is a symbol (else static: folds) */
    int offset;              /* ANGLES_RANGE: pos = offset + s */
    int64_t id_offsets[2];   /* ANGLES_IDS_HF / ANGLES_CACHE: ids[b][s] = id_offsets[b] + s */
    double theta, amplitude;
    /* near misses */
    int slice_at;            /* rotate_half split point; 0 = rot/2 */
    int neg_wrong_half, swap_cos_sin, sin_offset, extra_use;
    /* interleaved (GPT-J) spelling: pairs (2i, 2i+1) */
    int interleaved;
    int pair_dup;            /* cos/sin repeated pairwise: PAIRS_BEFORE_TRIG or PAIRS_AFTER_TRIG */
    int gptj_slices;         /* x[..., 0::2] / x[..., 1::2] instead of Gathers on a [.., d/2, 2] view */
    int pairs_wrong_order;   /* near miss: stack (x_even, -x_odd) */
} rope_case;

/* How range_angles repeats each frequency over the rotated channels. */
enum { HALVES_CONCAT, PAIRS_BEFORE_TRIG, PAIRS_AFTER_TRIG };

#define CACHE_ROWS 64

/* ---- model text --------------------------------------------------------- */

static void node(fu_sb *b, const char *op, const char *inputs, const char *outputs, const char *attrs) {
    fu_sb_printf(b, "%s{\"op\": \"%s\", \"inputs\": [%s], \"outputs\": [%s]%s%s}", b->len ? ",\n" : "", op, inputs,
                 outputs, attrs ? ", \"attrs\": " : "", attrs ? attrs : "");
}

static void init_ints(fu_sb *b, const char *name, int rank, const char *shape, int n, const int64_t *v) {
    fu_sb_printf(b, "%s{\"name\": \"%s\", \"dtype\": \"int64\", \"shape\": [%s], \"data\": [", b->len ? ",\n" : "",
                 name, rank ? shape : "");
    for (int i = 0; i < n; i++) fu_sb_printf(b, "%s%lld", i ? ", " : "", (long long)v[i]);
    fu_sb_printf(b, "]}");
}

static void init_floats(fu_sb *b, const char *name, const char *shape, int n, const float *v) {
    fu_sb_printf(b, "%s{\"name\": \"%s\", \"dtype\": \"float32\", \"shape\": [%s], \"data\": [", b->len ? ",\n" : "",
                 name, shape);
    for (int i = 0; i < n; i++) fu_sb_printf(b, "%s%.9g", i ? ", " : "", (double)v[i]);
    fu_sb_printf(b, "]}");
}

static void inv_freq_values(const rope_case *t, float *out) {
    int half = t->rot / 2;
    for (int i = 0; i < half; i++) out[i] = (float)pow(t->theta, -2.0 * i / t->rot);
}

/* [S, half] -> [S, rot] with each value twice in place, as GPT-J exporters
 * write it: Concat(v[..., None], v[..., None]) or Expand(v[..., None]), then
 * Reshape. */
static void repeat_pairwise(fu_sb *nodes, const char *in_name, const char *out_name, int expand) {
    char in[160], out[160];
    snprintf(in, sizeof in, "\"%s\", \"axis_last\"", in_name);
    snprintf(out, sizeof out, "\"%s_u\"", out_name);
    node(nodes, "Unsqueeze", in, out, NULL);
    if (expand) {
        snprintf(in, sizeof in, "\"%s_u\", \"pair_expand\"", out_name);
        snprintf(out, sizeof out, "\"%s_p\"", out_name);
        node(nodes, "Expand", in, out, NULL);
    } else {
        snprintf(in, sizeof in, "\"%s_u\", \"%s_u\"", out_name, out_name);
        snprintf(out, sizeof out, "\"%s_p\"", out_name);
        node(nodes, "Concat", in, out, "{\"axis\": -1}");
    }
    snprintf(in, sizeof in, "\"%s_p\", \"trig_flat\"", out_name);
    snprintf(out, sizeof out, "\"%s\"", out_name);
    node(nodes, "Reshape", in, out, NULL);
}

/* Cos and sin over positions Range(0, seq) + off, as [S, rot] in cat(f, f)
 * layout (or pairwise, see pair_dup); writes nodes, returns names in
 * cos_name / sin_name. */
static void range_angles(fu_sb *nodes, int off, const char *tag, int pair_dup, char *cos_name, char *sin_name) {
    char buf[256], pos[64];
    snprintf(pos, sizeof pos, "pos%s", tag);
    snprintf(buf, sizeof buf, "\"%s\"", pos);
    node(nodes, "Range", "\"zero\", \"seq_len\", \"one\"", buf, NULL);
    if (off) {
        char in[128], out[64];
        snprintf(in, sizeof in, "\"%s\", \"off%s\"", pos, tag);
        snprintf(out, sizeof out, "\"pos_off%s\"", tag);
        node(nodes, "Add", in, out, NULL);
        snprintf(pos, sizeof pos, "pos_off%s", tag);
    }
    char in[128], out[128];
    snprintf(in, sizeof in, "\"%s\"", pos);
    snprintf(out, sizeof out, "\"posf%s\"", tag);
    node(nodes, "Cast", in, out, "{\"to\": 1}");
    snprintf(in, sizeof in, "\"posf%s\", \"axes1\"", tag);
    snprintf(out, sizeof out, "\"posu%s\"", tag);
    node(nodes, "Unsqueeze", in, out, NULL);
    snprintf(in, sizeof in, "\"posu%s\", \"inv_freq\"", tag);
    snprintf(out, sizeof out, "\"freqs%s\"", tag);
    node(nodes, "Mul", in, out, NULL);
    char name[64], name2[64];
    snprintf(name, sizeof name, "freqs%s", tag);
    snprintf(name2, sizeof name2, "emb%s", tag);
    if (pair_dup == PAIRS_BEFORE_TRIG) {
        repeat_pairwise(nodes, name, name2, 0);
    } else if (pair_dup == HALVES_CONCAT) {
        snprintf(in, sizeof in, "\"freqs%s\", \"freqs%s\"", tag, tag);
        snprintf(out, sizeof out, "\"emb%s\"", tag);
        node(nodes, "Concat", in, out, "{\"axis\": -1}");
    }
    const char *arg = pair_dup == PAIRS_AFTER_TRIG ? "freqs" : "emb";
    const char *res = pair_dup == PAIRS_AFTER_TRIG ? "_half" : "";
    snprintf(in, sizeof in, "\"%s%s\"", arg, tag);
    snprintf(out, sizeof out, "\"cos_raw%s%s\"", tag, res);
    node(nodes, "Cos", in, out, NULL);
    snprintf(out, sizeof out, "\"sin_raw%s%s\"", tag, res);
    node(nodes, "Sin", in, out, NULL);
    snprintf(cos_name, 64, "cos_raw%s", tag);
    snprintf(sin_name, 64, "sin_raw%s", tag);
    if (pair_dup == PAIRS_AFTER_TRIG) {
        snprintf(name, sizeof name, "cos_raw%s_half", tag);
        repeat_pairwise(nodes, name, cos_name, 1);
        snprintf(name, sizeof name, "sin_raw%s_half", tag);
        repeat_pairwise(nodes, name, sin_name, 1);
    }
}

/* Multiplies by the amplitude (when not 1) and unsqueezes to broadcast over
 * heads: `axis` -1 leaves the value as it is. */
static void finish_trig(fu_sb *nodes, const rope_case *t, const char *in_name, const char *out_name, int axis) {
    char in[128], out[128], cur[64];
    snprintf(cur, sizeof cur, "%s", in_name);
    if (t->amplitude != 1.0) {
        snprintf(in, sizeof in, "\"%s\", \"amplitude\"", cur);
        snprintf(out, sizeof out, "\"%s_amp\"", out_name);
        node(nodes, "Mul", in, out, NULL);
        snprintf(cur, sizeof cur, "%s_amp", out_name);
    }
    snprintf(in, sizeof in, axis >= 0 ? "\"%s\", \"axes%d\"" : "\"%s\"", cur, axis);
    snprintf(out, sizeof out, "\"%s\"", out_name);
    node(nodes, axis >= 0 ? "Unsqueeze" : "Identity", in, out, NULL);
}

static char *model_json(const rope_case *t) {
    fu_sb nodes = {0}, inits = {0}, doc = {0};
    int half = t->rot / 2, D = t->head_dim, S = t->seq;
    char seq[32];
    if (t->symbolic) snprintf(seq, sizeof seq, "\"seq\"");
    else snprintf(seq, sizeof seq, "%d", S);
    char xshape[128];
    if (t->bshd) snprintf(xshape, sizeof xshape, "%d, %s, %d, %d", t->batch, seq, t->heads, D);
    else snprintf(xshape, sizeof xshape, "%d, %d, %s, %d", t->batch, t->heads, seq, D);

    int64_t zero = 0, one = 1, seq_axis = t->bshd ? 1 : 2, end = INT64_MAX;
    init_ints(&inits, "zero", 0, "", 1, &zero);
    init_ints(&inits, "one", 0, "", 1, &one);
    init_ints(&inits, "seq_axis", 0, "", 1, &seq_axis);
    for (int a = 0; a < 3; a++) {
        char name[16];
        int64_t v = a;
        snprintf(name, sizeof name, "axes%d", a);
        init_ints(&inits, name, 1, "1", 1, &v);
    }
    int64_t last = -1;
    init_ints(&inits, "axis_last", 1, "1", 1, &last);
    init_ints(&inits, "end", 1, "1", 1, &end);
    int64_t split_at = t->slice_at ? t->slice_at : half, rot64 = t->rot;
    init_ints(&inits, "split_at", 1, "1", 1, &split_at);
    init_ints(&inits, "rot", 1, "1", 1, &rot64);
    init_ints(&inits, "zero1", 1, "1", 1, &zero);
    int64_t pairs_shape[5] = {0, 0, 0, half, 2}, flat_shape[4] = {0, 0, 0, t->rot}, trig_flat[2] = {0, t->rot};
    int64_t pair_expand[3] = {1, 1, 2}, two = 2;
    init_ints(&inits, "pairs_shape", 1, "5", 5, pairs_shape);
    init_ints(&inits, "flat_shape", 1, "4", 4, flat_shape);
    init_ints(&inits, "trig_flat", 1, "2", 2, trig_flat);
    init_ints(&inits, "pair_expand", 1, "3", 3, pair_expand);
    init_ints(&inits, "step2", 1, "1", 1, &two);
    float amplitude = (float)t->amplitude;
    init_floats(&inits, "amplitude", "", 1, &amplitude);
    float inv[512];
    inv_freq_values(t, inv);

    /* The rotated part: all of x, or x[..., :rot]. */
    const char *xr = "x";
    if (t->rot < D) {
        if (t->partial_split) {
            int64_t sizes[2] = {t->rot, D - t->rot};
            init_ints(&inits, "split_sizes", 1, "2", 2, sizes);
            node(&nodes, "Split", "\"x\", \"split_sizes\"", "\"x_rot\", \"x_pass\"", "{\"axis\": -1}");
        } else {
            node(&nodes, "Slice", "\"x\", \"zero1\", \"rot\", \"axis_last\"", "\"x_rot\"", NULL);
            node(&nodes, "Slice", "\"x\", \"rot\", \"end\", \"axis_last\"", "\"x_pass\"", NULL);
        }
        xr = "x_rot";
    }

    char cos_raw[64], sin_raw[64];
    int bcast_axis = t->bshd ? 2 : 1;
    if (t->angles == ANGLES_RANGE) {
        node(&nodes, "Shape", "\"x\"", "\"xs\"", NULL);
        node(&nodes, "Gather", "\"xs\", \"seq_axis\"", "\"seq_len\"", "{\"axis\": 0}");
        int64_t off = t->offset, off2 = t->offset + t->sin_offset;
        init_ints(&inits, "off", 0, "", 1, &off);
        init_ints(&inits, "off_s", 0, "", 1, &off2);
        range_angles(&nodes, t->offset, "", t->pair_dup, cos_raw, sin_raw);
        if (t->sin_offset) {
            char c2[64], s2[64];
            range_angles(&nodes, 1, "_s", t->pair_dup, c2, s2);
            snprintf(sin_raw, sizeof sin_raw, "%s", s2);
        }
        /* [S, rot] broadcasts over [B, H, S, rot]; BSHD needs [S, 1, rot]. */
        finish_trig(&nodes, t, cos_raw, "cos", t->bshd ? 1 : -1);
        finish_trig(&nodes, t, sin_raw, "sin", t->bshd ? 1 : -1);
    } else if (t->angles == ANGLES_IDS_HF) {
        /* HF: (inv_freq[None, :, None] @ ids[:, None, :].float()).transpose(1, 2) */
        node(&nodes, "Unsqueeze", "\"position_ids\", \"axes1\"", "\"ids_u\"", NULL);
        node(&nodes, "Cast", "\"ids_u\"", "\"ids_f\"", "{\"to\": 1}");
        node(&nodes, "MatMul", "\"inv_freq\", \"ids_f\"", "\"freqs_t\"", NULL);
        node(&nodes, "Transpose", "\"freqs_t\"", "\"freqs\"", "{\"perm\": [0, 2, 1]}");
        node(&nodes, "Concat", "\"freqs\", \"freqs\"", "\"emb\"", "{\"axis\": -1}");
        node(&nodes, "Cos", "\"emb\"", "\"cos_raw\"", NULL);
        node(&nodes, "Sin", "\"emb\"", "\"sin_raw\"", NULL);
        finish_trig(&nodes, t, "cos_raw", "cos", bcast_axis);
        finish_trig(&nodes, t, "sin_raw", "sin", bcast_axis);
    } else {
        float *cos_cache = malloc(sizeof(float) * CACHE_ROWS * (size_t)t->rot);
        float *sin_cache = malloc(sizeof(float) * CACHE_ROWS * (size_t)t->rot);
        for (int p = 0; p < CACHE_ROWS; p++)
            for (int i = 0; i < t->rot; i++) {
                double angle = (double)p * inv[i % half];
                cos_cache[p * t->rot + i] = (float)cos(angle);
                sin_cache[p * t->rot + i] = (float)sin(angle);
            }
        char shape[32];
        snprintf(shape, sizeof shape, "%d, %d", CACHE_ROWS, t->rot);
        init_floats(&inits, "cos_cache", shape, CACHE_ROWS * t->rot, cos_cache);
        init_floats(&inits, "sin_cache", shape, CACHE_ROWS * t->rot, sin_cache);
        free(cos_cache);
        free(sin_cache);
        node(&nodes, "Gather", "\"cos_cache\", \"position_ids\"", "\"cos_raw\"", "{\"axis\": 0}");
        node(&nodes, "Gather", "\"sin_cache\", \"position_ids\"", "\"sin_raw\"", "{\"axis\": 0}");
        finish_trig(&nodes, t, "cos_raw", "cos", bcast_axis);
        finish_trig(&nodes, t, "sin_raw", "sin", bcast_axis);
    }

    char in[256];
    if (t->interleaved) {
        /* GPT-J: stack((-x[..., 1::2], x[..., 0::2]), -1).flatten(-2) */
        if (t->gptj_slices) {
            snprintf(in, sizeof in, "\"%s\", \"zero1\", \"end\", \"axis_last\", \"step2\"", xr);
            node(&nodes, "Slice", in, "\"x_even\"", NULL);
            snprintf(in, sizeof in, "\"%s\", \"axes1\", \"end\", \"axis_last\", \"step2\"", xr);
            node(&nodes, "Slice", in, "\"x_odd\"", NULL);
        } else {
            snprintf(in, sizeof in, "\"%s\", \"pairs_shape\"", xr);
            node(&nodes, "Reshape", in, "\"x_pairs\"", NULL);
            node(&nodes, "Gather", "\"x_pairs\", \"zero\"", "\"x_even\"", "{\"axis\": -1}");
            node(&nodes, "Gather", "\"x_pairs\", \"one\"", "\"x_odd\"", "{\"axis\": -1}");
        }
        node(&nodes, "Neg", "\"x_odd\"", "\"neg\"", NULL);
        node(&nodes, "Unsqueeze", "\"neg\", \"axis_last\"", "\"neg_u\"", NULL);
        node(&nodes, "Unsqueeze", "\"x_even\", \"axis_last\"", "\"even_u\"", NULL);
        node(&nodes, "Concat", t->pairs_wrong_order ? "\"even_u\", \"neg_u\"" : "\"neg_u\", \"even_u\"",
             "\"stacked\"", "{\"axis\": -1}");
        node(&nodes, "Reshape", "\"stacked\", \"flat_shape\"", "\"rh\"", NULL);
    } else {
        /* rotate_half(xr) = Concat(Neg(xr[..., h:]), xr[..., :h]) */
        snprintf(in, sizeof in, "\"%s\", \"zero1\", \"split_at\", \"axis_last\"", xr);
        node(&nodes, "Slice", in, "\"x1\"", NULL);
        snprintf(in, sizeof in, "\"%s\", \"split_at\", \"end\", \"axis_last\"", xr);
        node(&nodes, "Slice", in, "\"x2\"", NULL);
        if (t->neg_wrong_half) {
            node(&nodes, "Neg", "\"x1\"", "\"neg\"", NULL);
            node(&nodes, "Concat", "\"x2\", \"neg\"", "\"rh\"", "{\"axis\": -1}");
        } else {
            node(&nodes, "Neg", "\"x2\"", "\"neg\"", NULL);
            node(&nodes, "Concat", "\"neg\", \"x1\"", "\"rh\"", "{\"axis\": -1}");
        }
    }
    const char *c = t->swap_cos_sin ? "sin" : "cos", *s = t->swap_cos_sin ? "cos" : "sin";
    snprintf(in, sizeof in, "\"%s\", \"%s\"", c, xr);   /* cos first: either operand order */
    node(&nodes, "Mul", in, "\"xc\"", NULL);
    snprintf(in, sizeof in, "\"rh\", \"%s\"", s);
    node(&nodes, "Mul", in, "\"rs\"", NULL);
    const char *rope_out = t->rot < D ? "rope" : "y";
    snprintf(in, sizeof in, "\"%s\"", rope_out);
    node(&nodes, "Add", "\"rs\", \"xc\"", in, NULL);
    if (t->rot < D) node(&nodes, "Concat", "\"rope\", \"x_pass\"", "\"y\"", "{\"axis\": -1}");
    if (t->extra_use) node(&nodes, "Neg", "\"rh\"", "\"y2\"", NULL);

    /* inv_freq: [half] for the Range form, [1, half, 1] for HF's MatMul. */
    fu_sb inv_init = {0};
    char inv_shape[32];
    if (t->angles == ANGLES_IDS_HF) snprintf(inv_shape, sizeof inv_shape, "1, %d, 1", half);
    else snprintf(inv_shape, sizeof inv_shape, "%d", half);
    init_floats(&inv_init, "inv_freq", inv_shape, half, inv);

    char ids_input[160] = "";
    if (t->angles != ANGLES_RANGE)
        snprintf(ids_input, sizeof ids_input, ",\n  {\"name\": \"position_ids\", \"dtype\": \"int64\", \"shape\": [%d, %s]}",
                 t->batch, seq);
    fu_sb_printf(&doc,
                 "{\"ir_version\": 1, \"name\": \"rope\"%s,\n"
                 " \"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [%s]}%s],\n"
                 " \"outputs\": [{\"name\": \"y\"}%s],\n"
                 " \"initializers\": [%s,\n%s],\n"
                 " \"nodes\": [%s]}\n",
                 t->symbolic ? ", \"symbols\": {\"seq\": 32}" : "", xshape, ids_input, t->extra_use ? ", {\"name\": \"y2\"}" : "", inits.s, inv_init.s, nodes.s);
    fu_sb_free(&nodes);
    fu_sb_free(&inits);
    fu_sb_free(&inv_init);
    return doc.s;
}

/* ---- running ------------------------------------------------------------------ */

static int count_op(const fu_graph *g, const char *op) {
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++) n += !g->nodes[i].dead && strcmp(g->nodes[i].op, op) == 0;
    return n;
}

/* Runs the fast pipeline on the model; returns the graph (caller frees). */
static fu_graph *fast_graph(const char *path, fu_fusion_log *log) {
    fu_err err = {{0}};
    fu_graph *g = fu_ir_load(path, &err);
    if (!g) fail_msg("load: %s", err.msg);
    fu_pass_opts opts = {.profile = FU_PROFILE_FAST, .verbose = 0, .fusion_log = log, .evaluate = fu_evaluate_graph};
    if (fu_run_pipeline(g, &opts, NULL, &err)) {
        fu_graph_free(g);
        fail_msg("fast pipeline: %s", err.msg);
    }
    return g;
}

/* Compiles the model with `profile`, runs it and returns a copy of y. */
static float *run_model(const char *path, const char *profile, const rope_case *t, const float *x,
                        const int64_t *ids, long *numel) {
    fusec_options opts = {.profile = profile, .backend = "jit", .cache_dir = NULL};
    char err[1024];
    fusec_model *m = fusec_load(path, &opts, err, sizeof err);
    if (!m) fail_msg("%s load: %s", profile, err);
    int64_t xshape[4] = {t->batch, t->bshd ? t->seq : t->heads, t->bshd ? t->heads : t->seq, t->head_dim};
    assert_int_equal(fusec_set_input(m, "x", FUSEC_FLOAT32, 4, xshape, x), 0);
    if (t->angles != ANGLES_RANGE) {
        int64_t ishape[2] = {t->batch, t->seq};
        assert_int_equal(fusec_set_input(m, "position_ids", FUSEC_INT64, 2, ishape, ids), 0);
    }
    if (fusec_run(m)) fail_msg("%s run: %s", profile, fusec_last_error(m));
    fusec_dtype dt;
    int rank;
    int64_t shape[8];
    const void *data;
    assert_int_equal(fusec_get_output(m, "y", &dt, &rank, shape, &data), 0);
    assert_int_equal(rank, 4);
    *numel = shape[0] * shape[1] * shape[2] * shape[3];
    float *copy = malloc(sizeof(float) * (size_t)*numel);
    memcpy(copy, data, sizeof(float) * (size_t)*numel);
    fusec_free(m);
    return copy;
}

static void compare_bare_fast(const char *path, const rope_case *t) {
    long n = (long)t->batch * t->heads * t->seq * t->head_dim;
    float *x = malloc(sizeof(float) * (size_t)n);
    int64_t ids[2 * 64];
    srand(1234);
    for (long i = 0; i < n; i++) x[i] = (float)rand() / RAND_MAX * 2.0f - 1.0f;
    for (int b = 0; b < t->batch; b++)
        for (int s = 0; s < t->seq; s++) ids[b * t->seq + s] = t->id_offsets[b] + s;
    long n_bare, n_fast;
    float *bare = run_model(path, "bare", t, x, ids, &n_bare);
    float *fast = run_model(path, "fast", t, x, ids, &n_fast);
    assert_int_equal(n_bare, n);
    assert_int_equal(n_fast, n);
    double scale = tu_max_abs(bare, n), diff = tu_max_abs_diff(bare, fast, n);
    if (!(diff <= 1e-5 * scale) || scale == 0) fail_msg("fast differs from bare: max diff %g, scale %g", diff, scale);
    free(bare);
    free(fast);
    free(x);
}

/* The case must fuse into exactly one RotaryEmbedding with the given input
 * form, and fast must match bare. */
static void expect_fused(const rope_case *t, int computed_angles) {
    char *json = model_json(t);
    char *path = tu_write_temp(".json", json);
    free(json);
    fu_fusion_log log = {0};
    fu_graph *g = fast_graph(path, &log);
    int ropes = count_op(g, "RotaryEmbedding"), fused = fu_fusion_log_count(&log, "rotary_embedding", 1);
    int trig = count_op(g, "Cos") + count_op(g, "Sin"), adds = count_op(g, "Add");
    int has_inv_freq = 0, interleaved = -1;
    for (int i = 0; i < g->n_nodes; i++)
        if (!g->nodes[i].dead && strcmp(g->nodes[i].op, "RotaryEmbedding") == 0) {
            has_inv_freq = g->nodes[i].n_in > 4 && g->nodes[i].in[4] >= 0;
            interleaved = (int)fu_attr_int(&g->nodes[i], "interleaved", 0);
        }
    for (int i = 0; ropes != 1 && i < log.n; i++)
        print_message("log: %s %s %s\n", log.events[i].rule, log.events[i].fused ? "fused" : "near miss",
                      log.events[i].reason);
    fu_graph_free(g);
    fu_fusion_log_free(&log);
    assert_int_equal(ropes, 1);
    assert_int_equal(fused, 1);
    assert_int_equal(has_inv_freq, computed_angles);
    assert_int_equal(interleaved, t->interleaved);
    assert_int_equal(trig, 0);   /* the cos/sin subgraph died (or was never there) */
    (void)adds;
    compare_bare_fast(path, t);
    unlink(path);
    free(path);
}

static void expect_near_miss(const rope_case *t, const char *reason) {
    char *json = model_json(t);
    char *path = tu_write_temp(".json", json);
    free(json);
    fu_fusion_log log = {0};
    fu_graph *g = fast_graph(path, &log);
    int ropes = count_op(g, "RotaryEmbedding");
    int found = 0;
    for (int i = 0; i < log.n; i++)
        if (!log.events[i].fused && strcmp(log.events[i].rule, "rotary_embedding") == 0 &&
            strstr(log.events[i].reason, reason))
            found = 1;
    for (int i = 0; !found && i < log.n; i++)
        print_message("log: %s %s %s\n", log.events[i].rule, log.events[i].fused ? "fused" : "near miss",
                      log.events[i].reason);
    int fused = fu_fusion_log_count(&log, "rotary_embedding", 1);
    fu_graph_free(g);
    fu_fusion_log_free(&log);
    assert_int_equal(ropes, 0);
    assert_int_equal(fused, 0);
    assert_true(found);
    if (!t->extra_use) compare_bare_fast(path, t);
    unlink(path);
    free(path);
}

static rope_case base_case(void) {
    rope_case t = {0};
    t.batch = 1;
    t.heads = 4;
    t.seq = 7;
    t.head_dim = 64;
    t.rot = 64;
    t.angles = ANGLES_RANGE;
    t.symbolic = 1;
    t.theta = 1e6;
    t.amplitude = 1.0;
    return t;
}

/* ---- fused variants --------------------------------------------------------------- */

/* Qwen3: theta 1e6, positions Range(0, S), cos/sin [S, D] over [B, H, S, D]. */
static void test_range_bhsd_h4_d64(void **state) {
    (void)state;
    rope_case t = base_case();
    expect_fused(&t, 1);
}

static void test_range_offset_bshd_h16_d128_amplitude(void **state) {
    (void)state;
    rope_case t = base_case();
    t.heads = 16;
    t.head_dim = t.rot = 128;
    t.bshd = 1;
    t.offset = 5;
    t.amplitude = 1.25;
    t.theta = 1e4;
    expect_fused(&t, 1);
}

static void test_position_ids_hf_bhsd_d128(void **state) {
    (void)state;
    rope_case t = base_case();
    t.angles = ANGLES_IDS_HF;
    t.batch = 2;
    t.seq = 9;
    t.head_dim = t.rot = 128;
    t.id_offsets[0] = 3;
    t.id_offsets[1] = 11;
    expect_fused(&t, 1);
}

static void test_position_ids_hf_bshd_h16(void **state) {
    (void)state;
    rope_case t = base_case();
    t.angles = ANGLES_IDS_HF;
    t.batch = 2;
    t.heads = 16;
    t.bshd = 1;
    t.id_offsets[0] = 0;
    t.id_offsets[1] = 20;
    t.amplitude = 0.75;
    expect_fused(&t, 1);
}

static void test_cache_gathered_bhsd(void **state) {
    (void)state;
    rope_case t = base_case();
    t.angles = ANGLES_CACHE;
    t.batch = 2;
    t.id_offsets[0] = 2;
    t.id_offsets[1] = 40;
    expect_fused(&t, 0);
}

static void test_cache_gathered_bshd_h16_d128(void **state) {
    (void)state;
    rope_case t = base_case();
    t.angles = ANGLES_CACHE;
    t.heads = 16;
    t.head_dim = t.rot = 128;
    t.bshd = 1;
    t.id_offsets[0] = 50;
    expect_fused(&t, 0);
}

/* Static S: fold turns the whole cos/sin computation into constants,
 * which become a table indexed by s. */
static void test_folded_table_static_seq(void **state) {
    (void)state;
    rope_case t = base_case();
    t.symbolic = 0;
    t.heads = 16;
    t.head_dim = t.rot = 128;
    expect_fused(&t, 0);
}

static void test_folded_table_offset_bshd(void **state) {
    (void)state;
    rope_case t = base_case();
    t.symbolic = 0;
    t.bshd = 1;
    t.offset = 3;
    expect_fused(&t, 0);
}

static void test_partial_rotation_slices(void **state) {
    (void)state;
    rope_case t = base_case();
    t.rot = 32;
    t.offset = 2;
    expect_fused(&t, 1);
}

static void test_partial_rotation_split_bshd(void **state) {
    (void)state;
    rope_case t = base_case();
    t.head_dim = 128;
    t.rot = 64;
    t.heads = 16;
    t.bshd = 1;
    t.partial_split = 1;
    expect_fused(&t, 1);
}

static void test_partial_rotation_cache(void **state) {
    (void)state;
    rope_case t = base_case();
    t.angles = ANGLES_CACHE;
    t.rot = 16;
    t.id_offsets[0] = 9;
    expect_fused(&t, 0);
}

/* ---- interleaved (GPT-J) spelling ---------------------------------------------------- */

/* x viewed as [.., d/2, 2], Gathers of index 0/1, freqs repeated pairwise
 * before Cos/Sin; positions Range(0, S), S odd. */
static void test_interleaved_range_bhsd_h4_d64(void **state) {
    (void)state;
    rope_case t = base_case();
    t.interleaved = 1;
    t.pair_dup = PAIRS_BEFORE_TRIG;
    expect_fused(&t, 1);
}

/* x[..., 0::2] / x[..., 1::2], cos/sin Expanded pairwise after Cos/Sin,
 * positions offset + s, x [B, S, H, D]. */
static void test_interleaved_range_offset_bshd_h16_d128(void **state) {
    (void)state;
    rope_case t = base_case();
    t.interleaved = 1;
    t.pair_dup = PAIRS_AFTER_TRIG;
    t.gptj_slices = 1;
    t.heads = 16;
    t.head_dim = t.rot = 128;
    t.seq = 9;
    t.bshd = 1;
    t.offset = 5;
    t.theta = 1e4;
    expect_fused(&t, 1);
}

/* Static S: the angles fold into a constant table with each value twice. */
static void test_interleaved_folded_table(void **state) {
    (void)state;
    rope_case t = base_case();
    t.interleaved = 1;
    t.pair_dup = PAIRS_AFTER_TRIG;
    t.symbolic = 0;
    t.offset = 3;
    expect_fused(&t, 0);
}

static void test_interleaved_partial_rotation(void **state) {
    (void)state;
    rope_case t = base_case();
    t.interleaved = 1;
    t.pair_dup = PAIRS_BEFORE_TRIG;
    t.rot = 32;
    t.offset = 2;
    expect_fused(&t, 1);
}

/* ---- near misses ------------------------------------------------------------------ */

static void test_near_miss_interleaved_wrong_order(void **state) {
    (void)state;
    rope_case t = base_case();
    t.interleaved = 1;
    t.pair_dup = PAIRS_BEFORE_TRIG;
    t.pairs_wrong_order = 1;
    expect_near_miss(&t, "pairs in the wrong order");
}

/* Interleaved rotation with the rotate-half cat(c, c) cos/sin. */
static void test_near_miss_interleaved_halves_dup(void **state) {
    (void)state;
    rope_case t = base_case();
    t.interleaved = 1;
    t.pair_dup = HALVES_CONCAT;
    expect_near_miss(&t, "layouts mismatched");
}

/* The reverse: rotate-half with cos/sin repeated pairwise. */
static void test_near_miss_rotate_half_pairs_dup(void **state) {
    (void)state;
    rope_case t = base_case();
    t.pair_dup = PAIRS_AFTER_TRIG;
    expect_near_miss(&t, "layouts mismatched");
}

static void test_near_miss_slice_not_half(void **state) {
    (void)state;
    rope_case t = base_case();
    t.slice_at = 16;
    expect_near_miss(&t, "Slice not at d/2");
}

static void test_near_miss_neg_wrong_half(void **state) {
    (void)state;
    rope_case t = base_case();
    t.neg_wrong_half = 1;
    expect_near_miss(&t, "Neg on the wrong half");
}

static void test_near_miss_cos_sin_swapped(void **state) {
    (void)state;
    rope_case t = base_case();
    t.swap_cos_sin = 1;
    expect_near_miss(&t, "cos and sin swapped");
}

static void test_near_miss_cache_swapped(void **state) {
    (void)state;
    rope_case t = base_case();
    t.angles = ANGLES_CACHE;
    t.swap_cos_sin = 1;
    expect_near_miss(&t, "cos and sin swapped");
}

static void test_near_miss_different_positions(void **state) {
    (void)state;
    rope_case t = base_case();
    t.sin_offset = 1;
    expect_near_miss(&t, "different position sources");
}

static void test_near_miss_intermediate_used(void **state) {
    (void)state;
    rope_case t = base_case();
    t.extra_use = 1;
    expect_near_miss(&t, "also used outside the pattern");
}

/* ---- the op on its own ------------------------------------------------------------ */

/* A hand-written RotaryEmbedding with fusec's inv_freq input must agree with
 * the composed graph: exercised through the same runner via a case whose
 * fast graph is the fused one; here check the op's input validation. */
static void test_op_rejects_bad_inputs(void **state) {
    (void)state;
    const char *json =
        "{\"ir_version\": 1, \"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [1, 2, 3, 8]}],\n"
        " \"outputs\": [{\"name\": \"y\"}],\n"
        " \"initializers\": [{\"name\": \"f\", \"dtype\": \"float32\", \"shape\": [3], \"data\": [1, 0.5, 0.25]}],\n"
        " \"nodes\": [{\"op\": \"RotaryEmbedding\", \"inputs\": [\"x\", \"\", \"\", \"\", \"f\"], \"outputs\": [\"y\"]}]}";
    char *path = tu_write_temp(".json", json);
    fu_err err = {{0}};
    fu_graph *g = fu_ir_load(path, &err);
    assert_non_null(g);
    fu_pass_opts opts = {.profile = FU_PROFILE_BARE, .verbose = 0, .fusion_log = NULL, .evaluate = fu_evaluate_graph};
    assert_int_not_equal(fu_run_pipeline(g, &opts, NULL, &err), 0);
    assert_non_null(strstr(err.msg, "length of inv_freq"));
    fu_graph_free(g);
    unlink(path);
    free(path);
}

/* The op with an inv_freq input, 3-D X and num_heads, run against a plain C
 * reference of the formula. */
static void test_op_inv_freq_3d(void **state) {
    (void)state;
    const int B = 1, S = 5, H = 3, D = 8, half = 4;
    const float inv[4] = {1.0f, 0.1f, 0.01f, 0.001f};
    fu_sb doc = {0};
    fu_sb_printf(&doc,
                 "{\"ir_version\": 1, \"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [1, 5, 24]}],\n"
                 " \"outputs\": [{\"name\": \"y\"}],\n"
                 " \"initializers\": [{\"name\": \"f\", \"dtype\": \"float32\", \"shape\": [4], \"data\": [1, 0.1, 0.01, 0.001]}],\n"
                 " \"nodes\": [{\"op\": \"RotaryEmbedding\", \"inputs\": [\"x\", \"\", \"\", \"\", \"f\"], \"outputs\": [\"y\"],\n"
                 "   \"attrs\": {\"num_heads\": 3, \"pos_offset\": 4, \"amplitude\": 2.0}}]}");
    char *path = tu_write_temp(".json", doc.s);
    fu_sb_free(&doc);
    fusec_options opts = {.profile = "bare", .backend = "jit", .cache_dir = NULL};
    char err[1024];
    fusec_model *m = fusec_load(path, &opts, err, sizeof err);
    if (!m) fail_msg("load: %s", err);
    float x[1 * 5 * 24], want[1 * 5 * 24];
    for (int i = 0; i < B * S * H * D; i++) x[i] = (float)((i * 37) % 17) / 8.0f - 1.0f;
    for (int s = 0; s < S; s++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < half; i++) {
                const float *xr = x + s * H * D + h * D;
                float angle = (float)(4 + s) * inv[i], c = 2.0f * cosf(angle), sn = 2.0f * sinf(angle);
                want[s * H * D + h * D + i] = xr[i] * c - xr[i + half] * sn;
                want[s * H * D + h * D + i + half] = xr[i + half] * c + xr[i] * sn;
            }
    int64_t shape[3] = {1, 5, 24};
    assert_int_equal(fusec_set_input(m, "x", FUSEC_FLOAT32, 3, shape, x), 0);
    assert_int_equal(fusec_run(m), 0);
    fusec_dtype dt;
    int rank;
    int64_t oshape[8];
    const void *data;
    assert_int_equal(fusec_get_output(m, "y", &dt, &rank, oshape, &data), 0);
    double diff = tu_max_abs_diff(want, data, B * S * H * D);
    if (diff > 1e-5 * tu_max_abs(want, B * S * H * D)) fail_msg("op differs from reference by %g", diff);
    fusec_free(m);
    unlink(path);
    free(path);
}

/* A position id outside the cache makes the run fail, naming the node. */
static void test_op_position_out_of_cache(void **state) {
    (void)state;
    const char *json =
        "{\"ir_version\": 1, \"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [1, 1, 2, 4]},\n"
        "  {\"name\": \"ids\", \"dtype\": \"int64\", \"shape\": [1, 2]}],\n"
        " \"outputs\": [{\"name\": \"y\"}],\n"
        " \"initializers\": [{\"name\": \"c\", \"dtype\": \"float32\", \"shape\": [3, 2], \"data\": [1, 1, 0.5, 0.5, 0, 0]},\n"
        "  {\"name\": \"s\", \"dtype\": \"float32\", \"shape\": [3, 2], \"data\": [0, 0, 0.5, 0.5, 1, 1]}],\n"
        " \"nodes\": [{\"op\": \"RotaryEmbedding\", \"inputs\": [\"x\", \"c\", \"s\", \"ids\"], \"outputs\": [\"y\"]}]}";
    char *path = tu_write_temp(".json", json);
    fusec_options opts = {.profile = "bare", .backend = "jit", .cache_dir = NULL};
    char err[1024];
    fusec_model *m = fusec_load(path, &opts, err, sizeof err);
    if (!m) fail_msg("load: %s", err);
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int64_t ids[2] = {1, 3}, xs[4] = {1, 1, 2, 4}, is[2] = {1, 2};
    assert_int_equal(fusec_set_input(m, "x", FUSEC_FLOAT32, 4, xs, x), 0);
    assert_int_equal(fusec_set_input(m, "ids", FUSEC_INT64, 2, is, ids), 0);
    assert_int_not_equal(fusec_run(m), 0);
    ids[1] = 2;
    assert_int_equal(fusec_run(m), 0);
    fusec_free(m);
    unlink(path);
    free(path);
}

/* The Qwen3 fixture: every q and k rope of every layer fuses. */
static void test_qwen3_fixture_ropes_fuse(void **state) {
    (void)state;
    fu_err err = {{0}};
    fu_graph *plain = fu_ir_load(FIXTURE("qwen3_small/model.json"), &err);
    if (!plain) fail_msg("load: %s", err.msg);
    int layers = count_op(plain, "Softmax");   /* one attention per layer */
    fu_graph_free(plain);
    fu_fusion_log log = {0};
    fu_graph *g = fast_graph(FIXTURE("qwen3_small/model.json"), &log);
    int ropes = count_op(g, "RotaryEmbedding"), trig = count_op(g, "Cos") + count_op(g, "Sin");
    fu_graph_free(g);
    fu_fusion_log_free(&log);
    assert_true(layers > 0);
    assert_int_equal(ropes, 2 * layers);
    assert_int_equal(trig, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_range_bhsd_h4_d64),
        cmocka_unit_test(test_range_offset_bshd_h16_d128_amplitude),
        cmocka_unit_test(test_position_ids_hf_bhsd_d128),
        cmocka_unit_test(test_position_ids_hf_bshd_h16),
        cmocka_unit_test(test_cache_gathered_bhsd),
        cmocka_unit_test(test_cache_gathered_bshd_h16_d128),
        cmocka_unit_test(test_folded_table_static_seq),
        cmocka_unit_test(test_folded_table_offset_bshd),
        cmocka_unit_test(test_partial_rotation_slices),
        cmocka_unit_test(test_partial_rotation_split_bshd),
        cmocka_unit_test(test_partial_rotation_cache),
        cmocka_unit_test(test_interleaved_range_bhsd_h4_d64),
        cmocka_unit_test(test_interleaved_range_offset_bshd_h16_d128),
        cmocka_unit_test(test_interleaved_folded_table),
        cmocka_unit_test(test_interleaved_partial_rotation),
        cmocka_unit_test(test_near_miss_interleaved_wrong_order),
        cmocka_unit_test(test_near_miss_interleaved_halves_dup),
        cmocka_unit_test(test_near_miss_rotate_half_pairs_dup),
        cmocka_unit_test(test_near_miss_slice_not_half),
        cmocka_unit_test(test_near_miss_neg_wrong_half),
        cmocka_unit_test(test_near_miss_cos_sin_swapped),
        cmocka_unit_test(test_near_miss_cache_swapped),
        cmocka_unit_test(test_near_miss_different_positions),
        cmocka_unit_test(test_near_miss_intermediate_used),
        cmocka_unit_test(test_op_rejects_bad_inputs),
        cmocka_unit_test(test_op_inv_freq_3d),
        cmocka_unit_test(test_op_position_out_of_cache),
        cmocka_unit_test(test_qwen3_fixture_ropes_fuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
