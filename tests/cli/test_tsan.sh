#!/usr/bin/env bash
# ThreadSanitizer: two models in two threads, two concurrent AOT builds of
# one model (tests/tsan/tsan_threads.c). Fails on a data race or a wrong
# result. Usage: tests/cli/test_tsan.sh BUILD_DIR
set -u
build=${1:-build}
tmp=$(mktemp -d /tmp/fusec_tsan_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" \
    "$build/tsan/tsan_threads" "$tmp"
