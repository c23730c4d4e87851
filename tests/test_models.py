"""Model parts against their definitions: SoftPool, GeM, shuffle, MGPool, SORD, DAA, heads."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgeage.models import create, default_config, list_models
from edgeage.models.heads import HEADS, binary_codes
from edgeage.models.layers import (ECA, GeM, MGPool, SoftPool, SpatialAttention, channel_shuffle,
                                   eca_kernel_size, shuffle_permutation)
from edgeage.readout import apply_readout
from edgeage.train.losses import make_loss, sord_targets

torch.manual_seed(0)


def test_softpool_is_exp_weighted_average():
    x = torch.randn(2, 3, 8, 8) * 3
    w = x.unfold(2, 2, 2).unfold(3, 2, 2).reshape(2, 3, 4, 4, 4)  # windows
    ref = (torch.exp(w) * w).sum(-1) / torch.exp(w).sum(-1)
    assert torch.allclose(SoftPool(2)(x), ref, atol=1e-5)


def test_softpool_is_stable_for_large_activations():
    x = torch.full((1, 1, 4, 4), 200.0)
    x[0, 0, 0, 0] = 300.0  # exp(300) overflows float32 unless the window max is subtracted
    y = SoftPool(2)(x)
    assert torch.isfinite(y).all()
    assert y[0, 0, 0, 0].item() == pytest.approx(300.0, abs=1e-3)


def test_gem_p1_is_average_and_large_p_approaches_max():
    # values in [0.5, 1.5): x**80 of a window entirely below ~0.33 underflows float32 to 0 (the
    # unseeded [0.01, 1.01) this used to draw failed now and then for that reason)
    x = torch.rand(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)) + 0.5
    assert torch.allclose(GeM(1)(x), F.avg_pool2d(x, 2), atol=1e-6)
    assert torch.equal(GeM(math.inf)(x), F.max_pool2d(x, 2))
    gap = lambda p: (F.max_pool2d(x, 2) - GeM(p)(x)).abs().max().item()  # noqa: E731
    assert gap(3) > gap(20) > gap(80)
    assert gap(80) < 0.05
    ref3 = F.avg_pool2d(x ** 3, 2) ** (1 / 3)
    assert torch.allclose(GeM(3)(x), ref3, atol=1e-5)


@pytest.mark.parametrize("c,g", [(16, 4), (12, 4), (8, 2), (8, 1)])
def test_channel_shuffle_is_a_permutation(c, g):
    x = torch.arange(c, dtype=torch.float32).reshape(1, c, 1, 1).expand(2, c, 3, 3).clone()
    y = channel_shuffle(x, g)
    order = y[0, :, 0, 0].long().tolist()
    assert sorted(order) == list(range(c))
    assert order == shuffle_permutation(c, g)
    if g > 1:
        assert order != list(range(c))


def test_mgpool_shapes_and_branch_interleaving():
    pool = MGPool(8)
    y = pool(torch.randn(2, 8, 16, 16))
    assert y.shape == (2, 8, 8, 8)
    assert len(pool.pools) == 4  # SoftPool + GeM p=1,3,inf
    # after the shuffle each group of 4 channels holds one channel of every pooling branch
    perm = shuffle_permutation(32, 4)
    assert [p // 8 for p in perm[:4]] == [0, 1, 2, 3]


def test_eca_and_spatial_attention_shapes():
    assert eca_kernel_size(64) == 3 and eca_kernel_size(512) == 5
    x = torch.randn(2, 16, 8, 8)
    assert ECA(16)(x).shape == x.shape
    assert SpatialAttention()(x).shape == x.shape


def test_paper_mgpnet_structure():
    cfg = default_config("mgpnet")
    assert cfg["depths"] == (2, 2, 6, 2) and cfg["widths"] == (64, 128, 256, 512)
    m = create("mgpnet")
    stages = m.backbone.stages
    assert not any(isinstance(l, MGPool) for l in stages[0])
    for s in stages[1:]:
        assert isinstance(s[0], MGPool)
    blocks = [sum(1 for l in s if not isinstance(l, MGPool)) for s in stages]
    assert blocks == [2, 2, 6, 2]
    assert all(isinstance(b.ca, ECA) and isinstance(b.sa, SpatialAttention)
               for s in stages for b in s if not isinstance(b, MGPool))


def test_smallest_edge_variant_is_under_2m_params():
    n = sum(p.numel() for p in create("mgpnet-t").parameters())
    assert n <= 2_000_000


def test_registry_errors_name_the_problem():
    with pytest.raises(KeyError, match="known models"):
        create("nope")
    with pytest.raises(KeyError, match="unknown option"):
        create("mgpnet-t", wdiths=(1, 2))
    assert {"mgpnet", "mgpnet-s", "mgpnet-t", "resnet18"} <= set(list_models())


def test_sord_targets_sum_to_one_and_peak_at_age():
    ages = torch.tensor([0.0, 33.0, 100.0, 57.4])
    q = sord_targets(ages, 101)
    assert torch.allclose(q.sum(1), torch.ones(4), atol=1e-6)
    assert q.argmax(1).tolist() == [0, 33, 100, 57]
    assert torch.allclose(q[1, 30], q[1, 36])  # symmetric around the age


def test_daa_codes_shapes_and_readout():
    codes = binary_codes(100)
    assert codes.shape == (100, 8) and len({tuple(c.tolist()) for c in codes}) == 100
    m = create("mgpnet-t", head="daa").eval()
    out = m(torch.randn(3, 3, 64, 64))
    assert out.shape == (3, 100)
    assert torch.allclose(m.readout(out), out.mean(1))
    # out = reference age - predicted delta: raising the delta by 2 lowers every output by 2
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        before = m(x)
        m.head.decoder[-1].bias += 2.0
        after = m(x)
    assert torch.allclose(after, before - 2.0, atol=1e-4)


@pytest.mark.parametrize("head", HEADS)
def test_every_head_trains_and_reads_out(head):
    m = create("mgpnet-t", head=head, widths=(8, 16, 16, 32), depths=(1, 1, 1, 1))
    loss_fn = make_loss(m.head.spec, m.head.kind)
    x, ages = torch.randn(4, 3, 64, 64), torch.tensor([3.0, 25.0, 60.0, 90.0])
    out = m(x)
    loss = loss_fn(out, ages)
    loss.backward()
    assert torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
    a = m.readout(out)
    assert a.shape == (4,) and torch.isfinite(a).all()
    np.testing.assert_allclose(apply_readout(m.head.spec, out.detach().numpy()), a.detach().numpy(),
                               rtol=1e-5, atol=1e-4)


def test_resnet18_downsampling_variants():
    for ds in ("stride", "max", "avg", "softpool", "mgpool"):
        m = create("resnet18", downsample=ds, widths=(8, 16, 16, 32))
        assert m(torch.randn(1, 3, 64, 64)).shape == (1, 101)


def test_spatial_attention_equals_the_plain_cbam_form():
    sa = SpatialAttention()
    x = torch.randn(3, 16, 8, 6)
    plain = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
    assert torch.allclose(sa(x), x * torch.sigmoid(sa.conv(plain)), atol=1e-6)


def test_macs_count_the_daa_decoder_once_per_reference_age():
    from edgeage.profile import count_macs

    sord, daa = create("mgpnet-t", head="sord"), create("mgpnet-t", head="daa")
    h = daa.head
    c_in, red, hid = h.reduce[0].in_channels, h.reduce[0].out_channels, h.decoder[0].out_channels
    side = 4  # the 4x4 map of mgpnet-t at 64 px
    decoder = 100 * (2 * red * hid * 9 * side * side + hid)  # conv3x3 + FC, once per age
    reduce = c_in * red * side * side
    mlp = 100 * (8 * 16 + 16 * 32 + 32 * 2)
    backbone = count_macs(sord) - sord.head.fc.in_features * sord.head.fc.out_features
    assert count_macs(daa) == backbone + reduce + decoder + mlp  # ~29.6 M more than SORD


def test_models_command_counts_each_model_at_its_own_input_size():
    from click.testing import CliRunner

    from edgeage.cli import main

    res = CliRunner().invoke(main, ["models"])
    assert res.exit_code == 0, res.output
    registry = res.output.split("Shipped weights")[0]
    rows = {ln.split()[0]: ln for ln in registry.splitlines() if ln.strip()}
    assert rows["mgpnet-xs96"].endswith("@ 96x96") and rows["mgpnet-xs"].endswith("@ 64x64")
    assert "@ 32x32" in rows["mgpnet-e"]
    res = CliRunner().invoke(main, ["models", "--input-size", "48"])
    assert "mgpnet-xs96   params   1.61 M" in res.output and "@ 48x48" in res.output
    assert "faceres29     not at 48x48: faceres29 needs input_size >= 104" in res.output
