/* JSON IR writer (format: docs/ir.md; the reader is ir/json_ir.c) and the
 * Graphviz writer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "json_ir.h"
#include "weights.h"

/* ---- writer ------------------------------------------------------------ */

static void write_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", f);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

/* A double that reads back as a JSON double (never as an int), or a string
 * for the values JSON cannot hold. */
static void write_double(FILE *f, double x, int keep_float_kind) {
    if (isnan(x)) {
        fputs("\"nan\"", f);
    } else if (isinf(x)) {
        fputs(x > 0 ? "\"inf\"" : "\"-inf\"", f);
    } else {
        char buf[40];
        snprintf(buf, sizeof buf, "%.17g", x);
        if (keep_float_kind && !strpbrk(buf, ".eE")) strcat(buf, ".0");
        fputs(buf, f);
    }
}

static void write_dim(FILE *f, const fu_graph *g, fu_dim d) {
    if (fu_dim_is_const(d)) {
        fprintf(f, "%lld", (long long)d.coef);
    } else {
        char buf[128];
        fu_dim_str(g, d, buf, sizeof buf);
        write_str(f, buf);
    }
}

static void write_shape(FILE *f, const fu_graph *g, int rank, const fu_dim *shape) {
    fputc('[', f);
    for (int i = 0; i < rank; i++) {
        if (i) fputs(", ", f);
        write_dim(f, g, shape[i]);
    }
    fputc(']', f);
}

/* Shortest of %.6g .. %.9g that reads back as the same float (9 digits
 * always do), so 0.1f is written "0.1", not "0.100000001". */
static void write_float(FILE *f, float x) {
    char buf[32];
    if (x == 0 && signbit(x)) {  /* "-0" would read back as the integer 0 */
        fputs("-0.0", f);
        return;
    }
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)x);
        if (strtof(buf, NULL) == x || prec == 9) break;
    }
    fputs(buf, f);
}

/* Flat list of n elements of dtype t from raw bytes. */
static void write_data(FILE *f, fu_dtype t, const void *data, int64_t n) {
    const unsigned char *p = data;
    fputc('[', f);
    for (int64_t i = 0; i < n; i++) {
        if (i) fputs(", ", f);
        switch (t) {
        case FU_F32:
        case FU_F16:
        case FU_BF16: {
            float x;
            uint16_t h;
            if (t == FU_F32) memcpy(&x, p + 4 * i, 4);
            else {
                memcpy(&h, p + 2 * i, 2);
                x = t == FU_F16 ? fu_f16_to_f32(h) : fu_bf16_to_f32(h);
            }
            if (isfinite(x)) write_float(f, x);
            else write_double(f, x, 0);
            break;
        }
        case FU_I64: {
            int64_t x;
            memcpy(&x, p + 8 * i, 8);
            fprintf(f, "%lld", (long long)x);
            break;
        }
        case FU_I32: {
            int32_t x;
            memcpy(&x, p + 4 * i, 4);
            fprintf(f, "%d", x);
            break;
        }
        default: fprintf(f, "%d", p[i] != 0); break;
        }
    }
    fputc(']', f);
}

static void write_attr(FILE *f, const fu_attr *a) {
    write_str(f, a->name);
    fputs(": ", f);
    switch (a->kind) {
    case FU_ATTR_INT: fprintf(f, "%lld", (long long)a->i); break;
    case FU_ATTR_FLOAT:
        if (isfinite(a->f)) write_double(f, a->f, 1);
        else {
            fputs("{\"float\": ", f);
            write_double(f, a->f, 1);
            fputc('}', f);
        }
        break;
    case FU_ATTR_INTS:
        fputc('[', f);
        for (int i = 0; i < a->n; i++) fprintf(f, "%s%lld", i ? ", " : "", (long long)a->ints[i]);
        fputc(']', f);
        break;
    case FU_ATTR_FLOATS:
        fputc('[', f);
        for (int i = 0; i < a->n; i++) {
            if (i) fputs(", ", f);
            write_double(f, a->floats[i], 1);
        }
        fputc(']', f);
        break;
    case FU_ATTR_STRING: write_str(f, a->s ? a->s : ""); break;
    case FU_ATTR_TENSOR: {
        int64_t numel = 1;
        fprintf(f, "{\"dtype\": \"%s\", \"shape\": [", fu_dtype_name(a->t_dtype));
        for (int i = 0; i < a->t_rank; i++) {
            fprintf(f, "%s%lld", i ? ", " : "", (long long)a->t_shape[i]);
            numel *= a->t_shape[i];
        }
        fputs("], \"data\": ", f);
        write_data(f, a->t_dtype, a->t_data, a->t_data ? numel : 0);
        fputc('}', f);
        break;
    }
    }
}

