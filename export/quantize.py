"""INT8: post-training quantization (PTQ) and quantization-aware training (QAT) per backend,
accuracy control, and the quantize result folder. Calibration data (the checkpoint's training
split, or any folder of photos) lives in ``calibration``; its names are importable from here too.

Backends are targets whose TOML has an ``[int8]`` table (``backend = "xnnpack"``, ``qat =
"pt2e"``, ...). The backend-specific code lives in the target's exporter module, which for int8
takes an ``Int8Options`` as ``calib`` and may define

    qat_prepare(model, example, opts, spec) -> nn.Module   # fake-quantized, trainable
    qat_convert(prepared, example, spec) -> nn.Module      # what export(..., opts.quantized) takes
    simulate(model, example, opts, spec) -> callable       # optional: fast torch model of the
                                                           # PTQ result (greedy accuracy control)

The shared machinery for the two quantizer families is here: NNCF (OpenVINO, ONNX;
``nncf_ptq``, ``nncf_qat_prepare``) and PT2E (ExecuTorch/XNNPACK, LiteRT; ``pt2e_ptq``,
``pt2e_qat_prepare``). The result of ``edgeage quantize`` is an exported artifact folder (the
target's int8 model files + manifest.json) whose manifest has a ``quantize`` section: method,
backend, calibration provenance (``calibration.QuantData.info``: kind, source, count, names
hash, labelled, crop digests), layers kept in float, validation MAE before and after.
``edgeage export --precision int8 --from DIR`` packages it; ``edgeage check --artifact DIR``
checks it directly."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import os
import re
from pathlib import Path

import numpy as np

from edgeage.utils import EdgeAgeError, atomic_dir

from .calibration import (DEFAULT_CALIB, DEFAULT_VAL, TRAINING, QuantData, data_path,  # noqa: F401 - re-exported
                          default_options, load_split, locate, pick, quant_data, require_labels,
                          training_record)

METHODS = ("ptq", "qat")
log = logging.getLogger("edgeage.quantize")


@dataclasses.dataclass
class Int8Options:
    """What an exporter needs for int8 (passed as its ``calib`` argument)."""

    calib: np.ndarray | None = None       # float32 [N,3,S,S] model inputs, one image per item
    ignored: list[str] = dataclasses.field(default_factory=list)  # torch module names kept float
    quantized: bool = False               # the model is already quantized (QAT result): convert only
    accuracy: dict | None = None          # NNCF accuracy control: x, ages, readout, max_drop
    report: dict = dataclasses.field(default_factory=dict)  # exporter -> caller (e.g. layers kept float)

    def items(self) -> list[np.ndarray]:
        if self.calib is None or not len(self.calib):
            raise EdgeAgeError("int8 export needs calibration images (pass --calib-data, or quantize first "
                               "and export with --from)")
        return [np.ascontiguousarray(self.calib[i:i + 1], np.float32) for i in range(len(self.calib))]


# --------------------------------------------------------------------------------- backends

def int8_targets() -> dict[str, dict]:
    """backend name -> target spec, for every known target with an ``[int8]`` table."""
    from edgeage.targets.spec import known_targets, load_spec

    out = {}
    for t in known_targets():
        spec = load_spec(t)
        if "int8" in spec["precisions"] and spec.get("int8", {}).get("backend"):
            out[spec["int8"]["backend"]] = spec
    return out


def backend_spec(backend: str) -> dict:
    """The target spec of a backend name (``xnnpack``), a target name or a target .toml path."""
    from edgeage.targets.spec import load_spec

    known = int8_targets()
    if backend in known:
        return known[backend]
    try:
        spec = load_spec(backend)
    except EdgeAgeError:
        raise EdgeAgeError(f"unknown int8 backend {backend!r}; known: "
                           + ", ".join(f"{b} (target {s['name']})" for b, s in known.items())) from None
    if "int8" not in spec["precisions"]:
        raise EdgeAgeError(f"target {spec['name']} ({spec['_file']}) has no int8 precision")
    return spec


# ----------------------------------------------------------------------------- NNCF (OV, ONNX)

def nncf_dataset(items: list[np.ndarray], transform=None):
    import nncf

    return nncf.Dataset(items, transform)


def nncf_ptq(model, opts: Int8Options, ignored_scope=None, transform=None, validate=None):
    """nncf.quantize of an OpenVINO model / ONNX ModelProto on batch-1 items (subset_size =
    number of images). With ``opts.accuracy`` (and ``validate(model, items) -> -MAE``):
    nncf.quantize_with_accuracy_control; the reverted layers go to ``opts.report``."""
    import nncf

    items = opts.items()
    ds = nncf_dataset(items, transform)
    kw = dict(subset_size=len(items), ignored_scope=ignored_scope)
    if not opts.accuracy:
        return nncf.quantize(model, ds, **kw)
    acc = opts.accuracy
    val = [(np.ascontiguousarray(acc["x"][i:i + 1], np.float32), float(acc["ages"][i])) for i in range(len(acc["x"]))]
    vds = nncf.Dataset(val, (lambda it: transform(it[0])) if transform else (lambda it: it[0]))
    messages = []
    handler = _ListHandler(messages)
    nlog = logging.getLogger("nncf")
    nlog.addHandler(handler)
    try:
        q = nncf.quantize_with_accuracy_control(
            model, ds, vds, validation_fn=validate, max_drop=float(acc["max_drop"]),
            drop_type=nncf.DropType.ABSOLUTE, **kw)
    finally:
        nlog.removeHandler(handler)
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


def readout_mae(readout: dict, out: np.ndarray, ages: np.ndarray) -> float:
    from edgeage.readout import apply_readout

    return float(np.mean(np.abs(apply_readout(readout, np.asarray(out, np.float32)).astype(np.float64) - ages)))


@contextlib.contextmanager
def nncf_torch_env():
    """NNCF's torch backend compiles a C++ extension on first use: keep it in the cache folder
    and never give up waiting for it (toolchain notes)."""
    from edgeage.data import cache_root

    os.environ["NNCF_EXTENSION_LOAD_TIMEOUT"] = "0"
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(cache_root() / "torch_extensions"))
    yield


def gem_scopes(model) -> list[str]:
    """Module names of the GeM pools with finite p != 1 (y**(1/p) after a quantizer that can give
    0: NaN gradients in NNCF QAT)."""
    import math

    from edgeage.models.layers import GeM

    return [n for n, m in model.named_modules() if isinstance(m, GeM) and m.p != 1.0 and not math.isinf(m.p)]


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


def nncf_qat_prepare(model, example, opts: Int8Options, spec: dict | None = None):
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


def nncf_qat_convert(prepared, example, spec: dict | None = None):
    """The fine-tuned fake-quantized NNCF model, in eval mode: the OpenVINO exporter converts it
    with its learned quantizer ranges (``Int8Options(quantized=True)``).

    Tracing it (``openvino.convert_model``) works because quantizers sit on convolution /
    linear inputs only: NNCF's hooks are keyed by op call order, and under tracing the model's
    shape arithmetic (h * w in spatial attention) becomes tensor ``mul`` ops, which shifted the
    quantizers of real ``mul`` ops onto int64 shapes when gates were quantized too
    ("fake_quantize ... not implemented for 'Long'", nncf 3.4 / torch 2.13)."""
    return prepared.eval()


def nncf_qat_weights(prepared, example, spec: dict | None = None):
    """For ONNX: the QAT fine-tuned weights in the plain float model, marked for PTQ
    re-calibration by the exporter (``needs_calibration``); the learned quantizer ranges are not
    carried over. The legacy (tracing) ONNX exporter does write the fake-quantized model, but
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
    float_model.needs_calibration = True
    return float_model.eval()


