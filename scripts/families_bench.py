"""The model-families table (issue 15): for each trained family checkpoint, in one run,

- params and MACs (``edgeage.profile``; mivolo at its 128 px crop = two 64 px views);
- MAE / CS(5) on the checkpoint's test split, clean and degraded (``edgeage eval --split test
  [--degrade-p 0.2]``, the same protocol as the shipped model's row in the README);
- ``edgeage bench`` on N test faces: every target x precision (fp32, INT8 PTQ): size, MAE drift,
  p50 latency (1 thread, batch 1) and its ratio to PyTorch eager, pass/fail against the target
  TOML's thresholds, ExecuTorch XNNPACK segments.

    python scripts/families_bench.py [--data ../shared/datasets/utkface] [--limit 300] \
        [--out bench/families] NAME=CKPT [NAME=CKPT ...]

Writes OUT/<name>/bench.{json,md,html} (edgeage bench), OUT/<name>/eval*.json, profile.json and
OUT/table.md, OUT/table.json (the README's families table, over every finished OUT/<name>/, so
families can be run one at a time). Each command runs in its own process."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from edgeage.utils import python_module_cmd
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAMILY_ORDER = ("drf-mgpnet-xs", "al-resnet", "mivolo-face", "mivolo", "swinface-age")
ORDER = (("onnx", "fp32"), ("onnx", "int8"), ("openvino", "fp32"), ("openvino", "int8"),
         ("tflite", "fp32"), ("tflite", "int8"), ("executorch", "fp32"), ("executorch", "int8"))


def edgeage(*args, ok=(0,)) -> dict:
    p = subprocess.run(python_module_cmd("edgeage.cli", *args), capture_output=True, text=True)
    if p.returncode not in ok:
        raise SystemExit(f"edgeage {' '.join(map(str, args[:3]))} failed:\n{p.stderr[-3000:]}")
    try:
        return json.loads(p.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"edgeage {' '.join(map(str, args[:3]))} exited {p.returncode} without its JSON:\n"
                         f"{p.stderr[-3000:]}") from None


def profile(ckpt: str) -> dict:
    from edgeage.checkpoint import load_model
    from edgeage.profile import count_macs, count_params

    model, manifest = load_model(ckpt)
    size = int(model.config["input_size"])
    return {"model": manifest.model.name, "head": model.head.kind, "params": count_params(model),
            "macs": count_macs(model, size), "input_size": size,
            "crop_margin": manifest.crop.margin,
            "epochs": manifest.training.epoch}


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


def summary(name: str, r: dict) -> str:
    """One README row: size, accuracy, the worst INT8 drift over the targets, OpenVINO INT8 p50."""
    p, c, d = r["profile"], r["eval"], r["eval_degraded"]
    rows = {(x["target"], x["precision"]): x for x in r["bench"]["rows"]}
    int8 = [x for (t, q), x in rows.items() if q == "int8" and "error" not in x]
    ov = rows.get(("openvino", "int8"), {})
    et = [rows.get(("executorch", q), {}).get("runtime", {}).get("xnnpack_segments") for q in ("fp32", "int8")]
    passed = sum(bool(x.get("passed")) for x in rows.values())
    drift = max((abs(x["mae_drift"]) for x in int8), default=float("nan"))
    p50 = (ov.get("latency_ms") or {}).get("p50")
    ratio = (ov.get("latency_ratio") or {}).get("p50")
    return (f"| {name} | {p['params'] / 1e6:.2f} M / {p['macs'] / 1e6:.0f} M | {c['mae']:.2f} / {c['cs5']:.3f} | "
            f"{d['mae']:.2f} | {drift:.2f} | " + (f"{p50:.2f} ms ({ratio:.2f}x) | " if p50 else "– | ")
            + f"{et[0]} / {et[1]} | {passed} / {len(rows)} |")


SUMMARY_HEAD = ("| family | params / MACs | test MAE / CS(5) | degraded MAE | INT8 drift (max of 4 targets) | "
                "OpenVINO INT8 p50 (vs PyTorch) | ExecuTorch segments fp32 / int8 | rows passed |\n"
                "|---|---|---|---|---|---|---|---|")


def table(results: dict) -> str:
    lines = [SUMMARY_HEAD] + [summary(n, r) for n, r in results.items()]
    lines += ["", "| family | model / head | params | MACs | test MAE / CS(5) | degraded MAE / CS(5) |",
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


def collect(out: Path, first: list[str]) -> dict:
    """Every OUT/<name>/ with a finished run (profile, evals, bench): the names given in their order, then the rest."""
    done = {d.name: d for d in sorted(out.iterdir()) if (d / "bench.json").is_file() and (d / "profile.json").is_file()}
    names = [n for n in first if n in done] + [n for n in done if n not in first]
    return {n: {"profile": json.loads((done[n] / "profile.json").read_text()),
                "eval": json.loads((done[n] / "eval.json").read_text()),
                "eval_degraded": json.loads((done[n] / "eval_degraded.json").read_text()),
                "bench": json.loads((done[n] / "bench.json").read_text())} for n in names}


def write_table(out: Path, results: dict) -> None:
    keep = ("target", "precision", "passed", "size_bytes", "mae_drift", "age_abs_diff_max", "latency_ms",
            "latency_ratio", "error")
    (out / "table.json").write_text(json.dumps({n: {"profile": r["profile"], "eval": r["eval"],
                                                    "eval_degraded": r["eval_degraded"],
                                                    "rows": [{k: row.get(k) for k in keep} | {
                                                        "segments": row.get("runtime", {}).get("xnnpack_segments")}
                                                        for row in r["bench"]["rows"]]}
                                                for n, r in results.items()}, indent=1))
    (out / "table.md").write_text(table(results))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", help="NAME=CKPT (none: only rebuild the table from OUT)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "utkface"))
    ap.add_argument("--limit", type=int, default=300, help="test faces per bench (exports, drift, latency)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "families"))
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for item in a.models:
        name, _, ckpt = item.partition("=")
        if not ckpt or not Path(ckpt).is_file():
            raise SystemExit(f"{item!r}: give NAME=CKPT with an existing checkpoint file")
    for item in a.models:
        name, _, ckpt = item.partition("=")
        d = out / name
        d.mkdir(exist_ok=True)
        (d / "profile.json").write_text(json.dumps({"checkpoint": ckpt, **profile(ckpt)}, indent=1))
        for key, extra in (("eval", ()), ("eval_degraded", ("--degrade-p", 0.2))):
            res = edgeage("eval", "--model", ckpt, "--data", a.data, "--split", "test", *extra, "--json")
            (d / f"{key}.json").write_text(json.dumps(res, indent=1))
        # exit 1: some row failed its checks, a result like the others (the table shows which);
        # --force: OUT/NAME already holds this script's own profile and eval files
        edgeage("bench", "--model", ckpt, "--data", a.data, "--split", "test", "--limit", a.limit, "--out", d, "--force", "--json",
                ok=(0, 1))
        print(f"{name}: done at {time.time() - t0:.0f} s", file=sys.stderr)
    write_table(out, collect(out, list(FAMILY_ORDER) + [m.partition("=")[0] for m in a.models]))
    print((out / "table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
