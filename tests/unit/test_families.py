"""Unit tier for the issue-15 families (DRF head, AL-ResNet, MiVOLO, SwinFace-age): shapes,
readouts, a training step, the edge budget, the exportable rewrites against their reference ops,
and planted faults (an LSTM state leaking across the batch; a context input swapped or missing).
No data set, no runtime."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgeage.models import create

# (model, options): every family in its default form, the DRF head on a small CNN
FAMILIES = [("al-resnet", {}), ("mivolo-face", {}), ("mivolo", {}), ("swinface-age", {}),
            ("mgpnet-t", {"head": "drf"}), ("mgpnet-xs", {"head": "drf"})]
IDS = [n + ("+" + o["head"] if o else "") for n, o in FAMILIES]
BUDGET_PARAMS, BUDGET_MACS = 3_000_000, 300_000_000


def inputs(model, n: int = 2, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    size = int(model.config["input_size"])
    return [torch.randn(n, 3, size, size, generator=g)]


def build(name, opts, seed=0):
    torch.manual_seed(seed)
    return create(name, **opts)


@pytest.mark.parametrize("name,opts", FAMILIES, ids=IDS)
def test_forward_shape_and_readout(name, opts):
    from edgeage.readout import apply_readout

    m = build(name, opts).eval()
    with torch.no_grad():
        out = m(*inputs(m, 3))
    assert out.shape == (3, 101) and torch.isfinite(out).all()
    ages_t = m.readout(out)
    ages_np = apply_readout(m.head.spec, out.numpy())          # the device side: numpy only
    assert isinstance(ages_np, np.ndarray) and ages_np.shape == (3,)
    assert np.allclose(ages_np, ages_t.numpy(), atol=1e-3)
    assert ((ages_np >= 0) & (ages_np <= 100)).all()


@pytest.mark.parametrize("name,opts", FAMILIES, ids=IDS)
def test_training_step_reaches_every_parameter_and_lowers_the_loss(name, opts):
    from edgeage.models.heads import head_entry

    m = build(name, opts).train()
    loss_fn = head_entry(m.head.kind).loss(m.head.spec)
    xs, ages = inputs(m, 8, seed=1), torch.tensor([3., 15, 22, 30, 41, 55, 68, 80])
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.0)
    losses = []
    for step in range(4):
        opt.zero_grad()
        loss = loss_fn(m(*xs), ages)
        loss.backward()
        if step == 0:
            no_grad = [k for k, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
            assert not no_grad, f"parameters without a finite gradient: {no_grad}"
        opt.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses


@pytest.mark.parametrize("name,opts", FAMILIES, ids=IDS)
def test_within_the_edge_budget(name, opts):
    from torch.utils.flop_counter import FlopCounterMode

    from edgeage.profile import count_macs, count_params

    m = build(name, opts).eval()
    assert count_params(m) <= BUDGET_PARAMS
    assert count_macs(m, m.config["input_size"]) <= BUDGET_MACS                    # conv + linear (edgeage models)
    with FlopCounterMode(display=False) as fc:  # + attention matmuls, everything
        m(*inputs(m, 1))
    assert fc.get_total_flops() / 2 <= BUDGET_MACS


# ------------------------------------------------------------------ batch independence

def batch_leak(model, seed: int = 3) -> float:
    """max |out(A alone) - out(A batched after B)|: 0 up to float error unless an image's output
    depends on the images batched with it (e.g. a recurrent state carried across the batch)."""
    model = model.eval()
    b_in, a_in = inputs(model, 1, seed), inputs(model, 1, seed + 1)
    with torch.no_grad():
        alone = model(*a_in)
        pair = model(*[torch.cat([b, a]) for b, a in zip(b_in, a_in)])
    return float((pair[1:] - alone).abs().max())


@pytest.mark.parametrize("name,opts", FAMILIES, ids=IDS)
def test_no_image_depends_on_the_others_in_its_batch(name, opts):
    assert batch_leak(build(name, opts)) < 1e-4


def test_planted_fault_lstm_state_leaking_across_the_batch_is_caught():
    from edgeage.models.alresnet import ALFeatures

    class LeakyAL(ALFeatures):
        """The fault: the LSTM's state is carried from one image to the next in the batch (the
        batch used as the sequence) instead of starting from each image's own feature."""

        def forward(self, x):
            outs, state = [], None
            for i in range(x.shape[0]):
                xi = x[i:i + 1]
                y = self.net.stages[:-1](self.net.stem(xi))
                top = self.net.stages[-1](y)
                g = torch.flatten(F.adaptive_avg_pool2d(top, 1), 1)
                h, c = state if state is not None else (torch.tanh(self.init_h(g)), torch.zeros(1, self.lstm.hidden_size))
                feats, inp = [g], torch.flatten(F.adaptive_avg_pool2d(y, 1), 1)
                from edgeage.models.alresnet import crop_grid_sample
                for _ in range(self.steps):
                    h, c = self.lstm(inp, (h, c))
                    centre = torch.tanh(self.where(h)) * (1 - self.crop_scale)
                    inp = torch.flatten(F.adaptive_avg_pool2d(
                        self.local(crop_grid_sample(y, centre, self.crop_scale, self.crop_size)), 1), 1)
                    feats.append(inp)
                state = (h, c)
                z = torch.cat(feats, 1)
                outs.append(self.fuse(z.reshape(1, -1, 1, 1)))
            return torch.cat(outs)

    good = build("al-resnet", {})
    leaky = build("al-resnet", {})
    leaky.backbone.__class__ = LeakyAL
    torch.nn.init.normal_(leaky.backbone.where.weight, std=0.5)   # proposals depend on the state
    torch.nn.init.normal_(good.backbone.where.weight, std=0.5)
    assert batch_leak(good) < 1e-4
    assert batch_leak(leaky) > 1e-3