# ------------------------------------------------------------------------ PT2E (XNNPACK, LiteRT)

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


def pt2e_ptq(model, example, quantizer, opts: Int8Options, fold: bool = True):
    """torch.export (batch 1) -> prepare_pt2e -> calibrate on each image -> convert_pt2e
    (``fold=False`` keeps float weights + quantize ops: what litert-torch's converter takes)."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    gm = prepare_pt2e(export_graph(model, example), without_modules(quantizer, opts.ignored))
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
    ignored = sorted(set(opts.ignored) | set(gem_scopes(model)))
    gm = prepare_qat_pt2e(export_graph(model, example, dynamic=True), without_modules(quantizer, ignored))
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

    move_exported_model_to_eval(prepared)
    return trainable_flag(convert_pt2e(prepared, fold_quantize=fold))


def quantizable_layers(model) -> list[str]:
    """Conv / Linear module names (the weighted layers every quantizer quantizes)."""
    import torch.nn as nn

    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]


# ----------------------------------------------------------------------------- accuracy control

def batched(fn, x: np.ndarray, batch: int = 1) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.concatenate([np.asarray(fn(torch.from_numpy(np.ascontiguousarray(x[i:i + batch])))
                                          .detach().float().numpy()) for i in range(0, len(x), batch)])


def greedy_keep_float(model, example, spec, exporter, opts: Int8Options, qd: QuantData, readout: dict,
                      max_drop: float, float_mae: float, progress=print, candidates: list[str] | None = None) -> dict:
    """Per-layer sensitivity (val MAE with only that layer quantized, through the exporter's
    ``simulate``), then keep the most sensitive layers in float, one more at a time, until the
    fully quantized model's MAE drop is <= max_drop."""
    layers = candidates or quantizable_layers(model)
    calib = Int8Options(calib=opts.calib[:min(len(opts.calib), 64)])

    def drop(ignored: list[str], full_calib: bool = False) -> float:
        o = dataclasses.replace(opts if full_calib else calib, ignored=list(ignored), report={})
        sim = exporter.simulate(copy.deepcopy(model), example, o, spec)
        return readout_mae(readout, batched(sim, qd.val), qd.val_ages) - float_mae

    steps = []
    d = drop([], full_calib=True)
    steps.append({"kept_float": 0, "mae_drop": d})
    if d <= max_drop:
        return {"kept_float": [], "sensitivity": {}, "steps": steps, "mae_drop": d}
    sens = {}
    for i, name in enumerate(layers):
        sens[name] = drop([n for n in layers if n != name])
        progress(f"  sensitivity {i + 1}/{len(layers)} {name}: MAE drop {sens[name]:+.4f}")
    order = sorted(layers, key=lambda n: -sens[n])
    kept = []
    for name in order:
        kept.append(name)
        d = drop(kept, full_calib=True)
        steps.append({"kept_float": len(kept), "layer": name, "mae_drop": d})
        progress(f"  kept {len(kept)} layer(s) float (+{name}): MAE drop {d:+.4f}")
        if d <= max_drop:
            break
    return {"kept_float": kept, "sensitivity": sens, "steps": steps, "mae_drop": d}


