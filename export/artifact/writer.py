"""Writing exported artifacts (reading them is ``edgeage.artifact``): the target's exporter
writes the model file(s) into a temp folder, the manifest (checkpoint manifest + ``artifact``
section) is added and the folder renamed into place when complete (``edgeage.utils.atomic_dir``).
Exporters report where they fail with ``edgeage.backend.step``."""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

from edgeage.artifact import ARTIFACT_FORMAT, MANIFEST
from edgeage.backend import ExportError, TargetSpec, describe, step
from edgeage.manifest import Manifest
from edgeage.utils import EdgeAgeError, atomic_dir, package_versions, sha256_file


def default_artifact_dir(model_name: str, target: str, precision: str) -> Path:
    """Where ``edgeage export`` writes without --out (and where ``edgeage check --target`` looks
    for it first)."""
    return Path("artifacts") / f"{model_name}-{target}-{precision}"


def versions(spec: TargetSpec) -> dict:
    return package_versions(["torch", "edgeage", *list(spec.packages)])


def example_input(manifest: Manifest, batch: int = 2) -> torch.Tensor:
    import torch

    s = manifest.input_size
    return torch.randn(batch, 3, s, s, generator=torch.Generator().manual_seed(0))


def export_artifact(model: torch.nn.Module, manifest: Manifest, spec: TargetSpec, precision: str,
                    out_dir: str | os.PathLike, calib=None, force: bool = False, deploy: bool = True) -> Path:
    """Export ``model`` (eval mode) with the target's exporter into ``out_dir`` (replaced whole,
    only if edgeage wrote it or ``force``); returns it. ``deploy``: export the deploy form
    (``edgeage.models.deploy``: the same function with fewer ops; a QAT model already is)."""
    import torch

    from edgeage.targets.spec import check_precision, load_module

    check_precision(spec, precision)
    if precision == "int8" and calib is None:
        raise EdgeAgeError(f"int8 export to {spec.name} needs calibration images: pass --calib-data (the "
                           "model's training data, or any folder of your own photos) or a quantize result "
                           "with --from")
    inputs = tuple(getattr(model, "input_names", ("input",)))
    if len(inputs) != 1:
        raise EdgeAgeError(f"export of {manifest.model.name} to {spec.name}: the model takes "
                           f"{len(inputs)} inputs ({', '.join(inputs)}); artifacts take one image tensor: "
                           "form the views inside the model from one canonical crop, as mivolo does")
    out_dir = Path(out_dir)
    model.eval()
    if deploy and not (calib is not None and calib.quantized):
        from edgeage.models.deploy import target_deploy_form

        model = target_deploy_form(model, spec)
    try:
        with atomic_dir(out_dir, force=force, kind="artifact") as tmp:
            with step(f"load exporter {spec.exporter}"):
                exporter = describe(load_module(spec.exporter, spec), spec.exporter).module
            with step(f"{spec.exporter}.export"), torch.no_grad():
                files = exporter.export(model, example_input(manifest), tmp, precision, spec, calib)
            if not files or any(not isinstance(f, str) or Path(f).name != f or not (tmp / f).is_file()
                                for f in files):
                raise ExportError("collect files", None, f"exporter returned {files!r}, not a list of "
                                  "files it wrote")
            # every file in the artifact gets a sha256 (an external-data file the exporter did not
            # name, too): readers refuse files the manifest does not list
            files = list(files) + sorted(p.name for p in tmp.iterdir() if p.name not in files)
            if any(not (tmp / f).is_file() or (tmp / f).is_symlink() for f in files):
                raise ExportError("collect files", None, "the exporter wrote a folder or a link; an "
                                  "artifact holds plain files")
            art = {"format": ARTIFACT_FORMAT, "target": spec.name, "spec_file": spec.file,
                   "exporter": spec.exporter, "runner": spec.runner, "precision": precision,
                   "runtime": spec.runtime,
                   "files": [{"name": f, "sha256": sha256_file(tmp / f), "size": (tmp / f).stat().st_size}
                             for f in files],
                   "source": _abs_source(manifest.source.to_json_dict() if manifest.source else {}), "versions": versions(spec),
                   "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
            art["size_bytes"] = sum(f["size"] for f in art["files"])
            (tmp / MANIFEST).write_text(json.dumps({**manifest.to_dict(), "artifact": art}, indent=2) + "\n")
    except EdgeAgeError as e:
        raise EdgeAgeError(f"export of {manifest.model.name} to {spec.name} {precision} "
                           f"failed ({out_dir} not written): {e}") from e
    return out_dir


def _abs_source(src: dict) -> dict:
    return {**src, "path": str(Path(src["path"]).resolve())} if src.get("path") else src


def export_model(target: str, model=None, precision: str = "fp32", out=None, *, calib_data=None,
                 calib_images: int = 300, from_dir=None, force: bool = False) -> tuple[Path, Manifest]:
    """Export a checkpoint (``model``: a path or a shipped model's name; None: the shipped default)
    to ``target`` (an installed target's name, or the path of a target folder / TOML) at
    ``precision``; INT8 is calibrated on ``calib_data`` (or packaged from an ``edgeage quantize``
    result, ``from_dir``). Writes the artifact folder ``out`` (default
    ``artifacts/<model>-<target>-<precision>``); returns it and its manifest. ``edgeage export``
    is this function."""
    from edgeage.artifact import read_manifest
    from edgeage.checkpoint import load_model
    from edgeage.targets.spec import check_precision, load_spec
    from edgeage.utils import check_output

    spec = load_spec(target)
    check_precision(spec, precision)
    if from_dir and precision != "int8":
        raise EdgeAgeError("--from packages an `edgeage quantize` result: use it with --precision int8")
    if out:
        check_output(out, force)  # before loading, calibrating or exporting anything
    if from_dir:
        from .package import package

        path = package(from_dir, spec, out, force=force, model_path=model)
        return Path(path), read_manifest(path)
    net, manifest = load_model(model)
    out = out or default_artifact_dir(manifest.model.name, spec.name, precision)
    calib = None
    if precision == "int8":  # fewer images than asked, skipped ones: CalibrationWarnings
        from .calibration import default_options

        calib, info = default_options(manifest, calib_data, calib_images)
        manifest = manifest.copy_with(quantize=info)
    path = export_artifact(net, manifest, spec, precision, out, calib=calib, force=force)
    return Path(path), read_manifest(path)
