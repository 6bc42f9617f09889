#!/usr/bin/env bash
# docs/ops.md is generated from the op registry (`make docs`,
# tools/gen_ops_doc.c): fails when the committed file differs from what the
# registry gives now. Usage: tests/cli/test_ops_doc.sh BUILD_DIR
set -u
build=${1:-build}
root=$(cd "$(dirname "$0")/../.." && pwd)
gen="$build/gen_ops_doc"
if [ ! -x "$gen" ]; then
    echo "FAIL ops doc: $gen is not built (make $gen)"
    exit 1
fi
tmp=$(mktemp /tmp/fusec_ops_doc_XXXXXX.md)
trap 'rm -f "$tmp" "$tmp.diff"' EXIT
if ! "$gen" >"$tmp"; then
    echo "FAIL ops doc: $gen failed"
    exit 1
fi
if ! diff -u "$root/docs/ops.md" "$tmp" >"$tmp.diff" 2>&1; then
    head -40 "$tmp.diff"
    echo "FAIL docs/ops.md is out of date: run make docs"
    exit 1
fi
echo "ok   docs/ops.md matches the op registry"
