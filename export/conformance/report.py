"""Check and bench reports: terminal text, JSON, Markdown, one self-contained HTML page and PNG
charts (matplotlib Agg; every file written atomically).

The text of a report is built once, as a list of blocks (``Title``, ``Para``, ``Table``, ``Pre``); the
Markdown (report.md, the terminal) and the HTML (report.html, bench.html) are two renderings of the
same blocks, so they cannot drift apart. The HTML page embeds the PNG charts as data: URLs and has
no external references (CSS inline, no scripts); every string from a report is HTML-escaped.

A check report is an ``edgeage.check_report.CheckReport`` (written as its ``to_json_dict()``); a
bench (``b``) is a table, a dict whose ``rows`` are check reports' JSON objects (``check.bench_row``)
and error rows, read key by key."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np

from edgeage.document import Block, Para, Pre, Table, Title, esc, block_md, blocks_md, page_html  # noqa: F401
from edgeage.document import md_table  # noqa: F401 - re-exported (scripts import it from here)
from edgeage.document import plt_agg as _plt, savefig as _savefig, write_html as _write_html
from edgeage.check_report import CheckReport, Verdict
from edgeage.utils import atomic_path, output_dir, write_json

STDOUT_DROP = ("per_image", "latency", "float_latency")  # kept in report.json, not in --json output


def fmt_num(v, fmt: str = ".4f") -> str:
    return "-" if v is None else format(v, fmt)


def fmt_mb(n) -> str:
    return "-" if n is None else f"{n / 2**20:.2f} MB"


def _lines(blocks: list[Block]) -> list[str]:  # the old list-of-lines form (each block + "")
    return [x for b in blocks for x in (block_md(b), "")]


def compact(report: CheckReport) -> dict:
    """The report's JSON object for ``--json`` (stdout): without the per-image and raw latency data."""
    return compact_row(report.to_json_dict())


def compact_row(row: dict) -> dict:
    """A bench row (a report's JSON object, or an error row) for ``--json``: as ``compact``."""
    return {k: v for k, v in row.items() if k not in STDOUT_DROP}


def check_blocks(r: CheckReport) -> list[Block]:
    """The body of a check report (everything but the verdict line), as blocks."""
    blocks: list[Block] = [
        Title(f"Conformance check: {r.target} {r.precision}"),
        Para([f"model {r.model} (sha256 {r.model_sha256[:12]}); data {r.data}; n = {r.n}"
              + (f"; faces not found {r.faces_not_found}" if r.faces_not_found is not None else ""),
              f"artifact {r.artifact or '(temporary export)'}: {fmt_mb(r.size_bytes)} "
              f"(float32 weights {fmt_mb(r.float_size_bytes)}); runtime: "
              + ", ".join(f"{k}={v}" for k, v in r.runtime.items())])]
    if r.note:
        blocks.append(Para([f"NOTE: {r.note}"]))
    rows = [["MAE", fmt_num(r.float_mae), fmt_num(r.target_mae), fmt_num(r.mae_drift, "+.5f")],
            ["CS(5)", fmt_num(r.float_cs5), fmt_num(r.target_cs5), ""],
            ["abs(delta age) p50 / p99 / max", "", f"{r.age_abs_diff_p50:.5f} / {r.age_abs_diff_p99:.5f} / "
             f"{r.age_abs_diff_max:.5f}", ""],
            ["arg-max bin agreement", "", fmt_num(r.argmax_agreement), ""],
            ["max abs logit diff", "", fmt_num(r.logit_abs_diff_max, ".3g"), ""]]
    blocks.append(Table(["metric", "float (PyTorch)", r.target, "drift"], rows))
    if r.latency_ms:
        lt, fl = r.latency, r.float_latency
        rows = [[name, f"{d.p50:.3f}", f"{d.p90:.3f}", f"{d.p99:.3f}", f"{d.min:.3f}", f"{d.max:.3f}",
                 " ".join(f"{v:.3f}" for v in d.round_p50), f"{d.memory.delta_mb:.0f} / {d.memory.peak_rss_mb:.0f}"]
                for name, d in ((r.target, lt), ("pytorch eager", fl))]
        blocks += [Para([f"Latency, batch 1, {r.threads} thread(s), {lt.rounds} rounds x {lt.runs} runs "
                         f"after {lt.warmup} warm-up (ms); memory in MB ({lt.memory.method})"]),
                   Table(["model", "p50", "p90", "p99", "min", "max", "p50 per round", "mem delta / peak"], rows),
                   Para([f"ratio {r.target} / pytorch: p50 {r.latency_ratio.p50:.2f}x, "
                         f"p90 {r.latency_ratio.p90:.2f}x"])]
    rows = [[t.threshold, f"{t.value:.6g}", f"{t.op} {t.limit:g}", "pass" if t.passed else "FAIL"]
            for t in r.threshold_results]
    blocks += [Para([f"Thresholds ({r.spec_file}, [thresholds.{r.precision}])"]),
               Table(["threshold", "value", "limit", "verdict"], rows)]
    if r.skipped_thresholds:
        blocks.append(Para([f"skipped (no labels / not judged on generated images): "
                            f"{', '.join(r.skipped_thresholds)}"]))
    if r.quantize:
        q = r.quantize
        cal = q.calibration
        kind = cal.kind if cal and cal.has("kind") else "training-split"
        where = f"{kind}, {cal.source}" if cal and cal.source else kind
        overlap = r.calibration_overlap
        blocks.append(Para([f"INT8 {r.variant}: backend {q.backend}, {q.calibration_images} "
                            f"calibration images ({where}); judged images among them: "
                            f"{'not recorded' if overlap is None else overlap}; layers kept float: "
                            f"{', '.join(q.kept_float or []) or 'none'}"]))
    if r.qat_bar:
        b = r.qat_bar
        blocks.append(Para([f"QAT acceptance (|MAE drift| <= {b.mae_drift_limit:g}): "
                            + ("n/a (no labels)" if b.holds is None else "holds" if b.holds else
                               f"does NOT hold (|{b.mae_drift:+.4f}|)")]))
    if r.has("localize"):
        blocks += localize_blocks(r.localize)
    if r.has("op_profile"):
        blocks += op_profile_blocks(r.op_profile)
    if r.coverage:
        blocks += coverage_blocks(r.coverage)
    return blocks


