"""ResNet-18 baseline adapted to 64x64 faces: 3x3 stride-1 stem, no max-pool, plain basic
blocks. ``downsample`` selects how stages 2-4 halve the resolution: ``stride`` (the usual
stride-2 conv), or a pooling layer in front of the stage (max / avg / softpool / mgpool) for the
MGP-Net Table-7 ablation."""
from __future__ import annotations

from . import register_model
from .heads import AgeModel, make_head
from .mgpnet import Backbone


@register_model("resnet18", widths=(64, 128, 256, 512), depths=(2, 2, 2, 2), downsample="stride",
                stem_stride=1, head="sord", age_min=0, age_max=100, dropout=0.1, input_size=64)
def resnet18(widths, depths, downsample, stem_stride, head, age_min, age_max, dropout, input_size):
    del input_size
    backbone = Backbone(widths, depths, stem_stride, downsample, attention=False)
    return AgeModel(backbone, make_head(head, backbone.out_channels, age_min, age_max, dropout))
