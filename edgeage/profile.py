"""Model size: parameters and multiply-accumulates (conv, linear, conv1d) by forward hooks."""
from __future__ import annotations

import torch
import torch.nn as nn


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, input_size: int = 64) -> int:
    """MACs of one forward pass at batch 1 (convolutions and linear layers).

    Counted over the whole output of every call, so a layer that a head runs on an internally
    expanded batch (DAA's decoder sees one styled map per reference age) counts once per row."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, (nn.Conv2d, nn.Conv1d)):
            total += out.numel() * mod.weight[0].numel()  # (cin / groups) * kernel per output
        elif isinstance(mod, nn.Linear):
            total += mod.in_features * out.numel()

    hooks = [m.register_forward_hook(hook) for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.Conv1d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, 3, input_size, input_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return int(total)
