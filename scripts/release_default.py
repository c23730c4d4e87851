"""Ship a run's best checkpoint as one of the package's models (``--name``, edgeage/assets/NAME.pt;
which one is the default is edgeage/assets/shipped.toml's ``default``).

    python scripts/release_default.py --name NAME [--command CYCLE_COMMAND ...] RUN [RUN ...]
        [--average-with CKPT --alpha A] [--history-from EARLIER-metrics.json]

The last RUN's best.pt is shipped; earlier RUNs are the cosine cycles before it (each warm-started
from the one before, or trained from scratch), in order. Writes edgeage/assets/NAME.pt (fp16
weights + manifest), NAME-curve.png (every cycle, one epoch axis) and NAME-metrics.json (the
cycles' histories concatenated: each entry keeps its cycle and cycle epoch; "cycles" lists each
cycle's recipe, schedule and best validation MAE; "best" is the shipped epoch). The recipes stay in
train/recipes/.

``--average-with CKPT --alpha A`` ships ``(1 - A) * CKPT + A * best.pt`` instead
(edgeage.train.average: a weight-space average with, say, the model the run restarted from), its
validation measured again; the metrics' "averaged" names both parents and that validation.

``--model-name NAME`` records the shipped file as registry model NAME (``edgeage.models``) instead of
the name the run trained (``mgpnet-xs`` with ``input_size`` 96 ships as ``mgpnet-xs96``): refused
unless NAME's own config is the run's model config but for the name, so that one name keeps one
meaning. The recipe in the manifest stays as it was trained.

``--history-from EARLIER-metrics.json`` puts the cycles of an earlier release first (its history
and cycles as they were recorded), for a run warm-started from a shipped file whose own run folder
is gone: the curve and the metrics then show the whole training, not the last cycle alone.

A distillation teacher recorded as edgeage/assets/default.pt (the default when the run was made)
is rewritten to edgeage/assets/<name>.pt when that shipped file is byte-identical to the teacher
the run used: checked against the run's cached teacher targets, whose key holds the teachers'
SHA-256 (train/loop.py: clean_teacher_targets)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edgeage.checkpoint import load_model, read_checkpoint, save_checkpoint, shipped_models
from edgeage.data import load_prepared, split
from edgeage.train.average import average_checkpoints, revalidate
from edgeage.train.loop import plot_curves, teacher_paths, teacher_targets_key

ASSETS = Path(__file__).resolve().parents[1] / "edgeage" / "assets"
OLD_DEFAULT = "edgeage/assets/default.pt"


def renamed_teachers(run: Path, recipe: dict) -> list[str] | None:
    """The recipe's teacher paths with OLD_DEFAULT replaced by the shipped file with the same
    bytes, verified against the run's teacher_targets.npz key; None if nothing to rewrite."""
    dc = recipe.get("distill") or {}
    teachers = teacher_paths(dc.get("teacher", ""))
    if OLD_DEFAULT not in teachers:
        return None
    cache = run / "teacher_targets.npz"
    if not cache.is_file():
        raise SystemExit(f"{run}: no teacher_targets.npz to verify which file {OLD_DEFAULT} was")
    with np.load(cache) as z:
        key = str(z["key"])
    d = recipe["data"]
    prep = load_prepared(d["path"])
    idx = split(prep.names, seed=d["seed"], val=d["val"], test=d["test"])["train"]
    for name, path in shipped_models().items():
        if name == "default":
            continue
        cand = [f"edgeage/assets/{path.name}" if t == OLD_DEFAULT else t for t in teachers]
        if teacher_targets_key([read_checkpoint(t)["sha256"] for t in cand], dc["temperature"], dc["views"],
                               idx) == key:
            return cand
    raise SystemExit(f"{run}: no shipped model matches the teacher {OLD_DEFAULT} the run used")


