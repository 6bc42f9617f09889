/* Opening the files a user or a model names (docs/security.md, "Paths and
 * files").
 *
 * Every file fusec reads from user or model input (the model JSON, its
 * weights, .npy inputs) is opened here: only a regular file is accepted, and
 * it is opened with O_NONBLOCK first so a FIFO or a device never blocks the
 * caller (O_NONBLOCK is cleared once fstat has shown a regular file).
 *
 * A path a model names (its "weights") is resolved inside the model file's
 * folder: absolute paths, ".." and symlinks that lead out of it are refused
 * unless the caller opts in (fusec --allow-external-weights,
 * fusec_options.allow_external_weights). */
#ifndef FUSEC_FILES_H
#define FUSEC_FILES_H

#include <sys/stat.h>
#include "ir.h"

/* Opens `path` read-only; it must be a regular file. Returns a blocking,
 * close-on-exec fd (and fills *st if given), or -1 with err set to
 * "<path>: cannot open <what>: <reason>". */
int fu_open_regular(const char *path, const char *what, struct stat *st, fu_err *err);

/* Opens `rel`, a path named inside the model file `model_path` (NULL: a
 * model in the current folder), relative to the model's folder. Unless
 * allow_external, the file must lie inside that folder once every symlink
 * is resolved: openat2(RESOLVE_BENEATH) where the kernel has it, else
 * realpath and a prefix check, then an O_NOFOLLOW open of the checked
 * path. Then as fu_open_regular. *resolved (if given) receives the file's
 * real path (malloc'd). Messages name the model file and `what`. */
int fu_open_model_file(const char *model_path, const char *rel, int allow_external, const char *what,
                       char **resolved, struct stat *st, fu_err *err);

#endif
