/* The C emitter: one translation unit per planned graph.
 *
 * Layout of the generated file:
 *   the runtime kernels header (pasted, so the file stands alone),
 *   embedded constants (inline and folded initializers) as typed arrays,
 *   the metadata JSON as bytes (names only ever travel as data),
 *   fusec_model_run: symbols as locals, then one block per node or loop
 *   group in topological order, then the output pointers.
 *
 * Identifiers are generated (S0, K3, p0, t5); model names appear only in
 * sanitised comments. */
#include <json-c/json.h>
#include <xxhash.h>
#include <math.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "emit.h"
#include "../ops/ops.h"
#include "../ir/shape.h"
#include "../ir/weights.h"
#include "../runtime/fusec_kernels.h"

extern const char fu_kernels_header[];

/* ---- embedded constants ----------------------------------------------- */

static void emit_constant(fu_emit *e, const fu_value *v) {
    int64_t count = (int64_t)(v->nbytes / (fu_dtype_size(v->dtype) ? fu_dtype_size(v->dtype) : 1));
    char comment[128];
    fu_sanitize(v->name, comment, sizeof comment);
    /* tcc rejects inf/nan in static initializers (1.0f/0.0f is not constant
     * to it), so float arrays holding them are written as bit patterns. */
    int as_bits = 0;
    for (int64_t i = 0; v->dtype == FU_F32 && i < count; i++) {
        float f;
        memcpy(&f, (const char *)v->data + 4 * i, 4);
        if (!isfinite(f)) as_bits = 1;
    }
    if (as_bits)
        fu_sb_printf(&e->out, "/* constant %s */\nstatic const union { uint32_t u; float f; } K%d[%lld] = {",
                     comment, v->index, (long long)count);
    else
        fu_sb_printf(&e->out, "/* constant %s */\nstatic const %s K%d[%lld] = {", comment,
                     fu_c_type(v->dtype), v->index, (long long)(count > 0 ? count : 1));
    if (count == 0) fu_sb_printf(&e->out, "0");
    for (int64_t i = 0; i < count; i++) {
        if (i % 12 == 0) fu_sb_printf(&e->out, "\n    ");
        char lit[64];
        switch (v->dtype) {
        case FU_F32: {
            float f;
            uint32_t bits;
            memcpy(&f, (const char *)v->data + 4 * i, 4);
            memcpy(&bits, &f, 4);
            if (as_bits) snprintf(lit, sizeof lit, "{0x%08xu}", bits);
            else fu_float_literal(f, lit, sizeof lit);
            break;
        }
        case FU_F16:
        case FU_BF16: {
            uint16_t h;
            memcpy(&h, (const char *)v->data + 2 * i, 2);
            snprintf(lit, sizeof lit, "0x%04x", h);
            break;
        }
        case FU_I64: {
            int64_t x;
            memcpy(&x, (const char *)v->data + 8 * i, 8);
            if (x == INT64_MIN) snprintf(lit, sizeof lit, "(-9223372036854775807LL - 1)");
            else snprintf(lit, sizeof lit, "%lldLL", (long long)x);
            break;
        }
        case FU_I32: {
            int32_t x;
            memcpy(&x, (const char *)v->data + 4 * i, 4);
            snprintf(lit, sizeof lit, "%lld", (long long)x);
            break;
        }
        default: snprintf(lit, sizeof lit, "%d", ((const uint8_t *)v->data)[i] ? 1 : 0); break;
        }
        fu_sb_printf(&e->out, "%s, ", lit);
    }
    fu_sb_printf(&e->out, "\n};\n");
}

/* ---- blocks: what fusec_model_run executes -------------------------------- */

/* At node i the run function executes nothing (a dead node, a view, a loop
 * group member before the group's last node), the node's own code, or its
 * loop group's loop (emitted at the last member). Each executed block is one
 * slot of the per-node profile. */
typedef enum { BLOCK_NONE, BLOCK_NODE, BLOCK_LOOP } block_kind;

/* The members of each loop group, in node order: members[start[k] ..
 * start[k + 1]) for group k (built once, so no block looks for its group's
 * members over the whole graph). */
