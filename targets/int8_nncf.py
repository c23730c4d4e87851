"""INT8 with NNCF, shared by the NNCF backends (OpenVINO, ONNX): post-training quantization of
the converted model (``nncf_ptq``, with NNCF's accuracy control when asked) and QAT on the torch
model (``nncf_qat_prepare`` / ``nncf_qat_convert`` / ``nncf_qat_weights``). Backend-level code:
imports the core only."""
from __future__ import annotations

import contextlib
import copy
import logging
import os
import re

import numpy as np

from edgeage.backend import Int8Options, TargetSpec
from edgeage.utils import EdgeAgeError, library_log


def nncf_dataset(items: list[np.ndarray], transform=None):
    import nncf

    return nncf.Dataset(items, transform)


def nncf_ptq(model, opts: Int8Options, ignored_scope=None, transform=None, validate=None,
             per_tensor_activations: bool = False):
    """nncf.quantize of an OpenVINO model / ONNX ModelProto on batch-1 items (subset_size =
    number of images). With ``opts.accuracy`` (and ``validate(model, items) -> -MAE``):
    nncf.quantize_with_accuracy_control; the reverted layers go to ``opts.report``.
    ``per_tensor_activations``: one scale per activation tensor (onnxruntime's QLinearConv takes
    no per-channel input zero point; NNCF otherwise picks per-channel for some depthwise
    convolutions' inputs, e.g. the face detector's)."""
    import nncf

    items = opts.items()
    ds = nncf_dataset(items, transform)
    kw = dict(subset_size=len(items), ignored_scope=ignored_scope)
    if per_tensor_activations:
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, QuantizationParameters

        kw["advanced_quantization_parameters" if opts.accuracy else "advanced_parameters"] = \
            AdvancedQuantizationParameters(activations_quantization_params=QuantizationParameters(per_channel=False))
    if not opts.accuracy:
        return nncf.quantize(model, ds, **kw)
    acc = opts.accuracy
    val = [(np.ascontiguousarray(acc.x[i:i + 1], np.float32), float(acc.ages[i])) for i in range(len(acc.x))]
    vds = nncf.Dataset(val, (lambda it: transform(it[0])) if transform else (lambda it: it[0]))
    messages = []
    handler = _ListHandler(messages)
    with library_log("nncf", handler):
        q = nncf.quantize_with_accuracy_control(
            model, ds, vds, validation_fn=validate, max_drop=float(acc.max_drop),
            drop_type=nncf.DropType.ABSOLUTE, **kw)
    opts.report["accuracy_control"] = "nncf.quantize_with_accuracy_control"
    opts.report["kept_float"] = reverted_ops(messages)
    opts.report["nncf_log"] = [m for m in messages if "revert" in m.lower() or "drop" in m.lower()][-20:]
    return q


class _ListHandler(logging.Handler):
    def __init__(self, out: list):
        super().__init__(logging.INFO)
        self.out = out

    def emit(self, record):
        self.out.append(record.getMessage())


def reverted_ops(messages: list[str]) -> list[str]:
    """Operation names NNCF's accuracy control reverted to float: its final summary message
    ("k out of n were reverted back to the floating-point precision:" + one name per line)."""
    for m in reversed(messages):
        if "were reverted back" in m:
            return [ln.strip() for ln in m.splitlines()[1:] if ln.strip()]
    return []


@contextlib.contextmanager
def nncf_torch_env():
    """NNCF's torch backend compiles a C++ extension on first use: keep it in the cache folder
    and never give up waiting for it (toolchain notes)."""
    from edgeage.data import cache_root

    os.environ["NNCF_EXTENSION_LOAD_TIMEOUT"] = "0"
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(cache_root() / "torch_extensions"))
    yield


# NNCF torch op types whose inputs get fake quantizers in QAT: the same scope as the PTQ paths
# (export.openvino / export.onnx FLOAT_TYPES: only convolutions and matmuls run int8; gates,
# pools, SoftPool, concat and adds stay float, which is what keeps single ages stable)
QAT_INT8_TYPES = ("conv1d", "conv2d", "linear")


