/* Graph inputs whose values decide shapes (a Reshape target, Slice bounds,
 * an Expand shape, Range bounds...): compiled in as constants when their
 * values are known before compiling (fusec run knows its inputs; fusec
 * compile takes --specialize NAME=VALUE): compiler/specialize.c. */
#ifndef FUSEC_SPECIALIZE_H
#define FUSEC_SPECIALIZE_H

#include "../ir/ir.h"

/* A graph input's value, known before compiling. */
typedef struct {
    const char *name;
    fu_dtype dtype;
    int rank;
    const int64_t *shape;
    const void *data;
} fu_known_input;

/* Infers g. Where inference needs the values of a value computed from graph
 * inputs, those inputs that are in known[] become constants holding their
 * values, and inference runs again; with `always`, every known input
 * becomes a constant first. An input that needs values and is not known is
 * an error naming it, the node that needs it and how to give it. *variant
 * (malloc'd, may be "") describes what was compiled in, for cache keys. */
int fu_specialize(fu_graph *g, const fu_known_input *known, int n_known, int always, char **variant, fu_err *err);

#endif
