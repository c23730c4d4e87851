"""Quantization-aware fine-tuning with the training loop (``loop.train(model=...)``): the loop's
augmentation and degradation model, loss, optimiser and schedule, on the checkpoint's own split.

The fake-quantized model is either a PT2E GraphModule (torch.export + prepare_qat_pt2e: train /
eval mode switch through torchao's ``move_exported_model_to_train/eval``, since ``.train()``
does nothing on an exported graph) or an NNCF-wrapped nn.Module. ``QATModel`` gives either what
the loop reads from a model: ``config``, ``head.spec`` / ``head.kind`` (not a submodule: the
head's weights live inside the quantized graph) and ``readout``."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn as nn

from edgeage.manifest import Manifest
from edgeage.readout import apply_readout
from edgeage.utils import EdgeAgeError

from .recipes import Recipe


class QATModel(nn.Module):
    def __init__(self, qat: nn.Module, float_model: nn.Module):
        super().__init__()
        self.qat = qat
        self.pt2e = isinstance(qat, torch.fx.GraphModule)
        self.config = dict(float_model.config)
        self.head = SimpleNamespace(spec=float_model.head.spec, kind=float_model.head.kind)

    def train(self, mode: bool = True):
        self.training = mode
        if self.pt2e:
            from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

            (move_exported_model_to_train if mode else move_exported_model_to_eval)(self.qat)
        else:
            self.qat.train(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pt2e and x.shape[0] == 1:  # the exported graph's symbolic batch starts at 2
            return self.qat(x.expand(2, *x.shape[1:]))[:1]
        return self.qat(x)

    def readout(self, out: torch.Tensor) -> torch.Tensor:
        return apply_readout(self.head.spec, out)


DISTILL_ALPHA = 1.0


def qat_recipe(manifest: Manifest, epochs: int, lr: float | None, distill_alpha: float = DISTILL_ALPHA) -> Recipe:
    """The checkpoint's own recipe, shortened: ``epochs`` at 5 % of its LR (or ``lr``), no EMA or
    warm-up. ``distill_alpha`` > 0: the loss is (1 - alpha) * the label loss + alpha * KL to the
    float model's age-bin distribution (T = 1) on the same degraded batch, so the INT8 model is
    pulled towards the float model it is checked against, image by image (not only in MAE). The
    default 1.0 uses no labels: on the shipped model's ExecuTorch QAT it kept the largest
    single-face change at 7 years where 0 and 0.5 left 15 and 21 (a face with a bimodal float
    output)."""
    from .recipes import load_recipe

    if not 0.0 <= distill_alpha <= 1.0:
        raise EdgeAgeError(f"--distill-alpha {distill_alpha}: use a weight in [0, 1]")
    recorded = manifest.training.recipe
    recipe = Recipe.from_dict(recorded, "the checkpoint's recipe") if recorded else load_recipe("mgpnet-t")
    return recipe.replace(
        train=dict(epochs=int(epochs), ema_decay=0.0, warmup_epochs=0.0, num_workers=0,
                   lr=float(lr) if lr else recipe.train.lr * 0.05),
        distill=dict(teacher="", mode="online", alpha=float(distill_alpha), temperature=1.0),
        model={"name": manifest.model.name})  # recorded only: the loop trains the given model


def qat_finetune(prepared: nn.Module, float_model: nn.Module, manifest: Manifest, qd, out, epochs: int = 2,
                 lr: float | None = None, max_steps: int | None = None, progress=print,
                 distill_alpha: float = DISTILL_ALPHA) -> dict:
    """Train ``prepared`` (in place) with ``loop.train``; ``qd`` is ``quantize.QuantData`` (the
    checkpoint's verified split). ``max_steps`` caps the optimiser steps per epoch (a random
    subset of the training split). Returns a summary with the loop's history."""
    from . import loop

    recipe = qat_recipe(manifest, epochs, lr, distill_alpha)
    parts = dict(qd.parts)
    bs = recipe.train.batch_size
    if max_steps:
        n = min(len(parts["train"]), bs * int(max_steps))
        parts["train"] = np.sort(np.random.default_rng(0).choice(parts["train"], n, replace=False))
    if len(parts["train"]) < bs:
        bs = max(2, len(parts["train"]))
        recipe = recipe.replace(train={"batch_size": bs})
    wrapper = QATModel(prepared, float_model)
    before = {k: v.detach().clone() for k, v in wrapper.named_parameters()}
    res = loop.train(recipe, out, progress=bool(progress), model=wrapper,
                     data=(qd.prep, parts, manifest.training.split),
                     teacher_model=float_model if distill_alpha > 0 else None)
    losses = [h["train_loss"] for h in res["history"]]
    if not all(math.isfinite(v) for v in losses):
        raise EdgeAgeError(f"QAT diverged: training losses {losses}")
    changed = sum(int(not torch.equal(before[k], v.detach())) for k, v in wrapper.named_parameters())
    wrapper.eval()
    return {"epochs": int(epochs), "lr": recipe.train.lr, "batch_size": bs,
            "distill_from_float": {"alpha": float(distill_alpha), "temperature": 1.0} if distill_alpha > 0 else None,
            "train_images_per_epoch": int(len(parts["train"])), "steps_per_epoch": int(len(parts["train"]) // bs),
            "params_changed": changed, "params": len(before),
            "history": [{k: h.get(k) for k in ("epoch", "train_loss", "val_mae", "epoch_s")} for h in res["history"]]}
