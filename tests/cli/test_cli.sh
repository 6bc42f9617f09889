#!/usr/bin/env bash
# Tests of the fusec command line. Usage: tests/cli/test_cli.sh BUILD_DIR
# Prints one line per check and exits non-zero if any check failed.
set -u
build=${1:-build}
fusec="$(cd "$build" && pwd)/fusec"
py=/usr/bin/python3
tmp=$(mktemp -d /tmp/fusec_cli_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0

ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -s "$tmp/err" ] && sed 's/^/       /' "$tmp/err" | head -5; }
# check NAME COMMAND...: passes when the command succeeds
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
# status WANT NAME COMMAND...: runs fusec COMMAND, wants exit status WANT
status() {
    local want=$1 name=$2; shift 2
    ${FUSEC_WRAP:-} "$fusec" "$@" >"$tmp/out" 2>"$tmp/err"
    local got=$?
    if [ "$got" -eq "$want" ]; then ok "$name (exit $got)"; else bad "$name (exit $got, want $want)"; fi
}

# ---- models -------------------------------------------------------------------
# y = Relu(x + b) @ W
cat >"$tmp/small.json" <<'EOF'
{"ir_version": 1, "name": "small",
 "inputs": [{"name": "x", "dtype": "float32", "shape": [2, 3]}],
 "outputs": [{"name": "y", "dtype": "float32", "shape": [2, 2]}],
 "initializers": [
   {"name": "b", "dtype": "float32", "shape": [3], "data": [0.5, -1, 0.25]},
   {"name": "W", "dtype": "float32", "shape": [3, 2], "data": [1, 2, 3, 4, 5, 6]}],
 "nodes": [
   {"name": "add", "op": "Add", "inputs": ["x", "b"], "outputs": ["s"]},
   {"name": "relu", "op": "Relu", "inputs": ["s"], "outputs": ["r"]},
   {"name": "mm", "op": "MatMul", "inputs": ["r", "W"], "outputs": ["y"]}]}
EOF
x_json='[[1,2,3],[-4,0.5,1]]'
y_line='y float32 [2, 2] 20.75 26.5 6.25 7.5'

# Names that try to escape into the C code and out of the output directory.
cat >"$tmp/evil.json" <<'EOF'
{"ir_version": 1, "name": "evil */ int pwned; /*",
 "inputs": [{"name": "x*/ system(\"rm -rf /\"); /*", "dtype": "float32", "shape": [2]}],
 "outputs": [{"name": "../../y\"); system(\"id", "dtype": "float32", "shape": [2]}],
 "nodes": [
   {"name": "n*/ abort(); /*", "op": "Relu", "inputs": ["x*/ system(\"rm -rf /\"); /*"],
    "outputs": ["../../y\"); system(\"id"]}]}
EOF

cat >"$tmp/gather.json" <<'EOF'
{"ir_version": 1, "name": "gather",
 "inputs": [{"name": "ids", "dtype": "int64", "shape": [2]}],
 "outputs": [{"name": "rows", "dtype": "float32", "shape": [2, 2]}],
 "initializers": [{"name": "table", "dtype": "float32", "shape": [3, 2], "data": [1, 2, 3, 4, 5, 6]}],
 "nodes": [{"name": "g", "op": "Gather", "inputs": ["table", "ids"], "outputs": ["rows"], "attrs": {"axis": 0}}]}
EOF

echo '{"ir_version": 1, "name": "broken", "inputs": [' >"$tmp/broken.json"
cat >"$tmp/badop.json" <<'EOF'
{"ir_version": 1, "name": "badop",
 "inputs": [{"name": "x", "dtype": "float32", "shape": [2]}],
 "outputs": [{"name": "y", "dtype": "float32", "shape": [2]}],
 "nodes": [{"name": "n", "op": "NoSuchOp", "inputs": ["x"], "outputs": ["y"]}]}
EOF

