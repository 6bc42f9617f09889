"""The model of the install test (tests/cli/test_install.sh) and its numpy check.

  model.py make DIR SEQ     writes DIR/model.json (x [1, seq, 8] -> MatMul, Add,
                            Tanh, MatMul, Add, Softmax -> y [1, seq, 4]; inline
                            weights) and DIR/x.bin (float32 [1, SEQ, 8])
  model.py check DIR Y.bin  compares Y.bin (float32 [1, SEQ, 4]) with numpy's
                            float64 forward pass; exit 1 if it differs
"""
import json
import sys
from pathlib import Path

import numpy as np


def weights():
    rng = np.random.default_rng(11)
    return {
        "w1": rng.standard_normal((8, 16)).astype(np.float32) * 0.5,
        "b1": rng.standard_normal(16).astype(np.float32) * 0.1,
        "w2": rng.standard_normal((16, 4)).astype(np.float32) * 0.5,
        "b2": rng.standard_normal(4).astype(np.float32) * 0.1,
    }


def forward(x, w):
    f = {k: v.astype(np.float64) for k, v in w.items()}
    h = np.tanh(x.astype(np.float64) @ f["w1"] + f["b1"])
    z = h @ f["w2"] + f["b2"]
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def make(out, seq):
    w = weights()
    model = {
        "ir_version": 1,
        "name": "install_mlp",
        "symbols": {"seq": 32},
        "inputs": [{"name": "x", "dtype": "float32", "shape": [1, "seq", 8]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [1, "seq", 4]}],
        "initializers": [{"name": k, "dtype": "float32", "shape": list(v.shape),
                          "data": [float(a) for a in v.ravel()]} for k, v in w.items()],
        "nodes": [
            {"name": "fc1", "op": "MatMul", "inputs": ["x", "w1"], "outputs": ["t1"]},
            {"name": "fc1_bias", "op": "Add", "inputs": ["t1", "b1"], "outputs": ["t2"]},
            {"name": "act", "op": "Tanh", "inputs": ["t2"], "outputs": ["t3"]},
            {"name": "fc2", "op": "MatMul", "inputs": ["t3", "w2"], "outputs": ["t4"]},
            {"name": "fc2_bias", "op": "Add", "inputs": ["t4", "b2"], "outputs": ["t5"]},
            {"name": "softmax", "op": "Softmax", "inputs": ["t5"], "outputs": ["y"], "attrs": {"axis": -1}},
        ],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.json").write_text(json.dumps(model))
    x = np.random.default_rng(5).standard_normal((1, seq, 8)).astype(np.float32)
    x.tofile(out / "x.bin")
    (out / "seq").write_text(str(seq))


def check(out, y_path):
    seq = int((out / "seq").read_text())
    x = np.fromfile(out / "x.bin", dtype=np.float32).reshape(1, seq, 8)
    y = np.fromfile(y_path, dtype=np.float32)
    if y.size != seq * 4:
        print(f"check: {y_path} holds {y.size} floats, want {seq * 4}")
        return 1
    want = forward(x, weights())
    err = np.abs(y.reshape(1, seq, 4) - want).max()
    ok = bool(np.all(np.isfinite(y))) and err <= 1e-5
    print(f"check: {y_path}: max |y - numpy| = {err:.2e} ({'ok' if ok else 'too far'})")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "make":
        make(Path(sys.argv[2]), int(sys.argv[3]))
    elif len(sys.argv) == 4 and sys.argv[1] == "check":
        sys.exit(check(Path(sys.argv[2]), sys.argv[3]))
    else:
        print(__doc__)
        sys.exit(2)
