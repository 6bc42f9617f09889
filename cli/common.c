/* What the command files share (cli/cli.h): messages, options, files. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli.h"

/* ---- messages -------------------------------------------------------------- */

static void put_char_escaped(FILE *f, unsigned char c) {
    char one[2] = {(char)c, 0}, e[8];
    fu_escape(one, e, sizeof e);
    fputs(e, f);
}

void put_safe(FILE *f, const char *s) {
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c >= 0x7f) put_char_escaped(f, c);
        else fputc(c, f);
    }
}

void put_name(FILE *f, const char *s) {
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c >= 0x7f || c == '\\') put_char_escaped(f, c);
        else fputc(c, f);
    }
}

/* "fusec: message\n" on stderr, the message through put_safe. */
static void message(const char *fmt, va_list ap) {
    char *text = NULL;
    fputs("fusec: ", stderr);
    if (vasprintf(&text, fmt, ap) >= 0) put_safe(stderr, text);
    else fputs("(out of memory formatting a message)", stderr);
    free(text);
    fputc('\n', stderr);
}

int fail(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    message(fmt, ap);
    va_end(ap);
    return status;
}

int usage(const char *command, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    message(fmt, ap);
    va_end(ap);
    if (command)
        fprintf(stderr, "Run `fusec %s --help` for its options.\n", command);
    else
        fprintf(stderr, "Run `fusec --help` for the commands.\n");
    return EXIT_USAGE;
}

/* ---- argument parsing ------------------------------------------------------ */

int option_value(int argc, char **argv, int *i, const char *name, const char *short_name,
                        const char **value) {
    const char *arg = argv[*i];
    size_t n = strlen(name);
    if (strncmp(arg, name, n) == 0 && arg[n] == '=') {
        *value = arg + n + 1;
        return 1;
    }
    if (strcmp(arg, name) != 0 && !(short_name && strcmp(arg, short_name) == 0)) return 0;
    if (*i + 1 >= argc) return -1;
    *value = argv[++*i];
    return 1;
}

int is_help(const char *arg) { return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0; }

/* ---- files ----------------------------------------------------------------- */

int atomic_open(atomic_file *a, const char *path) {
    a->path = path;
    a->f = NULL;
    size_t n = strlen(path) + 16;
    if (!(a->tmp = malloc(n))) return -1;
    snprintf(a->tmp, n, "%s.tmpXXXXXX", path);
    int fd = mkstemp(a->tmp);
    if (fd < 0 || fchmod(fd, 0644) != 0 || !(a->f = fdopen(fd, "w"))) {
        if (fd >= 0) {
            close(fd);
            unlink(a->tmp);
        }
        free(a->tmp);
        a->tmp = NULL;
        return -1;
    }
    return 0;
}

void atomic_abort(atomic_file *a) {
    if (a->f) fclose(a->f);
    if (a->tmp) unlink(a->tmp);
    free(a->tmp);
    a->f = NULL;
    a->tmp = NULL;
}

int atomic_commit(atomic_file *a) {
    int ok = fflush(a->f) == 0 && !ferror(a->f);
    ok &= fclose(a->f) == 0;
    a->f = NULL;
    if (ok) ok = rename(a->tmp, a->path) == 0;
    if (!ok) unlink(a->tmp);
    free(a->tmp);
    a->tmp = NULL;
    return ok ? 0 : -1;
}

int write_text_atomic(const char *path, const char *text) {
    atomic_file a;
    if (atomic_open(&a, path) != 0) return -1;
    if (fputs(text, a.f) < 0) {
        atomic_abort(&a);
        return -1;
    }
    return atomic_commit(&a);
}

/* ---- shared steps ---------------------------------------------------------- */

/* fu_compile, its error on stderr. */
int compile_model(const char *path, const fu_compile_opts *o, fu_compile_result *r) {
    fu_err err = {{0}};
    if (fu_compile(path, o, r, &err) == 0) return 0;
    fail(EXIT_USER, "%s", err.msg);
    return -1;
}