# ---- usage errors: exit 2 -------------------------------------------------------
status 2 "no arguments" 
status 2 "unknown command" frobnicate
status 2 "help for unknown command" help frobnicate
status 2 "run without model" run
status 2 "run unknown option" run "$tmp/small.json" --bogus
status 2 "run --input without value" run "$tmp/small.json" --input
status 2 "run --input without =" run "$tmp/small.json" --input x
status 2 "run bad backend" run "$tmp/small.json" --backend llvm
status 2 "run bad profile" run "$tmp/small.json" --profile turbo
status 2 "run bad repeat" run "$tmp/small.json" --repeat 0
status 2 "compile without -o" compile "$tmp/small.json"
status 2 "compile -o not .so" compile "$tmp/small.json" -o "$tmp/lib.dylib"
status 2 "dump unknown pass" dump "$tmp/small.json" --after nosuchpass
check "unknown pass lists the passes" grep -q "passes: load, infer" "$tmp/err"
status 2 "dump bad format" dump "$tmp/small.json" --format xml
status 2 "info without model" info
check "usage error says fusec:" grep -q "^fusec: " "$tmp/err"

# ---- help: exit 0, every option mentioned ---------------------------------------
status 0 "--help" --help
for c in compile run dump info; do grep -q "$c" "$tmp/out" || bad "--help mentions $c"; done
status 0 "help" help
declare -A options=(
    [compile]="--output --header --profile --verbose --help"
    [run]="--input --backend --profile --cache-dir --output-dir --repeat --profile-ops --profile-top --verbose --help"
    [dump]="--after --format --profile --output --verbose --help"
    [info]="--profile --verbose --help"
)
for c in compile run dump info; do
    status 0 "$c --help" "$c" --help
    missing=""
    for o in ${options[$c]}; do grep -q -- "$o" "$tmp/out" || missing="$missing $o"; done
    if [ -z "$missing" ]; then ok "$c --help mentions every option"; else bad "$c --help lacks$missing"; fi
    status 0 "help $c" help "$c"
done

# ---- bad models: exit 1, a message, no output files -------------------------------
status 1 "compile a broken model" compile "$tmp/broken.json" -o "$tmp/libbroken.so"
check "broken model: message names the file" grep -q "^fusec: .*broken.json" "$tmp/err"
check "broken model: no library, no header" test ! -e "$tmp/libbroken.so" -a ! -e "$tmp/broken.h"
status 1 "compile a model with an unknown op" compile "$tmp/badop.json" -o "$tmp/libbadop.so"
check "unknown op: message names the op" grep -q "NoSuchOp" "$tmp/err"
check "unknown op: no library" test ! -e "$tmp/libbadop.so"
status 1 "dump a broken model" dump "$tmp/broken.json" -o "$tmp/broken_dump.json"
check "dump of a broken model writes no file" test ! -e "$tmp/broken_dump.json"
status 1 "run a missing model" run "$tmp/nonexistent.json"
status 1 "info a broken model" info "$tmp/broken.json"
check "no temp files left" bash -c "! ls -A '$tmp' | grep -q tmp"

# ---- run ----------------------------------------------------------------------------
status 0 "run (jit)" run "$tmp/small.json" --input "x=$x_json"
check "run prints the output" grep -qxF "$y_line" "$tmp/out"
status 0 "run (jit, bare profile)" run "$tmp/small.json" --input "x=$x_json" --profile bare
check "bare profile gives the same output" grep -qxF "$y_line" "$tmp/out"
status 0 "run (aot)" run "$tmp/small.json" --input "x=$x_json" --backend aot --cache-dir "$tmp/cache"
check "aot prints the output" grep -qxF "$y_line" "$tmp/out"
check "aot cached one library" test "$(ls "$tmp/cache"/*.so | wc -l)" -eq 1
check "aot cached its sha256 beside it" bash -c 'cd "$1" && sha256sum --quiet -c ./*.so.sha256' _ "$tmp/cache"
mkdir "$tmp/shared_cache" && chmod 0775 "$tmp/shared_cache"
status 1 "run (aot) with a group-writable cache" run "$tmp/small.json" --input "x=$x_json" --backend aot --cache-dir "$tmp/shared_cache"
check "the refusal names the directory, the reason and the fix" \
    grep -qF "refusing the cache directory $tmp/shared_cache: it is writable by its group (mode 0775), so others could plant code in it; fix it with \`chmod go-w $tmp/shared_cache\`" "$tmp/err"
check "nothing was built there" test -z "$(ls -A "$tmp/shared_cache")"
status 0 "run --repeat" run "$tmp/small.json" --input "x=$x_json" --repeat 3
check "--repeat reports the first run and the median" grep -qE "first run [0-9.]+ ms; median of the next [0-9]+ runs [0-9.]+ ms" "$tmp/err"
status 1 "run with a missing input" run "$tmp/small.json"
check "missing input is named" grep -q "'x' is not set" "$tmp/err"
status 1 "run with an unknown input" run "$tmp/small.json" --input "nope=[1]"
status 1 "run with a wrong shape" run "$tmp/small.json" --input "x=[1,2,3]"
status 1 "run with a missing npy" run "$tmp/small.json" --input "x=$tmp/none.npy"