# ----------------------------------------------------------------------------------- quantize

def quantize(model_path, backend: str, method: str, out, data=None, calib_images: int = DEFAULT_CALIB,
             epochs: int = 2, max_mae_drop: float | None = None, lr: float | None = None,
             val_images: int = DEFAULT_VAL, max_steps: int | None = None, seed: int = 0,
             progress=print, distill_alpha: float | None = None, force: bool = False) -> dict:
    """PTQ or QAT of a checkpoint for one backend; writes an int8 artifact folder ``out``
    (atomic) whose manifest has a ``quantize`` section. Returns that section. ``data``: the
    calibration data (``calibration.locate``: the training split by default, or any photos for
    PTQ; QAT and ``max_mae_drop`` need labels). ``distill_alpha`` (QAT): weight of the
    distillation from the float model (None: ``qat.DISTILL_ALPHA``)."""
    import torch

    from edgeage.checkpoint import load_model
    from edgeage.targets.runner import load_runner
    from edgeage.targets.spec import load_module

    from .artifact import example_input, export_artifact, step

    if method not in METHODS:
        raise EdgeAgeError(f"unknown method {method!r}: use ptq or qat")
    spec = backend_spec(backend)
    model, manifest = load_model(model_path)
    exporter = load_module(spec["exporter"], spec)
    src = locate(manifest, data)  # reads no image: the refusals below come before any work
    if method == "qat" and src.kind != TRAINING:
        raise EdgeAgeError(
            f"QAT trains the model on the checkpoint's labelled training split, and {src.path} is not the data "
            f"{manifest.get('source', {}).get('path', 'the checkpoint')} was trained on"
            + ("" if training_record(manifest) else " (it records no training split)")
            + ": pass that data with --calib-data, or use --method ptq, which calibrates on any photos")
    if max_mae_drop is not None:
        require_labels(src, "accuracy control (--max-mae-drop)")
        if val_images <= 0:
            raise EdgeAgeError("accuracy control (--max-mae-drop) needs labelled validation images: set "
                               "--val-images above 0")
    qd = quant_data(manifest, data, calib_images, val_images, seed, source=src)
    readout = manifest["readout"]
    example = example_input(manifest)
    float_out = batched(model, qd.val, 256) if len(qd.val) else None
    float_mae = readout_mae(readout, float_out, qd.val_ages) if float_out is not None else None
    info = {"method": method, "backend": spec.get("int8", {}).get("backend", spec["name"]), "target": spec["name"],
            **qd.info(), "kept_float": [], "max_mae_drop": max_mae_drop, "val_mae_float": float_mae}
    opts = Int8Options(calib=qd.calib)
    if max_mae_drop is not None:
        if not len(qd.val):
            raise EdgeAgeError(
                f"accuracy control (--max-mae-drop) needs labelled validation images besides the "
                f"{len(qd.calib)} calibration images, and {src.path} has none left"
                + (": its val part is empty" if src.kind == TRAINING else
                   ": give more labelled images than --calib-images, or lower --calib-images"))
        if method == "ptq" and getattr(exporter, "ACCURACY_CONTROL", None):
            opts.accuracy = {"x": qd.val, "ages": qd.val_ages, "readout": readout, "max_drop": max_mae_drop}
        elif hasattr(exporter, "simulate"):
            with step("accuracy control (greedy per-layer sensitivity)"):
                ac = greedy_keep_float(model, example, spec, exporter, opts, qd, readout, max_mae_drop,
                                       float_mae, progress)
            opts.ignored = ac["kept_float"]
            info.update(kept_float=ac["kept_float"], accuracy_control={
                "method": "greedy: per-layer sensitivity (only that layer quantized, val subset), most "
                          "sensitive kept float until the drop holds", "steps": ac["steps"],
                "sensitivity": ac["sensitivity"]})
        else:
            raise EdgeAgeError(f"target {spec['name']}: its exporter offers no accuracy control")
    out = Path(out)
    with atomic_dir(out, force=force, kind="quantize-result") as tmp:
        work = tmp.with_name("work")  # inside atomic_dir's temp folder: removed in any case
        work.mkdir()
        if method == "qat":
            from edgeage.train.qat import qat_finetune

            if not hasattr(exporter, "qat_prepare"):
                raise EdgeAgeError(f"target {spec['name']}: its exporter ({spec['exporter']}) has no QAT "
                                   "(qat_prepare/qat_convert)")
            with step(f"{spec['exporter']}.qat_prepare"):
                prepared = exporter.qat_prepare(copy.deepcopy(model), example, opts, spec)
            kw = {} if distill_alpha is None else {"distill_alpha": distill_alpha}
            info["qat"] = qat_finetune(prepared, model, manifest, qd, work / "qat", epochs=epochs, lr=lr,
                                       max_steps=max_steps, progress=progress, **kw)
            with step(f"{spec['exporter']}.qat_convert"):
                qmodel = exporter.qat_convert(prepared, example, spec)
            if getattr(qmodel, "needs_calibration", False):  # see nncf_qat_weights
                to_export, eopts = qmodel, Int8Options(calib=qd.calib, ignored=opts.ignored)
                info["qat_conversion"] = ("fine-tuned weights re-calibrated by PTQ (the fake-quantized "
                                          "model does not export compactly; see nncf_qat_weights)")
            else:
                to_export, eopts = qmodel, Int8Options(quantized=True, ignored=opts.ignored)
                info["qat_conversion"] = "fake-quantized model converted (learned quantizers kept)"
        else:
            to_export, eopts = model, opts
        export_artifact(to_export, manifest, spec, "int8", tmp, calib=eopts)
        if eopts.report.get("kept_float"):
            info["kept_float"] = eopts.report["kept_float"]
        info.update({k: v for k, v in eopts.report.items() if k != "kept_float"})
        if len(qd.val):
            q_out = load_runner(tmp, spec).run(qd.val)
            info["val_mae_int8"] = readout_mae(readout, q_out, qd.val_ages)
            info["val_mae_drop"] = info["val_mae_int8"] - float_mae
        mpath = tmp / "manifest.json"
        man = json.loads(mpath.read_text())
        man["quantize"] = info
        mpath.write_text(json.dumps(man, indent=2, default=str) + "\n")
        if (work / "qat").is_dir():  # QAT training log (metrics.json, curve.png) beside the model files
            for p in (work / "qat").glob("*.pt"):
                p.unlink()
            (work / "qat").rename(tmp / "qat")
    return info


