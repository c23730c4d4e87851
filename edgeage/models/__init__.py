"""Model registry, after torchvision's ``register_model`` / ``get_model``.

    from edgeage.models import create, list_models
    net = create("mgpnet-t", head="sord")

Every model is an ``AgeModel``: ``forward(x)`` returns the head's raw outputs (logits; what an
exported artifact computes) and ``readout(out)`` turns them into ages (kept separate so the
softmax-expectation stays in float post-processing on every target). ``model.config`` holds
everything needed to rebuild it; the checkpoint's manifest stores it.
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_DEFAULTS: dict[str, dict] = {}


def register_model(name: str, **defaults):
    """Decorator: register a builder ``fn(**cfg) -> AgeModel`` under ``name`` with default config."""

    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = fn
        _DEFAULTS[name] = dict(defaults)
        return fn

    return deco


def list_models() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def default_config(name: str) -> dict:
    _load_builtin()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}")
    return dict(_DEFAULTS[name])


def create(name: str, **cfg) -> nn.Module:
    """Build a registered model. Unknown keys raise, naming the valid ones."""
    cfg_full = default_config(name)
    unknown = set(cfg) - set(cfg_full)
    if unknown:
        raise KeyError(
            f"unknown option(s) {sorted(unknown)} for model {name!r}; valid: {sorted(cfg_full)}"
        )
    cfg_full.update(cfg)
    model = _REGISTRY[name](**cfg_full)
    model.name = name
    model.config = {"name": name, **cfg_full}
    return model


def from_config(config: dict) -> nn.Module:
    cfg = dict(config)
    name = cfg.pop("name")
    return create(name, **cfg)


def shrink(model: nn.Module, layers: dict[str, list[int]]) -> nn.Module:
    """Give the named Conv2d / BatchNorm2d / Linear layers their recorded [out, in] widths, with
    zero weights (load the checkpoint's next). How a pruned checkpoint is rebuilt: the manifest's
    ``model.pruned.layers`` records every changed layer (``edgeage prune`` writes it)."""
    mods = dict(model.named_modules())
    for name, (out, inp) in layers.items():
        m = mods[name]
        for key, t in [*m.named_parameters(recurse=False), *m.named_buffers(recurse=False)]:
            if t.dim():
                new = t.new_zeros((out, inp // getattr(m, "groups", 1), *t.shape[2:])[:t.dim()])
                setattr(m, key, nn.Parameter(new) if isinstance(t, nn.Parameter) else new)
        for attr, v in (("out_channels", out), ("in_channels", inp), ("num_features", out),
                        ("out_features", out), ("in_features", inp)):
            if hasattr(m, attr):
                setattr(m, attr, v)
    return model


def _load_builtin() -> None:
    from . import alresnet, faceres, mgpnet, mivolo, resnet, swinface  # noqa: F401  (registration side effects)
