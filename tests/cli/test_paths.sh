#!/usr/bin/env bash
# A model stays in its folder; FIFOs never block; errors echo no bytes of a
# file that failed validation; names print escaped (docs/security.md, "Paths
# and files"). Usage: tests/cli/test_paths.sh BUILD_DIR
set -u
build=${1:-build}
fusec="$(cd "$build" && pwd)/fusec"
tmp=$(mktemp -d /tmp/fusec_paths_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0

ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -s "$tmp/err" ] && sed 's/^/       /' "$tmp/err" | head -5; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
# status WANT NAME COMMAND...: runs fusec COMMAND (10 s at most: a hang is a
# failure, exit 124), wants exit status WANT
status() {
    local want=$1 name=$2; shift 2
    timeout 10 "$fusec" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    local got=$?
    if [ "$got" -eq "$want" ]; then ok "$name (exit $got)"; else bad "$name (exit $got, want $want)"; fi
}

mkdir -p "$tmp/m/sub" "$tmp/ext"
# A valid safetensors file: tensor w [2] = [1.5, -2].
weights() {
    /usr/bin/python3 -c "
import json, struct, sys
h = json.dumps({'w': {'dtype': 'F32', 'shape': [2], 'data_offsets': [0, 8]}}).encode()
h += b' ' * (-len(h) % 8)
open(sys.argv[1], 'wb').write(struct.pack('<Q', len(h)) + h + struct.pack('<2f', 1.5, -2))" "$1"
}
weights "$tmp/m/w.safetensors"
weights "$tmp/ext/secret.safetensors"
# model NAME WEIGHTS: y = x + w, x [2]
model() {
    cat >"$tmp/m/$1" <<EOF
{"ir_version": 1, "name": "paths", "weights": "$2",
 "inputs": [{"name": "x", "dtype": "float32", "shape": [2]}],
 "outputs": [{"name": "y", "dtype": "float32", "shape": [2]}],
 "initializers": [{"name": "w", "dtype": "float32", "shape": [2]}],
 "nodes": [{"name": "add", "op": "Add", "inputs": ["x", "w"], "outputs": ["y"]}]}
EOF
}
y_line='y float32 [2] 2.5 0'

# ---- inside the folder ------------------------------------------------------------------
model inside.json w.safetensors
status 0 "weights inside the folder" run "$tmp/m/inside.json" --input 'x=[1,2]'
check "... computes x + w" grep -qxF "$y_line" "$tmp/out"
model inside_dotdot.json sub/../w.safetensors
status 0 "a .. that stays inside" run "$tmp/m/inside_dotdot.json" --input 'x=[1,2]'

# ---- leaving it ---------------------------------------------------------------------------
model dotdot.json ../ext/secret.safetensors
model shadow.json ../../../../../../../../etc/shadow
model abs.json "$tmp/ext/secret.safetensors"
model etc.json /etc/passwd
ln -s ../ext/secret.safetensors "$tmp/m/link.safetensors"
model link.json link.safetensors
ln -s ../ext "$tmp/m/outdir"
model dirlink.json outdir/secret.safetensors
for c in run info dump compile; do
    case $c in
        run) args=(--input 'x=[1,2]') ;;
        compile) args=(-o "$tmp/libx.so") ;;
        *) args=() ;;
    esac
    status 1 "$c: weights '../' refused" $c "$tmp/m/dotdot.json" "${args[@]}"
    check "$c: ... says it leads outside the folder" grep -qF "leads outside the model's folder" "$tmp/err"
    status 1 "$c: weights absolute refused" $c "$tmp/m/abs.json" "${args[@]}"
    check "$c: ... says it is absolute" grep -qF "is absolute" "$tmp/err"
    status 1 "$c: weights symlink out refused" $c "$tmp/m/link.json" "${args[@]}"
    check "$c: ... says it leads outside the folder" grep -qF "leads outside the model's folder" "$tmp/err"
    status 0 "$c --allow-external-weights: '../' opens" $c "$tmp/m/dotdot.json" --allow-external-weights "${args[@]}"
    status 0 "$c --allow-external-weights: absolute opens" $c "$tmp/m/abs.json" --allow-external-weights "${args[@]}"
    status 0 "$c --allow-external-weights: symlink out opens" $c "$tmp/m/link.json" --allow-external-weights "${args[@]}"
done
status 1 "../../etc/shadow refused" info "$tmp/m/shadow.json"
check "... before reading a byte" bash -c "grep -qF \"leads outside the model's folder\" '$tmp/err' && ! grep -q 'header' '$tmp/err'"
status 1 "/etc/passwd refused" info "$tmp/m/etc.json"
status 1 "a symlinked folder out refused" info "$tmp/m/dirlink.json"
status 0 "run --allow-external-weights computes x + w" run "$tmp/m/link.json" --allow-external-weights --input 'x=[1,2]'
check "... the same output" grep -qxF "$y_line" "$tmp/out"

