"""MGP-Net (Zang & Xiao, Sci Rep 2025) and its edge variants.

Stem conv3x3 -> stage 1 (MGPBlocks) -> stages 2-4, each MGPool (stride 2, keeps the width) then
MGPBlocks (the first widens with a 1x1 projection shortcut) -> head. Depth (2, 2, 6, 2), widths
(64, 128, 256, 512) for the paper model."""
from __future__ import annotations

import math

import torch.nn as nn
import torch.nn.functional as F

from . import register_model
from .heads import AgeModel, make_head
from .layers import BasicBlock, make_downsample


class Backbone(nn.Module):
    """Stem conv3x3 -> stages of BasicBlocks. Stages 2-4 halve the resolution with
    ``downsample``: ``stride`` (a stride-2 first block, plain ResNet) or a pooling layer in front
    of the stage (``mgpool`` for MGP-Net; max / avg / softpool for ablations). ``attention``
    makes every block an MGPBlock (ECA or SE + spatial attention); ``attention="last"`` only the
    last block of each stage (fewer gates for the edge: each gate is a float island of several
    small ops that INT8 kernels do not fuse)."""

    def __init__(self, widths=(64, 128, 256, 512), depths=(2, 2, 6, 2), stem_stride: int = 1,
                 downsample: str = "mgpool", gem_ps=(1.0, 3.0, math.inf), softpool: bool = True,
                 shuffle_groups: int = 4, gate: str = "eca", attention: bool | str = True):
        super().__init__()
        if len(widths) != len(depths):
            raise ValueError(f"widths {widths} and depths {depths} differ in length")
        if attention not in (True, False, "last"):
            raise ValueError(f"attention = {attention!r}: true, false or 'last'")
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, stem_stride, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        stages, cin = [], widths[0]
        for i, (w, d) in enumerate(zip(widths, depths)):
            layers: list[nn.Module] = []
            stride = 2 if (i > 0 and downsample == "stride") else 1
            if i > 0 and downsample == "mgpool":
                layers.append(make_downsample("mgpool", cin, gem_ps=tuple(gem_ps), softpool=softpool,
                                              groups=shuffle_groups, gate=gate))
            elif i > 0 and downsample != "stride":
                layers.append(make_downsample(downsample, cin))
            for j in range(d):
                att = attention is True or (attention == "last" and j == d - 1)
                layers.append(BasicBlock(cin if j == 0 else w, w, stride if j == 0 else 1,
                                         attention=att, gate=gate))
            cin = w
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.out_channels = cin
        _init(self)

    def forward(self, x):
        return self.stages(self.stem(x))


def _init(m: nn.Module) -> None:
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(mod, nn.BatchNorm2d):
            nn.init.ones_(mod.weight)
            nn.init.zeros_(mod.bias)
    # zero-init the last BN of each residual branch: every block starts as identity
    for mod in m.modules():
        if isinstance(mod, BasicBlock):
            nn.init.zeros_(mod.bn2.weight)


def _build(widths, depths, stem_stride, head, age_min, age_max, dropout, input_size,
           downsample, gem_ps, softpool, shuffle_groups, gate, attention) -> AgeModel:
    del input_size  # fully convolutional; recorded in the config/manifest
    backbone = Backbone(widths, depths, stem_stride, downsample, gem_ps, softpool,
                              shuffle_groups, gate, attention)
    return AgeModel(backbone, make_head(head, backbone.out_channels, age_min, age_max, dropout))


_COMMON = dict(head="sord", age_min=0, age_max=100, dropout=0.1, input_size=64,
               downsample="mgpool", gem_ps=(1.0, 3.0, math.inf), softpool=True,
               shuffle_groups=4, gate="eca", attention=True)


@register_model("mgpnet", widths=(64, 128, 256, 512), depths=(2, 2, 6, 2), stem_stride=1,
                **_COMMON)
def mgpnet(**cfg):
    """The paper's MGP-Net: ~11 M parameters, stage 1 at full 64x64 resolution."""
    return _build(**cfg)


@register_model("mgpnet-s", widths=(32, 64, 128, 256), depths=(2, 2, 4, 2), stem_stride=2,
                **_COMMON)
def mgpnet_s(**cfg):
    """Edge variant: half widths, 4 blocks in stage 3, stride-2 stem."""
    return _build(**cfg)


@register_model("mgpnet-xs", widths=(20, 40, 80, 160), depths=(2, 2, 6, 2), stem_stride=2,
                **_COMMON)
def mgpnet_xs(**cfg):
    """Edge variant between -t and -s: 5/16 widths, full depth, stride-2 stem (~1.6 M params)."""
    return _build(**cfg)


@register_model("mgpnet-xs96", widths=(20, 40, 80, 160), depths=(2, 2, 6, 2), stem_stride=2,
                **{**_COMMON, "input_size": 96})
def mgpnet_xs96(**cfg):
    """``mgpnet-xs`` at a 96 px input, the canonical crop's own size (2.25x the MACs of the 64 px
    one, the same weights' shapes): more detail for faces the camera sees large."""
    return _build(**cfg)


@register_model("mgpnet-t", widths=(16, 32, 64, 128), depths=(2, 2, 6, 2), stem_stride=2,
                **_COMMON)
def mgpnet_t(**cfg):
    """Smallest edge variant: quarter widths, stride-2 stem."""
    return _build(**cfg)


@register_model("mgpnet-e", widths=(32, 48, 96, 192), depths=(1, 1, 2, 1), stem_stride=2,
                **{**_COMMON, "input_size": 32, "attention": "last"})
def mgpnet_e(**cfg):
    """Edge model v2: MGPBlocks and MGPool sized for INT8 CPU kernels: widths in multiples of 16,
    one MGPBlock (ECA + spatial attention) per stage, the others plain basic blocks, 32 px input.
    Each gate is a float island of several small ops; at batch 1 their count, not the MACs, sets
    OpenVINO INT8 latency (scripts/arch_latency.py)."""
    return _build(**cfg)