typedef struct {
    int *start;
    int *members;
} loop_groups;

static void loop_groups_free(loop_groups *lg) {
    free(lg->start);
    free(lg->members);
}

static int loop_groups_build(const fu_graph *g, loop_groups *lg) {
    int ng = g->n_loop_groups > 0 ? g->n_loop_groups : 0;
    lg->start = calloc((size_t)ng + 2, sizeof(int));
    lg->members = malloc(sizeof(int) * ((size_t)g->n_nodes + 1));
    int *fill = calloc((size_t)ng + 1, sizeof(int));
    int ok = lg->start && lg->members && fill;
    for (int i = 0; ok && i < g->n_nodes; i++) {
        int k = g->nodes[i].loop_group;
        if (k >= ng) ok = 0;   /* not planned for this graph */
        else if (k >= 0) lg->start[k + 1]++;
    }
    for (int k = 0; ok && k < ng; k++) lg->start[k + 1] += lg->start[k];
    for (int i = 0; ok && i < g->n_nodes; i++) {
        int k = g->nodes[i].loop_group;
        if (k >= 0) lg->members[lg->start[k] + fill[k]++] = i;
    }
    free(fill);
    if (!ok) loop_groups_free(lg);
    return ok ? 0 : -1;
}

static block_kind block_at(const fu_graph *g, const loop_groups *lg, int i) {
    const fu_node *n = &g->nodes[i];
    if (n->dead) return BLOCK_NONE;
    if (n->loop_group >= 0)
        return lg->members[lg->start[n->loop_group + 1] - 1] == i ? BLOCK_LOOP : BLOCK_NONE;
    return n->def && n->def->is_view ? BLOCK_NONE : BLOCK_NODE;
}

/* Op kind of a loop group ending at node i, for the profile: "Loop:Add",
 * "Loop:Sub/Max", or "Loop:N ops" when the names do not fit (characters
 * that fu_sanitize keeps, so reports print it as is). */
static void loop_kind(const fu_graph *g, const loop_groups *lg, int i, char *buf, size_t n) {
    int k = g->nodes[i].loop_group, count = lg->start[k + 1] - lg->start[k];
    size_t len = (size_t)snprintf(buf, n, "Loop:");
    for (int j = lg->start[k]; j < lg->start[k + 1] && len < n; j++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s", j > lg->start[k] ? "/" : "", g->nodes[lg->members[j]].op);
    if (len + 1 > n) snprintf(buf, n, "Loop:%d ops", count);
}

/* ---- metadata ------------------------------------------------------------ */

static json_object *dims_json(const fu_graph *g, const fu_value *v) {
    json_object *shape = json_object_new_array();
    for (int k = 0; k < v->rank; k++) {
        json_object *d = json_object_new_array();
        json_object_array_add(d, json_object_new_int64(v->shape[k].coef));
        for (int s = 0; s < g->n_syms; s++) json_object_array_add(d, json_object_new_int(v->shape[k].pow[s]));
        json_object_array_add(shape, d);
    }
    return shape;
}

static json_object *tensor_json(const fu_graph *g, const fu_value *v) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(v->name));
    json_object_object_add(o, "dtype", json_object_new_string(fu_dtype_name(v->dtype)));
    json_object_object_add(o, "shape", dims_json(g, v));
    return o;
}

