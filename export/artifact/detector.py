"""The face detector as an exported model (issue 26): the shipped BlazeFace .tflite, as the
PyTorch module ``edgeage.models.blazeface.ExportedDetector``, written by any target's exporter
into an artifact with a ``face-detector`` manifest (``edgeage.face.detector_manifest``), fp32 /
fp16 / bf16 / INT8 like an age model.

INT8 calibration uses *scenes*: the calibration photos placed at random scales and positions on a
640x480 background (1-3 per scene), letterboxed as the detector sees a camera frame, so the
activation ranges cover small faces in a large frame as well as a face that fills it. The same
scenes are what ``edgeage detector check`` compares on (``export/conformance/detector.py``)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeage.manifest import Manifest
from edgeage.utils import EdgeAgeError

SCENE_SIZE = (640, 480)
DEFAULT_CALIB_SCENES = 200


def scene_photos(data, limit: int, seed: int = 0) -> list[np.ndarray]:
    """Up to ``limit`` RGB photos drawn (seeded) from ``data``: a folder of images (searched
    recursively, any names) or a CSV with a ``path`` column; unreadable files are skipped."""
    from edgeage.data import DataError, load_image

    from .calibration import user_source

    src = user_source(data)
    if src.prepared:
        raise EdgeAgeError(f"{data}: a prepared crop cache holds face crops, not photos; give the folder of "
                           "photos it was prepared from")
    out, bad = [], []
    for i in np.random.default_rng(seed).permutation(len(src.entries)):
        if len(out) >= limit:
            break
        try:
            out.append(load_image(src.entries[int(i)].path))
        except DataError as e:
            bad.append(str(e))
    if not out:
        raise EdgeAgeError(f"{data}: none of its images could be read" + (f" ({bad[0]})" if bad else ""))
    return out


def scenes(photos: list[np.ndarray], n: int, seed: int = 0, size: tuple[int, int] = SCENE_SIZE) -> list[np.ndarray]:
    """``n`` HxWx3 uint8 frames, each 1-3 of ``photos`` (cycled) pasted at a random side of 10-60 %
    of the frame's height, at random non-overlapping places where they fit, on a smooth noisy
    background. Seeded."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    bg = np.stack([80 + 70 * xx / w, 90 + 50 * yy / h, 110 + 30 * (xx + yy) / (w + h)], -1)
    import cv2

    out, k = [], 0
    for _ in range(n):
        frame = np.clip(bg + rng.normal(0, 4, bg.shape), 0, 255).astype(np.uint8)
        taken: list[tuple[int, int, int]] = []
        for _ in range(int(rng.integers(1, 4))):
            photo = photos[k % len(photos)]
            k += 1
            side = int(rng.uniform(0.1, 0.6) * h)
            for _ in range(20):  # a place that overlaps no earlier photo
                x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
                if all(x0 + side <= a or a + s <= x0 or y0 + side <= b or b + s <= y0 for a, b, s in taken):
                    break
            else:
                continue
            taken.append((x0, y0, side))
            ph, pw = photo.shape[:2]
            s = min(ph, pw)  # the photo's centre square
            sq = photo[(ph - s) // 2:(ph - s) // 2 + s, (pw - s) // 2:(pw - s) // 2 + s]
            frame[y0:y0 + side, x0:x0 + side] = cv2.resize(sq, (side, side), interpolation=cv2.INTER_AREA)
        out.append(frame)
    return out


def detector_inputs(frames: list[np.ndarray]) -> np.ndarray:
    """Letterboxed detector inputs, NCHW float32 ``[N,3,128,128]`` in [-1, 1]."""
    from edgeage.face import letterbox

    return np.stack([letterbox(f)[0] for f in frames]).transpose(0, 3, 1, 2).copy()


def calibration(data, images: int = DEFAULT_CALIB_SCENES, seed: int = 0):
    """(Int8Options, quantize section) for the detector: ``images`` scenes made of the photos in
    ``data``."""
    from edgeage.backend import Int8Options

    if data is None:
        raise EdgeAgeError("int8 export of the face detector needs calibration photos: pass --calib-data (a "
                           "folder of photos or frames with faces, e.g. your camera's)")
    frames = scenes(scene_photos(data, images, seed), images, seed)
    info = {"method": "ptq", "calibration": {"kind": "scenes", "source": str(Path(data).resolve()),
                                             "count": len(frames), "seed": seed,
                                             "how": "1-3 photos per 640x480 frame, 10-60 % of its height"}}
    return Int8Options(calib=detector_inputs(frames)), info


def export_detector(target: str, precision: str = "fp32", out=None, *, calib_data=None,
                    calib_images: int = DEFAULT_CALIB_SCENES, force: bool = False) -> tuple[Path, Manifest]:
    """Export the shipped face detector to ``target`` at ``precision`` into ``out`` (default
    ``artifacts/blazeface-short-range-<target>-<precision>``); returns the folder and its
    manifest. ``edgeage detector export`` is this function."""
    from edgeage.artifact import read_manifest
    from edgeage.face import DETECTOR_NAME, detector_manifest
    from edgeage.models.blazeface import ExportedDetector
    from edgeage.targets.spec import check_precision, load_spec
    from edgeage.utils import check_output

    from .writer import default_artifact_dir, export_artifact

    spec = load_spec(target)
    check_precision(spec, precision)
    if out:
        check_output(out, force)
    manifest = detector_manifest()
    calib = None
    if precision == "int8":
        calib, info = calibration(calib_data, calib_images)
        manifest = manifest.copy_with(quantize=info)
    out = out or default_artifact_dir(DETECTOR_NAME, spec.name, precision)
    path = export_artifact(ExportedDetector(), manifest, spec, precision, os.fspath(out), calib=calib,
                           force=force, deploy=False)
    return Path(path), read_manifest(path)
