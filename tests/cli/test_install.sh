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
if hidden "$prefix/bin/router" tokenize "Hello, world" --json >"$tmp/log" 2>&1 && grep -qxF "[9707, 11, 1879]" "$tmp/log"; then
    ok "installed router tokenize (Qwen3's tokenizer.json from PREFIX/share/fusec)"
else bad "installed router tokenize"; fi

# ---- the Python package, installed ------------------------------------------------------
if hidden env PYTHONPATH="$prefix/lib/python3/dist-packages" "$py" -c "
import fusec, numpy as np
m = fusec.load('$tmp/m/model.json')
x = np.fromfile('$tmp/m/x.bin', dtype=np.float32).reshape(1, 5, 8)
m.run(x=x)['y'].astype(np.float32).tofile('$tmp/m/y_py.bin')
assert fusec.version() == '$version'
" >"$tmp/log" 2>&1 && $py "$repo/tests/install/model.py" check "$tmp/m" "$tmp/m/y_py.bin" >>"$tmp/log" 2>&1; then
    ok "the installed Python package runs the model (numpy check)"
else bad "the installed Python package"; fi

# ---- a compiled model shipped to another folder --------------------------------------------
q="$repo/fixtures/qwen3_small"
mkdir -p "$tmp/q" "$tmp/shipped"
cp "$q/model.json" "$q/model.safetensors" "$q/input_ids_5.npy" "$q/expected_logits_5.npy" "$tmp/q/"
check "installed fusec compiles a model with a weights file" "$prefix/bin/fusec" compile "$tmp/q/model.json" -o "$tmp/q/libq.so"
mv "$tmp/q/libq.so" "$tmp/q/model.safetensors" "$tmp/shipped/" && mv "$tmp/q/input_ids_5.npy" "$tmp/q/expected_logits_5.npy" "$tmp/" && rm -rf "$tmp/q"
if hidden "$prefix/bin/fusec" run "$tmp/shipped/libq.so" --input input_ids="$tmp/input_ids_5.npy" --output-dir "$tmp/shipped_out" \
       >"$tmp/log" 2>&1 && $py -c "
import numpy as np
got, want = np.load('$tmp/shipped_out/logits.npy'), np.load('$tmp/expected_logits_5.npy')
assert np.max(np.abs(got - want)) <= 1e-4 * max(1.0, np.max(np.abs(want))), np.max(np.abs(got - want))" >>"$tmp/log" 2>&1; then
    ok "the library moved with its weights runs there (the model's folder gone; numpy logits)"
else bad "the library moved with its weights"; fi

# ---- two compiled models linked into one program, built with pkg-config -----------------------
mkdir -p "$tmp/link"
printf '%s' '{"ir_version": 1, "name": "one", "inputs": [{"name": "x", "dtype": "float32", "shape": [2, 3]}],
 "outputs": [{"name": "y", "dtype": "float32", "shape": [2, 2]}],
 "initializers": [{"name": "b", "dtype": "float32", "shape": [3], "data": [0.5, -1, 0.25]},
   {"name": "W", "dtype": "float32", "shape": [3, 2], "data": [1, 2, 3, 4, 5, 6]}],
 "nodes": [{"name": "add", "op": "Add", "inputs": ["x", "b"], "outputs": ["s"]},
   {"name": "relu", "op": "Relu", "inputs": ["s"], "outputs": ["r"]},
   {"name": "mm", "op": "MatMul", "inputs": ["r", "W"], "outputs": ["y"]}]}' >"$tmp/link/one.json"
printf '%s' '{"ir_version": 1, "name": "two", "inputs": [{"name": "x", "dtype": "float32", "shape": [20]}],
 "outputs": [{"name": "y", "dtype": "float32", "shape": [20]}],
 "nodes": [{"name": "r", "op": "Relu", "inputs": ["x"], "outputs": ["y"]}]}' >"$tmp/link/two.json"
if "$prefix/bin/fusec" compile "$tmp/link/one.json" -o "$tmp/link/libone.so" >"$tmp/log" 2>&1 &&
   "$prefix/bin/fusec" compile "$tmp/link/two.json" -o "$tmp/link/libtwo.so" >>"$tmp/log" 2>&1 &&
   gcc -std=c11 -Wall -Werror -D_GNU_SOURCE -I"$tmp/link" "$repo/tests/install/two_models.c" $flags -L"$tmp/link" \
       -lone -ltwo -Wl,-rpath,"$tmp/link" -o "$tmp/link/both" >>"$tmp/log" 2>&1 &&
   hidden "$tmp/link/both" >"$tmp/link/out" 2>>"$tmp/log" &&
   grep -qxF "one 20.75 26.5 6.25 7.5" "$tmp/link/out" && grep -qxF "two 0 0 9" "$tmp/link/out"; then
    ok "two compiled models linked into one program run, each its own"
else cat "$tmp/link/out" >>"$tmp/log" 2>/dev/null; bad "two compiled models linked into one program"; fi

# ---- make uninstall: what install put there goes, a file of someone else's stays --------
mkdir -p "$prefix/share/other" && echo keep >"$prefix/share/other/file"
if make -C "$repo" --no-print-directory uninstall BUILD="$build" PREFIX="$prefix" >"$tmp/log" 2>&1 &&
   [ -z "$(find "$prefix" \( -type f -o -type l \) ! -path "$prefix/share/other/file")" ] &&
   [ ! -e "$prefix/share/fusec" ] && [ ! -e "$prefix/include/fusec" ] && [ -f "$prefix/share/other/file" ]; then
    ok "make uninstall removes every installed file and fusec's folders, nothing else"
else find "$prefix" >>"$tmp/log"; bad "make uninstall"; fi

echo
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
