#!/usr/bin/env bash
# Tests of the router eval (examples/router) on the tiny configuration.
# Usage: tests/cli/test_router.sh BUILD_DIR. Prints one line per check and
# exits non-zero if any check failed.
set -u
build=${1:-build}
router="$(cd "$build" && pwd)/router"
py=/usr/bin/python3
tmp=$(mktemp -d /tmp/router_test_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0

ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; sed 's/^/       /' "$tmp/out" "$tmp/err" | tail -15; }
# status WANT NAME ARGS...: runs `router eval ARGS`, wants exit status WANT
status() {
    local want=$1 name=$2; shift 2
    "$router" eval "$@" >"$tmp/out" 2>"$tmp/err"
    local got=$?
    if [ "$got" -eq "$want" ]; then ok "$name (exit $got)"; else bad "$name (exit $got, want $want)"; fi
}
# contains NAME TEXT: the last command's stdout has TEXT
contains() { if grep -qF -- "$2" "$tmp/out"; then ok "$1"; else bad "$1: no '$2' in output"; fi; }

# The main check: every case, all six lanes (generates the tiny model if missing).
status 0 "tiny, six lanes" --config tiny
for lane in bare/jit bare/aot fast/jit fast/aot fast/jit/bf16 fast/aot/bf16; do
    contains "$lane passes every case" "$lane: passed 37/37 · decisions vs reference 37/37"
done
contains "six lanes deterministic" "deterministic 37/37"
contains "side-by-side table" "drift/bare"
# bf16 moves the logits (so its margins drift, and are reported) but not the decisions
if grep -E "^fast/jit/bf16: .*margin drift 0\.[0-9]" "$tmp/out" >/dev/null; then ok "bf16 margin drift reported"; else bad "bf16 margin drift reported"; fi
status 1 "bf16 lane under an explicit floor" --config tiny --precision bf16 --backend jit --min-agent-margin 0.25
status 2 "bf16 with the bare profile" --config tiny --profile bare --precision bf16
status 2 "bad precision" --config tiny --precision fp8
cp "$tmp/out" "$tmp/lanes.txt"

# Failing cases must fail the run.
status 1 "margin floor above every margin" --config tiny --profile fast --backend jit --precision f32 --min-agent-margin 1000
contains "floor failure is named" "agent margin"
$py - "$tmp/tampered.json" <<'EOF'
import json, sys
snap = json.load(open("fixtures/router/tiny/reference.json"))
case = snap["cases"][0]
case["agent_id"] = (case["agent_id"] + 1) % 7
json.dump(snap, open(sys.argv[1], "w"))
EOF
status 1 "decision differing from the reference" --config tiny --profile bare --backend jit --snapshot "$tmp/tampered.json"
contains "decision failure is named" "decision"

# Case selection and listing.
status 0 "one case, one lane" --config tiny --profile fast --backend jit --precision f32 --case empty_user --case math_direct \
    --determinism-runs 3 --verbose
contains "one-lane summary" "fast/jit: passed 2/2"
contains "verbose logits" "logits"
status 2 "unknown case" --config tiny --case no_such_case
status 2 "bad profile" --config tiny --profile turbo
status 2 "bad determinism runs" --config tiny --determinism-runs 0
status 2 "missing snapshot" --config tiny --snapshot "$tmp/none.json"
status 2 "--model without --config or --snapshot: refused" --model fixtures/qwen3_small/model.json
if grep -qF -- "--model needs the reference its decisions are compared with" "$tmp/err"; then ok "the refusal says what to give"; else bad "the refusal says what to give"; fi
status 2 "unknown config" --config small
if grep -qF "unknown --config 'small' (qwen3-0.6b or tiny" "$tmp/err"; then ok "unknown config: lists the known ones"; else bad "unknown config: lists the known ones"; fi
status 0 "list cases" --config tiny --list-cases
if [ "$(wc -l <"$tmp/out")" -eq 37 ]; then ok "37 cases listed"; else bad "37 cases listed"; fi

# Snapshots: C and Python must write the same route_hash bytes for the same logits.
status 0 "snapshot out" --config tiny --profile fast --backend jit --precision f32 --snapshot-out "$tmp/fast.json"
if (cd examples/router && $py - "$tmp/fast.json" >"$tmp/err" 2>&1 <<'EOF'
import json, sys
import numpy as np
import reference
snap = json.load(open(sys.argv[1]))
for c in snap["cases"]:
    r = reference.route(np.array(c["logits"], dtype=np.float32).astype(np.float64))
    assert (r["agent_id"], r["role_id"], r["route_hash"]) == (c["agent_id"], c["role_id"], c["route_hash"]), c["id"]
assert len(snap["cases"]) == 37
EOF
); then ok "route_hash bytes agree between C and Python"; else bad "route_hash bytes agree between C and Python"; fi
status 0 "snapshot as reference" --config tiny --profile fast --backend jit --precision f32 --snapshot "$tmp/fast.json"
contains "no drift against its own snapshot" "route_hash drift vs reference 0/37"

echo "router: $pass passed, $fail failed"
sed -n '/^lane  /,$p' "$tmp/lanes.txt"
[ $fail -eq 0 ]
