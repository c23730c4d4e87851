"""Losses for every head (keyed by ``head.kind``), each ``fn(out, ages) -> scalar``.

- sord: soft ordinal labels (Diaz & Marathe 2019): q = softmax(-|k - y| / T), mixed with a
  uniform ``label_smoothing``; cross-entropy against the predicted softmax.
- dex: cross-entropy on the rounded age bin (readout is still the expectation).
- mean_residue: cross-entropy + mean loss (expectation error^2 / 2) + residue loss (entropy of
  the bins outside the top K) (Zhao et al. 2020).
- regression: L1. coral: binary cross-entropy over the K-1 ordered thresholds (Cao et al. 2020).
- daa: smooth-L1 of every reference age's prediction a - delta_a against y (Chen et al. 2023).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def sord_targets(ages: torch.Tensor, n_bins: int, age_min: float = 0.0, temperature: float = 1.0,
                 label_smoothing: float = 0.0) -> torch.Tensor:
    bins = torch.arange(n_bins, dtype=torch.float32, device=ages.device) + age_min
    q = torch.softmax(-(bins[None, :] - ages[:, None].float()).abs() / temperature, dim=1)
    if label_smoothing:
        q = (1 - label_smoothing) * q + label_smoothing / n_bins
    return q


def _bin_index(ages, spec, n_bins):
    return (ages.float() - spec["age_min"]).round().clamp(0, n_bins - 1).long()


def make_loss(spec: dict, kind: str, sord_temperature: float = 1.0, label_smoothing: float = 0.0,
              mr_lambda_mean: float = 0.2, mr_lambda_res: float = 0.05, mr_topk: int = 10):
    age_min = float(spec.get("age_min", 0))
    age_max = float(spec.get("age_max", 100))

    def sord(out, ages):
        q = sord_targets(ages.clamp(age_min, age_max), out.shape[1], age_min, sord_temperature,
                         label_smoothing)
        return -(q * F.log_softmax(out.float(), dim=1)).sum(1).mean()

    def dex(out, ages):
        return F.cross_entropy(out.float(), _bin_index(ages, spec, out.shape[1]),
                               label_smoothing=label_smoothing)

    def mean_residue(out, ages):
        out = out.float()
        p = torch.softmax(out, 1)
        bins = torch.arange(out.shape[1], device=out.device, dtype=out.dtype) + age_min
        mean_l = ((p * bins).sum(1) - ages.clamp(age_min, age_max)).pow(2).mean() / 2
        rest = p.scatter(1, p.topk(mr_topk, dim=1).indices, 0.0)
        res_l = -(rest * torch.log(rest.clamp_min(1e-12))).sum(1).mean()
        return dex(out, ages) + mr_lambda_mean * mean_l + mr_lambda_res * res_l

    def regression(out, ages):
        return F.l1_loss(out[:, 0].float(), ages.float())

    def coral(out, ages):
        k = torch.arange(out.shape[1], device=out.device) + age_min
        levels = (ages[:, None].float() > k[None, :]).float()
        return F.binary_cross_entropy_with_logits(out.float(), levels, reduction="none").sum(1).mean()

    def daa(out, ages):
        return F.smooth_l1_loss(out.float(), ages[:, None].float().expand_as(out))

    table = {"sord": sord, "dex": dex, "mean_residue": mean_residue, "regression": regression,
             "coral": coral, "daa": daa}
    if kind not in table:
        raise ValueError(f"no loss for head {kind!r}; known: {sorted(table)}")
    return table[kind]


def distill_loss(student_out, teacher_out, spec: dict, temperature: float = 2.0) -> torch.Tensor:
    """Knowledge distillation: KL of softened bin distributions for bin heads, else L1 of ages."""
    from edgeage.readout import apply_readout

    if spec["type"] == "expectation" and student_out.shape == teacher_out.shape:
        return distill_to_probs(student_out, F.softmax(teacher_out.float() / temperature, 1),
                                temperature)
    return F.l1_loss(apply_readout(spec, student_out), apply_readout(spec, teacher_out))


def distill_to_probs(student_out, target_probs, temperature: float = 2.0) -> torch.Tensor:
    """KL(target || softened student) * T^2, for targets that are already softened distributions
    (offline / ensemble teachers)."""
    t = temperature
    return F.kl_div(F.log_softmax(student_out.float() / t, 1), target_probs.float(),
                    reduction="batchmean") * t * t
