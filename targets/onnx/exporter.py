"""ONNX export: ``torch.onnx.export(dynamo=True)`` with a dynamic batch dimension; fp16 converts
the weights and compute to float16 while keeping the graph's input and output float32.

int8 (``calib``: an ``edgeage.backend.Int8Options``): NNCF PTQ on the exported
ModelProto (QuantizeLinear/DequantizeLinear pairs that onnxruntime runs with int8 kernels;
batch-1 calibration items, subset_size = images; with accuracy control
``nncf.quantize_with_accuracy_control``). QAT: ``nncf.quantize`` on the torch model (quantizers
on convolution / linear inputs, the PTQ scope), fine-tuned; the fake-quantized model does not
export compactly (``edgeage.targets.int8_nncf.nncf_qat_weights``: fp32 weights under QuantizeLinear and hundreds
of traced shape ops; torch.export fails inside NNCF), so the fine-tuned weights are
re-calibrated by the PTQ path."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import torch

from edgeage.utils import EdgeAgeError

from edgeage.backend import TargetSpec, step

FILE = "model.onnx"
ACCURACY_CONTROL = "nncf.quantize_with_accuracy_control"


# Ops NNCF leaves in float: only Conv and MatMul/Gemm run int8 (measured: see targets/openvino/exporter.py).
FLOAT_TYPES = ["Mul", "Add", "Concat", "AveragePool", "MaxPool", "Div", "Sub", "Exp", "Sigmoid", "ReduceMean",
               "ReduceMax", "Pow", "Log"]


def ignored_scope(model, names: list[str]):
    """NNCF IgnoredScope: FLOAT_TYPES and the ONNX nodes traced from the torch modules ``names``
    (from the dynamo exporter's ``pkg.torch.onnx.name_scopes`` metadata)."""
    import nncf

    hits = []
    for node in model.graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
        path = scopes[-2] if len(scopes) >= 2 else ""
        if any(path == n or path.startswith(n + ".") for n in names):
            hits.append(node.name)
    return nncf.IgnoredScope(names=hits, types=list(FLOAT_TYPES), validate=False)


def _validate(readout, input_name):
    def fn(model, items) -> float:
        import onnxruntime as ort

        from edgeage.readout import readout_mae

        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        xs, ages = zip(*items)
        out = np.concatenate([sess.run(None, {input_name: x})[0] for x in xs])
        return -readout_mae(readout, out, np.asarray(ages, np.float64))  # NNCF: higher is better

    return fn


# QAT hooks: NNCF on the torch model, shared with the other NNCF backend
from edgeage.targets.int8_nncf import nncf_qat_prepare as qat_prepare, nncf_qat_weights as qat_convert  # noqa: E402


def export(model: torch.nn.Module, example: torch.Tensor, out_dir: Path, precision: str, spec: TargetSpec,
           calib=None) -> list[str]:
    import onnx

    path = Path(out_dir) / FILE
    opset = spec.runtime.get("opset")
    if precision == "int8" and calib.quantized:
        raise EdgeAgeError("onnx: no conversion of an already quantized torch model (QAT results are "
                           "re-calibrated, see edgeage.targets.int8_nncf.nncf_qat_weights)")
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
    if precision == "int8" and not calib.quantized:
        from edgeage.targets.int8_nncf import nncf_ptq
        from edgeage.targets.int8_scope import gate_scopes

        with step("nncf.quantize (ONNX model)"):
            m = onnx.load(path)
            name = m.graph.input[0].name
            q = nncf_ptq(m, calib, ignored_scope(m, list(calib.ignored) + gate_scopes(model)), transform=lambda x: {name: x},
                         validate=_validate(calib.accuracy.readout, name) if calib.accuracy else None,
                         per_tensor_activations=True)
            onnx.save(q, path)
    with step("slim (drop exporter debug metadata)"):
        m = onnx.load(path)
        slim(m)
        onnx.save(m, path)
    with step("onnx.checker"):
        onnx.checker.check_model(str(path))
    return [FILE]


MODULE_KEY = "edgeage.module"  # the torch module a node was traced from (for check --localize)


def slim(model) -> None:
    """Drop what only debugging needs: the exporter's per-node stack traces, class hierarchies and
    fx names (~0.5 MB, a third of an INT8 mgpnet-t file) and the graph's value_info (runtimes infer
    shapes). Each node keeps one short ``edgeage.module`` entry, the torch module path, which
    ``check --localize`` uses to map outputs back to layers."""
    for node in model.graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
        module = meta.get(MODULE_KEY) or (scopes[-2] if len(scopes) >= 2 else "")
        del node.metadata_props[:]
        if module:
            node.metadata_props.add(key=MODULE_KEY, value=module)
    del model.graph.value_info[:]
