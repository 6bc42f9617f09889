/* Reading back what fusec export writes: ir/onnx_fusec.h. */
#include <stdlib.h>
#include <string.h>
#include "onnx_fusec.h"

const char *fu_onnx_fusec_op(const char *domain, const char *op_type) {
    if (!domain || strcmp(domain, "fusec") != 0 || !op_type) return NULL;
    if (strcmp(op_type, "SwiGLU") == 0) return "SwiGLU";
    if (strncmp(op_type, "FusedMatMul", 11) == 0) return "FusedMatMul";
    return NULL;
}

/* FusedMatMul[_tA][_tB<rank>][_alpha<float bits hex>][_bias] */
int fu_onnx_fusec_attrs(fu_node *n, const char *op_type) {
    if (strncmp(op_type, "FusedMatMul", 11) != 0) return 0;
    const char *p = op_type + 11;
    while (*p == '_') {
        p++;
        if (strncmp(p, "tA", 2) == 0) {
            if (!fu_node_set_attr_int(n, "transA", 1)) return -1;
        } else if (strncmp(p, "tB", 2) == 0) {
            if (!fu_node_set_attr_int(n, "transB", 1)) return -1;
        } else if (strncmp(p, "alpha", 5) == 0) {
            uint32_t bits = (uint32_t)strtoul(p + 5, NULL, 16);
            float f;
            memcpy(&f, &bits, 4);
            if (!fu_node_set_attr_float(n, "alpha", f)) return -1;
        }
        p = strchr(p, '_');
        if (!p) break;
    }
    return 0;
}
