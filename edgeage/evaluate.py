"""Evaluation on canonical crops (through ``AgeEstimator``) and the eval reports (CSV, JSON, PNG)."""
from __future__ import annotations

import csv
import os

import numpy as np

from .metrics import range_metrics, summary
from .pipeline import AgeEstimator
from .utils import atomic_path, output_dir, write_json


def degrade_crops(crops: np.ndarray, p: float, strength: float = 1.0, seed: int = 0,
                  ops: tuple[str, ...] | None = None) -> np.ndarray:
    """The training degradation model applied to evaluation crops, seeded per image (``ops``: only
    these operations, e.g. ``("jpeg",)`` to see what JPEG alone costs; None: all of them)."""
    from .degrade import ALL_OPS, DegradationConfig, Degrader

    deg = Degrader(DegradationConfig(p=p, strength=strength, ops=tuple(ops or ALL_OPS)))
    return np.stack([deg(np.asarray(c), np.random.default_rng([seed, i])) for i, c in enumerate(crops)])


def evaluate_prepared(est: AgeEstimator, prep, indices=None, tta_flip: bool | None = None,
                      degrade_p: float = 0.0, seed: int = 0, grey: bool = False,
                      degrade_ops: tuple[str, ...] | None = None) -> tuple[dict, np.ndarray]:
    """MAE, CS(5), per decade of the estimator on (a part of) prepared crops (``grey``: turned grey
    first, as an IR / monochrome camera sees them; ``degrade_p``: then degraded, by ``degrade_ops``
    only when given; ``tta_flip``: None, the estimator's own setting)."""
    from .preprocess import grey as to_grey

    idx = np.arange(len(prep.ages)) if indices is None else np.asarray(indices)
    crops = prep.crops[idx]
    if grey:
        crops = to_grey(crops)
    if degrade_p > 0:
        crops = degrade_crops(crops, degrade_p, seed=seed, ops=degrade_ops)
    pred = est.ages(crops, tta_flip)
    true = prep.ages[idx]
    flip = est.tta_flip if tta_flip is None else bool(tta_flip)
    res = summary(pred, true, {"faces_not_found": int((~prep.face_found[idx]).sum()),
                               "tta_flip": flip, "degrade_p": degrade_p, "grey": grey,
                               **({"degrade_ops": list(degrade_ops)} if degrade_ops and degrade_p > 0 else {})})
    return res, pred


def load_eval_data(est: AgeEstimator, data, split: str = "all", skip_bad: bool = False,
                   progress: bool = True, prep=None):
    """(prepared crops, indices) of ``data`` (a folder, CSV or prepared cache) for ``est``: all
    of them, or one part of the split its checkpoint records (the same data required)."""
    from .data import is_prepared, load_prepared, prepare, split as make_split
    from .utils import EdgeAgeError

    if prep is None or prep.crop != est.crop:
        prep = load_prepared(data, expect_crop=est.crop) if is_prepared(data) else \
            prepare(data, est.crop, skip_bad=skip_bad, progress=progress)
    idx = np.arange(len(prep.names))
    if split != "all":
        rec = est.manifest.training.split
        if not rec:
            raise EdgeAgeError(f"--split {split}: the checkpoint records no split; use --split all")
        if rec["list_hash"] != prep.lhash:
            raise EdgeAgeError(f"--split {split}: {data} is not the data the model was trained on "
                               "(file-list hash differs); use --split all")
        idx = make_split(prep.names, rec["seed"], rec["val"], rec["test"])[split]
    return prep, idx