def renamed_model(manifest, name: str):
    """The manifest with ``model.name`` = ``name``, if ``name``'s registry config equals the recorded
    config but for the name (else SystemExit naming the keys that differ)."""
    from edgeage.checkpoint import build_manifest
    from edgeage.models import create

    skip = ("name", "kind", "pruned")
    have = {k: v for k, v in manifest.model.config().items() if k not in skip}
    try:
        want = build_manifest(create(name)).model.config()   # as a checkpoint records it
    except KeyError as e:
        raise SystemExit(f"--model-name {name}: {e}") from None
    want = {k: v for k, v in want.items() if k not in skip}
    diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
    if diff or manifest.model.pruned:
        raise SystemExit(f"--model-name {name}: its registry config differs from the run's model "
                         f"{manifest.model.name} in {diff or ['pruned']}")
    return manifest.copy_with(model={**manifest.model.config(), "name": name})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--name", required=True, help="the shipped model's name (edgeage/assets/NAME.pt)")
    ap.add_argument("--command", action="append", default=[],
                    help="the command line of each cycle, in order (recorded in the metrics)")
    ap.add_argument("--average-with", type=Path, help="ship the weight average of this checkpoint and the last run's best")
    ap.add_argument("--alpha", type=float, default=0.5, help="with --average-with: the weight of the run's best.pt")
    ap.add_argument("--model-name", help="record the shipped weights as this registry model (same config)")
    ap.add_argument("--history-from", type=Path,
                    help="an earlier release's NAME-metrics.json: its cycles come first in the curve and metrics")
    a = ap.parse_args()
    history, cycles = [], []
    if a.history_from:
        try:
            earlier = json.loads(a.history_from.read_text())
            history, cycles = list(earlier["history"]), list(earlier["cycles"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"--history-from {a.history_from}: not a release's metrics JSON ({e})") from None
    for i, run in enumerate(a.runs):
        ck = read_checkpoint(run / "best.pt")
        m = json.loads((run / "metrics.json").read_text())
        rec = ck["manifest"].training.recipe
        tr, dc = rec["train"], rec.get("distill") or {}
        new_t = renamed_teachers(run, rec)
        start, cycle = len(history), len(cycles) + 1
        for h in m["history"]:
            history.append({**h, "epoch": start + h["epoch"], "cycle": cycle, "cycle_epoch": h["epoch"]})
        cycles.append({"run": run.as_posix(), "recipe": rec.get("name"), "epochs": tr["epochs"],
                       "init": tr.get("init") or "", "batch_size": tr["batch_size"], "lr": tr["lr"],
                       "alpha": dc.get("alpha", 0.0) if teacher_paths(dc.get("teacher", "")) else 0.0,
                       "teachers": new_t or teacher_paths(dc.get("teacher", "")),
                       "best_val_mae": m["best"]["val_mae"], "best_epoch": m["best"]["epoch"],
                       **({"command": a.command[i]} if i < len(a.command) else {})})
    last = a.runs[-1]
    ck = read_checkpoint(last / "best.pt")
    manifest = ck["manifest"]
    new_t = renamed_teachers(last, manifest.training.recipe)
    if new_t:
        recipe = json.loads(json.dumps(manifest.training.recipe))
        recipe["distill"]["teacher"] = new_t if len(new_t) > 1 else new_t[0]
        manifest.training.recipe = recipe
    model, _ = load_model(last / "best.pt")
    averaged = None
    if a.average_with:
        model, avg_manifest = average_checkpoints(a.average_with, last / "best.pt", a.alpha)
        training = manifest.training.to_json_dict()
        training["averaged_from"] = avg_manifest.training.averaged_from
        manifest = revalidate(model, manifest.copy_with(training=training))
        val = manifest.training.val
        averaged = {**training["averaged_from"], "val_mae": val["mae"], "val_cs5": val["cs5"]}
    if a.model_name:
        manifest = renamed_model(manifest, a.model_name)
    dest = ASSETS / f"{a.name}.pt"
    save_checkpoint(dest, model, manifest, half=True)
    best = json.loads((last / "metrics.json").read_text())["best"]
    metrics = {"history": history, "best": best, "cycles": cycles,
               "split": json.loads((last / "metrics.json").read_text()).get("split"),
               **({"averaged": averaged} if averaged else {})}
    (ASSETS / f"{a.name}-metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    plot_curves(ASSETS / f"{a.name}-curve.png", history)
    t = manifest.training
    print(f"shipped {last / 'best.pt'}{f' averaged with {a.average_with}' if averaged else ''} (epoch {t.epoch}, "
          f"val MAE {t.val['mae']:.3f}; {len(cycles)} cycle(s), "
          f"{len(history)} epochs) -> {dest} ({dest.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
