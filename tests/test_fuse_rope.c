/* Tests for the "rotary_embedding" fusion rule (passes/fuse_rotary_embedding.c)
 * and the RotaryEmbedding op (ops/rotary.c).
 *
 * Each case builds a rotate-half RoPE subgraph (graph_builder.h; the way HF
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
#include "graph_builder.h"

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

/* ---- the model ---------------------------------------------------------- */

static void inv_freq_values(const rope_case *t, float *out) {
    int half = t->rot / 2;
    for (int i = 0; i < half; i++) out[i] = (float)pow(t->theta, -2.0 * i / t->rot);
}

static int inv_freq(tb_graph *b, const rope_case *t) {
    float inv[512];
    int half = t->rot / 2;
    inv_freq_values(t, inv);
    /* [half] for the Range form, [1, half, 1] for HF's MatMul. */
    if (t->angles == ANGLES_IDS_HF) return tb_const_f32(b, "inv_freq", TB_DIMS(1, half, 1), inv);
    return tb_const_f32(b, "inv_freq", TB_DIMS(half), inv);
}

/* int64 [1] constant. */
static int int1(tb_graph *b, const char *name, int64_t v) {
    return tb_const_ints(b, name, TB_INTS(v));
}

/* "<base><tag><suffix>" in buf. */
static const char *name3(char *buf, const char *base, const char *tag, const char *suffix) {
    snprintf(buf, 64, "%s%s%s", base, tag, suffix);
    return buf;
}

/* [S, half] -> [S, rot] with each value twice in place, as GPT-J exporters
 * write it: Concat(v[..., None], v[..., None]) or Expand(v[..., None]), then
 * Reshape. */
static int repeat_pairwise(tb_graph *b, const rope_case *t, int in, const char *out_name, int expand) {
    char n[64];
    int u = tb_op(b, "Unsqueeze", name3(n, out_name, "", "_u"), in, int1(b, "axis_last", -1));
    int p = expand ? tb_op(b, "Expand", name3(n, out_name, "", "_p"), u, tb_const_ints(b, "pair_expand", TB_INTS(1, 1, 2)))
                   : tb_attr_int(b, tb_op(b, "Concat", name3(n, out_name, "", "_p"), u, u), "axis", -1);
    return tb_op(b, "Reshape", out_name, p, tb_const_ints(b, "trig_flat", TB_INTS(0, t->rot)));
}

/* Cos and sin over positions Range(0, seq) (+ off<tag> when add_off), as
 * [S, rot] in cat(f, f) layout (or pairwise, see pair_dup). */
static void range_angles(tb_graph *b, const rope_case *t, int seq_len, int add_off, const char *tag, int *cos_raw,
                         int *sin_raw) {
    char n[64], n2[64];
    int pos = tb_op(b, "Range", name3(n, "pos", tag, ""), tb_scalar_i64(b, "zero", 0), seq_len, tb_scalar_i64(b, "one", 1));
    if (add_off)
        pos = tb_op(b, "Add", name3(n, "pos_off", tag, ""), pos,
                    tb_scalar_i64(b, name3(n2, "off", tag, ""), t->offset + (*tag ? t->sin_offset : 0)));
    int posf = tb_attr_int(b, tb_op(b, "Cast", name3(n, "posf", tag, ""), pos), "to", 1);
    int posu = tb_op(b, "Unsqueeze", name3(n, "posu", tag, ""), posf, int1(b, "axes1", 1));
    int freqs = tb_op(b, "Mul", name3(n, "freqs", tag, ""), posu, inv_freq(b, t)), arg = freqs;
    if (t->pair_dup == PAIRS_BEFORE_TRIG)
        arg = repeat_pairwise(b, t, freqs, name3(n, "emb", tag, ""), 0);
    else if (t->pair_dup == HALVES_CONCAT)
        arg = tb_attr_int(b, tb_op(b, "Concat", name3(n, "emb", tag, ""), freqs, freqs), "axis", -1);
    const char *res = t->pair_dup == PAIRS_AFTER_TRIG ? "_half" : "";
    *cos_raw = tb_op(b, "Cos", name3(n, "cos_raw", tag, res), arg);
    *sin_raw = tb_op(b, "Sin", name3(n, "sin_raw", tag, res), arg);
    if (t->pair_dup == PAIRS_AFTER_TRIG) {
        *cos_raw = repeat_pairwise(b, t, *cos_raw, name3(n, "cos_raw", tag, ""), 1);
        *sin_raw = repeat_pairwise(b, t, *sin_raw, name3(n, "sin_raw", tag, ""), 1);
    }
}

