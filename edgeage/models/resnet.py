"""ResNet-18 baseline adapted to 64x64 faces: 3x3 stride-1 stem, no max-pool. ``downsample``
selects how stages 2-4 halve the resolution: ``stride`` (the usual stride-2 conv), or a pooling
layer in front of the stage (max / avg / softpool / mgpool) for the MGP-Net Table-7 ablation."""
from __future__ import annotations

import math

import torch.nn as nn

from . import register_model
from .heads import AgeModel, make_head
from .layers import BasicBlock, make_downsample
from .mgpnet import _init


class ResNetBackbone(nn.Module):
    def __init__(self, widths=(64, 128, 256, 512), depths=(2, 2, 2, 2), downsample="stride",
                 stem_stride: int = 1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, stem_stride, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        stages, cin = [], widths[0]
        for i, (w, d) in enumerate(zip(widths, depths)):
            layers: list[nn.Module] = []
            stride = 2 if (i > 0 and downsample == "stride") else 1
            if i > 0 and downsample != "stride":
                layers.append(make_downsample(downsample, cin, gem_ps=(1.0, 3.0, math.inf))
                              if downsample == "mgpool" else make_downsample(downsample, cin))
            for j in range(d):
                layers.append(BasicBlock(cin if j == 0 else w, w, stride if j == 0 else 1))
            cin = w
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.out_channels = cin
        _init(self)

    def forward(self, x):
        return self.stages(self.stem(x))


@register_model("resnet18", widths=(64, 128, 256, 512), depths=(2, 2, 2, 2), downsample="stride",
                stem_stride=1, head="sord", age_min=0, age_max=100, dropout=0.1, input_size=64)
def resnet18(widths, depths, downsample, stem_stride, head, age_min, age_max, dropout, input_size):
    del input_size
    backbone = ResNetBackbone(widths, depths, downsample, stem_stride)
    return AgeModel(backbone, make_head(head, backbone.out_channels, age_min, age_max, dropout))
