"""Check and bench reports: terminal text, JSON, Markdown and PNG charts (matplotlib Agg; every
file written atomically)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeage.utils import atomic_path, output_dir, write_json

STDOUT_DROP = ("per_image", "latency", "float_latency")  # kept in report.json, not in --json output


def _f(v, fmt: str = ".4f") -> str:
    return "-" if v is None else format(v, fmt)


def _mb(n) -> str:
    return "-" if n is None else f"{n / 2**20:.2f} MB"


def md_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def compact(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in STDOUT_DROP}


def check_text(r: dict) -> str:
    """Human summary of a check report (also the body of report.md)."""
    lines = [f"# Conformance check: {r['target']} {r['precision']}", "",
             f"model {r['model']} (sha256 {r['model_sha256'][:12]}); data {r['data']}; n = {r['n']}"
             + (f"; faces not found {r['faces_not_found']}" if r["faces_not_found"] is not None else ""),
             f"artifact {r['artifact'] or '(temporary export)'}: {_mb(r['size_bytes'])} "
             f"(float32 weights {_mb(r['float_size_bytes'])}); runtime: "
             + ", ".join(f"{k}={v}" for k, v in r["runtime"].items()), ""]
    if r.get("note"):
        lines += [f"NOTE: {r['note']}", ""]
    rows = [["MAE", _f(r["float_mae"]), _f(r["target_mae"]), _f(r["mae_drift"], "+.5f")],
            ["CS(5)", _f(r["float_cs5"]), _f(r["target_cs5"]), ""],
            ["abs(delta age) p50 / p99 / max", "", f"{r['age_abs_diff_p50']:.5f} / {r['age_abs_diff_p99']:.5f} / "
             f"{r['age_abs_diff_max']:.5f}", ""],
            ["arg-max bin agreement", "", _f(r["argmax_agreement"]), ""],
            ["max abs logit diff", "", _f(r["logit_abs_diff_max"], ".3g"), ""]]
    lines += [md_table(["metric", "float (PyTorch)", r["target"], "drift"], rows), ""]
    if r["latency_ms"]:
        lt, fl = r["latency"], r["float_latency"]
        rows = [[name, f"{d['p50']:.3f}", f"{d['p90']:.3f}", f"{d['p99']:.3f}", f"{d['min']:.3f}", f"{d['max']:.3f}",
                 " ".join(f"{v:.3f}" for v in d["round_p50"]), f"{m['delta_mb']:.0f} / {m['peak_rss_mb']:.0f}"]
                for name, d, m in ((r["target"], lt, lt["memory"]), ("pytorch eager", fl, fl["memory"]))]
        lines += [f"Latency, batch 1, {r['threads']} thread(s), {lt['rounds']} rounds x {lt['runs']} runs "
                  f"after {lt['warmup']} warm-up (ms); memory in MB ({lt['memory']['method']})", "",
                  md_table(["model", "p50", "p90", "p99", "min", "max", "p50 per round", "mem delta / peak"], rows),
                  "", f"ratio {r['target']} / pytorch: p50 {r['latency_ratio']['p50']:.2f}x, "
                  f"p90 {r['latency_ratio']['p90']:.2f}x", ""]
    rows = [[t["threshold"], f"{t['value']:.6g}", f"{t['op']} {t['limit']:g}", "pass" if t["passed"] else "FAIL"]
            for t in r["threshold_results"]]
    lines += [f"Thresholds ({r['spec_file']}, [thresholds.{r['precision']}])", "",
              md_table(["threshold", "value", "limit", "verdict"], rows), ""]
    if r["skipped_thresholds"]:
        lines += [f"skipped (no labels / not judged on generated images): {', '.join(r['skipped_thresholds'])}", ""]
    if r.get("quantize"):
        q = r["quantize"]
        cal = q.get("calibration") or {}
        where = f"{cal.get('kind', 'training-split')}, {cal['source']}" if cal.get("source") else \
            cal.get("kind", "training-split")
        overlap = r.get("calibration_overlap")
        lines += [f"INT8 {r.get('variant')}: backend {q.get('backend')}, {q.get('calibration_images')} calibration "
                  f"images ({where}); judged images among them: "
                  f"{'not recorded' if overlap is None else overlap}; layers kept float: "
                  f"{', '.join(q.get('kept_float') or []) or 'none'}", ""]
    if r.get("qat_bar"):
        b = r["qat_bar"]
        lines += [f"QAT acceptance (|MAE drift| <= {b['mae_drift_limit']:g}): "
                  + ("n/a (no labels)" if b["holds"] is None else "holds" if b["holds"] else
                     f"does NOT hold (|{b['mae_drift']:+.4f}|)"), ""]
    if "localize" in r:
        lines += localize_text(r["localize"])
    if "op_profile" in r:
        lines += op_profile_text(r["op_profile"])
    lines.append("PASSED" if r["passed"] else "FAILED: " + "; ".join(r["failures"]))
    return "\n".join(lines)


def op_profile_text(p: dict, top: int = 15) -> list[str]:
    if not p["available"]:
        return [f"Per-op timing: {p['note']}", ""]
    items = list(p["by_op_type_ms"].items())
    rows = [[k, f"{v:.4f}", f"{v / p['total_ms']:.1%}"] for k, v in items[:top]]
    if len(items) > top:
        rest = sum(v for _, v in items[top:])
        rows.append([f"({len(items) - top} more)", f"{rest:.4f}", f"{rest / p['total_ms']:.1%}"])
    return [f"Per-op timing by the runtime's profiler, {p['runs']} batch-1 runs: {p['total_ms']:.3f} ms "
            "per inference in the ops (profiling adds its own overhead per op: read the shares, "
            "compare absolute times with the latency table)", "",
            md_table(["op type", "ms / inference", "share"], rows), ""]


def localize_text(loc: dict) -> list[str]:
    if not loc.get("supported"):
        return [f"Drift localisation: {loc.get('reason')}", ""]
    rows = [[x["layer"], f"{x['max_abs_diff']:.3g}", f"{x['rel_error']:.3g}",
             f"x{x['jump']:.1f}" if x["jump"] else ""] for x in loc["layers"]]
    head = (f"Drift localisation on {loc['n_images']} images: {loc['compared']} of {loc['float_layers']} float "
            f"layers matched; relative error = {loc['rel_error']}. ")
    head += (f"First jump (> x{loc['jump_factor']:g} the worst before, above {loc['rel_floor']:g}): "
             f"{loc['first_jump']}; all jumps: {', '.join(loc['jumps'])}" if loc["jumps"] else "No layer jumps.")
    return [head, "", md_table(["layer", "max abs diff", "relative error", "jump"], rows), ""]


def _savefig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _json_md(out_dir, stem: str, obj: dict, text: str, force: bool = False) -> Path:
    """<stem>.json and <stem>.md in out_dir (created; see edgeage.utils.output_dir), each written
    atomically."""
    out = output_dir(out_dir, force)
    write_json(out / f"{stem}.json", obj)
    with atomic_path(out / f"{stem}.md") as tmp:
        tmp.write_text(text + "\n")
    return out


def write_check_report(out_dir, r: dict, force: bool = False) -> list[Path]:
    out = _json_md(out_dir, "report", r, check_text(r), force)
    plt = _plt()
    d = np.abs(np.asarray(r["per_image"]["age_target"]) - np.asarray(r["per_image"]["age_float"]))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(d, bins=40)
    ax.set_xlabel(f"|age {r['target']} - age float| (years)")
    ax.set_ylabel("images")
    ax.set_title(f"{r['target']} {r['precision']}: p99 {r['age_abs_diff_p99']:.4f}, max {r['age_abs_diff_max']:.4f}")
    fig.tight_layout()
    _savefig(fig, out / "age_abs_diff_hist.png")
    files = [out / "report.json", out / "report.md", out / "age_abs_diff_hist.png"]
    if r["latency"]:
        fig, ax = plt.subplots(figsize=(7, 4))
        groups = [(name, rnd) for name, d in ((r["target"], r["latency"]), ("pytorch", r["float_latency"]))
                  for rnd in d["samples_ms"]]
        ax.boxplot([g[1] for g in groups], showfliers=True)
        ax.set_xticks(range(1, len(groups) + 1), [f"{n}\nround {i % len(r['latency']['samples_ms']) + 1}"
                                                  for i, (n, _) in enumerate(groups)], fontsize=7)
        ax.set_ylabel("latency (ms), batch 1")
        ax.set_title(f"{r['target']} {r['precision']} vs PyTorch eager, {r['threads']} thread(s)")
        fig.tight_layout()
        _savefig(fig, out / "latency.png")
        files.append(out / "latency.png")
    return files


def bench_rows(b: dict) -> tuple[list[str], list[list]]:
    headers = ["target", "precision", "size", "MAE", "MAE drift", "abs(delta age) p99", "p50 ms", "p90 ms",
               "p50 vs pytorch", "size / p50 vs fp32", "result"]
    rows = []
    for th, fl in b["float"]["latency_ms_by_threads"].items():
        rows.append([f"pytorch eager ({th} thr)", "fp32", _mb(b["float"]["size_bytes"]), _f(b["float"]["mae"]),
                     "", "", f"{fl['p50']:.3f}", f"{fl['p90']:.3f}", "1.00x", "", "reference"])
    for r in b["rows"]:
        if "error" in r:
            rows.append([r["target"], r["precision"]] + [""] * 8 + ["ERROR: " + " ".join(r["error"].split())[:300]])
            continue
        lt = r["latency_ms"] or {}
        vs = r.get("vs_fp32") or {}
        qat = r.get("qat_bar")
        result = "pass" if r["passed"] else "FAIL: " + "; ".join(f.split(":")[0] for f in r["failures"])
        if qat and qat["holds"] is not None:
            result += f" (QAT bar {qat['mae_drift_limit']:g}: {'holds' if qat['holds'] else 'missed'})"
        rows.append([r["target"], r.get("variant", r["precision"]), _mb(r["size_bytes"]), _f(r["target_mae"]),
                     _f(r["mae_drift"], "+.4f"), _f(r["age_abs_diff_p99"]), _f(lt.get("p50"), ".3f"),
                     _f(lt.get("p90"), ".3f"),
                     f"{r['latency_ratio']['p50']:.2f}x" if r["latency_ratio"] else "-",
                     (f"{vs['size_ratio']:.2f}x / " + (f"{vs['p50_ratio']:.2f}x" if vs.get("p50_ratio") else "-"))
                     if vs else "", result])
    return headers, rows


def bench_text(b: dict) -> str:
    headers, rows = bench_rows(b)
    lines = ["# edgeage bench", "", f"model {b['model']} (sha256 {b['model_sha256'][:12]}); data {b['data']}; "
             f"n = {b['n']}" + ("" if b["labelled"] else " (unlabelled: no MAE)"), "", md_table(headers, rows), ""]
    if b["skipped"]:
        lines += ["Skipped (precision not supported by the target's TOML): " + "; ".join(b["skipped"]), ""]
    lines.append("Latency: batch 1, thread count from each TOML, each model in a fresh process; "
                 "'p50 vs pytorch' = target p50 / PyTorch eager p50 measured in the same run.")
    return "\n".join(lines)


def write_bench(out_dir, b: dict, force: bool = False) -> list[Path]:
    out = _json_md(out_dir, "bench", b, bench_text(b), force)
    plt = _plt()
    floats = [(f"pytorch ({t} thr)", fl) for t, fl in b["float"]["latency_ms_by_threads"].items()]
    bars = floats + [(f"{r['target']}\n{r.get('variant', r['precision'])}", r["latency_ms"]) for r in b["rows"]
                     if r.get("latency_ms")]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(bars)), 4))
    x = np.arange(len(bars))
    ax.bar(x, [v["p50"] for _, v in bars], yerr=[[0] * len(bars), [v["p90"] - v["p50"] for _, v in bars]],
           capsize=3, color=["grey"] * len(floats) + ["C0"] * (len(bars) - len(floats)))
    ax.set_xticks(x, [n for n, _ in bars], fontsize=8)
    ax.set_ylabel("latency p50 (ms), whisker to p90")
    ax.set_title("batch-1 latency")
    fig.tight_layout()
    _savefig(fig, out / "bench_latency.png")
    return [out / "bench.json", out / "bench.md", out / "bench_latency.png"]
