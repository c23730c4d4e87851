"""The public Python API (docs/api.md's example), on a small model and real faces: predict,
export, check, the artifact on its runtime alone (the same ages), bench."""
from __future__ import annotations

import numpy as np


def test_the_documented_api_example_runs(tiny_ckpt, face_dir, tmp_path):
    from edgeage import AgeEstimator, bench, check, export_model, load_artifact, load_image
    from edgeage.export.conformance.check import Latency

    img = load_image(sorted(face_dir.iterdir())[0])
    est = AgeEstimator.from_checkpoint(tiny_ckpt)
    faces = est.predict(img)["faces"]
    assert faces and 0 <= faces[0]["age"] <= 100
    art, manifest = export_model("onnx", model=tiny_ckpt, out=tmp_path / "art-onnx")
    assert (art / "manifest.json").is_file() and manifest.artifact.target == "onnx"
    report = check(artifact=art, model=tiny_ckpt, data=face_dir, latency=Latency(runs=0))
    assert report.passed and report.judged and report.n > 0, report.failures
    device = load_artifact(art)
    got = [f["age"] for f in device.predict(img)["faces"]]
    assert np.allclose(got, [f["age"] for f in faces], atol=1e-3)
    flipped = [f["age"] for f in device.with_tta_flip().predict(img)["faces"]]  # each face also mirrored
    assert np.allclose(flipped, [f["age"] for f in est.with_tta_flip().predict(img)["faces"]], atol=1e-3)
    assert not np.allclose(flipped, got, atol=1e-3)
    results = bench(targets=["onnx"], precisions=["fp32"], model=tiny_ckpt, latency=Latency(runs=0))
    assert [r["target"] for r in results["rows"]] == ["onnx"] and results["passed"]


def test_the_detector_api_exports_checks_and_runs_with_the_age_artifact(tiny_ckpt, face_dir, tmp_path):
    from edgeage import check_detector, export_detector, export_model, load_artifact, load_detector, load_image

    img = load_image(sorted(face_dir.iterdir())[0])
    det, manifest = export_detector("onnx", out=tmp_path / "det")
    assert manifest.model.kind == "face-detector"
    report = check_detector(det, face_dir, scenes=8)
    assert report.passed and report.recall == 1.0, report.failures
    assert load_detector(det).detect(img)                      # a face, found by ONNX Runtime
    art, _ = export_model("onnx", model=tiny_ckpt, out=tmp_path / "art")
    shipped, exported = load_artifact(art).predict(img), load_artifact(art, detector=det).predict(img)
    assert [round(f["age"], 3) for f in exported["faces"]] == [round(f["age"], 3) for f in shipped["faces"]]
