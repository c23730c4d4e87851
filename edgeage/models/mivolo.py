"""MiVOLO (Kuprashevich & Tolstykh 2023), small enough for the edge at 64 px.

``mivolo-face``: conv patch embedding (stride 4 -> 16x16 tokens) -> VOLO outlooker blocks
(outlook attention, kernel 3, stride 1) -> 2x2 patch merging (8x8 tokens) -> transformer blocks
(multi-head self attention) -> CaiT class-attention blocks (a class token attends over the
tokens) -> the class token as a [N, C, 1, 1] map for any registered head.

``mivolo``: the dual form (face + context, as MiVOLO's face + body). Both views come from one
canonical crop at margin ``context_margin`` (k): the face view is its central 1/k square, the
context view the whole crop area-resized by k, each 64 px (``DualAgeModel``; the artifact keeps
one image input). Each view has its own patch embedding and outlooker stage; a feature enhancer
(cross attention face -> context and context -> face, as MiVOLO's) then a concat + linear merge
gives one token set for the shared transformer and class-attention stages. The enhancer's output
projections start at 0 and the merge at [I | 0], so the model starts as its face path: a warm
start from ``mivolo-face`` weights (scripts/mivolo_dual_init.py) begins where that model is.

Export forms: outlook attention's unfold / fold (im2col / col2im) are written as 9 static shifted
slices of a padded map and 9 pads + adds, attention as explicit matmul + softmax, so the graph
has no Unfold / Col2Im / fused attention op; all shapes are fixed by ``input_size``."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register_model
from .heads import AgeModel, make_head


class OutlookAttention(nn.Module):
    """VOLO outlook attention (stride 1): each pixel's k*k attention weights come straight from
    its own feature (a linear layer); they mix the values of its k x k window, and every window's
    k*k outputs are summed back onto the pixels they came from (fold)."""

    def __init__(self, dim: int, heads: int, k: int = 3):
        super().__init__()
        self.heads, self.k, self.hd = heads, k, dim // heads
        self.scale = self.hd ** -0.5
        self.v = nn.Linear(dim, dim, bias=False)
        self.attn = nn.Linear(dim, heads * k ** 4)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [N, H, W, C]
        n, h, w, c = x.shape
        k2 = self.k * self.k
        p = self.k // 2
        # zero padding before the bias-free value projection (v(0) = 0): the same values as
        # padding v, and no pad of the projection's (in INT8: quantized) output, which XNNPACK's
        # int8 StaticConstantPad refused (ExecuTorch INT8 did not load)
        v = self.v(F.pad(x, (0, 0, p, p, p, p)))                              # [N, H+2p, W+2p, C]
        v = torch.stack([v[:, dy:dy + h, dx:dx + w] for dy in range(self.k) for dx in range(self.k)],
                        dim=3)                                                # [N, H, W, k2, C]
        v = v.reshape(n, h * w, k2, self.heads, self.hd).permute(0, 3, 1, 2, 4)  # [N, h, HW, k2, hd]
        a = self.attn(x).reshape(n, h * w, self.heads, k2, k2).permute(0, 2, 1, 3, 4)
        a = torch.softmax(a * self.scale, dim=-1).reshape(-1, k2, k2)
        o = torch.bmm(a, v.reshape(-1, k2, self.hd))                          # [N*h*HW, k2, hd]
        o = o.reshape(n, self.heads, h * w, k2, self.hd).permute(0, 1, 4, 3, 2).reshape(n, c, k2 * h, w)
        out = None
        for i in range(k2):  # fold: window output i of pixel q lands on q + offset_i
            dy, dx = divmod(i, self.k)
            t = F.pad(o[:, :, i * h:(i + 1) * h], (dx, self.k - 1 - dx, dy, self.k - 1 - dy))
            out = t if out is None else out + t
        out = out[:, :, p:p + h, p:p + w].permute(0, 2, 3, 1)
        return self.proj(out)


class Attention(nn.Module):
    """Multi-head attention, explicit matmul + softmax; cross attention when ``kv`` is given."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.hd = heads, dim // heads
        self.scale = self.hd ** -0.5
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, kv: torch.Tensor | None = None) -> torch.Tensor:
        kv = x if kv is None else kv
        n, lq, c = x.shape
        lk = kv.shape[1]
        kvp = self.kv(kv)
        q = heads_first(self.q(x), self.heads)                       # [N*h, Lq, hd]
        k = heads_first(kvp[:, :, :c], self.heads)                   # slices, not select: delegated
        v = heads_first(kvp[:, :, c:], self.heads)
        a = torch.softmax(torch.bmm(q, k.transpose(1, 2)) * self.scale, dim=-1)
        o = torch.bmm(a, v).reshape(n, self.heads, lq, self.hd).transpose(1, 2)
        return self.proj(o.reshape(n, lq, c))


