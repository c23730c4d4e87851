"""edgeage.train.average (scripts/average_weights.py): a weight-space average of two checkpoints of
one model."""
import pytest
import torch

from edgeage.checkpoint import build_manifest, load_model, read_checkpoint, save_checkpoint
from edgeage.train.average import average_checkpoints
from edgeage.utils import EdgeAgeError

from conftest import lively_model


def ckpt(path, scale, **kw):
    model = lively_model(scale, **kw)
    save_checkpoint(path, model, build_manifest(model))
    return path


def test_average_is_the_weighted_mean_and_names_both_parents(tmp_path):
    kw = dict(widths=(8, 16, 16, 32), depths=(1, 1, 1, 1))
    a = ckpt(tmp_path / "a.pt", 20.0, **kw)
    torch.manual_seed(7)
    b = ckpt(tmp_path / "b.pt", 5.0, **kw)
    model, manifest = average_checkpoints(a, b, 0.25)
    save_checkpoint(tmp_path / "c.pt", model, manifest)
    (ma, _), (mb, _), (mc, mfc) = load_model(a), load_model(b), load_model(tmp_path / "c.pt")
    sa, sb, sc = ma.state_dict(), mb.state_dict(), mc.state_dict()
    differ = [k for k in sa if sa[k].is_floating_point() and not torch.equal(sa[k], sb[k])]
    assert differ, "the two checkpoints must differ for the test to mean anything"
    for k in differ:
        torch.testing.assert_close(sc[k], 0.75 * sa[k] + 0.25 * sb[k])
    got = read_checkpoint(tmp_path / "c.pt")["manifest"].training.averaged_from
    assert got["alpha"] == 0.25
    assert got["a"]["sha256"] == read_checkpoint(a)["sha256"]
    assert got["b"]["sha256"] == read_checkpoint(b)["sha256"]
    assert mfc.model == load_model(b)[1].model


def test_different_models_or_a_bad_alpha_are_one_clear_error(tmp_path):
    a = ckpt(tmp_path / "a.pt", 20.0, widths=(8, 16, 16, 32), depths=(1, 1, 1, 1))
    b = ckpt(tmp_path / "b.pt", 20.0, widths=(8, 16, 16, 16), depths=(1, 1, 1, 1))
    with pytest.raises(EdgeAgeError, match="different model"):
        average_checkpoints(a, b, 0.5)
    # the same network under another name (a run's mgpnet-xs at 96 px, released as mgpnet-xs96) averages
    model, manifest = load_model(a)
    save_checkpoint(tmp_path / "renamed.pt", model, manifest.model_copy(
        update={"model": manifest.model.model_copy(update={"name": "mgpnet-xs"})}))
    _, got = average_checkpoints(a, tmp_path / "renamed.pt", 0.5)
    assert got.model.name == "mgpnet-xs" != manifest.model.name
    with pytest.raises(EdgeAgeError, match="--alpha 1.5"):
        average_checkpoints(a, a, 1.5)