int fu_ir_write(const fu_graph *g, FILE *f, fu_err *err) {
    const char *path = g->path ? g->path : "model";
    int *uses = fu_graph_use_counts(g);
    if (!uses) return fu_fail(err, "%s: out of memory", path);
    for (int i = 0; i < g->n_values; i++) {
        const fu_value *v = &g->values[i];
        if (v->kind == FU_VAL_CONST && uses[i] && !v->external && !v->data) {
            char name[128];
            fu_sanitize(v->name ? v->name : "", name, sizeof name);
            free(uses);
            return fu_fail(err, "%s: constant '%s' has no data to write", path, name);
        }
    }

    fputs("{\n  \"ir_version\": 1,\n  \"name\": ", f);
    write_str(f, g->name ? g->name : "model");
    if (g->weights_path) {
        fputs(",\n  \"weights\": ", f);
        write_str(f, g->weights_path);
    }
    fputs(",\n  \"symbols\": {", f);
    for (int i = 0; i < g->n_syms; i++) {
        fputs(i ? ", " : "", f);
        write_str(f, g->sym_names[i]);
        fprintf(f, ": %lld", (long long)g->sym_max[i]);
    }
    fputs("},\n  \"inputs\": [", f);
    for (int i = 0; i < g->n_inputs; i++) {
        const fu_value *v = &g->values[g->inputs[i]];
        fputs(i ? ",\n    {\"name\": " : "\n    {\"name\": ", f);
        write_str(f, v->name);
        fprintf(f, ", \"dtype\": \"%s\", \"shape\": ", fu_dtype_name(v->dtype));
        write_shape(f, g, v->rank, v->shape);
        fputc('}', f);
    }
    fputs("\n  ],\n  \"outputs\": [", f);
    for (int i = 0; i < g->n_outputs; i++) {
        const fu_value *v = &g->values[g->outputs[i]];
        fputs(i ? ",\n    {\"name\": " : "\n    {\"name\": ", f);
        write_str(f, v->name);
        /* The declaration if the model gave one, else what inference found. */
        if (v->decl_rank >= 0 || v->decl_dtype != FU_UNDEF) {
            if (v->decl_dtype != FU_UNDEF) fprintf(f, ", \"dtype\": \"%s\"", fu_dtype_name(v->decl_dtype));
            if (v->decl_rank >= 0) {
                fputs(", \"shape\": ", f);
                write_shape(f, g, v->decl_rank, v->decl_shape);
            }
        } else if (v->rank >= 0 && v->dtype != FU_UNDEF) {
            fprintf(f, ", \"dtype\": \"%s\", \"shape\": ", fu_dtype_name(v->dtype));
            write_shape(f, g, v->rank, v->shape);
        }
        fputc('}', f);
    }
    fputs("\n  ],\n  \"initializers\": [", f);
    int first = 1;
    for (int i = 0; i < g->n_values; i++) {
        const fu_value *v = &g->values[i];
        if (v->kind != FU_VAL_CONST || !uses[i]) continue;
        fputs(first ? "\n    {\"name\": " : ",\n    {\"name\": ", f);
        first = 0;
        write_str(f, v->name);
        fprintf(f, ", \"dtype\": \"%s\", \"shape\": ", fu_dtype_name(v->dtype));
        write_shape(f, g, v->rank, v->shape);
        if (!v->external) {
            fputs(", \"data\": ", f);
            write_data(f, v->dtype, v->data, (int64_t)(v->nbytes / fu_dtype_size(v->dtype)));
        }
        fputc('}', f);
    }
    fputs("\n  ],\n  \"nodes\": [", f);
    first = 1;
    for (int k = 0; k < g->n_nodes; k++) {
        const fu_node *n = &g->nodes[k];
        if (n->dead) continue;
        fputs(first ? "\n    {\"name\": " : ",\n    {\"name\": ", f);
        first = 0;
        write_str(f, n->name);
        fputs(", \"op\": ", f);
        write_str(f, n->op);
        fputs(", \"inputs\": [", f);
        for (int i = 0; i < n->n_in; i++) {
            fputs(i ? ", " : "", f);
            write_str(f, n->in[i] >= 0 ? g->values[n->in[i]].name : "");
        }
        fputs("], \"outputs\": [", f);
        for (int i = 0; i < n->n_out; i++) {
            fputs(i ? ", " : "", f);
            write_str(f, g->values[n->out[i]].name);
        }
        fputc(']', f);
        if (n->n_attrs) {
            fputs(", \"attrs\": {", f);
            for (int a = 0; a < n->n_attrs; a++) {
                fputs(a ? ", " : "", f);
                write_attr(f, &n->attrs[a]);
            }
            fputc('}', f);
        }
        fputc('}', f);
    }
    fputs("\n  ],\n  \"value_info\": [", f);
    first = 1;
    for (int k = 0; k < g->n_nodes; k++) {
        const fu_node *n = &g->nodes[k];
        if (n->dead) continue;
        for (int o = 0; o < n->n_out; o++) {
            const fu_value *v = &g->values[n->out[o]];
            if (v->rank < 0 || v->dtype == FU_UNDEF) continue;
            fputs(first ? "\n    {\"name\": " : ",\n    {\"name\": ", f);
            first = 0;
            write_str(f, v->name);
            fprintf(f, ", \"dtype\": \"%s\", \"shape\": ", fu_dtype_name(v->dtype));
            write_shape(f, g, v->rank, v->shape);
            fputc('}', f);
        }
    }
    fputs("\n  ]\n}\n", f);
    free(uses);
    if (ferror(f)) return fu_fail(err, "%s: write error", path);
    return 0;
}

