"""INT8 calibration data: which images calibrate a model, their model inputs, and their provenance.

A calibration set is one of two kinds:

``training-split``
    The checkpoint's own training split (its recorded list hash and per-part hashes must be
    reproduced). The default whenever that data is at hand: given as ``--calib-data`` (alias
    ``--data``) or found at the recipe's recorded data path. Training images whose canonical crop
    equals one of a validation / test image's (UTKFace holds a few hundred such duplicate pairs
    under different names) are left out, so an evaluation on the held-out parts never judges a
    calibration image.

``user-images``
    Any other photos: a folder (searched recursively, hidden files and folders skipped; any file
    names), a CSV with a ``path`` column (relative to the CSV's folder; ``age`` optional), or a
    prepared crop cache. Labels are not needed; the set counts as labelled only when every image
    has an age (all file names UTKFace-named, or an ``age`` for every CSV row). UTKFace-named data
    that is not the checkpoint's training data is such a set too. Every image is detected and
    cropped with the model manifest's crop settings, exactly as ``edgeage prepare`` does.
    Unreadable images are skipped and reported; images whose crop repeats one already taken are
    skipped too. The images are taken in a seeded random order: the first ``calib_images``
    calibrate, the next ``val_images`` (labelled sets only) validate.

The manifest's ``quantize.calibration`` section records the provenance: kind, source, count, the
sha256 of the sorted names, whether labelled, the overlap with the evaluation data known at that
time, and ``crop_digests``, the first 16 hex digits of the sha256 of each calibration image's
canonical crop (uint8 bytes). ``edgeage check`` / ``bench`` compare those with the judged images'
crops and refuse to judge an INT8 model on images it was calibrated on (``refuse_overlap``)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np

from edgeage.manifest import Manifest
from edgeage.utils import EdgeAgeError

DEFAULT_CALIB = 300
DEFAULT_VAL = 500          # validation images for MAE before/after and accuracy control
DIGEST_HEX = 16            # hex digits kept of each crop's sha256
TRAINING, USER = "training-split", "user-images"
MAX_LISTED = 20            # skipped images named in the manifest (the count is always there)
LABEL_HINT = ("labelled images: UTKFace-named files (AGE_GENDER_RACE_DATE.jpg.chip.jpg) or a CSV with "
              "path and age columns, given with --calib-data, or the data the checkpoint was trained on")


class CalibrationWarning(UserWarning):
    """Something the user should hear about the calibration set (fewer images than asked,
    images skipped); the CLIs print these as ``warning:`` lines."""


def _warn(msg: str) -> None:
    warnings.warn(msg, CalibrationWarning, stacklevel=3)


# ---------------------------------------------------------------------------- crop digests

def crop_digest(crop: np.ndarray) -> str:
    """Short content digest of one canonical crop (HxWx3 uint8)."""
    return hashlib.sha256(np.ascontiguousarray(crop, np.uint8).tobytes()).hexdigest()[:DIGEST_HEX]


def crop_digests(crops) -> list[str]:
    return [crop_digest(c) for c in crops]


def names_sha256(names) -> str:
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()


def calibration_overlap(quantize, digests: list[str]) -> int | None:
    """How many of ``digests`` (judged images' crops) calibrated the model whose manifest has
    this ``quantize`` section (``Manifest.quantize``); None when it records no crop digests (made
    before edgeage recorded them, or exported from a bare calibration array)."""
    if hasattr(quantize, "to_json_dict"):
        quantize = quantize.to_json_dict()
    cal = ((quantize or {}).get("calibration") or {}).get("crop_digests")
    if cal is None:
        return None
    cal = set(cal)
    return sum(d in cal for d in digests)


def refuse_overlap(quantize, digests: list[str], what: str = "") -> int | None:
    """``calibration_overlap``, or an EdgeAgeError when any judged image calibrated the model."""
    n = calibration_overlap(quantize, digests)
    if n:
        raise EdgeAgeError(f"{what + ': ' if what else ''}{n} of the {len(digests)} images checked were used to "
                           "calibrate this INT8 model: judge it on other images, e.g. --split test, or "
                           "calibrate on other photos with --calib-data")
    return n


# ------------------------------------------------------------------------- training split

def training_record(manifest: Manifest) -> dict | None:
    return manifest.training.split or None


def recipe_data(manifest: Manifest) -> str | None:
    return ((manifest.training.recipe or {}).get("data") or {}).get("path")


def no_data_message(manifest: Manifest) -> str:
    rec = recipe_data(manifest)
    return ("int8 needs calibration images: pass --calib-data PATH, a folder of photos (any names, searched "
            "recursively, labels not needed; faces are detected and cropped like every input) or a CSV with a "
            "path column; the data the checkpoint was trained on calibrates on its training split"
            + (f" (the recipe's data path {rec} does not exist)" if rec else ""))


def data_path(manifest: Manifest, data=None) -> str:
    """``data``, else the training recipe's data path; a clear error when neither exists."""
    if data:
        return str(data)
    rec = recipe_data(manifest)
    if rec and Path(rec).exists():
        return rec
    raise EdgeAgeError(no_data_message(manifest))


def is_training_data(manifest: Manifest, data) -> bool:
    """Whether ``data`` (folder, CSV or prepared cache) lists exactly the images the checkpoint's
    recorded split was made from (list hash of names and ages). Cheap: reads no image."""
    from edgeage.data import DataError, discover, is_prepared, list_hash

    rec = training_record(manifest)
    if not rec or data is None or not Path(data).exists():
        return False
    if is_prepared(data):
        try:
            return json.loads((Path(data) / "meta.json").read_text()).get("list_hash") == rec["list_hash"]
        except (OSError, ValueError):
            return False
    try:
        samples, _ = discover(data, skip_bad=True)
    except DataError:
        return False
    return list_hash(samples) == rec["list_hash"]


def load_split(manifest: Manifest, data) -> tuple:
    """(prepared crops, split index arrays) of ``data``, checked against the checkpoint's
    recorded split (list hash and per-part hashes)."""
    from edgeage.data import is_prepared, load_prepared, prepare, split, split_record

    rec = training_record(manifest)
    src = manifest.source_path or "the checkpoint"
    if not rec:
        raise EdgeAgeError(f"{src} records no training split (manifest training.split): use a checkpoint "
                           "written by `edgeage train`, or calibrate on other photos with --calib-data")
    crop = manifest.crop
    prep = load_prepared(data, expect_crop=crop) if is_prepared(data) else prepare(data, crop, progress=False)
    if prep.lhash != rec["list_hash"]:
        raise EdgeAgeError(f"{data}: image list hash {prep.lhash[:12]} differs from the one {src} was "
                           f"trained on ({rec['list_hash'][:12]}): pass the data it was trained on (--data, or "
                           "--calib-data for int8 calibration)")
    if prep.crop != crop:  # prepared here from a folder with the model's settings: holds by construction
        raise EdgeAgeError(f"{data}: crops were prepared with {prep.crop}, the model expects {crop}")
    parts = split(prep.names, seed=rec["seed"], val=rec["val"], test=rec["test"])
    got = split_record(prep.names, parts, rec["seed"], rec["val"], rec["test"], prep.lhash)
    bad = [k for k in rec if k.endswith("_hash") and got.get(k) != rec[k]]
    if bad:
        raise EdgeAgeError(f"{data}: does not reproduce the split {src} was trained on ({', '.join(bad)} differ)")
    return prep, parts


def pick(indices: np.ndarray, n: int, seed: int, what: str) -> np.ndarray:
    """``n`` of ``indices``, seeded random, sorted (all of them, with a warning, when fewer)."""
    if n <= 0:
        raise EdgeAgeError(f"{what}: need at least one image (got {n})")
    if len(indices) < n:
        _warn(f"{what}: only {len(indices)} images available, fewer than the {n} asked for")
        return np.sort(np.asarray(indices))
    return np.sort(np.random.default_rng(seed).choice(np.asarray(indices), n, replace=False))


# ---------------------------------------------------------------------------- user images

@dataclasses.dataclass
class Entry:
    name: str                  # as recorded: path relative to the folder / as listed in the CSV
    path: str
    age: float | None


@dataclasses.dataclass
class Source:
    """Where calibration images come from, before any image is read."""

    kind: str                  # TRAINING or USER
    path: str
    labelled: bool
    entries: list[Entry] = dataclasses.field(default_factory=list)   # USER (not a prepared cache)
    skipped: list[str] = dataclasses.field(default_factory=list)     # listed entries already dropped
    prepared: bool = False


def _utk_age(name: str) -> float | None:
    from edgeage.data import DataError, parse_utk_name

    try:
        return float(parse_utk_name(name))
    except DataError:
        return None


def _folder_entries(root: Path) -> list[Entry]:
    from edgeage.data import IMAGE_EXTS

    out = []
    for dirpath, dirnames, files in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(files):
            if f.startswith(".") or not f.lower().endswith(IMAGE_EXTS):
                continue
            p = Path(dirpath) / f
            out.append(Entry(p.relative_to(root).as_posix(), str(p), _utk_age(f)))
    if not out:
        raise EdgeAgeError(f"{root}: no images ({', '.join(IMAGE_EXTS)}) in this folder or its subfolders")
    return sorted(out, key=lambda e: e.name)


def _age_cell(value: str, where: str) -> float | None:
    from edgeage.data import MAX_AGE

    if value is None or not value.strip():
        return None
    try:
        age = float(value)
    except ValueError:
        age = math.nan
    if not math.isfinite(age) or not 0 <= age <= MAX_AGE:
        raise EdgeAgeError(f"{where}: age {value!r} is not a number in 0..{MAX_AGE} years; fix it or leave the "
                           "cell empty (labels are optional for calibration)")
    return age


def _csv_entries(path: Path) -> tuple[list[Entry], list[str]]:
    """Entries of a CSV with a ``path`` column (``age`` optional); listed files that do not
    exist are skipped (returned as messages)."""
    from edgeage.data import read_csv

    out, skipped = [], []
    for line, row in read_csv(path, required=("path",)):
        rel = (row.get("path") or "").strip()
        if not rel:
            skipped.append(f"{path}:{line}: empty path")
            continue
        img = path.parent / rel
        if not img.is_file():
            skipped.append(f"{img}: file not found (listed in {path}:{line})")
            continue
        out.append(Entry(rel, str(img), _age_cell(row.get("age"), f"{path}:{line} ({rel})")))
    if not out:
        raise EdgeAgeError(f"{path}: the CSV lists no existing images" + (f" ({skipped[0]}, ...)" if skipped else ""))
    return out, skipped


def user_source(data) -> Source:
    from edgeage.data import is_prepared

    p = Path(data)
    if not p.exists():
        raise EdgeAgeError(f"--calib-data {data}: no such file or folder")
    where = str(p.resolve())
    if is_prepared(p):
        return Source(USER, where, True, prepared=True)
    if p.is_dir():
        entries, skipped = _folder_entries(p), []
    elif p.suffix.lower() == ".csv":
        entries, skipped = _csv_entries(p)
    else:
        raise EdgeAgeError(f"--calib-data {data}: expected a folder of images, a .csv with a path column, or a "
                           "prepared crop cache")
    return Source(USER, where, all(e.age is not None for e in entries), entries, skipped)


def locate(manifest: Manifest, data=None) -> Source:
    """The calibration source: ``data`` (the training split when it is the checkpoint's training
    data, else user images), else the recipe's data path (must be the training data)."""
    if data is None:
        return Source(TRAINING, data_path(manifest), True)  # the recipe's: load_split verifies it
    if is_training_data(manifest, data):
        return Source(TRAINING, str(data), True)
    return user_source(data)


# ------------------------------------------------------------------------------- the set

@dataclasses.dataclass
class QuantData:
    calib: np.ndarray          # model inputs of the calibration images
    calib_idx: np.ndarray      # their indices (in the prepared data / in the user list)
    val: np.ndarray            # model inputs of validation images (labelled sets only)
    val_ages: np.ndarray
    val_idx: np.ndarray
    prep: object               # training split: the prepared data (QAT trains on it); else None
    parts: dict | None         # training split: the split index arrays; else None
    source: str
    kind: str = TRAINING
    labelled: bool = True
    calib_names: list = dataclasses.field(default_factory=list)
    calib_digests: list = dataclasses.field(default_factory=list)
    faces_not_found: int = 0
    skipped: list = dataclasses.field(default_factory=list)
    duplicates: int = 0        # images left out because their crop repeats a taken / held-out one
    overlap: dict = dataclasses.field(default_factory=dict)
    seed: int = 0

    def provenance(self) -> dict:
        return {"kind": self.kind, "source": self.source, "count": int(len(self.calib_idx)),
                "names_sha256": names_sha256(self.calib_names), "labelled": bool(self.labelled),
                "selection": f"seeded random (seed {self.seed})", "faces_not_found": int(self.faces_not_found),
                "skipped_count": len(self.skipped), "skipped": self.skipped[:MAX_LISTED],
                "duplicates_left_out": int(self.duplicates), "evaluation_overlap": self.overlap,
                "digest": f"sha256 of each canonical crop's uint8 bytes, first {DIGEST_HEX} hex digits",
                "crop_digests": list(self.calib_digests)}

    def info(self) -> dict:
        return {"data": self.source, "split": "train" if self.kind == TRAINING else None,
                "calibration_images": int(len(self.calib_idx)),
                "calibration_names_sha256": names_sha256(self.calib_names),
                "validation_images": int(len(self.val_idx)), "calibration": self.provenance()}


def _inputs(crops: np.ndarray, manifest: Manifest) -> np.ndarray:
    from edgeage.pipeline import AgeEstimator

    return AgeEstimator(None, manifest).inputs(crops)


def training_data(manifest: Manifest, path: str, calib_images: int, val_images: int, seed: int) -> QuantData:
    prep, parts = load_split(manifest, path)
    digests = crop_digests(prep.crops)
    held = {digests[i] for k in ("val", "test") for i in parts[k]}
    train = np.asarray([i for i in parts["train"] if digests[i] not in held], np.int64)
    ci = pick(train, calib_images, seed, "calibration (training split)")
    vi = pick(parts["val"], val_images, seed + 1, "validation split") if val_images else np.arange(0)
    overlap = {"against": "the val and test parts of the checkpoint's split",
               "images": int(sum(digests[i] in held for i in ci))}
    return QuantData(_inputs(prep.crops[ci], manifest), ci, _inputs(prep.crops[vi], manifest), prep.ages[vi].astype(np.float64),
                     vi, prep, parts, str(path), TRAINING, True, [prep.names[i] for i in ci],
                     [digests[i] for i in ci], int((~prep.face_found[ci]).sum()), [],
                     int(len(parts["train"]) - len(train)), overlap, seed)


def user_data(manifest: Manifest, src: Source, calib_images: int, val_images: int, seed: int) -> QuantData:
    """Calibration (and, for labelled sets, validation) images of a user source."""
    from edgeage.data import DataError, load_image, load_prepared

    if calib_images <= 0:
        raise EdgeAgeError(f"--calib-images {calib_images}: need at least one calibration image")
    crop = manifest.crop
    want_val = val_images if src.labelled else 0
    skipped = list(src.skipped)
    if src.prepared:
        prep = load_prepared(src.path, expect_crop=crop)
        n = len(prep.names)

        def get(i):
            return prep.names[i], prep.crops[i], float(prep.ages[i]), bool(prep.face_found[i])
    else:
        from edgeage.face import Cropper

        n, cropper = len(src.entries), None

        def get(i):
            nonlocal cropper
            e = src.entries[i]
            img = load_image(e.path)  # DataError naming the file: skipped and reported below
            cropper = cropper or Cropper(crop)
            c, face = cropper(img)
            return e.name, c, e.age, face is not None or crop.policy == "none"

    calib, val, seen, dups = [], [], set(), 0
    for i in np.random.default_rng(seed).permutation(n):
        if len(calib) >= calib_images and len(val) >= want_val:
            break
        try:
            name, c, age, found = get(int(i))
        except DataError as e:
            skipped.append(str(e))
            continue
        d = crop_digest(c)
        if d in seen:
            dups += 1
            continue
        seen.add(d)
        (calib if len(calib) < calib_images else val).append((int(i), name, np.asarray(c, np.uint8), age, d, found))
    if skipped:
        _warn(f"calibration ({src.path}): skipped {len(skipped)} image(s) that could not be used: "
              + "; ".join(skipped[:3]) + (" ..." if len(skipped) > 3 else ""))
    if not calib:
        raise EdgeAgeError(f"--calib-data {src.path}: none of its {n} images could be read"
                           + (f" ({skipped[0]})" if skipped else ""))
    if len(calib) < calib_images:
        _warn(f"calibration ({src.path}): only {len(calib)} images available, fewer than the {calib_images} asked for")
    calib.sort(key=lambda t: t[1])
    val.sort(key=lambda t: t[1])
    missed = sum(not t[5] for t in calib)
    if missed:
        _warn(f"calibration ({src.path}): no face found in {missed} of {len(calib)} images (their centre square "
              "was used, as for any input without a face)")
    stack = (lambda items: np.stack([t[2] for t in items]) if items else
             np.zeros((0, crop.crop_size, crop.crop_size, 3), np.uint8))
    overlap = {"against": "the validation images drawn from the same set" if want_val else "none (no labels: no "
               "validation images)", "images": 0}  # disjoint by construction (repeated crops left out)
    return QuantData(_inputs(stack(calib), manifest), np.asarray([t[0] for t in calib]), _inputs(stack(val), manifest),
                     np.asarray([t[3] for t in val], np.float64), np.asarray([t[0] for t in val], np.int64), None,
                     None, src.path, USER, src.labelled, [t[1] for t in calib], [t[4] for t in calib], missed,
                     skipped, dups, overlap, seed)


def quant_data(manifest: Manifest, data=None, calib_images: int = DEFAULT_CALIB, val_images: int = DEFAULT_VAL,
               seed: int = 0, source: Source | None = None) -> QuantData:
    """Calibration inputs (``calib_images`` images) and validation inputs, preprocessed as the
    manifest says: from the checkpoint's training split (validation: its val part) when ``data``
    is its training data or not given, else from ``data`` as user images."""
    src = source or locate(manifest, data)
    if src.kind == TRAINING:
        return training_data(manifest, src.path, calib_images, val_images, seed)
    return user_data(manifest, src, calib_images, val_images, seed)


def default_options(manifest: Manifest, data=None, calib_images: int = DEFAULT_CALIB, seed: int = 0):
    """(Int8Options, quantize section) of PTQ with the default calibration (``export`` / ``check``
    / ``bench`` without --from)."""
    from edgeage.backend import Int8Options

    qd = quant_data(manifest, data, calib_images, val_images=0, seed=seed)
    return Int8Options(calib=qd.calib), {"method": "ptq", **qd.info()}


def require_labels(src: Source, what: str) -> None:
    """A clear error when ``what`` needs ages and the calibration set has none."""
    if not src.labelled:
        raise EdgeAgeError(f"{what} needs labelled validation images, and the calibration images in {src.path} "
                           f"carry no ages: give {LABEL_HINT}; or leave the option out")
