"""The face detector (MediaPipe's BlazeFace short range, ``edgeage/assets``) as a PyTorch module,
built from the shipped .tflite itself: its graph (ops, options, constant tensors) is read with the
TFLite flatbuffer schema that ai-edge-litert ships, and each op becomes the PyTorch op that
computes the same thing. No number is copied by hand; the float16 weights are widened to float32
exactly as the graph's DEQUANTIZE ops do.

    from edgeage.models.blazeface import blazeface, torch_face_detector
    net = blazeface()                 # nn.Module, eval mode
    reg, cls = net(x)                 # x [N,128,128,3] float32 in [-1, 1]
    faces = torch_face_detector().detect(img)   # edgeage.face's letterbox, decode and NMS

Layout: the input is the .tflite's, NHWC ``[N,128,128,3]`` float32, the letterboxed image scaled
to [-1, 1] (``edgeage.face.letterbox``); ``blazeface(nchw_input=True)`` takes ``[N,3,128,128]``
instead. Inside, every rank-4 tensor is NCHW (plain ``nn.Conv2d`` layers, named after the
.tflite's tensors: ``conv2d``, ``depthwise_conv2d_3``, ``classificator_8``, ...). The outputs are
the .tflite's, in its order: regressors ``[N,896,16]`` (box centre offset, size and 6 key points,
in input pixels, per anchor) and score logits ``[N,896,1]``, anchors ordered as
``edgeage.face._anchors`` (16x16 cells x 2, then 8x8 cells x 6, row-major, NHWC flattening).
Any batch size works.

TFLite semantics kept: SAME padding puts the odd pixel after (right / bottom), so a stride-2 conv
pads asymmetrically (an explicit ``F.pad`` before an unpadded conv); SAME max pooling ignores the
padding (pads with -inf); depthwise weights ``[1,H,W,C*M]`` become ``[C*M,1,H,W]`` with
``groups=C``; conv weights ``[O,H,W,I]`` become ``[O,I,H,W]``; channel PAD, RESHAPE and
CONCATENATION act on the NHWC view of a tensor. Only the ops this graph uses are converted (any
other raises, naming it).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..face import FaceDetector, model_path
from ..utils import EdgeAgeError

_NUMPY = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}
_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}  # NHWC axis -> NCHW axis
_ACTS = {0: None, 1: "relu", 2: "relu_n1_to_1", 3: "relu6"}


def read_tflite(path: str | Path):
    """The .tflite's model (the schema's object API) and its constant tensors by index (numpy)."""
    from ai_edge_litert import schema_py_generated as fb

    buf = Path(path).read_bytes()
    model = fb.ModelT.InitFromPackedBuf(buf, 0)
    if len(model.subgraphs or []) != 1:
        raise EdgeAgeError(f"{path}: expected one subgraph, found {len(model.subgraphs or [])}")
    consts = {}
    for i, t in enumerate(model.subgraphs[0].tensors):
        b = model.buffers[t.buffer] if t.buffer else None
        if b is None:
            continue
        if b.data is not None and len(b.data):
            raw = np.asarray(b.data, np.uint8).tobytes()
        elif b.offset > 1:  # large models keep the data after the flatbuffer
            raw = buf[b.offset:b.offset + b.size]
        else:
            continue
        if t.type not in _NUMPY:
            raise EdgeAgeError(f"{path}: tensor {t.name.decode()} has unsupported type {t.type}")
        shape = [int(d) for d in (t.shape if t.shape is not None else [])]
        consts[i] = np.frombuffer(raw, _NUMPY[t.type]).reshape(shape).copy()
    return model, consts


def _same(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TFLite SAME padding along one axis: (before, after), the odd one after."""
    total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _act(x: torch.Tensor, act: str | None) -> torch.Tensor:
    if act == "relu":
        return F.relu(x)
    if act == "relu6":
        return F.relu6(x)
    if act == "relu_n1_to_1":
        return torch.clamp(x, -1.0, 1.0)
    return x


