"""The face detector as a deployed model (issue 26 part 2): ``edgeage detector export`` writes it
to every target, fp32 and INT8, with a ``face-detector`` manifest; ``edgeage detector check``
compares it with the float detector (the shipped .tflite by LiteRT) on scenes of real faces and
fails a detector that finds other faces; the pipeline runs it in place of LiteRT; an artifact of
one kind given where the other is expected is one clear error."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgeage.cli import main

TARGETS = ["onnx", "openvino", "tflite", "executorch"]


@pytest.fixture(scope="module")
def detectors(tmp_path_factory, face_dir, edgeage_env):
    """detectors(target, precision) -> the exported detector (through the CLI, once each)."""
    root, done = tmp_path_factory.mktemp("detectors"), {}

    def get(target: str, precision: str = "fp32"):
        if (target, precision) not in done:
            out = root / f"{target}-{precision}"
            args = ["detector", "export", "--target", target, "--precision", precision, "--out", str(out)]
            if precision == "int8":
                args += ["--calib-data", str(face_dir), "--calib-images", "40"]
            res = CliRunner().invoke(main, args)
            assert res.exit_code == 0, res.output
            done[(target, precision)] = out
        return done[(target, precision)]

    return get


def _check(art, face_dir, scenes: int = 24):
    res = CliRunner().invoke(main, ["detector", "check", "--artifact", str(art), "--data", str(face_dir),
                                    "--scenes", str(scenes), "--json"])
    return res.exit_code, json.loads(res.output.strip().splitlines()[-1])


@pytest.mark.parametrize("target", TARGETS)
def test_detector_exports_and_passes_its_check_fp32_and_int8(detectors, face_dir, target):
    from edgeage.artifact import read_manifest

    for precision in ("fp32", "int8"):
        art = detectors(target, precision)
        m = read_manifest(art)
        assert m.model.kind == "face-detector" and m.artifact.precision == precision
        assert m.input_size == 128
        code, r = _check(art, face_dir)
        assert r["faces_float"] >= 24, r                          # the scenes hold faces the float detector finds
        assert code == 0 and r["passed"], r["failures"]
        if precision == "fp32":                                   # the same graph: the same faces, same places
            assert r["recall"] == 1.0 and r["detection_precision"] == 1.0 and r["iou_min"] > 0.99, r
        else:
            assert m.quantize.calibration.count == 40


def test_detector_check_fails_a_detector_that_draws_other_boxes(face_dir, tmp_path, edgeage_env):
    """Boxes 1.6x as large (the same anchors and scores): IoU 1 / 1.6^2 = 0.39 with the float
    detector's, under the 0.5 that makes a match, so recall and detection precision are 0 and the check
    exits 1 naming them."""
    from edgeage.face import detector_manifest
    from edgeage.export.artifact.writer import export_artifact
    from edgeage.models.blazeface import ExportedDetector
    from edgeage.targets.spec import load_spec

    class Wider(ExportedDetector):
        def forward(self, x):
            y = super().forward(x)
            return torch.cat([y[..., :2], y[..., 2:4] * 1.6, y[..., 4:]], -1)

    art = export_artifact(Wider(), detector_manifest(), load_spec("onnx"), "fp32", tmp_path / "wider", deploy=False)
    code, r = _check(art, face_dir)
    assert code == 1 and not r["passed"]
    assert r["faces_float"] >= 24 and r["faces_artifact"] >= 24 and r["recall"] < 0.2, r
    assert {f.split()[0] for f in r["failures"]} >= {"recall", "detection_precision", "iou_mean"}, r["failures"]


def test_the_pipeline_runs_the_exported_detector_and_kinds_are_not_mixed(detectors, exported, face_dir, tmp_path):
    """predict with --artifact (age) + --detector (the detector, same runtime) finds the faces the
    shipped detector finds, with the same ages; each kind of artifact in the other's option is
    refused in one line naming it."""
    images = [str(p) for p in sorted(face_dir.iterdir())[:6]]
    age, det = exported("onnx"), detectors("onnx")
    runs = {}
    for name, extra in (("litert", []), ("exported", ["--detector", str(det)])):
        res = CliRunner().invoke(main, ["predict", "--artifact", str(age), *extra, *images, "--json"])
        assert res.exit_code == 0, res.output
        runs[name] = json.loads(res.output)["images"]
    for a, b in zip(runs["litert"], runs["exported"]):
        assert len(a["faces"]) == len(b["faces"]) >= 1
        for fa, fb in zip(a["faces"], b["faces"]):
            assert np.allclose(fa["box"], fb["box"], atol=0.05) and abs(fa["age"] - fb["age"]) < 1e-3
    for args, says in ((["--artifact", str(det)], "is an exported face-detector"),
                       (["--artifact", str(age), "--detector", str(age)], "is an exported age-estimator")):
        res = CliRunner().invoke(main, ["predict", *args, images[0]])
        assert res.exit_code != 0 and says in res.output and "Traceback" not in res.output, res.output
