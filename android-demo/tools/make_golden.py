"""Golden vectors for the Java core's JUnit tests, written by the Python definitions from real
face images: canonical crops (edgeage.preprocess), model inputs, readouts (edgeage.readout, with
the shipped model's real logits), BlazeFace decoding (edgeage.face) and check statistics.

    python android-demo/tools/make_golden.py --data ../shared/datasets/utkface --out android-demo/build/golden

Output (git-ignored; derived from licensed images, never commit): golden.json + little-endian
binary arrays (.u8 / .f32 / .f64) it names."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch

from edgeage.checkpoint import load_model
from edgeage.data import load_image
from edgeage.face import FaceDetector, choose_face
from edgeage.metrics import cs, mae
from edgeage.preprocess import (CropParams, Normalize, canonical_crop, extract_square, model_input, resize,
                                resize_weights, square_bounds, to_uint8)
from edgeage.readout import apply_readout, argmax_bin

UTK = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "utkface"
CROPS = [CropParams(), CropParams(1.6, -0.1, 112), CropParams(2.4, 0.15, 64), CropParams(1.0, 0.0, 80, "none")]
NORMS = [Normalize(), Normalize(112, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "BGR"), Normalize(96)]
MIVOLO = (CropParams(2.0, 0.0, 192), Normalize(128))  # mivolo's one crop holding its face + context views
CROPS.append(MIVOLO[0])


class Writer:
    def __init__(self, out: Path):
        self.out, self.n = out, 0

    def __call__(self, arr: np.ndarray, dtype: str) -> str:
        name = f"a{self.n:04d}.{ {'u1': 'u8', '<f4': 'f32', '<f8': 'f64'}[dtype] }"
        self.n += 1
        np.ascontiguousarray(arr, dtype).tofile(self.out / name)
        return name


def variants(img: np.ndarray, k: int) -> np.ndarray:
    """Real photos in other shapes: every third one cut to landscape, every third to portrait."""
    return img[:, 20:-20] if k % 3 == 1 else img[30:, :] if k % 3 == 2 else img


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(UTK))
    ap.add_argument("--out", required=True)
    ap.add_argument("--images", type=int, default=24)
    a = ap.parse_args(argv)
    files = sorted(f for f in os.listdir(a.data) if f.endswith(".jpg"))
    if len(files) < a.images:
        raise SystemExit(f"{a.data}: need {a.images} face images, found {len(files)}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    put = Writer(out)
    det = FaceDetector()
    model, manifest = load_model()
    g = {"source": str(a.data), "detector": {"min_score": det.min_score, "iou": det.iou},
         "images": [], "crops": [], "inputs": [], "readouts": [], "resize_weights": []}
    default_inputs = []
    for k, f in enumerate(files[:: len(files) // a.images][: a.images]):
        img = variants(load_image(Path(a.data) / f), k)
        h, w = img.shape[:2]
        faces = det.detect(img)
        chosen = choose_face(faces, w, h)
        reg = det.interp.get_tensor(det._reg)[0]
        cls = det.interp.get_tensor(det._cls)[0, :, 0]
        g["images"].append({"name": f, "w": w, "h": h, "rgb": put(img, "u1"), "reg": put(reg, "<f4"),
                            "cls": put(cls, "<f4"), "chosen": faces.index(chosen) if chosen else -1,
                            "faces": [{"box": list(fc.box), "score": fc.score,
                                       "keypoints": [v for p in fc.keypoints for v in p]} for fc in faces]})
        box = list(chosen.box) if chosen else None
        small = [box[0] + 40, box[1] + 40, box[0] + 70, box[1] + 72] if box else None  # upscaled crop
        for v, (cp, b) in enumerate([(c, box) for c in CROPS] + [(CROPS[0], None), (CROPS[0], small)]):
            crop = canonical_crop(img, b, cp)
            g["crops"].append({"image": k, "box": b, "crop": cp.to_dict(), "expected": put(crop, "u1")})
            if v == 0:  # the default crop of the chosen face: model inputs for every normalisation
                for n in NORMS:
                    x = model_input(crop, n).numpy()
                    g["inputs"].append({"crop": len(g["crops"]) - 1, "normalize": n.to_dict(),
                                        "expected": put(x, "<f4")})
                default_inputs.append(model_input(crop, NORMS[0]))
            if cp == MIVOLO[0]:
                g["inputs"].append({"crop": len(g["crops"]) - 1, "normalize": MIVOLO[1].to_dict(),
                                    "expected": put(model_input(crop, MIVOLO[1]).numpy(), "<f4")})
    with torch.no_grad():
        logits = model(torch.cat(default_inputs)).numpy()
    rng = np.random.default_rng(0)
    n = len(logits)
    for spec, outs in [(manifest.readout.to_dict(), logits),
                       ({"type": "expectation", "age_min": 16, "age_max": 80}, rng.normal(0, 3, (n, 65))),
                       ({"type": "identity", "age_min": 0, "age_max": 100}, rng.normal(35, 15, (n, 1))),
                       ({"type": "coral", "age_min": 0, "age_max": 100}, rng.normal(0, 3, (n, 100))),
                       ({"type": "mean", "age_min": 0, "age_max": 100}, rng.normal(35, 10, (n, 100)))]:
        outs = outs.astype(np.float32)
        g["readouts"].append({"spec": spec, "n": n, "k": outs.shape[1], "outputs": put(outs, "<f4"),
                              "ages": apply_readout(spec, outs).astype(float).tolist(),
                              "argmax": argmax_bin(spec, outs).astype(int).tolist()})
    for n_in, n_out in [(200, 96), (96, 64), (57, 96), (64, 64), (300, 7), (5, 128)]:
        g["resize_weights"].append({"n_in": n_in, "n_out": n_out, "expected": put(resize_weights(n_in, n_out), "<f8")})
    pred, true = rng.normal(35, 12, 257), rng.integers(1, 100, 257).astype(float)
    lat = rng.lognormal(1.0, 0.5, 257)
    g["stats"] = {"pred": pred.tolist(), "true": true.tolist(), "mae": mae(pred, true), "cs5": cs(pred, true, 5.0),
                  "latency": lat.tolist(),
                  "percentiles": {str(q): float(np.percentile(lat, q)) for q in (0, 50, 90, 99, 100)}}
    (out / "golden.json").write_text(json.dumps(g))
    print(f"golden vectors: {len(g['images'])} images, {len(g['crops'])} crops, {len(g['inputs'])} inputs, "
          f"{len(g['readouts'])} readouts -> {out}")


if __name__ == "__main__":
    main()
