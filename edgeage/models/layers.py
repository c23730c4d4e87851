"""Building blocks, written in the forms that export and INT8 need (see README, "Model code
rules"): SoftPool subtracts the per-window max before exp; GeM uses fixed kernels; the channel
max of spatial attention reduces over the last dim; no dynamic-size pooling."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA-Net's adaptive kernel size: nearest odd number to log2(C)/gamma + b/gamma."""
    k = int(abs((math.log2(channels) + b) / gamma))
    return k if k % 2 else k + 1


class ECA(nn.Module):
    """Efficient channel attention: GAP -> Conv1d(k) over channels -> sigmoid -> scale."""

    def __init__(self, channels: int, k: int | None = None):
        super().__init__()
        k = k or eca_kernel_size(channels)
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=k // 2, bias=False)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[0], x.shape[1]
        y = F.adaptive_avg_pool2d(x, 1).reshape(n, 1, c)
        return torch.sigmoid(self.conv(y)).reshape(n, c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class SE(nn.Module):
    """Squeeze-and-excitation gate (for the ECA-vs-SE ablation)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(4, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        y = F.adaptive_avg_pool2d(x, 1)
        return torch.sigmoid(self.fc2(F.relu(self.fc1(y))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


def channel_gate(kind: str, channels: int) -> nn.Module:
    if kind == "eca":
        return ECA(channels)
    if kind == "se":
        return SE(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown channel gate {kind!r}: use eca, se or none")


class SpatialAttention(nn.Module):
    """CBAM spatial attention: [mean_c, max_c] -> conv7x7 -> sigmoid -> scale.

    Written so XNNPACK delegates it: the channel max is torch.max over the last dim of an NHWC
    view (ExecuTorch has no partitioner rule for amax), the channel mean a mean over dims (2, 3)
    of an [N, HW, C, 1] view (XNNPACK's mean only takes spatial dims). Same values as the plain
    form."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        nhwc = x.permute(0, 2, 3, 1)
        mx = torch.max(nhwc, dim=3, keepdim=True).values.permute(0, 3, 1, 2)
        mean = nhwc.reshape(n, h * w, c, 1).mean(dim=(2, 3), keepdim=True).reshape(n, 1, h, w)
        return x * torch.sigmoid(self.conv(torch.cat([mean, mx], dim=1)))


class SoftPool(nn.Module):
    """SoftPool (Stergiou et al. 2021): sum(exp(x) * x) / sum(exp(x)) over each k x k window.

    exp is taken of x minus a per-channel maximum (the ratio is unchanged by any constant inside
    a window, so this is identical in float, and it keeps exp's argument <= 0: exp of raw
    activations collapses every INT8 path). The per-channel maximum (a max-pool over the whole
    map, broadcast by the subtraction) replaced a per-window maximum broadcast back by
    unsqueeze/expand, which XNNPACK does not delegate: ExecuTorch ran the model in 7 segments,
    now 4; fp32 p50 -26 %, INT8 -37 % (measured, bench in the README). Clamped at -80 so a window
    lying 80+ below its channel's maximum averages instead of dividing 0 by 0 (activations
    entering SoftPool span <= 9 within a channel in the shipped model)."""

    def __init__(self, kernel_size: int = 2):
        super().__init__()
        self.k = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = F.max_pool2d(x, (x.shape[2], x.shape[3]))
        e = torch.exp((x - m).clamp(min=-80.0))
        return F.avg_pool2d(e * x, self.k, self.k) / F.avg_pool2d(e, self.k, self.k)


class GeM(nn.Module):
    """Generalised mean pooling over k x k windows: (mean(x^p))^(1/p).

    p=1 is average pooling, p=inf is max pooling (both exact), other p clamp x at eps. The p-th
    root is written exp(log(m) / p) (m >= eps^p > 0): XNNPACK delegates exp and log but not pow
    with a fractional exponent, which split the ExecuTorch graph into 4 segments (logits change
    by at most 2.6e-6 on the shipped model against ``m.pow(1 / p)``)."""

    def __init__(self, p: float, kernel_size: int = 2, eps: float = 1e-6):
        super().__init__()
        self.p, self.k, self.eps = float(p), kernel_size, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 1.0:
            return F.avg_pool2d(x, self.k, self.k)
        if math.isinf(self.p):
            return F.max_pool2d(x, self.k, self.k)
        y = x.clamp(min=self.eps)
        yp = y * y * y if self.p == 3.0 else y.pow(self.p)
        return torch.exp(torch.log(F.avg_pool2d(yp, self.k, self.k)) / self.p)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle: (g, C/g) -> (C/g, g). A permutation of the channels."""
    if groups <= 1:
        return x
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def shuffle_permutation(channels: int, groups: int) -> list[int]:
    """Output channel i of channel_shuffle is input channel perm[i]."""
    if groups <= 1:
        return list(range(channels))
    per = channels // groups
    return [g * per + j for j in range(per) for g in range(groups)]


class MGPool(nn.Module):
    """Multi-GeM pooling (MGP-Net): SoftPool || GeM(p) for p in gem_ps, concatenated, channel
    shuffle (g groups) so neighbouring channels come from different pooling kinds, an ECA-style
    gate (GAP -> Conv1d(k) -> sigmoid) over the concatenation, then a 1x1 conv (+BN) back to the
    input width. Halves the resolution."""

    def __init__(self, channels: int, gem_ps=(1.0, 3.0, math.inf), softpool: bool = True,
                 groups: int = 4, gate: str = "eca", kernel_size: int = 2):
        super().__init__()
        pools: list[nn.Module] = [SoftPool(kernel_size)] if softpool else []
        pools += [GeM(p, kernel_size) for p in gem_ps]
        if not pools:
            raise ValueError("MGPool needs at least one pooling branch")
        self.pools = nn.ModuleList(pools)
        cat = channels * len(pools)
        if groups > 1 and cat % groups:
            raise ValueError(f"MGPool: {cat} concatenated channels not divisible by {groups} groups")
        self.groups = groups
        self.gate = channel_gate(gate, cat)
        self.fuse = nn.Conv2d(cat, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([p(x) for p in self.pools], dim=1)
        y = self.gate(channel_shuffle(y, self.groups))
        return self.bn(self.fuse(y))


def make_downsample(kind: str, channels: int, **mgpool_kw) -> nn.Module:
    """A stride-2 spatial downsampling layer that keeps the width (for ablations)."""
    if kind == "mgpool":
        return MGPool(channels, **mgpool_kw)
    if kind == "max":
        return nn.MaxPool2d(2, 2)
    if kind == "avg":
        return nn.AvgPool2d(2, 2)
    if kind == "softpool":
        return SoftPool(2)
    raise ValueError(f"unknown downsampling {kind!r}: use stride, max, avg, softpool or mgpool")


class BasicBlock(nn.Module):
    """ResNet basic block; with attention=True it is MGP-Net's MGPBlock (ECA + spatial attention
    on the residual branch before the add)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, attention: bool = False,
                 gate: str = "eca"):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.ca = channel_gate(gate, cout) if attention else nn.Identity()
        self.sa = SpatialAttention() if attention else nn.Identity()
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.sa(self.ca(self.bn2(self.conv2(y))))
        return F.relu(y + self.shortcut(x))
