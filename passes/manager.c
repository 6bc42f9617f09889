/* The pass manager: the table of named passes and the pipeline of each
 * profile. Every pass that rewrites the graph is followed by shape
 * inference, so the next pass always sees valid shapes and producers. */
#include <stdio.h>
#include <string.h>
#include "passes.h"
#include "../ops/infer.h"

/* Every pass by name (a new pass goes here and into a pipeline below). */
static const fu_pass all_passes[] = {
    {"infer", "resolve ops, check the graph, infer dtypes and shapes", fu_pass_infer},
    {"fold", "evaluate nodes whose inputs are all constants", fu_pass_fold},
    {"cse", "merge identical nodes and identical constants", fu_pass_cse},
    {"fuse", "replace norm, rope, attention, swiglu and matmul+bias subgraphs by fused nodes; read bf16 weights in place", fu_pass_fuse},
    {"prune_rows", "move row selections (Gather/Slice of one axis) above row-wise ops, so they compute only the rows that are read", fu_pass_prune_rows},
    {"pack", "choose the packed weight layout of each matmul against a weight (bf16 with --precision bf16)", fu_pass_pack},
    {"dce", "remove nodes and initializers nothing uses", fu_pass_dce},
    {"plan", "loop groups, value storage and the arena memory plan", fu_pass_plan},
};

/* Pipelines by pass name, NULL-terminated. */
static const char *const bare_pipeline[] = {"infer", "fold", "cse", "dce", "plan", NULL};
static const char *const fast_pipeline[] = {
    "infer", "fold", "cse",
    "fuse",        /* rewrites the cleaned graph; dce then drops what it replaced */
    "prune_rows",  /* after fuse: moves selections through fused ops (attention, rope, norms) */
    "pack",        /* after fusion: the weight_cast rule decides which weights matmuls read */
    "dce", "plan", NULL,
};

const fu_pass *fu_pass_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof all_passes / sizeof all_passes[0]; i++)
        if (strcmp(all_passes[i].name, name) == 0) return &all_passes[i];
    return NULL;
}

/* Fills up to max entries; returns the pipeline's full length. */
int fu_pipeline(fu_profile p, const fu_pass **passes, int max) {
    const char *const *names = p == FU_PROFILE_FAST ? fast_pipeline : bare_pipeline;
    int n = 0;
    for (int i = 0; names[i]; i++) {
        const fu_pass *pass = fu_pass_find(names[i]);
        if (!pass) continue;  /* cannot happen: both tables live in this file */
        if (n < max) passes[n] = pass;
        n++;
    }
    return n;
}

int fu_precision_parse(const char *s, fu_precision *out) {
    if (s && strcmp(s, "f32") == 0) *out = FU_PRECISION_F32;
    else if (s && strcmp(s, "bf16") == 0) *out = FU_PRECISION_BF16;
    else return -1;
    return 0;
}

int fu_profile_parse(const char *s, fu_profile *out) {
    if (s && strcmp(s, "fast") == 0) *out = FU_PROFILE_FAST;
    else if (s && strcmp(s, "bare") == 0) *out = FU_PROFILE_BARE;
    else return -1;
    return 0;
}

int fu_pass_infer(fu_graph *g, const fu_pass_opts *o, fu_err *err) {
    (void)o;
    return fu_infer(g, err);
}

/* Inference itself and the plan leave the node list as it was. */
static int pass_rewrites_graph(const fu_pass *p) {
    return p->run != fu_pass_infer && p->run != fu_pass_plan;
}

static int live_nodes(const fu_graph *g) {
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++) n += !g->nodes[i].dead;
    return n;
}

#define MAX_PIPELINE 32

int fu_pass_check_stop(fu_profile p, const char *name, fu_err *err) {
    const fu_pass *passes[MAX_PIPELINE];
    int n = fu_pipeline(p, passes, MAX_PIPELINE);
    if (n > MAX_PIPELINE) n = MAX_PIPELINE;
    if (name && strcmp(name, "load") == 0) return 0;
    for (int i = 0; name && i < n; i++)
        if (strcmp(passes[i]->name, name) == 0) return 0;
    char names[512] = "load";
    for (int i = 0; i < n; i++) {
        size_t len = strlen(names);
        snprintf(names + len, sizeof names - len, ", %s", passes[i]->name);
    }
    char shown[128];
    fu_sanitize(name ? name : "", shown, sizeof shown);
    return fu_fail(err, "unknown pass '%s' (passes: %s)", shown, names);
}

int fu_run_pipeline(fu_graph *g, const fu_pass_opts *o, const char *stop_after, fu_err *err) {
    fu_pass_opts defaults = {.profile = FU_PROFILE_FAST, .precision = FU_PRECISION_F32};
    if (!o) o = &defaults;
    if (stop_after && strcmp(stop_after, "load") == 0) return 0;   /* no pass at all */
    if (o->precision == FU_PRECISION_BF16 && o->profile != FU_PROFILE_FAST)
        return fu_fail(err, "precision bf16 needs the fast profile (the bare profile runs the graph as exported)");
    if (stop_after && fu_pass_check_stop(o->profile, stop_after, err)) return -1;
    const fu_pass *passes[MAX_PIPELINE];
    int n = fu_pipeline(o->profile, passes, MAX_PIPELINE);
    if (n > MAX_PIPELINE) n = MAX_PIPELINE;

    /* The emitter records the profile in the model's metadata. */
    snprintf(g->profile, sizeof g->profile, "%s", o->profile == FU_PROFILE_FAST ? "fast" : "bare");
    snprintf(g->precision, sizeof g->precision, "%s", o->precision == FU_PRECISION_BF16 ? "bf16" : "f32");
    for (int i = 0; i < n; i++) {
        int before = live_nodes(g);
        if (passes[i]->run(g, o, err)) return -1;
        if (pass_rewrites_graph(passes[i]) && fu_infer(g, err)) {
            fu_err inner = *err;
            return fu_fail(err, "after pass %s: %s", passes[i]->name, inner.msg);
        }
        if (o->verbose)
            fprintf(stderr, "pass %s: %d nodes -> %d nodes\n", passes[i]->name, before,
                    live_nodes(g));
        if (stop_after && strcmp(passes[i]->name, stop_after) == 0) break;
    }
    return 0;
}
