"""ONNX export: ``torch.onnx.export(dynamo=True)`` with a dynamic batch dimension; fp16 converts
the weights and compute to float16 while keeping the graph's input and output float32."""
from __future__ import annotations

from pathlib import Path

import torch

from .artifact import step

FILE = "model.onnx"


def export(model: torch.nn.Module, example: torch.Tensor, out_dir: Path, precision: str, spec: dict,
           calib=None) -> list[str]:
    import onnx

    path = Path(out_dir) / FILE
    opset = spec["runtime"].get("opset")
    with step("torch.onnx.export (dynamo)"):
        prog = torch.onnx.export(model, (example,), dynamo=True, verbose=False, opset_version=opset,
                                 input_names=["input"], output_names=["logits"],
                                 dynamic_shapes=({0: torch.export.Dim("batch")},))
    with step("save ONNX"):
        prog.save(path, external_data=False)
    if precision == "fp16":
        import onnx_ir as ir
        from onnxruntime.transformers.float16 import convert_float_to_float16

        with step("float16 conversion (onnxruntime.transformers.float16)"):
            m16 = ir.from_proto(convert_float_to_float16(onnx.load(path), keep_io_types=True))
            m16.graph.sort()  # the converter appends the input casts at the end of the node list
            onnx.save(ir.to_proto(m16), path)
    with step("onnx.checker"):
        onnx.checker.check_model(str(path))
    return [FILE]
