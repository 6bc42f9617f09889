#!/usr/bin/python3
"""Writes fixtures/qwen3_small/: a tiny Qwen3-style decoder as fusec JSON IR,
its weights (Hugging Face Qwen3 tensor names, safetensors) and numpy goldens.

The graph is the composed form an ONNX exporter produces: RMSNorm spelled as
Pow/ReduceMean/Add/Sqrt/Reciprocal (or Div)/Mul, rotate-half RoPE with
cos/sin computed in the graph from an inverse-frequency initializer and
Range positions, a causal mask built from Range/Unsqueeze/Less/Where,
grouped-query attention by Unsqueeze/Expand/Reshape of K and V, a SwiGLU MLP
with silu = x * Sigmoid(x), and every projection as Transpose(weight) +
MatMul against the [out, in] weight exactly as Hugging Face stores it.

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
import safetensors_np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "qwen3_small"
INT64_MAX = 2**63 - 1

LAYERS = 2
HIDDEN = 64
HEADS = 4
KV_HEADS = 2
HEAD_DIM = 16
INTERMEDIATE = 128
VOCAB = 256
EPS = 1e-6
ROPE_THETA = 1e6
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


def inverse_frequencies():
    """RoPE inverse frequencies theta^(-2i/d), rounded to float32 as HF does."""
    exponents = np.arange(0, HEAD_DIM, 2, dtype=np.float64) / HEAD_DIM
    return (1.0 / ROPE_THETA ** exponents).astype(np.float32)


# ---- the graph ------------------------------------------------------------------

def json_float(v):
    v = float(v)
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


class Graph:
    def __init__(self):
        self.nodes = []
        self.initializers = []
        self.names = set()

    def const(self, name, values, dtype):
        a = np.asarray(values)
        data = [int(v) for v in a.reshape(-1)] if dtype == "int64" else \
               [json_float(v) for v in a.astype(np.float32).reshape(-1)]
        self.initializers.append({"name": name, "dtype": dtype, "shape": list(a.shape), "data": data})
        return name

    def weight(self, name, shape):
        self.initializers.append({"name": name, "dtype": "float32", "shape": list(shape)})
        return name

    def op(self, op, name, inputs, n_out=1, **attrs):
        """Adds node `name` (exporter-style path); outputs are name/output_k."""
        assert name not in self.names, name
        self.names.add(name)
        outputs = [f"{name}/output_{k}" for k in range(n_out)]
        node = {"name": name, "op": op, "inputs": list(inputs), "outputs": outputs}
        if attrs:
            node["attrs"] = attrs
        self.nodes.append(node)
        return outputs[0] if n_out == 1 else outputs


def build_graph():
    g = Graph()
    two = g.const("const_two", np.float32(2.0), "float32")
    eps = g.const("const_eps", np.float32(EPS), "float32")
    last_axis = g.const("const_axes_last", [-1], "int64")
    neg_inf = g.const("const_neg_inf", np.float32(-np.inf), "float32")
    zero_f = g.const("const_zero_f", np.float32(0.0), "float32")
    scale = g.const("const_attn_scale", np.float32(1.0 / np.sqrt(HEAD_DIM)), "float32")
    inv_freq = g.const("rope.inv_freq", inverse_frequencies(), "float32")

    def rms_norm(prefix, x, weight, use_div=False):
        sq = g.op("Pow", f"{prefix}/Pow", [x, two])
        mean = g.op("ReduceMean", f"{prefix}/ReduceMean", [sq, last_axis], keepdims=1)
        var_eps = g.op("Add", f"{prefix}/Add", [mean, eps])
        rms = g.op("Sqrt", f"{prefix}/Sqrt", [var_eps])
        if use_div:
            normed = g.op("Div", f"{prefix}/Div", [x, rms])
        else:
            inv = g.op("Reciprocal", f"{prefix}/Reciprocal", [rms])
            normed = g.op("Mul", f"{prefix}/Mul", [x, inv])
        return g.op("Mul", f"{prefix}/Mul_1", [normed, weight])

    def linear(prefix, x, weight_name, out_features, in_features):
        w = g.weight(weight_name, (out_features, in_features))
        wt = g.op("Transpose", f"{prefix}/Transpose", [w], perm=[1, 0])
        return g.op("MatMul", f"{prefix}/MatMul", [x, wt])

    # positions, RoPE tables and the causal mask, shared by all layers
    ids_shape = g.op("Shape", "/model/Shape", ["input_ids"])
    seq_len = g.op("Gather", "/model/Gather_seq", [ids_shape, g.const("const_one_idx", np.int64(1), "int64")],
                   axis=0)
    positions = g.op("Range", "/model/Range",
                     [g.const("const_zero_i", np.int64(0), "int64"), seq_len,
                      g.const("const_one_i", np.int64(1), "int64")])
    pos_f = g.op("Cast", "/model/rotary_emb/Cast", [positions], to=1)
    pos_col = g.op("Unsqueeze", "/model/rotary_emb/Unsqueeze", [pos_f, g.const("const_axes_1", [1], "int64")])
    freqs = g.op("Mul", "/model/rotary_emb/Mul", [pos_col, inv_freq])
    emb = g.op("Concat", "/model/rotary_emb/Concat", [freqs, freqs], axis=-1)
    cos = g.op("Cos", "/model/rotary_emb/Cos", [emb])
    sin = g.op("Sin", "/model/rotary_emb/Sin", [emb])
    rows = g.op("Unsqueeze", "/model/mask/Unsqueeze_rows", [positions, "const_axes_1"])
    cols = g.op("Unsqueeze", "/model/mask/Unsqueeze_cols", [positions, g.const("const_axes_0", [0], "int64")])
    future = g.op("Less", "/model/mask/Less", [rows, cols])
    mask = g.op("Where", "/model/mask/Where", [future, neg_inf, zero_f])

    half_starts = g.const("const_rope_lo", [0], "int64")
    half_mid = g.const("const_rope_mid", [HEAD_DIM // 2], "int64")
    half_end = g.const("const_rope_end", [INT64_MAX], "int64")

    def rope(prefix, x):
        x1 = g.op("Slice", f"{prefix}/Slice", [x, half_starts, half_mid, last_axis])
        x2 = g.op("Slice", f"{prefix}/Slice_1", [x, half_mid, half_end, last_axis])
        neg = g.op("Neg", f"{prefix}/Neg", [x2])
        rotated = g.op("Concat", f"{prefix}/Concat", [neg, x1], axis=-1)
        a = g.op("Mul", f"{prefix}/Mul", [x, cos])
        b = g.op("Mul", f"{prefix}/Mul_1", [rotated, sin])
        return g.op("Add", f"{prefix}/Add", [a, b])

    q_shape = g.const("const_q_shape", [0, -1, HEADS, HEAD_DIM], "int64")
    kv_shape = g.const("const_kv_shape", [0, -1, KV_HEADS, HEAD_DIM], "int64")
    rep_shape = g.const("const_kv_repeat", [1, 1, HEADS // KV_HEADS, 1, 1], "int64")
    rep_flat = g.const("const_kv_flat", [1, HEADS, -1, HEAD_DIM], "int64")
    merge_shape = g.const("const_merge_heads", [0, -1, HEADS * HEAD_DIM], "int64")
    axes_2 = g.const("const_axes_2", [2], "int64")

    def repeat_kv(prefix, t):
        t = g.op("Unsqueeze", f"{prefix}/Unsqueeze", [t, axes_2])   # [1, kv, 1, seq, d]
        t = g.op("Expand", f"{prefix}/Expand", [t, rep_shape])      # [1, kv, rep, seq, d]
        return g.op("Reshape", f"{prefix}/Reshape", [t, rep_flat])  # [1, heads, seq, d]

    x = g.op("Gather", "/model/embed_tokens/Gather",
             [g.weight("model.embed_tokens.weight", (VOCAB, HIDDEN)), "input_ids"], axis=0)
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        n = f"/model/layers.{i}"
        h = rms_norm(f"{n}/input_layernorm", x, g.weight(p + "input_layernorm.weight", (HIDDEN,)))
        a = f"{n}/self_attn"
        q = linear(f"{a}/q_proj", h, p + "self_attn.q_proj.weight", HEADS * HEAD_DIM, HIDDEN)
        k = linear(f"{a}/k_proj", h, p + "self_attn.k_proj.weight", KV_HEADS * HEAD_DIM, HIDDEN)
        v = linear(f"{a}/v_proj", h, p + "self_attn.v_proj.weight", KV_HEADS * HEAD_DIM, HIDDEN)
        q = g.op("Reshape", f"{a}/Reshape", [q, q_shape])
        k = g.op("Reshape", f"{a}/Reshape_1", [k, kv_shape])
        v = g.op("Reshape", f"{a}/Reshape_2", [v, kv_shape])
        q = rms_norm(f"{a}/q_norm", q, g.weight(p + "self_attn.q_norm.weight", (HEAD_DIM,)), use_div=True)
        k = rms_norm(f"{a}/k_norm", k, g.weight(p + "self_attn.k_norm.weight", (HEAD_DIM,)), use_div=True)
        q = g.op("Transpose", f"{a}/Transpose", [q], perm=[0, 2, 1, 3])
        k = g.op("Transpose", f"{a}/Transpose_1", [k], perm=[0, 2, 1, 3])
        v = g.op("Transpose", f"{a}/Transpose_2", [v], perm=[0, 2, 1, 3])
        q = rope(f"{a}/rope_q", q)
        k = rope(f"{a}/rope_k", k)
        k = repeat_kv(f"{a}/repeat_k", k)
        v = repeat_kv(f"{a}/repeat_v", v)
        kt = g.op("Transpose", f"{a}/Transpose_3", [k], perm=[0, 1, 3, 2])
        scores = g.op("MatMul", f"{a}/MatMul", [q, kt])
        scores = g.op("Mul", f"{a}/Mul", [scores, scale])
        scores = g.op("Add", f"{a}/Add", [scores, mask])
        probs = g.op("Softmax", f"{a}/Softmax", [scores], axis=-1)
        ctx = g.op("MatMul", f"{a}/MatMul_1", [probs, v])
        ctx = g.op("Transpose", f"{a}/Transpose_4", [ctx], perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", f"{a}/Reshape_3", [ctx, merge_shape])
        attn = linear(f"{a}/o_proj", ctx, p + "self_attn.o_proj.weight", HIDDEN, HEADS * HEAD_DIM)
        x = g.op("Add", f"{n}/Add", [x, attn])

        h = rms_norm(f"{n}/post_attention_layernorm", x, g.weight(p + "post_attention_layernorm.weight", (HIDDEN,)))
        m = f"{n}/mlp"
        gate = linear(f"{m}/gate_proj", h, p + "mlp.gate_proj.weight", INTERMEDIATE, HIDDEN)
        up = linear(f"{m}/up_proj", h, p + "mlp.up_proj.weight", INTERMEDIATE, HIDDEN)
        sig = g.op("Sigmoid", f"{m}/act_fn/Sigmoid", [gate])
        silu = g.op("Mul", f"{m}/act_fn/Mul", [gate, sig])
        prod = g.op("Mul", f"{m}/Mul", [silu, up])
        down = linear(f"{m}/down_proj", prod, p + "mlp.down_proj.weight", HIDDEN, INTERMEDIATE)
        x = g.op("Add", f"{n}/Add_1", [x, down])

    x = rms_norm("/model/norm", x, g.weight("model.norm.weight", (HIDDEN,)))
    logits = linear("/lm_head", x, "lm_head.weight", VOCAB, HIDDEN)
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
    eps = float(np.float32(EPS))
    L = len(ids)

    def rms_norm(x, weight):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight

    def rotate_half(t):
        half = HEAD_DIM // 2
        return np.concatenate([-t[..., half:], t[..., :half]], axis=-1)

    angles = np.arange(L, dtype=np.float64)[:, None] * inverse_frequencies().astype(np.float64)[None, :]
    angles = np.concatenate([angles, angles], axis=-1)            # [L, head_dim]
    cos, sin = np.cos(angles), np.sin(angles)
    causal = np.tril(np.ones((L, L), dtype=bool))                  # key j visible to query i iff j <= i

    x = W["model.embed_tokens.weight"][ids]                        # [L, hidden]
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        h = rms_norm(x, W[p + "input_layernorm.weight"])
        q = (h @ W[p + "self_attn.q_proj.weight"].T).reshape(L, HEADS, HEAD_DIM)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).reshape(L, KV_HEADS, HEAD_DIM)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).reshape(L, KV_HEADS, HEAD_DIM)
        q = rms_norm(q, W[p + "self_attn.q_norm.weight"])
        k = rms_norm(k, W[p + "self_attn.k_norm.weight"])
        heads = []
        for hq in range(HEADS):
            kv = hq // (HEADS // KV_HEADS)                          # GQA: kv head j serves 2j, 2j+1
            qh = q[:, hq, :] * cos + rotate_half(q[:, hq, :]) * sin
            kh = k[:, kv, :] * cos + rotate_half(k[:, kv, :]) * sin
            scores = qh @ kh.T / np.sqrt(HEAD_DIM)
            scores = np.where(causal, scores, -np.inf)
            probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
            probs /= probs.sum(axis=-1, keepdims=True)
            heads.append(probs @ v[:, kv, :])
        ctx = np.concatenate(heads, axis=-1)                        # [L, heads*head_dim]
        x = x + ctx @ W[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"])
        gate = h @ W[p + "mlp.gate_proj.weight"].T
        up = h @ W[p + "mlp.up_proj.weight"].T
        silu = gate / (1.0 + np.exp(-gate))
        x = x + (silu * up) @ W[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, W["model.norm.weight"])
    return (x @ W["lm_head.weight"].T)[None].astype(np.float32)     # [1, L, vocab]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.npy"):
        old.unlink()
    weights = make_weights()
    safetensors_np.write(OUT / "model.safetensors", weights)

    model = build_graph()
    lines = ["{"]
    for i, (k, v) in enumerate(model.items()):
        end = "," if i + 1 < len(model) else ""
        if isinstance(v, list):
            lines.append(f" {json.dumps(k)}: [")
            lines += ["  " + json.dumps(item) + ("," if j + 1 < len(v) else "") for j, item in enumerate(v)]
            lines.append(" ]" + end)
        else:
            lines.append(f" {json.dumps(k)}: {json.dumps(v)}{end}")
    (OUT / "model.json").write_text("\n".join(lines + ["}"]) + "\n")

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
