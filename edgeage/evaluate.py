"""Evaluation and prediction on canonical crops, and the eval reports (CSV, JSON, PNG)."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import torch

from .metrics import summary
from .preprocess import Normalize, model_input
from .utils import atomic_path, output_dir, write_json


@torch.no_grad()
def model_outputs(model, crops: np.ndarray, normalize: Normalize, batch: int = 256,
                  flip: bool = False) -> np.ndarray:
    """Raw outputs [N, K] of the model on uint8 canonical crops [N, S, S, 3]."""
    model.eval()
    outs = []
    for i in range(0, len(crops), batch):
        x = model_input(crops[i:i + batch], normalize)
        outs.append(model(x).float())
    return torch.cat(outs).numpy()


@torch.no_grad()
def predict_ages(model, crops: np.ndarray, normalize: Normalize, batch: int = 256,
                 tta_flip: bool = False, device: str | torch.device = "cpu") -> np.ndarray:
    """Ages for uint8 canonical crops; ``tta_flip`` averages with the mirrored crop. ``device``:
    where the model already is (the batches are moved there, the ages come back to the CPU)."""
    ages = []
    for i in range(0, len(crops), batch):
        x = model_input(crops[i:i + batch], normalize).to(device)
        a = model.readout(model(x))
        if tta_flip:
            a = 0.5 * (a + model.readout(model(torch.flip(x, dims=[3]))))
        ages.append(a.float().cpu())
    return torch.cat(ages).numpy().astype(np.float64)


def degrade_crops(crops: np.ndarray, p: float, strength: float = 1.0, seed: int = 0) -> np.ndarray:
    """The training degradation model applied to evaluation crops, seeded per image."""
    from .degrade import DegradationConfig, Degrader

    deg = Degrader(DegradationConfig(p=p, strength=strength))
    return np.stack([deg(np.asarray(c), np.random.default_rng([seed, i])) for i, c in enumerate(crops)])


def evaluate_prepared(model, normalize: Normalize, prep, indices=None, tta_flip: bool = False,
                      batch: int = 256, degrade_p: float = 0.0, seed: int = 0) -> tuple[dict, np.ndarray]:
    idx = np.arange(len(prep.ages)) if indices is None else np.asarray(indices)
    crops = prep.crops[idx]
    if degrade_p > 0:
        crops = degrade_crops(crops, degrade_p, seed=seed)
    pred = predict_ages(model, crops, normalize, batch, tta_flip)
    true = prep.ages[idx]
    res = summary(pred, true, {"faces_not_found": int((~prep.face_found[idx]).sum()),
                               "tta_flip": tta_flip, "degrade_p": degrade_p})
    return res, pred


def write_eval_report(out_dir: str | os.PathLike, res: dict, names: list[str], true, pred,
                      force: bool = False) -> None:
    out = output_dir(out_dir, force)
    write_json(out / "eval.json", res)
    with atomic_path(out / "predictions.csv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "age", "pred", "error"])
        for n, t, p in zip(names, true, pred):
            w.writerow([n, f"{t:g}", f"{p:.3f}", f"{p - t:.3f}"])
    plot_error_by_age(out / "error_by_age.png", np.asarray(true), np.asarray(pred), res)
    lines = [f"# Evaluation\n", f"n = {res['n']}, MAE = {res['mae']:.3f}, CS(5) = {res['cs5']:.3f}, "
             f"faces not found = {res.get('faces_not_found', 0)}\n", "| ages | n | MAE |",
             "|---|---|---|"]
    lines += [f"| {k} | {v['n']} | {v['mae']:.2f} |" for k, v in res["per_decade"].items()]
    with atomic_path(out / "eval.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def plot_error_by_age(path, true: np.ndarray, pred: np.ndarray, res: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    a1.scatter(true, pred, s=3, alpha=0.3)
    hi = max(float(np.max(true)), float(np.max(pred)), 1.0)
    a1.plot([0, hi], [0, hi], "k--", lw=1)
    a1.set_xlabel("true age")
    a1.set_ylabel("predicted age")
    a1.set_title(f"MAE {res['mae']:.2f}  CS(5) {res['cs5']:.3f}  n={res['n']}")
    dec = res["per_decade"]
    a2.bar(list(dec), [v["mae"] for v in dec.values()])
    a2.set_ylabel("MAE (years)")
    a2.set_xlabel("true age decade")
    a2.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
