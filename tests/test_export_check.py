"""Export + conformance check + bench on the real runtimes (no mocks), per target.

Adding a target to TARGETS is all a new target needs here."""
from __future__ import annotations

import dataclasses

import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeage.cli import main
from edgeage.targets.spec import known_targets, targets_dir
from edgeage.utils import EdgeAgeError, sha256_file

TARGETS = ["onnx", "openvino", "tflite", "executorch"]
LOCALIZABLE = ["onnx", "openvino", "tflite"]  # runtimes that expose intermediate tensors
REQUIRED = ("target", "precision", "n", "float_mae", "target_mae", "mae_drift", "age_abs_diff_p99",
            "latency_ms", "float_latency_ms", "size_bytes", "passed", "failures")
FAULT = '''"""Planted fault: the runner feeds BGR where the model expects RGB."""
import importlib

_base = importlib.import_module({runner!r}).Runner


def _bgr(x):
    return x[:, ::-1].copy()


class Runner(_base):
    def run(self, x):
        return super().run(_bgr(x))


if hasattr(_base, "intermediates"):
    Runner.intermediates = lambda self, x: _base.intermediates(self, _bgr(x))
'''


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def user_toml(tmp_path: Path, target: str, name: str | None = None, **keys) -> Path:
    """A copy of a shipped target TOML under another file name, with keys replaced."""
    text = (targets_dir() / target / "target.toml").read_text()
    lines = [ln for ln in text.splitlines() if ln.split("=")[0].strip() not in keys and
             not (name and ln.startswith("name ="))]
    head = [f"{k} = {json.dumps(v)}" for k, v in keys.items()] + ([f'name = "{name}"'] if name else [])
    path = tmp_path / f"my-{target}.toml"
    path.write_text("\n".join(head + lines) + "\n")
    return path


@pytest.mark.parametrize("target", TARGETS)
def test_export_check_passes_and_prints_one_json_object(target, exported, tiny_ckpt, face_dir, edgeage_cli,
                                                        tmp_path):
    art = exported(target)
    manifest = json.loads((art / "manifest.json").read_text())
    a = manifest["artifact"]
    assert a["target"] == target and a["precision"] == "fp32" and a["source"]["sha256"] == sha256_file(tiny_ckpt)
    assert all(sha256_file(art / f["name"]) == f["sha256"] for f in a["files"])
    assert manifest["preprocess"]["crop"]["crop_size"] and manifest["readout"]["type"] == "expectation"
    assert a["versions"]["torch"]

    p = edgeage_cli("check", "--artifact", art, "--model", tiny_ckpt, "--data", face_dir, "--json",
                    "--runs", 5, "--rounds", 2, "--warmup", 2, "--out", tmp_path / "rep")
    assert p.returncode == 0, p.stderr[-3000:]
    assert len(p.stdout.strip().splitlines()) == 1, p.stdout[:2000]
    r = json.loads(p.stdout)
    assert isinstance(r, dict) and set(REQUIRED) <= set(r)
    assert r["passed"] and not r["failures"] and r["labelled"] and r["n"] == len(list(face_dir.iterdir()))
    assert abs(r["mae_drift"]) <= 0.01 and r["age_abs_diff_max"] <= 0.05 and r["argmax_agreement"] >= 0.99
    assert r["float_mae"] > 0 and r["size_bytes"] == a["size_bytes"]
    for k in ("latency_ms", "float_latency_ms"):
        assert 0 < r[k]["p50"] <= r[k]["p90"] <= r[k]["p99"]
    assert r["memory_mb"]["peak_rss_mb"] > 0
    for f in ("report.json", "report.md", "age_abs_diff_hist.png", "latency.png"):
        assert (tmp_path / "rep" / f).stat().st_size > 0, f
    assert len(json.loads((tmp_path / "rep" / "report.json").read_text())["per_image"]["age_target"]) == r["n"]