status 0 "run gather" run "$tmp/gather.json" --input "ids=[2,-3]"
check "gather prints the rows" grep -qxF "rows float32 [2, 2] 5 6 1 2" "$tmp/out"
status 1 "run gather with an index out of range" run "$tmp/gather.json" --input "ids=[7,0]"
check "bad index names the node, its op and the index" grep -qF "run failed in node 'g' (Gather): index 7 is out of range for an axis of size 3 (valid: -3 to 2)" "$tmp/err"
status 1 "the same from a compiled library (aot)" run "$tmp/gather.json" --input "ids=[0,-4]" --backend aot
check "aot: bad index named" grep -qF "run failed in node 'g' (Gather): index -4 is out of range for an axis of size 3" "$tmp/err"
status 1 "same with aot" run "$tmp/gather.json" --input "ids=[0,3]" --backend aot --cache-dir "$tmp/cache"

# .npy in, .npy out
$py -c "import numpy as np; np.save('$tmp/x.npy', np.array([[1,2,3],[-4,0.5,1]], np.float32))"
status 0 "run with an npy input and --output-dir" run "$tmp/small.json" --input "x=$tmp/x.npy" --output-dir "$tmp/out_npy"
check "npy input gives the same output" grep -qxF "$y_line" "$tmp/out"
check "--output-dir wrote y.npy with the right values" $py -c "
import numpy as np, sys
y = np.load('$tmp/out_npy/y.npy')
sys.exit(0 if y.dtype == np.float32 and y.shape == (2, 2) and np.array_equal(y, [[20.75, 26.5], [6.25, 7.5]]) else 1)"

# ---- compile ---------------------------------------------------------------------------
status 0 "compile" compile "$tmp/small.json" -o "$tmp/libsmall.so"
check "compile wrote the library and small.h" test -f "$tmp/libsmall.so" -a -f "$tmp/small.h"
check "the header compiles" gcc -std=c11 -Wall -Werror -fsyntax-only -x c "$tmp/small.h"
status 0 "compile --header" compile "$tmp/small.json" -o "$tmp/libother.so" --header "$tmp/custom.h" --profile bare
check "--header path used" test -f "$tmp/custom.h" -a ! -e "$tmp/other.h"
status 0 "run the compiled library" run "$tmp/libsmall.so" --input "x=$x_json"
check "library prints the same output" grep -qxF "$y_line" "$tmp/out"

# ---- dump and info -----------------------------------------------------------------------
status 0 "dump --after fold" dump "$tmp/small.json" --after fold -o "$tmp/after_fold.json"
status 0 "dump reads its own output" dump "$tmp/after_fold.json"
status 0 "the dumped model runs" run "$tmp/after_fold.json" --input "x=$x_json"
check "dumped model gives the same output" grep -qxF "$y_line" "$tmp/out"
status 0 "dump --after load" dump "$tmp/small.json" --after load
status 0 "dump --after plan to stdout" dump "$tmp/small.json" --after plan
status 0 "dump --format dot" dump "$tmp/small.json" --format dot -o "$tmp/small.dot"
check "dot output passes dot -Tsvg" dot -Tsvg "$tmp/small.dot" -o "$tmp/small.svg"
status 0 "dump --format dot of hostile names" dump "$tmp/evil.json" --format dot -o "$tmp/evil.dot"
check "hostile dot passes dot -Tsvg" dot -Tsvg "$tmp/evil.dot" -o "$tmp/evil.svg"
status 0 "info" info "$tmp/small.json"
check "info lists ops, parameters and arena" bash -c "grep -q MatMul '$tmp/out' && grep -q '^parameters:' '$tmp/out' && grep -q '^arena:' '$tmp/out'"

