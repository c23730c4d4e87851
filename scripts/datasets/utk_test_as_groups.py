"""The UTKFace test split labelled with another set's age groups, for a like-for-like comparison.

A share "in range" means little on its own: it depends on how wide the groups are. This writes a
labels.csv of the shipped default's UTKFace test split (the split its manifest records, checked
against its test_hash) with each face's FairFace age group as ``age_min`` / ``age_max``, so
``edgeage eval`` (and ``cross_eval.py``) score UTKFace the way they score FairFace:

    python scripts/datasets/utk_test_as_groups.py ../shared/datasets/utkface /tmp/utk-test-groups.csv
    python scripts/datasets/cross_eval.py utk-test-fairface-groups /tmp/utk-test-groups.csv --by age_group

Paths in the CSV are absolute (the images stay where they are); ``age`` is the true age.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def fairface_groups():
    spec = importlib.util.spec_from_file_location("datasets_fairface", HERE / "fairface.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.GROUPS, mod.group_range


def group_of(age: float, groups, group_range) -> str:
    for g in groups:
        lo, hi = group_range(g)
        if age >= lo and (hi is None or age < hi + 1):
            return g
    raise ValueError(f"age {age} is in none of the groups {groups}")


def test_split_rows(utk: Path, split_rec: dict) -> list[dict]:
    """The test part of ``split_rec`` (a manifest's training.split) over the UTKFace folder ``utk``,
    each face with its FairFace group; stops if the folder is not the one the split was made on."""
    from edgeage.data import discover, list_hash, split

    samples, _ = discover(utk)
    if list_hash(samples) != split_rec["list_hash"]:
        raise SystemExit(f"{utk}: not the data the shipped model's split was made on (file-list hash differs)")
    names = [os.path.basename(s.path) for s in samples]
    idx = split(names, split_rec["seed"], split_rec["val"], split_rec["test"])["test"]
    if hashlib.sha256("\n".join(names[i] for i in idx).encode()).hexdigest() != split_rec["test_hash"]:
        raise SystemExit(f"{utk}: the test split does not match the manifest's test_hash")
    groups, group_range = fairface_groups()
    rows = []
    for i in idx:
        s = samples[i]
        g = group_of(s.age, groups, group_range)
        lo, hi = group_range(g)
        rows.append({"path": str(Path(s.path).resolve()), "age": f"{s.age:g}", "age_min": lo,
                     "age_max": "" if hi is None else hi, "age_group": g})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("utk", type=Path, help="the UTKFace folder the shipped models were trained on")
    ap.add_argument("out", type=Path, help="labels.csv to write")
    ap.add_argument("--model", default=None, help="whose split (default: the shipped default)")
    a = ap.parse_args(argv)
    from edgeage.checkpoint import model_path, read_checkpoint

    rows = test_split_rows(a.utk, read_checkpoint(model_path(a.model))["manifest"].training.split)
    with open(a.out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"{a.out}: {len(rows)} test faces of {a.utk} with FairFace age groups")
    return 0


if __name__ == "__main__":
    sys.exit(main())
