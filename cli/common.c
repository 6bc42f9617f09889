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

void model_opts_init(model_opts *m) {
    memset(m, 0, sizeof *m);
    m->profile = FU_PROFILE_FAST;
    m->precision = FU_PRECISION_F32;
}

int model_option(const char *command, int argc, char **argv, int *i, model_opts *m, int specialize) {
    const char *value;
    int r;
    if ((r = option_value(argc, argv, i, "--profile", NULL, &value))) {
        if (r < 0) return usage(command, "%s needs a value", argv[*i]), -1;
        if (fu_profile_parse(value, &m->profile)) return usage(command, "unknown profile '%s' (bare or fast)", value), -1;
        m->profile_given = 1;
    } else if ((r = option_value(argc, argv, i, "--precision", NULL, &value))) {
        if (r < 0) return usage(command, "%s needs a value", argv[*i]), -1;
        if (fu_precision_parse(value, &m->precision))
            return usage(command, "unknown precision '%s' (f32 or bf16)", value), -1;
    } else if ((r = option_value(argc, argv, i, "--max", NULL, &value))) {
        if (r < 0) return usage(command, "%s needs a value", argv[*i]), -1;
        size_t used = strlen(m->sym_max);
        const char *eq = strchr(value, '=');
        char *end = NULL;
        if (eq && eq != value) strtoll(eq + 1, &end, 10);
        if (!end || end == eq + 1 || *end || strchr(value, ',') || used + strlen(value) + 2 > sizeof m->sym_max)
            return usage(command, "--max wants NAME=N, got '%s'", value), -1;
        snprintf(m->sym_max + used, sizeof m->sym_max - used, "%s%s", used ? "," : "", value);
    } else if (specialize && (r = option_value(argc, argv, i, "--specialize", NULL, &value))) {
        if (r < 0) return usage(command, "%s needs a value", argv[*i]), -1;
        if (!strchr(value, '=') || *value == '=')
            return usage(command, "--specialize wants NAME=FILE.npy or NAME=[values], got '%s'", value), -1;
        if (m->n_specialize == MAX_SPECIALIZE_ARGS)
            return usage(command, "more than %d --specialize options", MAX_SPECIALIZE_ARGS), -1;
        m->specialize[m->n_specialize++] = value;
    } else if (strcmp(argv[*i], "--allow-external-weights") == 0) {
        m->allow_external = 1;
    } else if (strcmp(argv[*i], "-v") == 0 || strcmp(argv[*i], "--verbose") == 0) {
        m->verbose = 1;
    } else {
        return 0;
    }
    return 1;
}

fu_compile_opts model_compile_opts(const model_opts *m, fu_target target) {
    return (fu_compile_opts){.target = target, .profile = m->profile, .precision = m->precision,
                             .verbose = m->verbose, .allow_external_weights = m->allow_external,
                             .sym_max = m->sym_max[0] ? m->sym_max : NULL};
}

/* ---- input values ------------------------------------------------------------ */

/* VALUE of NAME=VALUE: a JSON array or scalar if it looks like one (a path
 * like 3.npy is not a number: a scalar must parse in full), else an .npy
 * file. JSON is read as dtype t. */
int read_value_arg(const char *value, fu_dtype t, fu_array *out, fu_err *err) {
    const char *p = value;
    while (*p == ' ') p++;
    char *number_end;
    strtod(p, &number_end);
    int is_number = number_end != p && strspn(number_end, " ") == strlen(number_end);
    int is_json = *p == '[' || is_number || strcmp(p, "true") == 0 || strcmp(p, "false") == 0;
    return is_json ? fu_array_from_json(value, t, out, err) : fu_npy_read(value, out, err);
}

int known_inputs_read(const char *const *args, int n, int tolerant, known_inputs *out) {
    memset(out, 0, sizeof *out);
    out->known = calloc((size_t)n + 1, sizeof *out->known);
    out->arrays = calloc((size_t)n + 1, sizeof *out->arrays);
    out->names = calloc((size_t)n + 1, sizeof *out->names);
    if (!out->known || !out->arrays || !out->names) {
        known_inputs_free(out);
        return fail(EXIT_USER, "out of memory"), -1;
    }
    for (int k = 0; k < n; k++) {
        const char *eq = strchr(args[k], '=');
        fu_err err = {0};
        fu_array *a = &out->arrays[out->n];
        if (!eq || eq == args[k] || read_value_arg(eq + 1, FU_I64, a, &err) != 0) {
            if (tolerant) continue;
            fail(EXIT_USER, "%s: %s", args[k], eq && eq != args[k] ? err.msg : "wants NAME=VALUE");
            known_inputs_free(out);
            return -1;
        }
        if (!(out->names[out->n] = strndup(args[k], (size_t)(eq - args[k])))) {
            fu_array_free(a);
            known_inputs_free(out);
            return fail(EXIT_USER, "out of memory"), -1;
        }
        out->known[out->n] = (fu_known_input){out->names[out->n], a->dtype, a->rank, a->shape, a->data};
        out->n++;
    }
    return 0;
}

void known_inputs_free(known_inputs *k) {
    for (int i = 0; i < k->n; i++) {
        free(k->names[i]);
        fu_array_free(&k->arrays[i]);
    }
    free(k->known);
    free(k->arrays);
    free(k->names);
    memset(k, 0, sizeof *k);
}

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
    fu_err err = {0};
    if (fu_compile(path, o, r, &err) == 0) return 0;
    fail(EXIT_USER, "%s", err.msg);
    return -1;
}
