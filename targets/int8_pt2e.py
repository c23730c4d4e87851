"""INT8 with PT2E (torch.export + torchao's prepare_pt2e / convert_pt2e), shared by the PT2E
backends (ExecuTorch / XNNPACK, LiteRT): PTQ (``pt2e_ptq``), QAT (``pt2e_qat_prepare`` /
``pt2e_qat_convert``) and ``without_modules`` (keep named torch modules float under any
quantizer). Backend-level code: imports the core only."""
from __future__ import annotations

import numpy as np

from edgeage.backend import Int8Options

from .int8_scope import gate_scopes, gem_scopes


def without_modules(quantizer, ignored: list[str]):
    """Wrap a PT2E quantizer so nodes traced from the modules named in ``ignored`` (or inside
    them) get no quantization annotation, i.e. stay float. Works for any quantizer (litert's
    set_module_type(..., None) silently does nothing on torch 2.13, and set_module_name refuses
    None)."""
    if not ignored:
        return quantizer
    prefixes = tuple(ignored)
    inner_annotate = quantizer.annotate

    def in_ignored(node) -> bool:
        for path, _ in node.meta.get("nn_module_stack", {}).values():
            if any(path == p or path.startswith(p + ".") for p in prefixes):
                return True
        return False

    def shares_with(ann, dropped) -> bool:
        from torchao.quantization.pt2e.quantizer import SharedQuantizationSpec

        specs = list(ann.input_qspec_map.values()) + [ann.output_qspec]
        for q in specs:
            if isinstance(q, SharedQuantizationSpec):
                e = q.edge_or_node
                if any(n in dropped for n in (e if isinstance(e, tuple) else (e,))):
                    return True
        return False

    def annotate(model):
        model = inner_annotate(model)
        dropped = set()
        for node in model.graph.nodes:
            if in_ignored(node) and node.meta.pop("quantization_annotation", None) is not None:
                dropped.add(node)
        while True:  # annotations sharing a dropped node's qparams go too
            more = [n for n in model.graph.nodes if n not in dropped and "quantization_annotation" in n.meta
                    and shares_with(n.meta["quantization_annotation"], dropped)]
            if not more:
                return model
            for n in more:
                n.meta.pop("quantization_annotation")
                dropped.add(n)

    quantizer.annotate = annotate
    return quantizer


def export_graph(model, example, dynamic: bool = False):
    import torch

    model = model.eval()
    if dynamic:  # an example batch >= 16 keeps the symbolic batch unbounded (toolchain notes)
        x = example[:1].expand(32, *example.shape[1:]).contiguous()
        return torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},)).module()
    return torch.export.export(model, (example[:1].contiguous(),)).module()


def fold_reused_conv_bn(model, example):
    """A copy of ``model`` whose Conv2d -> BatchNorm2d pairs called more than once per forward
    (AL-ResNet's local branch runs on each LSTM step's crop) are fused into one convolution.
    prepare_pt2e folds every traced (conv, bn) pair into the conv's weight, once per call: a
    module called 3 times had its BN folded 3 times (al-resnet's outputs moved by 5-6 logits before
    any quantizer ran; torchao 0.18.0). Exact up to float rounding; other models are unchanged."""
    import copy

    import torch
    import torch.nn as nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    calls: dict[str, int] = {}

    def counter(name):
        return lambda mod, i, o: calls.__setitem__(name, calls.get(name, 0) + 1)

    hooks = [m.register_forward_hook(counter(n)) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        with torch.no_grad():
            model.eval()(example[:1])
    finally:
        for h in hooks:
            h.remove()
    if not any(n > 1 for n in calls.values()):
        return model
    model = copy.deepcopy(model).eval()
    for name, seq in [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and \
                    calls.get(f"{name}.{i + 1}" if name else str(i + 1), 0) > 1:
                seq[i], seq[i + 1] = fuse_conv_bn_eval(conv, bn), nn.Identity()
    return model


def pt2e_ptq(model, example, quantizer, opts: Int8Options, fold: bool = True):
    """torch.export (batch 1) -> prepare_pt2e -> calibrate on each image -> convert_pt2e
    (``fold=False`` keeps float weights + quantize ops: what litert-torch's converter takes)."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    gm = prepare_pt2e(export_graph(fold_reused_conv_bn(model, example), example),
                      without_modules(quantizer, list(opts.ignored) + gate_scopes(model)))
    with torch.no_grad():
        for a in opts.items():
            gm(torch.from_numpy(a))
    return trainable_flag(convert_pt2e(gm, fold_quantize=fold))


def trainable_flag(gm):
    """Let .eval()/.train() work on an exported GraphModule (exporters call model.eval())."""
    from torchao.quantization.pt2e import allow_exported_model_train_eval

    allow_exported_model_train_eval(gm)
    return gm


def pt2e_qat_prepare(model, example, quantizer, opts: Int8Options):
    """torch.export with a dynamic batch -> prepare_qat_pt2e; observers initialised on the
    calibration images. Returns a trainable GraphModule (train/eval via torchao's move_* )."""
    import torch
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    # GeM (finite p) stays float: its pooled y**p quantized to 0 gives an infinite gradient
    # through **(1/p) and NaN weights after the first step (measured; same as NNCF's QAT)
    ignored = sorted(set(opts.ignored) | set(gem_scopes(model)) | set(gate_scopes(model)))
    gm = prepare_qat_pt2e(export_graph(fold_reused_conv_bn(model, example), example, dynamic=True),
                          without_modules(quantizer, ignored))
    move_exported_model_to_train(gm)
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(opts.calib, np.float32))
        for i in range(0, len(x), 32):
            c = x[i:i + 32]
            gm(c if len(c) > 1 else c.expand(2, *c.shape[1:]))
    move_exported_model_to_eval(gm)
    return gm


def pt2e_qat_convert(prepared, example, fold: bool = True):
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from edgeage.backend import QATResult

    move_exported_model_to_eval(prepared)
    return QATResult(trainable_flag(convert_pt2e(prepared, fold_quantize=fold)))
