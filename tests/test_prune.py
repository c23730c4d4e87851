"""Structural pruning: a pruned model computes exactly what its parent computes with the removed
channels cut out; widths shrink (residual ones too); MACs; ONNX export; checkpoints; the CLI
with fine-tuning."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from edgeage.checkpoint import build_manifest, load_model, save_checkpoint
from edgeage.models import create
from edgeage.models.layers import ECA, MGPool, SpatialAttention, channel_shuffle
from edgeage.profile import count_macs, count_params
from edgeage.train.prune import MGPoolPruner, prune, residual_widths

UTK = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "utkface"
SMALL = {"mgpnet-t": dict(widths=(16, 32, 32, 64), depths=(1, 1, 2, 1)),  # stage 3 keeps the width
         "resnet18": dict(widths=(16, 32, 32, 64))}


def small(name: str) -> torch.nn.Module:
    """A small model with random BN statistics (so no channel is constant or zero)."""
    torch.manual_seed(0)
    m = create(name, **SMALL[name]).eval()
    for bn in (b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)):
        for t in (bn.weight, bn.bias, bn.running_mean):
            t.data = torch.randn(t.shape) * 0.5
        bn.running_var.data = torch.rand(bn.running_var.shape) + 0.5
    return m


def kept(removed: list[int], c: int) -> torch.Tensor:
    k = torch.ones(c, dtype=torch.bool)
    k[removed] = False
    return k


def channels_cut(model: torch.nn.Module, removed: dict) -> torch.nn.Module:
    """The unpruned model with the removed channels cut out: every removed output channel is
    exactly zero (so no later layer gets anything from it), and the channel gates (ECA, spatial
    attention, MGPool's ECA over the shuffled concatenation) see only the kept channels, as they
    do in a pruned model. The gates' kept channels come from the model's own channel_shuffle."""
    ref = copy.deepcopy(model)
    mods = dict(ref.named_modules())

    def zero(idxs):
        def hook(mod, args, out):
            out = out.clone()
            out[:, idxs] = 0
            return out
        return hook

    def on_kept_only(mod, keep):
        fwd = mod.forward

        def forward(x):
            k, y = keep(x.shape[1]), torch.zeros_like(x)
            y[:, k] = fwd(x[:, k])
            return y
        mod.forward = forward

    for name, r in removed.items():
        m = mods[name]
        if "out" in r:
            m.register_forward_hook(zero(r["out"]))
        if isinstance(m, (ECA, SpatialAttention)):
            on_kept_only(m, lambda c, r=r: kept(r["out"], c))
        if isinstance(m, MGPool) and isinstance(m.gate, ECA) and "in" in r:
            def gate_kept(c, r=r, m=m, n=len(m.pools)):  # the branches' kept channels, shuffled
                cat = kept(r["in"], c // n).repeat(n).float()[None, :, None, None]
                return channel_shuffle(cat, m.groups).flatten() > 0
            on_kept_only(m.gate, gate_kept)
    return ref


@pytest.mark.parametrize("name", ["mgpnet-t", "resnet18"])
def test_pruned_model_equals_parent_with_removed_channels_cut(name):
    model = small(name)
    parent = copy.deepcopy(model)
    widths0, params0, macs0 = residual_widths(model), count_params(model), count_macs(model)
    removed = prune(model, 0.5)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        got, want, unpruned = model.eval()(x), channels_cut(parent, removed)(x), parent(x)
    assert (got - want).abs().max() <= 1e-5
    assert (got - unpruned).abs().max() > 1e-2  # channels really went (and mattered)
    widths = residual_widths(model)
    assert all(w == w0 // 2 for w, w0 in zip(widths, widths0)), (widths0, widths)
    assert count_macs(model) <= 0.55 * macs0 and count_params(model) < 0.55 * params0
    assert model.config["pruned"]["ratio"] == 0.5 and model.config["pruned"]["layers"]


def test_mgpool_input_channels_map_through_the_shuffle():
    """Input channel c sits at concat position b*C + c; channel_shuffle moves it (the notes'
    silently wrong case: torch-pruning treated the shuffle as the identity)."""
    m = MGPool(6)
    cat = torch.arange(24.0)[None, :, None, None]
    shuffled = channel_shuffle(cat, m.groups).flatten().tolist()
    pos = MGPoolPruner().positions(m, [1, 4])
    assert sorted(pos) == sorted(shuffled.index(b * 6 + c) for c in (1, 4) for b in range(4))
    assert sorted(pos) != sorted(b * 6 + c for c in (1, 4) for b in range(4))


def test_refuses_a_shuffle_that_pruning_would_change():
    from edgeage.utils import EdgeAgeError

    model = create("mgpnet-t", widths=(8, 8, 8, 8), depths=(1, 1, 1, 1), softpool=False)
    with pytest.raises(EdgeAgeError, match="3 branches and 4 shuffle groups"):
        prune(model, 0.5)


@pytest.fixture(scope="module")
def pruned_ckpt(tmp_path_factory):
    model = small("mgpnet-t")
    prune(model, 0.5)
    path = tmp_path_factory.mktemp("pruned") / "pruned.pt"
    save_checkpoint(path, model, build_manifest(model))
    return model, path


def test_checkpoint_round_trip_and_onnx_export(pruned_ckpt, tmp_path):
    import onnxruntime as ort

    model, path = pruned_ckpt
    loaded, manifest = load_model(path)
    assert manifest.model.pruned["layers"] == model.config["pruned"]["layers"]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = model(x)
        assert torch.equal(loaded(x), want)
    onnx_path = tmp_path / "pruned.onnx"
    torch.onnx.export(loaded, (x,), str(onnx_path), dynamo=True, input_names=["input"])
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert np.abs(got - want.numpy()).max() <= 1e-4


def test_core_load_model_reads_pruned_checkpoints(pruned_ckpt):
    model, path = pruned_ckpt
    loaded, _ = load_model(path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def prepare_small(out: Path, start: int) -> Path:
    """40 real UTKFace images as a prepared crop cache (no face detection: fast)."""
    from edgeage.data import Prepared, Sample, list_hash, parse_utk_name, save_prepared
    from edgeage.preprocess import CropParams

    files = sorted(UTK.glob("*.jpg"))[start::450][:40]
    if len(files) < 40:
        pytest.fail(f"UTKFace images not found under {UTK} (the tests need ../shared/datasets/utkface)")
    crops = np.stack([np.asarray(Image.open(f).convert("RGB").resize((96, 96))) for f in files])
    names = [f.name for f in files]
    ages = np.asarray([parse_utk_name(n) for n in names], np.float32)
    lhash = list_hash([Sample(n, a) for n, a in zip(names, ages)])
    save_prepared(Prepared(crops, ages, names, np.ones(len(names), bool), CropParams(policy="none"),
                           str(UTK), lhash, []), out)
    return out


def test_cli_prunes_and_finetunes_on_the_parent_split(tmp_path):
    from edgeage.cli import main
    from edgeage.train.loop import train
    from edgeage.train.recipes import load_recipe

    prepared = prepare_small(tmp_path / "data", 0)
    # the cache holds whole images (crop policy none): the recipe must say so (a cache made with
    # other crop settings than the recipe's is refused)
    train(load_recipe("smoke", {"data": {"path": str(prepared), "crop": "none"}, "train": {"epochs": 1}}),
          tmp_path / "parent", progress=False)
    out = tmp_path / "pruned"
    res = CliRunner().invoke(main, ["prune", "--model", str(tmp_path / "parent" / "best.pt"),
                                    "--ratio", "0.5", "--finetune-epochs", "1", "--distill",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    report = json.loads((out / "prune.json").read_text())
    assert report["macs_ratio"] <= 0.55 and report["finetune"]["epochs"] == 1
    assert report["after"]["residual_widths"] == [4, 4, 8, 8, 16]
    parent = load_model(tmp_path / "parent" / "best.pt")[1]
    for f in ("pruned.pt", "best.pt"):
        model, manifest = load_model(out / f)
        assert manifest.training.split == parent.training.split
        assert manifest.model.pruned["ratio"] == 0.5
        assert residual_widths(model) == [4, 4, 8, 8, 16]
    teacher = load_model(out / "best.pt")[1].training.recipe["distill"]["teacher"]
    assert teacher == parent.source.path
    # a different data set would put validation / test faces into fine-tuning: refused
    other_data = prepare_small(tmp_path / "other", 1)
    other = CliRunner().invoke(main, ["prune", "--model", str(tmp_path / "parent" / "best.pt"),
                                      "--ratio", "0.5", "--finetune-epochs", "1",
                                      "--data", str(other_data), "--out", str(tmp_path / "x")])
    assert other.exit_code != 0 and "split" in other.output


@pytest.mark.parametrize("target", [0.3, 0.5])
def test_by_macs_finds_the_smallest_channel_ratio_that_meets_the_target(target):
    from edgeage.train.prune import channel_ratio_for_macs

    model = create("mgpnet-t").eval()
    base = count_macs(model, 64)
    r = channel_ratio_for_macs(model, target, round_to=2)
    m = copy.deepcopy(model)
    prune(m, r, 2)
    assert count_macs(m, 64) <= (1 - target) * base  # the target holds
    less = copy.deepcopy(model)
    prune(less, max(0.0, r - 0.01), 2)
    assert count_macs(less, 64) > (1 - target) * base  # and is not overshot by much
