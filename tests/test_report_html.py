"""The self-contained HTML reports: report.html of `edgeage check` and `edgeage device-check`,
bench.html of `edgeage bench`, built by the real commands on the tiny checkpoint's artifacts;
parsed, images decoded, escaping checked, and rendered by headless Chromium where installed."""
from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgeage.cli import main

PNG_PREFIX = "data:image/png;base64,"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


class Page(HTMLParser):
    """Tags, text and img sources of a page; fails on unbalanced tags."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.stack, self.tags, self.imgs, self.text, self.errors = [], [], [], [], []
        self.feed(text)
        self.close()
        assert not self.errors, self.errors
        assert not self.stack, f"unclosed tags: {self.stack}"

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs).get("src", ""))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def check_page(path: Path, verdict: str, names: list[str], min_images: int = 1) -> Page:
    """Common checks of one HTML report: parses, verdict, names, embedded PNGs, no URLs, no script."""
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    body = " ".join(page.text)
    assert verdict in body
    for n in names:
        assert n in body, n
    assert "http://" not in text and "https://" not in text
    assert "script" not in page.tags and "link" not in page.tags
    pngs = [s for s in page.imgs if s.startswith(PNG_PREFIX)]
    assert len(pngs) == len(page.imgs) >= min_images  # every image embedded, none from a file or URL
    for src in pngs:
        img = Image.open(io.BytesIO(base64.b64decode(src[len(PNG_PREFIX):], validate=True)))
        assert img.format == "PNG" and min(img.size) > 100
        img.verify()
    return page


@pytest.fixture(scope="module")
def check_out(tmp_path_factory, exported, face_dir, tiny_ckpt):
    out = tmp_path_factory.mktemp("check") / "rep"
    res = cli("check", "--artifact", exported("onnx"), "--model", tiny_ckpt, "--data", face_dir,
              "--runs", 3, "--rounds", 1, "--warmup", 1, "--out", out)
    assert res.exit_code in (0, 1), res.output
    return out


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory, tiny_ckpt, edgeage_env):
    out = tmp_path_factory.mktemp("bench") / "b"
    res = cli("bench", "--targets", "onnx", "--precisions", "fp32", "--limit", 8, "--runs", 2, "--rounds", 1,
              "--warmup", 1, "--model", tiny_ckpt, "--out", out)
    assert res.exit_code in (0, 1), res.output
    assert f"{out / 'bench.html'}" in res.output  # listed among the files written
    return out


def test_check_report_html(check_out):
    r = json.loads((check_out / "report.json").read_text())
    verdict = "PASSED" if r["passed"] else "FAILED"
    names = [t["threshold"] for t in r["threshold_results"]] + r["failures"] + [r["target"], r["spec_file"]]
    page = check_page(check_out / "report.html", verdict, names, min_images=2)  # histogram + latency
    assert page.tags.count("table") >= 3  # metrics, latency, thresholds
    # the same content as report.md: every table row of the Markdown is a row of the page
    md = (check_out / "report.md").read_text()
    assert md.splitlines()[-1].startswith(verdict)
    body = " ".join(" ".join(page.text).split())
    for line in md.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            for cell in line.strip("| ").split(" | "):
                assert cell.strip() in body, cell
    # the embedded images are the PNGs written beside
    text = (check_out / "report.html").read_text()
    for png in ("age_abs_diff_hist.png", "latency.png"):
        assert base64.b64encode((check_out / png).read_bytes()).decode() in text


def test_bench_html(bench_out):
    b = json.loads((bench_out / "bench.json").read_text())
    verdict = "PASSED" if b["passed"] else "FAILED"
    page = check_page(bench_out / "bench.html", verdict, ["onnx", "pytorch eager", "p50 vs pytorch"])
    assert page.tags.count("table") == 1
    assert base64.b64encode((bench_out / "bench_latency.png").read_bytes()).decode() in \
        (bench_out / "bench.html").read_text()


def test_report_strings_are_escaped(check_out, bench_out, tmp_path):
    """Report contents are data: a target name or an error message with markup stays text."""
    from edgeage.check_report import CheckReport
    from edgeage.export.conformance.report import write_bench, write_check_report

    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    r = CheckReport.read(check_out / "report.json")
    r.target, r.passed, r.failures = f"onnx{evil}", False, [f"mae_drift: file {evil}.jpg & more"]
    r.threshold_results[0].threshold += evil
    files = write_check_report(tmp_path / "c", r)
    assert tmp_path / "c" / "report.html" in files
    text = (tmp_path / "c" / "report.html").read_text()
    assert "<script" not in text and "<img src=x" not in text
    page = check_page(tmp_path / "c" / "report.html", "FAILED",
                      [f"onnx{evil}", f"mae_drift: file {evil}.jpg & more", r.threshold_results[0].threshold],
                      min_images=2)
    assert page.imgs and all(s.startswith(PNG_PREFIX) for s in page.imgs)  # the planted <img> is text

    b = json.loads((bench_out / "bench.json").read_text())
    b["rows"].append({"target": f"tflite{evil}", "precision": "int8", "passed": False,
                      "error": f"runtime failed on {evil}", "failures": [f"runtime failed on {evil}"]})
    b["passed"] = False
    write_bench(tmp_path / "b", b)
    text = (tmp_path / "b" / "bench.html").read_text()
    assert "<script" not in text
    check_page(tmp_path / "b" / "bench.html", "FAILED", [f"tflite{evil}", f"ERROR: runtime failed on {evil}"])


def test_write_device_report(check_out, tmp_path):
    """write_device_report: report.json, report.md (report.report_text), report.html with the
    device lines, and an atomic copy of the device's result file; strings escaped."""
    from edgeage.check_report import CheckReport
    from edgeage.export.conformance.report import report_text
    from edgeage.export.conformance.report import write_device_report

    d = json.loads((check_out / "report.json").read_text())
    d.update(runtime={"runner": "onnxruntime <b>java</b>", "device": "Pixel <script>x</script>"}, threads=None,
             device_latency_ms={"p50": 4.5, "p90": 5.0, "p99": 6.0}, device_preprocess_ms_p50=0.25,
             app_readout_abs_diff_max=1e-5, latency_ms=None, latency=None, float_latency=None)
    r = CheckReport.parse(d, "the test's report")
    src = tmp_path / "result.json"
    src.write_text('{"format": "edgeage-check-result/1"}')
    files = write_device_report(tmp_path / "rep", r, result_json=src)
    rep = tmp_path / "rep"
    assert files == [rep / "report.json", rep / "report.md", rep / "report.html", rep / "check-result.json"]
    assert (rep / "check-result.json").read_text() == src.read_text()
    assert (rep / "report.md").read_text() == report_text(r) + "\n"
    assert json.loads((rep / "report.json").read_text()) == d
    text = (rep / "report.html").read_text()
    assert "<script" not in text and "<b>" not in text
    check_page(rep / "report.html", "PASSED" if r.passed else "FAILED",
               [t.threshold for t in r.threshold_results]
               + ["Latency on the device (Pixel <script>x</script>, onnxruntime <b>java</b>)", "p50 4.500",
                  "Java preprocessing p50 0.250 ms", "app readout vs edgeage.readout"], min_images=0)
    # the result file already in place is kept, not copied onto itself
    again = write_device_report(rep, r, force=True, result_json=rep / "check-result.json")
    assert again[-1].read_text() == src.read_text()


