"""Writes a fusec JSON IR model as an ONNX model (Debian python3-onnx).

fusec's IR follows ONNX operator semantics (opset 18 conventions: axes of
the Reduce ops as an input), so nodes map one to one. Inline initializers
become ONNX tensors; initializers that live in the model's safetensors file
become ONNX external data pointing at their byte ranges in that same file,
so the weights are never copied. This is the exporter-style graph ONNX
Runtime runs side by side with fusec in `make bench`; it reads nothing of
fusec's code.

Run: /usr/bin/python3 scripts/ir_to_onnx.py MODEL.json [-o MODEL.onnx]
"""
import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import safetensors_np  # noqa: E402

OPSET = 18
IR_VERSION = 8
ONNX_DTYPE = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16,
              "int64": TensorProto.INT64, "int32": TensorProto.INT32, "bool": TensorProto.BOOL}
NUMPY_DTYPE = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32, "bool": np.bool_}
SAFETENSORS_DTYPE = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32",
                     "BOOL": "bool"}


def json_number(v):
    if isinstance(v, str):    # "inf", "-inf", "nan" in the IR
        return float(v)
    return v


def inline_tensor(init):
    dtype = init["dtype"]
    if dtype == "bfloat16":
        bits = safetensors_np.f32_to_bf16_bits(np.array([json_number(v) for v in init["data"]], np.float32))
        t = helper.make_tensor(init["name"], TensorProto.BFLOAT16, init["shape"], bits.tobytes(), raw=True)
        return t
    values = np.array([json_number(v) for v in init["data"]], dtype=NUMPY_DTYPE[dtype]).reshape(init["shape"])
    return numpy_helper.from_array(values, init["name"])


def external_tensor(init, header, data_start, location):
    info = header.get(init["name"])
    if info is None:
        raise SystemExit(f"initializer '{init['name']}' is not in {location}")
    if SAFETENSORS_DTYPE.get(info["dtype"]) != init["dtype"] or list(info["shape"]) != list(init["shape"]):
        raise SystemExit(f"initializer '{init['name']}': the model and {location} disagree on dtype or shape")
    begin, end = info["data_offsets"]
    t = TensorProto()
    t.name = init["name"]
    t.data_type = ONNX_DTYPE[init["dtype"]]
    t.dims.extend(init["shape"])
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(data_start + begin)), ("length", str(end - begin))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


def value_info(io, symbols):
    dims = [d if isinstance(d, int) else str(d) for d in io["shape"]]
    del symbols
    return helper.make_tensor_value_info(io["name"], ONNX_DTYPE[io["dtype"]], dims)


def convert(model_path, onnx_path):
    model_path = Path(model_path)
    ir = json.loads(model_path.read_text())
    header, data_start = {}, 0
    location = ir.get("weights")
    if location:
        weights = model_path.parent / location
        header, data_start = safetensors_np.read_header(weights)
        # external data is resolved relative to the .onnx file
        location = os.path.relpath(weights, Path(onnx_path).resolve().parent)
    inits = []
    for init in ir.get("initializers", []):
        if "data" in init:
            inits.append(inline_tensor(init))
        else:
            inits.append(external_tensor(init, header, data_start, location))
    nodes = [helper.make_node(n["op"], n["inputs"], n["outputs"], name=n["name"], **n.get("attrs", {}))
             for n in ir["nodes"]]
    symbols = ir.get("symbols", {})
    graph = helper.make_graph(nodes, ir.get("name", "model"),
                              [value_info(i, symbols) for i in ir["inputs"]],
                              [value_info(o, symbols) for o in ir["outputs"]], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="fusec scripts/ir_to_onnx.py")
    model.ir_version = IR_VERSION
    model.doc_string = ir.get("doc_string", "")
    partial = Path(str(onnx_path) + ".partial")
    partial.write_bytes(model.SerializeToString())
    os.replace(partial, onnx_path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="fusec JSON IR model")
    ap.add_argument("-o", "--out", help="ONNX file to write (default: beside the model, .onnx)")
    args = ap.parse_args()
    out = Path(args.out) if args.out else Path(args.model).with_suffix(".onnx")
    convert(args.model, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
