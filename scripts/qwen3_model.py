"""Qwen3-style decoder pieces shared by the model generators (numpy only).

Two independent halves, kept apart on purpose:

- The graph: `Graph` and `build_decoder` write the composed form an ONNX
  exporter produces (RMSNorm as Pow/ReduceMean/Add/Sqrt/Reciprocal or Div/Mul,
  rotate-half RoPE from an inverse-frequency initializer and Range positions,
  a causal mask from Range/Unsqueeze/Less/Where, grouped-query attention by
  Unsqueeze/Expand/Reshape of K and V, SwiGLU as x * Sigmoid(x) * up, every
  projection as Transpose(weight) + MatMul against the [out, in] weight as
  Hugging Face stores it).
- The reference: `decoder_layer` and `reference_hidden` compute the same
  forward pass in float64 straight from the Qwen3 equations (per-head loops
  for GQA); nothing there reads the graph.

Users: scripts/gen_qwen3_small.py, examples/router/gen_router.py,
examples/router/reference.py.
"""
import json
from dataclasses import dataclass

import numpy as np

INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Config:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    eps: float = 1e-6
    rope_theta: float = 1e6


def weight_shapes(cfg):
    """[(name, shape)] of the decoder's weights: HF Qwen3 names, [out, in] layouts."""
    shapes = [("model.embed_tokens.weight", (cfg.vocab, cfg.hidden))]
    for i in range(cfg.layers):
        p = f"model.layers.{i}."
        shapes += [
            (p + "input_layernorm.weight", (cfg.hidden,)),
            (p + "self_attn.q_proj.weight", (cfg.heads * cfg.head_dim, cfg.hidden)),
            (p + "self_attn.k_proj.weight", (cfg.kv_heads * cfg.head_dim, cfg.hidden)),
            (p + "self_attn.v_proj.weight", (cfg.kv_heads * cfg.head_dim, cfg.hidden)),
            (p + "self_attn.o_proj.weight", (cfg.hidden, cfg.heads * cfg.head_dim)),
            (p + "self_attn.q_norm.weight", (cfg.head_dim,)),
            (p + "self_attn.k_norm.weight", (cfg.head_dim,)),
            (p + "post_attention_layernorm.weight", (cfg.hidden,)),
            (p + "mlp.gate_proj.weight", (cfg.intermediate, cfg.hidden)),
            (p + "mlp.up_proj.weight", (cfg.intermediate, cfg.hidden)),
            (p + "mlp.down_proj.weight", (cfg.hidden, cfg.intermediate)),
        ]
    shapes.append(("model.norm.weight", (cfg.hidden,)))
    return shapes


def inverse_frequencies(cfg):
    """RoPE inverse frequencies theta^(-2i/d), rounded to float32 as HF does."""
    exponents = np.arange(0, cfg.head_dim, 2, dtype=np.float64) / cfg.head_dim
    return (1.0 / cfg.rope_theta ** exponents).astype(np.float32)


# ---- the graph ------------------------------------------------------------------

def json_float(v):
    v = float(v)
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


class Graph:
    """Collects initializers and nodes. External weights are declared with
    `weight_dtype`; bfloat16 weights are followed by a Cast to float32 (the
    matmuls are float32), as an exporter of an autocast model writes them."""

    def __init__(self, weight_dtype="float32"):
        self.nodes = []
        self.initializers = []
        self.names = set()
        self.weight_dtype = weight_dtype

    def const(self, name, values, dtype):
        a = np.asarray(values)
        data = [int(v) for v in a.reshape(-1)] if dtype == "int64" else \
               [json_float(v) for v in a.astype(np.float32).reshape(-1)]
        self.initializers.append({"name": name, "dtype": dtype, "shape": list(a.shape), "data": data})
        return name

    def raw_weight(self, name, shape):
        """The weight as stored in the file (float32 or bfloat16)."""
        self.initializers.append({"name": name, "dtype": self.weight_dtype, "shape": list(shape)})
        return name

    def to_float(self, name, value):
        """value as float32: itself, or Cast(value) when weights are bfloat16."""
        if self.weight_dtype == "float32":
            return value
        return self.op("Cast", f"{name}/Cast", [value], to=1)

    def weight(self, name, shape):
        return self.to_float(name, self.raw_weight(name, shape))

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

    def linear(self, prefix, x, weight_name, out_features, in_features):
        """x @ W^T for an HF [out, in] weight: Transpose + MatMul."""
        w = self.weight(weight_name, (out_features, in_features))
        wt = self.op("Transpose", f"{prefix}/Transpose", [w], perm=[1, 0])
        return self.op("MatMul", f"{prefix}/MatMul", [x, wt])


