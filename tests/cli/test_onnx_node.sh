#!/usr/bin/env bash
# ONNX's node conformance tests (libonnx-testdata) on fusec: the whole set
# on the default backend (JIT; fast and bare profiles), a subset on AOT
# (gcc), and checks that the runner fails when it should (an unlisted
# failure, a listed test that passes, a wrong expected output); the reader's
# older-opset rule. See docs/onnx_node_tests.md.
# Usage: tests/cli/test_onnx_node.sh BUILD_DIR
set -u
build=${1:-build}
runner="$build/onnx_node_tests"
data=/usr/share/libonnx-testdata/data/node
known=tests/onnx_node_known_failures.txt
tmp=$(mktemp -d /tmp/fusec_node_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; sed 's/^/       /' "$tmp/out" | tail -12; }

# 1. every node test, JIT, fast profile: prints the counts
if "$runner" >"$tmp/out" 2>&1; then ok "node tests (jit)"; else bad "node tests (jit)"; fi
grep -A6 '^ONNX node tests' "$tmp/out"
# ... and on the bare profile (no fusion)
if "$runner" --profile bare >"$tmp/out" 2>&1; then ok "node tests (jit, bare profile)"; else bad "node tests (jit, bare profile)"; fi

# 2. AOT on the tests of the op forms fusec added for them, and a few more
aot=(test_pow_types_int32_int32 test_pow_types_int64_float32 test_layer_normalization_3d_axis1_epsilon
     test_layer_normalization_4d_axis_negative_2 test_hannwindow_expanded test_slice_neg_steps
     test_reshape_negative_dim test_tril_neg test_gather_negative_indices test_softmax_axis_0_expanded
     test_where_long_example test_cast_FLOAT_to_BFLOAT16)
if "$runner" --backend aot --cache "$tmp/cache" "${aot[@]}" >"$tmp/out" 2>&1 && grep -q "12 applicable, 11 passed" "$tmp/out"
then ok "node tests subset (aot)"; else bad "node tests subset (aot)"; fi

# 3. the runner can fail: a failure not listed ...
: >"$tmp/empty"
if "$runner" --known "$tmp/empty" test_cast_FLOAT_to_BFLOAT16 test_abs >"$tmp/out" 2>&1; then bad "unlisted failure fails"
elif grep -q "^FAIL  test_cast_FLOAT_to_BFLOAT16" "$tmp/out"; then ok "unlisted failure fails"; else bad "unlisted failure fails"; fi
# ... a listed test that passes ...
{ cat "$known"; echo "test_abs listed on purpose"; } >"$tmp/known"
if "$runner" --known "$tmp/known" test_abs >"$tmp/out" 2>&1; then bad "listed pass fails"
elif grep -q "PASSES but is listed.*test_abs" "$tmp/out"; then ok "listed pass fails"; else bad "listed pass fails"; fi
# ... and an expected output that is wrong (test_add's data, test_sub's output)
mkdir -p "$tmp/data/test_add/test_data_set_0"
cp "$data/test_add/model.onnx" "$tmp/data/test_add/"
cp "$data/test_add/test_data_set_0/input_"*.pb "$tmp/data/test_add/test_data_set_0/"
cp "$data/test_sub/test_data_set_0/output_0.pb" "$tmp/data/test_add/test_data_set_0/"
if "$runner" --data "$tmp/data" --known "$tmp/empty" >"$tmp/out" 2>&1; then bad "wrong output fails"
elif grep -q "^FAIL  test_add: .*elements differ" "$tmp/out"; then ok "wrong output fails"; else bad "wrong output fails"; fi

# 4. older opsets (ir/onnx_opset.c): Softmax at opset 11 (flattens to 2-D)
# is refused naming the node; Unsqueeze at opset 11 (axes attribute) reads
/usr/bin/python3 - "$tmp" <<'PY'
import sys
from onnx import helper, TensorProto
def save(path, node, opset):
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    open(path, "wb").write(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString())
save(sys.argv[1] + "/softmax11.onnx", helper.make_node("Softmax", ["x"], ["y"], name="sm"), 11)
save(sys.argv[1] + "/unsqueeze11.onnx", helper.make_node("Unsqueeze", ["x"], ["y"], name="us", axes=[0]), 11)
PY
if "$build/fusec" info "$tmp/softmax11.onnx" >"$tmp/out" 2>&1; then bad "opset 11 Softmax refused"
elif grep -q "node 'sm' (Softmax): opset 11 is not supported for Softmax.*since opset 13" "$tmp/out"; then ok "opset 11 Softmax refused"
else bad "opset 11 Softmax refused"; fi
if "$build/fusec" info "$tmp/unsqueeze11.onnx" >"$tmp/out" 2>&1 && grep -q "1x2x3\|\[1, 2, 3\]\|1,2,3" "$tmp/out"
then ok "opset 11 Unsqueeze read"; else bad "opset 11 Unsqueeze read"; fi

echo "onnx node: $pass passed, $fail failed"
[ $fail -eq 0 ]
