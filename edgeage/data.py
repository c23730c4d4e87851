"""Face data: UTKFace-named folders and CSV files, strict validation, seeded splits, and the
prepared cache of canonical crops that training and evaluation read.

Every problem with an input names the file. Nothing is skipped silently: with ``skip_bad`` the
bad entries are returned (and reported) instead of raising."""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .preprocess import CropParams
from .utils import EdgeAgeError, atomic_dir

ImageFile.LOAD_TRUNCATED_IMAGES = False
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Largest image accepted (pixels). PIL's own limit (2 x 89.5 M) is only a warning up to there:
# a few-KB PNG can claim 50,000 x 50,000 pixels and take gigabytes to decode.
MAX_IMAGE_PIXELS = 64_000_000
# Ages a label may have (years). UTKFace goes to 116; an age outside this is a typo or a unit
# error (months, birth year) and would silently wreck MAE (an age of 500: MAE 243).
MAX_AGE = 120


class DataError(EdgeAgeError):
    pass


@dataclass(frozen=True)
class Sample:
    path: str
    age: float
    # a CSV's extra columns (column -> value), kept as groups for `eval --by COLUMN`
    groups: dict | None = field(default=None, compare=False)


def parse_utk_name(name: str) -> int:
    """Age from ``AGE_GENDER_RACE_DATE.jpg.chip.jpg`` (or the three-field form without RACE).

    Only the age field must be well formed (an integer); one released file has a malformed
    date field (``..357jpg.chip.jpg``) and still carries a valid age."""
    base = os.path.basename(name)
    fields = base.split("_")
    if not base.lower().endswith(".jpg") or len(fields) not in (3, 4):
        raise DataError(f"{name}: not a UTKFace file name (expected AGE_GENDER_RACE_DATE.jpg.chip.jpg)")
    if not fields[0].isdigit():
        raise DataError(f"{name}: age field {fields[0]!r} is not an integer")
    return int(check_age(int(fields[0]), name))


def check_age(age: float, where: str) -> float:
    """``age`` if it is a finite number in 0..MAX_AGE years, else a DataError naming ``where``."""
    if not np.isfinite(age) or not 0 <= age <= MAX_AGE:
        raise DataError(f"{where}: age {age:g} is outside 0..{MAX_AGE} years (a typo, months or a birth "
                        "year?); fix the label")
    return age


def _rgb8(im: "Image.Image", path) -> np.ndarray:
    """HxWx3 uint8 RGB of any mode. 16-bit (and 32-bit integer) grey images are scaled to 8 bits
    (PIL's convert("RGB") would clip them: a 16-bit PNG read saturated); float images refused."""
    if im.mode.startswith("I;16") or im.mode == "I":
        a = np.asarray(im, dtype=np.float64)
        top = 255.0 if a.size == 0 or a.max() <= 255 else 65535.0
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise DataError(f"{path}: {im.mode} image values {a.min():g}..{a.max():g} are outside 16 bits; "
                            "save it as an 8- or 16-bit image")
        g = np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if im.mode == "F":
        raise DataError(f"{path}: a floating-point image (mode F) has no defined pixel range; save it as an "
                        "8- or 16-bit image")
    return np.asarray(im.convert("RGB"))