/* Multiplies by the amplitude (when not 1) and unsqueezes to broadcast over
 * heads: `axis` -1 leaves the value as it is. */
static int finish_trig(tb_graph *b, const rope_case *t, int in, const char *out_name, int axis) {
    char n[64];
    if (t->amplitude != 1.0)
        in = tb_op(b, "Mul", name3(n, out_name, "", "_amp"), in, tb_scalar_f32(b, "amplitude", (float)t->amplitude));
    if (axis < 0) return tb_op(b, "Identity", out_name, in);
    snprintf(n, sizeof n, "axes%d", axis);
    return tb_op(b, "Unsqueeze", out_name, in, int1(b, n, axis));
}

static tb_graph *build_model(const rope_case *t) {
    int half = t->rot / 2, D = t->head_dim;
    tb_graph *b = tb_new("rope");
    int64_t seq = t->symbolic ? tb_symbol(b, "seq", 32) : t->seq;
    int x = t->bshd ? tb_input(b, "x", FU_F32, TB_DIMS(t->batch, seq, t->heads, D))
                    : tb_input(b, "x", FU_F32, TB_DIMS(t->batch, t->heads, seq, D));
    int ids = t->angles != ANGLES_RANGE ? tb_input(b, "position_ids", FU_I64, TB_DIMS(t->batch, seq)) : -1;
    int axis_last = int1(b, "axis_last", -1), end = int1(b, "end", INT64_MAX), zero1 = int1(b, "zero1", 0);
    int split_at = int1(b, "split_at", t->slice_at ? t->slice_at : half);

    /* The rotated part: all of x, or x[..., :rot]. */
    int xr = x, x_pass = -1;
    if (t->rot < D) {
        if (t->partial_split) {
            int outs[2];
            tb_node_n(b, "Split", 2, (const int[]){x, tb_const_ints(b, "split_sizes", TB_INTS(t->rot, D - t->rot))}, 2,
                      (const char *const[]){"x_rot", "x_pass"}, outs);
            tb_attr_int(b, outs[0], "axis", -1);
            xr = outs[0], x_pass = outs[1];
        } else {
            int rot = int1(b, "rot", t->rot);
            xr = tb_op(b, "Slice", "x_rot", x, zero1, rot, axis_last);
            x_pass = tb_op(b, "Slice", "x_pass", x, rot, end, axis_last);
        }
    }

    int cos_raw, sin_raw;
    if (t->angles == ANGLES_RANGE) {
        int xs = tb_op(b, "Shape", "xs", x);
        int seq_len = tb_attr_int(b, tb_op(b, "Gather", "seq_len", xs, tb_scalar_i64(b, "seq_axis", t->bshd ? 1 : 2)),
                                  "axis", 0);
        range_angles(b, t, seq_len, t->offset != 0, "", &cos_raw, &sin_raw);
        if (t->sin_offset) {
            int c2;
            range_angles(b, t, seq_len, 1, "_s", &c2, &sin_raw);
        }
    } else if (t->angles == ANGLES_IDS_HF) {
        /* HF: (inv_freq[None, :, None] @ ids[:, None, :].float()).transpose(1, 2) */
        int ids_u = tb_op(b, "Unsqueeze", "ids_u", ids, int1(b, "axes1", 1));
        int ids_f = tb_attr_int(b, tb_op(b, "Cast", "ids_f", ids_u), "to", 1);
        int freqs_t = tb_op(b, "MatMul", "freqs_t", inv_freq(b, t), ids_f);
        int freqs = tb_attr_ints(b, tb_op(b, "Transpose", "freqs", freqs_t), "perm", TB_INTS(0, 2, 1));
        int emb = tb_attr_int(b, tb_op(b, "Concat", "emb", freqs, freqs), "axis", -1);
        cos_raw = tb_op(b, "Cos", "cos_raw", emb);
        sin_raw = tb_op(b, "Sin", "sin_raw", emb);
    } else {
        float inv[512];
        inv_freq_values(t, inv);
        float *cos_cache = malloc(sizeof(float) * CACHE_ROWS * (size_t)t->rot);
        float *sin_cache = malloc(sizeof(float) * CACHE_ROWS * (size_t)t->rot);
        for (int p = 0; p < CACHE_ROWS; p++)
            for (int i = 0; i < t->rot; i++) {
                double angle = (double)p * inv[i % half];
                cos_cache[p * t->rot + i] = (float)cos(angle);
                sin_cache[p * t->rot + i] = (float)sin(angle);
            }
        int cc = tb_const_f32(b, "cos_cache", TB_DIMS(CACHE_ROWS, t->rot), cos_cache);
        int sc = tb_const_f32(b, "sin_cache", TB_DIMS(CACHE_ROWS, t->rot), sin_cache);
        free(cos_cache);
        free(sin_cache);
        cos_raw = tb_attr_int(b, tb_op(b, "Gather", "cos_raw", cc, ids), "axis", 0);
        sin_raw = tb_attr_int(b, tb_op(b, "Gather", "sin_raw", sc, ids), "axis", 0);
    }
    /* Broadcast over heads: [S, rot] already does for [B, H, S, rot]; BSHD
     * needs [S, 1, rot]; from ids [B, S, rot] -> [B, 1, S, rot] or [B, S, 1, rot]. */
    int axis = t->angles == ANGLES_RANGE ? (t->bshd ? 1 : -1) : t->bshd ? 2 : 1;
    int cos_v = finish_trig(b, t, cos_raw, "cos", axis), sin_v = finish_trig(b, t, sin_raw, "sin", axis);

    int rh;
    if (t->interleaved) {
        /* GPT-J: stack((-x[..., 1::2], x[..., 0::2]), -1).flatten(-2) */
        int x_even, x_odd;
        if (t->gptj_slices) {
            int step2 = int1(b, "step2", 2);
            x_even = tb_op(b, "Slice", "x_even", xr, zero1, end, axis_last, step2);
            x_odd = tb_op(b, "Slice", "x_odd", xr, int1(b, "axes1", 1), end, axis_last, step2);
        } else {
            int x_pairs = tb_op(b, "Reshape", "x_pairs", xr, tb_const_ints(b, "pairs_shape", TB_INTS(0, 0, 0, half, 2)));
            x_even = tb_attr_int(b, tb_op(b, "Gather", "x_even", x_pairs, tb_scalar_i64(b, "zero", 0)), "axis", -1);
            x_odd = tb_attr_int(b, tb_op(b, "Gather", "x_odd", x_pairs, tb_scalar_i64(b, "one", 1)), "axis", -1);
        }
        int neg = tb_op(b, "Neg", "neg", x_odd);
        int neg_u = tb_op(b, "Unsqueeze", "neg_u", neg, axis_last);
        int even_u = tb_op(b, "Unsqueeze", "even_u", x_even, axis_last);
        int stacked = t->pairs_wrong_order ? tb_op(b, "Concat", "stacked", even_u, neg_u)
                                           : tb_op(b, "Concat", "stacked", neg_u, even_u);
        tb_attr_int(b, stacked, "axis", -1);
        rh = tb_op(b, "Reshape", "rh", stacked, tb_const_ints(b, "flat_shape", TB_INTS(0, 0, 0, t->rot)));
    } else {
        /* rotate_half(xr) = Concat(Neg(xr[..., h:]), xr[..., :h]) */
        int x1 = tb_op(b, "Slice", "x1", xr, zero1, split_at, axis_last);
        int x2 = tb_op(b, "Slice", "x2", xr, split_at, end, axis_last);
        if (t->neg_wrong_half) rh = tb_op(b, "Concat", "rh", x2, tb_op(b, "Neg", "neg", x1));
        else rh = tb_op(b, "Concat", "rh", tb_op(b, "Neg", "neg", x2), x1);
        tb_attr_int(b, rh, "axis", -1);
    }
    int xc = tb_op(b, "Mul", "xc", t->swap_cos_sin ? sin_v : cos_v, xr);   /* cos first: either operand order */
    int rs = tb_op(b, "Mul", "rs", rh, t->swap_cos_sin ? cos_v : sin_v);
    int y = tb_op(b, "Add", t->rot < D ? "rope" : "y", rs, xc);
    if (t->rot < D) y = tb_attr_int(b, tb_op(b, "Concat", "y", y, x_pass), "axis", -1);
    tb_output(b, y);
    if (t->extra_use) tb_output(b, tb_op(b, "Neg", "y2", rh));
    return b;
}

