#!/usr/bin/env bash
# fusec export (ir/onnx_write.c, cli/export.c; docs/onnx_export.md):
#  - round trip: every JSON fixture exported after `infer`, read back, dumped
#    and compared with the JSON model's own dump (nodes, attributes, shapes,
#    dtypes, constants: tests/onnx_export/compare_graphs.py);
#  - the fused graph (default: after `fuse`) of every fixture runs under ONNX
#    Runtime (npm onnxruntime-node, build/ort) and matches fusec's own output
#    within 1e-5 x the output's max |value| (qwen3_small: also the numpy
#    golden logits);
#  - errors: unknown pass, unwritable output, a failing write: non-zero exit,
#    a message naming the file, no output left behind.
# Usage: tests/cli/test_onnx_export.sh BUILD_DIR
set -u
build=${1:-build}
fusec="$(cd "$build" && pwd)/fusec"
py=/usr/bin/python3
ort_dir="$build/ort"
tmp=$(mktemp -d /tmp/fusec_export_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -s "$tmp/err" ] && sed 's/^/       /' "$tmp/err" | head -5; }

models="fixtures/qwen3_small/model.json $(ls fixtures/ops/*/model.json fixtures/gelu/*/model.json)"

# ---- round trip JSON -> ONNX -> JSON -----------------------------------------
n_rt=0
for m in $models; do
    c=$(basename "$(dirname "$m")")
    rm -rf "$tmp/rt"; mkdir -p "$tmp/rt"
    if "$fusec" export "$m" --after infer -o "$tmp/rt/m.onnx" 2>"$tmp/err" &&
       "$fusec" dump "$m" --after infer -o "$tmp/rt/a.json" 2>>"$tmp/err" &&
       "$fusec" dump "$tmp/rt/m.onnx" --after infer -o "$tmp/rt/b.json" 2>>"$tmp/err" &&
       "$py" tests/onnx_export/compare_graphs.py "$tmp/rt/a.json" "$tmp/rt/b.json" 2>>"$tmp/err"; then
        n_rt=$((n_rt + 1))
    else
        bad "round trip $c"
    fi
done
ok "round trip JSON -> ONNX -> JSON gives the same graph ($n_rt models)"

# the comparison can fail: a changed attribute, a changed constant
m=fixtures/qwen3_small/model.json
"$fusec" dump "$m" --after infer -o "$tmp/a.json" 2>"$tmp/err"
sed '0,/"axis": -1/s//"axis": 0/' "$tmp/a.json" >"$tmp/b.json"
if ! "$py" tests/onnx_export/compare_graphs.py "$tmp/a.json" "$tmp/b.json" 2>"$tmp/err"; then ok "compare_graphs sees a changed attribute"
else bad "compare_graphs sees a changed attribute"; fi
"$fusec" export fixtures/ops/add_scalar_init/model.json --after infer -o "$tmp/c.onnx" 2>"$tmp/err"
"$fusec" dump fixtures/ops/add_scalar_init/model.json --after infer -o "$tmp/a.json" 2>>"$tmp/err"
"$fusec" dump "$tmp/c.onnx" --after infer 2>>"$tmp/err" | "$py" -c '
import json, sys
m = json.load(sys.stdin)
t = m["initializers"][0]
t["data"] = [x + 1 for x in t["data"]] if isinstance(t["data"], list) else t["data"] + 1
json.dump(m, open(sys.argv[1], "w"))' "$tmp/b.json" 2>>"$tmp/err"
if ! "$py" tests/onnx_export/compare_graphs.py "$tmp/a.json" "$tmp/b.json" 2>"$tmp/err"; then ok "compare_graphs sees a changed constant"
else bad "compare_graphs sees a changed constant"; fi

# causal attention aligned to the end with Lq != Lk has no ONNX spelling: refused,
# no file written; aligned to the start (ONNX's is_causal) it is exported (the
# fixture attention_causal_lq_lt_lk runs under ORT below)
sed 's/"is_causal": 1}/"is_causal": 1, "causal_align": "end"}/' fixtures/ops/attention_causal_lq_lt_lk/model.json \
    >"$tmp/end.json"
