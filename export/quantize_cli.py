"""``edgeage quantize``."""
from __future__ import annotations

import click

from edgeage.cli import model_option


@click.command("quantize")
@model_option
@click.option("--method", type=click.Choice(["ptq", "qat"]), default="ptq", show_default=True,
              help="ptq: calibrate only; qat: fine-tune the fake-quantized model (training loop, "
                   "degradation model on), then convert.")
@click.option("--backend", required=True,
              help="openvino | onnx | xnnpack (ExecuTorch) | litert (TFLite); or a target name / .toml "
                   "with an [int8] table.")
@click.option("--calib-images", type=int, default=300, show_default=True,
              help="Calibration images (counted in images) from the checkpoint's training split.")
@click.option("--epochs", type=int, default=2, show_default=True, help="QAT epochs.")
@click.option("--lr", type=float, default=None, help="QAT learning rate (default: the recipe's x 0.05).")
@click.option("--max-steps", type=int, default=None,
              help="QAT: at most this many optimiser steps per epoch (a random part of the training split).")
@click.option("--distill-alpha", type=click.FloatRange(0.0, 1.0), default=1.0, show_default=True,
              help="QAT: weight of the loss that pulls the INT8 model's age distribution towards the float "
                   "model's on the same degraded images (0 = labels only).")
@click.option("--max-mae-drop", type=float, default=None,
              help="Accuracy control: keep the layers that hurt validation MAE most in float until the "
                   "drop (years) holds.")
@click.option("--val-images", type=int, default=500, show_default=True,
              help="Validation-split images for MAE before/after and accuracy control.")
@click.option("--data", type=click.Path(exists=True), default=None,
              help="The checkpoint's training data (default: the recipe's data path); its image list "
                   "must match the recorded split.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Result folder (default: runs/<model>-int8-<method>-<backend>).")
def quantize_cmd(model_path, method, backend, calib_images, epochs, lr, max_steps, distill_alpha, max_mae_drop,
                 val_images, data, out):
    """INT8 post-training quantization or QAT for one backend. Writes an int8 artifact folder
    (model file(s) + manifest.json with a `quantize` section) for `edgeage export --precision int8
    --from DIR` and `edgeage check --artifact DIR`."""
    import warnings

    from edgeage.checkpoint import read_checkpoint

    from .artifact import read_manifest, stdout_to_stderr
    from .quantize import backend_spec, quantize

    spec = backend_spec(backend)
    if out is None:
        name = read_checkpoint(model_path)["manifest"]["model"]["name"]
        out = f"runs/{name}-int8-{method}-{spec['int8'].get('backend', spec['name'])}"
    with stdout_to_stderr(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        info = quantize(model_path, backend, method, out, data, calib_images, epochs, max_mae_drop, lr,
                        val_images, max_steps, progress=lambda m: click.echo(m, err=True),
                        distill_alpha=distill_alpha)
    for w in caught:
        if "available" in str(w.message):
            click.echo(f"warning: {w.message}", err=True)
    files = ", ".join(f"{f['name']} ({f['size'] / 2**20:.2f} MB)" for f in read_manifest(out)["artifact"]["files"])
    drop = info.get("val_mae_drop")
    mae = (f"; val MAE {info['val_mae_float']:.3f} -> {info['val_mae_int8']:.3f} ({drop:+.3f})"
           if drop is not None else "")
    click.echo(f"{method} {info['backend']} ({spec['name']}): {info['calibration_images']} calibration images"
               f"{mae}; kept float: {', '.join(info['kept_float']) or 'none'}")
    click.echo(f"wrote {out}: {files}, manifest.json")
