"""``edgeage predict``: every face of each image, its box and estimated age."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_model, manifest_crop, manifest_normalize
from .data import load_image
from .face import FaceDetector
from .preprocess import canonical_crop, model_input
from .utils import EdgeAgeError, atomic_path, output_dir


def predict_images(images, model_path=None, crop: str | None = None, annotate: str | None = None,
                   force: bool = False):
    """One record per image, in order: faces with boxes and ages, or ``error`` for an image that
    could not be read (the others go on). Annotations get unique names (``x_age.png``,
    ``x_age-2.png`` for a second ``x.jpg`` from another folder); none is overwritten."""
    model, manifest = load_model(model_path)
    cp = manifest_crop(manifest)
    if crop:
        cp = type(cp)(**{**cp.to_dict(), "policy": crop})
    norm = manifest_normalize(manifest)
    det = FaceDetector() if cp.policy == "detect" else None
    results, used = [], set()
    if annotate:
        output_dir(annotate, force, "--annotate")
    for path in images:
        try:
            img = load_image(path)
        except EdgeAgeError as e:
            results.append({"image": str(path), "error": str(e)})
            continue
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
            rec["annotated"] = _annotate(img, rec, Path(annotate), _unique(Path(path).stem, used))
        results.append(rec)
    return results


def _unique(stem: str, used: set) -> str:
    """``stem_age.png``, or ``stem_age-N.png`` when an earlier image of this run had the name."""
    name, n = f"{stem}_age.png", 1
    while name in used:
        n += 1
        name = f"{stem}_age-{n}.png"
    used.add(name)
    return name


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
    out = out_dir / name
    with atomic_path(out) as tmp:
        im.save(tmp, format="PNG")
    return str(out)
