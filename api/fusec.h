/* fusec public C API: load a model, bind inputs, run, read outputs.
 *
 * A model is either a JSON IR file (compiled in-process by libtcc, or built
 * into a cached shared library by gcc when backend is "aot") or a shared
 * library made by `fusec compile`. Each loaded model owns its arena and its
 * last error; two models may run in two threads. One model must not be run
 * from two threads at once. */
#ifndef FUSEC_H
#define FUSEC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    FUSEC_FLOAT32 = 1,
    FUSEC_FLOAT16 = 2,
    FUSEC_BFLOAT16 = 3,
    FUSEC_INT64 = 4,
    FUSEC_INT32 = 5,
    FUSEC_BOOL = 6,
} fusec_dtype;

/* A tensor given by the caller: its values are read, not kept. */
typedef struct {
    const char *name;
    fusec_dtype dtype;
    int rank;
    const int64_t *shape;
    const void *data;
} fusec_tensor;

typedef struct {
    const char *profile;    /* "fast" (default) or "bare" */
    const char *backend;    /* "jit" (default) or "aot" (for a .json model) */
    const char *cache_dir;  /* AOT build cache and packed weights; default $FUSEC_CACHE_DIR, else
                               $XDG_CACHE_HOME/fusec, else ~/.cache/fusec. Must be private: a real
                               directory (not a symlink) owned by you, not group/other-writable
                               (created 0755 when missing); else aot refuses it and the packed
                               weights go to memory (docs/security.md) */
    int verbose;            /* print compile steps to stderr */
    const char *precision;  /* matmul precision: "f32" (default) or "bf16" (activations rounded to
                               bfloat16 and weights packed as bfloat16; AVX512-BF16 dot products) */
    int allow_external_weights; /* a .json model's weights path may be absolute or lead out of the
                                   model file's folder (by default it must resolve inside it) */
    const char *sym_max;    /* a .onnx model's symbolic dims (dim_param) and their upper bounds,
                               "seq=256,batch=4" */
    const fusec_tensor *known_inputs; /* input values known before compiling: an input whose values
                                         decide shapes (a Reshape target, Slice bounds, Range
                                         bounds...) is compiled in with them, and is then no longer an
                                         input of the loaded model; the others are ignored */
    int n_known_inputs;
    const char *weights;    /* the weights file of a compiled library (LIB.so); default: the file of
                               the recorded name beside the library, else the path it was compiled
                               with. Any copy with the same content binds (header hash and size, and
                               the bytes of the tensors whose values the code holds) */
} fusec_options;

typedef struct fusec_model fusec_model;

/* Progress lines on stderr for slow steps (a gcc build, packing weights):
 * "fusec: building ... with gcc -O3 ..." once a step has taken a second,
 * then how long it took. Off by default. */
void fusec_progress(int on);

/* Loads and compiles a model. On failure returns NULL and writes a message
 * naming the file and reason into err (if errlen > 0). */
fusec_model *fusec_load(const char *path, const fusec_options *opts, char *err, size_t errlen);
void fusec_free(fusec_model *m);

int fusec_num_inputs(const fusec_model *m);
int fusec_num_outputs(const fusec_model *m);
const char *fusec_input_name(const fusec_model *m, int i);
const char *fusec_output_name(const fusec_model *m, int i);
fusec_dtype fusec_input_dtype(const fusec_model *m, int i);
fusec_dtype fusec_output_dtype(const fusec_model *m, int i);
/* Input (output) i's shape: its rank, each dim's upper bound (a dim that
 * depends on symbols, e.g. "seq", at the symbols' bounds) and, if text is
 * given, the shape as text with the symbols named ("[seq, 8]"). The maximum
 * rank is 8. Returns 0, or -1 for a bad index. */
