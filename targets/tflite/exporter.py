"""TFLite (LiteRT) export: litert-torch converts the nn.Module straight to a .tflite flatbuffer
(no TensorFlow). The graph keeps the NCHW input (a TRANSPOSE to NHWC is its first op) and ends
at the logits.

litert-torch 0.10 cannot lower this network with a dynamic batch (its JAX bridge needs concrete
shapes), so the file has a static batch of 1 and the runner loops over the batch.

int8: litert-torch's PT2EQuantizer (symmetric, per-channel weights, static activations):
prepare_pt2e on the exported graph, calibration image by image, convert_pt2e, then
litert_torch.convert with the same quantizer in its QuantConfig (``calib`` is an
``edgeage.backend.Int8Options``). EXP, DIV, POW, LOGISTIC stay float in the file
(toolchain notes). QAT: ``qat_prepare`` / ``qat_convert`` (prepare_qat_pt2e)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from edgeage.utils import EdgeAgeError

from edgeage.backend import TargetSpec, step

PRECISIONS = ("fp32", "int8")
MODEL_FILE = "model.tflite"


def quantizer(qat: bool = False):
    """litert-torch's PT2EQuantizer (symmetric, per-channel weights), conv / linear patterns only.
    Measured on runs/mgpnet-t/best.pt, 1000 UTKFace test images: with its default patterns (add,
    mul, cat, pooling quantized too) MAE drift +0.29 and single ages moved by p99 14.4 / max 24
    years; conv / linear only: +0.02, p99 1.3 / max 2.2. QAT: litert-torch 0.10's conv+bn(+relu)
    QAT-only annotators pass a plain function to torch.export (torchao 0.18's pattern helper) and
    fail, so ``annotate_conv_bn`` does their job by walking the graph; without it the conv
    annotator put the output quantizer between conv and BN, convert_pt2e could not fold 31 of 43
    BNs and the QAT .tflite carried them as MUL/ADD/SUB (0.32x fp32 instead of 0.30x)."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    class Quantizer(PT2EQuantizer):
        STATIC_QAT_ONLY_OPS: list[str] = []
        STATIC_OPS = ["linear", "addmm", "conv_relu", "conv"]

        def _annotate_all_static_patterns(self, model, quantization_config, filter_fn=None):
            if quantization_config is not None and quantization_config.is_qat:
                annotate_conv_bn(model, quantization_config, filter_fn)
            return super()._annotate_all_static_patterns(model, quantization_config, filter_fn)

    return Quantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=qat))


def annotate_conv_bn(gm, config, filter_fn=None) -> int:
    """QAT annotation of conv -> batch_norm [-> relu] chains as torchao's conv_bn annotators do
    it: input, weight (and bias) quantizers on the conv, the output quantizer after the BN (or
    its ReLU), so prepare_qat_pt2e fuses the pair and convert_pt2e folds the BN into the conv.
    Returns the number of chains annotated."""
    import operator

    from litert_torch.quantize import pt2e_quantizer_utils as U
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    aten = torch.ops.aten
    convs = {aten.conv1d.default, aten.conv2d.default}
    bn_plain = {aten.batch_norm.default}
    bn_tuple = {aten._native_batch_norm_legit.default, aten._native_batch_norm_legit_no_training.default,
                aten._native_batch_norm_legit_functional.default, aten.native_batch_norm.default}
    relus = {aten.relu.default, aten.relu_.default}

    def only_user(n):
        return next(iter(n.users)) if len(n.users) == 1 else None

    count = 0
    for conv in list(gm.graph.nodes):
        if conv.op != "call_function" or conv.target not in convs:
            continue
        bn = only_user(conv)
        if bn is None or bn.target not in bn_plain | bn_tuple:
            continue
        out = bn
        if bn.target in bn_tuple:
            outs = [u for u in bn.users if u.target is operator.getitem and u.args[1] == 0]
            if len(outs) != 1:
                continue
            out = outs[0]
        nxt = only_user(out)
        if nxt is not None and nxt.target in relus:
            out = nxt
        x, w = conv.args[0], conv.args[1]
        b = conv.args[2] if len(conv.args) > 2 else None
        part = [conv, w] + ([b] if b is not None else [])
        if U._is_annotated(part) or (filter_fn and not all(filter_fn(n) for n in part)):
            continue
        qmap = {x: U.get_input_act_qspec(config), w: U.get_weight_qspec(config)}
        if b is not None:
            qmap[b] = U.get_bias_qspec(config)
        conv.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map=qmap, _annotated=True)
        out.meta["quantization_annotation"] = QuantizationAnnotation(
            output_qspec=U.get_output_act_qspec(config), _annotated=True)
        U._mark_nodes_as_annotated(part)
        count += 1
    return count


def simulate(model, example, opts, spec):
    """The PTQ result as a torch GraphModule (q/dq in float: for accuracy control)."""
    from edgeage.targets.int8_pt2e import pt2e_ptq

    return pt2e_ptq(model, example, quantizer(), opts, fold=False)


def qat_prepare(model, example, opts, spec):
    from edgeage.targets.int8_pt2e import pt2e_qat_prepare

    return pt2e_qat_prepare(model, example, quantizer(qat=True), opts)


def qat_convert(prepared, example, spec):
    from edgeage.targets.int8_pt2e import pt2e_qat_convert

    return pt2e_qat_convert(prepared, example, fold=False)


def export(model: torch.nn.Module, example: torch.Tensor, out_dir: Path, precision: str,
           spec: TargetSpec, calib=None) -> list[str]:
    if precision not in PRECISIONS:
        raise EdgeAgeError(f"tflite: precision {precision!r} is not supported by this exporter "
                           f"(supported: {', '.join(PRECISIONS)})")
    import litert_torch

    # litert-torch prints a progress tree on stdout unless told not to
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    kw = {}
    if precision == "int8":
        from litert_torch.quantize.quant_config import QuantConfig

        if not calib.quantized:
            with step("PT2E quantization (litert PT2EQuantizer: prepare_pt2e, calibrate, convert_pt2e)"):
                model = simulate(model, example, calib, spec)
        kw["quant_config"] = QuantConfig(pt2e_quantizer=quantizer())
    model.eval()  # (on an exported GraphModule eval() returns None)
    with step("litert_torch.convert"):
        edge_model = litert_torch.convert(model, (example[:1].float().contiguous(),), **kw)
    with step(f"write {MODEL_FILE}"):
        edge_model.export(str(Path(out_dir) / MODEL_FILE))
    return [MODEL_FILE]
