"""AL-ResNet (Zhang et al. 2018, "Fine-grained age estimation in the wild with attention LSTM
networks"), small enough for the edge.

A ResNet backbone gives a mid-level feature map (stage 3) and the final map (stage 4). The global
feature (GAP of the final map) initialises an LSTM (``nn.LSTMCell``: a real LSTM, unrolled for a
fixed number of ``steps``); at every step the LSTM's hidden state proposes the centre of an
age-sensitive region (tanh -> [-1, 1] coordinates, a fixed ``crop_scale`` of the map), the region
is sampled from the mid-level map by an affine bilinear sampler, pooled, and fed back as the
LSTM's next input. The local features of all steps and the global feature are fused (concat ->
1x1 conv) into a [N, C, 1, 1] map for any registered head.

Every image's LSTM state starts from that image's own global feature (h0 = tanh(W g), c0 = 0) and
the batch dimension is never a sequence dimension, so an image's output cannot depend on the
images batched with it (tests/unit/test_families.py plants that fault and catches it).

``sampler`` picks the sampling op (same values, no parameters, so a checkpoint can be exported
with either): ``grid_sample`` (an affine sampling grid + F.grid_sample, the usual form) or ``separable``
(the same axis-aligned bilinear crop as two matmuls with interpolation weights
relu(1 - |coordinate - pixel|), zero outside the map: only elementwise ops and MatMul, for
runtimes without a GridSample kernel)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register_model
from .heads import AgeModel, make_head
from .mgpnet import Backbone

SAMPLERS = ("grid_sample", "separable")


def _base(size: int, like: torch.Tensor) -> torch.Tensor:
    """Sample centres of a crop of ``size`` in [-1, 1] units (align_corners=False), a constant."""
    return torch.tensor([(2 * i + 1) / size - 1 for i in range(size)], dtype=like.dtype, device=like.device)


def crop_grid_sample(fmap: torch.Tensor, centre: torch.Tensor, scale: float, size: int) -> torch.Tensor:
    """Axis-aligned crop [N, C, size, size] of ``fmap`` centred at ``centre`` [N, 2] (x, y in
    [-1, 1]), ``scale`` of the map's extent; bilinear, zeros outside, align_corners=False.

    The sampling grid is the one ``F.affine_grid`` makes for theta = [[s, 0, cx], [0, s, cy]],
    built by broadcasting (OpenVINO has no conversion rule for aten::affine_grid_generator), so the
    graph holds one GridSample op."""
    n = fmap.shape[0]
    base = _base(size, centre) * scale
    zero = base.reshape(1, size, 1, 1) * 0.0
    gx = centre[:, 0:1].reshape(n, 1, 1, 1) + base.reshape(1, 1, size, 1) + zero   # [N, s, s, 1]
    gy = centre[:, 1:2].reshape(n, 1, 1, 1) + base.reshape(1, size, 1, 1) + zero.reshape(1, 1, size, 1)
    grid = torch.cat([gx, gy], dim=3)                                               # [N, s, s, (x, y)]
    return F.grid_sample(fmap, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _interp_weights(c: torch.Tensor, scale: float, size: int, extent: int) -> torch.Tensor:
    """[N, size, extent] bilinear weights of the crop's sample rows over the map's pixels (c: [N, 1])."""
    n = c.shape[0]
    norm = c.reshape(n, 1, 1) + scale * _base(size, c).reshape(1, size, 1)       # [N, size, 1]
    pix = ((norm + 1) * extent - 1) / 2                                            # align_corners=False
    idx = torch.tensor([float(i) for i in range(extent)], dtype=c.dtype, device=c.device)
    return torch.relu(1 - (pix - idx.reshape(1, 1, extent)).abs())


def crop_separable(fmap: torch.Tensor, centre: torch.Tensor, scale: float, size: int) -> torch.Tensor:
    """The same crop as ``crop_grid_sample`` by two batched matmuls (no GridSample op; 3-D bmm,
    which XNNPACK takes whole)."""
    n, c, h, w = fmap.shape
    wy = _interp_weights(centre[:, 1:2], scale, size, h)          # [N, s, H] (slices, not select)
    wx = _interp_weights(centre[:, 0:1], scale, size, w)          # [N, s, W]
    cols = torch.bmm(fmap.reshape(n, c * h, w), wx.transpose(1, 2))          # [N, C*H, s]
    t = cols.reshape(n, c, h, size).permute(0, 2, 1, 3).reshape(n, h, c * size)
    rows = torch.bmm(wy, t)                                                   # [N, s, C*s]
    return rows.reshape(n, size, c, size).permute(0, 2, 1, 3)                 # [N, C, s, s]


class ALFeatures(nn.Module):
    """Backbone + attention LSTM; forward -> fused feature map [N, out_channels, 1, 1]."""

    def __init__(self, widths, depths, stem_stride: int, steps: int, hidden: int, crop_scale: float,
                 crop_size: int, sampler: str):
        super().__init__()
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}: use one of {SAMPLERS}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.net = Backbone(tuple(widths), tuple(depths), stem_stride, "stride", attention=False)
        self.steps, self.crop_scale, self.crop_size, self.sampler = steps, float(crop_scale), crop_size, sampler
        c_mid, c_glob = widths[-2], widths[-1]
        self.local = nn.Sequential(nn.Conv2d(c_mid, c_mid, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(c_mid), nn.ReLU())
        self.init_h = nn.Linear(c_glob, hidden)
        self.lstm = nn.LSTMCell(c_mid, hidden)
        self.where = nn.Linear(hidden, 2)
        nn.init.zeros_(self.where.weight)   # first proposals at the centre, then learned
        nn.init.zeros_(self.where.bias)
        self.fuse = nn.Sequential(nn.Conv2d(c_glob + steps * c_mid, c_glob, 1, bias=False),
                                  nn.BatchNorm2d(c_glob), nn.ReLU())
        self.out_channels = c_glob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stages = self.net.stages
        y = stages[:-1](self.net.stem(x))          # stage 3 (mid-level) map
        top = stages[-1](y)                          # stage 4 map
        g = torch.flatten(F.adaptive_avg_pool2d(top, 1), 1)
        h = torch.tanh(self.init_h(g))
        c = h * 0.0                                 # c0 = 0 (no full op)
        crop = crop_grid_sample if self.sampler == "grid_sample" else crop_separable
        feats = [g]
        inp = torch.flatten(F.adaptive_avg_pool2d(y, 1), 1)   # first input: the whole mid-level map
        for _ in range(self.steps):  # fixed unroll
            h, c = self.lstm(inp, (h, c))
            centre = torch.tanh(self.where(h)) * (1 - self.crop_scale)   # keep the crop inside
            region = self.local(crop(y, centre, self.crop_scale, self.crop_size))
            inp = torch.flatten(F.adaptive_avg_pool2d(region, 1), 1)
            feats.append(inp)
        z = torch.cat(feats, dim=1)
        return self.fuse(z.reshape(z.shape[0], z.shape[1], 1, 1))


@register_model("al-resnet", widths=(20, 40, 80, 160), depths=(2, 2, 2, 2), stem_stride=1,
                steps=3, hidden=128, crop_scale=0.5, crop_size=4, sampler="grid_sample",
                head="sord", age_min=0, age_max=100, dropout=0.1, input_size=64)
def al_resnet(widths, depths, stem_stride, steps, hidden, crop_scale, crop_size, sampler, head,
              age_min, age_max, dropout, input_size):
    """ResNet-18 layout at 5/16 width + attention LSTM (3 steps) over stage-3 crops."""
    del input_size
    feats = ALFeatures(widths, depths, stem_stride, steps, hidden, crop_scale, crop_size, sampler)
    return AgeModel(feats, make_head(head, feats.out_channels, age_min, age_max, dropout))