# ------------------------------------------------------------------ DRF

def test_drf_routing_and_readout_are_the_routed_mixture_mean():
    from edgeage.models.heads import drf_loss
    from edgeage.readout import apply_readout

    m = build("mgpnet-t", {"head": "drf"}).eval()
    head = m.head
    with torch.no_grad():
        torch.nn.init.normal_(head.leaf_mean, std=10.0)
        x = inputs(m, 4)[0]
        f = m.backbone(x)
        mu = head.routing(f)                                     # [N, T, L]
        out = m(x)
    assert mu.shape == (4, head.trees, 2 ** head.depth)
    assert torch.allclose(mu.sum(2), torch.ones(4, head.trees), atol=1e-5)
    table = head.leaf_table().detach().reshape(head.trees, 2 ** head.depth, -1)  # [T, L, K]
    leaf_means = (table * head.bins).sum(2)                       # each leaf's mean over the bins
    expected = (mu * leaf_means).sum(2).mean(1)                   # routed mixture mean, tree average
    ages = apply_readout(head.spec, out.numpy())
    assert np.allclose(ages, expected.numpy(), atol=1e-3)
    # the loss is the mixture's negative log-likelihood at the true age
    p = (mu.unsqueeze(3) * table.unsqueeze(0)).sum(2).mean(1)      # [N, K]
    y = torch.tensor([20.0, 35.0, 50.0, 7.0])
    nll = -torch.log(p[torch.arange(4), y.long()]).mean()
    assert torch.allclose(drf_loss(head.spec)(out, y), nll, atol=1e-4)


def test_drf_leaf_update_moves_the_leaves():
    from edgeage.models.heads import drf_loss

    m = build("mgpnet-t", {"head": "drf"}).train()
    loss = drf_loss(m.head.spec)(m(inputs(m, 4)[0]), torch.tensor([10., 20, 30, 40]))
    loss.backward()
    assert m.head.leaf_mean.grad.abs().sum() > 0 and m.head.leaf_log_sigma.grad.abs().sum() > 0


# ------------------------------------------------------------------ AL-ResNet sampling

def test_separable_crop_equals_grid_sample():
    from edgeage.models.alresnet import crop_grid_sample, crop_separable

    g = torch.Generator().manual_seed(0)
    fmap = torch.randn(3, 8, 16, 16, generator=g)
    centre = torch.tensor([[0.0, 0.0], [0.4, -0.3], [-0.95, 0.9]])   # the last crop leaves the map
    for scale, size in ((0.5, 4), (0.3, 6)):
        a = crop_grid_sample(fmap, centre, scale, size)
        b = crop_separable(fmap, centre, scale, size)
        assert a.shape == (3, 8, size, size)
        assert torch.allclose(a, b, atol=1e-5)
    # and it is a crop: the centred crop of scale 0.5 at 8x8 of a 16x16 map is the middle
    c = crop_separable(fmap, torch.zeros(3, 2), 0.5, 8)
    assert torch.allclose(c, fmap[:, :, 4:12, 4:12], atol=1e-5)


