"""Age heads and the head registry. A head takes the backbone's final feature map [N, C, h, w]
and returns raw outputs; its ``spec`` says how ``edgeage.readout.apply_readout`` turns them into
ages. A head, its loss and its readout are registered together (``register_head``): adding a
head is one class, one loss and one ``@register_head`` line here, nothing else.

Losses (each ``loss(spec, **opts) -> fn(out, ages) -> scalar``):

- sord: soft ordinal labels (Diaz & Marathe 2019): q = softmax(-|k - y| / T), mixed with a
  uniform ``label_smoothing``; cross-entropy against the predicted softmax.
- dex: cross-entropy on the rounded age bin (readout is still the expectation).
- mean_residue: cross-entropy + mean loss (expectation error^2 / 2) + residue loss (entropy of
  the bins outside the top K) (Zhao et al. 2020).
- regression: L1. coral: binary cross-entropy over the K-1 ordered thresholds (Cao et al. 2020).
- daa: smooth-L1 of every reference age's prediction a - delta_a against y (Chen et al. 2023).
- drf: negative log-likelihood of the age under the regression forest's mixture (Shen et al.
  2018; ``DRFHead``).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeage.manifest import ReadoutSpec


@dataclasses.dataclass(frozen=True)
class HeadEntry:
    name: str
    build: Callable[..., nn.Module]      # (kind, channels, age_min, age_max, dropout) -> head
    loss: Callable[..., Callable]        # (ReadoutSpec, **opts) -> fn(out, ages)
    readout: str                         # edgeage.readout type of its outputs


_HEADS: dict[str, HeadEntry] = {}


def register_head(name: str, readout: str, loss: Callable[..., Callable]):
    """Decorator on a head builder: registers the head with its loss and its readout."""

    def deco(build):
        if name in _HEADS:
            raise ValueError(f"head {name!r} registered twice")
        _HEADS[name] = HeadEntry(name, build, loss, readout)
        return build

    return deco


def head_entry(name: str) -> HeadEntry:
    if name not in _HEADS:
        raise KeyError(f"unknown head {name!r}; known heads: {', '.join(_HEADS)}")
    return _HEADS[name]


# ---------------------------------------------------------------------------------- losses

def sord_targets(ages: torch.Tensor, n_bins: int, age_min: float = 0.0, temperature: float = 1.0,
                 label_smoothing: float = 0.0) -> torch.Tensor:
    bins = torch.arange(n_bins, dtype=torch.float32, device=ages.device) + age_min
    q = torch.softmax(-(bins[None, :] - ages[:, None].float()).abs() / temperature, dim=1)
    if label_smoothing:
        q = (1 - label_smoothing) * q + label_smoothing / n_bins
    return q


def _range(spec: ReadoutSpec) -> tuple[float, float]:
    return (float(0 if spec.age_min is None else spec.age_min),
            float(100 if spec.age_max is None else spec.age_max))


def sord_loss(spec: ReadoutSpec, sord_temperature: float = 1.0, label_smoothing: float = 0.0, **_):
    lo, hi = _range(spec)

    def fn(out, ages):
        q = sord_targets(ages.clamp(lo, hi), out.shape[1], lo, sord_temperature, label_smoothing)
        return -(q * F.log_softmax(out.float(), dim=1)).sum(1).mean()

    return fn


def dex_loss(spec: ReadoutSpec, label_smoothing: float = 0.0, **_):
    lo, _hi = _range(spec)

    def fn(out, ages):
        idx = (ages.float() - lo).round().clamp(0, out.shape[1] - 1).long()
        return F.cross_entropy(out.float(), idx, label_smoothing=label_smoothing)

    return fn


def mean_residue_loss(spec: ReadoutSpec, label_smoothing: float = 0.0, mr_lambda_mean: float = 0.2,
                      mr_lambda_res: float = 0.05, mr_topk: int = 10, **_):
    lo, hi = _range(spec)
    dex = dex_loss(spec, label_smoothing)

    def fn(out, ages):
        out = out.float()
        p = torch.softmax(out, 1)
        bins = torch.arange(out.shape[1], device=out.device, dtype=out.dtype) + lo
        mean_l = ((p * bins).sum(1) - ages.clamp(lo, hi)).pow(2).mean() / 2
        rest = p.scatter(1, p.topk(mr_topk, dim=1).indices, 0.0)
        res_l = -(rest * torch.log(rest.clamp_min(1e-12))).sum(1).mean()
        return dex(out, ages) + mr_lambda_mean * mean_l + mr_lambda_res * res_l

    return fn


def regression_loss(spec: ReadoutSpec, **_):
    return lambda out, ages: F.l1_loss(out[:, 0].float(), ages.float())


def coral_loss(spec: ReadoutSpec, **_):
    lo, _hi = _range(spec)

    def fn(out, ages):
        k = torch.arange(out.shape[1], device=out.device) + lo
        levels = (ages[:, None].float() > k[None, :]).float()
        return F.binary_cross_entropy_with_logits(out.float(), levels, reduction="none").sum(1).mean()

    return fn


def daa_loss(spec: ReadoutSpec, **_):
    return lambda out, ages: F.smooth_l1_loss(out.float(), ages[:, None].float().expand_as(out))


def drf_loss(spec: ReadoutSpec, **_):
    """Negative log-likelihood of the age under the forest's (discretised) mixture: ``out`` are
    the log mixture probabilities over the age bins (``DRFHead``), so this is cross-entropy at the
    true age; a non-integer age splits its mass between the two neighbouring bins."""
    lo, hi = _range(spec)

    def fn(out, ages):
        out = out.float()
        y = (ages.float().clamp(lo, hi) - lo)
        k0 = y.floor().clamp(0, out.shape[1] - 1)
        w1 = y - k0
        k1 = (k0 + 1).clamp(max=out.shape[1] - 1)
        logp = F.log_softmax(out, dim=1)
        nll = -((1 - w1) * logp.gather(1, k0.long()[:, None])[:, 0]
                + w1 * logp.gather(1, k1.long()[:, None])[:, 0])
        return nll.mean()

    return fn


class _Pooled(nn.Module):
    def __init__(self, channels: int, outputs: int, dropout: float):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, outputs)

    def pooled(self, f: torch.Tensor) -> torch.Tensor:
        return self.drop(torch.flatten(F.adaptive_avg_pool2d(f, 1), 1))


class BinsHead(_Pooled):
    """Logits over integer age bins age_min..age_max (SORD, DEX, mean-residue); readout =
    expectation of the softmax."""

    def __init__(self, kind: str, channels: int, age_min: int, age_max: int, dropout: float):
        super().__init__(channels, age_max - age_min + 1, dropout)
        self.kind = kind
        self.spec = ReadoutSpec(type="expectation", age_min=age_min, age_max=age_max)

    def forward(self, f):
        return self.fc(self.pooled(f))


class RegressionHead(_Pooled):
    def __init__(self, channels: int, age_min: int, age_max: int, dropout: float):
        super().__init__(channels, 1, dropout)
        self.kind = "regression"
        self.spec = ReadoutSpec(type="identity", age_min=age_min, age_max=age_max)
        nn.init.constant_(self.fc.bias, (age_min + age_max) / 3.0)

    def forward(self, f):
        return self.fc(self.pooled(f))


class CoralHead(_Pooled):
    """CORAL (Cao et al. 2020): one shared weight vector, K-1 ordered biases."""

    def __init__(self, channels: int, age_min: int, age_max: int, dropout: float):
        super().__init__(channels, 1, dropout)
        self.fc = nn.Linear(channels, 1, bias=False)
        self.bias = nn.Parameter(torch.linspace(2.0, -2.0, age_max - age_min))
        self.kind = "coral"
        self.spec = ReadoutSpec(type="coral", age_min=age_min, age_max=age_max)

    def forward(self, f):
        return self.fc(self.pooled(f)) + self.bias


def binary_codes(n: int, bits: int = 8) -> torch.Tensor:
    ages = torch.arange(n)
    return ((ages[:, None] >> torch.arange(bits - 1, -1, -1)) & 1).float()


class DAAHead(nn.Module):
    """Delta Age AdaIN (Chen et al., CVPR 2023).

    Ages 0..A-1 as 8-bit binary codes -> MLP(16, 32, 2) -> per-age style (mean, std). The encoder
    feature is instance-normalised and re-styled with each age's (mean, std) (AdaIN); an
    AgeDecoder (conv3x3 -> GAP -> FC) reads [feature, age-styled feature] and predicts the delta
    age; the output per reference age a is a - delta_a and the readout averages them."""

    def __init__(self, channels: int, age_min: int, age_max: int, dropout: float,
                 n_ages: int = 100, bits: int = 8, reduce: int = 32, hidden: int = 32):
        super().__init__()
        self.kind = "daa"
        self.spec = ReadoutSpec(type="mean", age_min=age_min, age_max=age_max)
        self.register_buffer("codes", binary_codes(n_ages, bits), persistent=False)
        self.register_buffer("ref_ages", torch.arange(n_ages).float(), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(bits, 16), nn.ReLU(), nn.Linear(16, 32), nn.ReLU(),
                                 nn.Linear(32, 2))
        self.reduce = nn.Sequential(nn.Conv2d(channels, reduce, 1, bias=False),
                                    nn.BatchNorm2d(reduce), nn.ReLU())
        self.decoder = nn.Sequential(nn.Conv2d(2 * reduce, hidden, 3, padding=1, bias=False),
                                     nn.BatchNorm2d(hidden), nn.ReLU(),
                                     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                     nn.Linear(hidden, 1))

    def forward(self, f):
        f = self.reduce(f)
        n, c, h, w = f.shape
        mu = f.mean(dim=(2, 3), keepdim=True)
        sd = (f.var(dim=(2, 3), keepdim=True, unbiased=False) + 1e-5).sqrt()
        fn = (f - mu) / sd
        style = self.mlp(self.codes)  # [A, 2]
        a = style.shape[0]
        s_mean = style[:, 0].reshape(1, a, 1, 1, 1)
        s_std = F.softplus(style[:, 1]).reshape(1, a, 1, 1, 1)
        styled = s_std * fn.unsqueeze(1) + s_mean  # [N, A, c, h, w]
        base = fn.unsqueeze(1).expand(n, a, c, h, w)
        z = torch.cat([base, styled], dim=2).reshape(n * a, 2 * c, h, w)
        delta = self.decoder(z).reshape(n, a)
        return self.ref_ages - delta


class DRFHead(_Pooled):
    """Deep regression forest (Shen et al., CVPR 2018) on any backbone's feature map.

    GAP -> one linear layer gives every split node of ``trees`` complete binary trees of
    ``depth`` levels a logit; a node sends a sample left with probability sigmoid(logit), so the
    probability mu_l of reaching leaf l is the product of the split probabilities on its path
    (static shapes: one stack/reshape per level, no data-dependent control flow). Leaf l holds a
    Gaussian N(m_l, s_l^2) over age.

    Output: the log of the forest's predictive distribution over the integer age bins
    age_min..age_max, p(k|x) = mean over trees of sum_l mu_l(x) G_l(k), where G_l is leaf l's
    Gaussian discretised and normalised over the bins. So the registered readout is the standard
    ``expectation`` (softmax + expectation over bins, outside the graph, numpy-first in
    ``edgeage/readout.py`` and the Android core): softmax(log p) = p, and its expectation is the
    routed mixture mean sum_l mu_l E[G_l] -- the paper's prediction sum_l mu_l m_l, with each
    leaf's mean taken over the bins (identical when the leaf lies inside the age range). The
    mixture is the routing [N, T*L] times the leaf table [T*L, K] (a constant once trained): one
    matmul, or under autocast (training) the same sum as a broadcast product so it stays float32.

    Leaf update: the paper alternates SGD on the splits with a variational-bounding fixed point
    for the leaf Gaussians over the whole training set. Here the leaf means and log standard
    deviations are ordinary parameters learned jointly with the splits by gradient on the same
    negative log-likelihood (``drf_loss``), because edgeage's single training loop has no
    per-epoch hook for a closed-form leaf pass over the data and a loss never sees the model's
    parameters (a loss is built from the readout spec only); joint gradient training of the
    leaves is the usual simplification of DRF implementations and needs no second data pass."""

    def __init__(self, channels: int, age_min: int, age_max: int, dropout: float,
                 trees: int = 5, depth: int = 5, init_sigma: float = 6.0):
        super().__init__(channels, trees * (2 ** depth - 1), dropout)
        self.kind = "drf"
        self.spec = ReadoutSpec(type="expectation", age_min=age_min, age_max=age_max)
        self.trees, self.depth = trees, depth
        leaves = 2 ** depth
        self.register_buffer("bins", torch.arange(age_min, age_max + 1).float(), persistent=False)
        # leaf means spread over the range (shuffled per tree), sigma a few years
        g = torch.Generator().manual_seed(0)
        means = torch.stack([torch.linspace(age_min, age_max, leaves)[torch.randperm(leaves, generator=g)]
                             for _ in range(trees)])
        # parameters are offsets from the initial leaves, so AdamW's weight decay pulls towards
        # the initial spread of means and sigmas, not towards age 0 and sigma 1
        self.register_buffer("leaf_mean0", means)                                   # [T, L]
        self.leaf_mean = nn.Parameter(torch.zeros(trees, leaves))
        self.log_sigma0 = math.log(init_sigma)
        self.leaf_log_sigma = nn.Parameter(torch.zeros(trees, leaves))

    def routing(self, f: torch.Tensor) -> torch.Tensor:
        """Leaf probabilities mu [N, T, L] (each tree's row sums to 1)."""
        d = torch.sigmoid(self.fc(self.pooled(f)))                                # [N, T*(L-1)]
        n = d.shape[0]
        d = d.reshape(n, self.trees, 2 ** self.depth - 1)
        mu = d[:, :, :1] * 0.0 + 1.0                                            # no full op
        start = 0
        for level in range(self.depth):  # nodes of a level are contiguous (breadth-first)
            width = 2 ** level
            dl = d[:, :, start:start + width]
            mu = torch.stack([mu * dl, mu * (1 - dl)], dim=3).reshape(n, self.trees, 2 * width)
            start += width
        return mu

    def leaf_table(self) -> torch.Tensor:
        """Each leaf's Gaussian discretised over the age bins: [T*L, K], rows sum to 1."""
        sigma = torch.exp(self.leaf_log_sigma + self.log_sigma0).clamp(min=0.5)
        mean = self.leaf_mean0 + self.leaf_mean
        z = (self.bins.reshape(1, 1, -1) - mean.unsqueeze(2)) / sigma.unsqueeze(2)
        return torch.softmax(-0.5 * z * z, dim=2).reshape(-1, self.bins.shape[0])

    def forward(self, f):
        mu = self.routing(f).float()
        n = mu.shape[0]
        table = self.leaf_table()
        if torch.is_autocast_enabled(mu.device.type):
            # training under autocast: a broadcast product + sum stays float32 (a matmul would
            # run in bf16 / fp16); the same sum as below
            p = (mu.reshape(n, -1, 1) * table.unsqueeze(0)).sum(1)
        else:  # float32, and every export: one 3-D bmm (XNNPACK takes a bmm of two computed
            # operands, not an mm, nor a sum over dim 1)
            p = torch.bmm(mu.reshape(1, n, -1), table.reshape(1, table.shape[0], table.shape[1]))
            p = p.reshape(n, table.shape[1])
        return torch.log(p * (1.0 / self.trees) + 1e-9)


# ------------------------------------------------------------------------------ registry

register_head("sord", "expectation", sord_loss)(BinsHead)
register_head("dex", "expectation", dex_loss)(BinsHead)
register_head("mean_residue", "expectation", mean_residue_loss)(BinsHead)
register_head("regression", "identity", regression_loss)(lambda kind, *a: RegressionHead(*a))
register_head("coral", "coral", coral_loss)(lambda kind, *a: CoralHead(*a))
register_head("daa", "mean", daa_loss)(lambda kind, *a: DAAHead(*a))
register_head("drf", "expectation", drf_loss)(lambda kind, *a: DRFHead(*a))
HEADS = tuple(_HEADS)


def make_head(kind: str, channels: int, age_min: int = 0, age_max: int = 100,
              dropout: float = 0.0) -> nn.Module:
    try:
        entry = head_entry(kind)
    except KeyError as e:
        raise ValueError(e.args[0]) from None
    head = entry.build(kind, channels, age_min, age_max, dropout)
    assert head.spec.type == entry.readout, (kind, head.spec)
    return head


class AgeModel(nn.Module):
    """backbone (feature map) + head. forward -> raw outputs; readout -> ages."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def readout(self, out: torch.Tensor) -> torch.Tensor:
        from edgeage.readout import apply_readout

        return apply_readout(self.head.spec, out)

    def predict_age(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self(x))
