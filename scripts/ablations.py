"""The papers' comparisons on our own UTKFace split, as short CPU schedules (resumable).

    python scripts/ablations.py --study heads [--epochs 2] [--train-subset N] [--data .cache/utk-prepared]
    python scripts/ablations.py --study all --report-only     # tables from finished runs

Studies (each row = recipe overrides on top of train/recipes/ablation-base.toml):
  downsampling  resnet18 (quarter widths) with stride conv / max / avg / SoftPool / MGPool
  mgpool        GeM p sets, shuffle groups g=1,4,8, ECA vs SE (mgpnet-t)
  degradation   p = 0 vs 0.2, evaluated on clean and degraded (p=0.2) test crops
  heads         SORD / DEX / regression / CORAL / mean-residue / DAA on mgpnet-t
  input_size    32 / 64 / 128 for mgpnet-t, 32 / 64 for resnet18(quarter)+DAA, with latency
Every run evaluates on the test split of the recorded split, clean and degraded. Runs are
checkpointed per epoch and resumed when the script is started again. Results:
bench/ablations/<study>.json and .md.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from edgeage.checkpoint import TorchModel, load_model
from edgeage.data import load_prepared, split
from edgeage.evaluate import evaluate_prepared
from edgeage.pipeline import AgeEstimator
from edgeage.profile import count_macs, count_params
from edgeage.train.loop import train
from edgeage.train.recipes import Recipe, load_recipe
from edgeage.utils import atomic_path, sha256_file, write_json

Q = [16, 32, 64, 128]  # quarter widths: what a CPU can train in minutes
STUDIES = {
    "downsampling": {f"resnet18-q/{d}": {"model": {"name": "resnet18", "widths": Q, "downsample": d}}
                     for d in ("stride", "max", "avg", "softpool", "mgpool")},
    "mgpool": {
        "p=(1,3,inf), g=4, ECA (paper)": {}, "p=(1,)": {"model": {"gem_ps": [1.0]}},
        "p=(1,inf)": {"model": {"gem_ps": [1.0, math.inf]}},
        **{f"g={g}": {"model": {"shuffle_groups": g}} for g in (1, 8)},
        "SE gate": {"model": {"gate": "se"}},
    },
    "degradation": {"p=0": {"degrade": {"p": 0.0}}, "p=0.2": {"degrade": {"p": 0.2}}},
    "heads": {h: {"model": {"head": h}} for h in ("sord", "dex", "regression", "coral", "mean_residue", "daa")},
    "input_size": {
        **{f"mgpnet-t@{s}": {"model": {"input_size": s}} for s in (32, 64, 128)},
        **{f"resnet18-q+daa@{s}": {"model": {"name": "resnet18", "widths": Q, "head": "daa", "input_size": s}}
           for s in (32, 64)},
    },
}


def run_row(study: str, label: str, over: dict, args) -> dict:
    d = load_recipe("ablation-base", {"data": {"path": args.data, "train_subset": args.train_subset},
                                      "train": {"epochs": args.epochs}}).to_dict()
    for sec, vals in over.items():
        if sec == "model" and "name" in vals and vals["name"] != d["model"]["name"]:
            d["model"] = {}
        d[sec].update(vals)
    r = Recipe.from_dict(d, f"ablation {study} / {label}")
    # one run per distinct recipe: rows of different studies that are the same model (the
    # paper's MGPool, p = 0.2, SORD, 64 px) share it
    key = hashlib.sha1(json.dumps(r.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:10]
    out = Path(args.runs) / key
    t0 = time.time()
    if not args.report_only:
        train(r, out, resume=True, progress=not args.quiet)
    if not (out / "best.pt").is_file():
        return {"label": label, "status": "not run"}
    model, manifest = load_model(out / "best.pt")
    prep = load_prepared(args.data)
    rec = manifest.training.split
    test = split(prep.names, rec["seed"], rec["val"], rec["test"])["test"]
    norm = manifest.normalize
    cache = out / "test_eval.json"  # test-split results of this best.pt (latency is always re-timed)
    sha = sha256_file(out / "best.pt")
    ev = json.loads(cache.read_text()) if cache.is_file() else {}
    if ev.get("sha256") != sha:
        est = AgeEstimator(TorchModel(model), manifest)
        clean, _ = evaluate_prepared(est, prep, test)
        degr, _ = evaluate_prepared(est, prep, test, degrade_p=0.2, seed=1)
        ev = {"sha256": sha, "clean": clean, "degraded": degr}
        write_json(cache, ev)
    clean, degr = ev["clean"], ev["degraded"]
    x = torch.randn(1, 3, norm.input_size, norm.input_size)
    with torch.no_grad():  # batch 1, the thread count of this process; best of 3 rounds of 20
        for _ in range(5):
            model(x)
        rounds = []
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(20):
                model(x)
            rounds.append((time.perf_counter() - t) / 20 * 1000)
    return {"label": label, "model": manifest.model.name, "epochs": manifest.training.epoch,
            "params_m": count_params(model) / 1e6, "macs_m": count_macs(model, norm.input_size) / 1e6,
            "mae": clean["mae"], "cs5": clean["cs5"], "mae_degraded": degr["mae"],
            "latency_ms_b1_torch": min(rounds), "wall_s": time.time() - t0}


def write_tables(study: str, rows: list[dict], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / f"{study}.json", rows)
    lines = [f"### {study}\n", "| variant | params (M) | MACs (M) | MAE | CS(5) | MAE degraded | torch ms (b1) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "mae" in r:
            lines.append(f"| {r['label']} | {r['params_m']:.2f} | {r['macs_m']:.1f} | {r['mae']:.2f} | "
                         f"{r['cs5']:.3f} | {r['mae_degraded']:.2f} | {r['latency_ms_b1_torch']:.1f} |")
        else:
            lines.append(f"| {r['label']} | – | – | not run | | | |")
    with atomic_path(out_dir / f"{study}.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="all", choices=["all", *STUDIES])
    ap.add_argument("--data", default=".cache/utk-prepared")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-subset", type=int, default=0,
                    help="train on this many images of the train split (0 = all); val/test unchanged")
    ap.add_argument("--runs", default="runs/ablations")
    ap.add_argument("--out", default="bench/ablations")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    for study in STUDIES if args.study == "all" else [args.study]:
        rows = [run_row(study, label, over, args) for label, over in STUDIES[study].items()]
        write_tables(study, rows, Path(args.out))
        print(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
