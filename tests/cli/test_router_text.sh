#!/usr/bin/env bash
# Tests of the router on text (examples/router/router_text.c): tokenize and
# detokenize, `router route` against `router eval` on the tiny configuration
# (same decision and route_hash for each case's messages as for its ids, on
# the four lanes bare/fast x jit/aot), batches, the bound, and bad input.
# Usage: tests/cli/test_router_text.sh BUILD_DIR. Prints one line per check
# and exits non-zero if any check failed.
set -u
build=${1:-build}
router="$(cd "$build" && pwd)/router"
py=/usr/bin/python3
tmp=$(mktemp -d /tmp/router_text_test_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0

ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; sed 's/^/       /' "$tmp/out" "$tmp/err" 2>/dev/null | tail -15; }
# run WANT NAME ARGS...: runs `router ARGS` (stdin from $tmp/in if present), wants exit status WANT
run() {
    local want=$1 name=$2; shift 2
    if [ -f "$tmp/in" ]; then "$router" "$@" <"$tmp/in" >"$tmp/out" 2>"$tmp/err"; else "$router" "$@" </dev/null >"$tmp/out" 2>"$tmp/err"; fi
    local got=$?
    rm -f "$tmp/in"
    if [ "$got" -eq "$want" ]; then ok "$name (exit $got)"; else bad "$name (exit $got, want $want)"; fi
}
contains() { if grep -qF -- "$2" "$tmp/out"; then ok "$1"; else bad "$1: no '$2' in output"; fi; }
err_has()  { if grep -qF -- "$2" "$tmp/err"; then ok "$1"; else bad "$1: no '$2' on stderr"; fi; }
same()     { if cmp -s "$2" "$3"; then ok "$1"; else bad "$1: $2 and $3 differ"; diff "$2" "$3" | head -5; fi; }

# The eval cases as conversations: one JSON file each, and all as JSONL.
$py - "$tmp" <<'EOF'
import json, sys
tmp = sys.argv[1]
cases = json.load(open("fixtures/router/cases.json"))["cases"]
with open(f"{tmp}/cases.jsonl", "w") as batch, open(f"{tmp}/ids.txt", "w") as ids:
    for c in cases:
        json.dump(c["messages"], open(f"{tmp}/{c['id']}.json", "w"))
        batch.write(json.dumps({"messages": c["messages"]}) + "\n")
        ids.write(" ".join(map(str, c["input_ids"])) + "\n")
c = cases[0]
open(f"{tmp}/case0.txt", "w").write("\n".join(f"{m['role']}: {m['content']}" for m in c["messages"]))
print(" ".join(map(str, c["input_ids"])), file=open(f"{tmp}/case0_ids.txt", "w"))
print(json.dumps(c["input_ids"]), file=open(f"{tmp}/case0_ids.json", "w"))
EOF

# ---- tokenize / detokenize ----------------------------------------------------
run 0 "tokenize an argument" tokenize "$(cat "$tmp/case0.txt")"
same "argument: the case's input_ids" "$tmp/out" "$tmp/case0_ids.txt"
run 0 "tokenize a file" tokenize --file "$tmp/case0.txt"
same "file: the case's input_ids" "$tmp/out" "$tmp/case0_ids.txt"
cp "$tmp/case0.txt" "$tmp/in"
run 0 "tokenize stdin, --json" tokenize --json
same "stdin --json: the case's input_ids as a JSON array" "$tmp/out" "$tmp/case0_ids.json"
run 0 "detokenize ids" detokenize $(cat "$tmp/case0_ids.txt")
same "detokenize gives the transcript back" "$tmp/out" "$tmp/case0.txt"
cp "$tmp/case0_ids.json" "$tmp/in"
run 0 "detokenize a JSON array on stdin" detokenize
same "detokenize stdin gives the transcript back" "$tmp/out" "$tmp/case0.txt"
run 0 "special tokens in text" tokenize "<|im_start|>user<|im_end|>"
contains "special tokens matched" "151644 872 151645"
run 0 "digits one by one" tokenize "2026"
contains "digits one by one: ids" "17 15 17 21"
printf 'abc\377def' >"$tmp/bad.txt"
run 1 "tokenize non-UTF-8" tokenize --file "$tmp/bad.txt"
err_has "non-UTF-8: offset named" "invalid UTF-8 at byte offset 3"
run 1 "detokenize an unknown id" detokenize 9707 99999999
err_has "unknown id named" "99999999"
run 2 "tokenizer.json missing" tokenize --tokenizer "$tmp/none.json" hi
err_has "missing tokenizer.json named" "$tmp/none.json: cannot open"
printf '{"model": {"vocab": ' >"$tmp/broken.json"
run 2 "tokenizer.json malformed" tokenize --tokenizer "$tmp/broken.json" hi
err_has "malformed tokenizer.json named" "$tmp/broken.json: not a JSON object"

