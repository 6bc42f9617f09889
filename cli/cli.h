/* The fusec command line (cli/): what the command files share. Every
 * message goes to stderr as "fusec: ...". */
#ifndef FUSEC_CLI_H
#define FUSEC_CLI_H

#include <stdio.h>
#include "../compiler/driver.h"

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
