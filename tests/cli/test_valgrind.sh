#!/usr/bin/env bash
# Valgrind memcheck over the CLI tests: tests/cli/test_cli.sh with every
# fusec command run under memcheck (FUSEC_WRAP). An invalid read or write,
# a use of uninitialised memory or a definite leak makes that command exit
# 99, which fails its check. Unlike the ASan unit tests this covers the
# gcc-built fusec as shipped, the runtime library and the code libtcc
# generates (which no compiler instrumentation sees); see docs/security.md.
# Usage: tests/cli/test_valgrind.sh BUILD_DIR
set -u
build=${1:-build}
command -v valgrind >/dev/null || { echo "FAIL valgrind is not installed (make deps)"; exit 1; }
# valgrind knows no AVX-512: AOT libraries are built for AVX2 machines here,
# not for this CPU (-march=native would stop them with SIGILL under memcheck).
export FUSEC_AOT_MARCH=x86-64-v3
FUSEC_WRAP="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite" \
    bash tests/cli/test_cli.sh "$build"
