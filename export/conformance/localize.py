"""Drift localisation: compare the float model's intermediate activations (forward hooks on
named modules) with the runtime's (``Runner.intermediates``: torch module name -> array), in
execution order, and name the layers where the relative error first jumps.

Runners map their graph nodes to torch module names with ``edgeage.targets.scopes.scope_outputs``."""
from __future__ import annotations

import numpy as np

from edgeage.backend import TargetSpec

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
        return {"supported": False, "reason": f"the {runner.spec.name} runner has no intermediates()"}
    res = compare(float_intermediates(model, x), runner.intermediates(x))
    return {"supported": True, "n_images": int(len(x)), **res}


def prefix_points(model) -> list[tuple[str, object]]:
    """(module name, prefix module) for each cut point of a stem + stages backbone: the stem, then
    the stem and each further stage. [] for models without that structure."""
    import torch.nn as nn

    bb = getattr(model, "backbone", None)
    if bb is None or not isinstance(getattr(bb, "stem", None), nn.Module) or \
            not isinstance(getattr(bb, "stages", None), nn.Sequential):
        return []
    mods = [("backbone.stem", bb.stem)] + [(f"backbone.stages.{i}", s) for i, s in enumerate(bb.stages)]
    return [(name, nn.Sequential(*[m for _, m in mods[:k + 1]]).eval()) for k, (name, _) in enumerate(mods)]


def localize_by_prefixes(model, spec: TargetSpec, precision: str, x: np.ndarray, calib=None, threads: int = 1) -> dict:
    """Drift localisation for runtimes that run the whole graph as one fused program, where no
    intermediate activation can be read (ExecuTorch: one XNNPACK segment). Each prefix of the
    model (the stem; the stem and stage 1; ...) is exported to the same target and precision in
    a temporary folder, run on the runtime, and its output compared with the float prefix's:
    where the drift appears, at stage granularity. INT8 prefixes are calibrated anew on the same
    calibration images, so their quantization parameters can differ slightly from the whole
    model's; the last row (the whole backbone) is compared with the float backbone."""
    import tempfile
    from pathlib import Path

    import torch

    from edgeage.backend import describe
    from edgeage.models.deploy import target_deploy_form
    from edgeage.targets.spec import load_module

    points = prefix_points(model)
    if not points:
        return {"supported": False, "reason": f"{type(model).__name__} has no stem + stages backbone to cut"}
    exporter = describe(load_module(spec.exporter, spec), spec.exporter).module
    runner_cls = load_module(spec.runner, spec).Runner
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    ref, got = {}, {}
    for name, pre in points:
        with torch.no_grad():
            ref[name] = pre(xt).numpy()
        with tempfile.TemporaryDirectory(prefix="edgeage-localize-") as tmp:
            with torch.no_grad():
                files = exporter.export(target_deploy_form(pre, spec), xt[:2], Path(tmp), precision, spec, calib)
            r = runner_cls(Path(tmp), prefix_manifest(Path(tmp), files, spec, precision), spec, threads)
            got[name] = np.concatenate([np.asarray(r.run(x[i:i + 1])) for i in range(len(x))])
            del r
    res = compare(ref, got)
    return {"supported": True, "method": "prefixes: each prefix exported and run on the target",
            "n_images": int(len(x)), **res}


def prefix_manifest(folder, files: list[str], spec, precision: str):
    """The manifest a runner gets for an exported backbone prefix: its files (with sha256 and
    size) for ``spec`` at ``precision``; the prefix's raw outputs are compared, so no readout or
    preprocessing of its own is read (the defaults, ``identity``)."""
    from pathlib import Path

    from edgeage.manifest import Manifest
    from edgeage.utils import sha256_file

    folder = Path(folder)
    return Manifest.model_validate({
        "model": {"name": "backbone-prefix"}, "readout": {"type": "identity"},
        "preprocess": {"crop": {}, "normalize": {}},
        "artifact": {"target": spec.name, "precision": precision,
                     "files": [{"name": f, "sha256": sha256_file(folder / f), "size": (folder / f).stat().st_size}
                               for f in files]}})
