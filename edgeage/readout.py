"""Turning a model's raw outputs into ages.

The readout is deliberately *outside* the exported network (softmax + expectation in INT8 costs
years of MAE, see README). Every runtime runner and the training loop call ``apply_readout`` with
the spec stored in the manifest, so one definition serves all of them (the Android core mirrors
it in Java and is checked against golden vectors)."""
from __future__ import annotations

import numpy as np
import torch

READOUT_TYPES = ("expectation", "identity", "coral", "mean")


def apply_readout(spec: dict, out) -> torch.Tensor | np.ndarray:
    """Ages (shape [N]) from raw outputs [N, K]. numpy in -> numpy out; torch in -> torch out."""
    if isinstance(out, np.ndarray):
        return apply_readout(spec, torch.from_numpy(np.ascontiguousarray(out, np.float32))).numpy()
    kind = spec["type"]
    out = out.float()
    if kind == "expectation":
        bins = torch.arange(out.shape[1], dtype=out.dtype, device=out.device) + float(spec["age_min"])
        return (torch.softmax(out, dim=1) * bins).sum(dim=1)
    if kind == "identity":
        return out[:, 0]
    if kind == "coral":
        return float(spec["age_min"]) + torch.sigmoid(out).sum(dim=1)
    if kind == "mean":
        return out.mean(dim=1)
    raise ValueError(f"unknown readout type {kind!r}; known: {READOUT_TYPES}")


def argmax_bin(spec: dict, out: np.ndarray) -> np.ndarray:
    """Arg-max age bin where the readout has bins, else the rounded age (for agreement stats)."""
    if spec["type"] == "expectation":
        return np.asarray(out).argmax(axis=1)
    return np.rint(np.asarray(apply_readout(spec, np.asarray(out)))).astype(np.int64)
