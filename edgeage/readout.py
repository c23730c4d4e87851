"""Turning a model's raw outputs into ages.

The readout is deliberately *outside* the exported network (softmax + expectation in INT8 costs
years of MAE, see README). Every runtime runner, the pipeline and the training loop call
``apply_readout`` with the spec stored in the manifest, so one definition serves all of them
(the Android core mirrors it in Java and is checked against golden vectors). numpy in -> numpy
out (no torch needed: the device side); torch in -> torch out (training, on any device)."""
from __future__ import annotations

import numpy as np

from .manifest import AGE_ESTIMATOR, READOUTS_OF_KIND, ReadoutSpec

READOUT_TYPES = READOUTS_OF_KIND[AGE_ESTIMATOR]  # ages from raw outputs


def _is_torch(out) -> bool:
    return type(out).__module__.startswith("torch")


def as_spec(spec: ReadoutSpec | dict) -> ReadoutSpec:
    """The typed readout spec (``Manifest.readout``, a head's ``spec``); a dict read from JSON is
    checked into one."""
    return spec if isinstance(spec, ReadoutSpec) else ReadoutSpec.model_validate(spec)


def apply_readout(spec: ReadoutSpec | dict, out):
    """Ages (shape [N]) from raw outputs [N, K]; ``spec``: ``Manifest.readout`` or a head's spec."""
    spec = as_spec(spec)
    kind = spec.type
    if kind not in READOUT_TYPES:
        raise ValueError(f"unknown readout type {kind!r}; known: {READOUT_TYPES}")
    if _is_torch(out):
        return _torch_readout(spec, out)
    out = np.asarray(out, np.float32)
    if kind == "expectation":
        bins = np.arange(out.shape[1], dtype=np.float32) + np.float32(spec.age_min)
        e = np.exp(out - out.max(axis=1, keepdims=True))
        return ((e / e.sum(axis=1, keepdims=True)) * bins).sum(axis=1).astype(np.float32)
    if kind == "identity":
        return out[:, 0].copy()
    if kind == "coral":
        return (np.float32(spec.age_min) + (1.0 / (1.0 + np.exp(-out))).sum(axis=1)).astype(np.float32)
    return out.mean(axis=1).astype(np.float32)


def _torch_readout(spec: ReadoutSpec, out):
    import torch

    kind = spec.type
    out = out.float()
    if kind == "expectation":
        bins = torch.arange(out.shape[1], dtype=out.dtype, device=out.device) + float(spec.age_min)
        return (torch.softmax(out, dim=1) * bins).sum(dim=1)
    if kind == "identity":
        return out[:, 0]
    if kind == "coral":
        return float(spec.age_min) + torch.sigmoid(out).sum(dim=1)
    return out.mean(dim=1)


def argmax_bin(spec: ReadoutSpec | dict, out: np.ndarray) -> np.ndarray:
    """Arg-max age bin where the readout has bins, else the rounded age (for agreement stats)."""
    spec = as_spec(spec)
    if spec.type == "expectation":
        return np.asarray(out).argmax(axis=1)
    return np.rint(np.asarray(apply_readout(spec, np.asarray(out)))).astype(np.int64)


def readout_mae(readout, out: np.ndarray, ages: np.ndarray) -> float:
    return float(np.mean(np.abs(apply_readout(readout, np.asarray(out, np.float32)).astype(np.float64) - ages)))