# ---- route vs eval, four lanes --------------------------------------------------
# One at a time (--batch-size 1: the unbatched model, as eval runs it): the
# same decision and route_hash as eval on the cases' ids. In batches (the
# batched model, padded, one forward per batch): the same decisions.
for lane in bare/jit bare/aot fast/jit fast/aot; do
    p=${lane%/*}; b=${lane#*/}
    run 0 "eval $lane" eval --config tiny --profile $p --backend $b --precision f32 --determinism-runs 1 \
        --snapshot-out "$tmp/eval-$p-$b.json"
    run 0 "route --batch --batch-size 1 $lane" route --config tiny --profile $p --backend $b \
        --batch "$tmp/cases.jsonl" --batch-size 1 --json
    cp "$tmp/out" "$tmp/alone-$p-$b.jsonl"
    run 0 "route --batch $lane (batched)" route --config tiny --profile $p --backend $b --batch "$tmp/cases.jsonl" --json
    err_has "$lane: batched (up to 64 a forward: the 37 in one)" "64 per forward (batched)"
    cp "$tmp/out" "$tmp/batch-$p-$b.jsonl"
    if $py - "$tmp/eval-$p-$b.json" "$tmp/alone-$p-$b.jsonl" "$tmp/batch-$p-$b.jsonl" >"$tmp/err" 2>&1 <<'EOF'
import json, sys
ev = json.load(open(sys.argv[1]))["cases"]
alone = [json.loads(l) for l in open(sys.argv[2])]
batch = [json.loads(l) for l in open(sys.argv[3])]
assert len(ev) == len(alone) == len(batch) == 37, (len(ev), len(alone), len(batch))
for e, a, b in zip(ev, alone, batch):
    assert (e["agent_id"], e["role_id"], e["route_hash"]) == (a["agent_id"], a["role_id"], a["route_hash"]), e["id"]
    assert a["tokens"] == e["token_count"] == b["tokens"], e["id"]
    assert (b["agent_id"], b["role_id"]) == (e["agent_id"], e["role_id"]), "batched " + e["id"]
    assert int(a["line"]) == int(b["line"])
print(sum(a["route_hash"] == b["route_hash"] for a, b in zip(alone, batch)))
EOF
    then ok "$lane: route = eval on the 37 (decision, route_hash); batched rows = alone (decision; same route_hash $(tail -1 "$tmp/err")/37)"
    else bad "$lane: route = eval, batched = alone"; fi
done
# One conversation (--messages) gives what its row one at a time gave.
for id in math_direct empty_user design_critique; do
    n=$($py -c "import json,sys; print([c['id'] for c in json.load(open('fixtures/router/cases.json'))['cases']].index(sys.argv[1]) + 1)" $id)
    run 0 "route --messages $id" route --config tiny --messages "$tmp/$id.json" --json
    if $py -c "import json,sys; a=json.load(open(sys.argv[1])); b=json.loads(open(sys.argv[2]).readlines()[int(sys.argv[3])-1]); b.pop('line'); assert a==b, (a,b)" \
        "$tmp/out" "$tmp/alone-fast-jit.jsonl" "$n" 2>"$tmp/err"; then ok "$id: --messages = its row one at a time"; else bad "$id: --messages = its row one at a time"; fi
done
cp "$tmp/math_direct.json" "$tmp/in"
run 0 "route from stdin, text output" route --config tiny
contains "text output names agent, role, margins and hash" "agent 1 (+"
contains "text output role name" "route_hash "

# ---- the bound and truncation ---------------------------------------------------------
$py -c "
import json
print(json.dumps([{'role': 'user', 'content': 'word ' * 300}]))" >"$tmp/long.json"
run 1 "longer than the bound: refused" route --config tiny --messages "$tmp/long.json"
err_has "refusal names the bound" "more than the model's bound of 256"
run 0 "--truncate left" route --config tiny --messages "$tmp/long.json" --truncate left --json
contains "left: 256 tokens routed" '"tokens":256'
n_long=$("$router" tokenize "user: $(printf 'word %.0s' $(seq 300))" | wc -w)
contains "left: the rest counted ($n_long tokens)" "\"truncated_tokens\":$((n_long - 256))"
run 0 "--truncate right" route --config tiny --messages "$tmp/long.json" --truncate right --json
contains "right: 256 tokens routed" '"tokens":256'
run 2 "--truncate middle" route --config tiny --messages "$tmp/long.json" --truncate middle

# ---- bad conversations --------------------------------------------------------------
echo '[{"role": "wizard", "content": "hi"}]' >"$tmp/in"
run 1 "unknown role" route --config tiny
err_has "unknown role named" "unknown role 'wizard'"
echo '[]' >"$tmp/in"
run 1 "empty messages" route --config tiny
err_has "empty messages said" "no messages"
printf '[{"role": "user", "content": "caf\351"}]' >"$tmp/in"
run 1 "non-UTF-8 conversation" route --config tiny
err_has "non-UTF-8 said" "not UTF-8"
echo '[{"role": "user", "content": ' >"$tmp/in"
run 1 "malformed JSON" route --config tiny
err_has "malformed JSON said" "not JSON"
run 2 "missing messages file" route --config tiny --messages "$tmp/none.json"
err_has "missing file named" "$tmp/none.json: cannot open"
run 2 "route with a missing tokenizer.json" route --config tiny --messages "$tmp/math_direct.json" --tokenizer "$tmp/none.json"
err_has "route: missing tokenizer named" "$tmp/none.json: cannot open"
printf '%s\n\n{"messages": [{"role": "bot", "content": "x"}]}\n' "$(head -1 "$tmp/cases.jsonl")" >"$tmp/mixed.jsonl"
run 1 "batch with a bad line" route --config tiny --batch "$tmp/mixed.jsonl" --json
err_has "bad batch line named" "mixed.jsonl line 3: message 0 has unknown role 'bot'"
if [ "$(wc -l <"$tmp/out")" -eq 1 ]; then ok "the good line still routed"; else bad "the good line still routed"; fi

echo
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
