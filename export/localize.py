"""Drift localisation: compare the float model's intermediate activations (forward hooks on
named modules) with the runtime's (``Runner.intermediates``: torch module name -> array), in
execution order, and name the layers where the relative error first jumps.

Runners map their graph nodes to torch module names with ``edgeage.targets.scopes.scope_outputs``."""
from __future__ import annotations

import numpy as np

JUMP_FACTOR = 4.0   # a layer "jumps" when its relative error exceeds the worst before it by this
REL_FLOOR = 1e-5    # ... and this (float32 round-off is ~1e-7)


def float_intermediates(model, x) -> dict[str, np.ndarray]:
    """Outputs of every named submodule that returns one tensor, in execution order."""
    import torch
    acts: dict[str, np.ndarray] = {}

    def hook(name):
        def record(_module, _inputs, out):  # clone: a later in-place op (ReLU) may overwrite it
            if isinstance(out, torch.Tensor) and name not in acts:
                acts[name] = out.detach().clone().numpy()
        return record

    hooks = [m.register_forward_hook(hook(name)) for name, m in model.named_modules() if name]
    try:
        with torch.no_grad():
            model(torch.as_tensor(x))
    finally:
        for h in hooks:
            h.remove()
    return acts


def compare(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict:
    """Per-layer max |diff| and relative error (max |diff| / max |float|), in the float model's
    execution order, and the layers where the relative error jumps."""
    rows, worst, jumps = [], REL_FLOOR, []
    for name, a in ref.items():
        b = got.get(name)
        if b is None or np.shape(b) != a.shape:
            continue
        d = float(np.max(np.abs(a.astype(np.float64) - np.asarray(b, np.float64)))) if a.size else 0.0
        rel = d / max(float(np.max(np.abs(a))) if a.size else 0.0, 1e-12)
        row = {"layer": name, "max_abs_diff": d, "rel_error": rel, "jump": None}
        if rel > JUMP_FACTOR * worst:
            row["jump"] = rel / worst
            jumps.append(name)
        worst = max(worst, rel)
        rows.append(row)
    return {"layers": rows, "compared": len(rows), "float_layers": len(ref), "jumps": jumps,
            "first_jump": jumps[0] if jumps else None, "jump_factor": JUMP_FACTOR, "rel_floor": REL_FLOOR,
            "rel_error": "max |target - float| / max |float| per layer"}


def localize(model, runner, x: np.ndarray) -> dict:
    if not runner.has_intermediates:
        return {"supported": False, "reason": f"the {runner.spec['name']} runner has no intermediates()"}
    res = compare(float_intermediates(model, x), runner.intermediates(x))
    return {"supported": True, "n_images": int(len(x)), **res}