# ---- hostile names ------------------------------------------------------------------------
status 0 "compile hostile names (--emit-c)" compile "$tmp/evil.json" -o "$tmp/libevil.so" --emit-c "$tmp/evil.c"
# Names may show up sanitised in comments, never as code or comment ends.
check "generated C has no model text in code" bash -c "! grep -qF -e 'system(' -e 'int pwned;' -e 'abort();' -e '*/ system' '$tmp/evil.c'"
mkdir -p "$tmp/deep/a/b"
status 0 "run hostile names" run "$tmp/evil.json" --input 'x*/ system("rm -rf /"); /*=[-1, 2]' --output-dir "$tmp/deep/a/b/outs" --emit-c "$tmp/evil_run.c"
check "hostile run prints the output" grep -qF '[2] 0 2' "$tmp/out"
check "hostile run: C has no model text in code" bash -c "! grep -qF 'system(' '$tmp/evil_run.c'"
check "hostile output name stays inside --output-dir" bash -c "[ \$(ls '$tmp/deep/a/b/outs' | wc -l) -eq 1 ] && ls '$tmp/deep/a/b/outs' | grep -qx '[A-Za-z0-9_.-]*\.npy' && [ \$(ls -A '$tmp/deep/a' | wc -l) -eq 1 ]"
status 0 "run the hostile library" run "$tmp/libevil.so" --input 'x*/ system("rm -rf /"); /*=[3, -4]'
check "hostile library prints the output" grep -qF '[2] 3 0' "$tmp/out"

# ---- run --profile-ops -------------------------------------------------------------------
status 0 "run --profile-ops" run "$tmp/small.json" --input "x=$x_json" --profile-ops
check "profile comes after the outputs" bash -c "head -1 '$tmp/out' | grep -qxF '$y_line'"
check "profile: one run, per op kind" bash -c "grep -q '^per-op profile: 1 run;' '$tmp/out' && grep -qE '^op kind +count +total ms' '$tmp/out'"
check "profile: the loop group and the MatMul, once each" bash -c "grep -qE '^Loop:Add/Relu +1 ' '$tmp/out' && grep -qE '^MatMul +1 ' '$tmp/out'"
check "profile: every node listed under its name" bash -c "grep -qE '^ +[0-9]+  MatMul .* mm$' '$tmp/out' && grep -qE '^ +[0-9]+  Loop:Add/Relu .* relu$' '$tmp/out'"
status 0 "run --profile-ops (aot) --repeat 3 --profile-top 1" run "$tmp/small.json" --input "x=$x_json" --profile-ops --backend aot --cache-dir "$tmp/cache" --repeat 3 --profile-top 1
check "profile with --repeat: runs 2..3, sums" grep -qF "per-op profile: 2 runs (runs 2.., the first run pays the page faults and is left out); times are sums over those runs" "$tmp/out"
check "--profile-top 1 lists one node" bash -c "grep -q '^top 1 nodes by time:' '$tmp/out' && [ \$(grep -cE '^ +[0-9]+  (MatMul|Loop)' '$tmp/out') -eq 1 ]"
status 2 "run --profile-top without a count" run "$tmp/small.json" --input "x=$x_json" --profile-ops --profile-top many
# Shares of the forward add up to about 100% (the clock reads between nodes are the rest).
q=fixtures/qwen3_small
status 0 "run --profile-ops on the Qwen3-style decoder" run $q/model.json --input input_ids=$q/input_ids_17.npy --profile-ops --repeat 4 --profile-top 0
check "op kind shares sum to 80-100%" bash -c "awk '/^op kind/{t=1; next} t && NF==0 {exit} t {sub(\"%\", \"\", \$NF); s += \$NF} END {exit !(s >= 80 && s <= 100.5)}' '$tmp/out'"
check "all nodes listed with --profile-top 0" grep -qE "^all [0-9]+ nodes by time:" "$tmp/out"
status 0 "run --profile-ops with hostile names" run "$tmp/evil.json" --input 'x*/ system("rm -rf /"); /*=[-1, 2]' --profile-ops
check "profile prints the node name sanitised" bash -c "grep -qF 'n?/ abort??? /?' '$tmp/out' && ! grep -qF 'abort();' '$tmp/out'"