def qat_float_nodes(model, example) -> list[str]:
    """NNCF graph nodes that stay float under QAT: every op but QAT_INT8_TYPES (GeM's clamp ->
    pow included: NaN gradients through a quantizer that can give 0)."""
    from nncf.torch.function_hook.nncf_graph.nncf_graph_builder import build_nncf_graph

    g = build_nncf_graph(model.eval(), example[:1])
    return sorted(n.node_name for n in g.get_all_nodes()
                  if n.node_type not in QAT_INT8_TYPES and not n.node_type.startswith("nncf_model"))


def nncf_qat_prepare(model, example, opts: Int8Options, spec: TargetSpec | None = None):
    """nncf.quantize on the torch model (fake quantizers initialised on the calibration images)
    with quantizers on convolution / linear inputs only, ``opts.ignored`` modules excluded.
    Returns the trainable fake-quantized module."""
    import nncf
    import torch

    float_copy = copy.deepcopy(model).eval()
    with nncf_torch_env():
        items = [torch.from_numpy(a) for a in opts.items()]
        scope = nncf.IgnoredScope(names=qat_float_nodes(model, example), validate=False,
                                  patterns=[rf"{re.escape(n.replace('.', '/'))}/.*" for n in opts.ignored])
        q = nncf.quantize(model.eval(), nncf.Dataset(items), subset_size=len(items), ignored_scope=scope)
    object.__setattr__(q, "_edgeage_float", float_copy)  # not a submodule: not trained, not saved
    return q


def nncf_qat_convert(prepared, example, spec: TargetSpec | None = None):
    """The fine-tuned fake-quantized NNCF model, in eval mode: the OpenVINO exporter converts it
    with its learned quantizer ranges (``Int8Options(quantized=True)``).

    Tracing it (``openvino.convert_model``) works because quantizers sit on convolution /
    linear inputs only: NNCF's hooks are keyed by op call order, and under tracing the model's
    shape arithmetic (h * w in spatial attention) becomes tensor ``mul`` ops, which shifted the
    quantizers of real ``mul`` ops onto int64 shapes when gates were quantized too
    ("fake_quantize ... not implemented for 'Long'", nncf 3.4 / torch 2.13)."""
    from edgeage.backend import QATResult

    return QATResult(prepared.eval())


def nncf_qat_weights(prepared, example, spec: TargetSpec | None = None):
    """For ONNX: the QAT fine-tuned weights in the plain float model, for PTQ re-calibration by
    the exporter (``QATResult(recalibrate=True)``); the learned quantizer ranges are not carried
    over. The legacy (tracing) ONNX exporter does write the fake-quantized model, but
    (measured, nncf 3.4 / torch 2.13) with the traced batch size baked into the gates' reshapes,
    fp32 weights under QuantizeLinear (4.6 MB, the fp32 model's size) and, where the reshapes
    are written without a batch size, hundreds of Shape/Slice/Mod ops traced from NNCF's hooks;
    torch.export (the dynamo exporter) stops at a data-dependent guard inside NNCF's hook
    executor."""
    float_model = copy.deepcopy(prepared._edgeage_float)  # noqa: SLF001
    own = float_model.state_dict()
    sd = {k: v for k, v in prepared.state_dict().items() if k in own and v.shape == own[k].shape}
    missing = sorted(set(own) - set(sd))
    if missing:
        raise EdgeAgeError(f"QAT weights do not map back onto the float model (missing {missing[:3]})")
    float_model.load_state_dict(sd)
    from edgeage.backend import QATResult

    return QATResult(float_model.eval(), recalibrate=True,
                     how="fine-tuned weights re-calibrated by PTQ (the fake-quantized model does not export "
                         "compactly; see nncf_qat_weights)")