def build_decoder(g, cfg, batched=False):
    """Embedding, decoder layers and final RMSNorm over graph input `input_ids`
    [1, seq] ([batch, seq] when batched: rows padded on the right, which the
    causal mask already hides from every real token). Returns (final normed
    hidden [1 or batch, seq, hidden], seq length scalar)."""
    HEADS, KV_HEADS, HEAD_DIM, HIDDEN = cfg.heads, cfg.kv_heads, cfg.head_dim, cfg.hidden
    two = g.const("const_two", np.float32(2.0), "float32")
    eps = g.const("const_eps", np.float32(cfg.eps), "float32")
    last_axis = g.const("const_axes_last", [-1], "int64")
    neg_inf = g.const("const_neg_inf", np.float32(-np.inf), "float32")
    zero_f = g.const("const_zero_f", np.float32(0.0), "float32")
    scale = g.const("const_attn_scale", np.float32(1.0 / np.sqrt(HEAD_DIM)), "float32")
    inv_freq = g.const("rope.inv_freq", inverse_frequencies(cfg), "float32")

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
    rep_flat = g.const("const_kv_flat", [0 if batched else 1, HEADS, -1, HEAD_DIM], "int64")
    merge_shape = g.const("const_merge_heads", [0, -1, HEADS * HEAD_DIM], "int64")
    axes_2 = g.const("const_axes_2", [2], "int64")

    def repeat_kv(prefix, t):
        t = g.op("Unsqueeze", f"{prefix}/Unsqueeze", [t, axes_2])   # [1, kv, 1, seq, d]
        t = g.op("Expand", f"{prefix}/Expand", [t, rep_shape])      # [1, kv, rep, seq, d]
        return g.op("Reshape", f"{prefix}/Reshape", [t, rep_flat])  # [1, heads, seq, d]

    # The embedding gathers rows of the stored table, then (bf16) casts them.
    table = g.raw_weight("model.embed_tokens.weight", (cfg.vocab, HIDDEN))
    x = g.op("Gather", "/model/embed_tokens/Gather", [table, "input_ids"], axis=0)
    x = g.to_float("/model/embed_tokens", x)
    for i in range(cfg.layers):
        p = f"model.layers.{i}."
        n = f"/model/layers.{i}"
        h = rms_norm(f"{n}/input_layernorm", x, g.weight(p + "input_layernorm.weight", (HIDDEN,)))
        a = f"{n}/self_attn"
        q = g.linear(f"{a}/q_proj", h, p + "self_attn.q_proj.weight", HEADS * HEAD_DIM, HIDDEN)
        k = g.linear(f"{a}/k_proj", h, p + "self_attn.k_proj.weight", KV_HEADS * HEAD_DIM, HIDDEN)
        v = g.linear(f"{a}/v_proj", h, p + "self_attn.v_proj.weight", KV_HEADS * HEAD_DIM, HIDDEN)
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
        attn = g.linear(f"{a}/o_proj", ctx, p + "self_attn.o_proj.weight", HIDDEN, HEADS * HEAD_DIM)
        x = g.op("Add", f"{n}/Add", [x, attn])

        h = rms_norm(f"{n}/post_attention_layernorm", x, g.weight(p + "post_attention_layernorm.weight", (HIDDEN,)))
        m = f"{n}/mlp"
        gate = g.linear(f"{m}/gate_proj", h, p + "mlp.gate_proj.weight", cfg.intermediate, HIDDEN)
        up = g.linear(f"{m}/up_proj", h, p + "mlp.up_proj.weight", cfg.intermediate, HIDDEN)
        sig = g.op("Sigmoid", f"{m}/act_fn/Sigmoid", [gate])
        silu = g.op("Mul", f"{m}/act_fn/Mul", [gate, sig])
        prod = g.op("Mul", f"{m}/Mul", [silu, up])
        down = g.linear(f"{m}/down_proj", prod, p + "mlp.down_proj.weight", HIDDEN, cfg.intermediate)
        x = g.op("Add", f"{n}/Add_1", [x, down])

    x = rms_norm("/model/norm", x, g.weight("model.norm.weight", (HIDDEN,)))
    return x, seq_len


