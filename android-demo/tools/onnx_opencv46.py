"""ONNX for OpenCV 4.6's DNN importer (Debian's libopencv-java: the JVM parity run).

OpenCV 4.6 cannot import what ``edgeage.export.onnx`` writes; measured on MGP-Net:
- dynamo export (opset 18+, BatchNorm folded into Conv by onnxscript's rewriter): the first Conv
  fails ("!hasBias() || blobs[1].total() == weightShape[0]");
- legacy exporter, opset >= 11: Clip with min/max as inputs (GeM's clamp(min=eps)) is rejected
  ("node_proto.input_size() == 1");
- legacy exporter, any opset: the 6-D Expand of SoftPool's per-window max broadcast
  (``edgeage.models.layers._window_max_broadcast``) is "Unsupported Expand op".
So: the legacy exporter at opset 10, with that broadcast written as nearest-neighbour upsampling
of the window max for the duration of the export (the same values: each pixel gets its window's
maximum), batch dimension dynamic. The exported graph matches PyTorch to ~4e-7.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch
import torch.nn.functional as F

from edgeage.export.artifact import step

FILE = "model.onnx"


@contextlib.contextmanager
def nearest_window_max():
    import edgeage.models.layers as layers

    orig = layers._window_max_broadcast
    layers._window_max_broadcast = lambda x, k: F.interpolate(F.max_pool2d(x, k, k), scale_factor=k, mode="nearest")
    try:
        yield
    finally:
        layers._window_max_broadcast = orig


def export(model: torch.nn.Module, example: torch.Tensor, out_dir: Path, precision: str, spec: dict,
           calib=None) -> list[str]:
    import onnx

    path = Path(out_dir) / FILE
    x = example[:1]
    with step("check the substituted broadcast"), torch.no_grad():
        ref = model(x)
        with nearest_window_max():
            diff = (model(x) - ref).abs().max().item()
        if diff > 1e-6:
            raise RuntimeError(f"nearest-upsampled window max changes the outputs by {diff}")
    with step(f"torch.onnx.export (legacy, opset {spec['runtime']['opset']})"), nearest_window_max():
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=int(spec["runtime"]["opset"]),
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    with step("onnx.checker"):
        onnx.checker.check_model(str(path))
    return [FILE]