def is_quantize_result(path) -> bool:
    p = Path(path) / "manifest.json"
    try:
        return p.is_file() and "quantize" in json.loads(p.read_text())
    except ValueError:
        return False


def package(from_dir, spec: dict, out, force: bool = False) -> Path:
    """Copy a quantize result (an int8 artifact) into a new artifact folder, after checking it is
    one for ``spec``'s target and intact."""
    import shutil

    from .artifact import read_manifest

    man = read_manifest(from_dir)
    if "quantize" not in man:
        raise EdgeAgeError(f"{from_dir}: not an `edgeage quantize` result (no quantize section in manifest.json)")
    art = man["artifact"]
    if art["target"] != spec["name"] or art["precision"] != "int8":
        raise EdgeAgeError(f"{from_dir} is a {art['target']} {art['precision']} result, not {spec['name']} int8: "
                           f"quantize with --backend {spec.get('int8', {}).get('backend', spec['name'])}")
    with atomic_dir(out, force=force, kind="artifact") as tmp:
        for f in art["files"]:  # plain names (read_manifest checked them)
            shutil.copy2(Path(from_dir) / f["name"], tmp / f["name"])
        man["artifact"]["packaged_from"] = str(Path(from_dir).resolve())
        (tmp / "manifest.json").write_text(json.dumps(man, indent=2) + "\n")
    return Path(out)
