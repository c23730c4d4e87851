"""What `predict --tta-flip` buys: each shipped model read once and with its mirror (issue 24).

For every shipped model (or the ``--model`` ones), on one part of the checkpoint's split: MAE and
CS(5) of the float checkpoint and of its exported artifacts (``--artifact MODEL=DIR``, e.g. the
OpenVINO INT8 PTQ one; run by its runtime alone), clean and degraded (the README's p = 0.2), each
read once and with flip TTA (every face also mirrored, the two ages averaged: twice the model's
work; its latency is ``edgeage pipeline-bench --tta-flip``). Writes ``tta.json``, ``tta.md`` and
``tta.html`` to ``--out``.

    OMP_NUM_THREADS=1 python scripts/tta_flip.py [--model M ...] [--artifact M=DIR ...] \\
        [--data .cache/utk-prepared] [--split test] [--out bench/tta-flip]
"""
from __future__ import annotations

from pathlib import Path

CONDITIONS = (("clean", 0.0, False), ("clean + flip", 0.0, True),
              ("degraded", 0.2, False), ("degraded + flip", 0.2, True))


def measure(est, data: str, split: str, seed: int, desc: str, prep=None) -> tuple[dict, object]:
    """({condition: {mae, cs5, n}} of one estimator, the prepared crops: pass them on to the next
    estimator, which loads them again only when its crop differs)."""
    from tqdm import tqdm

    from edgeage.evaluate import evaluate_prepared, load_eval_data

    prep, idx = load_eval_data(est, data, split, progress=False, prep=prep)
    out = {}
    for name, p, flip in tqdm(CONDITIONS, desc=desc, unit="condition"):
        res, _ = evaluate_prepared(est, prep, idx, tta_flip=flip, degrade_p=p, seed=seed)
        out[name] = {"mae": res["mae"], "cs5": res["cs5"], "n": res["n"]}
    return out, prep


def write_report(out: Path, rows: list[dict], meta: dict) -> None:
    from edgeage.document import Para, Table, Title, blocks_md, page_html, write_html
    from edgeage.utils import atomic_path, write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "tta.json", {**meta, "rows": rows})
    names = [c[0] for c in CONDITIONS]

    def cell(r, c):
        base = r["results"][c.replace(" + flip", "")]["mae"]
        v = r["results"][c]["mae"]
        return f"{v:.3f}" + (f" ({v - base:+.3f})" if c.endswith("flip") else "")

    blocks = [Title("Flip test-time augmentation"),
              Para([f"MAE (years) on the {meta['split']} split of {meta['data']} (n = {rows[0]['results']['clean']['n']}), "
                    "each face read once and with its mirror (`predict --tta-flip`: the two ages averaged; in "
                    "brackets, the change). Degraded: the training degradation model at p = 0.2, "
                    f"seed {meta['seed']}.", "", f"    {meta['command']}"]),
              Table(["model", "run by"] + names, [[f"`{r['model']}`", r["run_by"]] + [cell(r, c) for c in names]
                                                  for r in rows])]
    with atomic_path(out / "tta.md") as tmp:
        tmp.write_text(blocks_md(blocks) + "\n")
    write_html(out / "tta.html", page_html(blocks))


def main() -> None:
    import shlex
    import sys

    from evidence_args import evidence_parser

    ap = evidence_parser(__doc__, "bench/tta-flip")
    ap.add_argument("--artifact", action="append", default=[], metavar="MODEL=DIR",
                    help="an exported artifact of MODEL, measured beside its checkpoint (repeatable)")
    a = ap.parse_args()
    from edgeage.artifact import read_manifest
    from edgeage.checkpoint import shipped_names
    from edgeage.pipeline import AgeEstimator
    from edgeage.targets.runner import artifact_estimator

    models = a.model or shipped_names()
    arts: dict[str, list[str]] = {}
    for spec in a.artifact:
        m, sep, d = spec.partition("=")
        if not sep or m not in models:
            raise SystemExit(f"--artifact {spec}: give MODEL=DIR with MODEL one of {', '.join(models)}")
        arts.setdefault(m, []).append(d)
    rows, prep = [], None
    for m in models:
        res, prep = measure(AgeEstimator.from_checkpoint(m), a.data, a.split, a.seed, m, prep)
        rows.append({"model": m, "run_by": "PyTorch fp32", "results": res})
        for d in arts.get(m, []):
            art = read_manifest(d).artifact
            label = f"{art.target} {art.precision}"
            res, prep = measure(artifact_estimator(d, threads=1), a.data, a.split, a.seed, f"{m} {label}", prep)
            rows.append({"model": m, "run_by": label, "artifact": d, "results": res})
    cmd = "python scripts/tta_flip.py " + shlex.join(sys.argv[1:])
    write_report(a.out, rows, {"data": a.data, "split": a.split, "seed": a.seed, "command": cmd.strip()})
    print((a.out / "tta.md").read_text())


if __name__ == "__main__":
    main()
