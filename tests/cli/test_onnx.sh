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

# external data is mapped from its files (listed by info), and a compiled
# library binds to the same files: a changed file is refused, not misread
cp -r "$fx/external_data" "$tmp/ext"
"$fusec" info "$tmp/ext/model.onnx" >"$tmp/info" 2>"$tmp/err"
if grep -q "mapped: .*/ext/weights.bin" "$tmp/info" && grep -q "mapped: .*/ext/data/w2.bin" "$tmp/info"; then
    ok "external data files mapped (info)"
else bad "external data files mapped (info)"; fi
rm -rf "$tmp/out"; mkdir -p "$tmp/out"
if "$fusec" compile "$tmp/ext/model.onnx" -o "$tmp/libext.so" >/dev/null 2>"$tmp/err" &&
   "$fusec" run "$tmp/libext.so" --input x="$fx/external_data/x.npy" --output-dir "$tmp/out" >/dev/null 2>"$tmp/err" &&
   compare "$tmp/out" external_data; then
    ok "external data: compiled library runs"
else bad "external data: compiled library runs"; fi
touch -d '2001-01-01' "$tmp/ext/data/w2.bin"
if "$fusec" run "$tmp/libext.so" --input x="$fx/external_data/x.npy" >/dev/null 2>"$tmp/err"; then
    ok "external data touched after compile: the same content still binds"
else bad "external data touched after compile: the same content still binds"; fi
# the library moved with the model and its data: found beside it
mkdir -p "$tmp/shipped" && mv "$tmp/ext" "$tmp/shipped/model" && mv "$tmp/libext.so" "$tmp/shipped/model/"
rm -rf "$tmp/out"; mkdir -p "$tmp/out"
if "$fusec" run "$tmp/shipped/model/libext.so" --input x="$fx/external_data/x.npy" --output-dir "$tmp/out" \
       >/dev/null 2>"$tmp/err" && compare "$tmp/out" external_data; then
    ok "external data: the library moved with its model runs"
else bad "external data: the library moved with its model runs"; fi
printf 'x' >>"$tmp/shipped/model/data/w2.bin"
"$fusec" run "$tmp/shipped/model/libext.so" --input x="$fx/external_data/x.npy" >/dev/null 2>"$tmp/err"
st=$?
if [ $st -eq 1 ] && grep -q "holds other weights than the model was compiled with" "$tmp/err"; then
    ok "external data file changed in size: refused"
else bad "external data file changed in size: refused (exit $st)"; fi

# an external-data file that is a symlink out of the model's folder
mkdir -p "$tmp/outside" && cp -r "$fx/external_data" "$tmp/sym"
mv "$tmp/sym/weights.bin" "$tmp/outside/weights.bin" && ln -s "$tmp/outside/weights.bin" "$tmp/sym/weights.bin"
"$fusec" run "$tmp/sym/model.onnx" --input x="$fx/external_data/x.npy" >/dev/null 2>"$tmp/err"
st=$?
if [ $st -eq 1 ] && grep -q "outside the model's folder" "$tmp/err"; then ok "external data symlinked out: refused"
else bad "external data symlinked out: refused (exit $st)"; fi
if "$fusec" run "$tmp/sym/model.onnx" --allow-external-weights --input x="$fx/external_data/x.npy" \
       --output-dir "$tmp/out" >/dev/null 2>"$tmp/err" && compare "$tmp/out" external_data; then
    ok "external data symlinked out: allowed with --allow-external-weights"
else bad "external data symlinked out: allowed with --allow-external-weights"; fi
if "$fusec" import fixtures/onnx/decoder/model.onnx --max=seq=16 -o "$tmp/max_eq.json" 2>"$tmp/err" &&
   "$fusec" import fixtures/onnx/decoder/model.onnx --max seq -o "$tmp/max_bad.json" 2>>"$tmp/err"; [ $? -eq 2 ] &&
   [ -s "$tmp/max_eq.json" ] && [ ! -e "$tmp/max_bad.json" ]; then
    ok "import: --max=NAME=N and --max NAME=N parsed as by the other commands ('--max seq' refused)"
else bad "import: --max=NAME=N and --max NAME=N parsed as by the other commands"; fi
"$fusec" import "$tmp/sym/model.onnx" -o "$tmp/sym_import.json" >/dev/null 2>"$tmp/err"; st=$?
if [ $st -eq 1 ] && grep -q "outside the model's folder" "$tmp/err" && [ ! -e "$tmp/sym_import.json" ] &&
   "$fusec" import "$tmp/sym/model.onnx" --allow-external-weights -o "$tmp/sym_import.json" 2>"$tmp/err" &&
   "$fusec" run "$tmp/sym_import.json" --input x="$fx/external_data/x.npy" --output-dir "$tmp/out_imp" >/dev/null 2>>"$tmp/err" &&
   compare "$tmp/out_imp" external_data; then
    ok "import: external data symlinked out refused, read with --allow-external-weights"
else bad "import: external data symlinked out refused, read with --allow-external-weights (exit $st)"; fi

