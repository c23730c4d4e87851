"""How much age does a backbone already know? A ridge regression from its frozen, pooled features
to age, fitted on the training split and scored on validation (issue 24, session 27: dlib's
face-recognition weights before any age training, against the same network at random weights):

    python scripts/probes/feature_probe.py runs/pretrained/faceres29.pt --splits-from runs/faceres29/best.pt
    python scripts/probes/feature_probe.py --random faceres29 --splits-from runs/faceres29/best.pt

``--splits-from`` names a trained checkpoint whose manifest records the split and preprocessing (a
converted, untrained checkpoint records none). The test split is never read.
"""
from __future__ import annotations

import argparse

import numpy as np


def features(model, est, crops: np.ndarray) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(crops), 256):
            out.append(model.backbone(torch.from_numpy(est.inputs(crops[i:i + 256]))).mean((2, 3)).numpy())
    return np.concatenate(out).astype(np.float64)


def ridge_mae(a: np.ndarray, ya: np.ndarray, b: np.ndarray, yb: np.ndarray, lam: float) -> float:
    mu, sd = a.mean(0), a.std(0) + 1e-6
    a1 = np.c_[(a - mu) / sd, np.ones(len(a))]
    b1 = np.c_[(b - mu) / sd, np.ones(len(b))]
    w = np.linalg.solve(a1.T @ a1 + lam * np.eye(a1.shape[1]), a1.T @ ya)
    return float(np.abs(b1 @ w - yb).mean())


def main() -> None:
    import torch

    from edgeage.checkpoint import load_model
    from edgeage.evaluate import load_eval_data
    from edgeage.models import create
    from edgeage.pipeline import AgeEstimator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?", help="the backbone to probe")
    ap.add_argument("--random", metavar="MODEL", help="probe a registered model at random weights (seed 0) instead")
    ap.add_argument("--splits-from", required=True, help="a trained checkpoint: its split and preprocessing")
    ap.add_argument("--data", default=".cache/utk-prepared")
    args = ap.parse_args()
    if bool(args.checkpoint) == bool(args.random):
        ap.error("give a checkpoint or --random MODEL")
    est = AgeEstimator.from_checkpoint(args.splits_from)
    if args.random:
        torch.manual_seed(0)
        model = create(args.random, input_size=int(est.manifest.input_size))
    else:
        model, _ = load_model(args.checkpoint)
    model.eval()
    feats, ages, prep = {}, {}, None
    for split in ("train", "val"):
        prep, idx = load_eval_data(est, args.data, split, progress=False, prep=prep)
        feats[split] = features(model, est, prep.crops[idx])
        ages[split] = prep.ages[idx].astype(np.float64)
    base = float(np.abs(ages["val"] - np.median(ages["train"])).mean())
    print(f"{args.checkpoint or args.random + ' (random weights)'}: {feats['train'].shape[1]} features, "
          f"{len(ages['train'])} training / {len(ages['val'])} validation faces; "
          f"the training median alone: validation MAE {base:.3f}")
    for lam in (1.0, 10.0, 100.0, 1000.0):
        print(f"  ridge lambda {lam:g}: validation MAE "
              f"{ridge_mae(feats['train'], ages['train'], feats['val'], ages['val'], lam):.3f}")


if __name__ == "__main__":
    main()
