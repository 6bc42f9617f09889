#!/usr/bin/env bash
# Fuzzing smoke test (docs/security.md): for each libFuzzer target of
# `make fuzz`, replays its committed regression inputs (fuzz/regressions/
# TARGET/, every crash found so far) and seeds (fuzz/corpus/TARGET/), then
# fuzzes it for FUZZ_SMOKE_SECONDS (default 10) with fuzz/run.sh. Fails on
# any crash, sanitizer report, leak, timeout or (fuzz_compile) a verified
# model that does not compile.
# Usage: tests/cli/test_fuzz_smoke.sh BUILD_DIR
set -u
build=${1:-build}
seconds=${FUZZ_SMOKE_SECONDS:-10}
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1
# Each smoke run starts from the seeds alone (not the corpus `make fuzz`
# grows), so it takes the same time every time.
tmp=$(mktemp -d /tmp/fusec_fuzz_smoke_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
for t in ir safetensors npy json_array compile onnx; do
    bin=$build/fuzz/fuzz_$t
    if [ ! -x "$bin" ]; then bad "fuzz_$t: $bin not built (make fuzz-build)"; continue; fi
    for kind in regressions corpus; do
        files=(fuzz/$kind/$t/*)
        [ -e "${files[0]}" ] || continue
        log=$build/fuzz/logs/replay-$kind-$t.log
        mkdir -p "$(dirname "$log")"
        # One input at a time: each failing file is named.
        failed=()
        for f in "${files[@]}"; do
            "$bin" -timeout=30 "$f" >"$log.one" 2>&1 || { failed+=("$f"); cat "$log.one" >>"$log"; }
        done
        rm -f "$log.one"
        if [ ${#failed[@]} -eq 0 ]; then
            ok "fuzz_$t: ${#files[@]} $kind inputs replay cleanly"
        else
            bad "fuzz_$t: ${#failed[@]} of ${#files[@]} $kind inputs fail (log: $log)"
            for f in "${failed[@]}"; do
                sig=$("$bin" -timeout=30 "$f" 2>&1 | grep -m1 -E "^fuzz_compile: a model|ERROR: AddressSanitizer|runtime error|ERROR: libFuzzer")
                echo "       $f: $sig"
            done
        fi
    done
    mkdir -p "$tmp/$t"
    if out=$(FUZZ_WORK=$tmp/$t FUZZ_LOG=$build/fuzz/logs/smoke-$t.log bash fuzz/run.sh "$build" "$t" "$seconds"); then ok "$out"; else bad "$out"; fi
done
echo "fuzz smoke: $pass passed, $fail failed"
[ $fail -eq 0 ]
