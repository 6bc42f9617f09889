/* fusec IR: the in-memory graph that every pass reads and rewrites.
 *
 * A graph owns a table of values (tensors: graph inputs, initializers and
 * node outputs) and a list of nodes in topological order. Values and nodes
 * refer to each other by index, never by pointer, so the tables may grow.
 *
 * Dimensions are monomials over the graph's symbols (coef * prod sym^pow),
 * which is enough to carry a symbolic sequence length through reshapes,
 * flattens and products while keeping static dims as plain constants. */
#ifndef FUSEC_IR_H
#define FUSEC_IR_H

#include <stddef.h>
#include <stdint.h>

#define FU_MAX_RANK 8
#define FU_MAX_SYMS 8
#define FU_ERR_LEN 1024
/* Largest element count accepted for any tensor: guards against absurd
 * sizes (a dim of 10^12) before anything is allocated. */
#define FU_MAX_NUMEL ((int64_t)1 << 34)

typedef enum {
    FU_UNDEF = 0,
    FU_F32,
    FU_F16,
    FU_BF16,
    FU_I64,
    FU_I32,
    FU_BOOL,
} fu_dtype;

const char *fu_dtype_name(fu_dtype t);        /* "float32", ... */
fu_dtype fu_dtype_from_name(const char *s);   /* FU_UNDEF if unknown */
size_t fu_dtype_size(fu_dtype t);             /* bytes per element */
int fu_dtype_is_float(fu_dtype t);            /* f32, f16, bf16 */

/* Half-precision conversions (round to nearest even; a NaN stays a quiet
 * NaN with its sign and top payload bits): runtime/numerics.h, the same
 * bits as the runtime and generated code compute. */
float fu_f16_to_f32(uint16_t h);
uint16_t fu_f32_to_f16(float f);
float fu_bf16_to_f32(uint16_t h);
uint16_t fu_f32_to_bf16(float f);

/* Error sink: every fallible function takes one and fills msg. */
typedef struct {
    char msg[FU_ERR_LEN];
    /* 1 + the index of a value whose elements inference needed and did not
     * know (a Reshape target fed by a graph input...), else 0: lets the
     * compiler name the graph inputs that decide shapes. */
    int needs_values;
} fu_err;

/* Sets err->msg (printf-style) and returns -1, so callers can write
 * `return fu_fail(err, "...")`. */
