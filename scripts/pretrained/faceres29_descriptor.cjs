// face-api.js's FaceRecognitionNet (dlib's face-recognition ResNet) on one raw 150x150 RGB image:
// prints its 128-d descriptor as JSON. scripts/pretrained/faceres29.py --check compares the
// converted PyTorch weights with it.
//   NODE_PATH=<cache>/node_modules node faceres29_descriptor.cjs IMAGE.rgb
'use strict';
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
const wasm = require('@tensorflow/tfjs-backend-wasm');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

async function main() {
  const [imagePath] = process.argv.slice(2);
  if (!imagePath) throw new Error('usage: faceres29_descriptor.cjs IMAGE.rgb (150x150x3 uint8)');
  const wasmDir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));
  wasm.setWasmPaths(wasmDir + path.sep);
  await tf.setBackend('wasm');
  await tf.ready();
  const modelDir = path.join(path.dirname(require.resolve('@vladmandic/face-api/package.json')), 'model');
  await faceapi.nets.faceRecognitionNet.loadFromDisk(modelDir);
  const buf = fs.readFileSync(imagePath);
  if (buf.length !== 150 * 150 * 3) throw new Error(`${imagePath}: ${buf.length} bytes, expected 150x150x3`);
  const image = tf.tensor3d(new Uint8Array(buf), [150, 150, 3], 'int32');
  const d = await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(image);
  process.stdout.write(JSON.stringify(Array.from(d)) + '\n');
}

main().catch((e) => { process.stderr.write(String(e && e.stack || e) + '\n'); process.exit(1); });
