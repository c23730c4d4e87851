"""Age-estimation metrics: MAE, CS(t) (share with |error| <= t years), epsilon-error (where a
label std is given), MAE per age decade."""
from __future__ import annotations

import math

import numpy as np


def mae(pred, true) -> float:
    return float(np.mean(np.abs(np.asarray(pred, np.float64) - np.asarray(true, np.float64))))


def cs(pred, true, t: float = 5.0) -> float:
    return float(np.mean(np.abs(np.asarray(pred, np.float64) - np.asarray(true, np.float64)) <= t))


def epsilon_error(pred, mean, std) -> float:
    """1 - exp(-(pred - mean)^2 / (2 std^2)), averaged (ChaLearn LAP)."""
    pred, mean, std = (np.asarray(a, np.float64) for a in (pred, mean, std))
    return float(np.mean(1.0 - np.exp(-((pred - mean) ** 2) / (2.0 * np.maximum(std, 1e-6) ** 2))))


def range_metrics(pred, lo, hi) -> dict:
    """For ages labelled as ranges of whole years (FairFace's and Adience's groups: ``lo..hi``,
    ``hi`` inf for an open group such as 70+): the share of predictions inside the range (a
    prediction p is in it when lo <= p < hi + 1, as an age of 29.6 years is 29) and the mean
    distance in years from the prediction to the range (0 inside). An MAE against the range's
    middle would charge a right answer up to half the range."""
    pred, lo, hi = (np.asarray(a, np.float64) for a in (pred, lo, hi))
    dist = np.maximum(lo - pred, 0.0) + np.maximum(pred - (hi + 1.0), 0.0)
    return {"in_range": float(np.mean(dist == 0)) if len(dist) else math.nan,
            "mae_to_range": float(dist.mean()) if len(dist) else math.nan}


def per_decade(pred, true) -> dict[str, dict]:
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    out = {}
    dec = np.floor(true / 10).astype(int)
    for d in sorted(set(dec.tolist())):
        m = dec == d
        out[f"{d * 10}-{d * 10 + 9}"] = {"n": int(m.sum()), "mae": mae(pred[m], true[m])}
    return out


def summary(pred, true, extra: dict | None = None) -> dict:
    pred = np.asarray(pred, np.float64)
    true = np.asarray(true, np.float64)
    if np.isnan(true).any():  # faces prepared without ages (edgeage prepare --unlabelled)
        from .utils import EdgeAgeError

        raise EdgeAgeError(f"{int(np.isnan(true).sum())} of these {len(true)} faces have no age (an unlabelled "
                           "set): it can teach a student through a teacher ([data] unlabelled), not measure a "
                           "model; evaluate on a labelled set")
    err = pred - true
    res = {"n": int(len(true)), "mae": mae(pred, true), "cs5": cs(pred, true, 5.0),
           "bias": float(err.mean()) if len(err) else math.nan,
           "per_decade": per_decade(pred, true)}
    res.update(extra or {})
    return res