def verdict_of(passed: bool, judged: bool = True) -> str:
    """PASSED, FAILED, or NOT JUDGED (nothing failed because no threshold applied)."""
    if not passed:
        return "FAILED"
    return "PASSED" if judged else "NOT JUDGED"


def verdict(r: Verdict) -> str:
    """A check report's (or ``check.judge``'s verdict's) ``verdict_of``."""
    return verdict_of(r.passed, r.judged)


def _page_verdict(r: CheckReport) -> bool | None:
    """``report_html``'s verdict: True, False, or None (not judged)."""
    return {"PASSED": True, "FAILED": False}.get(verdict(r))


def verdict_line(r: Verdict) -> str:
    v = verdict(r)
    if v == "FAILED":
        return "FAILED: " + "; ".join(r.failures)
    if v == "NOT JUDGED":
        return ("NOT JUDGED: no threshold applied (skipped: " + ", ".join(r.skipped_thresholds or [])
                + "); give labelled faces (--data, a folder of AGE_*-named images or a CSV) to judge it")
    return v


def check_text(r: CheckReport) -> str:
    """Human summary of a check report (also the body of report.md)."""
    return blocks_md(check_blocks(r) + [Para([verdict_line(r)])])


def op_profile_blocks(p: dict, top: int = 15) -> list[Block]:
    if not p["available"]:
        return [Para([f"Per-op timing: {p['note']}"])]
    items = list(p["by_op_type_ms"].items())
    rows = [[k, f"{v:.4f}", f"{v / p['total_ms']:.1%}"] for k, v in items[:top]]
    if len(items) > top:
        rest = sum(v for _, v in items[top:])
        rows.append([f"({len(items) - top} more)", f"{rest:.4f}", f"{rest / p['total_ms']:.1%}"])
    return [Para([f"Per-op timing by the runtime's profiler, {p['runs']} batch-1 runs: {p['total_ms']:.3f} ms "
                  "per inference in the ops (profiling adds its own overhead per op: read the shares, "
                  "compare absolute times with the latency table)"
                  + (f"; float islands (every op but the INT8 convolutions / matmuls): "
                     f"{p['float_islands_share']:.1%} of it" if "float_islands_share" in p else "")]),
            Table(["op type", "ms / inference", "share"], rows)]