int fusec_input_shape(const fusec_model *m, int i, int *rank, int64_t *max_dims, char *text, size_t textlen);
int fusec_output_shape(const fusec_model *m, int i, int *rank, int64_t *max_dims, char *text, size_t textlen);
/* The model's symbols (symbolic dims) and their upper bounds. */
int fusec_num_symbols(const fusec_model *m);
const char *fusec_symbol_name(const fusec_model *m, int i);
int64_t fusec_symbol_max(const fusec_model *m, int i);
/* The file the model's weights come from, or NULL when it has none. */
const char *fusec_weights_path(const fusec_model *m);
/* 1 when input `name` of the model file was compiled in with the value
 * given in fusec_options.known_inputs (or `fusec compile --specialize`):
 * it is no longer an input; else 0. */
int fusec_input_compiled_in(const fusec_model *m, const char *name);

/* Binds input `name`. The data is not copied: it must stay valid until
 * fusec_run returns. Returns 0, or -1 with fusec_last_error set. */
int fusec_set_input(fusec_model *m, const char *name, fusec_dtype dtype, int rank,
                    const int64_t *shape, const void *data);
/* Runs the model on the bound inputs. Returns 0 or -1. */
int fusec_run(fusec_model *m);
/* Output `name` of the last run: dtype, rank, shape (up to 8 dims) and a
 * pointer valid until the next run or fusec_free. Returns 0 or -1. */
int fusec_get_output(fusec_model *m, const char *name, fusec_dtype *dtype, int *rank,
                     int64_t *shape, const void **data);
/* Last error of this model, "" if none. */
const char *fusec_last_error(const fusec_model *m);
/* Bytes of the model's activation arena. */
int64_t fusec_arena_bytes(const fusec_model *m);

/* How a model was loaded. */
typedef struct {
    double code_ms;           /* compiling (IR, passes, C, tcc or gcc) or finding and loading the library */
    double weights_ms;        /* mapping the weights file and the packed copies (packing them when built now) */
    int packed_weights;       /* matmul weights read in a packed layout */
    int64_t packed_bytes;     /* their size */
    int packed_built;         /* packed during this load (else mapped from the cache and checked) */
    int packed_in_memory;     /* the cache could not be written, or is not private: packed into memory */
    const char *packed_path;  /* the packed-weights file in the cache ("" if none) */
    const char *gemm_variant; /* the GEMM micro-kernels in use: avx512bf16, avx512, avx2 or portable */
} fusec_load_info;
/* Fills info (pointers valid until fusec_free). Returns 0 or -1. */
int fusec_get_load_info(const fusec_model *m, fusec_load_info *info);

/* ---- per-node profile ------------------------------------------------------
 * While profiling is on for a model, each of its fusec_run calls times every
 * node it executes (one record per node with code; the ops of an elementwise
 * loop group share one record) and the whole forward. It is a property of
 * that model only: another model, or the same code loaded twice, is not
 * affected. While off, runs read no clock at all. */
typedef struct {
    int node;              /* index of the node in the planned graph */
    const char *name;      /* its name as in the model file (a loop group: its last node) */
    const char *op;        /* op kind: "FusedMatMul", "Attention", ...; "Loop:Add" for a loop group */
    int ops;               /* ops the record covers: 1, or the members of a loop group */
    double total_ms;       /* summed over the profiled runs */
} fusec_profile_node;

/* Turns profiling on (clearing earlier records) or off (keeping them).
 * Returns 0, or -1 when the compiled code cannot be profiled (a library
 * built by a fusec without profiling: compile it again). */
int fusec_profile_enable(fusec_model *m, int on);
/* Number of records (0 before profiling was first enabled). */
int fusec_profile_count(const fusec_model *m);
/* Record i, in execution order. Returns 0, or -1 when i is out of range. */
int fusec_profile_get(const fusec_model *m, int i, fusec_profile_node *out);
/* Profiled runs since profiling was enabled (every fusec_run that reached
 * the compiled code), and their summed wall time in that code, in ms. */
int fusec_profile_runs(const fusec_model *m, int64_t *runs, double *total_ms);

#ifdef __cplusplus
}
#endif
#endif
