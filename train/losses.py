"""Training losses: each head's own loss comes from the head registry
(``edgeage.models.heads.register_head``: a head, its loss and its readout together); the
distillation losses shared by every head are here."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from edgeage.manifest import ReadoutSpec
from edgeage.models.heads import HEADS, head_entry, sord_targets  # noqa: F401 - sord_targets re-exported


def make_loss(spec: ReadoutSpec, kind: str, sord_temperature: float = 1.0, label_smoothing: float = 0.0, **opts):
    """The registered loss of head ``kind`` (``edgeage.models.heads.register_head``)."""
    try:
        entry = head_entry(kind)
    except KeyError:
        raise ValueError(f"no loss for head {kind!r}; known: {sorted(HEADS)}") from None
    return entry.loss(spec, sord_temperature=sord_temperature, label_smoothing=label_smoothing, **opts)


def distill_loss(student_out, teacher_out, spec: ReadoutSpec, temperature: float = 2.0) -> torch.Tensor:
    """Knowledge distillation: KL of softened bin distributions for bin heads, else L1 of ages."""
    from edgeage.readout import apply_readout

    if spec.type == "expectation" and student_out.shape == teacher_out.shape:
        return distill_to_probs(student_out, F.softmax(teacher_out.float() / temperature, 1),
                                temperature)
    return F.l1_loss(apply_readout(spec, student_out), apply_readout(spec, teacher_out))


def distill_to_probs(student_out, target_probs, temperature: float = 2.0) -> torch.Tensor:
    """KL(target || softened student) * T^2, for targets that are already softened distributions
    (offline / ensemble teachers)."""
    t = temperature
    return F.kl_div(F.log_softmax(student_out.float() / t, 1), target_probs.float(),
                    reduction="batchmean") * t * t
