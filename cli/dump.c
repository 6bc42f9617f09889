/* fusec dump MODEL.json: the graph after a pass (JSON IR or dot), or the
 * fusion report. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "../ir/json_ir.h"
#include "../passes/fusion.h"

const char help_dump[] =
    "usage: fusec dump MODEL.json [options]\n"
    "\n"
    "Loads the model, runs the pipeline up to a pass and writes the graph.\n"
    "The JSON output is a model that fusec reads again.\n"
    "\n"
    "options:\n"
    "  --after PASS                stop after this pass (default: the whole pipeline);\n"
    "                              `load` means no pass at all\n"
    "  --format json|dot           JSON IR (default) or a Graphviz digraph\n"
    "  --explain-fusions           instead of the graph, report what the fusion rules did:\n"
    "                              per rule the fused count, each fused anchor node and\n"
    "                              what it became, each near miss and why it did not fuse;\n"
    "                              likewise row pruning (prune_rows: the nodes that now compute\n"
    "                              only selected rows, where each row selection stops and why)\n"
    "                              (runs the whole fast pipeline)\n"
    "  -o, --output FILE           write to FILE (atomically) instead of stdout\n"
    MODEL_OPTIONS_HELP
    "  -h, --help                  this text\n";


/* The --explain-fusions report: rules in the order they first appear in the
 * log, each with its counts, then every fused anchor and every near miss. */
static void print_fusion_report(FILE *f, const char *model, const fu_fusion_log *log) {
    fputs("fusion report for ", f);
    put_safe(f, model);
    fputc('\n', f);
    if (log->n == 0) {
        fputs("no fusion rule matched anything (nothing fused, no near misses)\n", f);
        return;
    }
    fputs("\nrule                 fused  near misses\n", f);
    for (int i = 0; i < log->n; i++) {
        int seen = 0;
        for (int k = 0; k < i && !seen; k++) seen = strcmp(log->events[k].rule, log->events[i].rule) == 0;
        if (seen) continue;
        const char *rule = log->events[i].rule;
        fprintf(f, "%-20s %5d  %11d\n", rule, fu_fusion_log_count(log, rule, 1), fu_fusion_log_count(log, rule, 0));
    }
    for (int fused = 1; fused >= 0; fused--) {
        int count = fu_fusion_log_count(log, NULL, fused);
        fprintf(f, "\n%s (%d):\n", fused ? "fused" : "near misses", count);
        if (count == 0) fputs("  none\n", f);
        for (int i = 0; i < log->n; i++) {
            const fu_fusion_event *ev = &log->events[i];
            if (ev->fused != fused) continue;
            fprintf(f, "  %-20s node '", ev->rule);
            put_safe(f, ev->node);  /* sanitised by the pass; control characters never reach the terminal */
            fprintf(f, "'%s ", fused ? " ->" : ":");
            put_safe(f, ev->reason);
            fputc('\n', f);
        }
    }
}

/* Runs the fast pipeline with a fusion log and writes the report to f. */
static int explain_fusions(const char *model, const model_opts *mo, FILE *f) {
    fu_fusion_log log = {0};
    fu_compile_opts copts = model_compile_opts(mo, FU_TARGET_GRAPH);
    copts.profile = FU_PROFILE_FAST;
    copts.fusion_log = &log;
    fu_compile_result r;
    int rc = compile_model(model, &copts, &r);
    fu_compile_result_free(&r);
    if (rc != 0) {
        fu_fusion_log_free(&log);
        return EXIT_USER;
    }
    print_fusion_report(f, model, &log);
    fu_fusion_log_free(&log);
    return EXIT_OK;
}

int cmd_dump(int argc, char **argv) {
    const char *model = NULL, *after = NULL, *format = "json", *out_path = NULL, *value;
    model_opts mo;
    model_opts_init(&mo);
    int explain = 0;
    for (int i = 0; i < argc; i++) {
        int r;
        if (is_help(argv[i])) {
            fputs(help_dump, stdout);
            return EXIT_OK;
        } else if ((r = option_value(argc, argv, &i, "--after", NULL, &value))) {
            if (r < 0) return usage("dump", "%s needs a value", argv[i]);
            after = value;
        } else if ((r = option_value(argc, argv, &i, "--format", NULL, &value))) {
            if (r < 0) return usage("dump", "%s needs a value", argv[i]);
            if (strcmp(value, "json") != 0 && strcmp(value, "dot") != 0)
                return usage("dump", "unknown format '%s' (json or dot)", value);
            format = value;
        } else if ((r = option_value(argc, argv, &i, "--output", "-o", &value))) {
            if (r < 0) return usage("dump", "%s needs a value", argv[i]);
            out_path = value;
        } else if ((r = model_option("dump", argc, argv, &i, &mo, 0))) {
            if (r < 0) return EXIT_USAGE;
        } else if (strcmp(argv[i], "--explain-fusions") == 0) {
            explain = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage("dump", "unknown option '%s'", argv[i]);
        } else if (!model) {
            model = argv[i];
        } else {
            return usage("dump", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!model) return usage("dump", "no model given");
    if (explain && (after || (mo.profile_given && mo.profile != FU_PROFILE_FAST)))
        return usage("dump", "--explain-fusions runs the whole fast pipeline (no --after, no --profile bare)");
    fu_err err = {0};
    if (after && fu_pass_check_stop(mo.profile, after, &err) != 0) return usage("dump", "%s", err.msg);

    if (explain) {
        atomic_file a = {0};
        FILE *f = stdout;
        if (out_path) {
            if (atomic_open(&a, out_path) != 0) return fail(EXIT_USER, "cannot write %s: %s", out_path, strerror(errno));
            f = a.f;
        }
        int status = explain_fusions(model, &mo, f);
        if (out_path) {
            if (status != EXIT_OK) atomic_abort(&a);
            else if (atomic_commit(&a) != 0) return fail(EXIT_USER, "cannot write %s: %s", out_path, strerror(errno));
        } else if (status == EXIT_OK && fflush(stdout) != 0) {
            return fail(EXIT_USER, "cannot write the output: %s", strerror(errno));
        }
        return status;
    }

    fu_compile_opts copts = model_compile_opts(&mo, FU_TARGET_GRAPH);
    copts.stop_after = after;
    fu_compile_result r;
    if (compile_model(model, &copts, &r) != 0) return EXIT_USER;
    fu_graph *g = r.graph;
    atomic_file a = {0};
    FILE *f = stdout;
    if (out_path) {
        if (atomic_open(&a, out_path) != 0) {
            fu_graph_free(g);
            return fail(EXIT_USER, "cannot write %s: %s", out_path, strerror(errno));
        }
        f = a.f;
    }
    int rc = strcmp(format, "dot") == 0 ? fu_ir_write_dot(g, f, &err) : fu_ir_write(g, f, &err);
    fu_graph_free(g);
    if (rc != 0) {
        if (out_path) atomic_abort(&a);
        return fail(EXIT_USER, "%s", err.msg);
    }
    if (out_path && atomic_commit(&a) != 0) return fail(EXIT_USER, "cannot write %s: %s", out_path, strerror(errno));
    if (!out_path && fflush(stdout) != 0) return fail(EXIT_USER, "cannot write the output: %s", strerror(errno));
    return EXIT_OK;
}

