"""Would an ensemble of the shipped models, with or without flip TTA, beat the default? (issue 24,
session 22)

Every subset of the shipped models (ages averaged), each face read once or also mirrored, clean and
degraded (p = 0.2, seed 0). Validation split only, so the test split stays unread:

    python scripts/probes/ensemble_probe.py [--data .cache/utk-prepared] [--split val] [--also CKPT ...]

``--also`` adds a checkpoint that is not shipped (a candidate) to the models combined (session 26:
``--also edgeage/assets/candidates/mgpnet-xs96-fm.pt``).
"""
from __future__ import annotations

import argparse
import itertools

import numpy as np


def main() -> None:
    from edgeage.checkpoint import shipped_names
    from edgeage.evaluate import degrade_crops, load_eval_data
    from edgeage.pipeline import AgeEstimator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=".cache/utk-prepared")
    ap.add_argument("--split", default="val")
    ap.add_argument("--also", action="append", default=[], help="a checkpoint to add (repeatable)")
    args = ap.parse_args()
    names, ages, prep, y = shipped_names() + args.also, {}, None, None
    for n in names:
        est = AgeEstimator.from_checkpoint(n)
        prep, idx = load_eval_data(est, args.data, args.split, progress=False, prep=prep)
        crops = prep.crops[idx]
        if y is None:
            y = prep.ages[idx].astype(np.float64)
        for cond, c in (("clean", crops), ("degraded", degrade_crops(crops, 0.2, seed=0))):
            for flip in (False, True):
                ages[n, cond, flip] = est.ages(c, flip)
    for cond in ("clean", "degraded"):
        for flip in (False, True):
            for k in range(1, len(names) + 1):
                for combo in itertools.combinations(names, k):
                    a = np.mean([ages[n, cond, flip] for n in combo], 0)
                    print(f"{args.split} {cond:8s} {'flip' if flip else 'once':4s} {' + '.join(combo)}: "
                          f"MAE {np.abs(a - y).mean():.4f}")


if __name__ == "__main__":
    main()