def coverage_blocks(c: dict) -> list[Block]:
    """Delegation / op coverage: what the runtime runs on its fast path, where it tells."""
    if not c.get("available"):
        return [Para([f"Delegation / op coverage: {c.get('note', 'not reported')}"])]
    if "segments" in c:
        outside = ", ".join(f"{k} x{v}" for k, v in c["ops_outside_delegate"].items()) or "none"
        return [Para([f"Delegation: {c['segments']} {c['delegate']} segment(s); ops outside the delegate: "
                      f"{outside}"])]
    if "runtime_precisions" in c:
        parts = [f"{p}: " + ", ".join(f"{k} {n}" for k, n in sorted(ops.items(), key=lambda kv: -kv[1]))
                 for p, ops in c["runtime_precisions"].items()]
        return [Para(["Ops by the precision the runtime runs them in: " + "; ".join(parts)])]
    if "note" in c:
        return [Para([f"Delegation / op coverage: {c['note']}"])]
    ops = ", ".join(f"{k} {n}" for k, n in list(c.get("op_types", {}).items())[:12])
    return [Para([f"Execution providers: {', '.join(c.get('execution_providers', []))}"
                  + (f"; op types: {ops}" if ops else "")])]


def op_profile_text(p: dict, top: int = 15) -> list[str]:
    return _lines(op_profile_blocks(p, top))


def localize_blocks(loc: dict) -> list[Block]:
    if not loc.get("supported"):
        return [Para([f"Drift localisation: {loc.get('reason')}"])]
    rows = [[x["layer"], f"{x['max_abs_diff']:.3g}", f"{x['rel_error']:.3g}",
             f"x{x['jump']:.1f}" if x["jump"] else ""] for x in loc["layers"]]
    head = (f"Drift localisation on {loc['n_images']} images: {loc['compared']} of {loc['float_layers']} float "
            f"layers matched; relative error = {loc['rel_error']}. ")
    head += (f"First jump (> x{loc['jump_factor']:g} the worst before, above {loc['rel_floor']:g}): "
             f"{loc['first_jump']}; all jumps: {', '.join(loc['jumps'])}" if loc["jumps"] else "No layer jumps.")
    return [Para([head]), Table(["layer", "max abs diff", "relative error", "jump"], rows)]


def localize_text(loc: dict) -> list[str]:
    return _lines(localize_blocks(loc))


def report_html(blocks: list[Block], passed: bool | None, failures: list[str], images: list[Path] = ()) -> str:
    """One self-contained page (``edgeage.document.page_html``) with the verdict: PASSED, FAILED
    (the failures listed) or NOT JUDGED (``passed`` None)."""
    if passed is None:
        head = '<div class="verdict"><strong>NOT JUDGED</strong> (no threshold applied)</div>'
    elif passed:
        head = '<div class="verdict pass"><strong>PASSED</strong></div>'
    else:
        items = "".join(f"<li>{esc(f)}</li>" for f in failures)
        head = '<div class="verdict fail"><strong>FAILED</strong>' + (f"<ul>{items}</ul>" if items else "") + "</div>"
    return page_html(blocks, head, images)


def write_json_md(out_dir, stem: str, obj: dict, text: str, force: bool = False) -> Path:
    """<stem>.json and <stem>.md in out_dir (created; see edgeage.utils.output_dir), each written
    atomically."""
    out = output_dir(out_dir, force)
    write_json(out / f"{stem}.json", obj)
    with atomic_path(out / f"{stem}.md") as tmp:
        tmp.write_text(text + "\n")
    return out


def write_check_report(out_dir, r: CheckReport, force: bool = False) -> list[Path]:
    out = write_json_md(out_dir, "report", r.to_json_dict(), check_text(r), force)
    plt = _plt()
    d = np.abs(np.asarray(r.per_image.age_target) - np.asarray(r.per_image.age_float))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(d, bins=40)
    ax.set_xlabel(f"|age {r.target} - age float| (years)")
    ax.set_ylabel("images")
    ax.set_title(f"{r.target} {r.precision}: p99 {r.age_abs_diff_p99:.4f}, max {r.age_abs_diff_max:.4f}")
    fig.tight_layout()
    _savefig(fig, out / "age_abs_diff_hist.png")
    files = [out / "report.json", out / "report.md", out / "age_abs_diff_hist.png"]
    if r.latency:
        fig, ax = plt.subplots(figsize=(7, 4))
        groups = [(name, rnd) for name, d in ((r.target, r.latency), ("pytorch", r.float_latency))
                  for rnd in d.samples_ms]
        ax.boxplot([g[1] for g in groups], showfliers=True)
        ax.set_xticks(range(1, len(groups) + 1), [f"{n}\nround {i % len(r.latency.samples_ms) + 1}"
                                                  for i, (n, _) in enumerate(groups)], fontsize=7)
        ax.set_ylabel("latency (ms), batch 1")
        ax.set_title(f"{r.target} {r.precision} vs PyTorch eager, {r.threads} thread(s)")
        fig.tight_layout()
        _savefig(fig, out / "latency.png")
        files.append(out / "latency.png")
    pngs = files[2:]
    files.insert(2, _write_html(out / "report.html",
                                report_html(check_blocks(r), _page_verdict(r), r.failures, pngs)))
    return files