def evaluate(model_path, data, crop: str | None = None, split: str = "all", tta_flip: bool = False,
             degrade_p: float = 0.0, seed: int = 0, skip_bad: bool = False, progress: bool = True,
             by: list[str] | None = None, grey: bool = False, degrade_ops: tuple[str, ...] | None = None):
    """``edgeage eval``: (result, names, true ages, predicted ages) of a checkpoint on ``data``
    (a folder, CSV or prepared cache), or on one part of the split the checkpoint records
    (the same data required). ``by``: group names (``edgeage.groups``) for ``result["groups"]``;
    ``degrade_ops``: degrade with these operations only (``degrade_p`` > 0 required)."""
    from .utils import EdgeAgeError

    if degrade_ops:
        from .degrade import ALL_OPS

        if unknown := sorted(set(degrade_ops) - set(ALL_OPS)):
            raise EdgeAgeError(f"--degrade-op {', '.join(unknown)}: unknown; known: {', '.join(ALL_OPS)}")
        if degrade_p <= 0:
            raise EdgeAgeError("--degrade-op needs --degrade-p above 0 (e.g. --degrade-p 1: every face gets the op)")
    from .groups import age_ranges, by_groups, check_by

    est = AgeEstimator.from_checkpoint(model_path).with_crop_policy(crop)
    prep, idx = load_eval_data(est, data, split, skip_bad, progress)
    if by:
        check_by(by, prep, data)  # before the model runs
    ranges = age_ranges(prep, idx, data)
    res, pred = evaluate_prepared(est, prep, idx, tta_flip, degrade_p=degrade_p, seed=seed, grey=grey,
                                  degrade_ops=tuple(degrade_ops) if degrade_ops else None)
    res.update(model=est.manifest.source_path, data=str(data), split=split,
               skipped=len(prep.skipped), skipped_files=list(prep.skipped))
    if ranges is not None:
        res["age_range"] = range_metrics(pred, *ranges)
    if by:
        res["groups"] = by_groups(by, prep, idx, pred, prep.ages[idx], ranges)
    return res, [prep.names[i] for i in idx], prep.ages[idx], pred


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
             f"faces not found = {res.get('faces_not_found', 0)}\n", *range_line(res), "| ages | n | MAE |",
             "|---|---|---|"]
    lines += [f"| {k} | {v['n']} | {v['mae']:.2f} |" for k, v in res["per_decade"].items()]
    images = [out / "error_by_age.png"]
    if res.get("groups"):
        from .groups import group_markdown, plot_groups

        plot_groups(out / "by_group.png", res["groups"])
        images.append(out / "by_group.png")
        lines += group_markdown(res) + ["", "![MAE per group](by_group.png)"]
    with atomic_path(out / "eval.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    from .groups import write_group_html

    write_group_html(out, res, images)


def range_line(res: dict) -> list[str]:
    """The report's line on ages labelled as ranges (``res["age_range"]``), if the data has them."""
    r = res.get("age_range")
    if not r:
        return []
    return [f"Ages labelled as ranges (age_min..age_max): {100 * r['in_range']:.1f} % of the predictions in "
            f"range, {r['mae_to_range']:.2f} years from the range on average (MAE and CS(5) are against the "
            "`age` column).\n"]


def resolution_curve(models, data, split: str = "test", sizes=None, skip_bad: bool = False,
                     progress: bool = True) -> dict:
    """``edgeage resolution-curve``: MAE vs face size (``edgeage.groups.resolution_curve``) of
    every model (a checkpoint or a shipped name) on ``data`` / ``split``."""
    from .groups import CURVE_SIZES, resolution_curve as curve

    sizes = sorted({int(s) for s in (sizes or CURVE_SIZES)})
    res = {"data": str(data), "split": split, "sizes": sizes, "models": []}
    prep = None
    for m in models:
        est = AgeEstimator.from_checkpoint(m)
        prep, idx = load_eval_data(est, data, split, skip_bad, progress, prep)
        c = curve(est, prep.crops[idx], prep.ages[idx], sizes)
        res["models"].append({"name": str(m or "default"), "model": est.manifest.source_path,
                              "arch": est.manifest.model.name,
                              "input_size": int(est.normalize.input_size), **c})
        res.update(n=int(len(idx)), crop_size=int(prep.crop.crop_size))
    return res


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