# ---- dump --explain-fusions ----------------------------------------------------------------
# One RMSNorm with a scale (fuses) and one with x^3 instead of x^2 (a near miss).
cat >"$tmp/norms.json" <<'EOF'
{"ir_version": 1, "name": "norms",
 "inputs": [{"name": "x", "dtype": "float32", "shape": [2, 4]}],
 "outputs": [{"name": "y"}, {"name": "z"}],
 "initializers": [
   {"name": "two", "dtype": "float32", "shape": [], "data": [2.0]},
   {"name": "three", "dtype": "float32", "shape": [], "data": [3.0]},
   {"name": "eps", "dtype": "float32", "shape": [], "data": [1e-6]},
   {"name": "w", "dtype": "float32", "shape": [4], "data": [1, 2, 3, 4]}],
 "nodes": [
   {"name": "sq", "op": "Pow", "inputs": ["x", "two"], "outputs": ["x2"]},
   {"name": "ms", "op": "ReduceMean", "inputs": ["x2"], "outputs": ["m"], "attrs": {"axes": [-1], "keepdims": 1}},
   {"name": "add", "op": "Add", "inputs": ["m", "eps"], "outputs": ["me"]},
   {"name": "root", "op": "Sqrt", "inputs": ["me"], "outputs": ["r"]},
   {"name": "div", "op": "Div", "inputs": ["x", "r"], "outputs": ["n"]},
   {"name": "scale", "op": "Mul", "inputs": ["n", "w"], "outputs": ["y"]},
   {"name": "cube", "op": "Pow", "inputs": ["x", "three"], "outputs": ["x3"]},
   {"name": "ms3", "op": "ReduceMean", "inputs": ["x3"], "outputs": ["m3"], "attrs": {"axes": [-1], "keepdims": 1}},
   {"name": "add3", "op": "Add", "inputs": ["eps", "m3"], "outputs": ["me3"]},
   {"name": "root3", "op": "Sqrt", "inputs": ["me3"], "outputs": ["r3"]},
   {"name": "div3", "op": "Div", "inputs": ["x", "r3"], "outputs": ["z"]}]}
EOF
status 0 "dump --explain-fusions" dump "$tmp/norms.json" --explain-fusions
check "explain: rms_norm fused once, one near miss" grep -qE '^rms_norm +1 +1$' "$tmp/out"
check "explain: the fused anchor and what it became" grep -qF "node 'scale' -> RMSNormalization" "$tmp/out"
check "explain: the near miss and its reason" grep -qF "node 'div3': Pow exponent is 3, not 2" "$tmp/out"
check "explain: no IR printed" bash -c "! grep -q ir_version '$tmp/out'"
status 2 "dump --explain-fusions with --profile bare" dump "$tmp/norms.json" --explain-fusions --profile bare

# The fused IR is valid JSON IR and runs under the bare back end, matching
# the unfused model (fused ops have their own reference kernels).
q=fixtures/qwen3_small
status 0 "dump --after fuse on the Qwen3-style decoder" dump $q/model.json --after fuse -o "$tmp/fused.json"
check "fused IR holds fused nodes" grep -q '"RMSNormalization"' "$tmp/fused.json"
status 0 "fused IR runs under the bare profile" run "$tmp/fused.json" --allow-external-weights --profile bare --input input_ids=$q/input_ids_5.npy --output-dir "$tmp/fused_out"
status 0 "original runs under the bare profile" run $q/model.json --profile bare --input input_ids=$q/input_ids_5.npy --output-dir "$tmp/plain_out"
check "fused IR agrees with the unfused model" /usr/bin/python3 -c "
import numpy as np, sys
a = np.load('$tmp/fused_out/logits.npy'); b = np.load('$tmp/plain_out/logits.npy')
sys.exit(0 if abs(a - b).max() <= 1e-5 * abs(b).max() else 1)"

# ---- row pruning ------------------------------------------------------------------------------
# Relu(x @ w) read at one row: the selection moves above the Relu and the MatMul.
cat >"$tmp/rows.json" <<'EOF'
{"ir_version": 1, "name": "rows", "symbols": {"seq": 8},
 "inputs": [{"name": "x", "dtype": "float32", "shape": [1, "seq", 2]}],
 "outputs": [{"name": "y"}],
 "initializers": [
   {"name": "w", "dtype": "float32", "shape": [2, 3], "data": [1, -2, 0.5, 3, 1, -1]},
   {"name": "row", "dtype": "int64", "shape": [], "data": [-2]}],
 "nodes": [
   {"name": "mm", "op": "MatMul", "inputs": ["x", "w"], "outputs": ["h"]},
   {"name": "act", "op": "Relu", "inputs": ["h"], "outputs": ["r"]},
   {"name": "pick", "op": "Gather", "inputs": ["r", "row"], "outputs": ["y"], "attrs": {"axis": 1}}]}
