#!/usr/bin/env bash
# `make install` into a temporary prefix, then a C program built against it
# with `pkg-config --cflags --libs fusec` alone loads a model, runs it (JIT
# and AOT) and checks the output against numpy (tests/install/). The
# installed programs and the program run with the source tree hidden (an
# empty tmpfs over it, in a private mount namespace) when this machine
# allows one; everything is also checked for references to the build tree.
# Usage: tests/cli/test_install.sh BUILD_DIR. Prints one line per check and
# exits non-zero if any check failed.
set -u
build=${1:-build}
repo=$(cd "$(dirname "$0")/../.." && pwd)
py=/usr/bin/python3
tmp=$(mktemp -d /tmp/install_test_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
pass=0; fail=0

ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -s "$tmp/log" ] && sed 's/^/       /' "$tmp/log" | tail -15; }
# check NAME CMD...: CMD must succeed (its output goes to $tmp/log)
check() { local name=$1; shift; if "$@" >"$tmp/log" 2>&1; then ok "$name"; else bad "$name"; fi; }

# hidden CMD...: runs CMD with the source tree (and so the build tree)
# replaced by an empty directory, when a private mount namespace can be had.
hide=0
if unshare -m --propagation private sh -c "mount -t tmpfs none '$repo' && [ ! -e '$repo/Makefile' ]" 2>/dev/null; then
    hide=1
else
    echo "note: cannot hide the source tree here (unshare -m); installed programs run beside it"
fi
hidden() {
    if [ $hide = 1 ]; then
        unshare -m --propagation private sh -c 'mount -t tmpfs none "$0" && exec "$@"' "$repo" "$@"
    else
        "$@"
    fi
}

# ---- make install ---------------------------------------------------------------
if make -C "$repo" --no-print-directory install BUILD="$build" PREFIX="$prefix" >"$tmp/log" 2>&1; then
    ok "make install PREFIX=$prefix"
else
    bad "make install PREFIX=$prefix"
    echo; echo "$pass passed, $fail failed"; exit 1
fi
version=$(sed -n 's/^#define FUSEC_VERSION "\(.*\)"/\1/p' "$repo/api/fusec.h")
major=${version%%.*}
layout_ok=1
for f in bin/fusec bin/router include/fusec/fusec.h lib/pkgconfig/fusec.pc \
         lib/libfusec.so.$version lib/libfusec_rt.so.$version \
         share/fusec/examples/router/gen_router.py share/fusec/fixtures/router/cases.json; do
    [ -f "$prefix/$f" ] || { echo "missing $prefix/$f" >"$tmp/log"; layout_ok=0; }
