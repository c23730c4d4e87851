"""The model-families table (issue 15): for each trained family checkpoint, in one run,

- params and MACs (``edgeage.profile``; mivolo at its 128 px crop = two 64 px views);
- MAE / CS(5) on the checkpoint's test split, clean and degraded (``edgeage eval --split test
  [--degrade-p 0.2]``, the same protocol as the shipped model's row in the README);
- ``edgeage bench`` on N test faces: every target x precision (fp32, INT8 PTQ): size, MAE drift,
  p50 latency (1 thread, batch 1) and its ratio to PyTorch eager, pass/fail against the target
  TOML's thresholds, ExecuTorch XNNPACK segments.

    python scripts/families_bench.py [--data ../shared/datasets/utkface] [--limit 300] \
        [--out bench/families] NAME=CKPT [NAME=CKPT ...]

Writes OUT/<name>/bench.{json,md,html} (edgeage bench), OUT/<name>/eval*.json and OUT/table.md,
OUT/table.json (the README's families table). Each command runs in its own process."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = (("onnx", "fp32"), ("onnx", "int8"), ("openvino", "fp32"), ("openvino", "int8"),
         ("tflite", "fp32"), ("tflite", "int8"), ("executorch", "fp32"), ("executorch", "int8"))


def edgeage(*args) -> dict:
    p = subprocess.run([sys.executable, "-m", "edgeage.cli", *map(str, args)], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"edgeage {' '.join(map(str, args[:3]))} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout)


def profile(ckpt: str) -> dict:
    from edgeage.checkpoint import load_model
    from edgeage.profile import count_macs, count_params

    model, manifest = load_model(ckpt)
    size = int(model.config["input_size"])
    return {"model": manifest["model"]["name"], "head": model.head.kind, "params": count_params(model),
            "macs": count_macs(model, size), "input_size": size,
            "crop_margin": manifest["preprocess"]["crop"]["margin"],
            "epochs": manifest.get("training", {}).get("epoch")}


def cell(r: dict | None) -> str:
    if r is None:
        return "–"
    if "error" in r:
        return "FAIL: " + r["error"][:60]
    seg = r.get("runtime", {}).get("xnnpack_segments")
    ratio = (r.get("latency_ratio") or {}).get("p50")
    p50 = (r.get("latency_ms") or {}).get("p50")
    parts = [f"{r['size_bytes'] / 1e6:.2f} MB", f"drift {r['mae_drift']:+.2f}"]
    if p50:
        parts.append(f"{p50:.2f} ms ({ratio:.2f}x)")
    if seg is not None:
        parts.append(f"{seg} seg")
    return ("✓ " if r["passed"] else "✗ ") + ", ".join(parts)


def table(results: dict) -> str:
    lines = ["| family | model / head | params | MACs | test MAE / CS(5) | degraded MAE / CS(5) |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        p, c, d = r["profile"], r["eval"], r["eval_degraded"]
        lines.append(f"| {name} | {p['model']} / {p['head']} | {p['params'] / 1e6:.2f} M | {p['macs'] / 1e6:.0f} M "
                     f"@ {p['input_size']} | {c['mae']:.2f} / {c['cs5']:.3f} | {d['mae']:.2f} / {d['cs5']:.3f} |")
    lines += ["", "| family | " + " | ".join(f"{t} {p}" for t, p in ORDER) + " |",
              "|---|" + "---|" * len(ORDER)]
    for name, r in results.items():
        rows = {(x["target"], x["precision"]): x for x in r["bench"]["rows"]}
        lines.append(f"| {name} | " + " | ".join(cell(rows.get(k)) for k in ORDER) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="NAME=CKPT")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "utkface"))
    ap.add_argument("--limit", type=int, default=300, help="test faces per bench (exports, drift, latency)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "families"))
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results, t0 = {}, time.time()
    for item in a.models:
        name, _, ckpt = item.partition("=")
        if not ckpt or not Path(ckpt).is_file():
            raise SystemExit(f"{item!r}: give NAME=CKPT with an existing checkpoint file")
        d = out / name
        d.mkdir(exist_ok=True)
        r = {"checkpoint": ckpt, "profile": profile(ckpt)}
        for key, extra in (("eval", ()), ("eval_degraded", ("--degrade-p", 0.2))):
            r[key] = edgeage("eval", "--model", ckpt, "--data", a.data, "--split", "test", *extra, "--json")
            (d / f"{key}.json").write_text(json.dumps(r[key], indent=1))
        r["bench"] = edgeage("bench", "--model", ckpt, "--data", a.data, "--split", "test", "--limit", a.limit,
                             "--out", d, "--json")
        results[name] = r
        print(f"{name}: done at {time.time() - t0:.0f} s", file=sys.stderr)
        (out / "table.json").write_text(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "bench"} | {
            "rows": [{x: row.get(x) for x in ("target", "precision", "passed", "size_bytes", "mae_drift", "latency_ms",
                                               "latency_ratio", "error")} | {
                "segments": row.get("runtime", {}).get("xnnpack_segments")} for row in v["bench"]["rows"]]}
            for k, v in results.items()}, indent=1))
        (out / "table.md").write_text(table(results))
    print((out / "table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
