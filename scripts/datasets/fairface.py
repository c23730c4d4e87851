"""Build labels.csv for a local copy of FairFace images with their age groups.

FairFace (Kärkkäinen & Joo, WACV 2021; CC BY 4.0) labels age as one of nine groups: 0-2, 3-9,
10-19, 20-29, 30-39, 40-49, 50-59, 60-69, 70+. Two layouts are read:

- the authors' release: ``ROOT/fairface_label_val.csv`` (or ``_train``) with columns ``file``
  (e.g. ``val/1.jpg``), ``age``, ``gender``, ``race``, and the images beside it;
- the 540-image balanced sample of ``thlaiquid-ai/demographic-test-images`` (30 images per age
  group and gender from FairFace's train split): ``ROOT/ground_truth.json`` (a list of
  ``{"filename", "age", "gender"}``) and ``ROOT/images/``.

This script never downloads anything (see docs/datasets.md, "FairFace"). It writes
``ROOT/labels.csv`` with ``path, age, age_min, age_max, age_group, gender[, race]``: ``age_min`` and
``age_max`` are the group's whole years (``age_max`` empty for 70+), which ``edgeage eval`` reads
as an age range (the share of predictions inside it; ``--by age_group`` per group). ``age`` is
the group's middle (75 for 70+), only there because every labels.csv has one: an MAE against it is
not an age error.

    python scripts/datasets/fairface.py ~/.cache/edgeage/datasets/fairface-sample
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

GROUPS = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")
OPEN_MIDDLE = 75  # the nominal age of "more than 70"


class NotFairFace(ValueError):
    """The folder is not a FairFace copy this script knows."""


def group_range(group: str) -> tuple[int, int | None]:
    """(age_min, age_max) of a FairFace age group; age_max None for 70+."""
    if group not in GROUPS:
        raise NotFairFace(f"age group {group!r} is not one of FairFace's ({', '.join(GROUPS)})")
    if group.endswith("+"):
        return int(group[:-1]), None
    lo, hi = (int(x) for x in group.split("-"))
    return lo, hi


def row(path: str, group: str, gender: str, race: str | None = None) -> dict:
    lo, hi = group_range(group)
    middle = OPEN_MIDDLE if hi is None else (lo + hi + 1) / 2  # years lo..hi span [lo, hi + 1)
    r = {"path": path, "age": f"{middle:g}", "age_min": lo, "age_max": "" if hi is None else hi,
         "age_group": group, "gender": gender.strip().lower()}
    if race is not None:
        r["race"] = race.strip()
    return r


def from_release(root: Path, label_csv: Path) -> list[dict]:
    rows = []
    with open(label_csv, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        need = {"file", "age", "gender"}
        if not need <= set(reader.fieldnames or ()):
            raise NotFairFace(f"{label_csv}: expected columns {sorted(need)}, found {reader.fieldnames}")
        for i, r in enumerate(reader, start=2):
            img = root / r["file"]
            if not img.is_file():
                raise NotFairFace(f"{img}: missing (listed in {label_csv}:{i})")
            rows.append(row(img.relative_to(root).as_posix(), r["age"], r["gender"], r.get("race")))
    return rows


def from_sample(root: Path, gt: Path) -> list[dict]:
    items = json.loads(gt.read_text(encoding="utf-8"))
    if not isinstance(items, list):
        raise NotFairFace(f"{gt}: expected a list of {{filename, age, gender}}")
    rows = []
    for it in items:
        name = str(it.get("filename", ""))
        if not re.fullmatch(r"fairface_\d{4}\.jpg", name):
            raise NotFairFace(f"{gt}: {name!r} is not one of the sample's FairFace files (fairface_NNNN.jpg)")
        img = root / "images" / name
        if not img.is_file():
            raise NotFairFace(f"{img}: missing (listed in {gt})")
        rows.append(row(img.relative_to(root).as_posix(), str(it.get("age")), str(it.get("gender", ""))))
    return rows


def build(root: Path) -> list[dict]:
    for name in ("fairface_label_val.csv", "fairface_label_train.csv"):
        if (root / name).is_file():
            rows = from_release(root, root / name)
            break
    else:
        if not (root / "ground_truth.json").is_file():
            raise NotFairFace(f"{root}: neither fairface_label_val.csv / _train.csv nor ground_truth.json "
                              "(see docs/datasets.md, FairFace)")
        rows = from_sample(root, root / "ground_truth.json")
    if not rows:
        raise NotFairFace(f"{root}: lists no images")
    return rows


def write(rows: list[dict], out: Path) -> None:
    fields = ["path", "age", "age_min", "age_max", "age_group", "gender"] + (["race"] if "race" in rows[0] else [])
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path, help="cache folder of the copy")
    ap.add_argument("--out", type=Path, help="labels file (default: ROOT/labels.csv)")
    a = ap.parse_args(argv)
    try:
        rows = build(a.root)
    except NotFairFace as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = a.out or a.root / "labels.csv"
    write(rows, out)
    counts = {g: sum(r["age_group"] == g for r in rows) for g in GROUPS}
    print(f"{out}: {len(rows)} images; per age group " + ", ".join(f"{g} {n}" for g, n in counts.items() if n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