def heads_first(t: torch.Tensor, heads: int) -> torch.Tensor:
    """[N, L, C] -> [N*heads, L, C/heads]: attention as 3-D bmm (a 4-D matmul traces to
    expand_copy + bmm, and XNNPACK does not take the expand)."""
    n, l, c = t.shape
    return t.reshape(n, l, heads, c // heads).transpose(1, 2).reshape(n * heads, l, c // heads)


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm (same parameters and values) written with the ops XNNPACK delegates: the
    mean over the channels is a mean over dims (2, 3) of an [N, -1, C, 1] view, as in the CBAM
    spatial attention (ExecuTorch's XNNPACK partitioner takes no native_layer_norm, and every
    LayerNorm split the graph: 40 segments in mivolo-face, 48 in swinface-age)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        c = shape[-1]
        x4 = x.float().reshape(shape[0], -1, c, 1)  # float32 under autocast, as F.layer_norm
        d = x4 - x4.mean(dim=(2, 3), keepdim=True)
        var = (d * d).mean(dim=(2, 3), keepdim=True)
        y = d / torch.sqrt(var + self.eps)
        return y.reshape(shape) * self.weight + self.bias


def mlp(dim: int, ratio: float) -> nn.Sequential:
    hidden = int(dim * ratio)
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class Outlooker(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.n1, self.attn = LayerNorm(dim), OutlookAttention(dim, heads)
        self.n2, self.mlp = LayerNorm(dim), mlp(dim, mlp_ratio)

    def forward(self, x):  # [N, H, W, C]
        x = x + self.attn(self.n1(x))
        return x + self.mlp(self.n2(x))


class Transformer(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.n1, self.attn = LayerNorm(dim), Attention(dim, heads)
        self.n2, self.mlp = LayerNorm(dim), mlp(dim, mlp_ratio)

    def forward(self, x):  # [N, L, C]
        x = x + self.attn(self.n1(x))
        return x + self.mlp(self.n2(x))


class ClassAttentionBlock(nn.Module):
    """CaiT class attention: only the class token queries; it attends over [cls, tokens]."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.n1, self.attn = LayerNorm(dim), Attention(dim, heads)
        self.n2, self.mlp = LayerNorm(dim), mlp(dim, mlp_ratio)

    def forward(self, cls, tokens):  # cls [N, 1, C], tokens [N, L, C]
        u = self.n1(torch.cat([cls, tokens], dim=1))
        cls = cls + self.attn(u[:, :1], u)
        return cls + self.mlp(self.n2(cls))


class Stem(nn.Module):
    """Conv patch embedding (stride 4) + outlooker stage at input/4, -> tokens [N, H/4, W/4, d1]."""

    def __init__(self, d1: int, heads1: int, depth1: int, mlp_ratio: float):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, d1 // 2, 3, 2, 1, bias=False), nn.BatchNorm2d(d1 // 2),
                                  nn.ReLU(), nn.Conv2d(d1 // 2, d1, 3, 2, 1, bias=False),
                                  nn.BatchNorm2d(d1), nn.ReLU(), nn.Conv2d(d1, d1, 1))
        self.blocks = nn.Sequential(*[Outlooker(d1, heads1, mlp_ratio) for _ in range(depth1)])

    def forward(self, x):
        return self.blocks(self.conv(x).permute(0, 2, 3, 1))


class Merge(nn.Module):
    """2x2 patch merging [N, H, W, C1] -> tokens [N, HW/4, C2] + learned position embedding."""

    def __init__(self, d1: int, d2: int, tokens: int):
        super().__init__()
        self.proj = nn.Conv2d(d1, d2, 2, 2)
        self.pos = nn.Parameter(torch.zeros(1, tokens, d2))
        nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, x):
        y = self.proj(x.permute(0, 3, 1, 2))
        return y.flatten(2).transpose(1, 2) + self.pos


class MiVOLOFeatures(nn.Module):
    def __init__(self, dims, heads, depths, mlp_ratio: float, input_size: int, dual: bool):
        super().__init__()
        d1, d2 = dims
        h1, h2 = heads
        n_out, n_mid, n_ca = depths
        if input_size % 8:
            raise ValueError(f"input_size {input_size} must be a multiple of 8")
        tokens = (input_size // 8) ** 2
        self.dual = dual
        self.face = Stem(d1, h1, n_out, mlp_ratio)
        self.face_merge = Merge(d1, d2, tokens)
        if dual:
            self.context = Stem(d1, h1, n_out, mlp_ratio)
            self.context_merge = Merge(d1, d2, tokens)
            self.fe_norm_f, self.fe_norm_c = LayerNorm(d2), LayerNorm(d2)
            self.face_from_context = Attention(d2, h2)
            self.context_from_face = Attention(d2, h2)
            self.merge = nn.Linear(2 * d2, d2)
        self.blocks = nn.Sequential(*[Transformer(d2, h2, mlp_ratio) for _ in range(n_mid)])
        self.cls = nn.Parameter(torch.zeros(1, 1, d2))
        nn.init.trunc_normal_(self.cls, std=0.02)
        self.ca = nn.ModuleList([ClassAttentionBlock(d2, h2, mlp_ratio) for _ in range(n_ca)])
        self.norm = LayerNorm(d2)
        self.out_channels = d2
        self.apply(init_weights)
        if dual:
            with torch.no_grad():  # the start is the face path: enhancer residuals 0, merge [I | 0]
                for att in (self.face_from_context, self.context_from_face):
                    att.proj.weight.zero_()
                    att.proj.bias.zero_()
                self.merge.weight.zero_()
                self.merge.weight[:, :d2].copy_(torch.eye(d2))

    def tokens(self, face: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        t = self.face_merge(self.face(face))
        if not self.dual:
            return t
        u = self.context_merge(self.context(context))
        nf, nc = self.fe_norm_f(t), self.fe_norm_c(u)
        t2 = t + self.face_from_context(nf, nc)
        u2 = u + self.context_from_face(nc, nf)
        return self.merge(torch.cat([t2, u2], dim=2))

    def forward(self, face: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        t = self.blocks(self.tokens(face, context))
        cls = self.cls + t[:, :1] * 0.0    # [N, 1, C] by broadcasting (no expand / full op)
        for blk in self.ca:
            cls = blk(cls, t)
        cls = self.norm(cls)
        return cls.reshape(cls.shape[0], cls.shape[2], 1, 1)


def init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class DualAgeModel(AgeModel):
    """MiVOLO's two views from one canonical crop: the model takes the context crop (the canonical
    crop at margin ``context_margin`` x the face margin, ``input_size`` = k x the view size) and
    forms in the graph

    - the face view: its central 1/k square (exactly the canonical face crop, full resolution);
    - the context view: the whole crop, area-resized by k (``avg_pool2d(k)``: exact for integer k).

    So the artifact keeps one image input and every target, runner, calibration set, the device
    side and the Android core take it unchanged; the manifest's crop margin is the context margin.
    ``views(x)`` returns (face, context), ``backbone(face, context)`` is the dual network."""

    def __init__(self, backbone: nn.Module, head: nn.Module, context_margin: int):
        super().__init__(backbone, head)
        self.k = int(context_margin)

    def views(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = x.shape[-1]
        f = s // self.k
        o = (s - f) // 2
        return x[:, :, o:o + f, o:o + f], F.avg_pool2d(x, self.k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if x.shape[-1] % self.k or x.shape[-2] != x.shape[-1]:
            raise ValueError(f"mivolo takes a square context crop whose side is a multiple of "
                             f"context_margin {self.k}, got {tuple(x.shape)}")
        return self.head(self.backbone(*self.views(x)))


_COMMON = dict(dims=(96, 160), heads=(3, 5), depths=(2, 4, 2), mlp_ratio=3.0, head="sord",
               age_min=0, age_max=100, dropout=0.1, input_size=64)


@register_model("mivolo-face", **_COMMON)
def mivolo_face(dims, heads, depths, mlp_ratio, head, age_min, age_max, dropout, input_size):
    """Face-only MiVOLO: 2 outlookers @16x16 (96), 4 transformers @8x8 (160), 2 class attention."""
    f = MiVOLOFeatures(tuple(dims), tuple(heads), tuple(depths), mlp_ratio, input_size, dual=False)
    return AgeModel(f, make_head(head, f.out_channels, age_min, age_max, dropout))


@register_model("mivolo", context_margin=2, **{**_COMMON, "input_size": 128})
def mivolo(dims, heads, depths, mlp_ratio, head, age_min, age_max, dropout, input_size,
           context_margin):
    """Dual-view MiVOLO on one canonical crop at margin ``context_margin`` (an integer k >= 2;
    its recipe's ``[data] crop_margin`` must be k): ``input_size`` is the crop side, each view
    input_size / k (64 px: face = the central square, context = the crop area-resized)."""
    k = context_margin
    if int(k) != k or k < 2:
        raise ValueError(f"context_margin must be an integer >= 2, got {context_margin}")
    if input_size % int(k):
        raise ValueError(f"input_size {input_size} must be a multiple of context_margin {k}")
    f = MiVOLOFeatures(tuple(dims), tuple(heads), tuple(depths), mlp_ratio, input_size // int(k), dual=True)
    return DualAgeModel(f, make_head(head, f.out_channels, age_min, age_max, dropout), int(k))