static char *build_meta(const fu_graph *g, const loop_groups *lg, const char *profile) {
    json_object *m = json_object_new_object();
    json_object_object_add(m, "fusec_meta", json_object_new_int(1));
    json_object_object_add(m, "name", json_object_new_string(g->name ? g->name : "model"));
    json_object_object_add(m, "profile", json_object_new_string(profile));
    json_object_object_add(m, "precision", json_object_new_string(g->precision[0] ? g->precision : "f32"));
    json_object *syms = json_object_new_array();
    for (int s = 0; s < g->n_syms; s++) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "name", json_object_new_string(g->sym_names[s]));
        json_object_object_add(o, "max", json_object_new_int64(g->sym_max[s]));
        json_object_array_add(syms, o);
    }
    json_object_object_add(m, "symbols", syms);
    json_object *ins = json_object_new_array(), *outs = json_object_new_array();
    for (int i = 0; i < g->n_inputs; i++) json_object_array_add(ins, tensor_json(g, &g->values[g->inputs[i]]));
    for (int i = 0; i < g->n_outputs; i++) json_object_array_add(outs, tensor_json(g, &g->values[g->outputs[i]]));
    json_object_object_add(m, "inputs", ins);
    json_object_object_add(m, "outputs", outs);
    /* Weights in slot order (the plan numbers them in value order). */
    json_object *ws = json_object_new_array();
    for (int v = 0; v < g->n_values; v++)
        if (g->values[v].storage == FU_STORE_WEIGHT) json_object_array_add(ws, tensor_json(g, &g->values[v]));
    json_object_object_add(m, "weights", ws);
    /* Packed copies, in slot order after the weights (w[n_weights + i]). */
    json_object *packed = json_object_new_array();
    for (int i = 0; i < g->n_packed; i++) {
        const struct fu_packed_slot *p = &g->packed[i];
        const fu_value *w = &g->values[p->value];
        json_object *o = json_object_new_object();
        json_object_object_add(o, "weight", json_object_new_string(w->name));
        json_object_object_add(o, "layout", json_object_new_string(p->bf16 ? "bf16" : "f32"));
        json_object_object_add(o, "transposed", json_object_new_boolean(p->transposed));
        json_object_array_add(packed, o);
    }
    json_object_object_add(m, "packed", packed);
    /* The weights: where they were at compile time, the name a moved model
     * looks for beside its library, what they hold (the header's hash and
     * size), and the hash of each tensor whose values the code holds. */
    json_object_object_add(m, "weights_file", g->weights_path ? json_object_new_string(g->weights_path) : NULL);
    if (g->weights_path) {
        const char *base = strrchr(g->weights_path, '/');
        json_object_object_add(m, "weights_name", json_object_new_string(base ? base + 1 : g->weights_path));
    }
    json_object *folded = json_object_new_array();
    const char *fname;
    const void *fdata;
    size_t fbytes;
    for (int i = 0; fu_weights_folded(g->weights, i, &fname, &fdata, &fbytes) == 0; i++) {
        json_object *o = json_object_new_object();
        char hash[24];
        snprintf(hash, sizeof hash, "%016llx", (unsigned long long)XXH3_64bits(fdata, fbytes));
        json_object_object_add(o, "name", json_object_new_string(fname));
        json_object_object_add(o, "xxh3", json_object_new_string(hash));
        json_object_array_add(folded, o);
    }
    json_object_object_add(m, "folded_weights", folded);
    if (g->weights_allow_external) json_object_object_add(m, "weights_allow_external", json_object_new_boolean(1));
    json_object *compiled_in = json_object_new_array();   /* inputs whose values the code holds */
    for (int i = 0; i < g->n_compiled_in; i++)
        json_object_array_add(compiled_in, json_object_new_string(g->compiled_in[i]));
    json_object_object_add(m, "compiled_in", compiled_in);
    json_object_object_add(m, "weights_content",
                           json_object_new_string(g->weights ? fu_weights_content_id(g->weights) : ""));
    json_object_object_add(m, "arena_bytes", json_object_new_int64(g->arena_bytes));
    /* The profiled blocks in slot order, named after the model's nodes. */
    json_object *slots = json_object_new_array();
    for (int i = 0; i < g->n_nodes; i++) {
        block_kind kind = block_at(g, lg, i);
        if (kind == BLOCK_NONE) continue;
        char op[64];
        int ops = 1;
        if (kind == BLOCK_LOOP) {
            loop_kind(g, lg, i, op, sizeof op);
            ops = lg->start[g->nodes[i].loop_group + 1] - lg->start[g->nodes[i].loop_group];
        } else {
            snprintf(op, sizeof op, "%s", g->nodes[i].op);
        }
        json_object *o = json_object_new_object();
        json_object_object_add(o, "node", json_object_new_int(i));
        json_object_object_add(o, "name", json_object_new_string(g->nodes[i].name ? g->nodes[i].name : ""));
        json_object_object_add(o, "op", json_object_new_string(op));
        json_object_object_add(o, "ops", json_object_new_int(ops));
        json_object_array_add(slots, o);
    }
    json_object_object_add(m, "profile", slots);
    char *text = strdup(json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN));
    json_object_put(m);
    return text;
}

