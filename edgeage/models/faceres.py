"""``faceres29``: dlib's face-recognition ResNet (Davis King, 2017; 29 conv layers, ResNet-34 with a
few layers removed and half the filters) with an age head, so that an age model can start from a
network that has already seen about 3 million faces of 7,485 people instead of from noise.

The architecture is the one face-api.js ports (its ``FaceRecognitionNet``): a 7x7 stride-2 conv and
a 3x3 max-pool, then residual stages of 32 / 64 / 128 / 256 channels; every conv has a bias and a
per-channel affine ("scale", dlib's batch norm folded) and the down-sampling blocks add a 2x2
average pool of their input, zero-padded in channels (and in space where the valid stride-2 conv
comes out one smaller). Weights: ``scripts/pretrained/faceres29.py`` converts face-api.js's copy of
dlib's public-domain weights into an edgeage checkpoint (docs/models.md). The head replaces the
128-d descriptor layer; the model reads the project's normalised input (``Normalize``): the
first conv folds it into the network's own ``(x - mean_rgb) / 255`` at conversion (exact: that
conv pads nothing).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register_model
from .heads import AgeModel, make_head


class Affine(nn.Module):
    """Per-channel ``x * weight + bias`` (dlib's folded batch norm), trainable, no batch statistics."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class ConvAffine(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int, relu: bool):
        super().__init__()
        # face-api.js: stride 1 'same' (pad 1 for 3x3), stride 2 'valid' (no padding)
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=(k // 2 if stride == 1 else 0), bias=True)
        self.scale = Affine(cout)
        self.relu = relu

    def forward(self, x):
        x = self.scale(self.conv(x))
        return F.relu(x) if self.relu else x


class Residual(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = ConvAffine(cin, cout, 3, 2 if down else 1, relu=True)
        self.conv2 = ConvAffine(cout, cout, 3, 1, relu=False)
        self.pad_c = cout - cin

    def forward(self, x):
        out = self.conv2(self.conv1(x))
        if not self.down:
            return F.relu(out + x)
        pooled = F.avg_pool2d(x, 2, 2)
        dh, dw = pooled.shape[2] - out.shape[2], pooled.shape[3] - out.shape[3]
        if dh or dw:  # the valid stride-2 conv came out one smaller: zeros below and to the right
            out = F.pad(out, (0, dw, 0, dh))
        if self.pad_c:
            pooled = F.pad(pooled, (0, 0, 0, 0, 0, self.pad_c))
        return F.relu(pooled + out)


class FaceResNet29(nn.Module):
    """The backbone: feature map [N, 256, h, w] (1x1 at 112 px, 2x2 at 150 px)."""

    STAGES = (("conv32", 32, 3), ("conv64", 64, 3), ("conv128", 128, 2), ("conv256", 256, 2))

    def __init__(self):
        super().__init__()
        self.conv32_down = ConvAffine(3, 32, 7, 2, relu=True)
        blocks: list[tuple[str, nn.Module]] = []
        cin = 32
        for name, c, n in self.STAGES:
            if c != 32:
                blocks.append((f"{name}_down", Residual(cin, c, down=True)))
            blocks += [(f"{name}_{i}", Residual(c, c, down=False)) for i in range(1, n + 1)]
            cin = c
        blocks.append(("conv256_down_out", Residual(256, 256, down=True)))
        self.blocks = nn.Sequential(OrderedDict(blocks))
        self.out_channels = 256

    def forward(self, x):
        x = F.max_pool2d(self.conv32_down(x), 3, 2)
        return self.blocks(x)


@register_model("faceres29", head="sord", age_min=0, age_max=100, dropout=0.1, input_size=112)
def faceres29(head, age_min, age_max, dropout, input_size):
    if input_size < 104:
        raise ValueError(f"faceres29 needs input_size >= 104 (its valid stride-2 convs), not {input_size}")
    backbone = FaceResNet29()
    return AgeModel(backbone, make_head(head, backbone.out_channels, age_min, age_max, dropout))
