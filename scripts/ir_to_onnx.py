#!/usr/bin/python3
"""Writes a fusec JSON IR model as an ONNX model (Debian python3-onnx).

fusec's IR follows ONNX operator semantics (opset 18: the axes of the
Reduce ops are an input), so every node maps one to one onto an ONNX node:
the result is the composed graph exactly as the JSON IR has it, as an
exporter writes it, with nothing fused. Inline initializers become ONNX
tensors; initializers that live in the model's safetensors file become ONNX
external data pointing at their byte ranges in that same file, so the
weights are never copied. Keep the .onnx file in the directory of the
safetensors file: ONNX Runtime resolves external data relative to the model
and refuses locations outside its directory. This is the model ONNX Runtime
runs side by side with fusec in `make bench`; it reads nothing of fusec's
code.

Run: /usr/bin/python3 scripts/ir_to_onnx.py MODEL.json [-o MODEL.onnx]
"""
import argparse
import json
import numbers
import os
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import safetensors_np  # noqa: E402

OPSET = 18
IR_VERSION = 8        # the IR version that goes with opset 18
ONNX_DTYPE = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16,
              "int64": TensorProto.INT64, "int32": TensorProto.INT32, "bool": TensorProto.BOOL}
NUMPY_DTYPE = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32, "bool": np.bool_}
SAFETENSORS_DTYPE = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32",
                     "BOOL": "bool"}
NON_FINITE = {"inf": float("inf"), "-inf": float("-inf"), "nan": float("nan")}


class ConvertError(Exception):
    pass


def number(v):
    """A JSON number, or one of the strings the IR uses for non-finite floats."""
    if isinstance(v, str):
        if v not in NON_FINITE:
            raise ConvertError(f"'{v}' is not a number")
        return NON_FINITE[v]
    return v


def flat(data):
    """Inline data may be nested lists with the right total count."""
    if isinstance(data, list):
        return [x for item in data for x in flat(item)]
    return [data]


def inline_tensor(name, dtype, shape, data):
    values = [number(v) for v in flat(data)]
    if len(values) != int(np.prod(shape, dtype=np.int64)):
        raise ConvertError(f"tensor '{name}': {len(values)} values for shape {shape}")
    if dtype == "bfloat16":   # numpy has no bfloat16: store the rounded bits
        bits = safetensors_np.f32_to_bf16_bits(np.array(values, np.float32))
        return helper.make_tensor(name, TensorProto.BFLOAT16, shape, bits.astype("<u2").tobytes(), raw=True)
    if dtype not in NUMPY_DTYPE:
        raise ConvertError(f"tensor '{name}': unknown dtype '{dtype}'")
    return numpy_helper.from_array(np.array(values, dtype=NUMPY_DTYPE[dtype]).reshape(shape), name)


def external_tensor(init, header, data_start, location):
    """An ONNX tensor whose data is bytes [begin, end) of the safetensors file."""
    name = init["name"]
    info = header.get(name)
    if info is None:
        raise ConvertError(f"initializer '{name}' is not in the weights file")
    if SAFETENSORS_DTYPE.get(info["dtype"]) != init["dtype"] or list(info["shape"]) != list(init["shape"]):
        raise ConvertError(f"initializer '{name}': the model says {init['dtype']} {init['shape']}, "
                           f"the weights file {info['dtype']} {info['shape']}")
    begin, end = info["data_offsets"]
    t = TensorProto()
    t.name = name
    t.data_type = ONNX_DTYPE[init["dtype"]]
    t.dims.extend(init["shape"])
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(data_start + begin)), ("length", str(end - begin))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