class TFLiteGraph(nn.Module):
    """A float TFLite graph of convolutions as an nn.Module: each op of the .tflite is one step of
    ``forward`` (see the module's docstring for the layout). ``blazeface()`` builds the face
    detector's; the class converts any graph made of the same ops."""

    def __init__(self, path: str | Path, nchw_input: bool = False):
        super().__init__()
        model, consts = read_tflite(path)
        g = model.subgraphs[0]
        from ai_edge_litert import schema_py_generated as fb

        opnames = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
        self.tensors = [t.name.decode() for t in g.tensors]
        self.shapes = [[int(d) for d in (t.shape if t.shape is not None else [])] for t in g.tensors]
        if len(g.inputs) != 1:
            raise EdgeAgeError(f"{path}: expected one input, found {len(g.inputs)}")
        self.input_id, self.output_ids = int(g.inputs[0]), [int(i) for i in g.outputs]
        self.output_names = tuple(self.tensors[i] for i in self.output_ids)
        self.input_shape = tuple(self.shapes[self.input_id])  # NHWC, batch 1 as stored
        self.nchw_input = nchw_input
        self.layers = nn.ModuleDict()
        self.steps: list[tuple] = []  # (kind, input ids, output id, arguments)
        self.op_counts: dict[str, int] = {}
        for op in g.operators:
            code = model.operatorCodes[op.opcodeIndex]
            kind = opnames.get(max(code.builtinCode, code.deprecatedBuiltinCode), str(code.builtinCode))
            self.op_counts[kind] = self.op_counts.get(kind, 0) + 1
            ins, out = [int(i) for i in op.inputs], [int(i) for i in op.outputs]
            if len(out) != 1:
                raise EdgeAgeError(f"{path}: {kind} with {len(out)} outputs is not supported")
            self._add(kind, ins, out[0], op.builtinOptions, consts, path)
        self.eval()

    def _add(self, kind, ins, out, opt, consts, path):
        shape = self.shapes
        name = self.tensors[out]
        if kind == "DEQUANTIZE":
            src = consts.get(ins[0])
            if src is None or src.dtype != np.float16:
                raise EdgeAgeError(f"{path}: DEQUANTIZE {name}: only constant float16 tensors are supported")
            consts[out] = src.astype(np.float32)
        elif kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w = consts.get(ins[1])
            b = consts.get(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None
            if w is None or (len(ins) > 2 and ins[2] >= 0 and b is None) or w.dtype != np.float32:
                raise EdgeAgeError(f"{path}: {kind} {name}: weights must be float constants")
            n, h, wd, cin = shape[ins[0]]
            cout, kh, kw = shape[out][3], w.shape[1], w.shape[2]
            if kind == "CONV_2D":
                weight, groups = w.transpose(0, 3, 1, 2), cin // w.shape[3]  # OHWI -> OIHW
            else:
                weight, groups = w.transpose(3, 0, 1, 2), cin  # 1HW(C*M) -> (C*M)1HW
            sh, sw, dh, dw = opt.strideH, opt.strideW, opt.dilationHFactor, opt.dilationWFactor
            if opt.padding == 0:
                (t, bo), (le, r) = _same(h, kh, sh, dh), _same(wd, kw, sw, dw)
            else:
                t = bo = le = r = 0
            sym = t == bo and le == r
            conv = nn.Conv2d(cin, cout, (kh, kw), (sh, sw), (t, le) if sym else 0, (dh, dw), groups, b is not None)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
                if b is not None:
                    conv.bias.copy_(torch.from_numpy(b))
            conv.requires_grad_(False)
            key = self._key(name)
            self.layers[key] = conv
            oh = (h + t + bo - (kh - 1) * dh - 1) // sh + 1
            ow = (wd + le + r - (kw - 1) * dw - 1) // sw + 1
            self._expect(shape[out], [n, oh, ow, cout], name, path)
            self.steps.append(("conv", ins[:1], out, (key, None if sym else (le, r, t, bo),
                                                      _ACTS[opt.fusedActivationFunction])))
        elif kind == "MAX_POOL_2D":
            n, h, wd, c = shape[ins[0]]
            k, s = (opt.filterHeight, opt.filterWidth), (opt.strideH, opt.strideW)
            (t, bo), (le, r) = (_same(h, k[0], s[0]), _same(wd, k[1], s[1])) if opt.padding == 0 else ((0, 0), (0, 0))
            oh, ow = (h + t + bo - k[0]) // s[0] + 1, (wd + le + r - k[1]) // s[1] + 1
            self._expect(shape[out], [n, oh, ow, c], name, path)
            pad = (le, r, t, bo) if any((t, bo, le, r)) else None
            self.steps.append(("maxpool", ins, out, (k, s, pad, _ACTS[opt.fusedActivationFunction])))
        elif kind in ("RELU", "RELU6", "RELU_N1_TO_1"):
            self.steps.append(("act", ins, out, kind.lower()))
        elif kind == "ADD":
            if any(i in consts for i in ins) or shape[ins[0]] != shape[ins[1]]:
                raise EdgeAgeError(f"{path}: ADD {name}: only adds of two same-shape computed tensors")
            self.steps.append(("add", ins, out, _ACTS[opt.fusedActivationFunction]))
        elif kind == "PAD":
            p = consts.get(ins[1])
            if p is None or p.shape != (len(shape[ins[0]]), 2) or len(shape[ins[0]]) != 4 or p[0].any():
                raise EdgeAgeError(f"{path}: PAD {name}: only constant paddings of H, W, C of a rank-4 tensor")
            (t, bo), (le, r), (c0, c1) = p[1].tolist(), p[2].tolist(), p[3].tolist()
            self.steps.append(("pad", ins[:1], out, (le, r, t, bo, c0, c1)))
        elif kind == "RESHAPE":
            src, dst = shape[ins[0]], shape[out]
            if src[0] != dst[0] or int(np.prod(src[1:])) != int(np.prod(dst[1:])):
                raise EdgeAgeError(f"{path}: RESHAPE {name}: only reshapes that keep the batch")
            self.steps.append(("reshape", ins[:1], out, (len(src) == 4, tuple(dst[1:]), len(dst) == 4)))
        elif kind == "CONCATENATION":
            rank = len(shape[out])
            axis = opt.axis % rank
            if axis == 0 or any(i in consts for i in ins):
                raise EdgeAgeError(f"{path}: CONCATENATION {name}: only along a non-batch axis of computed tensors")
            self.steps.append(("concat", ins, out, (_NCHW_AXIS[axis] if rank == 4 else axis,
                                                    _ACTS[opt.fusedActivationFunction])))
        else:
            raise EdgeAgeError(f"{path}: op {kind} ({name}) is not supported by the PyTorch conversion")

    @staticmethod
    def _expect(got, want, name, path):
        if list(got) != list(want):
            raise EdgeAgeError(f"{path}: {name}: the conversion computes shape {want}, the graph says {list(got)}")

    def _key(self, name: str) -> str:
        key = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name) or "layer"
        while key in self.layers:
            key += "_"
        return key

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        env = {self.input_id: x if self.nchw_input else x.permute(0, 3, 1, 2)}
        for kind, ins, out, arg in self.steps:
            a = env[ins[0]]
            if kind == "conv":
                key, pad, act = arg
                y = _act(self.layers[key](a if pad is None else F.pad(a, pad)), act)
            elif kind == "act":
                y = _act(a, arg)
            elif kind == "add":
                y = _act(a + env[ins[1]], arg)
            elif kind == "pad":
                y = F.pad(a, arg)
            elif kind == "maxpool":
                k, s, pad, act = arg
                y = _act(F.max_pool2d(a if pad is None else F.pad(a, pad, value=float("-inf")), k, s), act)
            elif kind == "reshape":
                nhwc_in, dims, nhwc_out = arg
                y = (a.permute(0, 2, 3, 1) if nhwc_in else a).reshape(a.shape[0], *dims)
                y = y.permute(0, 3, 1, 2) if nhwc_out else y
            else:  # concat
                axis, act = arg
                y = _act(torch.cat([env[i] for i in ins], axis), act)
            env[out] = y
        return tuple(env[i].permute(0, 2, 3, 1) if env[i].dim() == 4 else env[i] for i in self.output_ids)