/* ---- the translation unit ------------------------------------------------- */

static void emit_meta_bytes(fu_emit *e, const char *meta) {
    size_t len = strlen(meta);
    fu_sb_printf(&e->out, "const unsigned char fusec_model_meta[%zu] = {", len + 1);
    for (size_t i = 0; i <= len; i++)
        fu_sb_printf(&e->out, "%s0x%02x,", i % 20 == 0 ? "\n    " : "", (unsigned char)meta[i]);
    fu_sb_printf(&e->out, "\n};\nconst unsigned long fusec_model_meta_len = %zu;\n\n", len);
}

/* fusec_model_missing_isa (gcc builds only): the first instruction-set
 * extension the library was compiled for (-march) that this CPU lacks, or
 * NULL. Compiled for plain x86-64, so asking cannot itself fault; the AOT
 * loader asks before running anything (compiler/aot.c). Each extension is
 * named as __builtin_cpu_supports spells it; its macro is that name in
 * capitals, '.' as '_' (avx512bf16: __AVX512BF16__). */
static const char *const isa_extensions[] = {
    "sse4.2", "avx", "avx2", "fma", "f16c", "bmi", "bmi2", "lzcnt", "movbe", "avxvnni",
    "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx512er", "avx512pf", "avx512vbmi",
    "avx512ifma", "avx512vnni", "avx512vbmi2", "avx512bitalg", "avx512vpopcntdq", "avx512bf16", "avx512fp16"};

static void emit_missing_isa(fu_emit *e) {
    fu_sb_printf(&e->out, "#ifndef __TINYC__\n__attribute__((target(\"arch=x86-64\"))) "
                          "const char *fusec_model_missing_isa(void) {\n    __builtin_cpu_init();\n");
    for (size_t i = 0; i < sizeof isa_extensions / sizeof *isa_extensions; i++) {
        char macro[32];
        size_t k = 0;
        for (const char *c = isa_extensions[i]; *c && k + 1 < sizeof macro; c++)
            macro[k++] = *c == '.' ? '_' : (char)toupper((unsigned char)*c);
        macro[k] = 0;
        fu_sb_printf(&e->out, "#ifdef __%s__\n    if (!__builtin_cpu_supports(\"%s\")) return \"%s\";\n#endif\n",
                     macro, isa_extensions[i], isa_extensions[i]);
    }
    fu_sb_printf(&e->out, "    return (const char *)0;\n}\n#endif\n\n");
}

