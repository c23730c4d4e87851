// Runs face-api.js (the @vladmandic/face-api build, its bundled weights) on raw RGB images and
// writes one JSON line per image: the peer's own pipeline (SSD MobileNetV1 detection, 68 landmarks,
// AgeGenderNet on the aligned face), the largest face per photo; where it finds no face, its
// AgeGenderNet reads the centre square (as edgeage's canonical crop does), counted as not found.
//
// Usage (driven by scripts/peers/faceapi.py, which decodes the images and writes INDEX):
//   NODE_PATH=<cache>/node_modules node faceapi_age.cjs INDEX.json OUT.jsonl
// INDEX: {"images": [{"key": str, "file": raw uint8 HWC RGB, "h": int, "w": int}, ...]}
'use strict';
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
const wasm = require('@tensorflow/tfjs-backend-wasm');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

async function main() {
  const [indexPath, outPath] = process.argv.slice(2);
  if (!indexPath || !outPath) throw new Error('usage: faceapi_age.cjs INDEX.json OUT.jsonl');
  const wasmDir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));
  wasm.setWasmPaths(wasmDir + path.sep); // emscripten reads the files (node's fetch takes no paths)
  await tf.setBackend('wasm');
  await tf.ready();
  const modelDir = path.join(path.dirname(require.resolve('@vladmandic/face-api/package.json')), 'model');
  await faceapi.nets.ssdMobilenetv1.loadFromDisk(modelDir);
  await faceapi.nets.faceLandmark68Net.loadFromDisk(modelDir);
  await faceapi.nets.ageGenderNet.loadFromDisk(modelDir);
  const options = new faceapi.SsdMobilenetv1Options(); // the library's defaults (min confidence 0.5)
  const index = JSON.parse(fs.readFileSync(indexPath, 'utf8'));
  const out = fs.openSync(outPath + '.part', 'w');
  let done = 0;
  for (const item of index.images) {
    const buf = fs.readFileSync(item.file);
    if (buf.length !== item.h * item.w * 3) throw new Error(`${item.file}: ${buf.length} bytes, expected ${item.h}x${item.w}x3`);
    const image = tf.tensor3d(new Uint8Array(buf), [item.h, item.w, 3], 'int32');
    let faces = await faceapi.detectAllFaces(image, options).withFaceLandmarks().withAgeAndGender();
    let row;
    if (faces.length > 0) {
      faces.sort((a, b) => b.detection.box.area - a.detection.box.area);
      const f = faces[0];
      row = { key: item.key, age: f.age, found: true, faces: faces.length, score: f.detection.score };
    } else {
      const s = Math.min(item.h, item.w);
      const y = Math.floor((item.h - s) / 2);
      const x = Math.floor((item.w - s) / 2);
      const square = tf.slice(image, [y, x, 0], [s, s, 3]);
      const pred = await faceapi.nets.ageGenderNet.predictAgeAndGender(square);
      tf.dispose(square);
      row = { key: item.key, age: pred.age, found: false, faces: 0, score: null };
    }
    tf.dispose(image);
    fs.writeSync(out, JSON.stringify(row) + '\n');
    done += 1;
    if (done % 200 === 0) process.stderr.write(`face-api.js: ${done}/${index.images.length}\n`);
  }
  fs.closeSync(out);
  fs.renameSync(outPath + '.part', outPath);
}

main().catch((e) => { process.stderr.write(String(e && e.stack || e) + '\n'); process.exit(1); });