def blazeface(path: str | Path | None = None, nchw_input: bool = False) -> TFLiteGraph:
    """The face detector's graph (the shipped .tflite unless ``path``) as an nn.Module, eval mode:
    ``forward(x [N,128,128,3])`` -> (regressors [N,896,16], score logits [N,896,1])."""
    net = TFLiteGraph(path or model_path(), nchw_input)
    if net.output_names != ("regressors", "classificators") or net.input_shape[1:] != (128, 128, 3):
        raise EdgeAgeError(f"{path or model_path()}: not BlazeFace short range "
                           f"(input {net.input_shape}, outputs {net.output_names})")
    return net


class ExportedDetector(nn.Module):
    """What ``edgeage detector export`` exports: the graph with NCHW input ``[N,3,128,128]`` and
    its two outputs as one, ``[N,896,17]`` (regressors, then the score logit; an artifact's
    runner returns one array, ``edgeage.face.fused_runner`` splits it again)."""

    input_names = ("input",)

    def __init__(self, net: TFLiteGraph | None = None):
        super().__init__()
        self.net = blazeface(nchw_input=True) if net is None else net
        if not self.net.nchw_input:
            raise EdgeAgeError("ExportedDetector takes the graph built with nchw_input=True")
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reg, cls = self.net(x)
        return torch.cat([reg, cls], dim=-1)


def torch_runner(net: TFLiteGraph | None = None):
    """An ``edgeage.face.Runner`` computing the raw outputs with the PyTorch module: numpy NHWC
    ``[N,128,128,3]`` in (whatever the module's input layout), numpy outputs back."""
    net = blazeface() if net is None else net

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        with torch.inference_mode():
            reg, cls = net(t.permute(0, 3, 1, 2) if net.nchw_input else t)
        return reg.numpy(), cls.numpy()

    return run


def torch_face_detector(min_score: float = 0.5, iou: float = 0.3, net: TFLiteGraph | None = None) -> FaceDetector:
    """``edgeage.face.FaceDetector`` (same letterbox, decode and NMS) running the PyTorch module."""
    return FaceDetector(min_score, iou, runner=torch_runner(net))
