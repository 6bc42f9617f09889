#!/usr/bin/python3
"""ONNX reader fixtures (fixtures/onnx/<case>/): small ONNX models built with
Debian's python3-onnx, their inputs and numpy golden outputs, for
tests/cli/test_onnx.sh. Each case holds model.onnx, <input>.npy,
expected_<output>.npy and `args` (extra fusec run options, may be empty);
the case `unsupported` holds only model.onnx.

Usage: /usr/bin/python3 scripts/gen_onnx_fixtures.py [OUT_DIR]"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "fixtures", "onnx")
rng = np.random.default_rng(10)
F = TensorProto.FLOAT


def model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def vi(name, shape, t=F):
    return helper.make_tensor_value_info(name, t, shape)


def save(case, m, feeds=None, expected=None, args=""):
    d = os.path.join(OUT, case)
    os.makedirs(d, exist_ok=True)
    onnx.save(m, os.path.join(d, "model.onnx"))
    for k, v in (feeds or {}).items():
        np.save(os.path.join(d, k + ".npy"), v)
    for k, v in (expected or {}).items():
        np.save(os.path.join(d, "expected_" + k + ".npy"), v)
    with open(os.path.join(d, "args"), "w") as f:
        f.write(args + "\n")


def float_data_tensor(name, a):
    """An initializer in the typed float_data field (not raw_data)."""
    return helper.make_tensor(name, F, a.shape, a.flatten().tolist(), raw=False)


x = rng.standard_normal((4, 8)).astype(np.float32)
w1 = rng.standard_normal((8, 16)).astype(np.float32) * 0.3
b1 = rng.standard_normal((16,)).astype(np.float32)
w2 = rng.standard_normal((16, 5)).astype(np.float32) * 0.3
b2 = rng.standard_normal((5,)).astype(np.float32)
mlp_nodes = [
    helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
    helper.make_node("Add", ["h", "b1"], ["hb"], name="add1"),
    helper.make_node("Relu", ["hb"], ["r"], name="relu"),
    helper.make_node("MatMul", ["r", "w2"], ["o"], name="mm2"),
    helper.make_node("Add", ["o", "b2"], ["y"], name="add2"),
]
y_mlp = np.maximum(x @ w1 + b1, 0) @ w2 + b2

# MLP, initializers in raw_data (numpy_helper) / in float_data
save("mlp_raw", model(mlp_nodes, [vi("x", [4, 8])], [vi("y", [4, 5])],
                      [numpy_helper.from_array(a, n) for n, a in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2))]),
     {"x": x}, {"y": y_mlp})
save("mlp_float_data", model(mlp_nodes, [vi("x", [4, 8])], [vi("y", [4, 5])],
                             [float_data_tensor(n, a) for n, a in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2))],
                             opset=13),
     {"x": x}, {"y": y_mlp})

# Constant nodes in their attribute forms
c = rng.standard_normal((4, 8)).astype(np.float32)
const_nodes = [
    helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(c, "c")),
    helper.make_node("Constant", [], ["s"], value_float=0.5),
    helper.make_node("Constant", [], ["v"], value_floats=[1.0, -2.0, 3.0, 0.25, 1.5, -1.0, 2.0, 0.0]),
    helper.make_node("Constant", [], ["shp"], value_ints=[8, 4]),
    helper.make_node("Mul", ["x", "c"], ["m"]),
    helper.make_node("Mul", ["m", "s"], ["ms"]),
    helper.make_node("Add", ["ms", "v"], ["a"]),
    helper.make_node("Reshape", ["a", "shp"], ["y"]),
]
save("constant", model(const_nodes, [vi("x", [4, 8])], [vi("y", [8, 4])]),
     {"x": x}, {"y": (x * c * 0.5 + np.array([1, -2, 3, 0.25, 1.5, -1, 2, 0], np.float32)).reshape(8, 4)})

# ReduceSum (axes as input, opset 13); ReduceMean axes as attribute (opset 13)
# and as input (opset 18)
x3 = rng.standard_normal((2, 3, 4)).astype(np.float32)
axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
save("reducesum_input", model([helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)],
                              [vi("x", [2, 3, 4])], [vi("y", [2, 4])], [axes], opset=13),
     {"x": x3}, {"y": x3.sum(axis=1)})
save("reducemean_attr", model([helper.make_node("ReduceMean", ["x"], ["y"], axes=[-1], keepdims=1)],
                              [vi("x", [2, 3, 4])], [vi("y", [2, 3, 1])], opset=13),
     {"x": x3}, {"y": x3.mean(axis=-1, keepdims=True)})
save("reducemean_input", model([helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=1)],
                               [vi("x", [2, 3, 4])], [vi("y", [2, 1, 4])], [axes], opset=18),
     {"x": x3}, {"y": x3.mean(axis=1, keepdims=True)})

# Squeeze / Unsqueeze with axes as inputs (opset 13+)
x4 = rng.standard_normal((3, 1, 4)).astype(np.float32)
save("squeeze_unsqueeze", model([
    helper.make_node("Squeeze", ["x", "ax1"], ["s"]),
    helper.make_node("Unsqueeze", ["s", "ax0"], ["u"]),
    helper.make_node("Relu", ["u"], ["y"])],
    [vi("x", [3, 1, 4])], [vi("y", [1, 3, 4])],
    [numpy_helper.from_array(np.array([1], np.int64), "ax1"), numpy_helper.from_array(np.array([0], np.int64), "ax0")],
    opset=13), {"x": x4}, {"y": np.maximum(x4.reshape(1, 3, 4), 0)})

# A symbolic input dim (dim_param 'seq'), bounded with --max seq=8
xs = rng.standard_normal((5, 8)).astype(np.float32)
save("dim_param", model(mlp_nodes, [vi("x", ["seq", 8])], [vi("y", ["seq", 5])],
                        [numpy_helper.from_array(a, n) for n, a in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2))]),
     {"x": xs}, {"y": np.maximum(xs @ w1 + b1, 0) @ w2 + b2}, args="--max seq=8")

# Ops fusec lacks: one failure listing every one with its count
save("unsupported", model([
    helper.make_node("Relu", ["x"], ["a"]),
    helper.make_node("Resize", ["a", "", "sc"], ["b"]),
    helper.make_node("HardSwish", ["b"], ["c"]),
    helper.make_node("HardSwish", ["c"], ["y"])],
    [vi("x", [1, 1, 2, 2])], [vi("y", [1, 1, 4, 4])],
    [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "sc")]))


def external(t, location, offset):
    """Moves an initializer's bytes to external data at `location`+offset
    (the caller writes the file); returns the bytes."""
    data = numpy_helper.to_array(t).tobytes()
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(len(data)))):
        e = t.external_data.add()
        e.key, e.value = k, v
    return data


# External data, mapped: w1 and b1 in weights.bin (b1 at a 4-byte aligned
# offset after a gap), w2 in data/w2.bin, and b2 at an odd offset (a
# misaligned float tensor, copied rather than mapped).
ext = [numpy_helper.from_array(a, n) for n, a in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2))]
d = os.path.join(OUT, "external_data")
os.makedirs(os.path.join(d, "data"), exist_ok=True)
blob = bytearray(external(ext[0], "weights.bin", 0))
blob += b"\0" * 12
off_b1 = len(blob)
blob += external(ext[1], "weights.bin", off_b1)
blob += b"\x7f"
off_b2 = len(blob)
blob += external(ext[3], "weights.bin", off_b2)
with open(os.path.join(d, "weights.bin"), "wb") as f:
    f.write(bytes(blob))
with open(os.path.join(d, "data", "w2.bin"), "wb") as f:
    f.write(b"\0" * 16 + external(ext[2], "data/w2.bin", 16))
save("external_data", model(mlp_nodes, [vi("x", [4, 8])], [vi("y", [4, 5])], ext, opset=18),
     {"x": x}, {"y": y_mlp})

# Initializers of 4 KiB and more (and a large Constant) are weights, not
# constants embedded in the generated code.
xl = rng.standard_normal((4, 64)).astype(np.float32)
wl = (rng.standard_normal((64, 64)) * 0.1).astype(np.float32)
cl = rng.standard_normal((32, 64)).astype(np.float32)
save("large_inline", model([
    helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(cl, "c")),
    helper.make_node("MatMul", ["x", "wl"], ["h"]),
    helper.make_node("ReduceSum", ["c", "ax0"], ["cs"], keepdims=1),
    helper.make_node("Add", ["h", "cs"], ["y"])],
    [vi("x", [4, 64])], [vi("y", [4, 64])],
    [numpy_helper.from_array(wl, "wl"), numpy_helper.from_array(np.array([0], np.int64), "ax0")], opset=13),
    {"x": xl}, {"y": xl @ wl + cl.sum(axis=0, keepdims=True)})

# Inputs whose values decide shapes (a Reshape target, Slice bounds): fusec
# run compiles them in with the values given; fusec compile wants
# --specialize (tests/cli/test_onnx.sh)
xsp = rng.standard_normal((4, 6)).astype(np.float32)
sp = {"x": xsp, "shape": np.array([6, 4], np.int64), "starts": np.array([1], np.int64),
      "ends": np.array([3], np.int64)}
save("specialize", model([
    helper.make_node("Reshape", ["x", "shape"], ["r"]),
    helper.make_node("Slice", ["r", "starts", "ends"], ["s"]),
    helper.make_node("Relu", ["s"], ["y"])],
    [vi("x", [4, 6]), vi("shape", [2], TensorProto.INT64), vi("starts", [1], TensorProto.INT64),
     vi("ends", [1], TensorProto.INT64)], [vi("y", None)], opset=18),
    sp, {"y": np.maximum(xsp.reshape(6, 4)[1:3], 0)})

# Hostile files (fixtures/onnx_hostile/<case>.onnx): each must give a clear
# error naming its reason (the line in expected.txt), never a crash or an
# output file. tests/cli/test_onnx.sh and tests/test_onnx.c read them.
H = os.path.join(os.path.dirname(OUT.rstrip("/")), "onnx_hostile")
os.makedirs(H, exist_ok=True)
expected = {}


def hostile(case, data, message):
    with open(os.path.join(H, case + ".onnx"), "wb") as f:
        f.write(data)
    expected[case] = message


def mlp_with(inits, nodes=mlp_nodes, outputs=None, opset=18):
    return model(nodes, [vi("x", [4, 8])], outputs or [vi("y", [4, 5])], inits, opset=opset)


good = mlp_with([numpy_helper.from_array(a, n) for n, a in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2))])
raw = good.SerializeToString()
hostile("truncated", raw[: len(raw) * 2 // 3], "not a valid ONNX model")
# field 7 (graph), length-delimited, claims 1,000,000 bytes of a short file
hostile("length_past_end", raw[:16] + b"\x3a\xc0\x84\x3d" + b"\x0a\x01x", "not a valid ONNX model")


def with_tensor(t):
    inits = [numpy_helper.from_array(a, n) for n, a in (("b1", b1), ("w2", w2), ("b2", b2))] + [t]
    return mlp_with(inits).SerializeToString()


huge = TensorProto(name="w1", data_type=F, dims=[1 << 40, 1 << 40])
hostile("huge_dims", with_tensor(huge), "initializer 'w1': dims are negative or too large")
for case, loc, off, msg in (
        ("external_negative_offset", "weights.bin", "-8", "external data offset '-8' is not a non-negative integer"),
        ("external_past_end", "weights.bin", "1000000", "external data [1000000, 1000512) is past the end of"),
        ("external_escapes_dotdot", "../onnx/external_data/weights.bin", "0", "outside the model's folder"),
        ("external_escapes_absolute", "/etc/passwd", "0", "path '/etc/passwd' is absolute"),
        ("external_missing", "no_such_file.bin", "0", "cannot open external data of initializer 'w1'")):
    t = numpy_helper.from_array(w1, "w1")
    external(t, loc, 0)
    for e in t.external_data:
        if e.key == "offset":
            e.value = off
    hostile(case, with_tensor(t), msg)
with open(os.path.join(H, "weights.bin"), "wb") as f:
    f.write(b"\0" * 600)
cycle = [helper.make_node("Relu", ["b"], ["a"], name="first"), helper.make_node("Relu", ["a"], ["b"], name="second"),
         helper.make_node("Add", ["a", "x"], ["y"], name="out")]
hostile("cycle", model(cycle, [vi("x", [4, 8])], [vi("y", [4, 8])]).SerializeToString(), "cycle")
dup = [helper.make_node("Relu", ["x"], ["y"], name="one"), helper.make_node("Neg", ["x"], ["y"], name="two")]
hostile("duplicate_output", model(dup, [vi("x", [4, 8])], [vi("y", [4, 8])]).SerializeToString(),
        "duplicate name 'y'")
with open(os.path.join(H, "expected.txt"), "w") as f:
    for case in sorted(expected):
        f.write(f"{case}|{expected[case]}\n")