/* ---- running ------------------------------------------------------------------ */

static int count_op(const fu_graph *g, const char *op) {
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++) n += !g->nodes[i].dead && strcmp(g->nodes[i].op, op) == 0;
    return n;
}

/* Runs the fast pipeline on the model; returns the graph (caller frees). */
static fu_graph *fast_graph(const char *path, fu_fusion_log *log) {
    fu_err err = {0};
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
    tb_graph *b = build_model(t);
    char *path = tb_save(b);
    tb_free(b);
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
    tb_remove(path);
}

static void expect_near_miss(const rope_case *t, const char *reason) {
    tb_graph *b = build_model(t);
    char *path = tb_save(b);
    tb_free(b);
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
    tb_remove(path);
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
    tb_graph *b = tb_new("model");
    int x = tb_input(b, "x", FU_F32, TB_DIMS(1, 2, 3, 8));
    int f = tb_const_f32(b, "f", TB_DIMS(3), (const float[]){1, 0.5f, 0.25f});
    tb_output(b, tb_op(b, "RotaryEmbedding", "y", x, TB_NONE, TB_NONE, TB_NONE, f));
    char *path = tb_save(b);
    tb_free(b);
    fu_err err = {0};
    fu_graph *g = fu_ir_load(path, &err);
    assert_non_null(g);
    fu_pass_opts opts = {.profile = FU_PROFILE_BARE, .verbose = 0, .fusion_log = NULL, .evaluate = fu_evaluate_graph};
    assert_int_not_equal(fu_run_pipeline(g, &opts, NULL, &err), 0);
    assert_non_null(strstr(err.msg, "length of inv_freq"));
    fu_graph_free(g);
    tb_remove(path);
}