def test_crop_grid_is_affine_grid():
    from edgeage.models.alresnet import crop_grid_sample

    g = torch.Generator().manual_seed(1)
    fmap = torch.randn(2, 4, 12, 12, generator=g)
    centre = torch.tensor([[0.3, -0.2], [-0.6, 0.5]])
    theta = torch.tensor([[[0.5, 0, 0.3], [0, 0.5, -0.2]], [[0.5, 0, -0.6], [0, 0.5, 0.5]]])
    ref = F.grid_sample(fmap, F.affine_grid(theta, [2, 4, 5, 5], align_corners=False), align_corners=False)
    assert torch.allclose(crop_grid_sample(fmap, centre, 0.5, 5), ref, atol=1e-6)


def test_al_resnet_samplers_give_the_same_model():
    grid = build("al-resnet", {}).eval()
    sep = build("al-resnet", {"sampler": "separable"}).eval()
    sep.load_state_dict(grid.state_dict())
    torch.nn.init.normal_(grid.backbone.where.weight, std=0.5)
    sep.backbone.where.weight.data.copy_(grid.backbone.where.weight.data)
    x = inputs(grid, 2)[0]
    with torch.no_grad():
        assert torch.allclose(grid(x), sep(x), atol=1e-4)
    with pytest.raises(ValueError, match="unknown sampler"):
        create("al-resnet", sampler="nearest")


def test_al_resnet_lstm_is_an_lstm():
    m = create("al-resnet")
    assert isinstance(m.backbone.lstm, torch.nn.LSTMCell)


# ------------------------------------------------------------------ MiVOLO

def test_outlook_attention_fold_equals_unfold_fold_reference():
    from edgeage.models.mivolo import OutlookAttention

    torch.manual_seed(0)
    att = OutlookAttention(24, 3).eval()
    x = torch.randn(2, 6, 5, 24)
    n, h, w, c = x.shape
    with torch.no_grad():
        ours = att(x)
        # VOLO's reference form with nn.Unfold / nn.Fold
        v = att.v(x).permute(0, 3, 1, 2)
        v = F.unfold(v, 3, padding=1).reshape(n, 3, 8, 9, h * w).permute(0, 1, 4, 3, 2)
        a = att.attn(x).reshape(n, h * w, 3, 9, 9).permute(0, 2, 1, 3, 4)
        a = (a * att.scale).softmax(-1)
        o = (a @ v).permute(0, 1, 4, 3, 2).reshape(n, c * 9, h * w)
        ref = att.proj(F.fold(o, (h, w), 3, padding=1).permute(0, 2, 3, 1))
    assert torch.allclose(ours, ref, atol=1e-5)


def test_mivolo_views_are_the_central_face_and_the_area_resized_context():
    """mivolo takes one canonical crop at margin k: the face view is its central 1/k square, the
    context view the crop area-resized by k, and each reaches the output."""
    m = build("mivolo", {}).eval()
    with torch.no_grad():  # as after training (it starts as its face path: see the next test)
        for lin in (m.backbone.merge, m.backbone.face_from_context.proj, m.backbone.context_from_face.proj):
            lin.weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(3))
    k = m.config["context_margin"]
    assert k == 2 and m.config["input_size"] == 128
    (x,) = inputs(m, 2)
    face, ctx = m.views(x)
    assert torch.equal(face, x[:, :, 32:96, 32:96])
    assert torch.allclose(ctx[0, :, 5, 7], x[0, :, 10:12, 14:16].mean(dim=(1, 2)), atol=1e-6)
    with torch.no_grad():
        right = m(x)
        assert torch.equal(right, m.head(m.backbone(face, ctx)))
        swapped = m.head(m.backbone(ctx, face))          # the planted fault: views swapped
        x2 = x.clone()
        x2[:, :, :32] += 0.7                             # only rows outside the face view change
        assert torch.equal(m.views(x2)[0], face)
        outside = m(x2)
    assert (right - swapped).abs().max() > 1e-3
    assert (right - outside).abs().max() > 1e-3         # the context reaches the output
    with pytest.raises(ValueError, match="multiple of context_margin"):
        m(x[:, :, :63, :63])
    with pytest.raises(ValueError, match="integer >= 2"):
        create("mivolo", context_margin=1.5)


def test_mivolo_starts_as_its_face_path_so_a_mivolo_face_warm_start_keeps_its_tokens():
    m = build("mivolo", {}).eval()
    d2 = m.backbone.out_channels
    t, u = torch.randn(1, 4, d2), torch.randn(1, 4, d2)
    assert torch.allclose(m.backbone.merge(torch.cat([t, u], dim=2)), t + m.backbone.merge.bias, atol=1e-6)
    (x,) = inputs(m, 2)
    x2 = x.clone()
    x2[:, :, :32] += 0.7  # the context changes, the face view does not
    with torch.no_grad():
        assert torch.allclose(m(x), m(x2), atol=1e-6)


