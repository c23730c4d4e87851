"""Which layers INT8 leaves in float, shared by every backend's quantizer."""
from __future__ import annotations


def gem_scopes(model) -> list[str]:
    """Module names of the GeM pools with finite p != 1 (y**(1/p) after a quantizer that can give
    0: NaN gradients in NNCF QAT)."""
    import math

    from edgeage.models.layers import GeM

    return [n for n, m in model.named_modules() if isinstance(m, GeM) and m.p != 1.0 and not math.isinf(m.p)]


def gate_scopes(model) -> list[str]:
    """Module names of the attention gates (ECA in its deploy form, ``edgeage.models.deploy``, and
    spatial attention): float, the sigmoid gates scale whole feature maps. Quantized with the
    deploy form's convolutions, single ages moved by up to 24 years on the shipped model
    (OpenVINO PTQ, 1,000 test faces) at an MAE drift of +0.06; kept float, 7.7 at +0.04."""
    from edgeage.models.deploy import DenseECA
    from edgeage.models.layers import SpatialAttention

    return [n for n, m in model.named_modules() if isinstance(m, (DenseECA, SpatialAttention))]
