#!/usr/bin/python3
"""An exporter-style decoder fixture (fixtures/onnx/decoder/): a small
Qwen3-like model (3 layers, hidden 64, 4 query heads, 2 kv heads, head_dim
16, vocab 100, q/k norms, SwiGLU MLP, seeded random weights) written as
ONNX the way torch.onnx.export (TorchScript, opset 17) / Optimum write HF
models, not the way fusec's own JSON IR is written:

- Constant nodes for scalars and shapes, in several attribute forms (value
  tensors, value_int, value_ints, value_float);
- input_ids [1, "seq"] (dim_param); the sequence length read back with
  Shape -> Gather; cache_position = Range(past, past + S), position_ids;
- every `.expand(...)` as torch exports aten::expand with a size list:
  Expand(x, Where(Equal(size, -1 * ones), ones, size));
- RMSNorm as Cast(float) -> Pow(x, 2) -> ReduceMean -> Add(eps) -> Sqrt ->
  Div(x, .) -> Cast -> Mul(weight); the q/k norms use Reciprocal(Sqrt) ->
  Mul, the final norm Mul(x, Div(ones(1), Sqrt)) (torch's rsqrt);
- HF rotary: inv_freq[None, :, None].float().expand(B, -1, 1) @
  position_ids[:, None, :].float(), Transpose, Concat(freqs, freqs),
  Cos/Sin (* attention_scaling 1.0), Unsqueeze(1); rotate-half with
  Slice/Neg/Concat;
- GQA repeat_kv: Unsqueeze(2) -> Expand -> Reshape, with shapes built from
  Shape/Gather/Unsqueeze/Concat of K at run time;
- one attention spelling per layer:
  0: eager, Div by sqrt(d), transformers < 4.36 `_make_causal_mask`:
     Where(Less(arange(S), (arange(S) + 1).view(S, 1)), 0, full(min));
  1: eager, Mul by 1/sqrt(d), transformers 4.40-4.47 `_update_causal_mask`:
     triu(full(min), 1) * Cast(arange(S) > cache_position.reshape(-1, 1));
  2: torch.onnx's scaled_dot_product_attention(is_causal=True): scale
     Sqrt(1 / Sqrt(Cast(Shape(q)[-1:]))) on Q and K^T, mask
     Where(Equal(Trilu(Expand(1.0, [L, S]), upper=0), 0), -inf, 0);
  eager layers cast the Softmax to float (a no-op Cast); layer 2's rotary
  is the older per-layer cache: cos_cached[:S][position_ids].unsqueeze(1)
  (Slice -> Gather -> Unsqueeze of [max_pos, d] initializers);
- SwiGLU as Sigmoid/Mul (two groupings).

Also writes input_ids.npy and expected_logits.npy (11 tokens; the layout the
generic loop of tests/cli/test_onnx.sh reads, with `args`) and the same for
4 and 1 tokens in seq4/ and seq1/, the logits computed by an independent numpy forward
(float64 maths on the float32 weights, not an evaluation of the ONNX
graph), and counts.json: how many norms, ropes, attentions and SwiGLUs the
model holds (what `fuse` must find).

Checks the ONNX model against the numpy forward with ONNX Runtime (node +
onnxruntime-node) when build/ort is there: --check-ort.

Usage: /usr/bin/python3 scripts/gen_onnx_decoder.py [OUT_DIR] [--check-ort]"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
args = [a for a in sys.argv[1:] if not a.startswith("--")]
OUT = args[0] if args else os.path.join(ROOT, "fixtures", "onnx", "decoder")
CHECK_ORT = "--check-ort" in sys.argv

LAYERS, HIDDEN, HEADS, KV_HEADS, HEAD_DIM, VOCAB, INTER = 3, 64, 4, 2, 16, 100, 96
EPS, THETA, MAX_SEQ = 1e-6, 10000.0, 32
LENGTHS = (11, 4, 1)   # the first is also the generic test_onnx.sh case
F, I64 = TensorProto.FLOAT, TensorProto.INT64
rng = np.random.default_rng(20261201)


def randw(*shape, scale=None):
    s = scale if scale is not None else 1.0 / np.sqrt(shape[0])
    return (rng.standard_normal(shape) * s).astype(np.float32)


# Weights, [in, out] as torch.onnx writes a Linear's transposed weight.
W = {"embed": randw(VOCAB, HIDDEN, scale=1.0)}
for l in range(LAYERS):
    p = f"l{l}."
    W[p + "in_norm"] = (1 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float32)
    W[p + "q"] = randw(HIDDEN, HEADS * HEAD_DIM)
    W[p + "k"] = randw(HIDDEN, KV_HEADS * HEAD_DIM)
    W[p + "v"] = randw(HIDDEN, KV_HEADS * HEAD_DIM)
    W[p + "q_norm"] = (1 + 0.1 * rng.standard_normal(HEAD_DIM)).astype(np.float32)
    W[p + "k_norm"] = (1 + 0.1 * rng.standard_normal(HEAD_DIM)).astype(np.float32)
    W[p + "o"] = randw(HEADS * HEAD_DIM, HIDDEN)
    W[p + "post_norm"] = (1 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float32)
    W[p + "gate"] = randw(HIDDEN, INTER)
    W[p + "up"] = randw(HIDDEN, INTER)
    W[p + "down"] = randw(INTER, HIDDEN)
W["final_norm"] = (1 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float32)
W["lm_head"] = randw(HIDDEN, VOCAB)
INV_FREQ = (1.0 / THETA ** (np.arange(0, HEAD_DIM, 2, dtype=np.int64).astype(np.float32) / HEAD_DIM)).astype(np.float32)


# ---- the independent numpy forward --------------------------------------------

def np_forward(ids):
    f = {k: v.astype(np.float64) for k, v in W.items()}
    S = ids.shape[1]

    def rms(x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + EPS) * w

    pos = np.arange(S, dtype=np.float64)
    ang = pos[:, None] * INV_FREQ.astype(np.float64)[None, :]      # [S, D/2]
    cos, sin = np.cos(ang), np.sin(ang)

    def rope(x):   # x [H, S, D], pairs (i, i + D/2)
        a, b = x[..., : HEAD_DIM // 2], x[..., HEAD_DIM // 2:]
        return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)

    h = f["embed"][ids[0]]                                           # [S, HIDDEN]
    for l in range(LAYERS):
        p = f"l{l}."
        x = rms(h, f[p + "in_norm"])
        q = (x @ f[p + "q"]).reshape(S, HEADS, HEAD_DIM).transpose(1, 0, 2)
        k = (x @ f[p + "k"]).reshape(S, KV_HEADS, HEAD_DIM).transpose(1, 0, 2)
        v = (x @ f[p + "v"]).reshape(S, KV_HEADS, HEAD_DIM).transpose(1, 0, 2)
        q, k = rope(rms(q, f[p + "q_norm"])), rope(rms(k, f[p + "k_norm"]))
        out = np.empty((HEADS, S, HEAD_DIM))
        for hd in range(HEADS):
            kv = hd // (HEADS // KV_HEADS)
            s = q[hd] @ k[kv].T / np.sqrt(HEAD_DIM)
            s = np.where(np.tril(np.ones((S, S), bool)), s, -np.inf)
            e = np.exp(s - s.max(axis=-1, keepdims=True))
            out[hd] = (e / e.sum(axis=-1, keepdims=True)) @ v[kv]
        h = h + out.transpose(1, 0, 2).reshape(S, HEADS * HEAD_DIM) @ f[p + "o"]
        x = rms(h, f[p + "post_norm"])
        g = x @ f[p + "gate"]
        h = h + (g / (1 + np.exp(-g)) * (x @ f[p + "up"])) @ f[p + "down"]
    return (rms(h, f["final_norm"]) @ f["lm_head"])[None].astype(np.float32)


# ---- the ONNX graph, exporter style ---------------------------------------------

nodes, inits = [], []
_n = [0]


def uniq(base):
    _n[0] += 1
    return f"/{base}_{_n[0]}"


def node(op, ins, n_out=1, name=None, **attrs):
    nm = name or uniq(op)
    outs = [f"{nm}_output_{i}" for i in range(n_out)]
    nodes.append(helper.make_node(op, ins, outs, name=nm, **attrs))
    return outs[0] if n_out == 1 else outs


def const(value, form="value"):
    """A Constant node in one of its attribute forms."""
    nm = uniq("Constant")
    out = nm + "_output_0"
    if form == "value":
        a = np.asarray(value)
        t = numpy_helper.from_array(a, out)
        nodes.append(helper.make_node("Constant", [], [out], name=nm, value=t))
    elif form == "value_int":
        nodes.append(helper.make_node("Constant", [], [out], name=nm, value_int=int(value)))
    elif form == "value_ints":
        nodes.append(helper.make_node("Constant", [], [out], name=nm, value_ints=[int(v) for v in value]))
    elif form == "value_float":
        nodes.append(helper.make_node("Constant", [], [out], name=nm, value_float=float(value)))
    else:
        raise ValueError(form)
    return out


def init(name, a, raw=True):
    if raw:
        inits.append(numpy_helper.from_array(a, name))
    else:   # typed float_data
        inits.append(helper.make_tensor(name, F, a.shape, a.flatten().tolist(), raw=False))
    return name


def f32(v):
    return np.array(v, dtype=np.float32)


def i64(v):
    return np.array(v, dtype=np.int64)


def rms_norm(x, weight, style):
    xf = node("Cast", [x], to=F)                                  # hidden_states.to(torch.float32)
    sq = node("Pow", [xf, const(f32(2.0))])
    var = node("ReduceMean", [sq], axes=[-1], keepdims=1)
    s = node("Sqrt", [node("Add", [var, const(f32(EPS))])])
    if style == "div":
        y = node("Div", [xf, s])
    elif style == "rsqrt":                                        # torch.rsqrt as Reciprocal(Sqrt)
        y = node("Mul", [xf, node("Reciprocal", [s])])
    else:                                                         # torch.rsqrt as Div(ones(1), Sqrt) (opset 9)
        y = node("Mul", [xf, node("Div", [const(f32([1.0])), s])])
    return node("Mul", [weight, node("Cast", [y], to=F)])


def rotate_half(x):
    half = HEAD_DIM // 2
    x1 = node("Slice", [x, const(i64([0])), const(i64([half])), const(i64([3])), const(i64([1]))])
    x2 = node("Slice", [x, const(i64([half])), const(i64([np.iinfo(np.int64).max])), const(i64([-1])),
                        const(i64([1]))])
    return node("Concat", [node("Neg", [x2]), x1], axis=-1)


def apply_rope(x, cos, sin):
    return node("Add", [node("Mul", [x, cos]), node("Mul", [rotate_half(x), sin])])


def rope_tables(prefix):
    """An older HF layer's cos_cached / sin_cached buffers [MAX_SEQ, HEAD_DIM], computed in float32 as
    torch does (cat(freqs, freqs).cos())."""
    t = np.arange(MAX_SEQ, dtype=np.float32)
    emb = np.concatenate([np.outer(t, INV_FREQ)] * 2, axis=-1).astype(np.float32)
    return (init(prefix + "self_attn.rotary_emb.cos_cached", np.cos(emb).astype(np.float32)),
            init(prefix + "self_attn.rotary_emb.sin_cached", np.sin(emb).astype(np.float32)))


def torch_expand(x, size):
    """torch.onnx's aten::expand with a size list: -1 entries become 1 by
    Where(Equal(size, -1 * ones), ones, size) (opset 9 symbolic)."""
    ones = node("ConstantOfShape", [node("Shape", [size])], value=numpy_helper.from_array(i64([1])))
    neg = node("Mul", [ones, const(i64(-1))])
    return node("Expand", [x, node("Where", [node("Equal", [size, neg]), ones, size])])


def build():
    ids = "input_ids"
    shape_ids = node("Shape", [ids])
    seq = node("Gather", [shape_ids, const(1, "value_int")], axis=0)              # scalar S
    seq_1 = node("Unsqueeze", [seq, const(i64([0]))])                              # [S]
    batch = node("Gather", [shape_ids, const(i64(0))], axis=0)
    batch_1 = node("Unsqueeze", [batch, const(i64([0]))])

    h = node("Gather", [init("model.embed_tokens.weight", W["embed"]), ids], axis=0)   # [1, S, HIDDEN]

    # cache_position = arange(past, past + S), position_ids = cache_position.unsqueeze(0)
    past = const(i64(0))
    cache_position = node("Range", [past, node("Add", [past, seq]), const(i64(1))])
    position_ids = node("Unsqueeze", [cache_position, const(i64([0]))])                 # [1, S]
    # HF LlamaRotaryEmbedding: inv_freq[None, :, None].float().expand(B, -1, 1) @ position_ids[:, None, :].float()
    inv = node("Unsqueeze", [node("Unsqueeze", [init("model.rotary_emb.inv_freq", INV_FREQ), const(i64([0]))]),
                             const(i64([2]))])
    inv = torch_expand(node("Cast", [inv], to=F),
                       node("Concat", [batch_1, const(i64([-1])), const(i64([1]))], axis=0))   # [B, D/2, 1]
    pos_f = node("Cast", [node("Unsqueeze", [position_ids, const(i64([1]))])], to=F)     # [1, 1, S]
    freqs = node("Transpose", [node("MatMul", [inv, pos_f])], perm=[0, 2, 1])          # [1, S, D/2]
    emb = node("Concat", [freqs, freqs], axis=-1)
    cos = node("Unsqueeze", [node("Mul", [node("Cos", [emb]), const(1.0, "value_float")]), const(i64([1]))])
    sin = node("Unsqueeze", [node("Mul", [node("Sin", [emb]), const(1.0, "value_float")]), const(i64([1]))])

    fmin = f32(np.finfo(np.float32).min)
    # Layer 0's mask (transformers < 4.36 _make_causal_mask):
    #   full((S, S), min).masked_fill_(arange(S) < (arange(S) + 1).view(S, 1), 0)[None, None].expand(B, 1, S, S)
    cond_range = node("Range", [const(i64(0)), seq, const(i64(1))])
    rows = node("Reshape", [node("Add", [cond_range, const(i64(1))]), const(i64([-1, 1]), "value_ints")])  # [S, 1]
    full = node("ConstantOfShape", [node("Concat", [seq_1, seq_1], axis=0)],
                value=numpy_helper.from_array(fmin.reshape(1)))
    m0 = node("Where", [node("Less", [cond_range, rows]), const(f32(0.0)), full])
    mask0 = torch_expand(node("Unsqueeze", [m0, const(i64([0, 1]))]),
                         node("Concat", [batch_1, const(i64([1])), seq_1, seq_1], axis=0))
    # Layer 1's mask (transformers 4.40-4.47 _update_causal_mask, no attention_mask):
    #   m = triu(full((S, T), min), 1); m *= arange(T) > cache_position.reshape(-1, 1); m[None, None].expand(B, 1, -1, -1)
    tri = node("Trilu", [node("ConstantOfShape", [node("Concat", [seq_1, seq_1], axis=0)],
                              value=numpy_helper.from_array(fmin.reshape(1))), const(i64(1))], upper=1)
    later = node("Greater", [node("Range", [const(i64(0)), seq, const(i64(1))]),
                             node("Reshape", [cache_position, const(i64([-1, 1]))])])
    m1 = node("Mul", [tri, node("Cast", [later], to=F)])
    mask1 = torch_expand(node("Unsqueeze", [node("Unsqueeze", [m1, const(i64([0]))]), const(i64([1]))]),
                         node("Concat", [batch_1, const(i64([1, -1, -1]))], axis=0))

    # [B, S, H, D] views built from the run-time sizes
    def heads_shape(n):
        return node("Concat", [batch_1, seq_1, const(i64([n])), const(i64([HEAD_DIM]))], axis=0)

    def repeat_kv(x):   # [B, KV, S, D] -> [B, H, S, D]: x[:, :, None, :, :].expand(B, KV, n, S, D).reshape(B, H, S, D)
        xs = node("Shape", [x])
        b_, s_ = (node("Unsqueeze", [node("Gather", [xs, const(i64(k))], axis=0), const(i64([0]))]) for k in (0, 2))
        e = torch_expand(node("Unsqueeze", [x, const(i64([2]))]),
                         node("Concat", [b_, const(i64([KV_HEADS, HEADS // KV_HEADS])), s_, const(i64([HEAD_DIM]))],
                              axis=0))
        return node("Reshape", [e, node("Concat", [b_, const(i64([HEADS])), s_, const(i64([HEAD_DIM]))], axis=0)])

    for l in range(LAYERS):
        p = f"model.layers.{l}."
        w = {k[len(f"l{l}."):]: v for k, v in W.items() if k.startswith(f"l{l}.")}
        res = h
        x = rms_norm(h, init(p + "input_layernorm.weight", w["in_norm"], raw=False), "div")
        q = node("Reshape", [node("MatMul", [x, init(p + "self_attn.q_proj.weight_T", w["q"])]), heads_shape(HEADS)])
        k = node("Reshape", [node("MatMul", [x, init(p + "self_attn.k_proj.weight_T", w["k"])]),
                             heads_shape(KV_HEADS)])
        v = node("Reshape", [node("MatMul", [x, init(p + "self_attn.v_proj.weight_T", w["v"])]),
                             const(i64([1, -1, KV_HEADS, HEAD_DIM]), "value_ints" if l else "value")])
        q = node("Transpose", [rms_norm(q, init(p + "self_attn.q_norm.weight", w["q_norm"]), "rsqrt")],
                 perm=[0, 2, 1, 3])
        k = node("Transpose", [rms_norm(k, init(p + "self_attn.k_norm.weight", w["k_norm"]), "rsqrt")],
                 perm=[0, 2, 1, 3])
        v = node("Transpose", [v], perm=[0, 2, 1, 3])
        if l == 2:   # transformers < 4.38: per-layer cos_cached[:seq_len][position_ids].unsqueeze(1)
            c_tab, s_tab = rope_tables(p)
            cos_l, sin_l = (node("Unsqueeze", [node("Gather", [node("Slice", [tab, const(i64([0])), seq_1,
                                                                            const(i64([0]))]), position_ids],
                                                     axis=0), const(i64([1]))]) for tab in (c_tab, s_tab))
        else:
            cos_l, sin_l = cos, sin
        q, k = apply_rope(q, cos_l, sin_l), apply_rope(k, cos_l, sin_l)
        k, v = repeat_kv(k), repeat_kv(v)
        if l < 2:   # eager attention
            scores = node("MatMul", [q, node("Transpose", [k], perm=[0, 1, 3, 2])])
            if l == 0:
                scores = node("Div", [scores, const(f32(np.sqrt(HEAD_DIM)))])
            else:
                scores = node("Mul", [scores, const(f32(1 / np.sqrt(HEAD_DIM)))])
            scores = node("Add", [scores, mask0 if l == 0 else mask1])
            probs = node("Cast", [node("Softmax", [scores], axis=-1)], to=F)
        else:       # torch.onnx's scaled_dot_product_attention(q, k, v, is_causal=True) (opset 14 symbolic)
            qs = node("Shape", [q])
            d = node("Cast", [node("Slice", [qs, const(i64([-1])), const(i64([np.iinfo(np.int64).max]))])], to=F)
            scale = node("Sqrt", [node("Div", [const(f32(1.0)), node("Sqrt", [d])])])
            kt = node("Transpose", [k], perm=[0, 1, 3, 2])
            ks = node("Shape", [k])
            size = node("Concat", [node("Slice", [qs, const(i64([-2])), const(i64([-1]))]),
                                   node("Slice", [ks, const(i64([-2])), const(i64([-1]))])], axis=0)
            tril = node("Trilu", [node("Expand", [const(f32([1.0])), size])], upper=0)
            causal = node("Where", [node("Equal", [tril, const(f32([0.0]))]), const(f32([-np.inf])),
                                    const(f32([0.0]))])
            scores = node("MatMul", [node("Mul", [q, scale]), node("Mul", [kt, scale])])
            probs = node("Softmax", [node("Add", [scores, causal])], axis=-1)
        attn = node("Transpose", [node("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        attn = node("Reshape", [attn, node("Concat", [batch_1, seq_1, const(i64([-1]))], axis=0)])
        h = node("Add", [res, node("MatMul", [attn, init(p + "self_attn.o_proj.weight_T", w["o"])])])
        res = h
        x = rms_norm(h, init(p + "post_attention_layernorm.weight", w["post_norm"]), "div")
        g = node("MatMul", [x, init(p + "mlp.gate_proj.weight_T", w["gate"])])
        u = node("MatMul", [x, init(p + "mlp.up_proj.weight_T", w["up"])])
        if l != 1:   # act_fn(gate) * up, SiLU as x * sigmoid(x)
            act = node("Mul", [node("Mul", [g, node("Sigmoid", [g])]), u])
        else:
            act = node("Mul", [u, node("Mul", [node("Sigmoid", [g]), g])])
        h = node("Add", [res, node("MatMul", [act, init(p + "mlp.down_proj.weight_T", w["down"])])])

    x = rms_norm(h, init("model.norm.weight", W["final_norm"]), "rsqrt_div")
    nodes.append(helper.make_node("MatMul", [x, init("lm_head.weight_T", W["lm_head"])], ["logits"], name="/lm_head/MatMul"))

    g = helper.make_graph(nodes, "decoder",
                          [helper.make_tensor_value_info("input_ids", I64, [1, "seq"])],
                          [helper.make_tensor_value_info("logits", F, [1, "seq", VOCAB])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="gen_onnx_decoder.py")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def check_ort(model_path, cases):
    """Runs the model under onnxruntime-node; returns max |ort - numpy| / scale per case."""
    ort_dir = os.path.join(ROOT, "build", "ort")
    script = r"""
