"""Deploy forms: the same functions as the trained layers, rewritten with fewer, fusable ops for
inference (RepVGG-style re-parameterisation; exact up to float rounding, tested to 1e-5).

At batch 1 on a CPU an INT8 graph of small layers is bound by its op count, not its MACs: every
gate is a handful of tiny float ops between the INT8 convolutions (OpenVINO's op profile of the
first edge model: 40 % of INT8 time in such "float islands"). The rewrites:

- ECA (GAP -> reshape -> Conv1d over channels -> sigmoid -> reshape -> scale): the Conv1d is a
  banded C x C matrix, so it becomes a 1x1 convolution on the pooled [N, C, 1, 1] map: no
  reshapes, and the runtime can run it as a convolution.
- MGPool's channel shuffle followed by its ECA gate and 1x1 fuse: the shuffle is a fixed
  permutation P, so gate(P y) then W (P y) equals P^T-permuted gate on y and W P as the fuse
  weight; the shuffle disappears into the weights.

- Spatial attention, per target (``spatial``): its channel mean and max are written over the last
  dim of an NHWC view for XNNPACK (``"nhwc"``, the trained form; ExecuTorch has no partitioner
  rule for amax), but OpenVINO runs those permutes as Transposes between its blocked layouts:
  ``"nchw"`` reduces over axis 1 instead (``SpatialAttentionNCHW``; OpenVINO INT8 p50 of the
  edge-v2 candidate 1.05x -> 0.94x the OMZ peer's, lab notes). A target picks it in its TOML
  (``[deploy] spatial = "nchw"``).

Spatial attention keeps its function and gate: rewritten as a C -> 1 7x7 convolution of x plus a
1 -> 1 one of the channel max (the mean folded into the weights), OpenVINO ran the C -> 1
convolution as a slow f32 kernel (one output channel) when kept float, and quantized it moved
ages more; measured on ``edgeage/assets/mgpnet-e.pt`` (then ``default.pt``) and the edge-v2 candidates (lab notes).

``deploy_form(model)`` returns a copy with these modules replaced; the trained model and its
checkpoints keep the paper's form."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from .layers import ECA, MGPool, SpatialAttention, shuffle_permutation
from ..backend import TargetSpec

SPATIAL_FORMS = ("nhwc", "nchw")


def eca_matrix(conv: nn.Conv1d, channels: int) -> torch.Tensor:
    """The C x C matrix of ECA's Conv1d(1, 1, k, padding k//2) over the channel axis."""
    k = conv.kernel_size[0]
    w = conv.weight.detach().reshape(k)
    m = torch.zeros(channels, channels, dtype=w.dtype)
    for i in range(channels):
        for t in range(k):
            j = i + t - k // 2
            if 0 <= j < channels:
                m[i, j] = w[t]
    return m


class DenseECA(nn.Module):
    """x * sigmoid(conv1x1(mean_hw(x))): ECA with its Conv1d as a (banded) 1x1 convolution."""

    def __init__(self, matrix: torch.Tensor):
        super().__init__()
        c = matrix.shape[0]
        self.conv = nn.Conv2d(c, c, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(matrix.reshape(c, c, 1, 1))

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(x.mean(dim=(2, 3), keepdim=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class MGPoolDeploy(nn.Module):
    """MGPool with the channel shuffle folded into the gate and fuse weights."""

    def __init__(self, mp: MGPool):
        super().__init__()
        self.pools = mp.pools
        cat = mp.fuse.in_channels
        perm = torch.tensor(shuffle_permutation(cat, mp.groups))  # shuffled[i] = y[perm[i]]
        eye = torch.eye(cat)
        p = eye[perm]  # P y = y[perm]
        # named apart from MGPool.gate: it gates the unshuffled concatenation, a permutation of
        # what MGPool.gate outputs (drift localisation compares modules by name)
        self.gate_unshuffled = nn.Identity()
        if isinstance(mp.gate, ECA):
            self.gate_unshuffled = DenseECA(p.t() @ eca_matrix(mp.gate.conv, cat) @ p)
        elif not isinstance(mp.gate, nn.Identity):
            raise TypeError(f"MGPoolDeploy: no deploy form for gate {type(mp.gate).__name__}")
        self.fuse = nn.Conv2d(cat, mp.fuse.out_channels, 1, bias=False)
        with torch.no_grad():
            self.fuse.weight.copy_(mp.fuse.weight.detach()[:, torch.argsort(perm)])
        self.bn = mp.bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([p(x) for p in self.pools], dim=1)
        return self.bn(self.fuse(self.gate_unshuffled(y)))


class SpatialAttentionNCHW(SpatialAttention):
    """CBAM spatial attention with its channel mean and max taken over axis 1 (no NHWC permutes):
    the same function and weights as ``SpatialAttention``, for runtimes with blocked NCHW layouts."""

    def __init__(self, sa: SpatialAttention):
        nn.Module.__init__(self)
        self.conv = sa.conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mx = x.amax(dim=1, keepdim=True)
        mean = x.mean(dim=1, keepdim=True)
        return x * torch.sigmoid(self.conv(torch.cat([mean, mx], dim=1)))


def _channels_before(parent: nn.Module, name: str) -> int | None:
    """Width of the tensor a BasicBlock's channel gate sees (its conv2's output)."""
    conv2 = getattr(parent, "conv2", None)
    return conv2.out_channels if isinstance(conv2, nn.Conv2d) else None


def deploy_form(model: nn.Module, spatial: str = "nhwc") -> nn.Module:
    """A copy of ``model`` in eval mode with ECA and MGPool in deploy form; ``spatial``: the form
    of spatial attention's channel reductions (``"nhwc"``: as trained, for XNNPACK; ``"nchw"``)."""
    if spatial not in SPATIAL_FORMS:
        raise ValueError(f"deploy_form: spatial = {spatial!r}; one of {', '.join(SPATIAL_FORMS)}")
    m = copy.deepcopy(model).eval()
    for parent in list(m.modules()):
        for name, child in list(parent.named_children()):
            if spatial == "nchw" and type(child) is SpatialAttention:
                setattr(parent, name, SpatialAttentionNCHW(child))
            elif isinstance(child, MGPool):
                setattr(parent, name, MGPoolDeploy(child))
            elif isinstance(child, ECA):
                ch = _channels_before(parent, name)
                if ch is not None:
                    setattr(parent, name, DenseECA(eca_matrix(child.conv, ch)))
    return m


def max_deploy_error(model: nn.Module, x: torch.Tensor, spatial: str = "nhwc") -> float:
    """max |model(x) - deploy_form(model, spatial)(x)| (eval mode)."""
    with torch.no_grad():
        a = model.eval()(x)
        b = deploy_form(model, spatial)(x)
    return float((a - b).abs().max())


def target_deploy_form(model: nn.Module, spec: TargetSpec) -> nn.Module:
    """``deploy_form`` with the options of a target's TOML ``[deploy]`` table (checked by
    ``edgeage.targets.spec.validate``)."""
    return deploy_form(model, **spec.deploy)


__all__ = ["deploy_form", "target_deploy_form", "max_deploy_error", "DenseECA", "MGPoolDeploy",
           "SpatialAttentionNCHW", "SPATIAL_FORMS"]
