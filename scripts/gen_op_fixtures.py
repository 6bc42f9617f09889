#!/usr/bin/python3
"""Writes the per-op golden fixtures under fixtures/ops/.

For every case: fixtures/ops/<case>/model.json (a small fusec JSON IR model,
format in docs/ir.md), <input>.npy for each graph input and
expected_<output>.npy for each graph output, plus fixtures/ops/index.json.

Expected values come from numpy code written here straight from the ONNX
operator definitions (opset 18): nothing is computed by fusec. Float math is
done in float64 and rounded once to the output dtype, so the goldens are as
exact as float32 allows. Deterministic: fixed seed, sorted output.

Tolerance in index.json is the allowed max |got - expected| (absolute; the
values are scaled so most outputs are O(1)); 0 means exact.

Run: /usr/bin/python3 scripts/gen_op_fixtures.py
"""
import json
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_np import bf16_bits_to_f32, f32_to_bf16_bits  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "ops"
INT64_MAX = 2**63 - 1

rng = np.random.default_rng(20240601)

DTYPE_NAMES = {
    np.dtype(np.float32): "float32",
    np.dtype(np.float16): "float16",
    np.dtype(np.int64): "int64",
    np.dtype(np.int32): "int32",
    np.dtype(np.bool_): "bool",
}
ONNX_TO = {"float32": 1, "float16": 10, "bfloat16": 16, "int64": 7, "int32": 6, "bool": 9}


# ---- model building helpers -------------------------------------------------

def json_scalar(v, dtype):
    if dtype in ("float32", "float16", "bfloat16"):
        v = float(v)
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if dtype == "bool":
        return int(bool(v))
    return int(v)


def const(name, values, dtype):
    """Initializer with inline data."""
    a = np.asarray(values)
    return {"name": name, "dtype": dtype, "shape": list(a.shape),
            "data": [json_scalar(v, dtype) for v in a.reshape(-1).tolist()]}


def i64(name, values):
    return const(name, np.asarray(values, dtype=np.int64), "int64")


def f32(name, values):
    return const(name, np.asarray(values, dtype=np.float32), "float32")


def tensor_attr(values, dtype):
    a = np.asarray(values)
    return {"dtype": dtype, "shape": list(a.shape),
            "data": [json_scalar(v, dtype) for v in a.reshape(-1).tolist()]}


def node(op, inputs, outputs, **attrs):
    n = {"op": op, "inputs": list(inputs), "outputs": list(outputs)}
    if attrs:
        n["attrs"] = attrs
    return n


