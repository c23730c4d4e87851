"""Flip test-time augmentation as a deployed option: every face read as it is and mirrored, in one
model call, its age the mean of the two readouts (``AgeEstimator(tta_flip=True)``, ``predict
--tta-flip``, ``pipeline-bench --tta-flip``), on a checkpoint and on an exported artifact alike."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgeage.data import load_image
from edgeage.pipeline import AgeEstimator

from conftest import cli


@pytest.fixture(scope="module")
def crops(face_dir, tiny_ckpt):
    est = AgeEstimator.from_checkpoint(tiny_ckpt)
    imgs = [load_image(p) for p in sorted(face_dir.iterdir())[:4]]
    return np.stack([est.crop_faces(img, est.faces(img))[0] for img in imgs])


def test_each_face_is_read_with_its_mirror_in_one_call(tiny_ckpt, crops):
    plain = AgeEstimator.from_checkpoint(tiny_ckpt)
    calls = []

    def model(x):
        calls.append(len(x))
        return plain.model(x)

    flip = AgeEstimator(model, plain.manifest, tta_flip=True)
    out = flip.outputs(flip.inputs(crops[:1]))
    assert calls == [2] and out.shape[:2] == (1, 2)  # one face: one call of batch 2, two views
    ages = flip.ages(crops)
    mirrored = plain.ages(np.ascontiguousarray(crops[:, :, ::-1]))
    assert np.allclose(ages, (plain.ages(crops) + mirrored) / 2, atol=1e-3)
    assert not np.allclose(plain.ages(crops), mirrored, atol=1e-3)  # the tiny model is not mirror-symmetric
    # the flag travels with the estimator's other variants, and an explicit argument overrides it
    assert flip.with_crop_policy("none").tta_flip and flip.with_detector(None).tta_flip
    assert np.allclose(plain.ages(crops, tta_flip=True), ages) and np.allclose(flip.ages(crops, tta_flip=False),
                                                                               plain.ages(crops))
    assert flip.ages(crops[:0]).shape == (0,)


def test_predict_tta_flip_on_a_checkpoint_and_on_its_artifact(tiny_ckpt, onnx_art, face_dir):
    images = sorted(face_dir.iterdir())[:3]
    runs = {}
    for name, src in (("ckpt", ["--model", tiny_ckpt]), ("onnx", ["--artifact", onnx_art])):
        for flag in ([], ["--tta-flip"]):
            res = cli("predict", *src, *images, "--json", *flag)
            assert res.exit_code == 0, res.output
            doc = json.loads(res.output)
            assert doc["tta_flip"] is bool(flag)
            runs[name, bool(flag)] = [f["age"] for r in doc["images"] for f in r["faces"]]
    ref = AgeEstimator.from_checkpoint(tiny_ckpt, tta_flip=True)
    want = [f["age"] for p in images for f in ref.predict(load_image(p))["faces"]]
    assert np.allclose(runs["ckpt", True], want, atol=1e-3)
    assert np.allclose(runs["onnx", True], runs["ckpt", True], atol=1e-2)  # the artifact reads the mirror too
    assert not np.allclose(runs["ckpt", True], runs["ckpt", False], atol=1e-3)


def test_pipeline_bench_times_the_flip_beside_the_plain_model(tiny_ckpt, face_dir, tmp_path):
    res = cli("pipeline-bench", "--photos", face_dir, "--model", tiny_ckpt, "--limit", 4, "--rounds", 1,
              "--warmup", 1, "--tta-flip", "--out", tmp_path / "pb")
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "pb" / "pipeline.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["pytorch fp32", "pytorch fp32 + flip"]
    assert rows[0]["faces"] == rows[1]["faces"] >= 1 and rows[1]["ms_per_photo"]["model"] > 0
    assert not np.allclose(rows[0]["ages_first"], rows[1]["ages_first"], atol=1e-3)
    ref = AgeEstimator.from_checkpoint(tiny_ckpt, tta_flip=True)
    first = sorted(face_dir.iterdir())
    assert rows[1]["ages_first"][0] == pytest.approx(ref.predict(load_image(first[0]))["faces"][0]["age"], abs=1e-3)