# ---- no echoed bytes ----------------------------------------------------------------------
printf 'root:*:20000:0:99999:7:::\ndaemon:*:20000:0:99999:7:::\n' >"$tmp/m/fake.safetensors"
model fake.json fake.safetensors
status 1 "a file that is not safetensors" info "$tmp/m/fake.json"
check "... says so" grep -qF "not a safetensors file" "$tmp/err"
# 3619251681095544690 is "root:*:2" read as the little-endian header length
check "... without echoing its bytes" bash -c "! grep -qE '3619251681095544690|root:' '$tmp/err'"
status 1 "with the opt-in: /etc/passwd is not safetensors" info "$tmp/m/etc.json" --allow-external-weights
check "... and its bytes are not echoed" bash -c "grep -qF 'not a safetensors file' '$tmp/err' && ! grep -qE 'length [0-9]' '$tmp/err'"

# ---- FIFOs never block --------------------------------------------------------------------
mkfifo "$tmp/m/fifo.safetensors" "$tmp/m/fifo.npy" "$tmp/m/fifo.json"
model fifo_w.json fifo.safetensors
status 1 "info: FIFO weights" info "$tmp/m/fifo_w.json"
check "... not a regular file" grep -qF "not a regular file (a FIFO)" "$tmp/err"
status 1 "run: FIFO weights" run "$tmp/m/fifo_w.json" --input 'x=[1,2]'
status 1 "run --allow-external-weights: FIFO weights" run "$tmp/m/fifo_w.json" --allow-external-weights --input 'x=[1,2]'
status 1 "run: FIFO .npy input" run "$tmp/m/inside.json" --input "x=$tmp/m/fifo.npy"
check "... not a regular file" grep -qF "not a regular file (a FIFO)" "$tmp/err"
status 1 "info: FIFO model" info "$tmp/m/fifo.json"
status 1 "run: FIFO model" run "$tmp/m/fifo.json" --input 'x=[1,2]'
status 1 "run: a directory as .npy input" run "$tmp/m/inside.json" --input "x=$tmp/m/sub"
mkfifo "$tmp/m/fifo.so"
status 1 "run: FIFO named as a compiled library" run "$tmp/m/fifo.so"
check "... not a regular file" grep -qF "not a regular file (a FIFO)" "$tmp/err"

# ---- names print escaped ------------------------------------------------------------------
# Names with a newline, ESC sequences (colour, clear screen, window title) and BEL.
cat >"$tmp/m/esc.json" <<'EOF'
{"ir_version": 1, "name": "ev\u001b[31mil\nmodel",
 "inputs": [{"name": "x\u001b]0;owned\u0007\n", "dtype": "float32", "shape": [2]}],
 "outputs": [{"name": "y\u001b[2J\nfake output", "dtype": "float32", "shape": [2]}],
 "nodes": [{"name": "r\u001b[1m\n", "op": "Relu", "inputs": ["x\u001b]0;owned\u0007\n"],
            "outputs": ["y\u001b[2J\nfake output"]}]}
EOF
esc=$'\x1b'
no_controls() { ! grep -qF "$esc" "$1" && ! grep -qP '\x07' "$1"; }
status 0 "run with hostile names" run "$tmp/m/esc.json" --input $'x\x1b]0;owned\x07\n=[1,-2]' --profile-ops
check "run: output name escaped" grep -qF 'y\x1b[2J\nfake output float32 [2] 1 0' "$tmp/out"
check "run: no control characters printed" no_controls "$tmp/out"
check "run: the node name escaped in the profile" grep -qF 'r\x1b?1m\n' "$tmp/out"
check "run: one line per output" test "$(grep -c 'fake output' "$tmp/out")" -eq 1
status 0 "info with hostile names" info "$tmp/m/esc.json"
check "info: model name escaped" grep -qF 'model: ev\x1b[31mil\nmodel' "$tmp/out"
check "info: input name escaped" grep -qF '  x\x1b]0;owned\x07\n float32 [2]' "$tmp/out"
check "info: output name escaped" grep -qF '  y\x1b[2J\nfake output float32 [2]' "$tmp/out"
check "info: no control characters printed" no_controls "$tmp/out"
status 0 "dump --explain-fusions with hostile names" dump "$tmp/m/esc.json" --explain-fusions
check "dump --explain-fusions: no control characters printed" no_controls "$tmp/out"
status 1 "an input name that is not the model's" run "$tmp/m/esc.json" --input $'nope\x1b[2J\n=[1,2]'
check "error: the name escaped" grep -qF "no input named 'nope\\x1b[2J\\n'" "$tmp/err"
check "error: no control characters printed" no_controls "$tmp/err"
cat >"$tmp/m/esc_err.json" <<'EOF'
{"ir_version": 1, "name": "e",
 "inputs": [{"name": "x", "dtype": "float32", "shape": [2]}],
 "outputs": [{"name": "y", "dtype": "float32", "shape": [2]}],
 "nodes": [{"name": "bad\u001b[2J\n", "op": "Relu", "inputs": ["x\u001b[2J"], "outputs": ["y"]}]}
EOF
status 1 "a model error naming a hostile name" info "$tmp/m/esc_err.json"
check "error: no control characters printed" no_controls "$tmp/err"

echo "paths: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