const path = require('path'), fs = require('fs');
const ort = require(path.join(path.resolve(process.argv[2]), 'node_modules', 'onnxruntime-node'));
(async () => {
  const s = await ort.InferenceSession.create(process.argv[3]);
  const cases = JSON.parse(fs.readFileSync(process.argv[4], 'utf8'));
  const out = [];
  for (const ids of cases) {
    const r = await s.run({input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, ids.length])});
    out.push(Array.from(r.logits.data));
  }
  console.log(JSON.stringify(out));
})().catch(e => { console.error(String(e)); process.exit(1); });
"""
    with tempfile.TemporaryDirectory() as td:
        js, cj = os.path.join(td, "ort.js"), os.path.join(td, "cases.json")
        open(js, "w").write(script)
        json.dump([ids[0].tolist() for ids, _ in cases], open(cj, "w"))
        got = json.loads(subprocess.run(["node", js, ort_dir, model_path, cj], check=True,
                                        capture_output=True, text=True).stdout)
    errs = []
    for (ids, want), g in zip(cases, got):
        g = np.array(g, dtype=np.float64).reshape(want.shape)
        errs.append(float(np.max(np.abs(g - want)) / np.max(np.abs(want))))
    return errs


def main():
    os.makedirs(OUT, exist_ok=True)
    m = build()
    model_path = os.path.join(OUT, "model.onnx")
    onnx.save(m, model_path)
    cases = []
    ids_rng = np.random.default_rng(7)
    for i, S in enumerate(LENGTHS):
        ids = ids_rng.integers(0, VOCAB, size=(1, S), dtype=np.int64)
        want = np_forward(ids)
        d = OUT if i == 0 else os.path.join(OUT, f"seq{S}")
        os.makedirs(d, exist_ok=True)
        np.save(os.path.join(d, "input_ids.npy"), ids)
        np.save(os.path.join(d, "expected_logits.npy"), want)
        cases.append((ids, want))
    with open(os.path.join(OUT, "args"), "w") as f:
        f.write(f"--max seq={MAX_SEQ}\n")
    with open(os.path.join(OUT, "counts.json"), "w") as f:
        json.dump({"rms_norm": LAYERS * 4 + 1, "rotary_embedding": LAYERS * 2, "attention": LAYERS,
                   "swiglu": LAYERS, "lengths": list(LENGTHS), "max_seq": MAX_SEQ}, f, indent=1)
        f.write("\n")
    if CHECK_ORT:
        for S, e in zip(LENGTHS, check_ort(model_path, cases)):
            print(f"ORT vs numpy, S={S}: max |diff| / max |logits| = {e:.3g}")
            assert e < 1e-5, e


main()
