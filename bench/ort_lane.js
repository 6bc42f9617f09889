// ONNX Runtime's lane of the side-by-side router benchmark (bench/bench_router.c).
//
//   node bench/ort_lane.js ORT_DIR MODEL.onnx CASES.json THREADS
//
// ORT_DIR is where `npm install onnxruntime-node` ran (build/ort). The model is
// loaded once (CPU, all graph optimisations, sequential, intra-op THREADS
// threads, inter-op 1); then it answers requests on stdin, one per line, with
// one line on stdout:
//   run CASE_ID N  ->  result N T1 .. TN logits L0 .. L9   (times in ms)
//   quit           ->  bye PEAK_RSS_KB
// On start it prints "ready LOAD_MS" (session creation time), or
// "error TEXT" on any failure, after which it exits.
'use strict';
const fs = require('fs');
const path = require('path');
const readline = require('readline');

function reply(line) {
  process.stdout.write(line + '\n');
}

function fail(message) {
  reply('error ' + String(message).replace(/\s+/g, ' '));
  process.exit(1);
}

async function main() {
  const [ortDir, modelPath, casesPath, threadsText] = process.argv.slice(2);
  const threads = Number(threadsText);
  if (!ortDir || !modelPath || !casesPath || !(threads >= 1)) {
    fail('usage: node ort_lane.js ORT_DIR MODEL.onnx CASES.json THREADS');
  }
  const ort = require(path.join(path.resolve(ortDir), 'node_modules', 'onnxruntime-node'));
  const cases = new Map();
  for (const c of JSON.parse(fs.readFileSync(casesPath, 'utf8')).cases) {
    if (Array.isArray(c.input_ids)) cases.set(c.id, BigInt64Array.from(c.input_ids, BigInt));
  }

  const start = process.hrtime.bigint();
  const session = await ort.InferenceSession.create(modelPath, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
  });
  reply('ready ' + (Number(process.hrtime.bigint() - start) / 1e6).toFixed(3));
  const inputName = session.inputNames[0];

  // One forward as fusec's lanes time it: bind the input, run, read the logits.
  async function forward(ids) {
    const t0 = process.hrtime.bigint();
    const feeds = { [inputName]: new ort.Tensor('int64', ids, [1, ids.length]) };
    const out = await session.run(feeds);
    const logits = Array.from(out.logits.data);
    return [Number(process.hrtime.bigint() - t0) / 1e6, logits];
  }

  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {   // one request at a time, in order
    const words = line.trim().split(/\s+/);
    if (words[0] === 'quit') {
      reply('bye ' + process.resourceUsage().maxRSS);
      break;
    }
    const ids = cases.get(words[1]);
    const n = Number(words[2]);
    if (words[0] !== 'run' || !ids || !(n >= 1)) fail('bad request: ' + line);
    const times = [];
    let logits = [];
    for (let i = 0; i < n; i++) {
      const [ms, values] = await forward(ids);
      times.push(ms.toFixed(3));
      logits = values;
    }
    reply(`result ${n} ${times.join(' ')} logits ${logits.map((v) => v.toPrecision(9)).join(' ')}`);
  }
  process.exit(0);
}

main().catch(fail);