# ------------------------------------------------------------------ Swin

def test_window_partition_round_trip_and_shift_mask():
    from edgeage.models.swinface import shift_mask, window_partition, window_reverse

    x = torch.randn(2, 8, 8, 5)
    win = window_partition(x, 4)
    assert win.shape == (8, 16, 5)
    assert torch.equal(win[0], x[0, :4, :4].reshape(16, 5))
    assert torch.equal(window_reverse(win, 4, 2, 8, 8), x)
    mask = shift_mask(8, 8, 4, 2)
    assert mask.shape == (4, 16, 16)
    assert (mask[0] == 0).all()                               # the top-left window is one region
    assert (mask[3] == -100).any() and (mask[3].diagonal() == 0).all()


def test_swin_blocks_shift_every_second_block_except_at_window_resolution():
    m = create("swinface-age")
    shifts = [[b.shift for b in s] for s in m.backbone.stages]
    assert shifts == [[0, 2], [0, 2], [0, 0, 0, 0]]


# ------------------------------------------------------------------ registry / manifest

@pytest.mark.parametrize("name", ["al-resnet", "mivolo-face", "mivolo", "swinface-age"])
def test_manifest_round_trip_and_every_head(name):
    from edgeage.checkpoint import build_manifest, check_manifest, model_from_manifest
    from edgeage.models.heads import HEADS

    m = build(name, {}).eval()
    again = model_from_manifest(check_manifest(json_round_trip(build_manifest(m).to_dict()), name))
    again.load_state_dict(m.state_dict())
    xs = inputs(m, 2)
    with torch.no_grad():
        assert torch.equal(m(*xs), again.eval()(*xs))
    for head in HEADS:
        h = create(name, head=head).eval()
        with torch.no_grad():
            out = h(*xs)
        assert out.shape[0] == 2 and torch.isfinite(out).all()


def json_round_trip(d):
    import json

    return json.loads(json.dumps(d))


def test_export_forms_equal_the_reference_ops():
    """The XNNPACK-friendly rewrites (LayerNorm, roll, one-hot relative bias) against torch's."""
    from edgeage.models.mivolo import LayerNorm
    from edgeage.models.swinface import WindowAttention, relative_index, roll2

    torch.manual_seed(0)
    ln, ref = LayerNorm(12), torch.nn.LayerNorm(12)
    with torch.no_grad():
        ln.weight.normal_(), ln.bias.normal_()
    ref.load_state_dict(ln.state_dict())
    for shape in ((2, 5, 12), (2, 3, 4, 12), (1, 1, 12)):
        x = torch.randn(shape) * 3 + 1
        assert torch.allclose(ln(x), ref(x), atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # float32 under autocast, like F.layer_norm
        assert ln(torch.randn(2, 5, 12).bfloat16()).dtype == torch.float32
    x = torch.randn(2, 8, 8, 3)
    for s in (2, -2, 3):
        assert torch.equal(roll2(x, s), torch.roll(x, (s, s), dims=(1, 2)))
    att = WindowAttention(8, 2, 4)
    gathered = att.bias_table[relative_index(4)]
    assert torch.allclose(torch.matmul(att.rel_onehot, att.bias_table), gathered)


def test_patch_merging_is_swins_strided_concat():
    from edgeage.models.swinface import PatchMerging

    torch.manual_seed(0)
    pm = PatchMerging(3)
    x = torch.randn(2, 4, 6, 3)
    ref = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=3)
    assert torch.allclose(pm(x), pm.reduce(pm.norm(ref)), atol=1e-6)


def test_drf_mixture_is_the_same_under_autocast():
    """The DRF head sums the mixture by a matmul in float32 (and in every export) and by a
    broadcast product under autocast (float32 there too): the same numbers."""
    m = build("mgpnet-t", {"head": "drf"}).eval()
    head = m.head
    f = torch.randn(3, head.fc.in_features, 2, 2)
    with torch.no_grad():
        plain = head(f)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = head(f)
        mu = head.routing(f)
        ref = torch.log((mu.reshape(3, -1, 1) * head.leaf_table()).sum(1) / head.trees + 1e-9)
    assert auto.dtype == torch.float32
    assert torch.allclose(plain, ref, atol=1e-4)
    assert torch.allclose(auto.exp(), plain.exp(), atol=0.02)  # bf16 routing logits only
