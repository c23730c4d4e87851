"""ONNX for OpenCV 4.6's DNN importer (Debian's libopencv-java: the JVM parity run).

OpenCV 4.6 cannot import what ``edgeage.targets.onnx.exporter`` writes; measured on MGP-Net:
- dynamo export (opset 18+, BatchNorm folded into Conv by onnxscript's rewriter): the first Conv
  fails ("!hasBias() || blobs[1].total() == weightShape[0]");
- legacy exporter, opset >= 11: Clip with min/max as inputs (GeM's clamp(min=eps)) is rejected
  ("node_proto.input_size() == 1");
- legacy exporter, dynamic batch: SoftPool's per-channel max (a max-pool whose kernel is the map
  size, read from the tensor's shape) is a traced Gather the exporter cannot turn into a kernel.
So: the legacy exporter at opset 10, batch dimension dynamic, with SoftPool's per-channel max
written as a global max-pool (``adaptive_max_pool2d(x, 1)``, the same values) for the duration of
the export. The exported graph matches PyTorch to ~4e-7.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch
import torch.nn.functional as F

from edgeage.backend import TargetSpec, step

FILE = "model.onnx"


@contextlib.contextmanager
def global_max_softpool():
    from edgeage.models.layers import SoftPool

    orig = SoftPool.forward

    def forward(self, x):
        e = torch.exp((x - F.adaptive_max_pool2d(x, 1)).clamp(min=-80.0))
        return F.avg_pool2d(e * x, self.k, self.k) / F.avg_pool2d(e, self.k, self.k)

    SoftPool.forward = forward
    try:
        yield
    finally:
        SoftPool.forward = orig


def export(model: torch.nn.Module, example: torch.Tensor, out_dir: Path, precision: str, spec: TargetSpec,
           calib=None) -> list[str]:
    import onnx

    path = Path(out_dir) / FILE
    x = example[:1]
    with step("check the substituted per-channel max"), torch.no_grad():
        ref = model(x)
        with global_max_softpool():
            diff = (model(x) - ref).abs().max().item()
        if diff > 1e-6:
            raise RuntimeError(f"global max-pool in SoftPool changes the outputs by {diff}")
    with step(f"torch.onnx.export (legacy, opset {spec.runtime['opset']})"), global_max_softpool():
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=int(spec.runtime["opset"]),
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    with step("onnx.checker"):
        onnx.checker.check_model(str(path))
    return [FILE]
