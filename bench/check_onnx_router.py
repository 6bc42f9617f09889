#!/usr/bin/python3
"""Checks that the router's ONNX model (scripts/ir_to_onnx.py) computes what
fusec and the numpy reference compute: the logits of a few eval cases from
ONNX Runtime (bench/ort_lane.js, onnxruntime-node under build/ort, which
`make bench` installs), from fusec (build/fusec run, fast profile, JIT) and
from examples/router/reference.py's float64 forward pass, side by side.

A case passes when all three pick the same agent and role and ONNX Runtime's
logits are within --tolerance of the reference's (absolute; the logits
span about +-30). Exit status 0 when every case passes, 1 otherwise, 2 when
something cannot run. Not part of `make test`: it needs ONNX Runtime.

Run: /usr/bin/python3 bench/check_onnx_router.py [--config qwen3-0.6b] [--case ID ...]
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "examples" / "router"))
import gen_router  # noqa: E402
import ir_to_onnx  # noqa: E402
import reference  # noqa: E402
import safetensors_np  # noqa: E402

DEFAULT_CASES = ["math_direct", "long_system_prompt", "empty_user", "longer_context"]


def ort_logits(ort_dir, onnx_path, cases_path, ids):
    """Logits per case id from one ONNX Runtime process (2 threads)."""
    proc = subprocess.Popen(["node", str(ROOT / "bench" / "ort_lane.js"), str(ort_dir), str(onnx_path),
                             str(cases_path), "2"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    requests = "".join(f"run {i} 1\n" for i in ids) + "quit\n"
    out, _ = proc.communicate(requests)
    lines = out.splitlines()
    if proc.returncode != 0 or not lines or not lines[0].startswith("ready"):
        sys.exit(f"check_onnx_router: ONNX Runtime failed: {out.strip()}")
    result = {}
    for case_id, line in zip(ids, lines[1:]):
        words = line.split()
        result[case_id] = np.array([float(v) for v in words[words.index("logits") + 1:]])
    return result


def fusec_logits(model_path, input_ids):
    with tempfile.TemporaryDirectory() as out_dir:
        subprocess.run([str(ROOT / "build" / "fusec"), "run", str(model_path), "--input",
                        "input_ids=" + json.dumps([input_ids]), "--output-dir", out_dir],
                       check=True, stdout=subprocess.DEVNULL)
        return np.load(Path(out_dir) / "logits.npy").reshape(-1).astype(np.float64)


def decisions(logits):
    agent = int(np.argmax(logits[:gen_router.N_AGENTS]))
    return agent, int(np.argmax(logits[gen_router.N_AGENTS:]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="qwen3-0.6b", choices=sorted(gen_router.CONFIGS))
    ap.add_argument("--model-dir", help="model directory (default build/router-models/<config>)")
    ap.add_argument("--case", action="append", help=f"case id, repeatable (default {' '.join(DEFAULT_CASES)})")
    ap.add_argument("--cases", default=str(ROOT / "fixtures" / "router" / "cases.json"))
    ap.add_argument("--ort-dir", default=str(ROOT / "build" / "ort"))
    ap.add_argument("--tolerance", type=float, default=1e-3, help="max |ORT logit - reference logit|")
    args = ap.parse_args()
    cfg = gen_router.CONFIGS[args.config]
    model_dir = Path(args.model_dir) if args.model_dir else gen_router.model_dir(args.config)
    model_path, onnx_path = model_dir / "model.json", model_dir / "model.onnx"
    if not model_path.exists():
        sys.exit(f"check_onnx_router: no {model_path} (examples/router/gen_router.py writes it)")
    if not (ROOT / "build" / "fusec").exists():
        sys.exit("check_onnx_router: build/fusec is missing (make all)")
    if not (Path(args.ort_dir) / "node_modules" / "onnxruntime-node").exists():
        sys.exit(f"check_onnx_router: no onnxruntime-node under {args.ort_dir} (make bench installs it)")
    if not onnx_path.exists():
        ir_to_onnx.convert(model_path, onnx_path)

    ids = args.case or DEFAULT_CASES
    by_id = {c["id"]: c for c in json.loads(Path(args.cases).read_text())["cases"]}
    missing = [i for i in ids if i not in by_id]
    if missing:
        sys.exit(f"check_onnx_router: no case {', '.join(missing)} in {args.cases}")
    sequences = [by_id[i]["input_ids"] for i in ids]

    ort = ort_logits(args.ort_dir, onnx_path, args.cases, ids)
    weights = safetensors_np.read_mapped(model_dir / "model.safetensors")
    ref = dict(zip(ids, reference.router_logits(cfg, weights, sequences)))
    failed = 0
    print(f"{args.config}: ONNX Runtime vs fusec (fast, jit) vs numpy reference (float64)")
    print(f"{'case':24s} {'tok':>4s} {'a/r ort':>8s} {'fusec':>6s} {'ref':>6s} {'|ort-ref|':>10s} "
          f"{'|fusec-ref|':>11s} {'|ort-fusec|':>11s}")
    for case_id, seq in zip(ids, sequences):
        fu = fusec_logits(model_path, seq)
        o, r = ort[case_id], ref[case_id]
        d_ort, d_fu, d_both = (float(np.max(np.abs(a - b))) for a, b in ((o, r), (fu, r), (o, fu)))
        ok = decisions(o) == decisions(r) == decisions(fu) and d_ort <= args.tolerance
        failed += not ok
        print(f"{case_id:24s} {len(seq):4d} {'%d/%d' % decisions(o):>8s} {'%d/%d' % decisions(fu):>6s} "
              f"{'%d/%d' % decisions(r):>6s} {d_ort:10.2e} {d_fu:11.2e} {d_both:11.2e}  {'ok' if ok else 'FAIL'}")
    print(f"{len(ids) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
