#!/usr/bin/env bash
# The exporter-style ONNX decoder (fixtures/onnx/decoder/, written by
# scripts/gen_onnx_decoder.py: Constant nodes, Shape->Gather->Range masks,
# Pow/ReduceMean/Sqrt/Div RMSNorms, rotate-half RoPE, repeat_kv GQA):
# - `fusec run model.onnx --max seq=32` matches the script's independent
#   numpy logits for both input lengths, bare and fast profiles;
# - imported and fused, every RMSNorm (q/k norms included), RoPE, attention
#   and SwiGLU fuses (counts from counts.json, written by the script from the
#   model's structure), both causal masks become is_causal, no near miss,
#   and no Softmax / ReduceMean / Pow / mask builder is left in the graph.
# Usage: tests/cli/test_onnx_decoder.sh BUILD_DIR
set -u
build=${1:-build}
fusec="$(cd "$build" && pwd)/fusec"
py=/usr/bin/python3
fx=fixtures/onnx/decoder
tmp=$(mktemp -d /tmp/fusec_decoder_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -s "$tmp/err" ] && sed 's/^/       /' "$tmp/err" | head -8; }

# Tolerance: float32 against float64 numpy; max |diff| <= 1e-5 * max |logits|.
compare() {  # GOT.npy WANT.npy
    "$py" - "$1" "$2" <<'PY' 2>"$tmp/err"
import sys
import numpy as np
got, want = np.load(sys.argv[1]).astype(np.float64), np.load(sys.argv[2]).astype(np.float64)
assert got.shape == want.shape, (got.shape, want.shape)
err = float(np.max(np.abs(got - want))) / float(np.max(np.abs(want)))
assert err <= 1e-5, "max |diff| / max |logits| = %.3g" % err
print("%.2g" % err)
PY
}

for case in "$fx" "$fx/seq4" "$fx/seq1"; do
    seq=$("$py" -c "import numpy as np, sys; print(np.load(sys.argv[1]).shape[1])" "$case/input_ids.npy")
    for p in bare fast; do
        rm -rf "$tmp/out"; mkdir -p "$tmp/out"
        if "$fusec" run "$fx/model.onnx" --max seq=32 --input "input_ids=$case/input_ids.npy" --profile $p \
               --output-dir "$tmp/out" >/dev/null 2>"$tmp/err" &&
           err=$(compare "$tmp/out/logits.npy" "$case/expected_logits.npy"); then
            ok "decoder, $seq tokens ($p): logits match numpy (rel. err $err)"
        else
            bad "decoder, $seq tokens ($p): logits match numpy"
        fi
    done
done

# What fuses: the report's counts and the fused graph's ops.
if "$fusec" import "$fx/model.onnx" --max seq=32 -o "$tmp/m.json" >/dev/null 2>"$tmp/err" &&
   "$fusec" dump "$tmp/m.json" --explain-fusions -o "$tmp/report.txt" 2>"$tmp/err" &&
   "$fusec" dump "$tmp/m.json" -o "$tmp/fused.json" 2>"$tmp/err"; then
    ok "decoder imported and fused"
else
    bad "decoder imported and fused"
fi
"$py" - "$fx/counts.json" "$tmp/report.txt" "$tmp/fused.json" >"$tmp/checks" 2>"$tmp/err" <<'PY'
import collections, json, re, sys
want = json.load(open(sys.argv[1]))
report = open(sys.argv[2]).read()
fused = json.load(open(sys.argv[3]))
ops = collections.Counter(n["op"] for n in fused["nodes"])
table = {m.group(1): (int(m.group(2)), int(m.group(3)))
         for m in re.finditer(r"^(\w+) +(\d+) +(\d+)$", report, re.M)}
def check(name, cond, detail):
    print(("ok   " if cond else "FAIL ") + name + ("" if cond else ": " + detail))
for rule, op in (("rms_norm", "RMSNormalization"), ("rotary_embedding", "RotaryEmbedding"),
                 ("attention", "Attention"), ("swiglu", "SwiGLU")):
    n = want[rule]
    check(f"{rule}: all {n} fused, no near miss", table.get(rule) == (n, 0), f"report says {table.get(rule)}")
    check(f"{op} x{n} in the fused graph", ops[op] == n, f"{ops[op]}")
attn = [n for n in fused["nodes"] if n["op"] == "Attention"]
check("every attention causal (is_causal=1, no attn_mask)",
      all(n.get("attrs", {}).get("is_causal") == 1 and len(n["inputs"]) == 3 for n in attn),
      json.dumps([(n.get("attrs"), n["inputs"]) for n in attn]))
left = {op: ops[op] for op in ("Softmax", "ReduceMean", "Pow", "Sqrt", "Sigmoid", "Neg", "Cos", "Sin", "Trilu",
                               "Where", "Less", "Range", "ConstantOfShape", "Transpose", "Expand") if ops[op]}
check("no Softmax, ReduceMean, Pow, rope or mask builder left", not left, str(left))
PY
st=$?
cat "$tmp/checks"
if [ $st -ne 0 ]; then bad "fusion checks ran"; fi
pass=$((pass + $(grep -c '^ok' "$tmp/checks"))); fail=$((fail + $(grep -c '^FAIL' "$tmp/checks")))

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
