"""The best public peer of the issue's table, face-api.js (2019), beside a shipped model, on the same
photos, in one run: each through its own pipeline (face-api.js: its SSD MobileNetV1 detector, 68
landmarks and AgeGenderNet; edgeage: ``edgeage eval``'s detector and canonical crop).

face-api.js was trained on 80 % of UTKFace and of FG-NET (its README: "UTK, FGNET, Chalearn, Wiki,
IMDB*, CACD*, MegaAge, MegaAge-Asian ... with an 80/20 train/test split each"), so on those two sets
its figures are flattered by faces it may have seen; the FairFace sample is the set neither saw.

The peer runs under Node.js from an npm cache outside the repository (nothing here downloads it):

    npm install --prefix ~/.cache/edgeage/peers/faceapi @vladmandic/face-api@1.7.15 \
        @tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-wasm@4.22.0
    python scripts/peers/faceapi.py fairface-sample ~/.cache/edgeage/datasets/fairface-sample/labels.csv \
        --by age_group --by gender
    python scripts/peers/faceapi.py fgnet ~/.cache/edgeage/datasets/fgnet/labels.csv --by decade
    python scripts/peers/faceapi.py utk-test ../shared/datasets/utkface --split test --by decade

Writes ``OUT/<name>.json`` (both models' MAE, CS(5), in-range share where the set gives ranges, the
paired difference with a bootstrap interval) and ``OUT/README.md`` (every set measured so far).
No per-image file is written: it would list the cache's paths.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
NODE_CACHE = Path(os.environ.get("EDGEAGE_FACEAPI", Path.home() / ".cache/edgeage/peers/faceapi"))
# face-api.js's README: "trained and tested on ... UTK, FGNET, Chalearn, Wiki, IMDB*, CACD*, MegaAge,
# MegaAge-Asian with an 80/20 train/test split each". The report names of sets drawn from those.
PEER_TRAINED_ON = {"utk-test": "UTKFace (80 % of it)", "fgnet": "FG-NET (80 % of it)"}
INSTALL = ("npm install --prefix ~/.cache/edgeage/peers/faceapi @vladmandic/face-api@1.7.15 "
           "@tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-wasm@4.22.0")


def peer_modules() -> Path:
    """The npm cache's node_modules holding face-api.js, or exit naming the folder and the install."""
    mods = NODE_CACHE / "node_modules"
    if not (mods / "@vladmandic/face-api/model").is_dir():
        sys.exit(f"face-api.js is not in {NODE_CACHE}: {INSTALL} (or set EDGEAGE_FACEAPI to its folder)")
    return mods


def run_peer(files: list[str], keys: list[str], work: Path) -> dict[str, dict]:
    from edgeage.data import load_image

    mods = peer_modules()
    items = []
    for i, (f, k) in enumerate(zip(files, keys)):
        img = load_image(f)  # RGB uint8, EXIF orientation applied, as edgeage reads it
        raw = work / f"{i:06d}.rgb"
        raw.write_bytes(np.ascontiguousarray(img).tobytes())
        items.append({"key": k, "file": str(raw), "h": int(img.shape[0]), "w": int(img.shape[1])})
    (work / "index.json").write_text(json.dumps({"images": items}))
    out = work / "peer.jsonl"
    subprocess.run(["node", str(Path(__file__).with_name("faceapi_age.cjs")), str(work / "index.json"), str(out)],
                   check=True, env={**os.environ, "NODE_PATH": str(mods)})
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return {r["key"]: r for r in rows}