done
for l in libfusec libfusec_rt; do
    [ "$(readlink "$prefix/lib/$l.so")" = "$l.so.$major" ] && [ "$(readlink "$prefix/lib/$l.so.$major")" = "$l.so.$version" ] \
        || { echo "bad symlinks for $l" >>"$tmp/log"; layout_ok=0; }
    soname=$(readelf -d "$prefix/lib/$l.so.$version" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    [ "$soname" = "$l.so.$major" ] || { echo "$l soname '$soname', want $l.so.$major" >>"$tmp/log"; layout_ok=0; }
done
if [ $layout_ok = 1 ]; then ok "installed files, symlinks and sonames ($version)"; else bad "installed files"; fi

# Nothing installed names the build tree: no RUNPATH into it, no string.
refs=""
for f in "$prefix"/bin/* "$prefix"/lib/*.so.$version; do
    readelf -d "$f" | grep -E 'RUNPATH|RPATH' | grep -qF "$repo" && refs="$refs $f(RUNPATH)"
    readelf -p .rodata -p .data -p .dynstr "$f" 2>/dev/null | grep -qF "$repo" && refs="$refs $f(string)"
done
grep -qF "$repo" "$prefix/lib/pkgconfig/fusec.pc" && refs="$refs fusec.pc"
if [ -z "$refs" ]; then ok "no installed file refers to $repo"; else echo "$refs" >"$tmp/log"; bad "references to the build tree"; fi

# libfusec.so exports the API only, and has no text relocations.
exports=$(nm -D --defined-only "$prefix/lib/libfusec.so.$version" | awk '{print $3}' | grep -v '^fusec_' | tr '\n' ' ')
textrel=$(readelf -d "$prefix/lib/libfusec.so.$version" | grep -c TEXTREL)
if [ -z "$exports" ] && [ "$textrel" = 0 ] && nm -D --defined-only "$prefix/lib/libfusec.so.$version" | grep -q ' fusec_load$'; then
    ok "libfusec.so exports fusec_* only, no TEXTREL"
else
    echo "other exports: $exports; TEXTREL: $textrel" >"$tmp/log"; bad "libfusec.so exports"
fi

# ---- a program built with pkg-config alone -------------------------------------------
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
check "pkg-config --modversion fusec = $version" test "$(pkg-config --modversion fusec)" = "$version"
flags=$(pkg-config --cflags --libs fusec)
check "cc client.c \$(pkg-config --cflags --libs fusec)" \
    gcc -std=c11 -Wall -Wextra -Werror "$repo/tests/install/client.c" $flags -o "$tmp/client"
check "client links libfusec.so.$major from the prefix" \
    sh -c "ldd '$tmp/client' | grep -F 'libfusec.so.$major => $prefix/lib/libfusec.so.$major'"
check "model and input" $py "$repo/tests/install/model.py" make "$tmp/m" 5
export FUSEC_CACHE_DIR=$tmp/cache
unset FUSEC_RUNTIME_DIR
for backend in jit aot; do
    if hidden "$tmp/client" "$tmp/m/model.json" $backend "$tmp/m/x.bin" 5 "$tmp/m/y_$backend.bin" >"$tmp/log" 2>&1 \
       && grep -qF "fusec $version, $backend backend" "$tmp/log" \
       && $py "$repo/tests/install/model.py" check "$tmp/m" "$tmp/m/y_$backend.bin" >"$tmp/log" 2>&1; then
        ok "client, $backend: y matches numpy ($(sed -n 's/.*= \([^ ]*\) .*/\1/p' "$tmp/log"))"
    else
        bad "client, $backend"
    fi
done
# The AOT library was linked against the installed runtime.
aot_so=$(ls "$tmp/cache"/*.so 2>/dev/null | head -1)
if [ -n "$aot_so" ] && readelf -d "$aot_so" | grep -E 'RUNPATH|RPATH' | grep -qF "$prefix/lib"; then
    ok "the AOT library's RUNPATH is $prefix/lib"
else
    { echo "$aot_so"; [ -n "$aot_so" ] && readelf -d "$aot_so" | grep -E 'RUNPATH|RPATH'; } >"$tmp/log" 2>&1
    bad "AOT library RUNPATH"
fi

# ---- the installed programs ------------------------------------------------------------
check "fusec --version" sh -c "'$prefix/bin/fusec' --version | grep -q '^fusec $version (build '"
x_json=$($py -c "import numpy as np; print(np.fromfile('$tmp/m/x.bin', dtype=np.float32).reshape(1, 5, 8).tolist())")
for backend in jit aot; do
    check "fusec run --backend $backend" hidden "$prefix/bin/fusec" run "$tmp/m/model.json" --backend $backend \
        --input "x=$x_json" --output-dir "$tmp/out_$backend"
done
if [ -f "$tmp/out_jit/y.npy" ] && $py -c "
import numpy as np; np.load('$tmp/out_jit/y.npy').astype(np.float32).tofile('$tmp/m/y_cli.bin')" \
   && $py "$repo/tests/install/model.py" check "$tmp/m" "$tmp/m/y_cli.bin" >"$tmp/log" 2>&1; then
    ok "fusec run output matches numpy"
else
    bad "fusec run output"
fi
check "router eval --list-cases" sh -c "'$prefix/bin/router' eval --list-cases | grep -q math_direct"
# The installed router generates the tiny model into the fusec cache and routes a case.
if hidden "$prefix/bin/router" eval --config tiny --profile fast --backend jit --case math_direct >"$tmp/log" 2>&1 \
   && grep -qF "fast/jit: passed 1/1" "$tmp/log" && [ -f "$tmp/cache/router-models/tiny/model.json" ]; then
    ok "router eval --config tiny (model generated under \$FUSEC_CACHE_DIR/router-models)"
else
    bad "router eval --config tiny"
fi
echo
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