int fu_fail(fu_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- dims ---------------------------------------------------------- */

typedef struct {
    int64_t coef;               /* constant factor; a static dim has pow all 0 */
    uint8_t pow[FU_MAX_SYMS];   /* power of each graph symbol */
} fu_dim;

fu_dim fu_dim_const(int64_t c);
fu_dim fu_dim_sym(int sym);
int fu_dim_is_const(fu_dim d);
int fu_dim_eq(fu_dim a, fu_dim b);
fu_dim fu_dim_mul(fu_dim a, fu_dim b);
/* a / b when exact (b's powers <= a's and coef divides); returns -1 if not. */
int fu_dim_div(fu_dim a, fu_dim b, fu_dim *out);
/* Value of d with the given symbol values. */
int64_t fu_dim_eval(fu_dim d, const int64_t *sym_values);
/* Writes d as text: "64", "seq", "2*seq", "seq^2" (sym names from graph). */
struct fu_graph;
void fu_dim_str(const struct fu_graph *g, fu_dim d, char *buf, size_t n);

/* ---- attributes ---------------------------------------------------- */

typedef enum { FU_ATTR_INT, FU_ATTR_FLOAT, FU_ATTR_INTS, FU_ATTR_FLOATS, FU_ATTR_STRING, FU_ATTR_TENSOR } fu_attr_kind;

typedef struct {
    char *name;
    fu_attr_kind kind;
    int64_t i;
    double f;
    int n;            /* length of ints / floats */
    int64_t *ints;
    double *floats;
    char *s;
    /* FU_ATTR_TENSOR (e.g. ConstantOfShape's value): dtype, shape, raw data */
    fu_dtype t_dtype;
    int t_rank;
    int64_t t_shape[FU_MAX_RANK];
    void *t_data;     /* malloc'd, numel * dtype_size bytes */
} fu_attr;

/* ---- values and nodes --------------------------------------------- */

typedef enum {
    FU_VAL_INPUT,         /* graph input, bound by the caller */
    FU_VAL_CONST,         /* initializer: inline data or from the weights file */
    FU_VAL_NODE,          /* produced by a node */
} fu_val_kind;

typedef enum {
    FU_STORE_NONE = 0,    /* not materialised (a scalar inside a fused loop) */
    FU_STORE_ARENA,       /* arena + offset */
    FU_STORE_INPUT,       /* caller's input buffer */
    FU_STORE_WEIGHT,      /* memory-mapped weights file */
    FU_STORE_EMBEDDED,    /* constant data embedded in the generated code */
    FU_STORE_ALIAS,       /* same bytes as value alias_of (Reshape & co.) */
} fu_storage;

typedef struct fu_value {
    char *name;
    fu_val_kind kind;
    fu_dtype dtype;
    int rank;             /* -1 until inferred */
    fu_dim shape[FU_MAX_RANK];
    int producer;         /* node index, -1 for inputs and constants */
    int is_output;        /* listed in graph outputs */

    /* Graph outputs may declare dtype/shape in the model file; fu_infer
     * checks the inferred result against them. decl_rank -1: none given. */
    fu_dtype decl_dtype;
    int decl_rank;
    fu_dim decl_shape[FU_MAX_RANK];

    /* FU_VAL_CONST: data is either owned (inline / folded constants) or
     * points into the mapped weights file (owns_data == 0). */
    void *data;
    size_t nbytes;
    int owns_data;
    int external;         /* data comes from the weights file */

    /* Shape-value propagation for small int64 tensors (Shape, Range's
     * limit, Reshape's target...): each element as a dim, when known. */
    int n_known;          /* 0 = unknown; else element count */
    fu_dim *known;

    /* Filled by the memory plan. */
    fu_storage storage;
    int64_t offset;       /* FU_STORE_ARENA: byte offset */
    int alias_of;         /* FU_STORE_ALIAS: value index */
    int index;            /* input / weight / embedded-constant slot */
} fu_value;

struct fu_op;

typedef struct fu_node {
    char *name;
    char *op;
    int op_id;            /* fu_op_id of op (ir/op_ids.h), -1 for an unknown op; set with op */
    const struct fu_op *def;   /* resolved by inference */
    int n_in, n_out;
    int *in;              /* value indices; -1 for an omitted optional input ("") */
    int *out;
    int n_attrs;
    fu_attr *attrs;
    int dead;             /* removed by a pass; compacted by fu_graph_compact */
    int loop_group;       /* plan: elementwise nodes sharing one loop; -1 if none */
} fu_node;

typedef struct fu_graph {
    char *name;
    char *path;           /* model file, for error messages */
    char *weights_path;   /* resolved path of the safetensors file (or of the ONNX
                           * model holding the weights), or NULL */
    int weights_allow_external;  /* the weights may lie outside the model's folder */
    /* Graph inputs whose given values the code holds (compiler/specialize.h),
     * by name: kept here, as passes may fold the constants away. */
    int n_compiled_in;
    char **compiled_in;

    int n_syms;
    char *sym_names[FU_MAX_SYMS];
    int64_t sym_max[FU_MAX_SYMS];

    int n_values, cap_values;
    fu_value *values;
    int n_nodes, cap_nodes;
    fu_node *nodes;
    int n_inputs, n_outputs;
    int *inputs;          /* value indices, in declaration order */
    int *outputs;

    struct fu_weights *weights;  /* mapped safetensors, or NULL */
    char profile[8];             /* "bare" or "fast": set by the pass manager */
    char precision[8];           /* matmul precision "f32" or "bf16": set by the pass manager */
    int64_t arena_bytes;         /* filled by the memory plan */
    int n_loop_groups;
    /* Packed weights (plan): the weights that matmuls read in a packed
     * layout (attribute packed_weight), one slot per (weight, layout), in
     * w[] after the raw weights: slot i is w[n_raw_weights + i]. */
    int n_raw_weights;
    int n_packed;
    struct fu_packed_slot {
        int value;          /* the weight */
        int bf16;           /* layout: bfloat16 pairs (else float32) */
        int transposed;     /* the weight is stored [K, N] (else [N, K]) */
    } *packed;
    /* Value names -> indices (ir/graph.c): kept by fu_graph_add_value and
     * fu_graph_compact; values added another way are indexed lazily. */
    struct fu_name_index *names;
} fu_graph;

fu_graph *fu_graph_new(const char *name);
void fu_graph_free(fu_graph *g);

/* Adds a value (name copied); returns its index or -1 on a duplicate name. */
/* Adds an owned constant value (data copied) named after base; returns its
 * index, or -1 (err set) when out of memory. */
int fu_graph_add_const(fu_graph *g, const char *base, fu_dtype t, int rank, const int64_t *shape, const void *data,
                       fu_err *err);
int fu_graph_add_value(fu_graph *g, const char *name, fu_val_kind kind);
/* Index of the value named name, -1 if none: a hash lookup. */
int fu_graph_find_value(const fu_graph *g, const char *name);
/* A fresh, unused value name derived from base ("base", "base_1", ...);
 * repeated calls with one base resume where the last one stopped. */
char *fu_graph_unique_name(const fu_graph *g, const char *base);
/* Appends a node; inputs/outputs are value indices. Returns node index. */
int fu_graph_add_node(fu_graph *g, const char *name, const char *op,
                      int n_in, const int *in, int n_out, const int *out);
/* Drops dead nodes and unreferenced non-input values, keeping order. */
void fu_graph_compact(fu_graph *g);
/* Reorders nodes topologically; fails naming a node on a cycle. */
int fu_graph_toposort(fu_graph *g, fu_err *err);
/* Deep copy (weights mapping shared via fu_weights_retain). */
fu_graph *fu_graph_clone(const fu_graph *g);

/* Per-value consumer counts (graph outputs count as a use); caller frees. */
int *fu_graph_use_counts(const fu_graph *g);

int64_t fu_value_numel_max(const fu_graph *g, const fu_value *v); /* symbols at max */
int fu_value_numel_const(const fu_value *v, int64_t *out);        /* 0 if static */

/* Attribute helpers. Getters return the default when absent. */
const fu_attr *fu_node_attr(const fu_node *n, const char *name);
int64_t fu_attr_int(const fu_node *n, const char *name, int64_t dflt);
double fu_attr_float(const fu_node *n, const char *name, double dflt);
const char *fu_attr_string(const fu_node *n, const char *name, const char *dflt);
fu_attr *fu_node_set_attr_int(fu_node *n, const char *name, int64_t v);
fu_attr *fu_node_set_attr_float(fu_node *n, const char *name, double v);
fu_attr *fu_node_set_attr_string(fu_node *n, const char *name, const char *v);
fu_attr *fu_node_set_attr_ints(fu_node *n, const char *name, int count, const int64_t *v);
void fu_attr_free(fu_attr *a);

/* Copies into a value's constant data (owned); converts from doubles. */
int fu_value_set_data(fu_value *v, const void *bytes, size_t nbytes);

/* Element i of a constant value, as double / int64 (any dtype). */
double fu_const_get_f(const fu_value *v, int64_t i);
int64_t fu_const_get_i(const fu_value *v, int64_t i);

/* "model.json: node 'name' (Op): " prefix for error messages. */
int fu_node_fail(fu_err *err, const fu_graph *g, const fu_node *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Sanitises a model-supplied string for a C comment or a message:
 * [A-Za-z0-9_.:/ -] survive; control characters and bytes >= 0x80 are
 * shown escaped (\n, \t, \r, \x1b), other punctuation becomes '?'; the text
 * is cut to fit buf (never inside an escape). Never lets a comment
 * terminator or a terminal control sequence through. */
void fu_sanitize(const char *s, char *buf, size_t n);
/* fu_sanitize into a value, for a model-supplied string in a message:
 * fu_safe(name).s (NULL reads as ""). */
typedef struct {
    char s[128];
} fu_safe_str;
fu_safe_str fu_safe(const char *s);
/* Escapes a model-supplied string for a terminal, keeping it readable:
 * printable ASCII is kept, a backslash is doubled, control characters
 * and bytes >= 0x80 are shown as \n, \t, \r, \xNN; cut to fit buf
 * (never inside an escape). */
void fu_escape(const char *s, char *buf, size_t n);
/* Keeps every printable ASCII character (backslash too) and escapes only
 * control characters and bytes >= 0x80: for whole messages whose names
 * were already sanitised, so they never carry terminal controls. */
void fu_escape_controls(const char *s, char *buf, size_t n);

#endif
