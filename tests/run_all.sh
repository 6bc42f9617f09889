#!/usr/bin/env bash
# Runs every cmocka test binary (plain, then sanitizer builds) and the CLI
# tests; prints one closing summary line and fails if anything failed.
set -u
build=${1:-build}
pass=0; fail=0; failed=()
run() {  # name, command...
    local name=$1; shift
    if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); failed+=("$name"); fi
}
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1
for t in "$build"/tests/test_*; do
    [ -x "$t" ] || continue
    run "$(basename "$t")" "$t"
done
for t in "$build"/asan/tests/test_*; do
    [ -x "$t" ] || continue
    run "asan/$(basename "$t")" "$t"
done
run "python/test_fusec.py" /usr/bin/python3 tests/python/test_fusec.py "$build"
for t in tests/cli/*.sh; do
    [ -f "$t" ] || continue
    run "cli/$(basename "$t")" bash "$t" "$build"
done
echo
[ $fail -eq 0 ] || printf 'failed: %s\n' "${failed[@]}"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
