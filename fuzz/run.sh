#!/usr/bin/env bash
# Runs one libFuzzer target for a while and prints a summary line.
# Usage: fuzz/run.sh BUILD_DIR TARGET SECONDS [libFuzzer options...]
#   BUILD_DIR/fuzz/fuzz_TARGET fuzzes from the committed seeds
#   (fuzz/corpus/TARGET, read only) into a working corpus
#   BUILD_DIR/fuzz/corpus/TARGET that grows across runs, with the dictionary
#   fuzz/TARGET.dict (FUZZ_WORK=DIR: DIR instead, as the smoke test does
#   with a fresh folder). Crashing inputs go to BUILD_DIR/fuzz/artifacts/TARGET/,
#   the full log to BUILD_DIR/fuzz/logs/TARGET.log (or FUZZ_LOG).
# Prints: TARGET: N execs in S s (elapsed; E/s), cov C, ft F, corpus U units, new N,
#         peak rss M MB, and "FINDING: file" for each crash/leak/timeout.
# Exit status 0 when the run ended without a finding.
set -u
build=${1:?build dir}; target=${2:?target}; seconds=${3:-60}; shift 3 || shift $#
bin=$build/fuzz/fuzz_$target
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$bin" ] || { echo "$target: $bin not built (make fuzz-build)"; exit 1; }
work=${FUZZ_WORK:-$build/fuzz/corpus/$target}; art=$build/fuzz/artifacts/$target; log=${FUZZ_LOG:-$build/fuzz/logs/$target.log}
mkdir -p "$work" "$art" "$(dirname "$log")"
# compile: generated code runs inside the fuzzer (constant folding); give
# each input time, and keep memory bounded on a 2-core box.
timeout=10; [ "$target" = compile ] && timeout=30
start=$(date +%s)
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
"$bin" "$work" "$here/corpus/$target" -dict="$here/$target.dict" -max_total_time="$seconds" \
    -timeout=$timeout -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$art/" "$@" >"$log" 2>&1
rc=$?
elapsed=$(( $(date +%s) - start ))
# The last status line (#N DONE or the last pulse) carries cov/ft/corp.
last=$(grep -E '^#[0-9]+' "$log" | tail -1)
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
newu=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -1)
rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last"); ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$last")
echo "$target: ${execs:-?} execs in ${elapsed} s (${rate:-?}/s), cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}, new ${newu:-?}, peak rss ${rss:-?} MB"
found=$(grep -oE "Test unit written to [^ ]+" "$log" | sed 's/Test unit written to //')
if [ $rc -ne 0 ] || [ -n "$found" ]; then
    grep -E "^==[0-9]+==ERROR|SUMMARY|runtime error|fuzz_compile:|ALARM|out-of-memory|deadly signal" "$log" | head -5 | sed 's/^/    /'
    for f in $found; do echo "    FINDING: $f"; done
    echo "    (log: $log)"
    exit 1
fi
exit 0
