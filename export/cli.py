"""``edgeage export``."""
from __future__ import annotations

import click

from edgeage.cli import model_option

PRECISIONS = ["fp32", "fp16", "bf16", "int8"]


@click.command("export")
@click.option("--target", required=True, help="Target name (a TOML in edgeage/targets) or path of a target .toml.")
@model_option
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Artifact folder (default: artifacts/<model-name>-<target>-<precision>).")
def export_cmd(target, model_path, precision, out):
    """Export a checkpoint to a target's format: model file(s) + manifest.json."""
    from edgeage.checkpoint import load_model
    from edgeage.targets.spec import check_precision, load_spec

    from .artifact import export_artifact, read_manifest, stdout_to_stderr

    spec = load_spec(target)
    check_precision(spec, precision)
    with stdout_to_stderr():
        model, manifest = load_model(model_path)
        out = out or f"artifacts/{manifest['model']['name']}-{spec['name']}-{precision}"
        path = export_artifact(model, manifest, spec, precision, out)
    files = ", ".join(f"{f['name']} ({f['size'] / 2**20:.2f} MB)" for f in read_manifest(path)["artifact"]["files"])
    click.echo(f"exported {spec['name']} {precision} to {path}: {files}, manifest.json")
