"""Build labels.csv for a local copy of APPA-REAL (real and apparent age, 7,591 photos).

APPA-REAL (ChaLearn LAP) ships ``appa-real-release/{train,valid,test}/`` with each photo
(``005613.jpg``), the set's own face crop (``005613.jpg_face.jpg``) and labels in
``gt_avg_{split}.csv`` (file_name, num_ratings, apparent_age_avg, apparent_age_std, real_age).
``allcategories_{split}.csv`` (file, gender, race, makeup, time, happiness), where present, adds
gender and race.

This script never downloads anything. Get the set yourself (see docs/datasets.md, "APPA-REAL"),
unpack it so that ``ROOT/appa-real-release/`` exists, then:

    python scripts/datasets/appa_real.py ~/.cache/edgeage/datasets/appa-real            # test split
    python scripts/datasets/appa_real.py ~/.cache/edgeage/datasets/appa-real --splits train,valid,test

It writes ``ROOT/labels.csv`` (path, age = real age, apparent_age, split, and gender/race where
the set gives them), paths relative to ROOT. The photos are used whole: ``edgeage eval`` makes the
project's canonical crop with its own detector (``--face-crops`` lists the set's ``_face.jpg``
crops instead, which are not the project's crop).
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

SPLITS = ("train", "valid", "test")
EXPECTED = {"train": 4113, "valid": 1500, "test": 1978}


class NotAppaReal(ValueError):
    """The folder is not (a split of) APPA-REAL."""


def _read(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def build(root: Path, splits: tuple[str, ...] = ("test",), face_crops: bool = False,
          allow_partial: bool = False) -> list[dict]:
    base = root / "appa-real-release"
    if not base.is_dir():
        raise NotAppaReal(f"{base}: no such folder (unpack appa-real-release.zip into {root})")
    rows = []
    for split in splits:
        if split not in SPLITS:
            raise NotAppaReal(f"unknown split {split!r} (one of {', '.join(SPLITS)})")
        gt = base / f"gt_avg_{split}.csv"
        if not gt.is_file():
            raise NotAppaReal(f"{gt}: missing")
        cats = {}
        cat_file = base / f"allcategories_{split}.csv"
        if cat_file.is_file():
            cats = {r["file"]: r for r in _read(cat_file) if r.get("file")}
        n_missing = 0
        split_rows = []
        for r in _read(gt):
            try:
                name, real, apparent = r["file_name"], float(r["real_age"]), float(r["apparent_age_avg"])
            except (KeyError, TypeError, ValueError) as e:
                raise NotAppaReal(f"{gt}: unexpected row {r} ({e})") from None
            img = base / split / (name + "_face.jpg" if face_crops else name)
            if not img.is_file():
                n_missing += 1
                continue
            row = {"path": img.relative_to(root).as_posix(), "age": _num(real), "apparent_age": round(apparent, 3),
                   "split": split}
            c = cats.get(name)
            if c:
                row["gender"] = (c.get("gender") or "").strip()
                row["race"] = (c.get("race") or "").strip()
            split_rows.append(row)
        if not allow_partial and (n_missing or len(split_rows) != EXPECTED[split]):
            raise NotAppaReal(f"{base / split}: {len(split_rows)} photos with labels, {n_missing} listed but "
                              f"missing, expected {EXPECTED[split]}; --allow-partial to use it anyway")
        rows += split_rows
    if not rows:
        raise NotAppaReal(f"{base}: no labelled photos found")
    return rows


def _num(x: float):
    return int(x) if float(x).is_integer() else x


def write(rows: list[dict], out: Path) -> None:
    cols = ["path", "age", "apparent_age", "split"]
    cols += [c for c in ("gender", "race") if any(c in r for r in rows)]
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols, restval="")
        w.writeheader()
        w.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path, help="cache folder of the set (holds appa-real-release/)")
    ap.add_argument("--splits", default="test", help="comma list of train, valid, test (default: test)")
    ap.add_argument("--face-crops", action="store_true", help="list the set's _face.jpg crops, not the photos")
    ap.add_argument("--out", type=Path, help="labels file (default: ROOT/labels.csv)")
    ap.add_argument("--allow-partial", action="store_true", help="accept a split with photos missing")
    a = ap.parse_args(argv)
    try:
        rows = build(a.root, tuple(s.strip() for s in a.splits.split(",") if s.strip()), a.face_crops,
                     a.allow_partial)
    except NotAppaReal as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = a.out or a.root / "labels.csv"
    write(rows, out)
    ages = [float(r["age"]) for r in rows]
    print(f"{out}: {len(rows)} images, real ages {min(ages):g}-{max(ages):g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