# inputs that decide shapes: run compiles them in (the fixture loop above);
# compile names them and takes --specialize
sp="$fx/specialize"
"$fusec" compile "$sp/model.onnx" -o "$tmp/libsp.so" >/dev/null 2>"$tmp/err"
st=$?
if [ $st -eq 1 ] && grep -q "it is computed from input 'shape', whose values decide shapes" "$tmp/err" &&
   grep -q -- "--specialize NAME=VALUE" "$tmp/err" && [ ! -e "$tmp/libsp.so" ]; then
    ok "compile names the inputs that decide shapes"
else bad "compile names the inputs that decide shapes (exit $st)"; fi
rm -rf "$tmp/out"; mkdir -p "$tmp/out"
if "$fusec" compile "$sp/model.onnx" -o "$tmp/libsp.so" --specialize shape="$sp/shape.npy" \
       --specialize 'starts=[1]' --specialize ends="$sp/ends.npy" >/dev/null 2>"$tmp/err" &&
   "$fusec" run "$tmp/libsp.so" --input x="$sp/x.npy" --output-dir "$tmp/out" >/dev/null 2>"$tmp/err" &&
   compare "$tmp/out" specialize; then
    ok "compile --specialize: the library takes only x"
else bad "compile --specialize: the library takes only x"; fi
"$fusec" compile "$sp/model.onnx" -o "$tmp/libsp2.so" --specialize 'nope=[1]' >/dev/null 2>"$tmp/err"
st=$?
if [ $st -eq 1 ] && grep -q "the model has no input named 'nope'" "$tmp/err"; then ok "--specialize of no input: error"
else bad "--specialize of no input: error (exit $st)"; fi
mkdir -p "$tmp/spx"; rm -rf "$tmp/out"; mkdir -p "$tmp/out"
if "$fusec" export "$sp/model.onnx" -o "$tmp/spx/sp.onnx" --specialize shape="$sp/shape.npy" --specialize 'starts=[1]' \
       --specialize ends="$sp/ends.npy" >/dev/null 2>"$tmp/err" &&
   "$fusec" run "$tmp/spx/sp.onnx" --input x="$sp/x.npy" --output-dir "$tmp/out" >/dev/null 2>"$tmp/err" &&
   compare "$tmp/out" specialize; then
    ok "export --specialize: the exported model takes only x"
else bad "export --specialize: the exported model takes only x"; fi
# other values, other code (the AOT cache is keyed on them)
for v in "[6,4]:2, 4" "[3,8]:2, 8"; do
    "$fusec" run "$sp/model.onnx" --backend aot --input x="$sp/x.npy" --input "shape=${v%%:*}" --input 'starts=[1]' \
        --input 'ends=[3]' >"$tmp/o" 2>"$tmp/err"
    if grep -q "^y float32 \[${v#*:}\]" "$tmp/o"; then ok "run --backend aot, shape=${v%%:*}: y [${v#*:}]"
    else bad "run --backend aot, shape=${v%%:*}: y [${v#*:}]"; fi
done

# --max on every command that loads a model; the AOT cache is keyed on it
for cmd in info "dump -o $tmp/d.json" "compile -o $tmp/libdp.so"; do
    # shellcheck disable=SC2086
    if "$fusec" $cmd "$fx/dim_param/model.onnx" --max seq=8 >/dev/null 2>"$tmp/err"; then ok "${cmd%% *} --max"
    else bad "${cmd%% *} --max"; fi
done
"$py" -c "import numpy as np; np.save('$tmp/x6.npy', np.ones((6, 8), np.float32))"
"$fusec" run "$fx/dim_param/model.onnx" --backend aot --max seq=8 --input x="$tmp/x6.npy" >/dev/null 2>"$tmp/err" &&
    ok "aot --max seq=8 takes 6 rows" || bad "aot --max seq=8 takes 6 rows"
"$fusec" run "$fx/dim_param/model.onnx" --backend aot --max seq=4 --input x="$tmp/x6.npy" >/dev/null 2>"$tmp/err"
st=$?
if [ $st -eq 1 ] && grep -q "seq" "$tmp/err"; then ok "aot --max seq=4 refuses 6 rows (not the seq=8 library)"
else bad "aot --max seq=4 refuses 6 rows (exit $st)"; fi
"$fusec" info "$fx/dim_param/model.onnx" --max seq=x >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q "max wants NAME=N" "$tmp/err" && ok "--max seq=x: usage error" || bad "--max seq=x: usage error"

# hostile files: a clear error (exit 1, the reason named), no crash, no
# output file, from info, compile and import alike
hx=fixtures/onnx_hostile
while IFS='|' read -r c msg; do
    good=1
    rm -rf "$tmp/h"; mkdir -p "$tmp/h"
    for cmd in "info" "compile -o $tmp/h/lib.so" "import -o $tmp/h/m.json" "run --input x=$fx/mlp_raw/x.npy --output-dir $tmp/h/out"; do
        # shellcheck disable=SC2086
        "$fusec" $cmd "$hx/$c.onnx" >/dev/null 2>"$tmp/err"
        st=$?
        if [ $st -ne 1 ] || ! grep -qF -- "$msg" "$tmp/err"; then
            good=0; echo "       $c: '$cmd' exit $st"
        fi
    done
    [ -z "$(ls -A "$tmp/h")" ] || { good=0; echo "       $c: left $(ls "$tmp/h")"; }
    if [ $good = 1 ]; then ok "hostile $c: clear error, no output"; else bad "hostile $c"; fi
done <"$hx/expected.txt"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