EOF
status 0 "dump --after prune_rows" dump "$tmp/rows.json" --after prune_rows -o "$tmp/rows_pruned.json"
check "the MatMul computes one row" /usr/bin/python3 -c "
import json, sys
m = json.load(open('$tmp/rows_pruned.json'))
mm = [n for n in m['nodes'] if n['name'] == 'mm'][0]
shapes = {v['name']: v['shape'] for v in m['value_info']}
sys.exit(0 if shapes[mm['outputs'][0]] == [1, 1, 3] else 1)"
status 0 "dump --explain-fusions on row pruning" dump "$tmp/rows.json" --explain-fusions
check "explain: prune_rows moved above 2 nodes, no stop" grep -qE '^prune_rows +2 +0$' "$tmp/out"
check "explain: names the pruned node" grep -qF "node 'mm' -> computes only the rows that" "$tmp/out"
status 0 "run the pruned model" run "$tmp/rows.json" --input 'x=[[[1, 2], [3, -4], [-1, 1], [2, 2]]]'
check "pruned run reads row T-2 (hand-computed: Relu([-1, 1] @ w))" grep -qF 'y float32 [1, 3] 2 3 0' "$tmp/out"

# Pow(x, 2) is one product in generated code: tcc would call powf per element
status 0 "Pow(x, 2) runs (JIT)" run fixtures/ops/pow_square_scalar_init/model.json --profile bare \
    --input x=fixtures/ops/pow_square_scalar_init/x.npy --emit-c "$tmp/pow.c"
check "Pow(x, 2) is emitted as fu_num_square, not powf" \
    bash -c "grep -q 'fu_num_square(x0)' '$tmp/pow.c' && ! grep -q 'powf(x0' '$tmp/pow.c'"

# FUSEC_AOT_MARCH: another instruction set is another library in the cache; a
# value that is no -march name is refused before gcc runs
rm -rf "$tmp/march_cache"; mkdir -p "$tmp/march_cache"
pow=fixtures/ops/pow_square_scalar_init
status 0 "aot for this CPU" run $pow/model.json --backend aot --cache-dir "$tmp/march_cache" --input x=$pow/x.npy
FUSEC_AOT_MARCH=x86-64-v2 status 0 "aot with FUSEC_AOT_MARCH=x86-64-v2" run $pow/model.json --backend aot \
    --cache-dir "$tmp/march_cache" --input x=$pow/x.npy
check "FUSEC_AOT_MARCH builds a library of its own" test "$(ls "$tmp/march_cache"/*.so | wc -l)" -eq 2
FUSEC_AOT_MARCH='native -fplugin=x' status 1 "FUSEC_AOT_MARCH that is no -march name: refused" run $pow/model.json \
    --backend aot --cache-dir "$tmp/march_cache" --input x=$pow/x.npy
check "FUSEC_AOT_MARCH error names the variable" grep -q "FUSEC_AOT_MARCH .* is not a gcc -march name" "$tmp/err"

# a library built for instructions this CPU lacks (Xeon Phi's AVX512ER, which no
# current x86 has) is refused at load with their name, not run into SIGILL
if ! grep -qw avx512er /proc/cpuinfo; then
    FUSEC_AOT_MARCH=knl status 0 "compile for -march=knl" compile $pow/model.json -o "$tmp/knl.so"
    status 1 "a library built for a CPU with avx512er: refused" run "$tmp/knl.so" --input x=$pow/x.npy
    # (under valgrind, whose CPU has no AVX-512 at all, the first missing one is avx512f)
    check "the refusal names a missing extension" grep -qE "built for a CPU with avx512[a-z]+, which this CPU lacks" "$tmp/err"
fi

# ---- rough edges (issue: fusec as a tool people use) ---------------------------
status 0 "--version" --version
check "--version names the release and the build" grep -qE '^fusec [0-9]+\.[0-9]+\.[0-9]+ \(build [0-9a-f]{32}\)$' "$tmp/out"
status 0 "run --help" run --help
check "run --help names --emit-c" grep -q -- "--emit-c FILE.c" "$tmp/out"
status 0 "compile --help" compile --help
check "compile --help names --emit-c and --embed-weights" bash -c "grep -q -- '--emit-c FILE.c' '$tmp/out' && grep -q -- '--embed-weights' '$tmp/out'"
status 0 "help --help" help --help
check "help --help prints the commands" grep -q "^commands:" "$tmp/out"
status 1 "--output-dir under a file: refused before running" run "$tmp/small.json" --input "x=$x_json" --output-dir "$tmp/small.json/sub"
check "--output-dir error names the directory" grep -qF "cannot create the output directory $tmp/small.json/sub" "$tmp/err"
check "--output-dir error comes before any output" test ! -s "$tmp/out"
status 0 "--output-dir a/b/c is created" run "$tmp/small.json" --input "x=$x_json" --output-dir "$tmp/made/a/b/c"
check "--output-dir a/b/c holds y.npy" test -f "$tmp/made/a/b/c/y.npy"
cat >"$tmp/wide.json" <<'EOF2'
{"ir_version": 1, "name": "wide",
 "inputs": [{"name": "x", "dtype": "float32", "shape": [20]}],
 "outputs": [{"name": "y", "dtype": "float32", "shape": [20]}],
 "nodes": [{"name": "r", "op": "Relu", "inputs": ["x"], "outputs": ["y"]}]}
