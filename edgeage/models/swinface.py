"""SwinFace-age (Qin et al. 2023: a Swin transformer backbone with a multi-level channel
attention age subnet), small enough for the edge at 64 px.

Swin: 4x4 patch embedding (16x16 tokens) -> stages of Swin blocks with window attention (window
4, relative position bias), every second block on windows shifted by half a window
(a cyclic roll + the standard attention mask), patch merging (2x2 -> linear) between stages.
A stage whose resolution equals the window does not shift (as in Swin).

Age subnet (MLCA: multi-level feature fusion + channel attention): the outputs of every stage are
projected (1x1 conv) to ``mlca_channels``, average-pooled with fixed kernels to the last stage's
resolution, concatenated, gated by CBAM-style channel attention (shared MLP over the global
average and global max, sigmoid) and fused back (1x1 conv) into the [N, C, h, w] map any
registered head reads.

Export forms (ExecuTorch's XNNPACK takes the whole graph as one segment): window partition /
reverse are reshape + permute of static shapes; the roll is slices + concat; the relative
position bias is a matmul of a constant one-hot table by the learned bias table; the shift mask is
a constant buffer; attention is 3-D bmm + softmax; LayerNorm is ``mivolo.LayerNorm`` (means over
dims (2, 3) of an [N, -1, C, 1] view); the channel attention's global max is a max-pool over the
whole map (not amax over dim 1)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register_model
from .heads import AgeModel, make_head
from .mivolo import LayerNorm, init_weights, heads_first, mlp


def window_partition(x: torch.Tensor, w: int) -> torch.Tensor:
    """[N, H, W, C] -> [N * H/w * W/w, w*w, C]."""
    n, h, wd, c = x.shape
    x = x.reshape(n, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, w * w, c)


def window_reverse(x: torch.Tensor, w: int, n: int, h: int, wd: int) -> torch.Tensor:
    c = x.shape[-1]
    x = x.reshape(n, h // w, wd // w, w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h, wd, c)


def relative_index(w: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (w - 1)
    return (rel[:, :, 0] * (2 * w - 1) + rel[:, :, 1]).reshape(-1)


def shift_mask(h: int, wd: int, w: int, s: int) -> torch.Tensor:
    """[nW, w*w, w*w]: 0 within a region, -100 across the regions a cyclic shift by s joins."""
    img = torch.zeros(1, h, wd, 1)
    cnt = 0
    for hs in (slice(0, -w), slice(-w, -s), slice(-s, None)):
        for ws in (slice(0, -w), slice(-w, -s), slice(-s, None)):
            img[:, hs, ws, :] = cnt
            cnt += 1
    win = window_partition(img, w).squeeze(-1)
    m = win[:, None, :] - win[:, :, None]
    return torch.where(m != 0, torch.tensor(-100.0), torch.tensor(0.0))


class WindowAttention(nn.Module):
    def __init__(self, dim: int, heads: int, w: int):
        super().__init__()
        self.heads, self.hd, self.w = heads, dim // heads, w
        self.scale = self.hd ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.zeros((2 * w - 1) ** 2, heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        self.register_buffer("rel_onehot", F.one_hot(relative_index(w), (2 * w - 1) ** 2).float(),
                             persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, l, c = x.shape  # b = N * windows
        qkv = self.qkv(x)
        q = heads_first(qkv[:, :, :c], self.heads)          # [b*h, l, hd]; slices, not select
        k = heads_first(qkv[:, :, c:2 * c], self.heads)
        v = heads_first(qkv[:, :, 2 * c:], self.heads)
        a = torch.bmm(q, k.transpose(1, 2)).reshape(b, self.heads, l, l) * self.scale
        # the relative position bias as a matmul with a constant one-hot table (a gather with
        # the index would be an index_select that XNNPACK does not take)
        bias = torch.matmul(self.rel_onehot, self.bias_table).reshape(l, l, self.heads).permute(2, 0, 1)
        a = a + bias.reshape(1, self.heads, l, l)
        if mask is not None:
            nw = mask.shape[0]
            a = (a.reshape(b // nw, nw, self.heads, l, l) + mask.reshape(1, nw, 1, l, l)).reshape(b, self.heads, l, l)
        a = torch.softmax(a, dim=-1).reshape(b * self.heads, l, l)
        o = torch.bmm(a, v).reshape(b, self.heads, l, self.hd).transpose(1, 2)
        return self.proj(o.reshape(b, l, c))


def roll2(x: torch.Tensor, s: int) -> torch.Tensor:
    """torch.roll(x, (s, s), dims=(1, 2)) of [N, H, W, C] as slices + concat (torch.roll traces
    to index / fmod / arange ops that XNNPACK does not take)."""
    h, w = x.shape[1], x.shape[2]
    s_h, s_w = s % h, s % w
    x = torch.cat([x[:, h - s_h:], x[:, :h - s_h]], dim=1) if s_h else x
    return torch.cat([x[:, :, w - s_w:], x[:, :, :w - s_w]], dim=2) if s_w else x


class SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, res: int, w: int, shift: int, mlp_ratio: float):
        super().__init__()
        if res <= w:
            w, shift = res, 0
        self.w, self.shift, self.res = w, shift, res
        self.n1, self.attn = LayerNorm(dim), WindowAttention(dim, heads, w)
        self.n2, self.mlp = LayerNorm(dim), mlp(dim, mlp_ratio)
        if shift:
            self.register_buffer("mask", shift_mask(res, res, w, shift), persistent=False)
        else:
            self.mask = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, H, W, C]
        n, h, wd, c = x.shape
        y = self.n1(x)
        if self.shift:
            y = roll2(y, -self.shift)
        y = window_reverse(self.attn(window_partition(y, self.w), self.mask), self.w, n, h, wd)
        if self.shift:
            y = roll2(y, self.shift)
        x = x + y
        return x + self.mlp(self.n2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = LayerNorm(4 * dim)
        self.reduce = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x):  # [N, H, W, C] -> [N, H/2, W/2, 2C]
        # = cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=3), as
        # reshape + permute (XNNPACK does not take strided slices)
        n, h, w, c = x.shape
        x = x.reshape(n, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).reshape(n, h // 2, w // 2, 4 * c)
        return self.reduce(self.norm(x))


class MLCA(nn.Module):
    """Multi-level channel attention age subnet: stage maps -> common width and resolution ->
    concat -> CBAM channel attention -> 1x1 fuse."""

    def __init__(self, in_dims, res, channels: int, out_channels: int, reduction: int = 4):
        super().__init__()
        self.proj = nn.ModuleList([nn.Sequential(nn.Conv2d(d, channels, 1, bias=False), nn.BatchNorm2d(channels),
                                                 nn.ReLU()) for d in in_dims])
        self.pools = [r // res[-1] for r in res]
        cat = channels * len(in_dims)
        self.fc1 = nn.Conv2d(cat, cat // reduction, 1)
        self.fc2 = nn.Conv2d(cat // reduction, cat, 1)
        self.fuse = nn.Sequential(nn.Conv2d(cat, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels),
                                  nn.ReLU())

    def forward(self, maps):  # NCHW maps of every stage
        ys = []
        for m, proj, k in zip(maps, self.proj, self.pools):
            y = proj(m)
            ys.append(F.avg_pool2d(y, k, k) if k > 1 else y)
        y = torch.cat(ys, dim=1)
        h, w = y.shape[2], y.shape[3]
        n = y.shape[0]
        # the shared MLP runs once over [avg; max] stacked on the batch: XNNPACK's INT8 runtime
        # refused the second of two convolutions sharing one quantized weight
        pooled = torch.cat([F.avg_pool2d(y, (h, w)), F.max_pool2d(y, (h, w))], dim=0)   # [2N, C, 1, 1]
        g = self.fc2(F.relu(self.fc1(pooled)))
        return self.fuse(y * torch.sigmoid(g[:n] + g[n:]))


class SwinFeatures(nn.Module):
    def __init__(self, dim: int, depths, heads, window: int, mlp_ratio: float, input_size: int,
                 mlca_channels: int):
        super().__init__()
        if input_size % (4 * 2 ** (len(depths) - 1)):
            raise ValueError(f"input_size {input_size} must be a multiple of {4 * 2 ** (len(depths) - 1)}")
        self.embed = nn.Conv2d(3, dim, 4, 4)
        self.embed_norm = LayerNorm(dim)
        res, dims, ress = input_size // 4, [], []
        self.stages, self.merges = nn.ModuleList(), nn.ModuleList()
        d = dim
        for i, (n, h) in enumerate(zip(depths, heads)):
            if i:
                self.merges.append(PatchMerging(d))
                d, res = 2 * d, res // 2
            self.stages.append(nn.Sequential(*[SwinBlock(d, h, res, window, (window // 2) * (j % 2), mlp_ratio)
                                               for j in range(n)]))
            dims.append(d)
            ress.append(res)
        self.mlca = MLCA(dims, ress, mlca_channels, d)
        self.out_channels = d
        self.apply(init_weights)

    def forward(self, x):
        x = self.embed_norm(self.embed(x).permute(0, 2, 3, 1))
        maps = []
        for i, stage in enumerate(self.stages):
            if i:
                x = self.merges[i - 1](x)
            x = stage(x)
            maps.append(x.permute(0, 3, 1, 2))
        return self.mlca(maps)


@register_model("swinface-age", dim=48, depths=(2, 2, 4), heads=(3, 6, 12), window=4, mlp_ratio=4.0,
                mlca_channels=64, head="sord", age_min=0, age_max=100, dropout=0.1, input_size=64)
def swinface_age(dim, depths, heads, window, mlp_ratio, mlca_channels, head, age_min, age_max, dropout,
                 input_size):
    """Swin (48, stages @16/8/4 of 2/2/4 blocks, window 4) + MLCA age subnet."""
    f = SwinFeatures(dim, tuple(depths), tuple(heads), window, mlp_ratio, input_size, mlca_channels)
    return AgeModel(f, make_head(head, f.out_channels, age_min, age_max, dropout))