def write_device_report(out_dir, report: CheckReport, force: bool = False, result_json=None) -> list[Path]:
    """device-check --out: report.json, report.md (``report_text``), report.html and a copy
    of the device's check-result JSON (``result_json``, unless it already is that file)."""

    text = report_text(report)
    out = write_json_md(out_dir, "report", report.to_json_dict(), text, force)
    files = [out / "report.json", out / "report.md", out / "report.html"]
    if result_json is not None:
        dest = out / "check-result.json"
        if Path(result_json).resolve() != dest.resolve():
            with atomic_path(dest) as tmp:
                shutil.copyfile(result_json, tmp)
        files.append(dest)
    # report_text = check_text with device lines before its verdict line: those lines become a
    # paragraph of the page; if that shape ever changes, the whole text is shown as it is
    base, lines = check_text(report).splitlines(), text.splitlines()
    blocks = check_blocks(report)
    if len(lines) >= len(base) and lines[:len(base) - 1] == base[:-1] and lines[-1] == base[-1]:
        extra = "\n".join(lines[len(base) - 1:-1]).strip()
        blocks += [Para(p.splitlines()) for p in re.split(r"\n\s*\n", extra) if p.strip()]
    else:
        blocks = blocks[:1] + [Pre(text)]
    _write_html(out / "report.html", report_html(blocks, _page_verdict(report), report.failures))
    return files


def bench_rows(b: dict, variant=None, error_chars: int = 300) -> tuple[list[str], list[list]]:
    """The bench table: one row per float reference (per thread count) and per check row (a
    bench row: a check report's JSON object, or an error row).
    ``variant(row)``: the precision column (default: the row's variant, else its precision)."""
    headers = ["target", "precision", "size", "MAE", "MAE drift", "abs(delta age) p99", "p50 ms", "p90 ms",
               "p50 vs pytorch", "size / p50 vs fp32", "result"]
    variant = variant or (lambda r: r.get("variant", r["precision"]))
    rows = []
    for th, fl in b["float"]["latency_ms_by_threads"].items():
        rows.append([f"pytorch eager ({th} thr)", "fp32", fmt_mb(b["float"]["size_bytes"]), fmt_num(b["float"]["mae"]),
                     "", "", f"{fl['p50']:.3f}", f"{fl['p90']:.3f}", "1.00x", "", "reference"])
    fl1 = b["float"]["latency_ms_by_threads"]
    for p in b.get("peers", []):
        lt = p.get("latency_ms") or {}
        fl = fl1.get(p["threads"]) or fl1.get(str(p["threads"])) or {}
        rows.append([f"peer: {p['name']} ({p['runtime']}, {p['threads']} thr)", p["precision"], fmt_mb(p["size_bytes"]),
                     fmt_num(p.get("mae")), "", "", fmt_num(lt.get("p50"), ".3f"), fmt_num(lt.get("p90"), ".3f"),
                     f"{lt['p50'] / fl['p50']:.2f}x" if lt.get("p50") and fl.get("p50") else "-", "",
                     "reference (not edgeage)"])
    for r in b["rows"]:
        if "error" in r:
            rows.append([r["target"], variant(r)] + [""] * 8
                        + ["ERROR: " + " ".join(r["error"].split())[:error_chars]])
            continue
        lt = r.get("latency_ms") or {}
        vs = r.get("vs_fp32") or {}
        qat = r.get("qat_bar")
        v = verdict_of(r["passed"], r.get("judged", True))
        result = {"PASSED": "pass", "NOT JUDGED": "not judged"}.get(v) or \
            "FAIL: " + "; ".join(f.split(":")[0] for f in r["failures"])
        if qat and qat.get("holds") is not None:
            result += f" (QAT bar {qat['mae_drift_limit']:g}: {'holds' if qat['holds'] else 'missed'})"
        rows.append([r["target"], variant(r), fmt_mb(r["size_bytes"]), fmt_num(r["target_mae"]),
                     fmt_num(r["mae_drift"], "+.4f"), fmt_num(r["age_abs_diff_p99"]), fmt_num(lt.get("p50"), ".3f"),
                     fmt_num(lt.get("p90"), ".3f"),
                     f"{r['latency_ratio']['p50']:.2f}x" if r.get("latency_ratio") else "-",
                     (f"{vs['size_ratio']:.2f}x / " + (f"{vs['p50_ratio']:.2f}x" if vs.get("p50_ratio") else "-"))
                     if vs else "", result])
    return headers, rows