def test_device_check_writes_html(tmp_path, exported, face_dir, tiny_ckpt):
    """device-check --from-json --out: report.json, report.md, report.html (device lines included)
    and the copy of the check result. The result is computed here by the artifact's own runtime
    on the bundle's crops, in the app's check-result format."""
    from edgeage.export.devices.bundle import RESULT_FORMAT, model_file
    from edgeage.preprocess import model_input
    from edgeage.readout import apply_readout
    from edgeage.targets.runner import load_runner

    art, bundle = exported("executorch"), tmp_path / "bundle"  # a target the app runs (android_app)
    res = cli("android", "bundle", "--artifact", art, "--check-data", face_dir, "--check-count", 12, "--out", bundle)
    assert res.exit_code == 0, res.output
    runner = load_runner(art, threads=1)
    man = runner.manifest
    labels = [ln.split(",") for ln in (bundle / "check" / "labels.csv").read_text().splitlines()[1:]]
    crops = np.stack([np.asarray(Image.open(bundle / "check" / f).convert("RGB")) for f, _ in labels])
    out = runner.run(np.asarray(model_input(crops, man.normalize)))
    ages = apply_readout(man.readout, out)
    mf = model_file(man)
    result = {"format": RESULT_FORMAT, "model": {"file": mf.name, "sha256": mf.sha256},
              "device": {"os_name": "Linux", "os_arch": "x86_64"}, "runtime": {"runner": "executorch (test)"},
              "summary": {"latency_ms": {"p50": 1.0, "p90": 1.5, "p99": 2.0}},
              "images": [{"file": f, "true_age": float(a), "pred_age": float(p), "output": o.tolist(),
                          "preprocess_ms": 0.1} for (f, a), p, o in zip(labels, ages, out)]}
    (tmp_path / "result.json").write_text(json.dumps(result))
    rep = tmp_path / "rep"
    res = cli("device-check", "--artifact", art, "--bundle", bundle, "--from-json", tmp_path / "result.json",
              "--model", tiny_ckpt, "--out", rep)
    assert res.exit_code in (0, 1) and (rep / "report.json").is_file(), (res.output, res.exception)
    r = json.loads((rep / "report.json").read_text())
    assert json.loads((rep / "check-result.json").read_text()) == result
    page = check_page(rep / "report.html", "PASSED" if r["passed"] else "FAILED",
                      [t["threshold"] for t in r["threshold_results"]] + ["Latency on the device", "app readout"],
                      min_images=0)
    assert page.tags.count("table") >= 2
    assert (rep / "report.md").read_text().splitlines()[-1].startswith("PASSED" if r["passed"] else "FAILED")


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium / chromium-browser / google-chrome on PATH "
                                              "(Debian: apt-get install chromium)")
