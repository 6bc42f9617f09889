#!/usr/bin/python3
"""Writes fixtures/qwen3_small/: a tiny Qwen3-style decoder as fusec JSON IR,
its weights (Hugging Face Qwen3 tensor names, safetensors) and numpy goldens.

The graph is the composed form an ONNX exporter produces (see
scripts/qwen3_model.py): RMSNorm spelled as Pow/ReduceMean/Add/Sqrt/
Reciprocal (or Div)/Mul, rotate-half RoPE with cos/sin computed in the graph
from an inverse-frequency initializer and Range positions, a causal mask
built from Range/Unsqueeze/Less/Where, grouped-query attention by
Unsqueeze/Expand/Reshape of K and V, a SwiGLU MLP with silu = x * Sigmoid(x),
and every projection as Transpose(weight) + MatMul against the [out, in]
weight exactly as Hugging Face stores it.

The golden logits come from a separate numpy forward pass written from the
Qwen3 equations (float64, per-head loops for GQA): nothing here interprets
the IR. Deterministic (numpy seed 0).

Run: /usr/bin/python3 scripts/gen_qwen3_small.py
"""
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qwen3_model as qm  # noqa: E402
import safetensors_np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "qwen3_small"

CONFIG = qm.Config(layers=2, hidden=64, heads=4, kv_heads=2, head_dim=16, intermediate=128, vocab=256)
LAYERS, HIDDEN, HEADS, KV_HEADS, HEAD_DIM = CONFIG.layers, CONFIG.hidden, CONFIG.heads, CONFIG.kv_heads, CONFIG.head_dim
INTERMEDIATE, VOCAB = CONFIG.intermediate, CONFIG.vocab
MAX_SEQ = 32
SEQ_LENGTHS = (1, 5, 17, 32)


# ---- weights --------------------------------------------------------------------

def make_weights():
    """HF Qwen3 names and [out, in] layouts; normal * 0.1, norms 1 + 0.1 * normal."""
    rng = np.random.default_rng(0)

    def dense(*shape):
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    w = {"model.embed_tokens.weight": dense(VOCAB, HIDDEN)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm(HIDDEN)
        w[p + "self_attn.q_proj.weight"] = dense(HEADS * HEAD_DIM, HIDDEN)
        w[p + "self_attn.k_proj.weight"] = dense(KV_HEADS * HEAD_DIM, HIDDEN)
        w[p + "self_attn.v_proj.weight"] = dense(KV_HEADS * HEAD_DIM, HIDDEN)
        w[p + "self_attn.o_proj.weight"] = dense(HIDDEN, HEADS * HEAD_DIM)
        w[p + "self_attn.q_norm.weight"] = norm(HEAD_DIM)
        w[p + "self_attn.k_norm.weight"] = norm(HEAD_DIM)
        w[p + "post_attention_layernorm.weight"] = norm(HIDDEN)
        w[p + "mlp.gate_proj.weight"] = dense(INTERMEDIATE, HIDDEN)
        w[p + "mlp.up_proj.weight"] = dense(INTERMEDIATE, HIDDEN)
        w[p + "mlp.down_proj.weight"] = dense(HIDDEN, INTERMEDIATE)
    w["model.norm.weight"] = norm(HIDDEN)
    w["lm_head.weight"] = dense(VOCAB, HIDDEN)
    return w


# ---- the graph ------------------------------------------------------------------

def build_graph():
    g = qm.Graph()
    x, _ = qm.build_decoder(g, CONFIG)
    logits = g.linear("/lm_head", x, "lm_head.weight", VOCAB, HIDDEN)
    g.nodes[-1]["outputs"] = ["logits"]
    assert logits == "/lm_head/MatMul/output_0"

    return {
        "ir_version": 1,
        "name": "qwen3_small",
        "weights": "model.safetensors",
        "symbols": {"seq": MAX_SEQ},
        "inputs": [{"name": "input_ids", "dtype": "int64", "shape": [1, "seq"]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [1, "seq", VOCAB]}],
        "initializers": g.initializers,
        "nodes": g.nodes,
    }


# ---- independent numpy reference ---------------------------------------------------

def reference_logits(w, ids):
    """Qwen3 forward for one sequence, float64, straight from the equations."""
    W = {k: v.astype(np.float64) for k, v in w.items()}
    x = qm.reference_hidden(CONFIG, W, ids)
    return (x @ W["lm_head.weight"].T)[None].astype(np.float32)     # [1, L, vocab]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.npy"):
        old.unlink()
    weights = make_weights()
    safetensors_np.write(OUT / "model.safetensors", weights)

    model = build_graph()
    qm.write_model_json(OUT / "model.json", model)

    rng = np.random.default_rng(1)
    cases = []
    for L in SEQ_LENGTHS:
        ids = rng.integers(0, VOCAB, size=(1, L)).astype(np.int64)
        logits = reference_logits(weights, ids[0])
        np.save(OUT / f"input_ids_{L}.npy", ids)
        np.save(OUT / f"expected_logits_{L}.npy", logits)
        # a float32 evaluation of this graph is within ~1e-6 of the float64
        # golden; allow 20x that, relative to the logit scale
        tol = 2e-5 * max(1.0, float(np.abs(logits).max()))
        cases.append({"name": f"seq{L}", "inputs": {"input_ids": f"input_ids_{L}.npy"},
                      "outputs": {"logits": f"expected_logits_{L}.npy"}, "tolerance": float(f"{tol:.3g}")})
    with open(OUT / "index.json", "w") as f:
        json.dump({"model": "model.json", "cases": cases}, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(model['nodes'])} nodes, "
          f"{sum(v.size for v in weights.values())} weights, seq lengths {list(SEQ_LENGTHS)}")


if __name__ == "__main__":
    main()
