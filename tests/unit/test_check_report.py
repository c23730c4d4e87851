"""The check report as a type (``edgeage.check_report``): a report read back goes through the
schema (a damaged one is one EdgeAgeError naming the file and the field), and its JSON is the
JSON it was made from, key for key (the committed reports in bench/ included). Unit tier: no
torch, no runtime."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeage.check_report import CheckReport, DetectorCheckReport
from edgeage.utils import EdgeAgeError

ROOT = Path(__file__).resolve().parents[2]


def report_dict() -> dict:
    """A small check report, as ``check_artifact`` writes one (keys in its order)."""
    return {
        "target": "onnx", "precision": "fp32", "spec_file": "targets/onnx/target.toml", "artifact": None,
        "files": [{"name": "model.onnx", "sha256": "0" * 64, "size": 1234}],
        "model": "run/best.pt", "model_sha256": "a" * 64, "data": "faces/", "labelled": True,
        "faces_not_found": 0, "n": 3, "age_abs_diff_p50": 0.0, "age_abs_diff_p99": 1e-5, "age_abs_diff_max": 2e-5,
        "argmax_agreement": 1.0, "logit_abs_diff_max": 3e-6, "float_mae": 5.5, "target_mae": 5.5, "mae_drift": 0.0,
        "float_cs5": 0.6, "target_cs5": 0.6, "size_bytes": 1234, "float_size_bytes": 4321, "threads": 1,
        "runtime": {"provider": "CPUExecutionProvider", "threads": 1},
        "latency_ms": None, "float_latency_ms": None, "latency_ratio": None, "memory_mb": None,
        "float_memory_mb": None, "latency": None, "float_latency": None,
        "thresholds": {"mae_drift": 0.01, "argmax_agreement_min": 1},   # an int stays an int
        "threshold_results": [{"threshold": "mae_drift", "metric": "mae_drift", "value": 0.0, "op": "|x| <=",
                               "limit": 0.01, "passed": True}],
        "skipped_thresholds": [], "passed": True, "judged": True, "failures": [], "versions": {"edgeage": "0.1.0"},
        "per_image": {"name": ["a.jpg", "b.jpg", "c.jpg"], "age_float": [20.0, 30.0, 40.5],
                      "age_target": [20.0, 30.0, 40.5]},
        "coverage": {"available": True, "execution_providers": ["CPUExecutionProvider"]},
    }


def test_a_report_round_trips_dump_parse_dump(tmp_path):
    d = report_dict()
    r = CheckReport.parse(d, "report")
    assert r.passed and r.threshold_results[0].limit == 0.01 and r.per_image.age_float[2] == 40.5
    text = json.dumps(r.to_json_dict(), indent=2)
    assert text == json.dumps(d, indent=2)               # key order and int/float kept
    (tmp_path / "report.json").write_text(text)
    again = CheckReport.read(tmp_path / "report.json")
    assert json.dumps(again.to_json_dict(), indent=2) == text
    # an optional section absent stays absent; one set is appended, in the order it was set
    assert again.note is None and "note" not in again.to_json_dict()
    again.note, again.quantize = "n", {"method": "ptq", "backend": "x", "calibration": None}
    assert list(again.to_json_dict())[-2:] == ["note", "quantize"] and again.quantize.backend == "x"
    again.drop("per_image")
    assert "per_image" not in again.to_json_dict() and again.per_image is None


@pytest.mark.parametrize("field, value", [("passed", "yes"), ("passed", 1), ("n", 2.5), ("precision", "fp64")])
def test_a_damaged_report_is_one_error_naming_the_file_and_field(tmp_path, field, value):
    d = report_dict()
    d[field] = value
    (tmp_path / "report.json").write_text(json.dumps(d))
    with pytest.raises(EdgeAgeError) as e:
        CheckReport.read(tmp_path / "report.json")
    msg = str(e.value)
    assert str(tmp_path / "report.json") in msg and f"{field}:" in msg and "\n" not in msg, msg


def test_a_damaged_nested_field_and_an_assignment_are_refused(tmp_path):
    d = report_dict()
    d["threshold_results"][0]["passed"] = "true"
    with pytest.raises(EdgeAgeError, match=r"threshold_results\.0\.passed"):
        CheckReport.parse(d, "bench/x/report.json")
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(EdgeAgeError, match="not valid JSON"):
        CheckReport.read(tmp_path / "report.json")
    r = CheckReport.parse(report_dict(), "report")
    with pytest.raises(Exception, match="passed"):
        r.passed = "no"


def committed_reports():
    files = subprocess.run(["git", "ls-files", "bench"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    for f in files:
        if f.endswith("report.json"):
            yield f, json.loads((ROOT / f).read_text())
        elif f.endswith("bench.json"):
            b = json.loads((ROOT / f).read_text())
            rows = b.get("rows") if isinstance(b, dict) else None
            for i, row in enumerate(rows if isinstance(rows, list) else []):
                if isinstance(row, dict) and "spec_file" in row and "error" not in row:
                    yield f"{f}#rows.{i}", row


def test_the_committed_reports_parse_and_write_the_same_json():
    """docs pages are rendered from these files: the type reads every one of them and writes it
    back byte for byte."""
    seen = 0
    for where, d in committed_reports():
        kind = DetectorCheckReport if d.get("kind") == "detector-check" else CheckReport
        r = kind.parse(d, where) if kind is CheckReport else kind.model_validate(d)
        assert json.dumps(r.to_json_dict(), indent=2) == json.dumps(d, indent=2), where
        seen += 1
    assert seen >= 9


def test_the_report_types_import_without_torch():
    code = "import sys; sys.modules['torch'] = None; import edgeage.check_report, edgeage.schemas"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
