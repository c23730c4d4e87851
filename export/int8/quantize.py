"""``edgeage quantize``: post-training quantization (PTQ) or quantization-aware training (QAT)
of a checkpoint for one backend. The work is split by concern: calibration data in
``calibration``, accuracy control in ``accuracy``, packaging in ``package``, the QAT loop in
``edgeage.train.qat``; the backend-specific INT8 code in the target's exporter (the
``edgeage.backend.Quantizer`` hooks) and the shared NNCF / PT2E machinery in
``edgeage.targets.int8_nncf`` / ``int8_pt2e``.

Backends are targets whose TOML has an ``[int8]`` table (``backend = "xnnpack"``, ``qat =
"pt2e"``, ...). The result of ``edgeage quantize`` is an exported artifact folder (the
target's int8 model files + manifest.json) whose manifest has a ``quantize`` section: method,
backend, calibration provenance (``calibration.QuantData.info``: kind, source, count, names
hash, labelled, crop digests), layers kept in float, validation MAE before and after.
``edgeage export --precision int8 --from DIR`` packages it; ``edgeage check --artifact DIR``
checks it directly."""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

from edgeage.backend import AccuracyControl, Int8Options, QATResult, TargetSpec, describe, step
from edgeage.readout import readout_mae
from edgeage.utils import EdgeAgeError, atomic_dir

from .accuracy import greedy_keep_float
from ..artifact.calibration import DEFAULT_CALIB, DEFAULT_VAL, TRAINING, locate, quant_data, require_labels, training_record

METHODS = ("ptq", "qat")
log = logging.getLogger("edgeage.quantize")


# --------------------------------------------------------------------------------- backends

def int8_targets() -> dict[str, TargetSpec]:
    """backend name -> target spec, for every known target with an ``[int8]`` table."""
    from edgeage.targets.spec import known_targets, load_spec

    out = {}
    for t in known_targets():
        spec = load_spec(t)
        if "int8" in spec.precisions and spec.int8.get("backend"):
            out[spec.int8["backend"]] = spec
    return out


def backend_spec(backend: str) -> TargetSpec:
    """The target spec of a backend name (``xnnpack``), a target name or a target .toml path."""
    from edgeage.targets.spec import load_spec

    known = int8_targets()
    if backend in known:
        return known[backend]
    try:
        spec = load_spec(backend)
    except EdgeAgeError:
        raise EdgeAgeError(f"unknown int8 backend {backend!r}; known: "
                           + ", ".join(f"{b} (target {s.name})" for b, s in known.items())) from None
    if "int8" not in spec.precisions:
        raise EdgeAgeError(f"target {spec.name} ({spec.file}) has no int8 precision")
    return spec


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
    from edgeage.checkpoint import TorchModel, load_model
    from edgeage.pipeline import AgeEstimator
    from edgeage.targets.runner import load_runner
    from edgeage.targets.spec import load_module

    from ..artifact.writer import example_input, export_artifact

    if method not in METHODS:
        raise EdgeAgeError(f"unknown method {method!r}: use ptq or qat")
    spec = backend_spec(backend)
    model, manifest = load_model(model_path)
    details = describe(load_module(spec.exporter, spec), spec.exporter)
    exporter = details.module
    src = locate(manifest, data)  # reads no image: the refusals below come before any work
    if method == "qat" and src.kind != TRAINING:
        raise EdgeAgeError(
            f"QAT trains the model on the checkpoint's labelled training split, and {src.path} is not the data "
            f"{manifest.source_path or 'the checkpoint'} was trained on"
            + ("" if training_record(manifest) else " (it records no training split)")
            + ": pass that data with --calib-data, or use --method ptq, which calibrates on any photos")
    if max_mae_drop is not None:
        require_labels(src, "accuracy control (--max-mae-drop)")
        if val_images <= 0:
            raise EdgeAgeError("accuracy control (--max-mae-drop) needs labelled validation images: set "
                               "--val-images above 0")
    qd = quant_data(manifest, data, calib_images, val_images, seed, source=src)
    readout = manifest.readout
    example = example_input(manifest)
    float_out = AgeEstimator(TorchModel(model), manifest).outputs(qd.val) if len(qd.val) else None
    float_mae = readout_mae(readout, float_out, qd.val_ages) if float_out is not None else None
    info = {"method": method, "backend": spec.int8.get("backend", spec.name), "target": spec.name,
            **qd.info(), "kept_float": [], "max_mae_drop": max_mae_drop, "val_mae_float": float_mae}
    opts = Int8Options(calib=qd.calib)
    if max_mae_drop is not None:
        if not len(qd.val):
            raise EdgeAgeError(
                f"accuracy control (--max-mae-drop) needs labelled validation images besides the "
                f"{len(qd.calib)} calibration images, and {src.path} has none left"
                + (": its val part is empty" if src.kind == TRAINING else
                   ": give more labelled images than --calib-images, or lower --calib-images"))
        if method == "ptq" and details.accuracy_control:
            opts.accuracy = AccuracyControl(x=qd.val, ages=qd.val_ages, readout=readout, max_drop=max_mae_drop)
        elif details.simulate:
            with step("accuracy control (greedy per-layer sensitivity)"):
                ac = greedy_keep_float(model, example, spec, exporter, opts, qd, readout, max_mae_drop,
                                       float_mae, progress)
            opts.ignored = ac["kept_float"]
            info.update(kept_float=ac["kept_float"], accuracy_control={
                "method": "greedy: per-layer sensitivity (only that layer quantized, val subset), most "
                          "sensitive kept float until the drop holds", "steps": ac["steps"],
                "sensitivity": ac["sensitivity"]})
        else:
            raise EdgeAgeError(f"target {spec.name}: its exporter offers no accuracy control")
    out = Path(out)
    with atomic_dir(out, force=force, kind="quantize-result") as tmp:
        work = tmp.with_name("work")  # inside atomic_dir's temp folder: removed in any case
        work.mkdir()
        if method == "qat":
            from edgeage.train.qat import qat_finetune

            if not details.qat:
                raise EdgeAgeError(f"target {spec.name}: its exporter ({spec.exporter}) has no QAT "
                                   "(qat_prepare/qat_convert)")
            with step(f"{spec.exporter}.qat_prepare"):
                from edgeage.models.deploy import target_deploy_form  # fine-tune the form that is exported

                prepared = exporter.qat_prepare(target_deploy_form(model, spec), example, opts, spec)
            kw = {} if distill_alpha is None else {"distill_alpha": distill_alpha}
            info["qat"] = qat_finetune(prepared, model, manifest, qd, work / "qat", epochs=epochs, lr=lr,
                                       max_steps=max_steps, progress=progress, **kw)
            with step(f"{spec.exporter}.qat_convert"):
                res = exporter.qat_convert(prepared, example, spec)
                if not isinstance(res, QATResult):
                    raise TypeError(f"returned {type(res).__name__}, not an edgeage.backend.QATResult")
            to_export, eopts = res.model, res.int8_options(qd.calib, opts.ignored)
            info["qat_conversion"] = res.how
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
        man = json.loads(mpath.read_text())  # the file as written: plain JSON data
        man["quantize"] = info
        mpath.write_text(json.dumps(man, indent=2, default=str) + "\n")
        if (work / "qat").is_dir():  # QAT training log (metrics.json, curve.png) beside the model files
            for p in (work / "qat").glob("*.pt"):
                p.unlink()
            (work / "qat").rename(tmp / "qat")
    return info
