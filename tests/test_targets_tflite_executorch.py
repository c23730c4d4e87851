"""TFLite and ExecuTorch targets through the plugin interface (exporter module + Runner + TOML)
called directly, on the real runtimes and real UTKFace faces (no mocks). The conftest's
``tiny_ckpt`` has non-trivial outputs (perturbed BN, scaled logits)."""
from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeage.checkpoint import load_model
from edgeage.data import load_image
from edgeage.preprocess import CropParams, Normalize, canonical_crop, model_input
from edgeage.readout import apply_readout
from edgeage.export.conformance.localize import compare, float_intermediates
from edgeage.targets.spec import load_spec
from edgeage.utils import EdgeAgeError, sha256_file

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("tflite", "executorch")
N_FACES = 6


@pytest.fixture(scope="module")
def model(tiny_ckpt):
    return load_model(tiny_ckpt)


@pytest.fixture(scope="module")
def faces(face_dir) -> torch.Tensor:
    files = sorted(face_dir.glob("*.jpg"))[:: 24 // N_FACES][:N_FACES]
    crops = np.stack([canonical_crop(load_image(f), None, CropParams()) for f in files])
    return model_input(crops, Normalize())


@pytest.fixture(scope="module")
def artifacts(model, faces, tmp_path_factory):
    """artifacts(name) -> (spec, folder, manifest, Runner): a fp32 export, once per target."""
    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            spec = load_spec(name)
            out = tmp_path_factory.mktemp(name)
            files = importlib.import_module(spec.exporter).export(
                model[0], faces[:2].clone(), out, "fp32", spec)
            assert files and all((out / f).is_file() for f in files)
            manifest = model[1].copy_with(artifact={"target": name, "precision": "fp32", "files": [
                {"name": f, "sha256": sha256_file(out / f), "size": (out / f).stat().st_size} for f in files]})
            runner = importlib.import_module(spec.runner).Runner(
                out, manifest, spec, spec.runtime["threads"])
            cache[name] = spec, out, manifest, runner
        return cache[name]

    return get


def ages(model, out) -> np.ndarray:
    return np.asarray(apply_readout(model[1].readout, out))


@pytest.mark.parametrize("name", TARGETS)
def test_toml_names_resolve(name):
    spec = load_spec(name)
    assert spec.name == name and "fp32" in spec.precisions
    assert callable(importlib.import_module(spec.exporter).export)
    assert isinstance(importlib.import_module(spec.runner).Runner, type)
    assert {"mae_drift", "age_abs_diff_max"} <= set(spec.thresholds["fp32"])


@pytest.mark.parametrize("name", TARGETS)
def test_fp32_matches_pytorch(name, artifacts, model, faces):
    spec, _, _, runner = artifacts(name)
    with torch.no_grad():
        ref = model[0](faces).numpy()
    out = runner.run(faces.numpy())
    assert out.shape == ref.shape and out.dtype == np.float32
    assert np.abs(out - ref).max() < 1e-4
    assert np.abs(ages(model, out) - ages(model, ref)).max() <= spec.thresholds["fp32"]["age_abs_diff_max"]


@pytest.mark.parametrize("name", TARGETS)
def test_bgr_input_fails_the_threshold(name, artifacts, model, faces):
    """The comparison can fail: channels in the wrong order move the ages far past the limit."""
    spec, _, _, runner = artifacts(name)
    with torch.no_grad():
        ref = ages(model, model[0](faces).numpy())
    d_age = np.abs(ages(model, runner.run(np.ascontiguousarray(faces.numpy()[:, ::-1]))) - ref)
    assert d_age.max() > 20 * spec.thresholds["fp32"]["age_abs_diff_max"]


@pytest.mark.parametrize("name", TARGETS)
def test_truncated_model_file_names_the_file(name, artifacts, tmp_path):
    spec, out, manifest, _ = artifacts(name)
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    model_file = bad / manifest.artifact.files[0].name
    model_file.write_bytes(model_file.read_bytes()[: model_file.stat().st_size // 3])
    with pytest.raises(EdgeAgeError, match=model_file.name):
        importlib.import_module(spec.runner).Runner(bad, manifest, spec, 1).run(
            np.zeros((1, 3, 64, 64), np.float32))


@pytest.mark.parametrize("name", TARGETS)
def test_unsupported_precision_is_refused(name, model, faces, tmp_path):
    with pytest.raises(EdgeAgeError, match="precision"):
        importlib.import_module(load_spec(name).exporter).export(
            model[0], faces[:2], tmp_path, "fp8", load_spec(name))


def test_tflite_intermediates_map_to_torch_modules(artifacts, model, faces):
    """Layer outputs come back under torch module names, in NCHW, equal to the float model's."""
    x = faces[:2].numpy()
    res = compare(float_intermediates(model[0], x), artifacts("tflite")[3].intermediates(x))
    names = [r["layer"] for r in res["layers"]]
    assert res["compared"] >= 20 and "backbone" in names and any(".sa" in n for n in names)
    assert max(r["rel_error"] for r in res["layers"]) < 1e-5 and not res["jumps"]


def test_executorch_lowering_report(artifacts):
    spec, out, _, runner = artifacts("executorch")
    rep = json.loads((out / "lowering.json").read_text())
    # GeM's p-th root is exp(log(m) / p): the whole MGP-Net is one XNNPACK segment (pow with a
    # fractional exponent stayed outside and split it into 4)
    assert rep["segments"] == 1 and rep["delegated_nodes"] > 0 and rep["ops_outside_delegate"] == {}, rep
    assert runner.info["xnnpack_segments"] == rep["segments"] and runner.batch == 1
