"""``edgeage export``."""
from __future__ import annotations

import click

from edgeage.cli_options import PRECISIONS, InputPath, echo_warnings, force_option, model_option, stdout_to_stderr

@click.command("export")
@click.option("--target", required=True, help="Target name (a TOML in edgeage/targets) or path of a target .toml.")
@model_option
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True)
@click.option("--from", "from_dir", type=InputPath(file_okay=False, exists=True), default=None,
              help="int8: package this `edgeage quantize` result (PTQ or QAT) instead of quantizing here.")
@click.option("--calib-data", "--data", "calib_data", type=InputPath(exists=True), default=None,
              help="int8 without --from: PTQ calibration data (--data is an alias). The checkpoint's training "
                   "data (default: the recipe's data path) calibrates on its training split; any other folder "
                   "of photos (searched recursively, any names, labels not needed: faces are detected and "
                   "cropped), CSV with a path column or prepared cache calibrates on those images.")
@click.option("--calib-images", type=click.IntRange(min=1), default=300, show_default=True,
              help="int8 without --from: calibration images, seeded random from the calibration data.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Artifact folder (default: artifacts/<model-name>-<target>-<precision>).")
@force_option
def export_cmd(target, model_path, precision, from_dir, calib_data, calib_images, out, force):
    """Export a checkpoint to a target's format: model file(s) + manifest.json."""
    import warnings

    from edgeage.artifact import read_manifest

    from .writer import export_model

    with stdout_to_stderr(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            path, manifest = export_model(target, model_path, precision, out, calib_data=calib_data,
                                          calib_images=calib_images, from_dir=from_dir, force=force)
        finally:
            echo_warnings(caught)
    spec_name, cal = manifest.artifact.target, (manifest.quantize.calibration if manifest.quantize else None)
    cal = cal if not from_dir else None
    files = ", ".join(f"{f.name} ({f.size / 2**20:.2f} MB)" for f in read_manifest(path).artifact.files)
    click.echo(f"exported {spec_name} {precision} to {path}: {files}, manifest.json"
               + (f"; calibrated on {cal.count} images ({cal.kind}, {cal.source})" if cal else ""))