def randf(*shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


def f64(a):
    return np.asarray(a, dtype=np.float64)


CASES = []


def add_case(name, nodes, inputs, outputs, inits=(), symbols=None, shapes=None, tolerance=None):
    """inputs/outputs: {name: ndarray}. shapes: {value name: declared shape}
    for inputs/outputs whose declared shape differs (symbolic dims)."""
    shapes = shapes or {}
    for i, n in enumerate(nodes):
        n.setdefault("name", f"n{i}_{n['op']}")
    # keep "name" first in each node for readability
    nodes = [dict([("name", n["name"])] + [(k, v) for k, v in n.items() if k != "name"])
             for n in nodes]
    model = {"ir_version": 1, "name": name}
    if symbols:
        model["symbols"] = symbols
    model["inputs"] = [{"name": k, "dtype": DTYPE_NAMES[v.dtype], "shape": shapes.get(k, list(v.shape))}
                       for k, v in inputs.items()]
    model["outputs"] = [{"name": k, "dtype": DTYPE_NAMES[v.dtype], "shape": shapes.get(k, list(v.shape))}
                        for k, v in outputs.items()]
    model["initializers"] = list(inits)
    model["nodes"] = nodes
    if tolerance is None:
        scale = max([1.0] + [float(np.max(np.abs(v.astype(np.float64)))) for v in outputs.values()
                             if v.dtype.kind == "f" and v.size])
        all_exact = all(v.dtype.kind in "biu" for v in outputs.values())
        tolerance = 0.0 if all_exact else 1e-5 * scale
    for k, v in outputs.items():
        assert np.all(np.isfinite(v.astype(np.float64))), f"{name}: {k} has inf/nan"
    CASES.append((name, model, inputs, outputs, tolerance))


# ---- reference semantics (ONNX, written out in numpy) -------------------------

def ref_unary(fn, x):
    return fn(f64(x)).astype(x.dtype)


def erf64(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def sigmoid64(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax64(x, axis):
    x = f64(x)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def onnx_slice(x, starts, ends, axes=None, steps=None):
    """ONNX Slice: clamp rules per the spec, then an explicit index list."""
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    out = x
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = a + x.ndim if a < 0 else a
        dim = x.shape[a]
        s = s + dim if s < 0 else s
        e = e + dim if e < 0 else e
        if st > 0:
            s, e = min(max(s, 0), dim), min(max(e, 0), dim)
        else:
            s, e = min(max(s, 0), dim - 1), min(max(e, -1), dim - 1)
        out = np.take(out, list(range(s, e, st)), axis=a)
    return out


def onnx_gather(data, idx, axis):
    axis = axis + data.ndim if axis < 0 else axis
    wrapped = np.where(idx < 0, idx + data.shape[axis], idx)
    out_shape = data.shape[:axis] + idx.shape + data.shape[axis + 1:]
    out = np.empty(out_shape, dtype=data.dtype)
    for pos in np.ndindex(*idx.shape):
        src = [slice(None)] * axis + [int(wrapped[pos])]
        dst = [slice(None)] * axis + list(pos)
        out[tuple(dst)] = data[tuple(src)]
    return out


def trilu(x, k, upper):
    rows, cols = x.shape[-2:]
    i = np.arange(rows)[:, None]
    j = np.arange(cols)[None, :]
    keep = (j - i >= k) if upper else (j - i <= k)
    return np.where(keep, x, np.zeros_like(x))


def matmul64(a, b):
    return np.matmul(f64(a), f64(b)).astype(np.float32)


# ---- cases ------------------------------------------------------------------

def elementwise_cases():
    # binary arithmetic with broadcasting
    a, b = randf(2, 3, 4), randf(4)
    add_case("add_bcast_last", [node("Add", ["a", "b"], ["y"])], {"a": a, "b": b},
             {"y": (f64(a) + f64(b)).astype(np.float32)})
    a, b = randf(2, 1, 4), randf(3, 1)
    add_case("mul_bcast_both", [node("Mul", ["a", "b"], ["y"])], {"a": a, "b": b},
             {"y": (f64(a) * f64(b)).astype(np.float32)})
    a, b = randf(2, 3, 4), randf(2, 1, 4)
    add_case("sub_bcast_mid", [node("Sub", ["a", "b"], ["y"])], {"a": a, "b": b},
             {"y": (f64(a) - f64(b)).astype(np.float32)})
    a, b = randf(3, 4), randf(3, 1, lo=0.5, hi=2.0)
    add_case("div_bcast", [node("Div", ["a", "b"], ["y"])], {"a": a, "b": b},
             {"y": (f64(a) / f64(b)).astype(np.float32)})
    a, b = randf(2, 3, 4, lo=0.1, hi=2.0), randf(4, lo=-2.0, hi=2.0)
    add_case("pow_tensor", [node("Pow", ["a", "b"], ["y"])], {"a": a, "b": b},
             {"y": np.power(f64(a), f64(b)).astype(np.float32)})
    x = randf(3, 5)
    add_case("pow_square_scalar_init", [node("Pow", ["x", "two"], ["y"])], {"x": x},
             {"y": (f64(x) ** 2).astype(np.float32)}, inits=[f32("two", np.float32(2.0))])
    # x + scalar initializer of rank 0
    x = randf(2, 3)
    add_case("add_scalar_init", [node("Add", ["x", "c"], ["y"])], {"x": x},
             {"y": (f64(x) + 0.25).astype(np.float32)}, inits=[f32("c", np.float32(0.25))])

    # unary
    x = randf(2, 3, 4, lo=0.05, hi=4.0)
    add_case("sqrt", [node("Sqrt", ["x"], ["y"])], {"x": x}, {"y": ref_unary(np.sqrt, x)})
    add_case("log", [node("Log", ["x"], ["y"])], {"x": x}, {"y": ref_unary(np.log, x)})
    add_case("reciprocal", [node("Reciprocal", ["x"], ["y"])], {"x": x}, {"y": ref_unary(lambda v: 1.0 / v, x)})
    x = randf(2, 3, 4, lo=-3.0, hi=3.0)
    add_case("neg", [node("Neg", ["x"], ["y"])], {"x": x}, {"y": -x})
    add_case("exp", [node("Exp", ["x"], ["y"])], {"x": x}, {"y": ref_unary(np.exp, x)})
    add_case("erf", [node("Erf", ["x"], ["y"])], {"x": x}, {"y": ref_unary(erf64, x)})
    add_case("tanh", [node("Tanh", ["x"], ["y"])], {"x": x}, {"y": ref_unary(np.tanh, x)})
    add_case("sigmoid", [node("Sigmoid", ["x"], ["y"])], {"x": x}, {"y": ref_unary(sigmoid64, x)})
    add_case("relu", [node("Relu", ["x"], ["y"])], {"x": x}, {"y": np.where(x > 0, x, np.float32(0))})
    add_case("cos", [node("Cos", ["x"], ["y"])], {"x": x}, {"y": ref_unary(np.cos, x)})
    add_case("sin", [node("Sin", ["x"], ["y"])], {"x": x}, {"y": ref_unary(np.sin, x)})
    add_case("abs", [node("Abs", ["x"], ["y"])], {"x": x}, {"y": np.where(x < 0, -x, x)})
    # an exact-erf GELU chain (the form exporters emit), several ops in a row
    x = randf(4, 8, lo=-4.0, hi=4.0)
    g = 0.5 * f64(x) * (1.0 + erf64(f64(x) / float(np.float32(math.sqrt(2.0)))))
    add_case("gelu_erf_chain",
             [node("Div", ["x", "sqrt2"], ["t0"]), node("Erf", ["t0"], ["t1"]),
              node("Add", ["t1", "one"], ["t2"]), node("Mul", ["x", "t2"], ["t3"]),
              node("Mul", ["t3", "half"], ["y"])],
             {"x": x}, {"y": g.astype(np.float32)},
             inits=[f32("sqrt2", np.float32(math.sqrt(2.0))), f32("one", np.float32(1.0)),
                    f32("half", np.float32(0.5))])

    # variadic Max / Min
    a, b, c = randf(2, 3, 4), randf(4), randf(3, 1)
    add_case("max_variadic_bcast", [node("Max", ["a", "b", "c"], ["y"])], {"a": a, "b": b, "c": c},
             {"y": np.maximum(np.maximum(a, b), c)})
    a, b = randf(2, 3), randf(3)
    add_case("min_bcast", [node("Min", ["a", "b"], ["y"])], {"a": a, "b": b}, {"y": np.minimum(a, b)})

    # comparisons: small integers as floats so that ties occur
    a = rng.integers(-2, 3, size=(2, 3, 4)).astype(np.float32)
    b = rng.integers(-2, 3, size=(4,)).astype(np.float32)
    for op, fn in (("Less", np.less), ("Greater", np.greater), ("LessOrEqual", np.less_equal),
                   ("GreaterOrEqual", np.greater_equal), ("Equal", np.equal)):
        add_case(f"{op.lower()}_f32_bcast", [node(op, ["a", "b"], ["y"])], {"a": a, "b": b},
                 {"y": fn(a, b)})
    ai = rng.integers(0, 3, size=(2, 3)).astype(np.int64)
    bi = rng.integers(0, 3, size=(3,)).astype(np.int64)
    add_case("equal_i64_bcast", [node("Equal", ["a", "b"], ["y"])], {"a": ai, "b": bi},
             {"y": ai == bi})

    # boolean logic
    p = rng.integers(0, 2, size=(2, 3)).astype(np.bool_)
    q = rng.integers(0, 2, size=(3,)).astype(np.bool_)
    add_case("not", [node("Not", ["p"], ["y"])], {"p": p}, {"y": ~p})
    add_case("and_bcast", [node("And", ["p", "q"], ["y"])], {"p": p, "q": q}, {"y": p & q})
    add_case("or_bcast", [node("Or", ["p", "q"], ["y"])], {"p": p, "q": q}, {"y": p | q})

    # Where with three-way broadcasting
    cond = rng.integers(0, 2, size=(2, 1, 4)).astype(np.bool_)
    x, y = randf(3, 1), randf(4)
    add_case("where_bcast", [node("Where", ["cond", "x", "y"], ["out"])],
             {"cond": cond, "x": x, "y": y}, {"out": np.where(cond, x, y)})
    # Where picking a -inf-free constant from a comparison (mask-style)
    x = randf(3, 3)
    add_case("where_scalar_consts",
             [node("Greater", ["x", "zero"], ["pos"]), node("Where", ["pos", "x", "minus"], ["y"])],
             {"x": x}, {"y": np.where(x > 0, x, np.float32(-7.5))},
             inits=[f32("zero", np.float32(0.0)), f32("minus", np.float32(-7.5))])

    # Expand (bidirectional broadcast)
    x = randf(3, 1)
    add_case("expand_to_bigger", [node("Expand", ["x", "shape"], ["y"])], {"x": x},
             {"y": np.broadcast_to(x, (2, 3, 4)).copy()}, inits=[i64("shape", [2, 1, 4])])
    x = randf(2, 1, 4)
    add_case("expand_bidirectional", [node("Expand", ["x", "shape"], ["y"])], {"x": x},
             {"y": (x * np.ones((3, 1), np.float32)).astype(np.float32)},
             inits=[i64("shape", [3, 1])])


def cast_cases():
    x = np.array([[-2.7, -0.5, 0.0, 1.5], [3.9, 100.25, -100.75, 7.0]], dtype=np.float32)
    add_case("cast_f32_to_i64", [node("Cast", ["x"], ["y"], to=ONNX_TO["int64"])], {"x": x},
             {"y": np.trunc(f64(x)).astype(np.int64)})
    xi = np.array([[-3, 0, 5], [1 << 20, -(1 << 24), 123456789]], dtype=np.int64)
    add_case("cast_i64_to_f32", [node("Cast", ["x"], ["y"], to=ONNX_TO["float32"])], {"x": xi},
             {"y": xi.astype(np.float64).astype(np.float32)}, tolerance=0.0)
    add_case("cast_i64_to_i32", [node("Cast", ["x"], ["y"], to=ONNX_TO["int32"])], {"x": xi},
             {"y": xi.astype(np.int32)})
    xb = np.array([0.0, -0.0, 2.5, -1.0], dtype=np.float32)
    add_case("cast_f32_to_bool_and_back",
             [node("Cast", ["x"], ["b"], to=ONNX_TO["bool"]),
              node("Cast", ["b"], ["y"], to=ONNX_TO["float32"])],
             {"x": xb}, {"y": (xb != 0).astype(np.float32)}, tolerance=0.0)
    # float16: rounding to nearest even, subnormals, the largest finite half
    x = np.concatenate([
        randf(12, lo=-10.0, hi=10.0),
        np.array([65519.0, -65504.0, 1e-6, -3e-5, 5.9604645e-8, 2.9802322e-8, 1.0 / 3.0,
                  0.1, -0.0, 2049.0, 2051.0, 4097.0], dtype=np.float32)])
    add_case("cast_f32_to_f16", [node("Cast", ["x"], ["y"], to=ONNX_TO["float16"])], {"x": x},
             {"y": x.astype(np.float16)}, tolerance=0.0)
    h = np.concatenate([randf(8, lo=-100, hi=100).astype(np.float16),
                        np.array([6.1e-5, 1e-7, -65504.0, 0.0], dtype=np.float16)])
    add_case("cast_f16_to_f32", [node("Cast", ["x"], ["y"], to=ONNX_TO["float32"])], {"x": h},
             {"y": h.astype(np.float32)}, tolerance=0.0)
    # float16 arithmetic: computed in float, rounded to half once
    a, b = randf(3, 4, lo=-8, hi=8).astype(np.float16), randf(4, lo=-8, hi=8).astype(np.float16)
    add_case("add_f16", [node("Add", ["a", "b"], ["y"])], {"a": a, "b": b},
             {"y": (a.astype(np.float64) + b.astype(np.float64)).astype(np.float16)}, tolerance=0.0)
    # bfloat16 (no numpy dtype): round trip through a bf16 cast in the graph
    x = np.concatenate([randf(12, lo=-300, hi=300),
                        np.array([1.0 + 2**-8, 1.0 + 3 * 2**-8, 1.0 + 2**-7 + 2**-9, -0.0,
                                  1e-39, 3.0e38], dtype=np.float32)])
    add_case("cast_f32_bf16_roundtrip",
             [node("Cast", ["x"], ["h"], to=ONNX_TO["bfloat16"]),
              node("Cast", ["h"], ["y"], to=ONNX_TO["float32"])],
             {"x": x}, {"y": bf16_bits_to_f32(f32_to_bf16_bits(x))}, tolerance=0.0)
    # bf16 initializer (inline, exactly representable) times a bf16-cast input
    w = np.array([0.5, -1.25, 3.0, 0.0078125], dtype=np.float32)
    x = randf(2, 4, lo=-4, hi=4)
    xb = bf16_bits_to_f32(f32_to_bf16_bits(x))
    prod = bf16_bits_to_f32(f32_to_bf16_bits((f64(xb) * f64(w)).astype(np.float32)))
    add_case("mul_bf16_init",
             [node("Cast", ["x"], ["xb"], to=ONNX_TO["bfloat16"]),
              node("Mul", ["xb", "w"], ["pb"]),
              node("Cast", ["pb"], ["y"], to=ONNX_TO["float32"])],
             {"x": x}, {"y": prod}, inits=[const("w", w, "bfloat16")], tolerance=0.0)


def matmul_cases():
    a, b = randf(3, 4), randf(4, 5)
    add_case("matmul_2d", [node("MatMul", ["a", "b"], ["y"])], {"a": a, "b": b}, {"y": matmul64(a, b)})
    a, b = randf(2, 3, 4, 5), randf(5, 6)
    add_case("matmul_batched_shared_b", [node("MatMul", ["a", "b"], ["y"])], {"a": a, "b": b},
             {"y": matmul64(a, b)})
    a, b = randf(2, 1, 4, 5), randf(3, 5, 6)
    add_case("matmul_batch_bcast", [node("MatMul", ["a", "b"], ["y"])], {"a": a, "b": b},
             {"y": matmul64(a, b)})
    a, b = randf(4), randf(4, 5)
    add_case("matmul_vec_mat", [node("MatMul", ["a", "b"], ["y"])], {"a": a, "b": b}, {"y": matmul64(a, b)})
    a, b = randf(2, 3, 4), randf(4)
    add_case("matmul_mat_vec", [node("MatMul", ["a", "b"], ["y"])], {"a": a, "b": b}, {"y": matmul64(a, b)})
    # weight stored [out, in] and transposed in the graph (what exporters do)
    x, w = randf(1, 5, 8), randf(6, 8)
    add_case("matmul_transposed_weight",
             [node("Transpose", ["w"], ["wt"], perm=[1, 0]), node("MatMul", ["x", "wt"], ["y"])],
             {"x": x}, {"y": matmul64(x, w.T)}, inits=[f32("w", w)])

    a, b, c = randf(3, 4), randf(5, 4), randf(5)
    y = 0.5 * (f64(a) @ f64(b).T) + 2.0 * f64(c)
    add_case("gemm_transb_bias", [node("Gemm", ["a", "b", "c"], ["y"], transB=1, alpha=0.5, beta=2.0)],
             {"a": a, "b": b, "c": c}, {"y": y.astype(np.float32)})
    a, b, c = randf(4, 3), randf(4, 5), randf(3, 1)
    y = f64(a).T @ f64(b) + f64(c)
    add_case("gemm_transa_col_bias", [node("Gemm", ["a", "b", "c"], ["y"], transA=1)],
             {"a": a, "b": b, "c": c}, {"y": y.astype(np.float32)})
    a, b = randf(2, 3), randf(3, 4)
    add_case("gemm_no_bias", [node("Gemm", ["a", "b"], ["y"])], {"a": a, "b": b}, {"y": matmul64(a, b)})


def reduce_cases():
    x = randf(2, 3, 4)
    add_case("reducemean_last_keep", [node("ReduceMean", ["x", "axes"], ["y"], keepdims=1)], {"x": x},
             {"y": f64(x).mean(axis=-1, keepdims=True).astype(np.float32)}, inits=[i64("axes", [-1])])
    add_case("reducemean_mid_keep_default", [node("ReduceMean", ["x", "axes"], ["y"])], {"x": x},
             {"y": f64(x).mean(axis=1, keepdims=True).astype(np.float32)}, inits=[i64("axes", [1])])
    add_case("reducesum_0_2_nokeep", [node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)], {"x": x},
             {"y": f64(x).sum(axis=(0, 2)).astype(np.float32)}, inits=[i64("axes", [0, -1])])
    add_case("reducesum_all_nokeep", [node("ReduceSum", ["x"], ["y"], keepdims=0)], {"x": x},
             {"y": np.asarray(f64(x).sum(), dtype=np.float32)})
    add_case("reducemax_mid_nokeep", [node("ReduceMax", ["x", "axes"], ["y"], keepdims=0)], {"x": x},
             {"y": x.max(axis=1)}, inits=[i64("axes", [1])])
    add_case("reducemax_first_keep", [node("ReduceMax", ["x", "axes"], ["y"], keepdims=1)], {"x": x},
             {"y": x.max(axis=0, keepdims=True)}, inits=[i64("axes", [-3])])
    big = randf(3, 1000, lo=0.0, hi=1.0)
    add_case("reducesum_long_rows", [node("ReduceSum", ["x", "axes"], ["y"], keepdims=1)], {"x": big},
             {"y": f64(big).sum(axis=1, keepdims=True).astype(np.float32)}, inits=[i64("axes", [1])],
             tolerance=2e-4)

    x = randf(2, 3, 4, lo=-3, hi=3)
    add_case("softmax_axis1_3d", [node("Softmax", ["x"], ["y"], axis=1)], {"x": x},
             {"y": softmax64(x, 1).astype(np.float32)})
    add_case("softmax_default_axis", [node("Softmax", ["x"], ["y"])], {"x": x},
             {"y": softmax64(x, -1).astype(np.float32)})
    x = randf(3, 37, lo=-20, hi=20)   # not a multiple of the vector width; large range
    add_case("softmax_wide_rows", [node("Softmax", ["x"], ["y"], axis=-1)], {"x": x},
             {"y": softmax64(x, -1).astype(np.float32)})
    x = randf(2, 3, 4, lo=-3, hi=3)
    ls = f64(x) - np.max(f64(x), axis=-1, keepdims=True)
    ls = ls - np.log(np.sum(np.exp(ls), axis=-1, keepdims=True))
    add_case("logsoftmax_last", [node("LogSoftmax", ["x"], ["y"], axis=-1)], {"x": x},
             {"y": ls.astype(np.float32)})


def view_cases():
    x = randf(2, 3, 4)
    add_case("reshape_zero_minus1", [node("Reshape", ["x", "shape"], ["y"])], {"x": x},
             {"y": x.reshape(2, 12)}, inits=[i64("shape", [0, -1])])
    add_case("reshape_minus1_first", [node("Reshape", ["x", "shape"], ["y"])], {"x": x},
             {"y": x.reshape(6, 2, 2)}, inits=[i64("shape", [-1, 2, 2])])
    add_case("flatten_axis2", [node("Flatten", ["x"], ["y"], axis=2)], {"x": x}, {"y": x.reshape(6, 4)})
    add_case("flatten_axis0", [node("Flatten", ["x"], ["y"], axis=0)], {"x": x}, {"y": x.reshape(1, 24)})
    add_case("flatten_default", [node("Flatten", ["x"], ["y"])], {"x": x}, {"y": x.reshape(2, 12)})
    x = randf(3, 4)
    add_case("unsqueeze_0_neg1", [node("Unsqueeze", ["x", "axes"], ["y"])], {"x": x},
             {"y": x.reshape(1, 3, 4, 1)}, inits=[i64("axes", [0, -1])])
    x = randf(2, 1, 4)
    add_case("squeeze_axis1", [node("Squeeze", ["x", "axes"], ["y"])], {"x": x},
             {"y": x.reshape(2, 4)}, inits=[i64("axes", [1])])
    x = randf(1, 3, 1, 4)
    add_case("squeeze_all_ones", [node("Squeeze", ["x"], ["y"])], {"x": x}, {"y": x.reshape(3, 4)})
    x = randf(2, 3)
    add_case("identity", [node("Identity", ["x"], ["y"])], {"x": x}, {"y": x.copy()})
    # a view feeding compute: the reshaped value must read the right bytes
    x = randf(2, 6)
    add_case("reshape_then_add", [node("Reshape", ["x", "shape"], ["r"]), node("Add", ["r", "b"], ["y"])],
             {"x": x}, {"y": (f64(x.reshape(2, 3, 2)) + 1.0).astype(np.float32)},
             inits=[i64("shape", [2, 3, 2]), f32("b", np.float32(1.0))])


def movement_cases():
    x = randf(2, 3, 4)
    add_case("transpose_perm", [node("Transpose", ["x"], ["y"], perm=[2, 0, 1])], {"x": x},
             {"y": np.ascontiguousarray(np.transpose(x, (2, 0, 1)))})
    add_case("transpose_default_reverse", [node("Transpose", ["x"], ["y"])], {"x": x},
             {"y": np.ascontiguousarray(np.transpose(x))})
    x4 = randf(1, 5, 2, 3)
    add_case("transpose_bshd_to_bhsd", [node("Transpose", ["x"], ["y"], perm=[0, 2, 1, 3])], {"x": x4},
             {"y": np.ascontiguousarray(np.transpose(x4, (0, 2, 1, 3)))})

    a, b = randf(2, 3, 4), randf(2, 3, 2)
    add_case("concat_last_neg", [node("Concat", ["a", "b"], ["y"], axis=-1)], {"a": a, "b": b},
             {"y": np.concatenate([a, b], axis=-1)})
    a, b, c = randf(1, 3), randf(2, 3), randf(1, 3)
    add_case("concat_axis0_three", [node("Concat", ["a", "b", "c"], ["y"], axis=0)],
             {"a": a, "b": b, "c": c}, {"y": np.concatenate([a, b, c], axis=0)})

    x = randf(5, 6)
    add_case("slice_neg_start_step2",
             [node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])], {"x": x},
             {"y": onnx_slice(x, [-4, 1], [-1, 100], [0, 1], [1, 2])},
             inits=[i64("starts", [-4, 1]), i64("ends", [-1, 100]), i64("axes", [0, 1]),
                    i64("steps", [1, 2])])
    x = randf(6, 3)
    add_case("slice_negative_step_to_front",
             [node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])], {"x": x},
             {"y": onnx_slice(x, [-1], [-100], [0], [-2])},
             inits=[i64("starts", [-1]), i64("ends", [-100]), i64("axes", [0]), i64("steps", [-2])])
    x = randf(2, 6)
    add_case("slice_negative_step_mid",
             [node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])], {"x": x},
             {"y": onnx_slice(x, [4], [1], [-1], [-1])},
             inits=[i64("starts", [4]), i64("ends", [1]), i64("axes", [-1]), i64("steps", [-1])])
    x = randf(4, 5)
    add_case("slice_starts_ends_only", [node("Slice", ["x", "starts", "ends"], ["y"])], {"x": x},
             {"y": onnx_slice(x, [1, 0], [3, INT64_MAX])},
             inits=[i64("starts", [1, 0]), i64("ends", [3, INT64_MAX])])

    x = randf(2, 6)
    add_case("split_sizes",
             [node("Split", ["x", "split"], ["y0", "y1"], axis=1)], {"x": x},
             {"y0": x[:, :2].copy(), "y1": x[:, 2:].copy()}, inits=[i64("split", [2, 4])])
    add_case("split_num_outputs_equal",
             [node("Split", ["x"], ["y0", "y1", "y2"], axis=-1, num_outputs=3)], {"x": x},
             {"y0": x[:, 0:2].copy(), "y1": x[:, 2:4].copy(), "y2": x[:, 4:6].copy()})
    x = randf(7, 2)
    add_case("split_num_outputs_uneven",
             [node("Split", ["x"], ["y0", "y1", "y2"], axis=0, num_outputs=3)], {"x": x},
             {"y0": x[0:3].copy(), "y1": x[3:6].copy(), "y2": x[6:7].copy()})

    x = randf(2, 3)
    add_case("tile_2_1", [node("Tile", ["x", "repeats"], ["y"])], {"x": x},
             {"y": np.concatenate([x, x], axis=0)}, inits=[i64("repeats", [2, 1])])
    x = randf(1, 2, 3)
    tiled = np.concatenate([np.concatenate([x] * 3, axis=2)] * 2, axis=1)
    add_case("tile_1_2_3", [node("Tile", ["x", "repeats"], ["y"])], {"x": x},
             {"y": tiled}, inits=[i64("repeats", [1, 2, 3])])

    data = randf(5, 4)
    idx = np.array([[0, -1], [2, -5]], dtype=np.int64)
    add_case("gather_axis0_neg", [node("Gather", ["data", "idx"], ["y"], axis=0)],
             {"data": data, "idx": idx}, {"y": onnx_gather(data, idx, 0)})
    data = randf(3, 5, 2)
    idx = np.array([-1, 0, 3], dtype=np.int64)
    add_case("gather_axis1_neg", [node("Gather", ["data", "idx"], ["y"], axis=1)],
             {"data": data, "idx": idx}, {"y": onnx_gather(data, idx, 1)})
    idx32 = np.array([[4, -2, 1]], dtype=np.int32)
    add_case("gather_axis1_i32", [node("Gather", ["data", "idx"], ["y"], axis=-2)],
             {"data": data, "idx": idx32}, {"y": onnx_gather(data, idx32.astype(np.int64), 1)})
    data = randf(4, 3)
    add_case("gather_scalar_index", [node("Gather", ["data", "k"], ["y"], axis=0)], {"data": data},
             {"y": data[2].copy()}, inits=[i64("k", np.int64(-2))])
    # embedding lookup: token ids as input, table as initializer
    table = randf(10, 4)
    ids = np.array([[3, 0, 9, 3]], dtype=np.int64)
    add_case("gather_embedding", [node("Gather", ["table", "ids"], ["y"])], {"ids": ids},
             {"y": onnx_gather(table, ids, 0)}, inits=[f32("table", table)])

    x = randf(2, 4, 5)
    add_case("trilu_upper_k1", [node("Trilu", ["x", "k"], ["y"], upper=1)], {"x": x},
             {"y": trilu(x, 1, True)}, inits=[i64("k", np.int64(1))])
    add_case("trilu_lower_kneg1", [node("Trilu", ["x", "k"], ["y"], upper=0)], {"x": x},
             {"y": trilu(x, -1, False)}, inits=[i64("k", np.int64(-1))])
    add_case("trilu_lower_default_k", [node("Trilu", ["x"], ["y"], upper=0)], {"x": x},
             {"y": trilu(x, 0, False)})
    add_case("trilu_upper_default", [node("Trilu", ["x"], ["y"])], {"x": x}, {"y": trilu(x, 0, True)})
    x = randf(3, 3)
    add_case("trilu_upper_kneg2", [node("Trilu", ["x", "k"], ["y"], upper=1)], {"x": x},
             {"y": trilu(x, -2, True)}, inits=[i64("k", np.int64(-2))])


