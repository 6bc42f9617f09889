#!/usr/bin/python3
"""Writes the router model: fusec JSON IR (model.json), its weights
(model.safetensors) and the same graph as ONNX (model.onnx, its weights as
external data in model.safetensors: scripts/ir_to_onnx.py) under
build/router-models/<config>/ (build/router is the eval program).

The router is a Qwen3 decoder (scripts/qwen3_model.py builds it in the
composed form an ONNX exporter produces) read out at one token: the final
normed hidden state at token T-2 (token 0 when T = 1), computed in the graph
as Gather(hidden, max(T - 2, 0), axis=1), times router_head.weight^T
[hidden -> 10] gives `logits` [1, 10]: agent logits are slots 0-6, role
logits 7-9 (Worker, Thinker, Verifier).

Weights use the Hugging Face Qwen3 names plus `router_head.weight` [10, hidden].
Without --weights they are generated from --seed: every tensor has its own
numpy generator seeded by sha256("<seed>:<name>"), filled in fixed-size
chunks, so the file is bit-identical on every run and the 0.6B model (2.4 GB
in float32) never needs to be in memory at once. With --weights FILE, a
safetensors file holding those tensors (a real checkpoint plus a trained
head, float32 or bfloat16) is linked in instead.

Run: /usr/bin/python3 examples/router/gen_router.py --config tiny [--dtype bfloat16]
"""
import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import ir_to_onnx  # noqa: E402
import qwen3_model as qm  # noqa: E402
import safetensors_np  # noqa: E402

VOCAB = 151936   # Qwen3's tokenizer: the eval's token ids are real
CONFIGS = {
    "qwen3-0.6b": qm.Config(layers=28, hidden=1024, heads=16, kv_heads=8, head_dim=128,
                            intermediate=3072, vocab=VOCAB),
    "tiny": qm.Config(layers=2, hidden=64, heads=4, kv_heads=2, head_dim=16,
                      intermediate=192, vocab=VOCAB),
}
N_AGENTS = 7
N_ROLES = 3
N_LOGITS = N_AGENTS + N_ROLES
HEAD = "router_head.weight"
MAX_SEQ = 256          # declared bound of the `seq` symbol; the eval's cases have 3..65 tokens
MAX_BATCH = 64         # declared bound of the `batch` symbol of model_batch.json

DENSE_STD = 0.02       # Hugging Face's initializer_range
NORM_STD = 0.1         # norm scales are 1 + NORM_STD * normal
LOGIT_STD = 12.0       # head scale: logits ~ N(0, 12^2), spanning about +-30
CHUNK_ELEMENTS = 1 << 22
SAFETENSORS_DTYPE = {"float32": "F32", "bfloat16": "BF16"}


def model_dir(config_name):
    return ROOT / "build" / "router-models" / config_name


def weight_shapes(cfg):
    return qm.weight_shapes(cfg) + [(HEAD, (N_LOGITS, cfg.hidden))]


def tensor_rng(seed, name):
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def tensor_chunks(seed, name, shape, hidden, dtype):
    """Yields the bytes of generated tensor `name`, CHUNK_ELEMENTS at a time."""
    if name.endswith("norm.weight"):
        offset, std = 1.0, NORM_STD
    elif name == HEAD:
        # the final norm makes |h| ~ sqrt(hidden), so logit std = std * sqrt(hidden)
        offset, std = 0.0, LOGIT_STD / np.sqrt(hidden)
    else:
        offset, std = 0.0, DENSE_STD
    rng = tensor_rng(seed, name)
    remaining = int(np.prod(shape))
    while remaining > 0:
        n = min(remaining, CHUNK_ELEMENTS)
        values = rng.standard_normal(n, dtype=np.float32) * np.float32(std) + np.float32(offset)
        if dtype == "bfloat16":
            yield safetensors_np.f32_to_bf16_bits(values).astype("<u2").tobytes()
        else:
            yield values.astype("<f4").tobytes()
        remaining -= n


def write_weights(path, cfg, seed, dtype):
    specs = {}
    for name, shape in weight_shapes(cfg):
        specs[name] = (SAFETENSORS_DTYPE[dtype], shape,
                       lambda name=name, shape=shape: tensor_chunks(seed, name, shape, cfg.hidden, dtype))
    safetensors_np.write_streamed(path, specs, {"format": "pt", "generator": "examples/router/gen_router.py",
                                                "seed": str(seed)})