def load_image(path: str | os.PathLike) -> np.ndarray:
    """HxWx3 uint8 RGB (EXIF orientation applied). Raises DataError naming the file."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS:
                raise DataError(f"{path}: image claims {w} x {h} = {w * h / 1e6:.0f} M pixels, more than the "
                                f"{MAX_IMAGE_PIXELS / 1e6:.0f} M edgeage decodes (a decompression bomb or a "
                                "huge scan); downscale it")
            im.load()
            im = ImageOps.exif_transpose(im)
            return _rgb8(im, path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not an image") from None
    except Image.DecompressionBombError as e:
        raise DataError(f"{path}: refused as a decompression bomb ({e})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, MemoryError) as e:
        raise DataError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None


def discover(path: str | os.PathLike, skip_bad: bool = False, labelled: bool = True) -> tuple[list[Sample], list[str]]:
    """Samples of a UTKFace-named folder or of a CSV with ``path`` and ``age`` columns.
    ``labelled=False`` (faces without ages, for distillation): every image of a folder and its
    sub-folders, or a CSV's ``path`` column; each sample's age is NaN.

    Returns (samples, skipped) where skipped lists "file: reason" (only with skip_bad)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{path}: no such file or folder")
    samples, skipped = [], []

    def bad(msg: str):
        if not skip_bad:
            raise DataError(msg + "  (use --skip-bad to skip and list such entries)")
        skipped.append(msg)

    if not labelled:
        return discover_unlabelled(p, bad), skipped

    if p.is_dir():
        files = sorted(f for f in os.listdir(p) if f.lower().endswith(IMAGE_EXTS))
        if not files:
            raise DataError(f"{path}: folder holds no images ({', '.join(IMAGE_EXTS)})")
        for f in files:
            try:
                samples.append(Sample(str(p / f), float(parse_utk_name(f))))
            except DataError as e:
                bad(str(e))
    elif p.suffix.lower() == ".csv":
        for line, row in read_csv(p, required=("path", "age")):
            img = p.parent / (row["path"] or "")
            try:
                age = float(row["age"])
            except (TypeError, ValueError):
                bad(f"{path}:{line}: age {row['age']!r} of {row['path']} is not a number")
                continue
            try:
                check_age(age, f"{path}:{line} ({row['path']})")
            except DataError as e:
                bad(str(e))
                continue
            if not row["path"] or not img.is_file():
                bad(f"{img}: file not found (listed in {path}:{line})")
                continue
            extra = {k: (v or "").strip() for k, v in row.items()
                     if k is not None and k not in ("path", "age") and isinstance(v, (str, type(None)))}
            samples.append(Sample(str(img), age, extra or None))
        if not samples and not skipped:
            raise DataError(f"{path}: CSV lists no images")
    else:
        raise DataError(f"{path}: expected a folder of UTKFace-named images or a .csv file")
    if not samples:
        raise DataError(f"{path}: no usable images ({len(skipped)} skipped)")
    return samples, skipped


def discover_unlabelled(p: Path, bad) -> list[Sample]:
    """Faces without ages: every image under folder ``p`` (sub-folders too: one per person, as in
    LFW) or each row of a CSV's ``path`` column (``bad``: ``discover``'s report of a missing
    file). Crops are named by file name, so two images of one name in different folders are
    refused."""
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTS and f.is_file())
    elif p.suffix.lower() == ".csv":
        files = []
        for line, row in read_csv(p, required=("path",)):
            img = p.parent / (row["path"] or "")
            if not row["path"] or not img.is_file():
                bad(f"{img}: file not found (listed in {p}:{line})")
                continue
            files.append(img)
    else:
        raise DataError(f"{p}: expected a folder of images or a .csv file with a path column")
    if not files:
        raise DataError(f"{p}: holds no images ({', '.join(IMAGE_EXTS)})")
    seen: dict[str, Path] = {}
    for f in files:
        if f.name in seen:
            raise DataError(f"{p}: two images are named {f.name} ({seen[f.name]} and {f}); crops are "
                            "named by file name: rename one")
        seen[f.name] = f
    return [Sample(str(f), math.nan) for f in files]