def bench_blocks(b: dict) -> list[Block]:
    headers, rows = bench_rows(b)
    blocks: list[Block] = [Title("edgeage bench"),
                           Para([f"model {b['model']} (sha256 {b['model_sha256'][:12]}); data {b['data']}; "
                                 f"n = {b['n']}" + ("" if b["labelled"] else " (unlabelled: no MAE)")]),
                           Table(headers, rows)]
    if b["skipped"]:
        blocks.append(Para(["Skipped (precision not supported by the target's TOML): " + "; ".join(b["skipped"])]))
    blocks.append(Para(["Latency: batch 1, thread count from each TOML, each model in a fresh process; "
                        "'p50 vs pytorch' = target p50 / PyTorch eager p50 measured in the same run."]))
    vs = [r for r in b["rows"] if r.get("vs_peer")]
    if vs:
        blocks.append(Para(["Against the peer on its runtime (same run, same thread count): " + "; ".join(
            f"{r['target']} {r.get('variant', r['precision'])}: p50 {r['vs_peer']['p50_ratio']:.2f}x, size "
            f"{r['vs_peer']['size_ratio']:.2f}x of {r['vs_peer']['peer']}" for r in vs)]))
    blocks += throughput_blocks(b)
    return blocks


def throughput_blocks(b: dict) -> list[Block]:
    """bench --threads / --batch: faces per second (p50 ms per call) for every row and the float
    model, per thread count and batch size."""
    rows_with = [r for r in b["rows"] if r.get("throughput")]
    if not rows_with:
        return []
    grid = [(g["threads"], g["batch"]) for g in rows_with[0]["throughput"]["target"]]
    headers = ["model", "precision"] + [f"{t} thr, batch {bs}" for t, bs in grid]

    def cells(entries):
        by = {(g["threads"], g["batch"]): g for g in entries}
        return [f"{by[k]['faces_per_s']:.0f} ({by[k]['p50_ms']:.2f} ms)" if k in by else "" for k in grid]

    rows = [["pytorch eager", "fp32"] + cells(rows_with[0]["throughput"]["float"])]
    rows += [[r["target"], r.get("variant", r["precision"])] + cells(r["throughput"]["target"]) for r in rows_with]
    return [Para(["Throughput: faces/s (p50 ms per call), per thread count and batch size; each model in a "
                  "fresh process, the same timing as the latency table."]), Table(headers, rows)]


def bench_text(b: dict) -> str:
    return blocks_md(bench_blocks(b))


def bench_failures(b: dict) -> list[str]:
    """One line per failure of a bench row (whitespace folded, long messages cut as in the table)."""
    out = []
    for r in b["rows"]:
        if not r["passed"]:
            for f in r.get("failures") or ["failed"]:
                f = " ".join(str(f).split())
                out.append(f"{r['target']} {r.get('variant', r['precision'])}: "
                           + (f[:300] + " ..." if len(f) > 300 else f))
    return out


def write_bench(out_dir, b: dict, force: bool = False) -> list[Path]:
    out = write_json_md(out_dir, "bench", b, bench_text(b), force)
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
    pngs = [out / "bench_latency.png"]
    if accuracy_latency_plot(b, out / "bench_accuracy_latency.png"):
        pngs.append(out / "bench_accuracy_latency.png")
    page = report_html(bench_blocks(b), b["passed"], bench_failures(b), pngs)
    return [out / "bench.json", out / "bench.md", _write_html(out / "bench.html", page), *pngs]


