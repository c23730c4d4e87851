"""Which ages does a model read worse or better than another? (issue 24, session 26)

Validation MAE and mean signed error (estimate - age) by decade of the true age, for each model
given, side by side, as a Markdown table (validation split only, so the test split stays unread):

    python scripts/probes/decade_probe.py MODEL [MODEL ...] [--data .cache/utk-prepared] [--split val]
"""
from __future__ import annotations

import argparse

import numpy as np


def decade_rows(y: np.ndarray, preds: list[np.ndarray]) -> list[list[str]]:
    """One row per decade present in ``y``, then 50+ and all: n and, per model, 'MAE (bias)'."""
    masks = [(f"{d}-{d + 9}", (y >= d) & (y < d + 10)) for d in range(0, int(y.max()) + 10, 10)]
    masks = [(k, m) for k, m in masks if m.any()] + [("50+", y >= 50), ("all", np.ones_like(y, bool))]
    return [[k, str(int(m.sum()))] + [f"{np.abs(p - y)[m].mean():.3f} ({(p - y)[m].mean():+.2f})" for p in preds]
            for k, m in masks if m.any()]


def main() -> None:
    from edgeage.evaluate import load_eval_data
    from edgeage.pipeline import AgeEstimator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--data", default=".cache/utk-prepared")
    ap.add_argument("--split", default="val")
    args = ap.parse_args()
    prep, y, preds = None, None, []
    for m in args.models:
        est = AgeEstimator.from_checkpoint(m)
        prep, idx = load_eval_data(est, args.data, args.split, progress=False, prep=prep)
        y = prep.ages[idx].astype(np.float64)
        preds.append(est.ages(prep.crops[idx], False))
    print(f"{args.split} split, MAE (mean estimate - age) by decade of the true age:\n")
    print("| decade | n | " + " | ".join(f"`{m}`" for m in args.models) + " |")
    print("|---|---|" + "---|" * len(args.models))
    for row in decade_rows(y, preds):
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