def read_csv(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict]]:
    """(line number, row) of a UTF-8 CSV (a BOM, as spreadsheets write it, is fine) whose header
    has the ``required`` columns; a DataError naming the file and line otherwise."""
    rows, line = [], 1
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            cols = reader.fieldnames or []
            missing = [c for c in required if c not in cols]
            if missing:
                raise DataError(f"{path}: CSV header must have {' and '.join(repr(c) for c in required)} "
                                f"columns, has {cols}")
            for line, row in enumerate(reader, start=2):
                rows.append((line, row))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text near line {line + 1} ({e.reason} at byte {e.start}); save the "
                        "CSV as UTF-8") from None
    except csv.Error as e:
        raise DataError(f"{path}:{line + 1}: malformed CSV ({e})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    return rows


def content_hash(samples: list[Sample]) -> str:
    """Hash of the files' names, sizes and modification times: changes when an image is replaced
    under the same name (the crop cache is keyed on it)."""
    h = hashlib.sha256()
    for s in sorted(samples, key=lambda s: os.path.basename(s.path)):
        try:
            st = os.stat(s.path)
            sig = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            sig = "missing"
        h.update(f"{os.path.basename(s.path)}\t{s.age:g}\t{sig}\n".encode())
    return h.hexdigest()


def list_hash(samples: list[Sample]) -> str:
    h = hashlib.sha256()
    for s in sorted(samples, key=lambda s: os.path.basename(s.path)):
        h.update(f"{os.path.basename(s.path)}\t{s.age:g}\n".encode())
    return h.hexdigest()


def split(n_or_names, seed: int = 0, val: float = 0.1, test: float = 0.15) -> dict[str, np.ndarray]:
    """Deterministic seeded split into train/val/test index arrays (sorted within each part).

    Given file names, assignment depends only on the sorted names and the seed."""
    names = list(n_or_names) if not isinstance(n_or_names, int) else None
    n = len(names) if names is not None else n_or_names
    order = np.argsort(np.asarray(names, dtype=object)) if names is not None else np.arange(n)
    perm = order[np.random.default_rng(seed).permutation(n)]
    n_test, n_val = int(round(n * test)), int(round(n * val))
    return {"test": np.sort(perm[:n_test]), "val": np.sort(perm[n_test:n_test + n_val]),
            "train": np.sort(perm[n_test + n_val:])}


def split_record(names: list[str], parts: dict[str, np.ndarray], seed: int, val: float,
                 test: float, lhash: str) -> dict:
    rec = {"seed": seed, "val": val, "test": test, "list_hash": lhash,
           "sizes": {k: int(len(v)) for k, v in parts.items()}}
    for k, idx in parts.items():
        rec[f"{k}_hash"] = hashlib.sha256("\n".join(names[i] for i in idx).encode()).hexdigest()
    return rec


@dataclass
class Prepared:
    """Canonical crops of a data set, in memory (crops: [N, S, S, 3] uint8)."""

    crops: np.ndarray
    ages: np.ndarray
    names: list[str]
    face_found: np.ndarray
    crop: CropParams
    source: str
    lhash: str
    skipped: list[str]
    content: str | None = None       # content_hash of the images it was made from
    # a CSV's extra columns: column -> one value per crop ("" = unknown); None: none
    groups: dict[str, list[str]] | None = None
    # the detector's face box (x0, y0, x1, y1) on the source image, px; NaN where no face was
    # found; None: not recorded (caches prepared before it was)
    face_box: np.ndarray | None = None

    @property
    def faces_not_found(self) -> int:
        return int((~self.face_found).sum())


def cache_key(path: str, lhash: str, crop: CropParams, content: str | None = None) -> str:
    blob = json.dumps([os.path.abspath(path), lhash, crop.to_dict(), content], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get("EDGEAGE_CACHE", Path.home() / ".cache" / "edgeage"))


def prepare(path: str | os.PathLike, crop: CropParams | None = None, skip_bad: bool = False,
            out: str | os.PathLike | None = None, use_cache: bool = True,
            progress: bool = True, force: bool = False, labelled: bool = True) -> Prepared:
    """Detect, crop and cache every image of ``path``. Reuses the cache when present.
    ``labelled=False``: faces without ages (``discover``); their ages are NaN."""
    crop = crop or CropParams()
    samples, skipped = discover(path, skip_bad, labelled)
    content = content_hash(samples)
    out = Path(out) if out else cache_root() / cache_key(str(path), list_hash(samples), crop, content)
    if use_cache and (out / "meta.json").is_file():
        prep = load_prepared(out, expect_crop=crop)
        if prep.content == content:
            prep.groups = sample_groups(samples, prep.names)  # a CSV's columns may have changed
            return prep

    from tqdm import tqdm

    from .face import Cropper

    cropper = Cropper(crop)
    crops, ages, names, found, boxes = [], [], [], [], []
    for s in tqdm(samples, desc=f"prepare {Path(path).name}", unit="img", disable=not progress,
                  mininterval=2.0):
        try:
            img = load_image(s.path)
        except DataError as e:
            if not skip_bad:
                raise DataError(f"{e}  (use --skip-bad to skip and list such files)") from None
            skipped.append(str(e))
            continue
        c, face = cropper(img)
        crops.append(c)
        ages.append(s.age)
        names.append(os.path.basename(s.path))
        found.append(face is not None or crop.policy == "none")
        boxes.append(face.box if face is not None else (np.nan,) * 4)
    if not crops:
        raise DataError(f"{path}: no readable images ({len(skipped)} skipped)")
    read = set(names)
    used = [s for s in samples if os.path.basename(s.path) in read]
    prep = Prepared(np.stack(crops), np.asarray(ages, np.float32), names, np.asarray(found),
                    crop, str(Path(path).resolve()), list_hash([Sample(n, a) for n, a in zip(names, ages)]),
                    skipped, content_hash(used), sample_groups(samples, names),
                    np.asarray(boxes, np.float32).reshape(-1, 4))
    save_prepared(prep, out, force=force)
    return prep


def save_prepared(prep: Prepared, out: str | os.PathLike, force: bool = False) -> None:
    with atomic_dir(out, force=force, kind="crop-cache") as tmp:
        np.save(tmp / "crops.npy", prep.crops)
        meta = {"format": "edgeage-crops/1", "source": prep.source, "list_hash": prep.lhash,
                "content_hash": prep.content, "crop": prep.crop.to_dict(),
                "names": prep.names, "ages": [None if np.isnan(a) else a for a in prep.ages.tolist()],
                "face_found": prep.face_found.astype(int).tolist(), "skipped": prep.skipped}
        if prep.groups:
            meta["groups"] = prep.groups
        if prep.face_box is not None:
            meta["face_box"] = [None if not np.isfinite(b).all() else [round(float(v), 2) for v in b]
                                for b in np.asarray(prep.face_box, np.float64)]
        (tmp / "meta.json").write_text(json.dumps(meta))


def load_prepared(path: str | os.PathLike, expect_crop: CropParams | None = None, fresh: bool = True) -> Prepared:
    """A prepared crop cache. ``expect_crop``: the crop settings the model needs (a cache made
    with others is refused). ``fresh``: when the images it was made from are still there, refuse
    it if any of them changed since (content hash of names, sizes, modification times)."""
    from .schemas import PreparedMeta, read_data, validate
    from .utils import EdgeAgeError, register_input

    path = Path(path)
    register_input(path)
    try:  # the schema: every field typed, every age finite and in 0..120 (a damaged cache never trains)
        meta = read_data(path / "meta.json", "json")
        validate(PreparedMeta, meta, str(path / "meta.json"))
    except EdgeAgeError as e:
        raise DataError(f"{e}; run `edgeage prepare` again") from None
    try:
        crops = np.load(path / "crops.npy", mmap_mode="r", allow_pickle=False)
        ages = np.asarray([np.nan if a is None else a for a in meta["ages"]], np.float32)  # None: no age
        prep = Prepared(np.ascontiguousarray(crops), ages, list(meta["names"]),
                        np.asarray(meta["face_found"], bool), CropParams(**meta["crop"]),
                        str(meta["source"]), str(meta["list_hash"]), list(meta.get("skipped", [])),
                        meta.get("content_hash"), meta.get("groups") or None,
                        None if meta.get("face_box") is None else
                        np.asarray([b if b is not None else [np.nan] * 4 for b in meta["face_box"]],
                                   np.float32).reshape(-1, 4))
        if prep.groups is not None:
            prep.groups = {str(k): [str(v) for v in vals] for k, vals in dict(prep.groups).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: not a readable prepared crop cache ({type(e).__name__}: {e}); run "
                        "`edgeage prepare` again") from None
    if crops.ndim != 4 or len(crops) != len(prep.names) or len(prep.ages) != len(prep.names) \
            or crops.dtype != np.uint8 or (prep.face_box is not None and len(prep.face_box) != len(prep.names)) \
            or any(len(v) != len(prep.names) for v in (prep.groups or {}).values()):
        raise DataError(f"{path}: crop cache is inconsistent; delete it and run `edgeage prepare`")
    if expect_crop is not None and prep.crop != expect_crop:
        raise DataError(f"{path}: crops were prepared with {prep.crop}, but the model expects {expect_crop}; "
                        f"run `edgeage prepare --data {prep.source}` with the model's settings, or pass the "
                        "image folder instead")
    if fresh and prep.content and Path(prep.source).exists():
        try:
            samples, _ = discover(prep.source, skip_bad=True, labelled=not np.isnan(prep.ages).all())
        except DataError:
            samples = None
        if samples is not None:
            names = set(prep.names)
            now = content_hash([s for s in samples if os.path.basename(s.path) in names])
            if now != prep.content:
                raise DataError(f"{path}: stale crop cache: images in {prep.source} changed (added, removed or "
                                "replaced) since it was prepared; run `edgeage prepare` again")
    return prep


def sample_groups(samples: list[Sample], names: list[str]) -> dict[str, list[str]] | None:
    """The samples' extra CSV columns as one list per column, in the order of ``names`` (file
    names of the crops); "" where a sample lacks the column. None when no sample has any."""
    by_name = {os.path.basename(s.path): s.groups or {} for s in samples}
    cols = sorted({k for g in by_name.values() for k in g})
    if not cols:
        return None
    return {c: [str(by_name.get(n, {}).get(c, "")) for n in names] for c in cols}


def is_prepared(path: str | os.PathLike) -> bool:
    return (Path(path) / "meta.json").is_file() and (Path(path) / "crops.npy").is_file()
