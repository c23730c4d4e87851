"""``edgeage predict``: every face of each image, its box and estimated age."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import load_image
from .pipeline import AgeEstimator
from .utils import EdgeAgeError, atomic_path, output_dir


def predict_images(images, model_path=None, crop: str | None = None, annotate: str | None = None,
                   force: bool = False, estimator: AgeEstimator | None = None):
    """One record per image, in order: faces with boxes and ages, or ``error`` for an image that
    could not be read (the others go on). Annotations get unique names (``x_age.png``,
    ``x_age-2.png`` for a second ``x.jpg`` from another folder); none is overwritten. The model
    is loaded once (``estimator``: an AgeEstimator already built, e.g. on an artifact)."""
    est = (estimator or AgeEstimator.from_checkpoint(model_path)).with_crop_policy(crop)
    results, used = [], set()
    if annotate:
        output_dir(annotate, force, "--annotate")
    for path in images:
        try:
            img = load_image(path)
        except EdgeAgeError as e:
            results.append({"image": str(path), "error": str(e)})
            continue
        rec = {"image": str(path), **est.predict(img)}
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