def checkpoint_dtype(path, cfg):
    """The dtype of an existing checkpoint, after checking it holds every
    router tensor with the configuration's shape and one float dtype."""
    header, _ = safetensors_np.read_header(path)
    dtypes = set()
    for name, shape in weight_shapes(cfg):
        if name not in header:
            raise SystemExit(f"{path}: missing tensor '{name}'")
        if tuple(header[name]["shape"]) != tuple(shape):
            raise SystemExit(f"{path}: '{name}' has shape {header[name]['shape']}, the config needs {list(shape)}")
        dtypes.add(header[name]["dtype"])
    by_name = {v: k for k, v in SAFETENSORS_DTYPE.items()}
    if len(dtypes) != 1 or next(iter(dtypes)) not in by_name:
        raise SystemExit(f"{path}: router tensors must all be F32 or all BF16, found {sorted(dtypes)}")
    return by_name[dtypes.pop()]


def build_graph(config_name, cfg, dtype, max_seq):
    g = qm.Graph(weight_dtype=dtype)
    hidden, seq_len = qm.build_decoder(g, cfg)
    # readout token: T - 2, clamped to 0 for one-token inputs
    minus_two = g.op("Sub", "/router/readout/Sub", [seq_len, g.const("const_two_i", np.int64(2), "int64")])
    index = g.op("Max", "/router/readout/Max", [minus_two, "const_zero_i"])
    readout = g.op("Gather", "/router/readout/Gather", [hidden, index], axis=1)    # [1, hidden]
    g.linear("/router_head", readout, HEAD, N_LOGITS, cfg.hidden)
    g.nodes[-1]["outputs"] = ["logits"]
    return {
        "ir_version": 1,
        "name": f"router_{config_name.replace('-', '_').replace('.', '_')}",
        "doc_string": f"Qwen3 router ({config_name}, {dtype} weights): logits[0:7] agents, "
                      "logits[7:10] roles (Worker, Thinker, Verifier), read out at token max(T-2, 0)",
        "weights": "model.safetensors",
        "symbols": {"seq": max_seq},
        "inputs": [{"name": "input_ids", "dtype": "int64", "shape": [1, "seq"]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [1, N_LOGITS]}],
        "initializers": g.initializers,
        "nodes": g.nodes,
    }