EOF2
x20='[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]'
status 0 "20 values: printed in part" run "$tmp/wide.json" --input "x=$x20"
check "the first 16 values, then how many more" grep -qF 'y float32 [20] 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 ... (4 more; --print-all)' "$tmp/out"
status 0 "--print-all" run "$tmp/wide.json" --input "x=$x20" --print-all
check "--print-all prints all 20" grep -qxF 'y float32 [20] 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20' "$tmp/out"
$py -c "import numpy as np; np.save('$tmp/ids32.npy', np.array([2, 0], np.int32))"
status 0 "an int32 .npy into an int64 input" run "$tmp/gather.json" --input "ids=$tmp/ids32.npy"
check "int32 ids widened: rows 2 and 0" grep -qF 'rows float32 [2, 2] 5 6 1 2' "$tmp/out"
status 0 "compile a library to inspect" compile "$tmp/small.json" -o "$tmp/libinspect.so"
status 0 "info on a compiled library" info "$tmp/libinspect.so"
check "info LIB.so: its input and output with shapes" bash -c "grep -qxF '  x float32 [2, 3]' '$tmp/out' && grep -qxF '  y float32 [2, 2]' '$tmp/out' && grep -q '^library: ' '$tmp/out'"

# the default build cache is the user's, not the working directory's
mkdir -p "$tmp/cwd" "$tmp/home"
(cd "$tmp/cwd" && env -u FUSEC_CACHE_DIR -u XDG_CACHE_HOME HOME="$tmp/home" "$fusec" run "$tmp/small.json" --input "x=$x_json" --backend aot >"$tmp/out" 2>"$tmp/err")
check "aot with no --cache-dir: nothing written in the working directory" test -z "$(ls -A "$tmp/cwd")"
check "aot with no --cache-dir: the library cached under ~/.cache/fusec" bash -c "ls '$tmp/home/.cache/fusec/'*.so >/dev/null"
(cd "$tmp/cwd" && env -u FUSEC_CACHE_DIR XDG_CACHE_HOME="$tmp/xdg" HOME="$tmp/home" "$fusec" run "$tmp/small.json" --input "x=$x_json" --backend aot >"$tmp/out" 2>"$tmp/err")
check "aot: \$XDG_CACHE_HOME/fusec when set" bash -c "ls '$tmp/xdg/fusec/'*.so >/dev/null && grep -qF '$y_line' '$tmp/out'"

# a slow step says so (the delay set to 0 ms so that every step is slow)
FUSEC_PROGRESS_AFTER_MS=0 "$fusec" compile "$tmp/small.json" -o "$tmp/libprogress.so" >"$tmp/out" 2>"$tmp/err"
check "progress: the gcc build announced" grep -qE "^fusec: building .*libprogress.so with gcc -O3 \.\.\.$" "$tmp/err"
check "progress: and its time" grep -qE "^fusec: building .*libprogress.so with gcc -O3: done in [0-9.]+ s$" "$tmp/err"
"$fusec" compile "$tmp/small.json" -o "$tmp/libquiet.so" >"$tmp/out" 2>"$tmp/err"
check "progress: a fast step is quiet" test ! -s "$tmp/err"