def attribute(node_name, key, value):
    """An ONNX attribute from its JSON form; the JSON type picks the kind
    as in docs/ir.md (1 is INT, 1.0 is FLOAT, [] is INTS)."""
    if isinstance(value, bool):
        return helper.make_attribute(key, int(value))
    if isinstance(value, dict):
        if set(value) == {"float"}:
            return helper.make_attribute(key, number(value["float"]))
        if {"dtype", "shape", "data"} <= set(value):
            return helper.make_attribute(key, inline_tensor("", value["dtype"], value["shape"], value["data"]))
        raise ConvertError(f"node '{node_name}': attribute '{key}' has an unknown form")
    if isinstance(value, list):
        # built by hand: onnx 1.12's make_attribute cannot type an empty list
        a = AttributeProto()
        a.name = key
        if all(isinstance(v, numbers.Integral) for v in value):
            a.type = AttributeProto.INTS
            a.ints.extend(int(v) for v in value)
        else:
            a.type = AttributeProto.FLOATS
            a.floats.extend(float(number(v)) for v in value)
        return a
    if isinstance(value, (numbers.Integral, float, str)):
        return helper.make_attribute(key, value)
    raise ConvertError(f"node '{node_name}': attribute '{key}' has an unknown form")


def value_info(io):
    """Symbolic dims ("seq", "2*seq") become ONNX dim_params of that text."""
    if "dtype" not in io:
        return helper.make_empty_tensor_value_info(io["name"])
    shape = io.get("shape")
    dims = None if shape is None else [d if isinstance(d, int) else str(d) for d in shape]
    return helper.make_tensor_value_info(io["name"], ONNX_DTYPE[io["dtype"]], dims)


def to_onnx(model_path, onnx_path):
    """The ModelProto of JSON IR model_path, to be written at onnx_path."""
    model_path = Path(model_path)
    ir = json.loads(model_path.read_text())
    header, data_start, location = {}, 0, None
    if ir.get("weights"):
        weights = model_path.parent / ir["weights"]
        header, data_start = safetensors_np.read_header(weights)
        # external data locations are relative to the directory of the .onnx file
        location = os.path.relpath(os.path.abspath(weights), os.path.dirname(os.path.abspath(onnx_path)))
    inits = []
    for init in ir.get("initializers", []):
        if "data" in init:
            inits.append(inline_tensor(init["name"], init["dtype"], init["shape"], init["data"]))
        elif location is None:
            raise ConvertError(f"initializer '{init['name']}' has no data and the model names no weights file")
        else:
            inits.append(external_tensor(init, header, data_start, location))
    nodes = []
    for i, n in enumerate(ir["nodes"]):
        name = n.get("name", f"node_{i}")
        if not onnx.defs.has(n["op"]):
            raise ConvertError(f"node '{name}': '{n['op']}' is not an ONNX operator (a fused op? convert "
                               "the model as written, before fusec's passes)")
        node = helper.make_node(n["op"], n["inputs"], n["outputs"], name=name)
        node.attribute.extend(attribute(name, k, v) for k, v in n.get("attrs", {}).items())
        nodes.append(node)
    graph = helper.make_graph(nodes, ir.get("name", "model"),
                              [value_info(i) for i in ir["inputs"]],
                              [value_info(o) for o in ir["outputs"]], inits,
                              value_info=[value_info(v) for v in ir.get("value_info", [])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="fusec scripts/ir_to_onnx.py")
    model.ir_version = IR_VERSION
    model.doc_string = ir.get("doc_string", "")
    return model


def convert(model_path, onnx_path):
    """Writes onnx_path atomically (a partial file, then a rename). Not run
    through onnx.checker: Debian's onnx 1.12 knows opsets up to 17 only and
    would judge opset 18's ReduceMean (axes as an input) by opset 13's rules.
    scripts/check_onnx_router.py checks the result by running it."""
    model = to_onnx(model_path, onnx_path)
    partial = Path(str(onnx_path) + ".partial")
    partial.write_bytes(model.SerializeToString())
    os.replace(partial, onnx_path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="fusec JSON IR model")
    ap.add_argument("-o", "--out", help="ONNX file to write (default: beside the model, .onnx)")
    args = ap.parse_args()
    out = Path(args.out) if args.out else Path(args.model).with_suffix(".onnx")
    try:
        convert(args.model, out)
    except (ConvertError, OSError, ValueError, KeyError) as e:
        sys.exit(f"ir_to_onnx: {args.model}: {e}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