def generator_cases():
    x = randf(4)
    r = np.array([0.5 + 0.75 * i for i in range(math.ceil((3.0 - 0.5) / 0.75))], dtype=np.float64)
    add_case("range_f32_plus_input",
             [node("Range", ["start", "limit", "delta"], ["r"]), node("Add", ["x", "r"], ["y"])],
             {"x": x}, {"y": (f64(x) + r).astype(np.float32)},
             inits=[f32("start", np.float32(0.5)), f32("limit", np.float32(3.0)),
                    f32("delta", np.float32(0.75))])
    xi = np.array([1, 2, 3], dtype=np.int64)
    r = np.array([10 - 3 * i for i in range(math.ceil((1 - 10) / -3))], dtype=np.int64)
    add_case("range_i64_negative_delta",
             [node("Range", ["start", "limit", "delta"], ["r"]), node("Add", ["x", "r"], ["y"])],
             {"x": xi}, {"y": xi + r},
             inits=[i64("start", np.int64(10)), i64("limit", np.int64(1)), i64("delta", np.int64(-3))])

    x = randf(2, 3)
    add_case("constantofshape_from_shape",
             [node("Shape", ["x"], ["s"]),
              node("ConstantOfShape", ["s"], ["c"], value=tensor_attr([1.5], "float32")),
              node("Add", ["x", "c"], ["y"])],
             {"x": x}, {"y": (f64(x) + 1.5).astype(np.float32)})
    xi = rng.integers(-5, 5, size=(2, 2)).astype(np.int64)
    add_case("constantofshape_i64",
             [node("ConstantOfShape", ["shape"], ["c"], value=tensor_attr([7], "int64")),
              node("Add", ["x", "c"], ["y"])],
             {"x": xi}, {"y": xi + 7}, inits=[i64("shape", [2, 2])])
    x = randf(3)
    add_case("constantofshape_default_zero",
             [node("ConstantOfShape", ["shape"], ["c"]), node("Add", ["x", "c"], ["y"])],
             {"x": x}, {"y": x.copy()}, inits=[i64("shape", [3])])

    x = randf(2, 2)
    cval = np.array([[1.0, -2.0], [0.5, 4.0]], dtype=np.float32)
    add_case("constant_tensor",
             [node("Constant", [], ["c"], value=tensor_attr(cval, "float32")),
              node("Add", ["x", "c"], ["y"])],
             {"x": x}, {"y": (f64(x) + f64(cval)).astype(np.float32)})
    add_case("constant_value_float",
             [node("Constant", [], ["c"], value_float=2.5), node("Mul", ["x", "c"], ["y"])],
             {"x": x}, {"y": (f64(x) * 2.5).astype(np.float32)})
    xi = np.array([1, 2, 3], dtype=np.int64)
    add_case("constant_value_ints",
             [node("Constant", [], ["c"], value_ints=[10, 20, -30]), node("Add", ["x", "c"], ["y"])],
             {"x": xi}, {"y": xi + np.array([10, 20, -30], dtype=np.int64)})

    x = randf(2, 3, 4)
    add_case("shape_full", [node("Shape", ["x"], ["y"])], {"x": x},
             {"y": np.array(x.shape, dtype=np.int64)})
    add_case("shape_start1", [node("Shape", ["x"], ["y"], start=1)], {"x": x},
             {"y": np.array(x.shape[1:], dtype=np.int64)})
    add_case("shape_end_neg1", [node("Shape", ["x"], ["y"], end=-1)], {"x": x},
             {"y": np.array(x.shape[:-1], dtype=np.int64)})


