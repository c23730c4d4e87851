"""TFLite (LiteRT) export: litert-torch converts the nn.Module straight to a .tflite flatbuffer
(no TensorFlow). The graph keeps the NCHW input (a TRANSPOSE to NHWC is its first op) and ends
at the logits.

litert-torch 0.10 cannot lower this network with a dynamic batch (its JAX bridge needs concrete
shapes), so the file has a static batch of 1 and the runner loops over the batch.

int8: litert-torch's PT2EQuantizer (symmetric, per-channel weights, static activations):
prepare_pt2e on the exported graph, calibration image by image, convert_pt2e, then
litert_torch.convert with the same quantizer in its QuantConfig (``calib`` is an
``edgeage.export.quantize.Int8Options``). EXP, DIV, POW, LOGISTIC stay float in the file
(toolchain notes). QAT: ``qat_prepare`` / ``qat_convert`` (prepare_qat_pt2e)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from edgeage.utils import EdgeAgeError

from .artifact import step

PRECISIONS = ("fp32", "int8")
MODEL_FILE = "model.tflite"


def quantizer(qat: bool = False):
    """litert-torch's PT2EQuantizer (symmetric, per-channel weights), conv / linear patterns only.
    Measured on runs/mgpnet-t/best.pt, 1000 UTKFace test images: with its default patterns (add,
    mul, cat, pooling quantized too) MAE drift +0.29 and single ages moved by p99 14.4 / max 24
    years; conv / linear only: +0.02, p99 1.3 / max 2.2. For QAT without its conv+bn(+relu)
    QAT-only annotators: in litert-torch 0.10 they pass a plain function to torch.export
    (torchao 0.18's pattern helper) and fail; the conv annotator then annotates the convolutions
    that prepare_qat_pt2e has fused with their BN."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    class Quantizer(PT2EQuantizer):
        STATIC_QAT_ONLY_OPS: list[str] = []
        STATIC_OPS = ["linear", "addmm", "conv_relu", "conv"]

    return Quantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=qat))


def simulate(model, example, opts, spec):
    """The PTQ result as a torch GraphModule (q/dq in float: for accuracy control)."""
    from .quantize import pt2e_ptq

    return pt2e_ptq(model, example, quantizer(), opts, fold=False)


def qat_prepare(model, example, opts, spec):
    from .quantize import pt2e_qat_prepare

    return pt2e_qat_prepare(model, example, quantizer(qat=True), opts)


def qat_convert(prepared, example, spec):
    from .quantize import pt2e_qat_convert

    return pt2e_qat_convert(prepared, example, fold=False)


def export(model: torch.nn.Module, example: torch.Tensor, out_dir: Path, precision: str,
           spec: dict, calib=None) -> list[str]:
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
