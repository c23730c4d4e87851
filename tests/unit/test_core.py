"""Unit tier: the core's definitions (preprocessing, readout, registries, manifest, target spec,
output-folder rules), no data set and no runtime; a few seconds in all."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgeage.utils import EdgeAgeError


def test_numpy_and_torch_model_inputs_are_identical():
    import torch

    from edgeage.preprocess import Normalize, model_input, model_input_np, resize_weights

    w = resize_weights(96, 64)
    assert np.allclose(w.sum(axis=1), 1) and (w >= 0).all()
    crops = np.random.default_rng(0).integers(0, 256, (4, 96, 96, 3), dtype=np.uint8)
    for n in (Normalize(), Normalize(input_size=32, channel_order="BGR")):
        a = model_input_np(crops, n)
        b = model_input(torch.from_numpy(crops), n).numpy()
        assert a.dtype == np.float32 and a.shape == (4, 3, n.input_size, n.input_size)
        assert np.array_equal(a, b)


@pytest.mark.parametrize("kind", ["expectation", "identity", "coral", "mean"])
def test_readout_numpy_matches_torch(kind):
    import torch

    from edgeage.readout import apply_readout

    out = np.random.default_rng(1).normal(0, 4, (6, 101)).astype(np.float32)
    spec = {"type": kind, "age_min": 0, "age_max": 100}
    a = apply_readout(spec, out)
    b = apply_readout(spec, torch.from_numpy(out)).numpy()
    assert isinstance(a, np.ndarray) and a.shape == (6,) and np.allclose(a, b, atol=1e-4)
    with pytest.raises(ValueError, match="unknown readout"):
        apply_readout({"type": "median"}, out)


def test_expectation_readout_of_a_one_hot_is_that_age():
    from edgeage.readout import apply_readout

    out = np.full((1, 101), -50.0, np.float32)
    out[0, 37] = 50.0
    assert abs(float(apply_readout({"type": "expectation", "age_min": 0}, out)[0]) - 37) < 1e-4


def test_every_registered_head_has_its_loss_and_readout():
    import torch

    from edgeage.models.heads import HEADS, head_entry, make_head, register_head

    assert set(HEADS) == {"sord", "dex", "mean_residue", "regression", "coral", "daa", "drf"}
    for name in HEADS:
        e = head_entry(name)
        head = make_head(name, 8)
        assert head.spec.type == e.readout
        out = head(torch.randn(2, 8, 4, 4))
        loss = e.loss(head.spec)(out, torch.tensor([20.0, 60.0]))
        assert loss.ndim == 0 and torch.isfinite(loss)
    with pytest.raises(ValueError, match="registered twice"):
        register_head("sord", "expectation", e.loss)(lambda *a: None)
    with pytest.raises(ValueError, match="unknown head"):
        make_head("no-such-head", 8)


def test_model_registry_lists_and_refuses_unknown_options():
    from edgeage.models import create, default_config, list_models

    assert {"mgpnet", "mgpnet-xs", "mgpnet-t", "resnet18"} <= set(list_models())
    # one name, one meaning: mgpnet-xs96 is mgpnet-xs at the canonical crop's 96 px, nothing else
    xs, xs96 = default_config("mgpnet-xs"), default_config("mgpnet-xs96")
    assert xs96 == {**xs, "input_size": 96} and xs["input_size"] == 64
    with pytest.raises(KeyError, match="unknown model"):
        default_config("no-such-net")
    with pytest.raises(KeyError, match="valid"):
        create("mgpnet-t", no_such_option=1)


def _manifest() -> dict:
    return {"format": "edgeage-manifest/1", "model": {"name": "mgpnet-t"},
            "readout": {"type": "expectation", "age_min": 0, "age_max": 100},
            "preprocess": {"crop": {"margin": 1.0, "shift_y": 0.0, "crop_size": 96, "policy": "detect"},
                           "normalize": {"input_size": 64, "mean": [0.5] * 3, "std": [0.25] * 3,
                                         "channel_order": "RGB", "layout": "NCHW"}},
            "training": {"epoch": 3, "val": {"mae": 5}}, "versions": {}, "notes": {"by": "hand", "n": 1}}


def test_manifest_round_trip_and_errors():
    from edgeage.manifest import Manifest

    d = _manifest()
    m = Manifest.from_dict(d)
    assert m.input_size == 64 and m.crop.crop_size == 96 and m.model.name == "mgpnet-t"
    assert m.readout.type == "expectation" and m.training.epoch == 3 and m.model.kind == "age-estimator"
    assert m.model_extra == {"notes": {"by": "hand", "n": 1}}  # unknown keys kept
    back = m.to_dict()  # the very dict that was read: same keys in the same order, ints stay ints
    assert back == d and json.dumps(back) == json.dumps(d) and type(back["readout"]["age_min"]) is int
    assert "kind" not in back["model"] and "source" not in back  # nothing added
    assert Manifest.from_dict(json.loads(json.dumps(back))).to_dict() == d
    for broken, word in ((lambda x: x.pop("readout"), "readout"),
                         (lambda x: x["preprocess"].pop("crop"), "preprocess.crop"),
                         (lambda x: x["readout"].update(type="median"), "unknown readout"),
                         (lambda x: x["preprocess"]["crop"].update(colour=1), r"preprocess\.crop\.colour"),
                         (lambda x: x["preprocess"]["normalize"].update(input_size=float("nan")), "input_size")):
        bad = json.loads(json.dumps(d))
        broken(bad)
        with pytest.raises(EdgeAgeError, match=word) as e:
            Manifest.from_dict(bad, "x.json")
        assert str(e.value).startswith("x.json: "), e.value


def test_target_spec_validation_names_the_key(tmp_path):
    from edgeage.targets.spec import load_spec

    t = tmp_path / "t" / "target.toml"
    t.parent.mkdir()
    base = 'exporter = "e.py"\nrunner = "r.py"\n'
    for body, word in (('precisions = "fp32"\n', "precisions"), ('precisions = ["fp8"]\n', r"precisions\.0"),
                       ('precisions = ["fp32"]\n[thresholds.fp32]\nmae_drift = -1\n', "thresholds.fp32.mae_drift"),
                       ('precisions = ["fp32"]\n[thresholds.fp32]\nmax_error = 1\n', r"thresholds\.fp32\.max_error"),
                       ('precisions = ["fp32"]\n[runtime]\nthreads = 100000\n', r"runtime\.threads"),
                       ('precisions = ["fp32"]\n[thresholds.fp32]\nmae_drift = nan\n', r"thresholds\.fp32\.mae_drift"),
                       ('precisions = ["fp32"]\nandroid_app = "yes"\n', "android_app")):
        t.write_text(base + body)
        with pytest.raises(EdgeAgeError, match=word):
            load_spec(str(t))
    t.write_text(base + 'precisions = ["fp32", "int8"]\n')
    assert load_spec(str(t.parent)).name == "t"


def test_output_folder_rules(tmp_path, monkeypatch):
    from edgeage.utils import MARKER, atomic_dir, check_output, output_dir, plain_name

    monkeypatch.chdir(tmp_path)
    with pytest.raises(EdgeAgeError, match="current folder"):
        check_output(".")
    foreign = tmp_path / "f"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(EdgeAgeError, match="--force"):
        check_output(foreign)
    assert check_output(foreign, force=True) == foreign
    with atomic_dir(tmp_path / "a", kind="test") as d:
        (d / "x").write_text("1")
    assert (tmp_path / "a" / MARKER).is_file() and (tmp_path / "a" / "x").read_text() == "1"
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "a") as d:  # ours: may be replaced; a failure keeps the old one
            (d / "y").write_text("2")
            raise RuntimeError("boom")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [MARKER, "x"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "f"]  # no temp, no lock left
    assert output_dir(tmp_path / "r") == tmp_path / "r" and (tmp_path / "r" / MARKER).is_file()
    for bad in ("../x", "/etc/passwd", "..", "a/b", "", "C:evil"):
        with pytest.raises(EdgeAgeError, match="plain name"):
            plain_name(bad, "m.json")
    assert plain_name("model.onnx", "m.json") == "model.onnx"


def test_typed_configs_round_trip(tmp_path):
    from edgeage.targets.spec import load_spec, spec_from_dict
    from edgeage.train.recipes import Recipe, load_recipe

    spec = load_spec("openvino")
    t = spec_from_dict({k: v for k, v in spec.to_dict().items() if k != "_file"}, spec.file)
    assert t.name == "openvino" and "int8" in t.precisions and t.int8["backend"] == "openvino"
    assert t == spec and t.deploy == {"spatial": "nchw"}
    r = load_recipe("mgpnet-xs")
    assert isinstance(r, Recipe) and r.model["name"] == "mgpnet-xs" and r.train.epochs > 0
    d = r.to_dict()  # what checkpoints record, in the order they always have
    assert list(d) == ["model", "data", "train", "degrade", "distill", "name"]
    assert Recipe.from_dict(d) == r and Recipe.from_dict(json.loads(json.dumps(d))) == r
    with pytest.raises(EdgeAgeError, match="epochs"):
        Recipe.from_dict({**d, "train": {**d["train"], "epochs": 0}})
    with pytest.raises(EdgeAgeError, match="lr"):
        r.replace(train={"lr": -1.0})
    two = r.replace(train={"epochs": 2}, model={"name": "mgpnet-t"})
    assert (two.train.epochs, two.model, two.train.lr, r.train.epochs) == (2, {"name": "mgpnet-t"}, r.train.lr,
                                                                            d["train"]["epochs"])
    with pytest.raises(Exception):  # frozen: a change is a new, checked recipe
        r.train.epochs = 3


@pytest.mark.parametrize("p", [3.0, 2.5])
def test_gem_root_by_exp_log_matches_pow(p):
    """GeM's p-th root as exp(log(m) / p) (one XNNPACK segment) equals m ** (1 / p) to 1e-5."""
    import torch
    import torch.nn.functional as F

    from edgeage.models.layers import GeM

    g = GeM(p)
    x = torch.randn(2, 8, 16, 16, generator=torch.Generator().manual_seed(0)) * 3
    y = x.clamp(min=g.eps)
    ref = F.avg_pool2d(y.pow(p), 2, 2).pow(1.0 / p)
    assert torch.allclose(g(x), ref, rtol=1e-5, atol=1e-6)


def test_model_option_takes_a_shipped_model_name(tmp_path, monkeypatch):
    """--model NAME selects a shipped checkpoint (edgeage/assets/NAME.pt); a file of that name
    in the working folder wins; an unknown bare name lists the shipped ones."""
    from edgeage.checkpoint import default_model_path, model_path, read_checkpoint, shipped_models, shipped_names
    from edgeage.utils import EdgeAgeError

    shipped = shipped_models()
    assert shipped["default"] == default_model_path() and all(p.is_file() for p in shipped.values())
    names = shipped_names()  # what the evidence scripts measure: the default first, each model once
    assert shipped["default"] == shipped[names[0]] and sorted(names) == sorted(set(shipped) - {"default"})
    assert model_path(None) == model_path("default") == default_model_path()
    for name, p in shipped.items():
        assert model_path(name) == p and read_checkpoint(name)["sha256"] == read_checkpoint(p)["sha256"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "default").write_bytes(b"not a checkpoint")
    assert model_path("default") == __import__("pathlib").Path("default")  # the user's file, not ours
    with pytest.raises(EdgeAgeError, match="shipped models \\(--model NAME\\): default"):
        read_checkpoint("no-such-model")
