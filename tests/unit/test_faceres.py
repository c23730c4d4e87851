"""``faceres29`` (dlib's face-recognition ResNet with an age head) and its converter
(scripts/pretrained/faceres29.py): the model's shapes and its input-size limit; the converter reading
a face-api.js style weights manifest (float32 and uint8-quantised entries) into a network that
computes exactly what the source network computes on its own input, the normalisation folded into
the first conv. The real weights come from an npm cache outside the repository (not in CI); the
script's ``--check`` compares them with face-api.js itself."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeage.models import create

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pretrained" / "faceres29.py"


def converter():
    spec = importlib.util.spec_from_file_location("faceres29_converter", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_shapes_and_input_size_limit():
    m = create("faceres29").eval()
    assert m.config["input_size"] == 112
    with torch.no_grad():
        out = m(torch.randn(2, 3, 112, 112))
    assert out.shape == (2, 101)
    assert m.backbone(torch.randn(1, 3, 150, 150)).shape == (1, 256, 2, 2)   # the network's own 150 px
    with pytest.raises(ValueError, match="input_size >= 104"):
        create("faceres29", input_size=96)


def write_manifest(backbone, fc: np.ndarray, d: Path, quantise: str) -> None:
    """``backbone``'s weights in face-api.js's layout and names; ``quantise`` stored as uint8 (and the
    backbone's tensor replaced by its dequantised values, so both sides hold the same numbers)."""
    entries, blobs = [], []
    sd = backbone.state_dict()
    for key, t in sd.items():
        parts = key.removeprefix("blocks.").split(".")          # conv32_1.conv1.conv.weight
        *mod, kind, leaf = parts
        leaf = {("conv", "weight"): "filters", ("conv", "bias"): "bias",
                ("scale", "weight"): "weights", ("scale", "bias"): "biases"}[(kind, leaf)]
        name = "/".join([*mod, kind, leaf])
        a = t.numpy().astype(np.float32)
        if leaf == "filters":
            a = a.transpose(2, 3, 1, 0)                          # [out, in, kh, kw] -> [kh, kw, in, out]
        entry = {"name": name, "shape": list(a.shape), "dtype": "float32"}
        if name == quantise:
            lo, hi = float(a.min()), float(a.max())
            scale = (hi - lo) / 255
            q = np.round((a - lo) / scale).astype(np.uint8)
            deq = q.astype(np.float32) * scale + lo
            back = deq.transpose(3, 2, 0, 1) if leaf == "filters" else deq
            sd[key].copy_(torch.from_numpy(np.ascontiguousarray(back)))
            entry["quantization"] = {"dtype": "uint8", "scale": scale, "min": lo}
            blobs.append(q.tobytes())
        else:
            blobs.append(a.astype("<f4").tobytes())
        entries.append(entry)
    entries.append({"name": "fc", "shape": list(fc.shape), "dtype": "float32"})
    blobs.append(fc.astype("<f4").tobytes())
    (d / "face_recognition_model.bin").write_bytes(b"".join(blobs))
    (d / "face_recognition_model-weights_manifest.json").write_text(
        json.dumps([{"paths": ["face_recognition_model.bin"], "weights": entries}]))


def test_converted_network_computes_what_the_source_computes_on_its_own_input(tmp_path):
    conv = converter()
    torch.manual_seed(0)
    source = create("faceres29", input_size=150).backbone.eval()
    with torch.no_grad():   # affine scales near dlib's (weights ~ 2-7), so a wrong fold shows
        for m in source.modules():
            if m.__class__.__name__ == "Affine":
                m.weight.uniform_(0.5, 1.5)
    fc = np.random.default_rng(1).normal(0, 0.1, (256, 128)).astype(np.float32)
    write_manifest(source, fc, tmp_path, quantise="conv64_1/conv1/conv/filters")
    w, sha = conv.read_weights(tmp_path)
    assert len(sha) == 64 and w["conv64_1/conv1/conv/filters"].shape == (3, 3, 64, 64)
    sd, fc_read = conv.backbone_state(w)
    np.testing.assert_array_equal(fc_read, fc)
    target = create("faceres29", input_size=150).backbone.eval()
    target.load_state_dict(sd, strict=True)

    x01 = torch.rand(2, 3, 150, 150)
    mean = torch.tensor(conv.MEAN_RGB, dtype=torch.float32)[None, :, None, None]
    with torch.no_grad():
        want = source(x01 - mean)                     # the network on its own input, (x - mean) / 255
        got = target((x01 - 0.5) / 0.25)              # edgeage's normalised input
    assert float((got - want).abs().max()) < 1e-4 * float(want.abs().max())
    # without the fold the two differ: the test can fail
    sd_unfolded = dict(sd)
    sd_unfolded["conv32_down.conv.weight"] = sd["conv32_down.conv.weight"] * 4
    target.load_state_dict(sd_unfolded)
    with torch.no_grad():
        assert float((target((x01 - 0.5) / 0.25) - want).abs().max()) > 1e-2 * float(want.abs().max())


def test_a_manifest_that_does_not_cover_its_bytes_is_refused_naming_the_folder(tmp_path):
    conv = converter()
    source = create("faceres29", input_size=150).backbone
    write_manifest(source, np.zeros((256, 128), np.float32), tmp_path, quantise="")
    with open(tmp_path / "face_recognition_model.bin", "ab") as f:
        f.write(b"\0" * 8)
    with pytest.raises(SystemExit, match=str(tmp_path)):
        conv.read_weights(tmp_path)


def test_missing_npm_cache_names_the_folder_and_the_package(tmp_path):
    conv = converter()
    with pytest.raises(SystemExit, match="@vladmandic/face-api@1.7.15"):
        conv.model_dir(tmp_path)
