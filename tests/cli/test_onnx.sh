#!/usr/bin/env bash
# ONNX models read by fusec (ir/onnx_read.c): the fixtures of
# scripts/gen_onnx_fixtures.py (python3-onnx models, numpy golden outputs)
# run through `fusec run` (JIT, bare and fast profiles) and compared; the
# unsupported-op and unbounded-dim messages; `fusec import` round trips.
# Usage: tests/cli/test_onnx.sh BUILD_DIR
set -u
build=${1:-build}
fusec="$(cd "$build" && pwd)/fusec"
py=/usr/bin/python3
fx=fixtures/onnx
tmp=$(mktemp -d /tmp/fusec_onnx_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -s "$tmp/err" ] && sed 's/^/       /' "$tmp/err" | head -5; }

# compare DIR CASE: every expected_<name>.npy of the case against DIR/<name>.npy
compare() {
    "$py" - "$1" "$fx/$2" <<'PY' 2>"$tmp/err"
import glob, os, sys
import numpy as np
out, case = sys.argv[1], sys.argv[2]
files = glob.glob(os.path.join(case, "expected_*.npy"))
assert files, "no expected outputs"
for f in files:
    name = os.path.basename(f)[len("expected_"):]
    want, got = np.load(f), np.load(os.path.join(out, name))
    assert want.shape == got.shape, (name, want.shape, got.shape)
    err = float(np.max(np.abs(want.astype(np.float64) - got.astype(np.float64)))) if want.size else 0.0
    assert err <= 1e-5 * max(1.0, float(np.max(np.abs(want)))), (name, err)
PY
}

inputs() {  # the --input options of a case
    for f in "$fx/$1"/*.npy; do
        b=$(basename "$f" .npy)
        case "$b" in expected_*) ;; *) printf -- '--input %s=%s ' "$b" "$f" ;; esac
    done
}

for d in "$fx"/*/; do
    c=$(basename "$d")
    [ "$c" = unsupported ] && continue
    for p in bare fast; do
        rm -rf "$tmp/out"; mkdir -p "$tmp/out"
        # shellcheck disable=SC2046
        if "$fusec" run "$fx/$c/model.onnx" $(inputs "$c") $(cat "$fx/$c/args") --profile $p \
               --output-dir "$tmp/out" >/dev/null 2>"$tmp/err" && compare "$tmp/out" "$c"; then
            ok "$c ($p) matches numpy"
        else
            bad "$c ($p) matches numpy"
        fi
    done
done

# fusec import: the JSON IR + OUT.safetensors run to the same outputs, and
# no constant is inlined as JSON numbers (a ConstantOfShape's one-element
# `value` attribute is an attribute, not a constant)
for d in "$fx"/*/; do
    c=$(basename "$d")
    [ "$c" = unsupported ] && continue
    rm -rf "$tmp/imp" "$tmp/out"; mkdir -p "$tmp/imp" "$tmp/out"
    # shellcheck disable=SC2046
    if "$fusec" import "$fx/$c/model.onnx" $(cat "$fx/$c/args") -o "$tmp/imp/m.json" 2>"$tmp/err" &&
       [ -s "$tmp/imp/m.safetensors" ] && ! grep -v '"op": "ConstantOfShape"' "$tmp/imp/m.json" | grep -q '"data"' &&
       "$fusec" run "$tmp/imp/m.json" $(inputs "$c") --profile bare --output-dir "$tmp/out" >/dev/null 2>"$tmp/err" &&
       compare "$tmp/out" "$c"; then
        ok "$c: import round trip"
    else
        bad "$c: import round trip"
    fi
done

# one failure listing every unsupported op with its count
"$fusec" run "$fx/unsupported/model.onnx" --input x=[[[[1,2],[3,4]]]] >/dev/null 2>"$tmp/err"
st=$?
if [ $st -eq 1 ] && grep -q "model.onnx: unsupported ops: Resize x1, HardSwish x2$" "$tmp/err"; then
    ok "unsupported ops listed with counts"
else bad "unsupported ops listed with counts (exit $st)"; fi

# a symbolic dim without a bound: the error names the dim
"$fusec" info "$fx/dim_param/model.onnx" >/dev/null 2>"$tmp/err"
st=$?
if [ $st -eq 1 ] && grep -q "input 'x': dim 0 is symbolic ('seq') and has no upper bound" "$tmp/err"; then
    ok "unbounded dim_param named"
else bad "unbounded dim_param named (exit $st)"; fi

# not a protobuf
printf 'not a model' >"$tmp/bad.onnx"
"$fusec" info "$tmp/bad.onnx" >/dev/null 2>"$tmp/err"
st=$?
if [ $st -eq 1 ] && grep -q "bad.onnx: not a valid ONNX model" "$tmp/err"; then ok "garbage file refused"
else bad "garbage file refused (exit $st)"; fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