def symbolic_cases():
    """Inputs with a symbolic "seq" dim (max 16), run at shorter lengths."""
    symbols = {"seq": 16}
    weight = randf(8, lo=0.5, hi=1.5)
    for L in (5, 16):
        x = randf(1, L, 8, lo=-2, hi=2)
        ms = np.mean(f64(x) ** 2, axis=-1, keepdims=True)
        y = f64(x) / np.sqrt(ms + float(np.float32(1e-6))) * f64(weight)
        add_case(f"sym_rmsnorm_L{L}",
                 [node("Pow", ["x", "two"], ["sq"]),
                  node("ReduceMean", ["sq", "axes"], ["ms"], keepdims=1),
                  node("Add", ["ms", "eps"], ["mse"]), node("Sqrt", ["mse"], ["rms"]),
                  node("Div", ["x", "rms"], ["xn"]), node("Mul", ["xn", "w"], ["y"])],
                 {"x": x}, {"y": y.astype(np.float32)},
                 inits=[f32("two", np.float32(2.0)), i64("axes", [-1]), f32("eps", np.float32(1e-6)),
                        f32("w", weight)],
                 symbols=symbols, shapes={"x": [1, "seq", 8], "y": [1, "seq", 8]})

    for L in (1, 7, 16):
        x = randf(1, L, 8, lo=-1, hi=1)
        scores = (f64(x) @ f64(x).transpose(0, 2, 1)) * float(np.float32(0.35))
        future = np.arange(L)[:, None] < np.arange(L)[None, :]
        scores = np.where(future[None], -np.inf, scores)
        y = softmax64(scores, -1) @ f64(x)
        add_case(f"sym_causal_attention_L{L}",
                 [node("Shape", ["x"], ["xs"]),
                  node("Gather", ["xs", "one_idx"], ["seq_len"], axis=0),
                  node("Range", ["zero", "seq_len", "one"], ["pos"]),
                  node("Unsqueeze", ["pos", "ax1"], ["rows"]),
                  node("Unsqueeze", ["pos", "ax0"], ["cols"]),
                  node("Less", ["rows", "cols"], ["future"]),
                  node("Where", ["future", "neg_inf", "fzero"], ["mask"]),
                  node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
                  node("MatMul", ["x", "xt"], ["s0"]),
                  node("Mul", ["s0", "scale"], ["s1"]),
                  node("Add", ["s1", "mask"], ["s2"]),
                  node("Softmax", ["s2"], ["p"], axis=-1),
                  node("MatMul", ["p", "x"], ["y"])],
                 {"x": x}, {"y": y.astype(np.float32)},
                 inits=[i64("one_idx", np.int64(1)), i64("zero", np.int64(0)), i64("one", np.int64(1)),
                        i64("ax1", [1]), i64("ax0", [0]), f32("neg_inf", np.float32(-np.inf)),
                        f32("fzero", np.float32(0.0)), f32("scale", np.float32(0.35))],
                 symbols=symbols, shapes={"x": [1, "seq", 8], "y": [1, "seq", 8]})

    x = randf(1, 9, 8)
    add_case("sym_reshape_transpose_L9",
             [node("Reshape", ["x", "shape"], ["r"]),
              node("Transpose", ["r"], ["y"], perm=[0, 2, 1, 3])],
             {"x": x}, {"y": np.ascontiguousarray(x.reshape(1, 9, 2, 4).transpose(0, 2, 1, 3))},
             inits=[i64("shape", [0, 0, 2, 4])],
             symbols=symbols, shapes={"x": [1, "seq", 8], "y": [1, 2, "seq", 4]})

    x = randf(1, 6, 8)
    pos = np.arange(6, dtype=np.float64)[None, :, None]
    add_case("sym_positions_scale_L6",
             [node("Shape", ["x"], ["xs"]),
              node("Gather", ["xs", "one_idx"], ["seq_len"], axis=0),
              node("Range", ["zero", "seq_len", "one"], ["pos"]),
              node("Cast", ["pos"], ["posf"], to=ONNX_TO["float32"]),
              node("Unsqueeze", ["posf", "axes"], ["pos3"]),
              node("Mul", ["x", "pos3"], ["y"])],
             {"x": x}, {"y": (f64(x) * pos).astype(np.float32)},
             inits=[i64("one_idx", np.int64(1)), i64("zero", np.int64(0)), i64("one", np.int64(1)),
                    i64("axes", [0, 2])],
             symbols=symbols, shapes={"x": [1, "seq", 8], "y": [1, "seq", 8]})