def test_report_renders_in_chromium(check_out, tmp_path):
    shot = tmp_path / "shot.png"
    p = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'p'}",
                        f"--screenshot={shot}", "--window-size=1200,1600", (check_out / "report.html").as_uri()],
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0 and shot.is_file(), p.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert img.shape[:2] == (1600, 1200)
    assert img.std() > 20  # not a blank page
    # the histogram is drawn: matplotlib's default bar blue (31, 119, 180) covers many pixels
    blue = (np.abs(img - np.array([31, 119, 180])).sum(axis=2) < 30).sum()
    assert blue > 500, blue
    # the verdict box is coloured (green when passed, red when failed)
    r = json.loads((check_out / "report.json").read_text())
    colour = np.array([231, 246, 234] if r["passed"] else [253, 236, 234])
    assert (np.abs(img[:300] - colour).sum(axis=2) < 6).sum() > 2000



def test_bench_accuracy_per_millisecond_plot(tmp_path, tiny_ckpt, face_dir, bench_out):
    """On labelled faces bench also plots MAE against batch-1 p50 (every row, the float model,
    the peers), embedded in bench.html; unlabelled runs have no MAE, so no such plot."""
    from edgeage.export.conformance.report import accuracy_latency_points

    out = tmp_path / "b"
    res = cli("bench", "--targets", "onnx", "--precisions", "fp32", "--data", face_dir, "--limit", 8, "--runs", 2,
              "--rounds", 1, "--warmup", 1, "--model", tiny_ckpt, "--out", out)
    assert res.exit_code in (0, 1), res.output
    b = json.loads((out / "bench.json").read_text())
    assert b["labelled"]
    pts = accuracy_latency_points(b)
    row = next(r for r in b["rows"] if r["target"] == "onnx")
    assert {p["kind"] for p in pts} == {"float", "row"}
    onnx = next(p for p in pts if p["kind"] == "row")
    assert (onnx["mae"], onnx["p50"], onnx["model"]) == (row["target_mae"], row["latency_ms"]["p50"], Path(tiny_ckpt).stem)
    png = out / "bench_accuracy_latency.png"
    assert base64.b64encode(png.read_bytes()).decode() in (out / "bench.html").read_text()
    assert not (bench_out / "bench_accuracy_latency.png").exists() and not accuracy_latency_points(
        json.loads((bench_out / "bench.json").read_text()))
