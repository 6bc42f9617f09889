#!/usr/bin/python3
"""Writes the Gelu golden fixtures under fixtures/gelu/ (tests/test_golden_gelu.c).

Each case is fixtures/gelu/<case>/model.json (fusec JSON IR, docs/ir.md),
x.npy and expected_y.npy, listed in fixtures/gelu/index.json with its
tolerance: an element passes when |got - expected| <= atol + rtol * |expected|.

The models spell GELU the ways exporters write it (the composed forms the
fast profile's `gelu` rule fuses into one Gelu node) and use the ONNX-20 Gelu
op directly:
  gelu_erf_div     torch.onnx (opset <= 19) F.gelu:
                   Mul(Mul(x, Add(Erf(Div(x, sqrt2)), 1)), 0.5)
  gelu_erf_mul     x * 0.5 * (1 + erf(x * 0.70710678)):
                   Mul(Mul(x, 0.5), Add(1, Erf(Mul(x, 0.70710678))))
  gelu_tanh_pow    HF NewGELU / GPT-2 gelu_new:
                   Mul(Mul(0.5, x), Add(1, Tanh(Mul(0.79788456, Add(x, Mul(0.044715, Pow(x, 3)))))))
  gelu_tanh_cube   torch.onnx (opset <= 19) F.gelu(approximate="tanh"):
                   Mul(0.5, Mul(x, Add(1, Tanh(Mul(0.79788456, Add(x, Mul(0.044715, Mul(x, Mul(x, x)))))))))
  gelu_direct_none Gelu(x)
  gelu_direct_tanh Gelu(x, approximate="tanh")
  gelu_mlp         MatMul, Add, Gelu, MatMul, Add over a symbolic sequence

Expected values are the float64 formulas of the ONNX-20 Gelu definition,
rounded once to float32, written without the cancellation of 1 + erf / 1 +
tanh for negative x (0.5 x (1 + erf(x/sqrt2)) = 0.5 x erfc(-x/sqrt2) and
0.5 x (1 + tanh(u)) = x / (1 + exp(-2u))), so the left tail is exact too.
The composed spellings round their constants to float32 as a float32 graph
holds them; their expected values are still those of the exact formula.
Deterministic: fixed seed.

Run: /usr/bin/python3 scripts/gen_gelu_fixtures.py
"""
import json
import math
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "gelu"

rng = np.random.default_rng(20250120)

SQRT2 = math.sqrt(2.0)
BETA = math.sqrt(2.0 / math.pi)     # 0.7978845608028654
KAPPA = 0.044715


def gelu_erf64(x):
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * x * np.vectorize(math.erfc, otypes=[np.float64])(-x / SQRT2)


def gelu_tanh64(x):
    x = np.asarray(x, dtype=np.float64)
    u = BETA * (x + KAPPA * x ** 3)
    with np.errstate(over="ignore"):
        return x / (1.0 + np.exp(-2.0 * u))


def check_forms():
    """The cancellation-free forms equal the textbook ones where both are exact."""
    x = np.linspace(-5.0, 5.0, 1001)
    erf = np.vectorize(math.erf, otypes=[np.float64])
    assert np.allclose(gelu_erf64(x), 0.5 * x * (1.0 + erf(x / SQRT2)), rtol=1e-12, atol=1e-14)
    assert np.allclose(gelu_tanh64(x), 0.5 * x * (1.0 + np.tanh(BETA * (x + KAPPA * x ** 3))),
                       rtol=1e-12, atol=1e-14)


def scalar(name, value):
    """float32 initializer of rank 0, its value as float32 holds it."""
    return {"name": name, "dtype": "float32", "shape": [], "data": [float(np.float32(value))]}


def tensor(name, a):
    a = np.asarray(a, dtype=np.float32)
    return {"name": name, "dtype": "float32", "shape": list(a.shape), "data": [float(v) for v in a.reshape(-1)]}


def node(name, op, inputs, outputs, **attrs):
    n = {"name": name, "op": op, "inputs": inputs, "outputs": outputs}
    if attrs:
        n["attrs"] = attrs
    return n


def gelu_input():
    """240 values: -10..10 in steps of 0.2, points around the bend and the
    tails, then random normals of scale 3; shape [2, 5, 24]."""
    fixed = np.concatenate([np.linspace(-10.0, 10.0, 101),
                            [0.0, -0.0, 1e-3, -1e-3, 1e-6, -1e-6, 0.5, -0.5, -0.75, -2.5, -3.5,
                             -5.5, -7.0, -8.5, -9.25, -12.0, 12.0, 6.25]])
    rest = rng.normal(0.0, 3.0, 240 - fixed.size)
    return np.concatenate([fixed, rest]).astype(np.float32).reshape(2, 5, 24)


CASES = []


def add_case(name, nodes, inits, x, y, atol, rtol, symbols=None, shapes=None):
    shapes = shapes or {}
    model = {"ir_version": 1, "name": name}
    if symbols:
        model["symbols"] = symbols
    model["inputs"] = [{"name": "x", "dtype": "float32", "shape": shapes.get("x", list(x.shape))}]
    model["outputs"] = [{"name": "y", "dtype": "float32", "shape": shapes.get("y", list(y.shape))}]
    model["initializers"] = inits
    model["nodes"] = nodes
    assert np.all(np.isfinite(y))
    CASES.append((name, model, x, y.astype(np.float32), atol, rtol))


# Composed spellings run op by op in float (erff, tanhf, powf ...): an error
# of a few ulps of 1 in erf / tanh, absolute, where 1 + erf cancels.
COMPOSED_TOL = dict(atol=2.5e-7, rtol=5e-7)
# The Gelu kernel: within 1 ulp of the exact value (tests/test_gelu.c).
DIRECT_TOL = dict(atol=1e-44, rtol=2.4e-7)


