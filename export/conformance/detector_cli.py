"""``edgeage detector export`` and ``edgeage detector check``: the face detector as a deployed
model (issue 26)."""
from __future__ import annotations

import click

from edgeage.cli_options import PRECISIONS, InputPath, echo_warnings, emit_json, force_option, stdout_to_stderr, threads_type


@click.group("detector")
def detector_group():
    """The face detector (BlazeFace short range) as an exported model: export it to a target
    (INT8 included) and check it against the float detector."""


@detector_group.command("export")
@click.option("--target", required=True, help="Target name (a TOML in edgeage/targets) or path of a target .toml.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True)
@click.option("--calib-data", "--data", "calib_data", type=InputPath(exists=True), default=None,
              help="int8: photos with faces (a folder, searched recursively, or a CSV with a path column); "
                   "they are placed at random sizes in 640x480 frames to calibrate on.")
@click.option("--calib-images", type=click.IntRange(min=1), default=200, show_default=True,
              help="int8: calibration frames.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Artifact folder (default: artifacts/blazeface-short-range-<target>-<precision>).")
@force_option
def export_cmd(target, precision, calib_data, calib_images, out, force):
    """Export the face detector to a target's format: model file(s) + manifest.json."""
    import warnings

    from ..artifact.detector import export_detector

    with stdout_to_stderr(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            path, manifest = export_detector(target, precision, out, calib_data=calib_data,
                                             calib_images=calib_images, force=force)
        finally:
            echo_warnings(caught)
    files = ", ".join(f"{f.name} ({f.size / 2**20:.2f} MB)" for f in manifest.artifact.files)
    click.echo(f"exported the face detector to {manifest.artifact.target} {precision} at {path}: {files}, "
               "manifest.json")


@detector_group.command("check")
@click.option("--artifact", required=True, type=InputPath(file_okay=False, exists=True),
              help="The detector artifact folder (`edgeage detector export`).")
@click.option("--data", required=True, type=InputPath(exists=True),
              help="Photos with faces (a folder or a CSV with a path column), placed in 640x480 frames.")
@click.option("--scenes", type=click.IntRange(min=1, max=100_000), default=100, show_default=True,
              help="Frames to compare on.")
@click.option("--threads", type=threads_type(), default=1, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Write report.json, report.md, report.html here.")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@force_option
@click.pass_context
def check_cmd(ctx, artifact, data, scenes, threads, out, as_json, force):
    """Box IoU, recall and precision of an exported detector against the float detector (the
    shipped .tflite by LiteRT) on the same frames; exit status 1 if it misses a threshold."""
    from edgeage.utils import check_output

    from .detector import check_detector, report_text, write_report

    if out:
        check_output(out, force)
    with stdout_to_stderr():
        r = check_detector(artifact, data, scenes, threads)
    files = write_report(out, r, force) if out else []
    if as_json:
        emit_json(r.to_json_dict())
    else:
        click.echo(report_text(r))
        if files:
            click.echo(f"\nwrote {', '.join(str(f) for f in files)}")
    if not r.passed:
        ctx.exit(1)
