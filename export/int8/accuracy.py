"""INT8 accuracy control for backends without their own (PT2E): per-layer sensitivity through
the exporter's ``simulate``, then the most sensitive layers kept float until the validation MAE
drop holds (NNCF backends use ``nncf.quantize_with_accuracy_control`` inside their export)."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np

from edgeage.backend import Int8Options
from edgeage.manifest import ReadoutSpec
from edgeage.readout import readout_mae

from ..artifact.calibration import QuantData


def quantizable_layers(model) -> list[str]:
    """Conv / Linear module names (the weighted layers every quantizer quantizes)."""
    import torch.nn as nn

    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]


def batched(fn, x: np.ndarray, batch: int = 1) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.concatenate([np.asarray(fn(torch.from_numpy(np.ascontiguousarray(x[i:i + batch])))
                                          .detach().float().numpy()) for i in range(0, len(x), batch)])


def greedy_keep_float(model, example, spec, exporter, opts: Int8Options, qd: QuantData, readout: ReadoutSpec,
                      max_drop: float, float_mae: float, progress=print, candidates: list[str] | None = None) -> dict:
    """Per-layer sensitivity (val MAE with only that layer quantized, through the exporter's
    ``simulate``), then keep the most sensitive layers in float, one more at a time, until the
    fully quantized model's MAE drop is <= max_drop."""
    layers = candidates or quantizable_layers(model)
    calib = Int8Options(calib=opts.calib[:min(len(opts.calib), 64)])

    def drop(ignored: list[str], full_calib: bool = False) -> float:
        o = dataclasses.replace(opts if full_calib else calib, ignored=list(ignored), report={})
        sim = exporter.simulate(copy.deepcopy(model), example, o, spec)
        return readout_mae(readout, batched(sim, qd.val), qd.val_ages) - float_mae

    steps = []
    d = drop([], full_calib=True)
    steps.append({"kept_float": 0, "mae_drop": d})
    if d <= max_drop:
        return {"kept_float": [], "sensitivity": {}, "steps": steps, "mae_drop": d}
    sens = {}
    for i, name in enumerate(layers):
        sens[name] = drop([n for n in layers if n != name])
        progress(f"  sensitivity {i + 1}/{len(layers)} {name}: MAE drop {sens[name]:+.4f}")
    order = sorted(layers, key=lambda n: -sens[n])
    kept = []
    for name in order:
        kept.append(name)
        d = drop(kept, full_calib=True)
        steps.append({"kept_float": len(kept), "layer": name, "mae_drop": d})
        progress(f"  kept {len(kept)} layer(s) float (+{name}): MAE drop {d:+.4f}")
        if d <= max_drop:
            break
    return {"kept_float": kept, "sensitivity": sens, "steps": steps, "mae_drop": d}
