"""Several recipes trained side by side on one augmented stream (one GPU, or the CPU).

The degradation model runs per image on the CPU (blur, resampling, noise, JPEG, ...): on a GPU
it, not the model, sets the pace (~1,800 images/s from 14 loader workers on the H100 lease).
Models that share the augmentation recipe can share its output: one loader, and every batch
goes through each model's own optimiser step, at its own input size, loss, distillation targets,
learning-rate schedule and EMA. Each run writes the same folder ``edgeage train`` writes
(best.pt, last.pt, metrics.json, curve.png), through the same steps of ``train.loop``.

``budget_s``: the epoch count is set after the first epoch (pure warm-up when the recipes'
``warmup_epochs`` >= 1, so its learning rates do not depend on the total) so that the cosine
schedules end by the budget; a run that would overrun stops after the epoch in progress."""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from edgeage.preprocess import model_input
from edgeage.utils import EdgeAgeError

from .loop import Run, check_split, load_data, lr_schedule
from .recipes import Recipe, load_recipe

# what must agree between recipes for one augmented stream to serve them all
SHARED = {"data": None, "degrade": None,
          "train": ("batch_size", "seed", "jitter", "flip", "erasing", "grayscale", "rotate", "num_workers",
                    "age_balance"),
          "distill": ("teacher_view",)}


def check_shared(recipes: list[Recipe], names: list[str]) -> None:
    first = recipes[0].to_dict()
    for rec, name in zip(recipes[1:], names[1:]):
        r = rec.to_dict()
        for sec, keys in SHARED.items():
            for k in keys or sorted(set(first[sec]) | set(r[sec])):
                if first[sec].get(k) != r[sec].get(k):
                    raise EdgeAgeError(f"{name}: [{sec}] {k} = {r[sec].get(k)!r} differs from {names[0]}'s "
                                       f"{first[sec].get(k)!r}; recipes trained together share one "
                                       "augmented stream, so these must agree")


def train_together(recipes: list[str | Recipe], outs: list[str | Path], overrides: dict | None = None,
                   budget_s: float | None = None, progress: bool = True, force: bool = False,
                   log=print, val_every: int = 1) -> dict:
    if len(recipes) != len(outs) or not recipes:
        raise EdgeAgeError("train_together: give one output folder per recipe")
    t_start = time.time()
    loaded = [r if isinstance(r, Recipe) else load_recipe(r, overrides) for r in recipes]
    names = [r.name if isinstance(r, Recipe) else str(r) for r in recipes]
    check_shared(loaded, names)
    if budget_s is not None:  # provisional: set after the first epoch
        loaded = [r.replace(train={"epochs": 1000}) for r in loaded]
    elif len({r.train.epochs for r in loaded}) > 1:
        raise EdgeAgeError("train_together: the recipes' [train] epochs differ; override them with one value")
    runs = [Run.create(r, o, progress, force) for r, o in zip(loaded, outs)]
    prep, parts, split_rec = load_data(runs[0].recipe, progress)
    check_split(runs[0].recipe, prep, parts)
    soft_by_cfg: dict[str, torch.Tensor] = {}
    for run in runs:
        torch.manual_seed(run.tc.seed)
        run.build_model(None, force)
        key = repr((run.recipe.distill, run.model.head.spec.to_dict()))
        if run.recipe.distill.mode == "clean" and key in soft_by_cfg:
            run.soft = soft_by_cfg[key]  # the same teachers' targets: computed once
        else:
            run.distillation(None, prep, parts)
            if run.soft is not None:
                soft_by_cfg[key] = run.soft
        if run.device.type == "cuda":
            run.model = run.model.to(memory_format=torch.channels_last)
    cv_threads = runs[0].make_loader(prep, parts)
    for run in runs[1:]:
        run.ds, run.sampler, run.loader = runs[0].ds, runs[0].sampler, runs[0].loader
    for run in runs:
        run.make_optimiser()
    steps = len(runs[0].loader)
    epochs = runs[0].tc.epochs
    log(f"training {len(runs)} models on one stream: {steps} steps per epoch, batch {runs[0].tc.batch_size}")
    epoch, val_s, last_epoch_s = 0, 0.0, 0.0
    while epoch < epochs:
        t0 = time.time()
        recs, steady = _epoch(runs, epoch, epochs)
        dt = time.time() - t0
        if epoch == 0 or validate_now(epoch, epochs, val_every):
            for run, rec in zip(runs, recs):
                rec["epoch_s"] = dt
                run.validate_and_checkpoint(epoch, rec, prep, parts, split_rec)
            val_s = time.time() - t0 - dt
        last_epoch_s = time.time() - t0
        epoch += 1
        if budget_s is not None and epoch == 1:  # size the schedule to the budget
            left = budget_s - (time.time() - t_start)
            # the epoch's pace from its second half: the first steps of a fresh GPU process are slow
            per_epoch = steady + val_s * min(1.0, 0.5 + 1.0 / val_every)
            new = max(2, 1 + int(left / per_epoch))
            min_warm = min(r.tc.warmup_epochs for r in runs)
            if min_warm < 1:
                log(f"warning: warmup_epochs {min_warm} < 1: epoch 1 already followed the provisional schedule")
            for run in runs:
                run.recipe = run.recipe.replace(train={"epochs": new})
                run.sched.lr_lambdas = [lr_schedule(new * steps, int(run.tc.warmup_epochs * steps))]
            log(f"epoch 1: {dt:.1f} s training ({steady:.1f} s at its second half's pace), {val_s:.1f} s "
                f"validation; {left:.0f} s left -> {new} epochs")
            epochs = new
        elif budget_s is not None and time.time() - t_start + last_epoch_s > budget_s and epoch < epochs:
            log(f"budget reached after epoch {epoch}/{epochs}: stopping (best.pt is saved)")
            break
    if cv_threads is not None:
        import cv2

        cv2.setNumThreads(cv_threads)
    return {r.recipe.name: {"best": r.best, "out": str(r.out), "epochs_run": epoch} for r in runs}


