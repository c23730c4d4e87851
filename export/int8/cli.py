"""``edgeage quantize``."""
from __future__ import annotations

import click

from edgeage.cli_options import FiniteRange, InputPath, echo_warnings, force_option, model_option, stdout_to_stderr


@click.command("quantize")
@model_option
@click.option("--method", type=click.Choice(["ptq", "qat"]), default="ptq", show_default=True,
              help="ptq: calibrate only; qat: fine-tune the fake-quantized model (training loop, "
                   "degradation model on), then convert.")
@click.option("--backend", required=True,
              help="openvino | onnx | xnnpack (ExecuTorch) | litert (TFLite); or a target name / .toml "
                   "with an [int8] table.")
@click.option("--calib-images", type=click.IntRange(min=1), default=300, show_default=True,
              help="Calibration images (counted in images), seeded random from the calibration data.")
@click.option("--epochs", type=click.IntRange(min=1), default=2, show_default=True, help="QAT epochs.")
@click.option("--lr", type=FiniteRange(min=0, min_open=True), default=None,
              help="QAT learning rate (default: the recipe's x 0.05).")
@click.option("--max-steps", type=click.IntRange(min=1), default=None,
              help="QAT: at most this many optimiser steps per epoch (a random part of the training split).")
@click.option("--distill-alpha", type=FiniteRange(0.0, 1.0), default=1.0, show_default=True,
              help="QAT: weight of the loss that pulls the INT8 model's age distribution towards the float "
                   "model's on the same degraded images (0 = labels only).")
@click.option("--max-mae-drop", type=FiniteRange(min=0.0), default=None,
              help="Accuracy control: keep the layers that hurt validation MAE most in float until the "
                   "drop (years) holds. Needs labelled validation images: the checkpoint's training data "
                   "(its val part), or labelled --calib-data (UTKFace names or a CSV with an age column).")
@click.option("--val-images", type=click.IntRange(min=0), default=500, show_default=True,
              help="Labelled validation images for MAE before/after and accuracy control: the val part of "
                   "the training split, or labelled --calib-data images other than the calibration ones.")
@click.option("--calib-data", "--data", "data", type=InputPath(exists=True), default=None,
              help="Calibration data (--data is an alias). The checkpoint's training data (default: the "
                   "recipe's data path) calibrates on its training split; any other folder of photos "
                   "(searched recursively, any names, labels not needed: faces are detected and cropped), "
                   "CSV with a path column (age optional) or prepared cache calibrates PTQ. QAT trains, "
                   "so it needs the labelled training data.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Result folder (default: runs/<model>-int8-<method>-<backend>).")
@force_option
def quantize_cmd(model_path, method, backend, calib_images, epochs, lr, max_steps, distill_alpha, max_mae_drop,
                 val_images, data, out, force):
    """INT8 post-training quantization or QAT for one backend. Writes an int8 artifact folder
    (model file(s) + manifest.json with a `quantize` section) for `edgeage export --precision int8
    --from DIR` and `edgeage check --artifact DIR`."""
    import warnings

    from edgeage.checkpoint import read_checkpoint
    from edgeage.utils import check_output

    from edgeage.artifact import read_manifest

    from .quantize import backend_spec, quantize

    spec = backend_spec(backend)
    if out is None:
        name = read_checkpoint(model_path)["manifest"].model.name
        out = f"runs/{name}-int8-{method}-{spec.int8.get('backend', spec.name)}"
    check_output(out, force)  # before calibration / training, not after
    with stdout_to_stderr(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            info = quantize(model_path, backend, method, out, data, calib_images, epochs, max_mae_drop, lr,
                            val_images, max_steps, progress=lambda m: click.echo(m, err=True),
                            distill_alpha=distill_alpha, force=force)
        finally:
            echo_warnings(caught)
    files = ", ".join(f"{f.name} ({f.size / 2**20:.2f} MB)" for f in read_manifest(out).artifact.files)
    drop = info.get("val_mae_drop")
    mae = (f"; val MAE {info['val_mae_float']:.3f} -> {info['val_mae_int8']:.3f} ({drop:+.3f})"
           if drop is not None else "")
    cal = info["calibration"]
    click.echo(f"{method} {info['backend']} ({spec.name}): {info['calibration_images']} calibration images "
               f"({cal['kind']}, {cal['source']}){mae}; kept float: {', '.join(info['kept_float']) or 'none'}")
    click.echo(f"wrote {out}: {files}, manifest.json")


