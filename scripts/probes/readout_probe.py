"""Does another readout of the same age-bin distribution lower MAE? (issue 24, session 21)

The expectation over bins (the paper's readout) minimises squared error; the median of the
distribution minimises absolute error, and a monotone correction of the expectation (fitted on one
half of a split, scored on the other) removes a bias towards the mean age. Validation split only:

    python scripts/probes/readout_probe.py MODEL [--data .cache/utk-prepared] [--split val]
"""
from __future__ import annotations

import argparse

import numpy as np


def median_readout(p: np.ndarray, age_min: float) -> np.ndarray:
    """The median of each row's distribution, each bin spread evenly over [a - 0.5, a + 0.5]."""
    c = np.cumsum(p, 1)
    k = (c < 0.5).sum(1)
    rows = np.arange(len(k))
    prev = np.where(k > 0, c[rows, np.maximum(k - 1, 0)], 0.0)
    return age_min + k - 0.5 + (0.5 - prev) / p[rows, k]


def halves_correction(mean: np.ndarray, y: np.ndarray, reps: int = 20, knots: int = 10) -> tuple[float, float]:
    """MAE before / after a piecewise-linear correction of ``mean`` fitted on random halves (median
    residual per quantile bin) and scored on the other half, averaged over ``reps`` draws."""
    rng = np.random.default_rng(0)
    res = []
    for _ in range(reps):
        perm = rng.permutation(len(y))
        a, b = perm[: len(y) // 2], perm[len(y) // 2:]
        edges = np.quantile(mean[a], np.linspace(0, 1, knots + 1))
        corr = [np.median((y[a] - mean[a])[(mean[a] >= lo) & (mean[a] <= hi)]) for lo, hi in zip(edges[:-1], edges[1:])]
        adj = mean[b] + np.interp(mean[b], (edges[:-1] + edges[1:]) / 2, corr)
        res.append((np.abs(mean[b] - y[b]).mean(), np.abs(adj - y[b]).mean()))
    r = np.mean(res, 0)
    return float(r[0]), float(r[1])


def main() -> None:
    from edgeage.evaluate import load_eval_data
    from edgeage.pipeline import AgeEstimator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--data", default=".cache/utk-prepared")
    ap.add_argument("--split", default="val")
    args = ap.parse_args()
    est = AgeEstimator.from_checkpoint(args.model)
    if est.manifest.readout.type != "expectation":
        raise SystemExit(f"{args.model}: readout {est.manifest.readout.type!r}, not an age-bin distribution")
    prep, idx = load_eval_data(est, args.data, args.split, progress=False)
    crops, y = prep.crops[idx], prep.ages[idx].astype(np.float64)
    out = np.concatenate([est.outputs(est.inputs(crops[i:i + 256])) for i in range(0, len(crops), 256)])
    p = np.exp(out - out.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    age_min = float(est.manifest.readout.age_min)
    mean = (p * (np.arange(p.shape[1]) + age_min)).sum(1)
    med = median_readout(p, age_min)
    raw, fixed = halves_correction(mean, y)
    print(f"{args.model} ({args.split}, n = {len(y)}): expectation {np.abs(mean - y).mean():.4f}, "
          f"median {np.abs(med - y).mean():.4f}; halves: expectation {raw:.4f}, corrected {fixed:.4f}")


if __name__ == "__main__":
    main()