def cases():
    x = gelu_input()
    half, one = scalar("half", 0.5), scalar("one", 1.0)

    add_case("gelu_erf_div",
             [node("div", "Div", ["x", "sqrt2"], ["t_div"]),
              node("erf", "Erf", ["t_div"], ["t_erf"]),
              node("add", "Add", ["t_erf", "one"], ["t_add"]),
              node("mul_x", "Mul", ["x", "t_add"], ["t_mul"]),
              node("mul_half", "Mul", ["t_mul", "half"], ["y"])],
             [scalar("sqrt2", SQRT2), one, half], x, gelu_erf64(x), **COMPOSED_TOL)

    add_case("gelu_erf_mul",
             [node("mul_half", "Mul", ["x", "half"], ["t_half"]),
              node("mul_scale", "Mul", ["x", "inv_sqrt2"], ["t_scaled"]),
              node("erf", "Erf", ["t_scaled"], ["t_erf"]),
              node("add", "Add", ["one", "t_erf"], ["t_add"]),
              node("mul", "Mul", ["t_half", "t_add"], ["y"])],
             [half, scalar("inv_sqrt2", 0.70710678), one], x, gelu_erf64(x), **COMPOSED_TOL)

    add_case("gelu_tanh_pow",
             [node("mul_half", "Mul", ["half", "x"], ["t_half"]),
              node("pow", "Pow", ["x", "three"], ["t_cube"]),
              node("mul_kappa", "Mul", ["kappa", "t_cube"], ["t_kappa"]),
              node("add_x", "Add", ["x", "t_kappa"], ["t_inner"]),
              node("mul_beta", "Mul", ["beta", "t_inner"], ["t_u"]),
              node("tanh", "Tanh", ["t_u"], ["t_tanh"]),
              node("add_one", "Add", ["one", "t_tanh"], ["t_add"]),
              node("mul", "Mul", ["t_half", "t_add"], ["y"])],
             [half, scalar("three", 3.0), scalar("kappa", KAPPA), scalar("beta", 0.7978845608), one],
             x, gelu_tanh64(x), **COMPOSED_TOL)

    add_case("gelu_tanh_cube",
             [node("mul_sq", "Mul", ["x", "x"], ["t_sq"]),
              node("mul_cube", "Mul", ["x", "t_sq"], ["t_cube"]),
              node("mul_kappa", "Mul", ["kappa", "t_cube"], ["t_kappa"]),
              node("add_x", "Add", ["x", "t_kappa"], ["t_inner"]),
              node("mul_beta", "Mul", ["beta", "t_inner"], ["t_u"]),
              node("tanh", "Tanh", ["t_u"], ["t_tanh"]),
              node("add_one", "Add", ["one", "t_tanh"], ["t_add"]),
              node("mul_x", "Mul", ["x", "t_add"], ["t_mul"]),
              node("mul_half", "Mul", ["half", "t_mul"], ["y"])],
             [scalar("kappa", KAPPA), scalar("beta", BETA), one, half], x, gelu_tanh64(x), **COMPOSED_TOL)

    add_case("gelu_direct_none", [node("gelu", "Gelu", ["x"], ["y"])], [], x, gelu_erf64(x), **DIRECT_TOL)
    add_case("gelu_direct_tanh", [node("gelu", "Gelu", ["x"], ["y"], approximate="tanh")], [], x,
             gelu_tanh64(x), **DIRECT_TOL)

    # A BERT-style MLP block at 13 of at most 32 positions.
    w1 = rng.normal(0.0, 0.5, (8, 32)).astype(np.float32)
    b1 = rng.normal(0.0, 0.5, 32).astype(np.float32)
    w2 = rng.normal(0.0, 0.3, (32, 8)).astype(np.float32)
    b2 = rng.normal(0.0, 0.1, 8).astype(np.float32)
    xm = rng.normal(0.0, 1.5, (1, 13, 8)).astype(np.float32)
    f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    h = gelu_erf64(f64(xm) @ f64(w1) + f64(b1))
    ym = h @ f64(w2) + f64(b2)
    add_case("gelu_mlp",
             [node("fc1", "MatMul", ["x", "w1"], ["t_fc1"]),
              node("fc1_bias", "Add", ["t_fc1", "b1"], ["t_pre"]),
              node("gelu", "Gelu", ["t_pre"], ["t_act"], approximate="none"),
              node("fc2", "MatMul", ["t_act", "w2"], ["t_fc2"]),
              node("fc2_bias", "Add", ["t_fc2", "b2"], ["y"])],
             [tensor("w1", w1), tensor("b1", b1), tensor("w2", w2), tensor("b2", b2)], xm, ym,
             atol=1e-5 * float(np.max(np.abs(ym))), rtol=1e-5,
             symbols={"seq": 32}, shapes={"x": [1, "seq", 8], "y": [1, "seq", 8]})


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
    check_forms()
    cases()
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    index = []
    for name, model, x, y, atol, rtol in CASES:
        d = OUT / name
        d.mkdir()
        (d / "model.json").write_text(model_text(model))
        np.save(d / "x.npy", np.array(x, order="C"))
        np.save(d / "expected_y.npy", np.array(y, order="C"))
        index.append({"name": name, "inputs": {"x": "x.npy"}, "outputs": {"y": "expected_y.npy"},
                      "atol": float(f"{atol:.3g}"), "rtol": float(f"{rtol:.3g}")})
    with open(OUT / "index.json", "w") as f:
        json.dump({"cases": index}, f, indent=1)
        f.write("\n")
    print(f"wrote {len(CASES)} cases to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
