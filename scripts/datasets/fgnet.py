"""Build labels.csv for a local copy of the FG-NET Aging Database.

FG-NET (1,002 full photos, 82 people, ages 0-69) encodes subject and age in each file name:
``078A11.JPG`` is person 78 at age 11; a trailing letter (``010A07a.JPG``) separates several
photos of one person at one age. The case of ``A`` and of the extension varies between copies.

This script never downloads anything. Get the set yourself (see docs/datasets.md, "FG-NET"),
unpack it so that ``ROOT/FGNET/images/`` holds the photos, then:

    python scripts/datasets/fgnet.py ~/.cache/edgeage/datasets/fgnet

It writes ``ROOT/labels.csv`` (path, age, subject), with paths relative to ROOT, which
``edgeage eval --data ROOT/labels.csv`` reads. The photos are full scans, not face crops: eval's
default crop policy (detect) makes the project's canonical crop from each one.

All-Age-Faces (AAF) is withheld from this project, and its names look like FG-NET's but have a
5-digit person number (``00001A02.jpg``). Such a name, or any other name that is not FG-NET's,
stops the script. So does a copy that is not the whole set (1,002 photos, 82 people), unless
``--allow-partial`` is given.
"""
from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

NAME = re.compile(r"^(\d{3})a(\d{2})([a-z]?)\.jpe?g$", re.IGNORECASE)
AAF_NAME = re.compile(r"^\d{5}a\d{2}\.jpe?g$", re.IGNORECASE)
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
EXPECTED = {"images": 1002, "subjects": 82, "min_age": 0, "max_age": 69}


class NotFGNet(ValueError):
    """The folder is not (all of) FG-NET."""


def parse_name(name: str) -> tuple[int, int]:
    """(subject, age) of an FG-NET file name; NotFGNet for anything else (AAF names included)."""
    if AAF_NAME.match(name):
        raise NotFGNet(f"{name}: a 5-digit person number is All-Age-Faces' naming, not FG-NET's; "
                       "AAF is withheld from this project: do not use this copy")
    m = NAME.match(name)
    if not m:
        raise NotFGNet(f"{name}: not an FG-NET name (SSSaAA[x].JPG, e.g. 078A11.JPG)")
    return int(m.group(1)), int(m.group(2))


def build(root: Path, images: str = "FGNET/images", allow_partial: bool = False) -> list[dict]:
    """Rows (path relative to root, age, subject) of the FG-NET photos under root/images."""
    folder = root / images
    if not folder.is_dir():
        raise NotFGNet(f"{folder}: no such folder (unpack FGNET.zip into {root})")
    rows = []
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.suffix.lower() not in IMAGE_EXTS:
            continue
        subject, age = parse_name(p.name)
        rows.append({"path": p.relative_to(root).as_posix(), "age": age, "subject": f"{subject:03d}"})
    if not rows:
        raise NotFGNet(f"{folder}: holds no images")
    got = summary(rows)
    if not allow_partial:
        off = {k: (got[k], v) for k, v in EXPECTED.items() if got[k] != v}
        if off:
            raise NotFGNet(f"{folder}: not the whole FG-NET set ("
                           + ", ".join(f"{k} {a}, expected {b}" for k, (a, b) in off.items())
                           + "); --allow-partial to use it anyway")
    return rows


def summary(rows: list[dict]) -> dict:
    ages = [r["age"] for r in rows]
    return {"images": len(rows), "subjects": len({r["subject"] for r in rows}),
            "min_age": min(ages), "max_age": max(ages)}


def write(rows: list[dict], out: Path) -> None:
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["path", "age", "subject"])
        w.writeheader()
        w.writerows(rows)


def folds(rows: list[dict], k: int) -> list[list[dict]]:
    """Subject-disjoint folds: the sorted subjects dealt round-robin into ``k`` folds, each
    subject's photos all in one fold (FG-NET repeats people at many ages, so an image split would
    test on faces of people the model was trained on)."""
    subjects = sorted({r["subject"] for r in rows})
    fold_of = {s: i % k for i, s in enumerate(subjects)}
    return [[r for r in rows if fold_of[r["subject"]] == i] for i in range(k)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path, help="cache folder of the set (holds FGNET/images/)")
    ap.add_argument("--images", default="FGNET/images", help="photo folder, relative to root")
    ap.add_argument("--out", type=Path, help="labels file (default: ROOT/labels.csv)")
    ap.add_argument("--allow-partial", action="store_true",
                    help="accept a copy with fewer photos or people than the whole set")
    ap.add_argument("--folds", type=int, default=0, metavar="K",
                    help="also write K subject-disjoint folds, labels-fold1-of-K.csv ... beside --out "
                         "(train on some with `edgeage train --extra-data`, measure on the others)")
    a = ap.parse_args(argv)
    if a.folds == 1 or a.folds < 0:
        ap.error(f"--folds {a.folds}: give 2 or more (0: no folds)")
    try:
        rows = build(a.root, a.images, a.allow_partial)
    except NotFGNet as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = a.out or a.root / "labels.csv"
    write(rows, out)
    s = summary(rows)
    print(f"{out}: {s['images']} images, {s['subjects']} subjects, ages {s['min_age']}-{s['max_age']}")
    for i, part in enumerate(folds(rows, a.folds) if a.folds else []):
        f = out.with_name(f"{out.stem}-fold{i + 1}-of-{a.folds}.csv")
        write(part, f)
        s = summary(part)
        print(f"{f}: {s['images']} images, {s['subjects']} subjects, ages {s['min_age']}-{s['max_age']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
