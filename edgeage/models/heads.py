"""Age heads. Each takes the backbone's final feature map [N, C, h, w] and returns raw outputs;
``spec`` says how ``edgeage.readout.apply_readout`` turns them into ages. Losses live in
``edgeage.train.losses`` keyed by ``head.kind``."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

HEADS = ("sord", "dex", "mean_residue", "regression", "coral", "daa")


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
        self.spec = {"type": "expectation", "age_min": age_min, "age_max": age_max}

    def forward(self, f):
        return self.fc(self.pooled(f))


class RegressionHead(_Pooled):
    def __init__(self, channels: int, age_min: int, age_max: int, dropout: float):
        super().__init__(channels, 1, dropout)
        self.kind = "regression"
        self.spec = {"type": "identity", "age_min": age_min, "age_max": age_max}
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
        self.spec = {"type": "coral", "age_min": age_min, "age_max": age_max}

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
        self.spec = {"type": "mean", "age_min": age_min, "age_max": age_max}
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


def make_head(kind: str, channels: int, age_min: int = 0, age_max: int = 100,
              dropout: float = 0.0) -> nn.Module:
    if kind in ("sord", "dex", "mean_residue"):
        return BinsHead(kind, channels, age_min, age_max, dropout)
    if kind == "regression":
        return RegressionHead(channels, age_min, age_max, dropout)
    if kind == "coral":
        return CoralHead(channels, age_min, age_max, dropout)
    if kind == "daa":
        return DAAHead(channels, age_min, age_max, dropout)
    raise ValueError(f"unknown head {kind!r}; known heads: {', '.join(HEADS)}")


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
