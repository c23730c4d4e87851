"""Evaluate the shipped models on another age set's labels.csv; results under bench/cross-dataset/.

Runs ``edgeage eval --model M --data LABELS --json --by decade`` for each model (one thread, as
every edgeage benchmark here), keeps each JSON as ``OUT/<model>.json`` and writes ``OUT/README.md``:
MAE, CS(5), n and faces not found per model, MAE per age decade, and the same figures of the
UTKFace test split beside them, read from ``bench/eval-groups/<model>/eval.json`` (measured
there; this script does not re-run UTKFace).

    python scripts/datasets/fgnet.py ~/.cache/edgeage/datasets/fgnet
    python scripts/datasets/cross_eval.py fgnet ~/.cache/edgeage/datasets/fgnet/labels.csv

Nothing is downloaded; the images stay in the cache folder, and only JSON and Markdown are
written to OUT (no predictions.csv: it would list the cache's file paths).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_eval(model: str, labels: Path, by: list[str], extra: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", "from edgeage.cli import main; main()", "eval", "--model", model,
           "--data", str(labels), "--json"]
    for b in by:
        cmd += ["--by", b]
    cmd += extra
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"edgeage eval failed for {model} (exit {p.returncode}):\n{p.stderr[-4000:]}")
    return json.loads(p.stdout)


def _f(x, nd=2):
    return "–" if x is None else f"{x:.{nd}f}"


def summary_md(name: str, labels_note: str, results: dict[str, dict], utk: dict[str, dict | None],
               commands: list[str]) -> str:
    """The README of OUT: one row per (model, set), then MAE per decade."""
    ranged = any(r.get("age_range") for r in results.values())
    lines = [f"# {name}: shipped models beside the UTKFace test split", "",
             f"Data: {labels_note}. One thread (`OMP_NUM_THREADS=1`), this repository's CPU.", ""]
    if ranged:
        lines += ["The set labels ages as ranges: *in range* is the share of predictions inside a face's "
                  "range, *to range* the mean distance (years) from the prediction to it (0 inside). MAE and "
                  "CS(5) are against the `age` column: for a set with groups only (FairFace) that is the range's "
                  "middle, not an age.", ""]
    extra = " in range | to range |" if ranged else ""
    lines += ["| model | set | n | faces not found | MAE | CS(5) |" + extra,
              "|---|---|---|---|---|---|" + ("---|---|" if ranged else "")]

    def rng(r):
        a = r.get("age_range")
        return (f" {100 * a['in_range']:.1f} % | {_f(a['mae_to_range'])} |" if a else " – | – |") if ranged else ""

    for model, r in results.items():
        lines.append(f"| `{model}` | {name} | {r['n']} | {r.get('faces_not_found', '–')} | {_f(r['mae'])} | "
                     f"{_f(r['cs5'], 3)} |" + rng(r))
        u = utk.get(model)
        if u:
            lines.append(f"| `{model}` | UTKFace test split (bench/eval-groups) | {u['n']} | "
                         f"{u.get('faces_not_found', '–')} | {_f(u['mae'])} | {_f(u['cs5'], 3)} |" + rng(u))
    for by in dict.fromkeys(b for r in results.values() for b in (r.get("groups") or {}) if b != "decade"):
        cols = [(m, r["groups"][by]["groups"]) for m, r in results.items() if by in (r.get("groups") or {})]
        keys = list(dict.fromkeys(k for _, g in cols for k in g))
        what = "in range, years to the range" if ranged else "MAE"
        lines += ["", f"By {by} ({what}; n in brackets):", "",
                  f"| {by} | " + " | ".join(f"`{m}`" for m, _ in cols) + " |", "|---|" + "---|" * len(cols)]
        for k in keys:
            cells = []
            for _, g in cols:
                v = g.get(k)
                cells.append("–" if not v else f"{100 * v['in_range']:.1f} %, {_f(v['mae_to_range'])} ({v['n']})"
                             if "in_range" in v else f"{_f(v['mae'])} ({v['n']})")
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
    decades = []
    for r in list(results.values()) + [u for u in utk.values() if u]:
        for d in (r.get("per_decade") or {}):
            if d not in decades:
                decades.append(d)
    decades.sort(key=lambda d: int(d.split("-")[0]) if d.split("-")[0].isdigit() else 10 ** 6)
    if decades and not ranged:  # decades of a range's middle say little
        cols = [(m, name, r) for m, r in results.items()] + [(m, "UTKFace", u) for m, u in utk.items() if u]
        lines += ["", "MAE by decade of the true age (n in brackets):", "",
                  "| decade | " + " | ".join(f"`{m}` {s}" for m, s, _ in cols) + " |",
                  "|---|" + "---|" * len(cols)]
        for d in decades:
            cells = []
            for _, _, r in cols:
                v = (r.get("per_decade") or {}).get(d)
                cells.append(f"{_f(v['mae'])} ({v['n']})" if v else "–")
            lines.append(f"| {d} | " + " | ".join(cells) + " |")
    lines += ["", "Commands:", ""] + [f"    {c}" for c in commands] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name", help="the set's name, e.g. fgnet (the folder under bench/cross-dataset/)")
    ap.add_argument("labels", type=Path, help="the set's labels.csv (path, age[, ...])")
    ap.add_argument("--models", default=None, help="comma list (default: every shipped model, the default first)")
    ap.add_argument("--by", action="append", default=None, help="eval --by groups (default: decade)")
    ap.add_argument("--out", type=Path, help="default: bench/cross-dataset/NAME")
    ap.add_argument("--note", default=None, help="one line describing the data, for the README")
    ap.add_argument("eval_args", nargs="*", help="more `edgeage eval` options, after --")
    a = ap.parse_args(argv)
    from edgeage.checkpoint import shipped_names

    out = a.out or ROOT / "bench" / "cross-dataset" / a.name
    out.mkdir(parents=True, exist_ok=True)
    by = a.by or ["decade"]
    models = [m.strip() for m in a.models.split(",") if m.strip()] if a.models else shipped_names()
    results, utk, commands = {}, {}, []
    for m in models:
        cmd = (f"OMP_NUM_THREADS=1 edgeage eval --model {m} --data {a.labels} --json "
               + " ".join(f"--by {b}" for b in by) + (" " + " ".join(a.eval_args) if a.eval_args else ""))
        print(cmd, flush=True)
        r = run_eval(m, a.labels, by, a.eval_args)
        (out / f"{m}.json").write_text(json.dumps(r, indent=1) + "\n")
        results[m], commands = r, commands + [cmd]
        ref = ROOT / "bench" / "eval-groups" / m / "eval.json"
        utk[m] = json.loads(ref.read_text()) if ref.is_file() else None
        print(f"  {m}: n {r['n']}, MAE {r['mae']:.3f}, CS(5) {r['cs5']:.3f}, "
              f"faces not found {r.get('faces_not_found')}", flush=True)
    note = a.note or f"`{a.labels.name}` of the {a.name} cache folder"
    (out / "README.md").write_text(summary_md(a.name, note, results, utk, commands))
    print(f"wrote {out}/README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