def fused_op_cases():
    """The fused ops of the fast profile. RMSNormalization, LayerNormalization,
    RotaryEmbedding and Attention follow ONNX opset 23 (4-D BHSD tensors,
    GQA with consecutive query heads per kv head, i.e. np.repeat). SwiGLU and
    FusedMatMul are not ONNX-standard: SwiGLU is taken as inputs (gate, up) ->
    gate * sigmoid(gate) * up, FusedMatMul as com.microsoft's alpha * op(A) op(B)."""
    x, scale = randf(2, 3, 8, lo=-2, hi=2), randf(8, lo=0.5, hi=1.5)
    y = f64(x) / np.sqrt(np.mean(f64(x) ** 2, axis=-1, keepdims=True) + float(np.float32(1e-6))) * f64(scale)
    add_case("rmsnormalization_last",
             [node("RMSNormalization", ["x", "scale"], ["y"], axis=-1, epsilon=1e-6)],
             {"x": x}, {"y": y.astype(np.float32)}, inits=[f32("scale", scale)])
    bias = randf(8)
    mean = f64(x).mean(axis=-1, keepdims=True)
    var = ((f64(x) - mean) ** 2).mean(axis=-1, keepdims=True)
    y = (f64(x) - mean) / np.sqrt(var + float(np.float32(1e-5))) * f64(scale) + f64(bias)
    add_case("layernormalization_last",
             [node("LayerNormalization", ["x", "scale", "bias"], ["y"], axis=-1, epsilon=1e-5)],
             {"x": x}, {"y": y.astype(np.float32)}, inits=[f32("scale", scale), f32("bias", bias)])

    def rope_caches(rot_dim, max_pos=16):
        inv_freq = (1.0 / 10000.0 ** (np.arange(0, rot_dim, 2) / rot_dim)).astype(np.float32)
        ang = np.arange(max_pos, dtype=np.float32)[:, None] * inv_freq[None, :]
        return np.cos(f64(ang)).astype(np.float32), np.sin(f64(ang)).astype(np.float32)

    def rope_ref(x, cos, sin, pos, rot_dim, interleaved):
        x = f64(x)
        c, s = f64(cos)[pos][:, None], f64(sin)[pos][:, None]      # [B, 1, S, rot/2]
        rot, rest = x[..., :rot_dim], x[..., rot_dim:]
        if interleaved:
            a, b = rot[..., 0::2], rot[..., 1::2]
        else:
            a, b = rot[..., :rot_dim // 2], rot[..., rot_dim // 2:]
        ya, yb = a * c - b * s, b * c + a * s
        if interleaved:
            out = np.stack([ya, yb], axis=-1).reshape(rot.shape)
        else:
            out = np.concatenate([ya, yb], axis=-1)
        return np.concatenate([out, rest], axis=-1).astype(np.float32)

    x = randf(1, 2, 5, 8, lo=-2, hi=2)
    pos = np.array([[2, 3, 4, 5, 6]], dtype=np.int64)
    cos, sin = rope_caches(8)
    add_case("rotaryembedding_bhsd_positions",
             [node("RotaryEmbedding", ["x", "cos", "sin", "pos"], ["y"])],
             {"x": x, "pos": pos}, {"y": rope_ref(x, cos, sin, pos, 8, False)},
             inits=[f32("cos", cos), f32("sin", sin)])
    pos = np.array([[0, 1, 2, 3, 4]], dtype=np.int64)
    cos, sin = rope_caches(4)
    add_case("rotaryembedding_interleaved_partial",
             [node("RotaryEmbedding", ["x", "cos", "sin", "pos"], ["y"], interleaved=1,
                   rotary_embedding_dim=4)],
             {"x": x, "pos": pos}, {"y": rope_ref(x, cos, sin, pos, 4, True)},
             inits=[f32("cos", cos), f32("sin", sin)])

    def attention_ref(q, k, v, mask=None, causal=False, scale=None):
        q, k, v = f64(q), f64(k), f64(v)
        rep = q.shape[1] // k.shape[1]
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
        scores = q @ k.transpose(0, 1, 3, 2) * scale
        if mask is not None:
            scores = scores + f64(mask)
        if causal:
            lq, lk = scores.shape[-2:]
            scores = np.where(np.arange(lk)[None, :] <= np.arange(lq)[:, None], scores, -np.inf)
        return (softmax64(scores, -1) @ v).astype(np.float32)

    q, k, v = randf(1, 4, 6, 8), randf(1, 2, 6, 8), randf(1, 2, 6, 8)
    add_case("attention_gqa_causal", [node("Attention", ["q", "k", "v"], ["y"], is_causal=1)],
             {"q": q, "k": k, "v": v}, {"y": attention_ref(q, k, v, causal=True)})
    q, k, v, mask = randf(1, 2, 3, 8), randf(1, 2, 5, 8), randf(1, 2, 5, 8), randf(3, 5, lo=-2, hi=0)
    add_case("attention_float_mask_scale",
             [node("Attention", ["q", "k", "v", "mask"], ["y"], scale=0.5)],
             {"q": q, "k": k, "v": v, "mask": mask}, {"y": attention_ref(q, k, v, mask=mask, scale=0.5)})

    gate, up = randf(2, 3, 8, lo=-4, hi=4), randf(2, 3, 8)
    add_case("swiglu_gate_up", [node("SwiGLU", ["gate", "up"], ["y"])], {"gate": gate, "up": up},
             {"y": (f64(gate) * sigmoid64(f64(gate)) * f64(up)).astype(np.float32)})
    a, b = randf(2, 3, 4), randf(5, 4)
    add_case("fusedmatmul_transb_alpha",
             [node("FusedMatMul", ["a", "b"], ["y"], transB=1, alpha=0.5)], {"a": a, "b": b},
             {"y": (0.5 * (f64(a) @ f64(b).T)).astype(np.float32)})
    # ONNX Attention's is_causal without past_key: query i sees keys j <= i
    # (aligned to the start), also when Lq != Lk; attention_ref says the same.
    q, k, v = randf(1, 4, 3, 8), randf(1, 2, 5, 8), randf(1, 2, 5, 8)
    add_case("attention_causal_lq_lt_lk", [node("Attention", ["q", "k", "v"], ["y"], is_causal=1)],
             {"q": q, "k": k, "v": v}, {"y": attention_ref(q, k, v, causal=True)})


# ---- writing ------------------------------------------------------------------

def model_text(model):
    """JSON with one line per input, output, initializer and node."""
    lines = ["{"]
    keys = list(model)
    for i, k in enumerate(keys):
        v = model[k]
        end = "," if i + 1 < len(keys) else ""
        if isinstance(v, list) and v:
            lines.append(f" {json.dumps(k)}: [")
            for j, item in enumerate(v):
                lines.append("  " + json.dumps(item) + ("," if j + 1 < len(v) else ""))
            lines.append(" ]" + end)
        else:
            lines.append(f" {json.dumps(k)}: {json.dumps(v)}{end}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main():
    elementwise_cases()
    cast_cases()
    matmul_cases()
    reduce_cases()
    view_cases()
    movement_cases()
    generator_cases()
    symbolic_cases()
    fused_op_cases()

    names = [c[0] for c in CASES]
    assert len(names) == len(set(names)), "duplicate case names"
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    index = []
    for name, model, inputs, outputs, tol in CASES:
        d = OUT / name
        d.mkdir()
        (d / "model.json").write_text(model_text(model))
        for k, v in inputs.items():
            np.save(d / f"{k}.npy", np.array(v, order="C"))   # keeps rank 0
        for k, v in outputs.items():
            np.save(d / f"expected_{k}.npy", np.array(v, order="C"))
        index.append({"name": name,
                      "inputs": {k: f"{k}.npy" for k in inputs},
                      "outputs": {k: f"expected_{k}.npy" for k in outputs},
                      "tolerance": float(f"{tol:.3g}")})
    with open(OUT / "index.json", "w") as f:
        json.dump({"cases": index}, f, indent=1)
        f.write("\n")

    # every registered op must be covered by at least one case, here or in
    # another fixture set (fixtures/gelu has the Gelu cases)
    op_list = (ROOT / "ir" / "op_ids.h").read_text()
    body = op_list[op_list.index("#define FU_OPS(X)"):op_list.index("/* Op ids")]
    import re
    ops = set(re.findall(r"X\((\w+)\)", body))
    used = {n["op"] for _, m, _, _, _ in CASES for n in m["nodes"]}
    for other in (ROOT / "fixtures").glob("*/*/model.json"):
        if other.parent.parent != OUT:
            used |= {n["op"] for n in json.loads(other.read_text())["nodes"]}
    missing = sorted(ops - used)
    if missing:
        sys.exit(f"ops without a fixture: {', '.join(missing)}")
    print(f"wrote {len(CASES)} cases covering {len(ops)} ops to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