def paired(err_ours: np.ndarray, err_peer: np.ndarray, seed: int = 0, n: int = 2000) -> dict:
    """Mean of err_peer - err_ours over the same faces (errors >= 0: absolute error, or years to the
    age group), with a 95 % bootstrap interval over faces; above 0: ours is better."""
    d = np.asarray(err_peer, np.float64) - np.asarray(err_ours, np.float64)
    rng = np.random.default_rng(seed)
    boots = np.array([d[rng.integers(0, len(d), len(d))].mean() for _ in range(n)])
    return {"mae_peer_minus_ours": float(d.mean()), "ci95": [float(np.quantile(boots, 0.025)),
                                                            float(np.quantile(boots, 0.975))]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name", help="the set's name in the report (fairface-sample, fgnet, utk-test)")
    ap.add_argument("data", help="a labels.csv (path, age[, age_min, age_max]) or a UTKFace folder")
    ap.add_argument("--model", default="mgpnet-xs96", help="the shipped model beside the peer")
    ap.add_argument("--split", default="all", help="all, or the part of the model's own split (test)")
    ap.add_argument("--by", action="append", default=[],
                    help="also per group: decade (of the true age) or a column of the CSV (age_group)")
    ap.add_argument("--out", default=str(ROOT / "bench/peer-faceapi"))
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from edgeage.data import discover
    from edgeage.evaluate import evaluate, load_eval_data
    from edgeage.groups import age_ranges
    from edgeage.metrics import cs, mae, range_metrics
    from edgeage.checkpoint import model_path as resolve_model_path
    from edgeage.pipeline import AgeEstimator

    peer_modules()  # before our model runs
    model_path = resolve_model_path(args.model)
    res, names, true, ours = evaluate(model_path, args.data, split=args.split, progress=True)
    true, ours = np.asarray(true, np.float64), np.asarray(ours, np.float64)
    # the same prepared faces (cached) for their CSV columns and age ranges, read as edgeage eval reads them
    prep, idx = load_eval_data(AgeEstimator.from_checkpoint(model_path), args.data, args.split, progress=False)
    assert [prep.names[i] for i in idx] == list(names)
    groups = {col: group_values(prep, idx, true, col, args.data) for col in args.by}  # before the peer runs
    path_of = {os.path.basename(s.path): s.path for s in discover(args.data)[0]}
    with tempfile.TemporaryDirectory(prefix="edgeage-faceapi-") as tmp:
        peer_rows = run_peer([path_of[n] for n in names], names, Path(tmp))
    peer = np.array([peer_rows[n]["age"] for n in names], np.float64)
    lo, hi = age_ranges(prep, idx, args.data) or (None, None)

    def err(pred):  # years: to the age group where the set gives groups, else the absolute error
        return np.maximum(lo - pred, 0) + np.maximum(pred - (hi + 1), 0) if lo is not None else np.abs(pred - true)

    def scores(pred, not_found):
        s = {"mae": mae(pred, true), "cs5": cs(pred, true, 5.0), "faces_not_found": int(not_found)}
        if lo is not None:
            s["age_range"] = range_metrics(pred, lo, hi)
        return s

    out = {"set": args.name, "data": str(args.data), "split": args.split, "n": len(names),
           "peer_trained_on": PEER_TRAINED_ON.get(args.name),
           "ours": {"model": args.model, **scores(ours, res["faces_not_found"])},
           "peer": {"model": "face-api.js AgeGenderNet (@vladmandic/face-api 1.7.15, its bundled weights)",
                    **scores(peer, sum(not peer_rows[n]["found"] for n in names))},
           "paired": paired(np.abs(ours - true), np.abs(peer - true))}
    if lo is not None:
        out["paired_to_range"] = paired(err(ours), err(peer))
    out["groups"] = {col: per_group(v, err(ours), err(peer)) for col, v in groups.items()}
    od = Path(args.out)
    od.mkdir(parents=True, exist_ok=True)
    (od / f"{args.name}.json").write_text(json.dumps(out, indent=1) + "\n")
    write_readme(od)
    print(json.dumps(out, indent=1))


def group_values(prep, idx, true: np.ndarray, col: str, data: str) -> list[str]:
    """Each face's group: its decade (of the true age) or a column of the data set's CSV."""
    if col == "decade":
        return [f"{int(a // 10) * 10}-{int(a // 10) * 10 + 9}" for a in true]
    if not prep.groups or col not in prep.groups:
        sys.exit(f"--by {col}: {data} has no such column")
    return [prep.groups[col][i] for i in idx]


def group_order(value: str) -> tuple:
    """Groups in reading order: by their leading number (0-2, 3-9, 10-19, ..., 70+), then by name."""
    import re

    m = re.match(r"\s*(\d+)", value)
    return (0, int(m.group(1)), value) if m else (1, 0, value)


def per_group(values: list[str], err_ours: np.ndarray, err_peer: np.ndarray) -> dict:
    """Per group value: n and each model's mean error (years: absolute error, or to the age group)."""
    v = np.asarray(values, dtype=object)
    return {g: {"n": int((v == g).sum()), "ours": float(err_ours[v == g].mean()),
                "peer": float(err_peer[v == g].mean())} for g in dict.fromkeys(values)}


def write_readme(od: Path) -> None:
    lines = ["# face-api.js beside the shipped default, on the same photos",
             "",
             "Written by `scripts/peers/faceapi.py` (its docstring has the install line and the commands). "
             "Each model through its own pipeline: face-api.js (`@vladmandic/face-api` 1.7.15, MIT, its bundled "
             "2019 weights; SSD MobileNetV1, 68 landmarks, AgeGenderNet, the largest face; the centre square "
             "where it finds none) and edgeage (`edgeage eval`: BlazeFace, the canonical crop). face-api.js was "
             "trained on 80 % of UTKFace and of FG-NET (the *trained on* column), so it may have seen some of those "
             "faces; a set marked *no* is unseen by both. *Peer - ours*: the paired difference of the absolute errors (of the "
             "distance to the age group for FairFace), with a 95 % bootstrap interval over faces; above 0 means "
             "ours is better.",
             "",
             "| set | n | face-api.js trained on | ours | MAE / CS(5) | in range | face-api.js MAE / CS(5) | in range | faces not found (ours / peer) | peer - ours (95 % CI) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for f in sorted(od.glob("*.json")):
        r = json.loads(f.read_text())
        o, p = r["ours"], r["peer"]
        rng = lambda s: f"{100 * s['age_range']['in_range']:.1f} %, {s['age_range']['mae_to_range']:.2f} y" \
            if "age_range" in s else "–"  # noqa: E731
        d = r.get("paired_to_range", r["paired"])
        lines.append(f"| {r['set']} ({r['split']}) | {r['n']} | {r.get('peer_trained_on') or 'no'} | `{o['model']}` | {o['mae']:.2f} / {o['cs5']:.3f} | "
                     f"{rng(o)} | {p['mae']:.2f} / {p['cs5']:.3f} | {rng(p)} | {o['faces_not_found']} / "
                     f"{p['faces_not_found']} | {d['mae_peer_minus_ours']:+.2f} ({d['ci95'][0]:+.2f}..{d['ci95'][1]:+.2f}) |")
    lines += ["", "For a set with age groups (FairFace) MAE is against the group's middle, not an age; read "
              "*in range* (share inside the group) and the years to it."]
    for f in sorted(od.glob("*.json")):
        r = json.loads(f.read_text())
        unit = "years to the age group" if "paired_to_range" in r else "MAE"
        for col, g in r.get("groups", {}).items():
            lines += ["", f"{r['set']} by {col} ({unit}; n in brackets):", "",
                      f"| {col} | `{r['ours']['model']}` | face-api.js |", "|---|---|---|"]
            lines += [f"| {k} | {g[k]['ours']:.2f} ({g[k]['n']}) | {g[k]['peer']:.2f} |" for k in sorted(g, key=group_order)]
    (od / "README.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
