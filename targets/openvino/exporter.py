"""OpenVINO export: ``openvino.convert_model`` from the nn.Module (dynamic batch) and
``openvino.save_model`` (.xml + .bin). Weights are stored as fp16 only where the TOML's
``[runtime.precision.<p>] compress_to_fp16`` says so (fp16: fp16 weights); the compute precision
is chosen when the runner compiles the model (INFERENCE_PRECISION_HINT). The IR itself does not
depend on the CPU: an fp16 artifact exports anywhere, but the runner refuses to run it where the
CPU plugin cannot compute f16 (it would silently run bf16 / f32; see targets/openvino.py).

int8 (``calib``: an ``edgeage.backend.Int8Options``): NNCF PTQ on the converted model
(``nncf.quantize``, batch-1 calibration items, subset_size = images; with accuracy control
``nncf.quantize_with_accuracy_control``). The graph ends at the logits, so there is no readout
ReduceSum to exclude. QAT: ``nncf.quantize`` on the torch model (quantizers on convolution /
linear inputs only, like the PTQ scope), fine-tuned, then converted as it is: its FakeQuantize
nodes carry the learned ranges and ``save_model`` stores the weights as int8."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from edgeage.utils import EdgeAgeError

from edgeage.backend import TargetSpec, step

FILES = ["model.xml", "model.bin"]
ACCURACY_CONTROL = "nncf.quantize_with_accuracy_control"


# Ops NNCF leaves in float (no quantizer on their inputs): only Convolution and MatMul run int8.
# Measured on runs/mgpnet-t/best.pt, 1000 UTKFace test images, 300 calibration images: with
# NNCF's default scope (ECA / spatial-attention gates, SoftPool, concat, adds quantized too)
# single ages moved by p99 7.8 / max 38.7 years at an MAE drift of +0.13; with this list p99 4.7
# / max 12.1 at +0.08, at the same latency (1.16 vs 1.07 ms p50). (ONNX: p99 7.1 / max 37 ->
# 4.9 / 13.4.) NNCF's MIXED preset or MEAN_QUANTILE activation ranges did not help.
FLOAT_TYPES = ["Multiply", "Add", "Concat", "AvgPool", "MaxPool", "Divide", "Subtract", "Exp", "Sigmoid",
               "ReduceMean", "ReduceMax", "Power", "Log"]


def ignored_scope(names: list[str]):
    """NNCF IgnoredScope: FLOAT_TYPES and the torch modules ``names`` (converted ops are named
    ``__module.<torch path>/aten::op/Op``)."""
    import nncf

    return nncf.IgnoredScope(patterns=[rf"__module\.{re.escape(n)}(/|\.).*" for n in names], types=list(FLOAT_TYPES),
                             validate=False)


def _validate(readout):
    def fn(compiled, items) -> float:
        from edgeage.readout import readout_mae

        xs, ages = zip(*items)
        out = np.concatenate([np.asarray(compiled(x)[0]) for x in xs])
        return -readout_mae(readout, out, np.asarray(ages, np.float64))  # NNCF: higher is better

    return fn


# QAT hooks: NNCF on the torch model, shared with the other NNCF backend
from edgeage.targets.int8_nncf import nncf_qat_convert as qat_convert, nncf_qat_prepare as qat_prepare  # noqa: E402


def export(model: torch.nn.Module, example: torch.Tensor, out_dir: Path, precision: str, spec: TargetSpec,
           calib=None) -> list[str]:
    import openvino as ov

    cfg = spec.runtime.get("precision", {}).get(precision, {})
    with step("openvino.convert_model"):
        om = ov.convert_model(model, example_input=example,
                              input=[ov.PartialShape([-1, *example.shape[1:]])])
    if precision == "int8" and not calib.quantized:
        from edgeage.targets.int8_nncf import nncf_ptq
        from edgeage.targets.int8_scope import gate_scopes

        with step("nncf.quantize (OpenVINO model)"):
            om = nncf_ptq(om, calib, ignored_scope(list(calib.ignored) + gate_scopes(model)),
                          validate=_validate(calib.accuracy.readout) if calib.accuracy else None)
    if precision == "int8" and calib.quantized:
        fold_shape_subgraphs(om)
    compact_constants(om)
    with step("openvino.save_model"):
        ov.save_model(om, Path(out_dir) / FILES[0], compress_to_fp16=bool(cfg.get("compress_to_fp16", False)))
    minify_xml(Path(out_dir) / FILES[0])
    return FILES


def fold_shape_subgraphs(om) -> None:
    """OpenVINO's MOC pass (constant folding included) on the converted QAT model: tracing the
    fake-quantized NNCF model leaves a ShapeOf -> Gather -> Concat subgraph before many of its
    reshapes (15 ShapeOf ops in mgpnet-xs), which the pass merges or folds; the outputs are
    unchanged (measured: bit-identical). Not run on the PTQ path: its IR has no such subgraphs
    and comes out a little larger after the pass (fused ops get concatenated names)."""
    from openvino._offline_transformations import apply_moc_transformations

    apply_moc_transformations(om, cf=True)


def compact_constants(om) -> None:
    """Identical constants shared, short names for the constants (``c<i>``) and no tensor names
    on their outputs. The converter and NNCF give every FakeQuantize its own four scalar limits
    (low / high twice) and every reshape / reduction its own shape or axes constant (232 of 501
    constants in an INT8 mgpnet-xs IR are byte-identical copies), and name each after the path
    that made it ("Multiply_15727/fq_input_0/input_low"). Values are unchanged; only the
    computing ops keep their names (``__module.<torch path>/...``: check --localize and the op
    profile read them) and the model's input / output tensor names stay."""
    import numpy as np

    first, kept = {}, []
    for op in om.get_ordered_ops():
        if op.get_type_name() != "Constant":
            continue
        if not _shareable(op):
            kept.append(op)
            continue
        key = (str(op.get_element_type()), tuple(op.get_output_shape(0)), np.asarray(op.get_data()).tobytes())
        if key in first:
            op.output(0).replace(first[key].output(0))
        else:
            first[key] = op
            kept.append(op)
    om.validate_nodes_and_infer_types()
    for i, op in enumerate(kept):
        op.set_friendly_name(f"c{i}")
        for out in op.outputs():
            out.get_tensor().set_names(set())


def _shareable(const) -> bool:
    """Integer constants (shapes, axes, indices), float scalars and FakeQuantize limits are shared;
    other float tensors (weights, biases) only where every reader is a FakeQuantize. Sharing a
    bias between the unrolled steps of al-resnet's LSTM cell (byte-identical copies the converter
    makes for each call of the module) made OpenVINO 2026.4.1's CPU plugin crash in compile_model
    (segmentation fault; batch-1 static shape, LATENCY hint; tests/test_families_export.py), so
    those stay separate layers (the .bin still stores their bytes once)."""
    if not const.get_element_type().is_real() or shape_size(const.get_output_shape(0)) == 1:
        return True
    return all(t.get_node().get_type_name() == "FakeQuantize" for t in const.output(0).get_target_inputs())


def shape_size(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def minify_xml(path: Path) -> None:
    """Drop the indentation between XML tags (~16 % of the IR's .xml; pugixml reads it the same)."""
    import re

    text = path.read_text()
    path.write_text(re.sub(r">\s+<", "><", text))
