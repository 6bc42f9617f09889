#!/usr/bin/env bash
# Whole models give the same bytes on 1, 2 and 3 threads. The runtime's pool
# reads FUSEC_NUM_THREADS once, at process start, so each thread count is its
# own `fusec run`. Models:
#   wide: a one-layer Qwen3-style decoder as wide as the router (hidden 1024,
#         16/8 heads of 128, MLP 3072), so its norms, RoPE, SwiGLU,
#         transposes, attention, GEMMs and residual loops all split; all four
#         lanes, at 15 and 65 tokens.
#   loops: elementwise loops with broadcasts (the nested, odometer form of a
#         parallel loop), which must also equal numpy bit for bit.
# Usage: tests/cli/test_threads.sh BUILD_DIR
set -u
build=${1:-build}
fusec="$(cd "$build" && pwd)/fusec"
py=/usr/bin/python3
tmp=$(mktemp -d /tmp/fusec_threads_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0

ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -s "$tmp/err" ] && sed 's/^/       /' "$tmp/err" | head -5; }

$py - "$tmp" <<'EOF'
import json, sys
from pathlib import Path
import numpy as np
sys.path.insert(0, "scripts")
import qwen3_model as qm
import safetensors_np

out = Path(sys.argv[1])
cfg = qm.Config(layers=1, hidden=1024, heads=16, kv_heads=8, head_dim=128, intermediate=3072, vocab=512)
rng = np.random.default_rng(0)
weights = {}
for name, shape in qm.weight_shapes(cfg) + [("lm_head.weight", (cfg.vocab, cfg.hidden))]:
    if len(shape) == 1:
        weights[name] = (1 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    else:
        weights[name] = (0.05 * rng.standard_normal(shape)).astype(np.float32)
safetensors_np.write(out / "wide.safetensors", weights)
g = qm.Graph()
x, _ = qm.build_decoder(g, cfg)
g.linear("/lm_head", x, "lm_head.weight", cfg.vocab, cfg.hidden)
g.nodes[-1]["outputs"] = ["logits"]
qm.write_model_json(out / "wide.json", {
    "ir_version": 1, "name": "wide", "weights": "wide.safetensors", "symbols": {"seq": 128},
    "inputs": [{"name": "input_ids", "dtype": "int64", "shape": [1, "seq"]}],
    "outputs": [{"name": "logits", "dtype": "float32", "shape": [1, "seq", cfg.vocab]}],
    "initializers": g.initializers, "nodes": g.nodes})
for n in (15, 65):
    np.save(out / f"ids{n}.npy", rng.integers(0, cfg.vocab, size=(1, n)).astype(np.int64))

# y = x * b + x with b broadcast over the seq and row axes; z = u - c with c one per row
json.dump({"ir_version": 1, "name": "loops", "symbols": {"seq": 8},
           "inputs": [{"name": "x", "dtype": "float32", "shape": ["seq", 4, 3, 3000]},
                      {"name": "b", "dtype": "float32", "shape": [4, 1, 3000]},
                      {"name": "u", "dtype": "float32", "shape": ["seq", 40000]},
                      {"name": "c", "dtype": "float32", "shape": ["seq", 1]}],
           "outputs": [{"name": "y", "dtype": "float32", "shape": ["seq", 4, 3, 3000]},
                       {"name": "z", "dtype": "float32", "shape": ["seq", 40000]}],
           "nodes": [{"name": "mul", "op": "Mul", "inputs": ["x", "b"], "outputs": ["t"]},
                     {"name": "add", "op": "Add", "inputs": ["t", "x"], "outputs": ["y"]},
                     {"name": "sub", "op": "Sub", "inputs": ["u", "c"], "outputs": ["z"]}]},
          open(out / "loops.json", "w"))
xs = rng.standard_normal((5, 4, 3, 3000)).astype(np.float32)
bs = rng.standard_normal((4, 1, 3000)).astype(np.float32)
us = rng.standard_normal((5, 40000)).astype(np.float32)
cs = rng.standard_normal((5, 1)).astype(np.float32)
for name, a in (("x", xs), ("b", bs), ("u", us), ("c", cs)):
    np.save(out / f"{name}.npy", a)
np.save(out / "y_expected.npy", xs * bs + xs)
np.save(out / "z_expected.npy", us - cs)
EOF
[ -f "$tmp/wide.json" ] || { echo "FAIL generating the models"; exit 1; }

# same_bytes NAME OUTPUT ARGS...: runs `fusec run ARGS --output-dir` on 1, 2
# and 3 threads; OUTPUT.npy must be byte-identical across them.
same_bytes() {
    local name=$1 output=$2; shift 2
    local t
    for t in 1 2 3; do
        if ! FUSEC_NUM_THREADS=$t "$fusec" run "$@" --output-dir "$tmp/out$t" >"$tmp/out" 2>"$tmp/err"; then
            bad "$name: the run on $t thread(s) failed"; return
        fi
    done
    if cmp -s "$tmp/out1/$output.npy" "$tmp/out2/$output.npy" && cmp -s "$tmp/out1/$output.npy" "$tmp/out3/$output.npy"; then
        ok "$name: same bytes on 1, 2 and 3 threads"
    else
        bad "$name: outputs differ between thread counts"
    fi
}

for lane in fast/jit fast/aot bare/jit bare/aot; do
    for n in 15 65; do
        same_bytes "wide $lane, $n tokens" logits "$tmp/wide.json" --input "input_ids=$tmp/ids$n.npy" \
            --profile "${lane%/*}" --backend "${lane#*/}" --cache-dir "$tmp/cache"
    done
done
if $py -c "
import numpy as np, sys
a = np.load('$tmp/out1/logits.npy')
sys.exit(0 if a.shape == (1, 65, 512) and np.isfinite(a).all() and np.abs(a).max() > 0 else 1)"; then
    ok "wide logits are finite and not all zero"
else
    bad "wide logits are finite and not all zero"
fi

loops_inputs=(--input "x=$tmp/x.npy" --input "b=$tmp/b.npy" --input "u=$tmp/u.npy" --input "c=$tmp/c.npy")
for backend in jit aot; do
    same_bytes "broadcast loops ($backend), y" y "$tmp/loops.json" "${loops_inputs[@]}" --backend $backend --cache-dir "$tmp/cache"
    same_bytes "broadcast loops ($backend), z" z "$tmp/loops.json" "${loops_inputs[@]}" --backend $backend --cache-dir "$tmp/cache"
    if $py -c "
import numpy as np, sys
ok = all(np.array_equal(np.load('$tmp/out2/' + n + '.npy'), np.load('$tmp/' + n + '_expected.npy')) for n in 'yz')
sys.exit(0 if ok else 1)"; then
        ok "broadcast loops ($backend) equal numpy bit for bit"
    else
        bad "broadcast loops ($backend) equal numpy bit for bit"
    fi
done
# the loops above really are the parallel (function) form
"$fusec" run "$tmp/loops.json" "${loops_inputs[@]}" --emit-c "$tmp/loops.c" >/dev/null 2>"$tmp/err"
if [ "$(grep -c '^static void fu_loop' "$tmp/loops.c")" -eq 2 ] && grep -q 'if (++i2 < n2) continue;' "$tmp/loops.c"; then
    ok "both loops are shared across cores, one of them nested"
else
    bad "both loops are shared across cores, one of them nested"
fi

echo "threads: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