def build_batched_graph(config_name, cfg, dtype, max_seq, max_batch):
    """The router over a batch: input_ids [batch, seq] padded on the right and
    attention_mask [batch, seq] (1 for real tokens, 0 for padding). Each row
    is read out at its own max(T_b - 2, 0), T_b = sum of its mask, by a
    one-hot sum over seq (exact: every other term is 0), so `logits`
    [batch, 10] row b is what the unbatched router gives for that row alone.
    Padding comes after every real token, so the causal mask keeps it out of
    their attention; the mask decides where each row is read."""
    g = qm.Graph(weight_dtype=dtype)
    hidden, seq_len = qm.build_decoder(g, cfg, batched=True)                   # [batch, seq, hidden]
    mask_f = g.op("Cast", "/router/readout/Cast_mask", ["attention_mask"], to=1)
    axis_1 = g.const("const_readout_axis_1", [1], "int64")
    length = g.op("ReduceSum", "/router/readout/ReduceSum_len", [mask_f, axis_1], keepdims=0)   # [batch]
    minus_two = g.op("Sub", "/router/readout/Sub", [length, g.const("const_two_f", np.float32(2.0), "float32")])
    index = g.op("Max", "/router/readout/Max", [minus_two, "const_zero_f"])
    index_col = g.op("Unsqueeze", "/router/readout/Unsqueeze_index", [index, axis_1])        # [batch, 1]
    positions = g.op("Range", "/router/readout/Range", ["const_zero_i", seq_len, "const_one_i"])
    pos_f = g.op("Cast", "/router/readout/Cast_pos", [positions], to=1)                    # [seq]
    hit = g.op("Equal", "/router/readout/Equal", [pos_f, index_col])                       # [batch, seq]
    one_hot = g.op("Cast", "/router/readout/Cast_hit", [hit], to=1)
    weight = g.op("Unsqueeze", "/router/readout/Unsqueeze_hit",
                  [one_hot, g.const("const_readout_axis_2", [2], "int64")])                 # [batch, seq, 1]
    picked = g.op("Mul", "/router/readout/Mul", [hidden, weight])
    readout = g.op("ReduceSum", "/router/readout/ReduceSum", [picked, axis_1], keepdims=0)  # [batch, hidden]
    g.linear("/router_head", readout, HEAD, N_LOGITS, cfg.hidden)
    g.nodes[-1]["outputs"] = ["logits"]
    return {
        "ir_version": 1,
        "name": f"router_{config_name.replace('-', '_').replace('.', '_')}_batch",
        "doc_string": f"Qwen3 router ({config_name}, {dtype} weights) over a batch padded on the right: "
                      "logits[b, 0:7] agents, logits[b, 7:10] roles, row b read out at max(T_b - 2, 0), "
                      "T_b = sum(attention_mask[b])",
        "weights": "model.safetensors",
        "symbols": {"batch": max_batch, "seq": max_seq},
        "inputs": [{"name": "input_ids", "dtype": "int64", "shape": ["batch", "seq"]},
                   {"name": "attention_mask", "dtype": "int64", "shape": ["batch", "seq"]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", N_LOGITS]}],
        "initializers": g.initializers,
        "nodes": g.nodes,
    }


def write_batched(config_name, out_dir, dtype, max_seq=MAX_SEQ, max_batch=MAX_BATCH):
    """out_dir/model_batch.json beside an existing model.safetensors."""
    out_dir = Path(out_dir)
    partial = out_dir / "model_batch.json.partial"
    qm.write_model_json(partial, build_batched_graph(config_name, CONFIGS[config_name], dtype, max_seq, max_batch))
    os.replace(partial, out_dir / "model_batch.json")


def generate(config_name, out_dir, dtype="float32", seed=0, weights=None, max_seq=MAX_SEQ):
    """Writes out_dir/model.safetensors, then out_dir/model.json, then
    out_dir/model.onnx (last, so a present model.onnx means a complete model
    and a present model.json a complete fusec model). Returns the dtype used."""
    cfg = CONFIGS[config_name]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path = out_dir / "model.safetensors"
    model_path = out_dir / "model.json"
    onnx_path = out_dir / "model.onnx"
    if weights:
        dtype = checkpoint_dtype(weights, cfg)   # before anything is removed
    for stale in (onnx_path, model_path, out_dir / "model_batch.json"):
        if stale.exists():
            stale.unlink()
    if weights_path.exists() or weights_path.is_symlink():
        weights_path.unlink()
    if weights:
        weights_path.symlink_to(Path(weights).resolve())
    else:
        partial = out_dir / "model.safetensors.partial"
        write_weights(partial, cfg, seed, dtype)
        os.replace(partial, weights_path)
    partial = out_dir / "model.json.partial"
    qm.write_model_json(partial, build_graph(config_name, cfg, dtype, max_seq))
    os.replace(partial, model_path)
    write_batched(config_name, out_dir, dtype, max_seq)
    ir_to_onnx.convert(model_path, onnx_path)   # atomic too: a partial file, then a rename
    return dtype


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="qwen3-0.6b", choices=sorted(CONFIGS))
    ap.add_argument("--dtype", default="float32", choices=sorted(SAFETENSORS_DTYPE),
                    help="weight dtype when generating (ignored with --weights)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weights", help="existing safetensors (real checkpoint + trained head) to use")
    ap.add_argument("--max-seq", type=int, default=MAX_SEQ, help="bound of the seq symbol")
    ap.add_argument("--out", help="output directory (default build/router-models/<config>)")
    ap.add_argument("--batch-only", action="store_true",
                    help="only (re)write model_batch.json beside an existing model.safetensors")
    args = ap.parse_args()
    out_dir = Path(args.out) if args.out else model_dir(args.config)
    if args.batch_only:
        weights_path = out_dir / "model.safetensors"
        if not weights_path.exists():
            raise SystemExit(f"{weights_path}: missing (generate the model first)")
        dtype = checkpoint_dtype(weights_path, CONFIGS[args.config])
        write_batched(args.config, out_dir, dtype, args.max_seq)
        print(f"wrote {out_dir}/model_batch.json ({args.config}, {dtype})")
        return
    start = time.monotonic()
    dtype = generate(args.config, out_dir, args.dtype, args.seed, args.weights, args.max_seq)
    size = (out_dir / "model.safetensors").stat().st_size
    source = f"from {args.weights}" if args.weights else f"seed {args.seed}"
    print(f"wrote {out_dir}/model.json, model.onnx and model.safetensors ({args.config}, {dtype}, {source}, "
          f"{size / 1e6:.1f} MB) in {time.monotonic() - start:.1f}s")


if __name__ == "__main__":
    main()
