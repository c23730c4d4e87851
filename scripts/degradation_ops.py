"""What each camera degradation costs, one at a time (issue 24: MGP-Net's robustness claim).

For every shipped model (or the ``--model`` ones), on one part of the checkpoint's split: MAE and
CS(5) on the clean crops, then with each operation of the training degradation model applied to
every face alone (``edgeage eval --degrade-p 1 --degrade-op OP``, strength 1, seeded per image),
then with all six at the evaluation trigger probability (``--degrade-p 0.2``, the "degraded"
number of the README). Writes ``ops.json``, ``ops.md``, ``ops.html`` and ``ops.png`` (MAE added
by each operation, one bar per model) to ``--out``.

    OMP_NUM_THREADS=1 python scripts/degradation_ops.py [--model M ...] [--data .cache/utk-prepared] \\
        [--split test] [--out bench/degradation-ops]
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def measure(model: str, data: str, split: str, seed: int) -> dict:
    """{condition: {mae, cs5, n}} for one model: clean, each op alone at p = 1, all at p = 0.2."""
    from tqdm import tqdm

    from edgeage.degrade import ALL_OPS
    from edgeage.evaluate import evaluate_prepared, load_eval_data
    from edgeage.pipeline import AgeEstimator

    est = AgeEstimator.from_checkpoint(model)
    prep, idx = load_eval_data(est, data, split, progress=False)
    conds = [("clean", 0.0, None)] + [(op, 1.0, (op,)) for op in ALL_OPS] + [("all six, p = 0.2", 0.2, None)]
    out = {}
    for name, p, ops in tqdm(conds, desc=model, unit="condition"):
        res, _ = evaluate_prepared(est, prep, idx, degrade_p=p, seed=seed, degrade_ops=ops)
        out[name] = {"mae": res["mae"], "cs5": res["cs5"], "n": res["n"], "degrade_p": p}
    return out


def write_report(out: Path, results: dict, meta: dict) -> None:
    from edgeage.document import Para, Table, Title, blocks_md, page_html, plt_agg, savefig, write_html
    from edgeage.utils import atomic_path, write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "ops.json", {**meta, "results": results})
    models = list(results)
    conds = list(next(iter(results.values())))
    rows = [[c] + [f"{results[m][c]['mae']:.2f} ({results[m][c]['mae'] - results[m]['clean']['mae']:+.2f})"
                   if c != "clean" else f"{results[m][c]['mae']:.2f}" for m in models] for c in conds]
    blocks = [Title("What each degradation costs"),
              Para([f"MAE (years; in brackets, added to the clean MAE) of each model on the {meta['split']} split "
                    f"of {meta['data']} (n = {next(iter(results.values()))['clean']['n']}), each operation of "
                    "the training degradation model applied alone to every face at strength 1, then all six "
                    f"at trigger probability 0.2 (seed {meta['seed']}).", "", f"    {meta['command']}"]),
              Table(["condition"] + [f"`{m}`" for m in models], rows)]
    plt = plt_agg()
    ops = [c for c in conds if c != "clean"]
    fig, ax = plt.subplots(figsize=(8, 4))
    w = 0.8 / len(models)
    for i, m in enumerate(models):
        ax.bar(np.arange(len(ops)) + i * w - 0.4 + w / 2,
               [results[m][c]["mae"] - results[m]["clean"]["mae"] for c in ops], w, label=m)
    ax.set_xticks(np.arange(len(ops)), ops, rotation=20)
    ax.set_ylabel("MAE added to the clean MAE (years)")
    ax.set_title("what each degradation costs (lower is more robust)")
    ax.axhline(0, color="k", lw=0.5)
    ax.legend()
    fig.tight_layout()
    savefig(fig, out / "ops.png")
    with atomic_path(out / "ops.md") as tmp:
        tmp.write_text(blocks_md(blocks) + "\n\n![MAE added by each degradation](ops.png)\n")
    write_html(out / "ops.html", page_html(blocks, images=[out / "ops.png"]))


def main() -> None:
    import shlex
    import sys

    from evidence_args import evidence_parser

    a = evidence_parser(__doc__, "bench/degradation-ops").parse_args()
    from edgeage.checkpoint import shipped_names

    models = a.model or shipped_names()
    results = {m: measure(m, a.data, a.split, a.seed) for m in models}
    cmd = "python scripts/degradation_ops.py " + shlex.join(sys.argv[1:])
    write_report(a.out, results, {"data": a.data, "split": a.split, "seed": a.seed, "command": cmd.strip()})
    print((a.out / "ops.md").read_text())


if __name__ == "__main__":
    main()