# a compiled model ships with its weights: found beside the library, any copy
# binds (--weights), and bytes the code holds (folded) are checked
mkdir -p "$tmp/ship/src" "$tmp/ship/dst"
$py - "$tmp/ship/src" <<'PY'
import json, struct, sys
d = sys.argv[1]
hdr = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                  "v": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}).encode()
hdr += b" " * (-len(hdr) % 8)
open(d + "/w.safetensors", "wb").write(struct.pack("<Q", len(hdr)) + hdr + struct.pack("<4f", 1.5, -2.0, 10.0, 20.0))
model = {"ir_version": 1, "name": "ship", "weights": "w.safetensors",
         "inputs": [{"name": "x", "dtype": "float32", "shape": [2]}],
         "outputs": [{"name": "y", "dtype": "float32", "shape": [2]}],
         "initializers": [{"name": "w", "dtype": "float32", "shape": [2]},
                          {"name": "v", "dtype": "float32", "shape": [2]},
                          {"name": "two", "dtype": "float32", "shape": [], "data": [2.0]}],
         "nodes": [{"name": "d", "op": "Mul", "inputs": ["w", "two"], "outputs": ["w2"]},
                   {"name": "a", "op": "Add", "inputs": ["x", "w2"], "outputs": ["s"]},
                   {"name": "b", "op": "Add", "inputs": ["s", "v"], "outputs": ["y"]}]}
json.dump(model, open(d + "/ship.json", "w"))
PY
status 0 "compile a model with weights" compile "$tmp/ship/src/ship.json" -o "$tmp/ship/dst/libship.so"
cp "$tmp/ship/src/w.safetensors" "$tmp/ship/dst/"
rm -rf "$tmp/ship/src"
status 0 "the library runs with its weights beside it (the originals gone)" run "$tmp/ship/dst/libship.so" --input 'x=[1,1]'
check "  y = x + 2w + v" grep -qxF 'y float32 [2] 14 17' "$tmp/out"
$py - "$tmp/ship/dst/w.safetensors" "$tmp/ship/v_changed.safetensors" "$tmp/ship/w_changed.safetensors" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
v = bytearray(b); v[-4:] = bytes.fromhex("0000f041")   # v[1] = 30: read at run time, allowed
open(sys.argv[2], "wb").write(v)
w = bytearray(b); w[-12:-8] = bytes.fromhex("00000040")  # w[1] = 2: folded into the code
open(sys.argv[3], "wb").write(w)
PY
status 0 "--weights: a file elsewhere with other values of a weight read at run time" run "$tmp/ship/dst/libship.so" --weights "$tmp/ship/v_changed.safetensors" --input 'x=[1,1]'
check "  its values are used" grep -qxF 'y float32 [2] 14 27' "$tmp/out"
status 1 "--weights: other bytes in a weight the code holds (folded): refused" run "$tmp/ship/dst/libship.so" --weights "$tmp/ship/w_changed.safetensors" --input 'x=[1,1]'
check "  the refusal names the weight" grep -qF "weight 'w', whose values the compiled code holds, differs" "$tmp/err"

# --embed-weights: one self-contained file
q=fixtures/qwen3_small
mkdir -p "$tmp/embed"
status 0 "compile --embed-weights" compile $q/model.json -o "$tmp/embed/libq.so" --embed-weights
mv "$tmp/embed/libq.so" "$tmp/embed/libq_moved.so"
status 0 "the embedded library runs alone (no weights file beside it)" run "$tmp/embed/libq_moved.so" --input input_ids=$q/input_ids_5.npy --print-all
cp "$tmp/out" "$tmp/embed/out_embedded"
status 0 "the model from its JSON and weights (aot)" run $q/model.json --backend aot --input input_ids=$q/input_ids_5.npy --print-all
check "  the same logits, bit for bit" cmp -s "$tmp/out" "$tmp/embed/out_embedded"

# two compiled models linked into one program: each answers for itself
mkdir -p "$tmp/link"
status 0 "compile model one (small)" compile "$tmp/small.json" -o "$tmp/link/libone.so"
status 0 "compile model two (wide)" compile "$tmp/wide.json" -o "$tmp/link/libtwo.so"
if gcc -std=c11 -Wall -Werror -D_GNU_SOURCE -I"$tmp/link" tests/install/two_models.c -L"$tmp/link" -lone -ltwo \
       -Wl,-rpath,"$tmp/link" -o "$tmp/link/both" 2>"$tmp/err" && "$tmp/link/both" >"$tmp/out" 2>"$tmp/err"; then
    ok "a program linked with -lone -ltwo runs both"
else bad "a program linked with -lone -ltwo runs both"; fi
check "  model one's output (y = Relu(x + b) @ W)" grep -qxF "one 20.75 26.5 6.25 7.5" "$tmp/out"
check "  model two's output (Relu)" grep -qxF "two 0 0 9" "$tmp/out"

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