"$fusec" export "$tmp/end.json" -o "$tmp/end.onnx" 2>"$tmp/err"; rc=$?
if [ $rc -eq 1 ] && grep -q 'causal_align "end"' "$tmp/err" && [ ! -e "$tmp/end.onnx" ] &&
   grep -q '"causal_align": "end"' "$tmp/end.json"; then ok "end-aligned causal attention with Lq != Lk is refused"
else bad "end-aligned causal attention with Lq != Lk is refused"; fi

# ---- weights: external data into the safetensors file, no copy -----------------
mkdir -p "$tmp/w"
if "$fusec" export "$m" -o "$tmp/w/q.onnx" 2>"$tmp/err" &&
   [ "$(stat -c %i "$tmp/w/q.safetensors")" = "$(stat -c %i fixtures/qwen3_small/model.safetensors)" ] &&
   [ "$(stat -c %s "$tmp/w/q.onnx")" -lt 100000 ]; then
    ok "weights stay external: OUT.safetensors is a hard link, the .onnx is small"
else
    bad "weights stay external: OUT.safetensors is a hard link, the .onnx is small"
fi
"$py" - "$tmp/w/q.onnx" <<'PY' 2>"$tmp/err" && ok "initializers point at byte ranges of q.safetensors" || bad "initializers point at byte ranges of q.safetensors"
import json, struct, sys
import onnx
m = onnx.load(sys.argv[1], load_external_data=False)
ext = [t for t in m.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
assert len(ext) >= 20, len(ext)
raw = open(sys.argv[1][:-5] + ".safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
for t in ext:
    d = {e.key: e.value for e in t.external_data}
    assert d["location"] == "q.safetensors", d
    begin, end = header[t.name]["data_offsets"]
    assert int(d["offset"]) == 8 + n + begin and int(d["length"]) == end - begin, (t.name, d)
PY

# another file system (tmpfs /dev/shm, when it is one): no hard link, a copy, said on stderr
if [ -d /dev/shm ] && [ "$(stat -c %d /dev/shm)" != "$(stat -c %d fixtures)" ]; then
    shm=$(mktemp -d /dev/shm/fusec_export_XXXXXX)
    if "$fusec" export "$m" -o "$shm/q.onnx" 2>"$tmp/err" && grep -q "copied the weights to q.safetensors" "$tmp/err" &&
       cmp -s "$shm/q.safetensors" fixtures/qwen3_small/model.safetensors; then
        ok "weights on another file system are copied, and it says so"
    else
        bad "weights on another file system are copied, and it says so"
    fi
    rm -rf "$shm"
fi

# external data the reader copies (not a safetensors file) or refuses (outside the model's folder)
mkdir -p "$tmp/x/sub"
"$py" - fixtures/onnx/mlp_raw/model.onnx "$tmp/x/sub" <<'PY' 2>"$tmp/err"
import sys, onnx
m = onnx.load(sys.argv[1])
onnx.save_model(m, sys.argv[2] + "/model.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                location="w.bin", size_threshold=0)
for t in m.graph.initializer:
    for e in t.external_data:
        if e.key == "location":
            e.value = "../w.bin"
onnx.save_model(m, sys.argv[2] + "/escape.onnx")
PY
cp "$tmp/x/sub/w.bin" "$tmp/x/w.bin" 2>>"$tmp/err"
if "$fusec" run "$tmp/x/sub/model.onnx" --input x=fixtures/onnx/mlp_raw/x.npy --output-dir "$tmp/x/out" >/dev/null 2>>"$tmp/err" &&
   "$py" -c 'import sys, numpy as np; a, b = np.load(sys.argv[1]), np.load(sys.argv[2]); assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max()' \
       "$tmp/x/out/y.npy" fixtures/onnx/mlp_raw/expected_y.npy 2>>"$tmp/err"; then
    ok "external data in a plain file is read"
else
    bad "external data in a plain file is read"
fi
"$fusec" run "$tmp/x/sub/escape.onnx" --input x=fixtures/onnx/mlp_raw/x.npy >/dev/null 2>"$tmp/err"; rc=$?
if [ $rc -eq 1 ] && grep -q "leads outside the model.s folder" "$tmp/err"; then ok "external data outside the model's folder is refused"
else bad "external data outside the model's folder is refused"; fi

# ---- the fused graph under ONNX Runtime ----------------------------------------
# ort_compare FUSEC_DIR ORT_DIR [GOLDEN.npy]: every output within 1e-5 x max|fusec|
ort_compare() {
    "$py" - "$@" <<'PY'
import glob, os, sys
import numpy as np
fu_dir, ort_dir = sys.argv[1], sys.argv[2]
files = glob.glob(os.path.join(fu_dir, "*.npy"))
assert files, "no outputs"
for f in files:
    a = np.load(f).astype(np.float64)
    b = np.load(os.path.join(ort_dir, os.path.basename(f))).astype(np.float64)
    assert a.shape == b.shape, (f, a.shape, b.shape)
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    err = float(np.max(np.abs(a - b))) if a.size else 0.0
    assert err <= 1e-5 * scale or err == 0.0, (os.path.basename(f), err, scale)
if len(sys.argv) > 3:
    want = np.load(sys.argv[3]).astype(np.float64)
    got = np.load(files[0]).astype(np.float64)
    assert float(np.max(np.abs(want - got))) <= 1e-5 * float(np.max(np.abs(want))), "golden"
PY
}

if [ ! -d "$ort_dir/node_modules/onnxruntime-node" ] || ! command -v node >/dev/null; then
    echo "FAIL ONNX Runtime is not installed under $ort_dir (make installs it: the ORT stamp rule)"
    fail=$((fail + 1))
else
    for n in 1 5 17 32; do
        rm -rf "$tmp/q"; mkdir -p "$tmp/q"
        if "$fusec" run "$m" -i input_ids=fixtures/qwen3_small/input_ids_$n.npy --output-dir "$tmp/q/fu" >/dev/null 2>"$tmp/err" &&
           node tests/onnx_export/ort_run.js "$ort_dir" "$tmp/w/q.onnx" "$tmp/q/ort" \
               input_ids=fixtures/qwen3_small/input_ids_$n.npy 2>>"$tmp/err" &&
           ort_compare "$tmp/q/fu" "$tmp/q/ort" fixtures/qwen3_small/expected_logits_$n.npy 2>>"$tmp/err"; then
            ok "qwen3_small fused (seq $n) under ONNX Runtime matches fusec and numpy"
        else
            bad "qwen3_small fused (seq $n) under ONNX Runtime matches fusec and numpy"
        fi
    done
    # the bare profile's graph (composed ops, after dce) runs too
    rm -rf "$tmp/q"; mkdir -p "$tmp/q"
    if "$fusec" export "$m" --profile bare -o "$tmp/q/bare.onnx" 2>"$tmp/err" &&
       "$fusec" run "$m" --profile bare -i input_ids=fixtures/qwen3_small/input_ids_17.npy --output-dir "$tmp/q/fu" >/dev/null 2>>"$tmp/err" &&
       node tests/onnx_export/ort_run.js "$ort_dir" "$tmp/q/bare.onnx" "$tmp/q/ort" \
           input_ids=fixtures/qwen3_small/input_ids_17.npy 2>>"$tmp/err" &&
       ort_compare "$tmp/q/fu" "$tmp/q/ort" fixtures/qwen3_small/expected_logits_17.npy 2>>"$tmp/err"; then
        ok "qwen3_small composed (--profile bare) under ONNX Runtime matches fusec and numpy"
    else
        bad "qwen3_small composed (--profile bare) under ONNX Runtime matches fusec and numpy"
    fi
    "$py" -c '
import sys, onnx, collections
m = onnx.load(sys.argv[1], load_external_data=False)
ops = collections.Counter(n.op_type for n in m.graph.node)
for op in ("RMSNormalization", "RotaryEmbedding", "Attention", "SwiGLU", "FusedMatMul_tB2"):
    assert ops[op] > 0, (op, ops)
assert sorted(f.name for f in m.functions) == ["FusedMatMul_tB2", "SwiGLU"], [f.name for f in m.functions]
' "$tmp/w/q.onnx" 2>"$tmp/err" && ok "qwen3_small exports ONNX ops and fusec functions" || bad "qwen3_small exports ONNX ops and fusec functions"

    # every op fixture, fused: ORT against fusec. Skipped: bfloat16 Mul (ORT's
    # CPU provider has no bfloat16 Mul kernel).
    n_ort=0
    for m2 in $models; do
        d=$(dirname "$m2"); c=$(basename "$d")
        [ "$c" = qwen3_small ] || [ "$c" = mul_bf16_init ] && continue
        rm -rf "$tmp/o"; mkdir -p "$tmp/o"
        binds=(); iargs=()
        for f in "$d"/*.npy; do
            b=$(basename "$f" .npy)
            case "$b" in expected_*) ;; *) binds+=("$b=$f"); iargs+=(-i "$b=$f") ;; esac
        done
        if "$fusec" export "$m2" -o "$tmp/o/m.onnx" 2>"$tmp/err" &&
           node tests/onnx_export/ort_run.js "$ort_dir" "$tmp/o/m.onnx" "$tmp/o/ort" "${binds[@]}" 2>>"$tmp/err" &&
           "$fusec" run "$m2" "${iargs[@]}" --output-dir "$tmp/o/fu" >/dev/null 2>>"$tmp/err" &&
           ort_compare "$tmp/o/fu" "$tmp/o/ort" 2>>"$tmp/err"; then
            n_ort=$((n_ort + 1))
        else
            bad "$c fused under ONNX Runtime matches fusec"
        fi
    done
    ok "op and gelu fixtures, fused, under ONNX Runtime match fusec ($n_ort models)"

    # fusec's own forms: RotaryEmbedding BHSD with inv_freq, pos_offset and
    # amplitude (computed caches, positions, transposes); Attention with mixed
    # layouts BHSD,BSHD,BSHD and a BSHD output (3-D form with head counts)
    rm -rf "$tmp/mix"; mkdir -p "$tmp/mix"
    "$py" - "$tmp/mix" <<'PY' 2>"$tmp/err"
import json, os, sys
import numpy as np
d = sys.argv[1]
rng = np.random.default_rng(0)
inv = (1.0 / (10000 ** (np.arange(0, 8, 2) / 8))).astype(np.float32)
shapes = {"x": [1, 2, 5, 8], "q": [1, 4, 5, 8], "k": [1, 5, 2, 8], "v": [1, 5, 2, 8]}
m = {"ir_version": 1, "name": "mix",
     "inputs": [{"name": n, "dtype": "float32", "shape": s} for n, s in shapes.items()],
     "outputs": [{"name": "y"}, {"name": "a"}],
     "initializers": [{"name": "inv_freq", "dtype": "float32", "shape": [4], "data": [float(f) for f in inv]}],
     "nodes": [
         {"name": "rope", "op": "RotaryEmbedding", "inputs": ["x", "", "", "", "inv_freq"], "outputs": ["y"],
          "attrs": {"layout": "BHSD", "pos_offset": 3, "amplitude": 1.5}},
         {"name": "attn", "op": "Attention", "inputs": ["q", "k", "v"], "outputs": ["a"],
          "attrs": {"qkv_layout": "BHSD,BSHD,BSHD", "out_layout": "BSHD", "is_causal": 1, "scale": 0.3}}]}
json.dump(m, open(os.path.join(d, "model.json"), "w"))
for n, s in shapes.items():
    np.save(os.path.join(d, n + ".npy"), rng.standard_normal(s).astype(np.float32))
PY
    mx="$tmp/mix"
    if "$fusec" export "$mx/model.json" -o "$mx/m.onnx" 2>>"$tmp/err" &&
       node tests/onnx_export/ort_run.js "$ort_dir" "$mx/m.onnx" "$mx/ort" x="$mx/x.npy" q="$mx/q.npy" k="$mx/k.npy" v="$mx/v.npy" 2>>"$tmp/err" &&
       "$fusec" run "$mx/model.json" -i x="$mx/x.npy" -i q="$mx/q.npy" -i k="$mx/k.npy" -i v="$mx/v.npy" --output-dir "$mx/fu" >/dev/null 2>>"$tmp/err" &&
       ort_compare "$mx/fu" "$mx/ort" 2>>"$tmp/err"; then
        ok "rope (BHSD, inv_freq, pos_offset, amplitude) and attention (mixed layouts) under ONNX Runtime match fusec"
    else
        bad "rope (BHSD, inv_freq, pos_offset, amplitude) and attention (mixed layouts) under ONNX Runtime match fusec"
    fi

    # ONNX in, ONNX out: the fixtures of fixtures/onnx (fusec export MODEL.onnx)
    n_onnx=0
    for d in fixtures/onnx/*/; do
        c=$(basename "$d")
        # unsupported: ops fusec lacks; specialize: needs --specialize (input values decide shapes)
        [ "$c" = unsupported ] || [ "$c" = specialize ] && continue
        rm -rf "$tmp/o"; mkdir -p "$tmp/o"
        binds=(); iargs=()
        for f in "$d"*.npy; do
            b=$(basename "$f" .npy)
            case "$b" in expected_*) ;; *) binds+=("$b=$f"); iargs+=(-i "$b=$f") ;; esac
        done
        # shellcheck disable=SC2046
        if "$fusec" export "$d/model.onnx" $(cat "$d/args" 2>/dev/null) -o "$tmp/o/m.onnx" 2>"$tmp/err" &&
           node tests/onnx_export/ort_run.js "$ort_dir" "$tmp/o/m.onnx" "$tmp/o/ort" "${binds[@]}" 2>>"$tmp/err" &&
           "$fusec" run "$d/model.onnx" $(cat "$d/args" 2>/dev/null) "${iargs[@]}" --output-dir "$tmp/o/fu" >/dev/null 2>>"$tmp/err" &&
           ort_compare "$tmp/o/fu" "$tmp/o/ort" 2>>"$tmp/err"; then
            n_onnx=$((n_onnx + 1))
        else
            bad "ONNX fixture $c exported again runs under ONNX Runtime"
        fi
    done
    ok "ONNX fixtures exported again run under ONNX Runtime ($n_onnx models)"
fi

# ---- errors ------------------------------------------------------------------------
mkdir -p "$tmp/e"
"$fusec" export "$m" --after nosuch -o "$tmp/e/x.onnx" >/dev/null 2>"$tmp/err"; rc=$?
if [ $rc -eq 2 ] && grep -q "unknown pass 'nosuch'" "$tmp/err" && [ -z "$(ls "$tmp/e")" ]; then ok "unknown --after pass: usage error, no output"
else bad "unknown --after pass: usage error, no output"; fi
touch "$tmp/e/file"
"$fusec" export "$m" -o "$tmp/e/file/x.onnx" >/dev/null 2>"$tmp/err"; rc=$?
if [ $rc -eq 1 ] && grep -q "x.onnx: cannot create" "$tmp/err" && [ "$(ls "$tmp/e")" = file ]; then ok "unwritable output: error naming it, no output"
else bad "unwritable output: error naming it, no output"; fi
mkdir -p "$tmp/e/d/x.safetensors"
"$fusec" export "$m" -o "$tmp/e/d/x.onnx" >/dev/null 2>"$tmp/err"; rc=$?
if [ $rc -eq 1 ] && grep -q "x.safetensors: cannot create" "$tmp/err" && [ "$(ls -A "$tmp/e/d")" = x.safetensors ]; then
    ok "a failed write leaves no .onnx and no temp file"
else
    bad "a failed write leaves no .onnx and no temp file"
fi
"$fusec" export "$m" >/dev/null 2>"$tmp/err"; rc=$?
if [ $rc -eq 2 ] && grep -q "OUT.onnx" "$tmp/err"; then ok "no -o: usage error"; else bad "no -o: usage error"; fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
