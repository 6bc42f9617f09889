/* The fusec command line (cli/): what the command files share. Every
 * message goes to stderr as "fusec: ...". */
#ifndef FUSEC_CLI_H
#define FUSEC_CLI_H

#include <stdio.h>
#include "../compiler/driver.h"
#include "../ir/npy.h"

enum { EXIT_OK = 0, EXIT_USER = 1, EXIT_USAGE = 2 };

/* Prints "fusec: message" and returns status. */
int fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "fusec: message" and where to find the command's options (command
 * NULL: the commands); returns EXIT_USAGE. */
int usage(const char *command, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Text from a model or a user never reaches the terminal raw: put_safe
 * writes s with control characters and bytes >= 0x80 escaped (\n, \x1b),
 * backslashes kept (for messages, whose names fu_sanitize already escaped);
 * put_name also doubles backslashes (fu_escape: for a name printed alone). */
void put_safe(FILE *f, const char *s);
void put_name(FILE *f, const char *s);

/* Matches option `name` (or its short form) at argv[*i], taking its value
 * from "--name=VALUE" or the next argument. Returns 1 on a match, 0 if
 * argv[*i] is another option, -1 if the value is missing. */
int option_value(int argc, char **argv, int *i, const char *name, const char *short_name, const char **value);
int is_help(const char *arg);

/* Options of every command that loads a model (run, compile, dump, info,
 * import), parsed in one place; MODEL_OPTIONS_HELP is their help text. */
#define MAX_SPECIALIZE_ARGS 64
typedef struct {
    fu_profile profile;
    int profile_given;
    fu_precision precision;
    int verbose;
    int allow_external;
    char sym_max[1024];                             /* --max NAME=N ..., joined "a=1,b=2" */
    const char *specialize[MAX_SPECIALIZE_ARGS];    /* --specialize NAME=VALUE (compile) */
    int n_specialize;
} model_opts;
#define MODEL_OPTIONS_HELP                                                                              \
    "  --profile bare|fast         pass pipeline (default fast)\n"                                    \
    "  --precision f32|bf16        matmul precision (default f32); bf16 rounds activations\n"         \
    "                              to bfloat16 against bfloat16-packed weights (fast profile)\n"     \
    "  --max NAME=N                upper bound of an ONNX model's symbolic dim NAME (dim_param)\n"   \
    "  --allow-external-weights    the model's weights (a weights file, ONNX external data) may be\n" \
    "                              outside its folder (absolute, .., or a symlink out; refused\n"     \
    "                              by default)\n"                                                      \
    "  -v, --verbose               one line per pass and the compile steps on stderr\n"

void model_opts_init(model_opts *m);
/* Consumes argv[*i] (and its value) when it is a model option, and returns
 * 1; --specialize only when `specialize` is set. Returns 0 for anything
 * else, and -1 after printing the usage message for a bad value (exit
 * EXIT_USAGE). */
int model_option(const char *command, int argc, char **argv, int *i, model_opts *m, int specialize);
/* The compile options they stand for (no known inputs). */
fu_compile_opts model_compile_opts(const model_opts *m, fu_target target);

/* NAME=VALUE arguments read as input values: VALUE is a JSON array or
 * scalar (read as int64) or an .npy file. With `tolerant`, arguments that
 * do not read are left out (fusec run: only integer inputs can decide
 * shapes); else the first one that fails is an error on stderr. */
typedef struct {
    int n;
    fu_known_input *known;
    fu_array *arrays;
    char **names;
} known_inputs;
/* Reads VALUE (see above; JSON as dtype t) into *out. */
int read_value_arg(const char *value, fu_dtype t, fu_array *out, fu_err *err);
int known_inputs_read(const char *const *args, int n, int tolerant, known_inputs *out);
void known_inputs_free(known_inputs *k);

/* A file written to a temp name next to its target and renamed into place
 * on commit, so readers never see half a file. */
typedef struct {
    FILE *f;
    char *tmp;
    const char *path;
} atomic_file;

int atomic_open(atomic_file *a, const char *path);
void atomic_abort(atomic_file *a);
int atomic_commit(atomic_file *a);
int write_text_atomic(const char *path, const char *text);

/* fu_compile, its error on stderr. */
int compile_model(const char *path, const fu_compile_opts *o, fu_compile_result *r);

/* The commands (cli/<command>.c) and their help texts. */
int cmd_compile(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_dump(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_export(int argc, char **argv);
extern const char help_compile[], help_run[], help_dump[], help_info[], help_import[], help_export[];

#endif