/* The op with an inv_freq input, 3-D X and num_heads, run against a plain C
 * reference of the formula. */
static void test_op_inv_freq_3d(void **state) {
    (void)state;
    const int B = 1, S = 5, H = 3, D = 8, half = 4;
    const float inv[4] = {1.0f, 0.1f, 0.01f, 0.001f};
    tb_graph *b = tb_new("model");
    int xin = tb_input(b, "x", FU_F32, TB_DIMS(1, 5, 24));
    int y = tb_op(b, "RotaryEmbedding", "y", xin, TB_NONE, TB_NONE, TB_NONE, tb_const_f32(b, "f", TB_DIMS(4), inv));
    tb_attr_int(b, y, "num_heads", 3);
    tb_attr_int(b, y, "pos_offset", 4);
    tb_attr_float(b, y, "amplitude", 2.0);
    tb_output(b, y);
    char *path = tb_save(b);
    tb_free(b);
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
    tb_remove(path);
}

/* A position id outside the cache makes the run fail, naming the node. */
static void test_op_position_out_of_cache(void **state) {
    (void)state;
    tb_graph *b = tb_new("model");
    int xin = tb_input(b, "x", FU_F32, TB_DIMS(1, 1, 2, 4));
    int ids_in = tb_input(b, "ids", FU_I64, TB_DIMS(1, 2));
    int c = tb_const_f32(b, "c", TB_DIMS(3, 2), (const float[]){1, 1, 0.5f, 0.5f, 0, 0});
    int s = tb_const_f32(b, "s", TB_DIMS(3, 2), (const float[]){0, 0, 0.5f, 0.5f, 1, 1});
    tb_output(b, tb_op(b, "RotaryEmbedding", "y", xin, c, s, ids_in));
    char *path = tb_save(b);
    tb_free(b);
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
    tb_remove(path);
}

/* The Qwen3 fixture: every q and k rope of every layer fuses. */
static void test_qwen3_fixture_ropes_fuse(void **state) {
    (void)state;
    fu_err err = {0};
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