def write_model_json(path, model):
    """One initializer or node per line: diffable, and small enough to read."""
    lines = ["{"]
    for i, (k, v) in enumerate(model.items()):
        end = "," if i + 1 < len(model) else ""
        if isinstance(v, list):
            lines.append(f" {json.dumps(k)}: [")
            lines += ["  " + json.dumps(item) + ("," if j + 1 < len(v) else "") for j, item in enumerate(v)]
            lines.append(" ]" + end)
        else:
            lines.append(f" {json.dumps(k)}: {json.dumps(v)}{end}")
    with open(path, "w") as f:
        f.write("\n".join(lines + ["}"]) + "\n")


# ---- independent numpy reference ---------------------------------------------------

def rope_tables(cfg, length):
    """cos, sin [length, head_dim] in float64 (rotate-half layout)."""
    angles = np.arange(length, dtype=np.float64)[:, None] * inverse_frequencies(cfg).astype(np.float64)[None, :]
    angles = np.concatenate([angles, angles], axis=-1)            # [L, head_dim]
    return np.cos(angles), np.sin(angles)


def rms_norm(cfg, x, weight):
    eps = float(np.float32(cfg.eps))
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def decoder_layer(cfg, W, i, x):
    """Layer i of the Qwen3 decoder on one sequence x [L, hidden], float64.
    W maps HF weight names to float64 arrays (only layer i's are read)."""
    L = x.shape[0]
    HEADS, KV_HEADS, HEAD_DIM = cfg.heads, cfg.kv_heads, cfg.head_dim
    cos, sin = rope_tables(cfg, L)
    causal = np.tril(np.ones((L, L), dtype=bool))                  # key j visible to query i iff j <= i

    def rotate_half(t):
        half = HEAD_DIM // 2
        return np.concatenate([-t[..., half:], t[..., :half]], axis=-1)

    p = f"model.layers.{i}."
    h = rms_norm(cfg, x, W[p + "input_layernorm.weight"])
    q = (h @ W[p + "self_attn.q_proj.weight"].T).reshape(L, HEADS, HEAD_DIM)
    k = (h @ W[p + "self_attn.k_proj.weight"].T).reshape(L, KV_HEADS, HEAD_DIM)
    v = (h @ W[p + "self_attn.v_proj.weight"].T).reshape(L, KV_HEADS, HEAD_DIM)
    q = rms_norm(cfg, q, W[p + "self_attn.q_norm.weight"])
    k = rms_norm(cfg, k, W[p + "self_attn.k_norm.weight"])
    heads = []
    for hq in range(HEADS):
        kv = hq // (HEADS // KV_HEADS)                              # GQA: kv head j serves 2j, 2j+1
        qh = q[:, hq, :] * cos + rotate_half(q[:, hq, :]) * sin
        kh = k[:, kv, :] * cos + rotate_half(k[:, kv, :]) * sin
        scores = qh @ kh.T / np.sqrt(HEAD_DIM)
        scores = np.where(causal, scores, -np.inf)
        probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        heads.append(probs @ v[:, kv, :])
    ctx = np.concatenate(heads, axis=-1)                            # [L, heads*head_dim]
    x = x + ctx @ W[p + "self_attn.o_proj.weight"].T
    h = rms_norm(cfg, x, W[p + "post_attention_layernorm.weight"])
    gate = h @ W[p + "mlp.gate_proj.weight"].T
    up = h @ W[p + "mlp.up_proj.weight"].T
    silu = gate / (1.0 + np.exp(-gate))
    return x + (silu * up) @ W[p + "mlp.down_proj.weight"].T


def reference_hidden(cfg, W, ids):
    """Final normed hidden states [L, hidden] (float64) of one sequence."""
    x = W["model.embed_tokens.weight"][ids]                        # [L, hidden]
    for i in range(cfg.layers):
        x = decoder_layer(cfg, W, i, x)
    return rms_norm(cfg, x, W["model.norm.weight"])
