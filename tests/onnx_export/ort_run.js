// Runs an ONNX model under ONNX Runtime (npm onnxruntime-node, CPU) on .npy
// inputs and writes every output as OUT_DIR/<name>.npy (tests/cli/test_onnx_export.sh).
//
//   node ort_run.js ORT_DIR MODEL.onnx OUT_DIR NAME=FILE.npy ...
//
// Exits non-zero with "ort_run: ..." on stderr on any failure (session
// creation included: an operator ORT lacks is reported there).
'use strict';
const fs = require('fs');
const path = require('path');

const DTYPES = {
  '<f4': ['float32', Float32Array], '<i8': ['int64', BigInt64Array], '<i4': ['int32', Int32Array],
  '|b1': ['bool', Uint8Array], '<f2': ['float16', Uint16Array],
};

function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf.toString('latin1', 1, 6) !== 'NUMPY') throw new Error(file + ': not an .npy file');
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', start, start + hlen);
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  if (/'fortran_order':\s*True/.test(header)) throw new Error(file + ': fortran order');
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(',').filter((s) => s.trim()).map(Number);
  const [type, Ctor] = DTYPES[descr] || [];
  if (!type) throw new Error(file + ': dtype ' + descr + ' not supported');
  const body = buf.subarray(start + hlen);
  const data = new Ctor(body.buffer.slice(body.byteOffset, body.byteOffset + body.length));
  return { type, shape, data: type === 'bool' ? Uint8Array.from(data) : data };
}

function writeNpy(file, tensor) {
  const descr = { float32: '<f4', int64: '<i8', int32: '<i4', bool: '|b1', float16: '<f2' }[tensor.type];
  if (!descr) throw new Error('output type ' + tensor.type + ' not supported');
  const dims = tensor.dims.map(Number);
  let header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + dims.join(', ') +
    (dims.length === 1 ? ',' : '') + '), }';
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const pre = Buffer.alloc(10);
  pre.write('\x93NUMPY', 0, 'latin1');
  pre[6] = 1;
  pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  const d = tensor.data;
  fs.writeFileSync(file, Buffer.concat([pre, Buffer.from(header, 'latin1'),
    Buffer.from(d.buffer, d.byteOffset, d.byteLength)]));
}

async function main() {
  const [ortDir, model, outDir, ...binds] = process.argv.slice(2);
  if (!ortDir || !model || !outDir) throw new Error('usage: node ort_run.js ORT_DIR MODEL.onnx OUT_DIR NAME=FILE.npy ...');
  const ort = require(path.join(path.resolve(ortDir), 'node_modules', 'onnxruntime-node'));
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: 1, interOpNumThreads: 1,
  });
  const feeds = {};
  for (const b of binds) {
    const eq = b.indexOf('=');
    const t = readNpy(b.slice(eq + 1));
    feeds[b.slice(0, eq)] = new ort.Tensor(t.type, t.data, t.shape);
  }
  const out = await session.run(feeds);
  fs.mkdirSync(outDir, { recursive: true });
  for (const name of Object.keys(out)) writeNpy(path.join(outDir, name.replace(/[^A-Za-z0-9_.-]/g, '_') + '.npy'), out[name]);
}

main().catch((e) => {
  process.stderr.write('ort_run: ' + String(e && e.message ? e.message : e).replace(/\s+/g, ' ') + '\n');
  process.exit(1);
});
