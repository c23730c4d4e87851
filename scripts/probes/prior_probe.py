"""Is the default's error on older faces the pull of UTKFace's age prior? (issue 24, session 26)

Beside face-api.js (bench/peer-faceapi) the default is far behind from 50 on, on every set. Its
age-bin distribution estimates p(age | face) under the training split's prior (few faces over 50);
a label-shift readout divides part of that prior out: p'(a) ~ p(a | face) / prior(a) ** tau (prior:
the training split's ages, smoothed by a Gaussian of 3 years), then the expectation. tau 0 is the
shipped readout. Prints the validation bias by decade and, per tau, the validation MAE (all, 20-29, 60-69) and, with --ranges, a set
labelled with age groups (share in the group, years to it):

    python scripts/probes/prior_probe.py [--model mgpnet-xs96] [--data .cache/utk-prepared] \\
        [--ranges ~/.cache/edgeage/datasets/fairface-sample/labels.csv]
"""
from __future__ import annotations

import argparse

import numpy as np


def smoothed_prior(ages: np.ndarray, k: int, age_min: float, sigma: float = 3.0) -> np.ndarray:
    """The training ages' histogram over the k bins, smoothed by a Gaussian of ``sigma`` years
    (the smoothing [train] age_balance uses), as a distribution."""
    from edgeage.train.loop import smoothed_age_histogram

    p = smoothed_age_histogram(np.rint(ages - age_min).astype(int), k, sigma)
    return p / p.sum()


def shifted_ages(logits: np.ndarray, prior: np.ndarray, tau: float, age_min: float) -> np.ndarray:
    """The expectation of softmax(logits) / prior ** tau, renormalised (tau 0: the plain readout)."""
    z = logits.astype(np.float64) - tau * np.log(prior)[None, :]
    e = np.exp(z - z.max(1, keepdims=True))
    return (e / e.sum(1, keepdims=True) * (np.arange(logits.shape[1]) + age_min)).sum(1)


def main() -> None:
    from edgeage.evaluate import load_eval_data
    from edgeage.groups import age_ranges
    from edgeage.metrics import range_metrics
    from edgeage.pipeline import AgeEstimator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mgpnet-xs96")
    ap.add_argument("--data", default=".cache/utk-prepared")
    ap.add_argument("--ranges", help="a labels.csv with age_min / age_max (FairFace): scored per tau as well")
    ap.add_argument("--taus", default="0,0.25,0.5,0.75,1")
    args = ap.parse_args()
    est = AgeEstimator.from_checkpoint(args.model)
    if est.readout.type != "expectation":
        raise SystemExit(f"{args.model}: readout {est.readout.type}, not an expectation over age bins")
    age_min = float(est.readout.age_min)
    prep, train = load_eval_data(est, args.data, "train", progress=False)
    _, val = load_eval_data(est, args.data, "val", progress=False, prep=prep)
    logits = est.outputs(est.inputs(prep.crops[val]))
    prior = smoothed_prior(prep.ages[train].astype(np.float64), logits.shape[1], age_min)
    y = prep.ages[val].astype(np.float64)
    other = None
    if args.ranges:
        rp, ri = load_eval_data(est, args.ranges, "all", progress=False)
        other = est.outputs(est.inputs(rp.crops[ri])), age_ranges(rp, ri, args.ranges)
        if other[1] is None:
            raise SystemExit(f"--ranges {args.ranges}: no age_min / age_max columns")
    a0 = shifted_ages(logits, prior, 0.0, age_min)
    print("validation, shipped readout, mean (estimate - age) by decade: " + ", ".join(
        f"{d}-{d + 9} {np.mean((a0 - y)[m]):+.2f}" for d in range(0, 100, 10) if (m := (y >= d) & (y < d + 10)).any()))
    print("| tau | validation MAE | 20-29 | 60-69 |" + (" set: in range | years to it |" if other else ""))
    print("|---|---|---|---|" + ("---|---|" if other else ""))
    for tau in (float(t) for t in args.taus.split(",")):
        a = shifted_ages(logits, prior, tau, age_min)
        cells = [np.abs(a - y).mean()] + [np.abs(a - y)[(y >= d) & (y < d + 10)].mean() for d in (20, 60)]
        line = f"| {tau:g} | " + " | ".join(f"{c:.3f}" for c in cells) + " |"
        if other:
            r = range_metrics(shifted_ages(other[0], prior, tau, age_min), *other[1])
            line += f" {100 * r['in_range']:.1f} % | {r['mae_to_range']:.2f} |"
        print(line)


if __name__ == "__main__":
    main()