/* ---- Graphviz ------------------------------------------------------------ */

/* A label for inside dot's double quotes: printable ASCII kept, quotes and
 * backslashes escaped, anything else shown as '?'. */
static void dot_escape(const char *s, char *buf, size_t n) {
    size_t j = 0;
    for (; *s && j + 3 < n; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[j++] = '\\';
            buf[j++] = (char)c;
        } else {
            buf[j++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
        }
    }
    buf[j] = 0;
}

static void value_label(const fu_graph *g, const fu_value *v, char *out, size_t n) {
    char buf[256];
    size_t len = (size_t)snprintf(buf, sizeof buf, "%s", v->rank >= 0 ? fu_dtype_name(v->dtype) : "?");
    if (v->rank >= 0) {
        len += (size_t)snprintf(buf + len, sizeof buf - len, " [");
        for (int i = 0; i < v->rank && len < sizeof buf; i++) {
            char d[64];
            fu_dim_str(g, v->shape[i], d, sizeof d);
            len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", i ? "," : "", d);
        }
        if (len < sizeof buf) snprintf(buf + len, sizeof buf - len, "]");
    }
    dot_escape(buf, out, n);
}

int fu_ir_write_dot(const fu_graph *g, FILE *f, fu_err *err) {
    char name[256], op[128], shape[512];
    dot_escape(g->name ? g->name : "model", name, sizeof name);
    fprintf(f, "digraph \"%s\" {\n  node [fontname=\"Helvetica\", fontsize=10];\n"
               "  edge [fontname=\"Helvetica\", fontsize=8];\n", name);
    for (int i = 0; i < g->n_inputs; i++) {
        const fu_value *v = &g->values[g->inputs[i]];
        dot_escape(v->name, name, sizeof name);
        value_label(g, v, shape, sizeof shape);
        fprintf(f, "  v%d [shape=ellipse, style=filled, fillcolor=\"#dde8ff\", label=\"%s\\n%s\"];\n",
                g->inputs[i], name, shape);
    }
    for (int k = 0; k < g->n_nodes; k++) {
        const fu_node *n = &g->nodes[k];
        if (n->dead) continue;
        dot_escape(n->name, name, sizeof name);
        dot_escape(n->op, op, sizeof op);
        fprintf(f, "  n%d [shape=box, label=\"%s\\n%s\"];\n", k, op, name);
    }
    int *uses = fu_graph_use_counts(g);
    if (!uses) return fu_fail(err, "%s: out of memory", g->path ? g->path : "model");
    for (int i = 0; i < g->n_values; i++) {
        const fu_value *v = &g->values[i];
        if (v->kind != FU_VAL_CONST || !uses[i]) continue;
        dot_escape(v->name, name, sizeof name);
        fprintf(f, "  v%d [shape=note, fontsize=8, label=\"%s\"];\n", i, name);
    }
    free(uses);
    for (int k = 0; k < g->n_nodes; k++) {
        const fu_node *n = &g->nodes[k];
        if (n->dead) continue;
        for (int i = 0; i < n->n_in; i++) {
            int vi = n->in[i];
            if (vi < 0) continue;
            const fu_value *v = &g->values[vi];
            value_label(g, v, shape, sizeof shape);
            if (v->producer >= 0 && !g->nodes[v->producer].dead)
                fprintf(f, "  n%d -> n%d [label=\"%s\"];\n", v->producer, k, shape);
            else if (v->kind != FU_VAL_NODE)
                fprintf(f, "  v%d -> n%d [label=\"%s\"];\n", vi, k, shape);
        }
    }
    for (int i = 0; i < g->n_outputs; i++) {
        const fu_value *v = &g->values[g->outputs[i]];
        dot_escape(v->name, name, sizeof name);
        value_label(g, v, shape, sizeof shape);
        fprintf(f, "  out%d [shape=ellipse, style=filled, fillcolor=\"#ddffdd\", label=\"%s\"];\n",
                i, name);
        if (v->producer >= 0)
            fprintf(f, "  n%d -> out%d [label=\"%s\"];\n", v->producer, i, shape);
        else
            fprintf(f, "  v%d -> out%d [label=\"%s\"];\n", g->outputs[i], i, shape);
    }
    fputs("}\n", f);
    if (ferror(f)) return fu_fail(err, "%s: write error", g->path ? g->path : "model");
    return 0;
}
