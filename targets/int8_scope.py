"""Which layers INT8 leaves in float, shared by every backend's quantizer."""
from __future__ import annotations


def gem_scopes(model) -> list[str]:
    """Module names of the GeM pools with finite p != 1 (y**(1/p) after a quantizer that can give
    0: NaN gradients in NNCF QAT)."""
    import math

    from edgeage.models.layers import GeM

    return [n for n, m in model.named_modules() if isinstance(m, GeM) and m.p != 1.0 and not math.isinf(m.p)]
