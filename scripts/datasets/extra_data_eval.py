"""Does training on another set pay on its people the model never saw? Measures a control run
(UTKFace only) and one run per fold (UTKFace + that fold through ``--extra-data``) on every fold
and on the UTKFace test split; writes each JSON and a README with the table to OUT.

    python scripts/datasets/fgnet.py ~/.cache/edgeage/datasets/fgnet --folds 2
    edgeage train --recipe train/recipes/accuracy/xs-fgnet.toml --data D --out runs/xs-fgnet-ctl
    edgeage train --recipe train/recipes/accuracy/xs-fgnet.toml --data D --out runs/xs-fgnet-f1 \\
        --extra-data ~/.cache/edgeage/datasets/fgnet/labels-fold1-of-2.csv      # and f2 with fold 2
    python scripts/datasets/extra_data_eval.py --utk D --out bench/cross-dataset/fgnet-extra \\
        --folds ~/.cache/edgeage/datasets/fgnet/labels-fold{1,2}-of-2.csv \\
        --control runs/xs-fgnet-ctl/last.pt --trained runs/xs-fgnet-f1/last.pt runs/xs-fgnet-f2/last.pt

``--trained``: one checkpoint per fold, in the order of ``--folds`` (the i-th was trained with the
i-th fold). The shipped model named by ``--shipped`` is measured beside them. Each eval runs at
one thread, as ``cross_eval.py``; only JSON and Markdown are written (no image paths).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path


def _cross_eval():
    """cross_eval.py beside this file, loaded by its path (no search path is changed)."""
    spec = importlib.util.spec_from_file_location("cross_eval", Path(__file__).resolve().parent / "cross_eval.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


run_eval = _cross_eval().run_eval


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folds", nargs="+", type=Path, required=True, help="the folds' labels.csv files")
    ap.add_argument("--control", required=True, help="checkpoint trained without extra data")
    ap.add_argument("--trained", nargs="+", required=True, help="one checkpoint per fold, trained with it")
    ap.add_argument("--shipped", default="mgpnet-xs", help="the shipped model the runs started from")
    ap.add_argument("--utk", type=Path, required=True, help="the UTKFace data (prepared crops or folder)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    if len(a.trained) != len(a.folds):
        ap.error(f"--trained: {len(a.trained)} checkpoints for {len(a.folds)} folds; give one per fold")
    for f in a.folds:
        if not f.is_file():
            ap.error(f"--folds: {f}: no such file")
    models = {"shipped": a.shipped, "control": a.control,
              **{f"+ fold {i + 1}": m for i, m in enumerate(a.trained)}}
    res: dict[str, dict[str, dict]] = {}
    for label, m in models.items():
        res[label] = {f"fold{i + 1}": run_eval(m, f, [], []) for i, f in enumerate(a.folds)}
        res[label]["utk-test"] = run_eval(m, a.utk, [], ["--split", "test"])
    a.out.mkdir(parents=True, exist_ok=True)
    for label, cells in res.items():
        slug = label.replace("+ ", "plus-").replace(" ", "")
        for cell, r in cells.items():
            r = {k: v for k, v in r.items() if k not in ("data", "model")}
            (a.out / f"{slug}.{cell}.json").write_text(json.dumps(r, indent=1) + "\n")
    k = len(a.folds)
    head = "| model | " + " | ".join(f"fold {i + 1} MAE (bias)" for i in range(k)) + \
        " | MAE on folds it never saw | UTKFace test MAE |"
    lines = ["# Training on FG-NET people: does it pay on the others?", "",
             "Each run starts from the shipped model and trains the same schedule; a `+ fold i` run also trains on "
             "every photo of fold i (subject-disjoint folds). *Never saw* is the photo-weighted MAE over the folds "
             "the model was not trained on (for the shipped model and the control: all folds). Bias: mean "
             "(predicted - true) age, years. One thread per eval.", "",
             "Models: " + ", ".join(f"{lbl} = `{m}`" for lbl, m in models.items()) + ".", "",
             head, "|---" * (k + 3) + "|"]
    for label, cells in res.items():
        seen = {int(label.split()[-1]) - 1} if label.startswith("+") else set()
        unseen = [cells[f"fold{i + 1}"] for i in range(k) if i not in seen]
        n = sum(r["n"] for r in unseen)
        mae = sum(r["mae"] * r["n"] for r in unseen) / n
        cols = []
        for i in range(k):
            r = cells[f"fold{i + 1}"]
            cols.append(f"{r['mae']:.2f} ({r['bias']:+.1f})" + (" trained on" if i in seen else ""))
        lines.append(f"| {label} | " + " | ".join(cols) + f" | **{mae:.2f}** (n {n}) | {cells['utk-test']['mae']:.3f} |")
    held = [res[f"+ fold {i + 1}"][f"fold{j + 1}"] for i in range(k) for j in range(k) if j != i]
    ctl = [res["control"][f"fold{j + 1}"] for j in range(k)]

    def wmae(rs):
        return sum(r["mae"] * r["n"] for r in rs) / sum(r["n"] for r in rs)

    lines += ["", f"Cross-validated over the {k} folds (every photo measured by a run that never saw its "
              f"person): MAE **{wmae(held):.2f}** with the extra photos, {wmae(ctl):.2f} for the control "
              f"(the same schedule on UTKFace alone), {wmae([res['shipped'][f'fold{j + 1}'] for j in range(k)]):.2f} "
              "for the shipped model."]
    lines += ["", "Command:", "", "```sh", "python scripts/datasets/extra_data_eval.py " + " ".join(
        str(x) for x in (argv if argv is not None else sys.argv[1:])), "```", ""]
    (a.out / "README.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
