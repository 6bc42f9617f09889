#!/usr/bin/python3
"""Reference snapshot of the router: routes every eval case with a numpy
forward pass written from the Qwen3 equations (float64; scripts/qwen3_model.py
`decoder_layer`), reading the weights from safetensors. It does not read the
IR: it is the independent check `router eval` compares fusec against.

Writes fixtures/router/<config>/reference.json (see examples/router/README.md
for the format and the route_hash text). Generates the model first (via
gen_router.py) when build/router-models/<config>/ has none.

Run: /usr/bin/python3 examples/router/reference.py --config tiny
"""
import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(HERE))
import gen_router  # noqa: E402
import qwen3_model as qm  # noqa: E402
import safetensors_np  # noqa: E402


def as_float64(t):
    if isinstance(t, safetensors_np.BF16):
        return safetensors_np.bf16_bits_to_f32(t.bits).astype(np.float64)
    return np.asarray(t, dtype=np.float64)


def embed(weights, ids):
    table = weights["model.embed_tokens.weight"]
    if isinstance(table, safetensors_np.BF16):
        return safetensors_np.bf16_bits_to_f32(table.bits[ids]).astype(np.float64)
    return np.asarray(table[ids], dtype=np.float64)


def router_logits(cfg, weights, sequences):
    """Logits [10] (float64) of each token sequence. Layers run in the outer
    loop so each layer's weights are converted to float64 once and only one
    layer is held at a time (the 0.6B weights stay mapped)."""
    xs = [embed(weights, np.asarray(ids, dtype=np.int64)) for ids in sequences]
    for i in range(cfg.layers):
        prefix = f"model.layers.{i}."
        W = {name: as_float64(t) for name, t in weights.items() if name.startswith(prefix)}
        xs = [qm.decoder_layer(cfg, W, i, x) for x in xs]
    final_norm = as_float64(weights["model.norm.weight"])
    head = as_float64(weights[gen_router.HEAD])
    out = []
    for x in xs:
        readout = max(len(x) - 2, 0)                        # token T-2, token 0 when T = 1
        h = qm.rms_norm(cfg, x[readout], final_norm)
        out.append(h @ head.T)
    return out


def decide(scores):
    """(argmax, top-1 minus top-2): first index wins ties."""
    best = int(np.argmax(scores))
    runner_up = max(float(s) for j, s in enumerate(scores) if j != best)
    return best, float(scores[best]) - runner_up


def logit_text(v):
    s = "%.6f" % v
    return "0.000000" if s == "-0.000000" else s


def route_hash(agent_id, role_id, logits):
    text = f"agent={agent_id};role={role_id};logits=" + ",".join(logit_text(float(v)) for v in logits)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def route(logits):
    agent_id, agent_margin = decide(logits[:gen_router.N_AGENTS])
    role_id, role_margin = decide(logits[gen_router.N_AGENTS:])
    return {"agent_id": agent_id, "role_id": role_id, "agent_margin": agent_margin, "role_margin": role_margin,
            "route_hash": route_hash(agent_id, role_id, logits)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="qwen3-0.6b", choices=sorted(gen_router.CONFIGS))
    ap.add_argument("--weights", help="safetensors file (default build/router-models/<config>/model.safetensors)")
    ap.add_argument("--cases", default=str(ROOT / "fixtures" / "router" / "cases.json"))
    ap.add_argument("--out", help="snapshot to write (default fixtures/router/<config>/reference.json)")
    args = ap.parse_args()
    cfg = gen_router.CONFIGS[args.config]
    weights_path = Path(args.weights) if args.weights else gen_router.model_dir(args.config) / "model.safetensors"
    if not args.weights and not weights_path.exists():
        gen_router.generate(args.config, weights_path.parent)
    out_path = Path(args.out) if args.out else ROOT / "fixtures" / "router" / args.config / "reference.json"

    start = time.monotonic()
    cases = json.loads(Path(args.cases).read_text())["cases"]
    weights = safetensors_np.read_mapped(weights_path)
    dtypes = {type(weights[name]).__name__ for name, _ in gen_router.weight_shapes(cfg)}
    all_logits = router_logits(cfg, weights, [c["input_ids"] for c in cases])

    results = []
    for case, logits in zip(cases, all_logits):
        r = {"id": case["id"], "token_count": len(case["input_ids"])}
        r.update(route(logits))
        r["logits"] = [float(v) for v in logits]
        results.append(r)
    snapshot = {
        "schema_version": 1,
        "config": args.config,
        "source": "examples/router/reference.py (numpy, float64)",
        "weights_dtype": "bfloat16" if "BF16" in dtypes else "float32",
        "worst_agent_margin": min(r["agent_margin"] for r in results),
        "worst_role_margin": min(r["role_margin"] for r in results),
        "cases": results,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(snapshot, f, indent=1)
        f.write("\n")
    span = max(abs(v) for r in results for v in r["logits"])
    print(f"wrote {out_path}: {len(results)} cases, worst margins {snapshot['worst_agent_margin']:.3f}/"
          f"{snapshot['worst_role_margin']:.3f}, max |logit| {span:.1f}, {time.monotonic() - start:.1f}s")


if __name__ == "__main__":
    main()
