"""Convert dlib's face-recognition ResNet (Davis King; public domain: "anyone can do whatever they want
with these model files", github.com/davisking/dlib-models) from the copy face-api.js ships
(``face_recognition_model.bin`` + its weights manifest, in the ``@vladmandic/face-api`` 1.7.15 npm
package, MIT) into an edgeage ``faceres29`` checkpoint: the backbone from those weights, the age head
fresh. Training starts from it with ``[train] init`` (train/recipes/accuracy/faceres29.toml).

The npm package lives in a cache outside the repository (the same one scripts/peers/faceapi.py uses):

    npm install --prefix ~/.cache/edgeage/peers/faceapi @vladmandic/face-api@1.7.15 \\
        @tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-wasm@4.22.0
    python scripts/pretrained/faceres29.py --out runs/pretrained/faceres29.pt --check

The files are read as data: a JSON list of tensor names, shapes and dtypes (uint8 entries carry
their ``scale`` and ``min``) and the raw little-endian bytes they index; no code from the package
runs here. ``--check`` runs face-api.js itself under Node.js on a test image and compares its
128-d descriptor with the converted network's (same 150 px input, the descriptor layer kept for
the check only).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

NODE_CACHE = Path(os.environ.get("EDGEAGE_FACEAPI", Path.home() / ".cache/edgeage/peers/faceapi"))
PACKAGE = "@vladmandic/face-api@1.7.15"
MEAN_RGB = np.array([122.782, 117.001, 104.298]) / 255.0   # the network's own input: (x - mean) / 255


def model_dir(cache: Path) -> Path:
    d = cache / "node_modules/@vladmandic/face-api/model"
    if not (d / "face_recognition_model-weights_manifest.json").is_file():
        raise SystemExit(f"{d}: no face_recognition_model-weights_manifest.json; install {PACKAGE} there "
                         f"(see this script's docstring) or set EDGEAGE_FACEAPI to its npm prefix")
    return d


def read_weights(d: Path) -> tuple[dict[str, np.ndarray], str]:
    """Name -> float32 array (TF layout) from the manifest and its shard(s); sha256 of the bytes."""
    groups = json.loads((d / "face_recognition_model-weights_manifest.json").read_text())
    out: dict[str, np.ndarray] = {}
    digest = hashlib.sha256()
    for g in groups:
        data = b"".join((d / p).read_bytes() for p in g["paths"])
        digest.update(data)
        off = 0
        for w in g["weights"]:
            n = int(np.prod(w["shape"])) if w["shape"] else 1
            q = w.get("quantization")
            if q:
                if q["dtype"] != "uint8":
                    raise SystemExit(f"{d}: {w['name']}: quantization {q['dtype']} not handled")
                a = np.frombuffer(data, np.uint8, n, off).astype(np.float32) * q["scale"] + q["min"]
                off += n
            else:
                if w["dtype"] != "float32":
                    raise SystemExit(f"{d}: {w['name']}: dtype {w['dtype']} not handled")
                a = np.frombuffer(data, "<f4", n, off).astype(np.float32)
                off += 4 * n
            out[w["name"]] = a.reshape(w["shape"])
        if off != len(data):
            raise SystemExit(f"{d}: the manifest indexes {off} bytes of {len(data)}")
    return out, digest.hexdigest()


def backbone_state(w: dict[str, np.ndarray]) -> tuple[dict, np.ndarray]:
    """The torch state of ``FaceResNet29`` (keys without the ``backbone.`` prefix), the input
    normalisation folded into the first conv; and the descriptor layer ``fc`` [256, 128]."""
    import torch

    sd = {}
    for name, a in w.items():
        if name == "fc":
            continue
        *mod, kind, leaf = name.split("/")          # conv32_1/conv1/conv/filters
        prefix = ".".join(mod)
        if mod[0] != "conv32_down":
            prefix = "blocks." + prefix
        key = {("conv", "filters"): "conv.weight", ("conv", "bias"): "conv.bias",
               ("scale", "weights"): "scale.weight", ("scale", "biases"): "scale.bias"}[(kind, leaf)]
        t = torch.from_numpy(a.copy())
        if leaf == "filters":
            t = t.permute(3, 2, 0, 1).contiguous()   # [kh, kw, in, out] -> [out, in, kh, kw]
        sd[f"{prefix}.{key}"] = t
    # edgeage feeds x_n = (x01 - 0.5) / 0.25; the network wants x01 - mean = 0.25 x_n + (0.5 - mean).
    # The first conv pads nothing ('valid'), so folding is exact.
    w0 = sd["conv32_down.conv.weight"]
    shift = torch.tensor(0.5 - MEAN_RGB, dtype=torch.float32)
    sd["conv32_down.conv.bias"] = sd["conv32_down.conv.bias"] + (w0 * shift[None, :, None, None]).sum((1, 2, 3))
    sd["conv32_down.conv.weight"] = w0 * 0.25
    return sd, w["fc"]


def check(backbone, fc: np.ndarray, cache: Path) -> float:
    """Max |difference| between face-api.js's descriptor and ours on one 150 px test image."""
    import torch

    rng = np.random.default_rng(0)   # a smooth, face-sized pattern rather than white noise
    yy, xx = np.mgrid[0:150, 0:150] / 150.0
    img = np.stack([np.sin(6 * xx + c) * np.cos(4 * yy - c) for c in range(3)], -1)
    img = ((img + 1) * 110 + rng.normal(0, 8, img.shape)).clip(0, 255).astype(np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "image.rgb"
        raw.write_bytes(img.tobytes())
        res = subprocess.run(["node", str(Path(__file__).with_name("faceres29_descriptor.cjs")), str(raw)],
                             check=True, capture_output=True, text=True,
                             env={**os.environ, "NODE_PATH": str(cache / "node_modules")})
    theirs = np.array(json.loads(res.stdout.strip().splitlines()[-1]), np.float32)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        f = backbone.eval()((x - 0.5) / 0.25).mean((2, 3))
    ours = (f.numpy() @ fc)[0]
    return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-6))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="checkpoint to write (e.g. runs/pretrained/faceres29.pt)")
    ap.add_argument("--input-size", type=int, default=112, help="the model's input size (>= 104; default 112)")
    ap.add_argument("--check", action="store_true", help="compare with face-api.js under Node.js")
    args = ap.parse_args(argv)

    from edgeage.checkpoint import build_manifest, save_checkpoint
    from edgeage.models import create

    d = model_dir(NODE_CACHE)
    w, sha = read_weights(d)
    sd, fc = backbone_state(w)
    model = create("faceres29", input_size=args.input_size)
    model.backbone.load_state_dict(sd, strict=True)   # every backbone weight, nothing left over
    if args.check:
        rel = check(model.backbone, fc, NODE_CACHE)
        print(f"face-api.js descriptor vs the converted network: max difference {rel:.2e} of the largest value")
        if rel > 1e-3:
            raise SystemExit("the conversion does not reproduce face-api.js's FaceRecognitionNet")
    training = {"init": {"weights": "dlib_face_recognition_resnet_model_v1 (Davis King, public domain)",
                         "via": f"{PACKAGE} model/face_recognition_model.bin", "sha256": sha,
                         "head": "fresh"}}
    save_checkpoint(args.out, model, build_manifest(model, training=training))
    print(f"wrote {args.out}: faceres29 at {args.input_size} px, backbone from {d} (sha256 {sha[:12]}), head fresh")
    return 0


if __name__ == "__main__":
    sys.exit(main())