@pytest.mark.parametrize("target", TARGETS)
def test_planted_fault_fails_the_check_and_is_localised(target, exported, tiny_ckpt, face_dir, tmp_path):
    spec = tomllib.loads((targets_dir() / target / "target.toml").read_text())
    (tmp_path / "bgr_runner.py").write_text(FAULT.format(runner=spec["runner"]))
    toml = user_toml(tmp_path, target, runner="bgr_runner.py")  # relative to the TOML's folder
    res = cli("check", "--target", toml, "--artifact", exported(target), "--model", tiny_ckpt,
              "--data", face_dir, "--runs", 0, "--json", "--localize")
    assert res.exit_code == 1, res.output
    r = json.loads(res.stdout)
    assert not r["passed"] and any(f.startswith("age_abs_diff") for f in r["failures"]), r["failures"]
    assert r["age_abs_diff_max"] > 0.05
    loc = r["localize"]
    if loc["supported"]:  # the very first compared layer already differs (ExecuTorch: its first prefix)
        assert loc["compared"] >= (5 if loc.get("method", "").startswith("prefixes") else 6)
        assert loc["first_jump"] == loc["layers"][0]["layer"]


@pytest.mark.parametrize("target", TARGETS)
def test_corrupted_artifact_gives_a_clear_error(target, exported, tiny_ckpt, face_dir, tmp_path):
    from edgeage.targets.runner import load_runner

    art = tmp_path / "art"
    shutil.copytree(exported(target), art)
    manifest = json.loads((art / "manifest.json").read_text())
    entry = max(manifest["artifact"]["files"], key=lambda f: f["size"])
    model_file = art / entry["name"]
    model_file.write_bytes(model_file.read_bytes()[: entry["size"] // 3])

    res = cli("check", "--artifact", art, "--model", tiny_ckpt, "--data", face_dir, "--runs", 0)
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert str(model_file) in res.output and "re-export" in res.output, res.output

    # the same truncated file with a matching manifest: the runtime's own load error is wrapped
    entry.update(sha256=sha256_file(model_file), size=model_file.stat().st_size)
    (art / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EdgeAgeError, match=entry["name"]) as e:
        load_runner(art).run(np.zeros((1, 3, 64, 64), np.float32))
    assert "re-export" in str(e.value)


def test_unknown_target_and_unsupported_precision_list_the_options(tiny_ckpt):
    assert set(TARGETS) <= set(known_targets())
    res = cli("check", "--target", "no-such-target")
    assert res.exit_code != 0 and all(t in res.output for t in known_targets()), res.output
    res = cli("export", "--target", "onnx", "--model", tiny_ckpt, "--precision", "bf16")
    assert res.exit_code != 0 and "bf16" in res.output and "fp32" in res.output, res.output


def test_user_toml_path_exports_and_checks(tiny_ckpt, face_dir, tmp_path):
    toml = user_toml(tmp_path, "onnx", name="my-onnx")
    res = cli("check", "--target", toml, "--model", tiny_ckpt, "--data", face_dir, "--runs", 0, "--json")
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["target"] == "my-onnx" and r["passed"] and r["spec_file"] == str(toml.resolve())


def test_failed_export_names_the_step_and_leaves_nothing(tiny_ckpt, tmp_path):
    (tmp_path / "broken.py").write_text(
        "from edgeage.backend import step\n"
        "def export(model, example, out_dir, precision, spec, calib=None):\n"
        "    (out_dir / 'model.bin').write_bytes(b'partial')\n"
        "    with step('convert graph'):\n"
        "        raise RuntimeError('no conversion rule for aten::frobnicate')\n")
    toml = user_toml(tmp_path, "onnx", name="broken", exporter="broken.py")
    out = tmp_path / "out" / "art"
    res = cli("export", "--target", toml, "--model", tiny_ckpt, "--out", out)
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "convert graph" in res.output and "aten::frobnicate" in res.output, res.output
    assert not out.exists() and list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("target", LOCALIZABLE)
def test_localize_fp32_matches_layer_by_layer(target, exported, tiny_ckpt):
    from edgeage.checkpoint import load_model
    from edgeage.export.conformance.localize import localize
    from edgeage.targets.runner import load_runner

    runner = load_runner(exported(target))
    assert runner.has_intermediates, f"{target} runner lost intermediates()"
    x = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    loc = localize(load_model(tiny_ckpt)[0], runner, x)
    assert loc["compared"] >= 20 and not loc["jumps"]
    assert max(r["rel_error"] for r in loc["layers"]) < 1e-4
    layers = [r["layer"] for r in loc["layers"]]
    assert "backbone.stem" in layers and any(n.startswith("backbone.stages.3") for n in layers)


def test_openvino_ir_is_compact_and_keeps_op_names(exported):
    """The IR's constants are shared when identical, renamed c<i> and carry no tensor names, the
    XML has no indentation; the computing ops keep the converter's names (localize / op profile
    map them to modules)."""
    import re

    xml = (exported("openvino") / "model.xml").read_text()
    consts = re.findall(r'<layer id="\d+" name="([^"]*)" type="Const"', xml)
    assert consts and all(re.fullmatch(r"c\d+", n) for n in consts), consts[:5]
    # identical constants are one layer: no two constants read the same bytes of the .bin
    spans = re.findall(r'type="Const" version="\w+"><data element_type="(\w+)" shape="([^"]*)" offset="(\d+)" size="(\d+)"', xml)
    assert len(spans) == len(consts) and len(set(spans)) == len(spans)
    assert "\n\t" not in xml and "><" in xml
    # spatial attention in its NCHW deploy form ([deploy] spatial = "nchw"): no layout transposes
    assert 'type="Transpose"' not in xml and 'type="ReduceMax"' in xml
    ops = re.findall(r'<layer id="\d+" name="([^"]*)" type="Convolution"', xml)
    # (convolutions fused with a BN scale carry the fused Multiply's name)
    assert any(n.startswith("__module.") for n in ops) and not any(re.fullmatch(r"c\d+", n) for n in ops), ops


def test_openvino_static_shapes_compile_per_batch_size_with_the_same_outputs(exported):
    """[runtime] static_shapes (the shipped TOML sets it): the dynamic-batch IR is compiled for
    each input's batch size; outputs equal the dynamic compile's, batch 1 included."""
    from edgeage.targets.runner import load_runner
    from edgeage.targets.spec import load_spec

    spec = load_spec("openvino")
    assert spec.runtime["static_shapes"] is True
    art = exported("openvino")
    static = load_runner(art, spec)
    dyn_spec = dataclasses.replace(spec, runtime={**spec.runtime, "static_shapes": False})
    dynamic = load_runner(art, dyn_spec)
    assert static.info["static_shapes"] is True and dynamic.info["static_shapes"] is False
    x = np.random.default_rng(1).normal(size=(5, 3, 64, 64)).astype(np.float32)
    for batch in (1, 2, 5):
        a, b = static.run(x, batch=batch), dynamic.run(x, batch=batch)
        assert a.shape == b.shape == (5, b.shape[1]) and np.allclose(a, b, atol=1e-5), batch
    req = static.runner._requests  # noqa: SLF001
    assert sorted(req) == [1, 2, 5], sorted(req)  # batch 2 over 5 images also compiled batch 1
    shape = req[2].get_compiled_model().input(0).get_partial_shape()
    assert shape.is_static and shape[0].get_length() == 2
    assert list(dynamic.runner._requests) == [None]  # noqa: SLF001


@pytest.mark.parametrize("target", TARGETS)
def test_op_profile_attributes_time_to_the_convolutions(target, exported):
    """--op-profile: the runtime's own per-op timing where it has one (OpenVINO, ONNX Runtime,
    ExecuTorch's ETDump of the XNNPACK kernels), a note saying so where it has none (LiteRT)."""
    from edgeage.export.conformance.report import op_profile_text
    from edgeage.targets.runner import load_runner

    runner = load_runner(exported(target))
    x = np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32)
    prof = runner.op_profile(x, runs=5)
    if target not in ("onnx", "openvino", "executorch"):
        assert not prof["available"] and target in prof["note"]
        return
    assert prof["available"] and prof["total_ms"] > 0
    conv = sum(v for k, v in prof["by_op_type_ms"].items() if "Conv" in k)
    assert conv > 0.1 * prof["total_ms"], prof["by_op_type_ms"]  # a CNN spends its time in convolutions
    assert abs(sum(prof["by_op_type_ms"].values()) - prof["total_ms"]) < 1e-6
    assert "ms / inference" in "\n".join(op_profile_text(prof))


def test_bench_table_over_targets_and_precisions(tiny_ckpt, tmp_path):
    res = cli("bench", "--model", tiny_ckpt, "--targets", ",".join(TARGETS), "--precisions", "fp32,bf16",
              "--limit", 16, "--runs", 3, "--rounds", 1, "--warmup", 1, "--out", tmp_path / "bench")
    b = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert not b["labelled"] and b["n"] == 16  # generated inputs: drift only
    fp32 = [r for r in b["rows"] if r["precision"] == "fp32"]
    assert sorted(r["target"] for r in fp32) == sorted(TARGETS) and all(r["passed"] for r in fp32), res.output
    assert all(r["latency_ratio"]["p50"] > 0 and r["mae_drift"] is None for r in fp32)
    assert any(s.startswith("onnx bf16") for s in b["skipped"])  # listed, not run
    assert res.exit_code == (0 if b["passed"] else 1)
    md = (tmp_path / "bench" / "bench.md").read_text()
    assert all(t in md for t in TARGETS) and "pytorch eager" in md
    assert (tmp_path / "bench" / "bench_latency.png").stat().st_size > 0


def test_int8_per_image_limits_are_judged_on_faces_only():
    from edgeage.export.conformance.check import judge
    from edgeage.targets.spec import load_spec

    spec = load_spec("openvino")
    metrics = {"mae_drift": None, "age_abs_diff_p99": 23.0, "age_abs_diff_max": 24.0}
    on_faces = judge(metrics, spec, "int8", faces=True)
    assert not on_faces.passed and any("age_abs_diff_p99" in f for f in on_faces.failures)
    generated = judge(metrics, spec, "int8", faces=False)
    assert generated.passed and {"age_abs_diff_p99", "age_abs_diff_max"} <= set(generated.skipped_thresholds)
    fp32 = judge({"mae_drift": None, "age_abs_diff_max": 1.0, "age_abs_diff_p99": 1.0,
                  "argmax_agreement": 1.0}, spec, "fp32", faces=False)
    assert not fp32.passed  # fp32 limits hold on any input
    noisy = {"mae_drift": None, "age_abs_diff_max": 5.0, "age_abs_diff_p99": 1.2, "argmax_agreement": 0.8}
    bf16 = judge(noisy, spec, "bf16", faces=False)  # reduced precisions: limits set for faces
    assert bf16.passed and {"age_abs_diff_p99", "age_abs_diff_max", "argmax_agreement_min"} <= set(
        bf16.skipped_thresholds)
    assert not judge(noisy, spec, "bf16", faces=True).passed


@pytest.mark.parametrize("target", TARGETS)
def test_check_reports_delegation_and_op_coverage(target, exported, tiny_ckpt):
    """Every check report says what the runtime runs on its fast path, where the runtime tells:
    ExecuTorch's XNNPACK segments (one: nothing outside), OpenVINO's ops by runtime precision,
    ONNX Runtime's providers and op types; LiteRT says it does not report it."""
    res = cli("check", "--artifact", exported(target), "--model", tiny_ckpt, "--runs", 0, "--limit", 4, "--json")
    assert res.exit_code == 0, res.output
    c = json.loads(res.stdout)["coverage"]
    if target == "executorch":
        assert c["available"] and c["segments"] == 1 and c["ops_outside_delegate"] == {}
    elif target == "openvino":
        assert c["available"] and c["runtime_precisions"]["f32"]["Convolution"] > 0
    elif target == "onnx":
        assert c["available"] and c["execution_providers"] == ["CPUExecutionProvider"] and c["op_types"]["Conv"] > 0
    else:
        assert not c["available"] and "does not report" in c["note"]


def test_bench_throughput_grid_over_threads_and_batch(tiny_ckpt, tmp_path):
    """bench --threads --batch: faces/s and p50 per thread count and batch size, for every row and
    the float model, in bench.json and as a table in bench.md."""
    res = cli("bench", "--model", tiny_ckpt, "--targets", "onnx", "--precisions", "fp32", "--threads", "1,2",
              "--batch", "1,4", "--limit", 4, "--runs", 3, "--rounds", 1, "--warmup", 1, "--out", tmp_path / "b")
    assert res.exit_code == 0, res.output
    row = json.loads((tmp_path / "b" / "bench.json").read_text())["rows"][0]
    for side in ("target", "float"):
        grid = row["throughput"][side]
        assert [(g["threads"], g["batch"]) for g in grid] == [(1, 1), (1, 4), (2, 1), (2, 4)]
        assert all(g["faces_per_s"] == pytest.approx(g["batch"] / g["p50_ms"] * 1e3) for g in grid)
    md = (tmp_path / "b" / "bench.md").read_text()
    assert "Throughput: faces/s" in md and "2 thr, batch 4" in md
    bad = cli("bench", "--model", tiny_ckpt, "--batch", "0,8")
    assert bad.exit_code == 2 and "--batch" in bad.output