def validate_now(epoch: int, epochs: int, val_every: int) -> bool:
    """Validation (and checkpoints) every ``val_every`` epochs, and every epoch of the last half
    of the schedule, where the best one is chosen."""
    return (epoch + 1) % val_every == 0 or epoch + 1 >= epochs // 2 or epoch + 1 == epochs


def _input(imgs, normalize, device):
    x = model_input(imgs, normalize)
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x


def _epoch(runs, epoch: int, epochs: int) -> tuple[list[dict], float]:
    """One epoch of every run on the shared stream: each run's record, and the epoch's time at
    the pace of its second half (the first steps of a fresh GPU process are slow: cuDNN
    autotuning, workers starting), which sizes a budgeted schedule."""
    from tqdm import tqdm

    first = runs[0]
    device = first.device
    first.sampler.set_epoch(epoch)
    first.ds.set_epoch(epoch)
    for run in runs:
        run.net.train()
    sums = [0.0] * len(runs)
    seen = 0
    t0 = time.time()
    bar = tqdm(first.loader, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", disable=not first.progress,
               mininterval=10.0, leave=False)
    half, t_half = len(first.loader) // 2, None
    for step, (imgs, ages, pos, *clean) in enumerate(bar):
        if step == half:  # the second half's pace, past the first steps' warm-up (cuDNN autotuning, workers)
            t_half, seen_half = time.time(), seen
        imgs = imgs.to(device, non_blocking=True)
        ages = ages.to(device, non_blocking=True)
        clean = [c.to(device, non_blocking=True) for c in clean]
        xs, xts = {}, {}
        for k, run in enumerate(runs):
            key = run.normalize.input_size
            if key not in xs:
                xs[key] = _input(imgs, run.normalize, device)
                xts[key] = _input(clean[0], run.normalize, device) if clean else None
            sums[k] += run.step(xs[key], ages, pos, xts[key]) * len(ages)
        seen += len(ages)
    dt = time.time() - t0
    steady = (time.time() - t_half) * seen / (seen - seen_half) if t_half is not None and seen > seen_half else dt
    losses = [float(s) / max(seen, 1) for s in sums]
    for r, v in zip(runs, losses):
        if not math.isfinite(v):
            raise EdgeAgeError(f"{r.recipe.name}: training loss is {v} in epoch {epoch + 1}; lower its [train] lr")
    return [{"epoch": epoch + 1, "train_loss": v, "lr": r.sched.get_last_lr()[0],
             "images_per_s": seen / dt} for v, r in zip(losses, runs)], steady