int fu_emit_graph(const fu_graph *g, fu_sb *out, fu_err *err) {
    fu_emit *e = calloc(1, sizeof *e);
    if (!e) return fu_fail(err, "out of memory emitting code");
    e->g = g;
    char name[128];
    fu_sanitize(g->name ? g->name : "model", name, sizeof name);
    fu_sb_printf(&e->out, "/* Generated by fusec for model %s. Do not edit. */\n\n", name);
    fu_sb_printf(&e->out, "%s\n", fu_kernels_header);

    for (int v = 0; v < g->n_values; v++)
        if (g->values[v].storage == FU_STORE_EMBEDDED) emit_constant(e, &g->values[v]);

    loop_groups lg = {0};
    if (loop_groups_build(g, &lg)) {
        fu_sb_free(&e->out);
        free(e);
        return fu_fail(err, "%s: loop groups not planned, or out of memory emitting code", g->path ? g->path : "model");
    }
    char *meta = build_meta(g, &lg, g->profile[0] ? g->profile : "bare");
    emit_meta_bytes(e, meta);
    emit_missing_isa(e);
    free(meta);

    /* Loop functions (e->funcs) go between this point and the run function. */
    size_t run_start = e->out.len;
    /* noclone: gcc must not specialise the whole graph again for prof = NULL. */
    fu_sb_printf(&e->out,
                 "int fusec_model_run_profiled(const int64_t *sym, const void *const *in, const void *const *w,\n"
                 "                             void *arena, void **out, fu_rt_profile *prof)\n"
                 "    __attribute__((noinline, noclone));\n"
                 "int fusec_model_run_profiled(const int64_t *sym, const void *const *in, const void *const *w,\n"
                 "                             void *arena, void **out, fu_rt_profile *prof)\n{\n");
    e->indent = 1;
    fu_emitf(e, "unsigned char *A = (unsigned char *)arena;");
    for (int s = 0; s < g->n_syms; s++) {
        char sym[64];
        fu_sanitize(g->sym_names[s], sym, sizeof sym);
        fu_emitf(e, "const int64_t S%d = sym[%d]; /* %s */", s, s, sym);
    }
    fu_emitf(e, "const fu_loop_context loop_ctx = {sym, in, w, A};");
    fu_emitf(e, "(void)sym; (void)in; (void)w; (void)A; (void)prof; (void)loop_ctx;");

    int rc = 0;
    int slot = 0;   /* profile slot of the next executed block */
    for (int i = 0; i < g->n_nodes && rc == 0; i++) {
        const fu_node *n = &g->nodes[i];
        if (n->dead) continue;
        char comment[96];
        fu_sanitize(n->name, comment, sizeof comment);
        if (!n->def) {
            rc = fu_node_fail(err, g, n, "node was not inferred before code generation");
            break;
        }
        block_kind kind = block_at(g, &lg, i);
        if (kind == BLOCK_NONE && n->loop_group >= 0) continue;   /* emitted with its group's last member */
        if (kind == BLOCK_LOOP) {
            const int *members = &lg.members[lg.start[n->loop_group]];
            int count = lg.start[n->loop_group + 1] - lg.start[n->loop_group];
            fu_emitf(e, "/* node %d: loop of %d elementwise op%s ending in %s %s */", i, count,
                     count > 1 ? "s" : "", n->op, comment);
            fu_emitf(e, "if (prof) fu_rt_profile_begin(prof);");
            rc = fu_emit_loop_group(e, members, count, err);
        } else if (kind == BLOCK_NONE) {
            fu_emitf(e, "/* node %d: %s %s (view, no code) */", i, n->op, comment);
            continue;
        } else if (n->def->emit) {
            fu_emitf(e, "/* node %d: %s %s */", i, n->op, comment);
            fu_emitf(e, "if (prof) fu_rt_profile_begin(prof);");
            fu_emitf(e, "{");
            e->indent++;
            rc = n->def->emit(e, g, n, err);
            e->indent--;
            fu_emitf(e, "}");
        } else {
            rc = fu_node_fail(err, g, n, "op has no code generator");
        }
        fu_emitf(e, "if (prof) fu_rt_profile_end(prof, %d);", slot++);
    }
    loop_groups_free(&lg);
    for (int i = 0; i < g->n_outputs && rc == 0; i++)
        fu_emitf(e, "out[%d] = %s;", i, fu_emit_vptr(e, g->outputs[i]));
    fu_emitf(e, "return 0;");
    fu_sb_printf(&e->out, "}\n\n");
    fu_sb_printf(&e->out,
                 "int fusec_model_run(const int64_t *sym, const void *const *in, const void *const *w,\n"
                 "                    void *arena, void **out)\n{\n"
                 "    return fusec_model_run_profiled(sym, in, w, arena, out, (fu_rt_profile *)0);\n}\n");
    if (rc == 0 && (e->out.oom || e->funcs.oom)) rc = fu_fail(err, "out of memory emitting code");
    if (rc == 0) {
        fu_sb whole = {0};
        fu_sb_printf(&whole, "%.*s%s%s\n%s", (int)run_start, e->out.s, fu_loop_context_type,
                     e->funcs.s ? e->funcs.s : "", e->out.s + run_start);
        if (whole.oom) rc = fu_fail(err, "out of memory emitting code");
        else *out = whole;
    }
    fu_sb_free(&e->out);
    fu_sb_free(&e->funcs);
    free(e);
    return rc;
}