def accuracy_latency_points(b: dict) -> list[dict]:
    """One point per bench row with both a test MAE and a batch-1 p50 (labelled data, timed):
    ``{"label", "p50", "mae", "kind"}``, kind "float" (PyTorch eager, per thread count), "peer"
    or "row" (a target x precision, with ``model``: the checkpoint's name, or the model an
    artifact row came from)."""
    pts = []
    if not b.get("labelled"):
        return pts
    for th, fl in b["float"]["latency_ms_by_threads"].items():
        if b["float"].get("mae") is not None and fl.get("p50"):
            pts.append({"label": f"pytorch fp32 ({th} thr)", "p50": fl["p50"], "mae": b["float"]["mae"],
                        "kind": "float"})
    for p in b.get("peers", []):
        lt = p.get("latency_ms") or {}
        if p.get("mae") is not None and lt.get("p50"):
            pts.append({"label": f"peer: {p['name']}", "p50": lt["p50"], "mae": p["mae"], "kind": "peer"})
    main = Path(str(b.get("model", "model"))).stem
    for r in b["rows"]:
        lt = r.get("latency_ms") or {}
        if "error" not in r and r.get("target_mae") is not None and lt.get("p50"):
            variant = str(r.get("variant", r["precision"]))
            prec, _, rest = variant.partition(" (")  # an artifact row: "int8-ptq (MODEL, FILE)"
            model = rest.split(",")[0].rstrip(")").strip() if rest else main
            pts.append({"label": f"{r['target']} {prec}", "p50": lt["p50"], "mae": r["target_mae"],
                        "kind": "row", "model": model})
    return pts


def accuracy_latency_plot(b: dict, path: Path) -> Path | None:
    """MAE against batch-1 p50 (log scale) for every row, the float model and the peers of one
    bench run: accuracy per millisecond, the axis models are chosen on (lower left is better; the
    dashed line is each peer's p50). None (nothing written) without labelled, timed rows."""
    pts = accuracy_latency_points(b)
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5))
    groups = [("PyTorch eager fp32", "grey", "s", [p for p in pts if p["kind"] == "float"]),
              ("peer", "C3", "D", [p for p in pts if p["kind"] == "peer"])]
    models = sorted({p["model"] for p in pts if p["kind"] == "row"})
    colours = [c for i in range(10) if (c := f"C{i}") != "C3"]
    groups += [(m, colours[i % len(colours)], "o", [p for p in pts if p.get("model") == m]) for i, m in enumerate(models)]
    for name, colour, marker, sel in groups:
        if sel:
            ax.scatter([p["p50"] for p in sel], [p["mae"] for p in sel], c=colour, marker=marker, s=36,
                       label=name, zorder=3)
    for p in pts:
        ax.annotate(p["label"], (p["p50"], p["mae"]), textcoords="offset points", xytext=(4, 3), fontsize=6)
        if p["kind"] == "peer":
            ax.axvline(p["p50"], color="C3", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("batch-1 latency p50 (ms, log scale)")
    ax.set_ylabel("MAE (years)")
    ax.set_title(f"accuracy per millisecond (n = {b['n']}; lower left is better)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    _savefig(fig, path)
    return path


def report_text(r: CheckReport) -> str:
    """A device-check report's text: ``check_text`` with the device's lines before the verdict."""
    lines = check_text(r).splitlines()
    lat = r.device_latency_ms
    extra = [f"Latency on the device ({r.runtime.get('device')}, {r.runtime.get('runner')}), batch 1, "
             f"{r.n} runs after {r.runtime.get('warmup', '?')} warm-up (ms): "
             + (", ".join(f"{k} {lat[k]:.3f}" for k in ("p50", "p90", "p99", "mean", "min", "max") if k in lat)
                if lat else "-") + f"; Java preprocessing p50 {r.device_preprocess_ms_p50:.3f} ms",
             "app readout vs edgeage.readout on the device outputs: max |diff| "
             f"{r.app_readout_abs_diff_max:.2g} years",
             ""]
    dev = r.device or {}
    if dev.get("emulated"):  # an emulator's run times are no device latency: never shown as one
        extra[0] = (f"Emulated device ({dev.get('emulator', '?')}, -cpu {dev.get('qemu_cpu', '?')}): correctness "
                    "only, no latency (run times under emulation are kept as emulated_time_ms in the check result)")
    return "\n".join(lines[:-1] + extra + lines[-1:])
