/* What json-c lets through that the JSON IR, the safetensors header and
 * JSON-array inputs must not hold. json-c (even with JSON_TOKENER_STRICT)
 * keeps the last of two equal keys, saturates integers beyond 64 bits,
 * reads 1e400 as inf and accepts NaN / Infinity literals; a string with
 * \u0000 reads as a shorter C string. fu_json_check scans the same text
 * once more and reports the first of these, so a model means one thing. */
#ifndef FUSEC_JSON_CHECK_H
#define FUSEC_JSON_CHECK_H

#include <stddef.h>

typedef struct {
    size_t offset;     /* byte offset of the offending token */
    int line, column;  /* 1-based, of the same */
    char path[256];    /* where: "nodes[3].attrs.axis"; "" at the top level */
    char reason[256];  /* "duplicate key \"op\"" */
} fu_json_issue;

/* Checks text[0, len) (one JSON value, as accepted by json-c in strict
 * mode) for duplicate keys within an object (compared after unescaping),
 * NaN / Infinity literals, numbers a double cannot hold, integer literals
 * outside int64 and \u0000 in strings. Returns 0 when clean, else -1 with
 * *issue filled. Text json-c would reject is reported as malformed, never
 * read past len. */
int fu_json_check(const char *text, size_t len, fu_json_issue *issue);

#endif
