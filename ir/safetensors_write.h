/* Writes every constant of g with data (its own, or mapped from a weights
 * file or an ONNX model's external data) into a safetensors file at path:
 * ir/safetensors_write.c. */
#ifndef FUSEC_SAFETENSORS_WRITE_H
#define FUSEC_SAFETENSORS_WRITE_H

#include "ir.h"

int fu_safetensors_write(const fu_graph *g, const char *path, fu_err *err);
/* Only the weights the planned code reads through w[] (FU_STORE_WEIGHT):
 * the image fusec compile --embed-weights puts in a library. */
int fu_safetensors_write_code_weights(const fu_graph *g, const char *path, fu_err *err);

#endif
