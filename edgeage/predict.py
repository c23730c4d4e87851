"""``edgeage predict``: every face of each image, its box and estimated age."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_model, manifest_crop, manifest_normalize
from .data import load_image
from .face import FaceDetector
from .preprocess import canonical_crop, model_input
from .utils import atomic_path


def predict_images(images, model_path=None, crop: str | None = None, annotate: str | None = None):
    model, manifest = load_model(model_path)
    cp = manifest_crop(manifest)
    if crop:
        cp = type(cp)(**{**cp.to_dict(), "policy": crop})
    norm = manifest_normalize(manifest)
    det = FaceDetector() if cp.policy == "detect" else None
    results = []
    for path in images:
        img = load_image(path)
        faces = det.detect(img) if det else []
        boxes = [f.box for f in faces] if faces else [None]
        crops = np.stack([canonical_crop(img, b, cp) for b in boxes])
        with torch.no_grad():
            ages = model.readout(model(model_input(crops, norm))).numpy()
        rec = {"image": str(path), "width": img.shape[1], "height": img.shape[0], "faces": []}
        if faces:
            for f, a in zip(faces, ages):
                rec["faces"].append({**f.to_dict(), "age": round(float(a), 2)})
        else:
            rec["fallback_age"] = round(float(ages[0]), 2)
            rec["note"] = ("no face found; age of the centre square" if cp.policy == "detect"
                           else "crop=none; age of the whole image")
        if annotate:
            rec["annotated"] = _annotate(img, rec, Path(annotate), Path(path).name)
        results.append(rec)
    return results


def _annotate(img: np.ndarray, rec: dict, out_dir: Path, name: str) -> str:
    from PIL import Image, ImageDraw

    im = Image.fromarray(img)
    d = ImageDraw.Draw(im)
    lw = max(2, round(max(img.shape[:2]) / 300))
    for f in rec["faces"]:
        x0, y0, x1, y1 = f["box"]
        d.rectangle((x0, y0, x1, y1), outline=(255, 64, 64), width=lw)
        label = f"{f['age']:.0f}"
        tb = d.textbbox((x0, y0), label)
        d.rectangle((x0, y0 - (tb[3] - tb[1]) - 6, x0 + (tb[2] - tb[0]) + 8, y0), fill=(255, 64, 64))
        d.text((x0 + 4, y0 - (tb[3] - tb[1]) - 4), label, fill=(255, 255, 255))
    if not rec["faces"]:
        d.text((5, 5), f"no face; centre: {rec['fallback_age']:.0f}", fill=(255, 64, 64))
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / (Path(name).stem + "_age.png")
    with atomic_path(out) as tmp:
        im.save(tmp, format="PNG")
    return str(out)
