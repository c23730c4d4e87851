"""Exported artifacts: a folder with the model file(s) and ``manifest.json`` (the checkpoint
manifest + an ``artifact`` section: target, precision, files with sha256 and size, source
checkpoint, versions, export time). Written to a temp folder and renamed when complete.

Exporters report where they fail with ``step``:

    with step("torch.onnx.export"):
        ...

so a failed export says which step (and the op, when the exporter's message names one) failed.
Reading an artifact (``read_manifest``) imports no torch: runner processes stay lean.
"""
from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import json
import os
import re
import sys
from pathlib import Path

from edgeage.utils import EdgeAgeError, atomic_dir, plain_name, sha256_file

ARTIFACT_FORMAT = "edgeage-artifact/1"
MANIFEST = "manifest.json"
# op names in exporter/runtime messages: torch (aten::x, aten.x.default), onnxruntime
_OP_PATTERNS = (r"\b(aten(?:::|\.)\w+(?:\.\w+)?)", r"implementation for (\w+\(\d+\) node with name '[^']*')")


class ExportError(EdgeAgeError):
    def __init__(self, step: str, op: str | None, detail: str):
        self.step, self.op = step, op
        super().__init__(f"step '{step}' failed" + (f" at op {op}" if op else "") + f": {detail}")


def find_op(message: str) -> str | None:
    for pat in _OP_PATTERNS:
        if m := re.search(pat, message):
            return m.group(1)
    return None


@contextlib.contextmanager
def step(name: str):
    """Re-raise any failure inside as an ExportError naming this step (inner steps win)."""
    try:
        yield
    except EdgeAgeError:
        raise
    except Exception as e:  # noqa: BLE001 - every exporter failure becomes a named step failure
        msg = str(e).strip() or type(e).__name__
        detail = f"{type(e).__name__}: {msg[:800]}{' ...' if len(msg) > 800 else ''}"
        raise ExportError(name, find_op(msg), detail) from e


@contextlib.contextmanager
def stdout_to_stderr():
    """Send everything written to stdout (Python and C level: runtimes print there) to stderr."""
    sys.stdout.flush()
    saved = os.dup(1)
    old = sys.stdout
    try:
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout = old
        os.dup2(saved, 1)
        os.close(saved)


def versions(spec: dict) -> dict:
    out = {}
    for pkg in ["torch", "edgeage", *spec.get("packages", [])]:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def example_input(manifest: dict, batch: int = 2) -> torch.Tensor:
    import torch

    from edgeage.checkpoint import manifest_normalize

    s = manifest_normalize(manifest).input_size
    return torch.randn(batch, 3, s, s, generator=torch.Generator().manual_seed(0))


def export_artifact(model: torch.nn.Module, manifest: dict, spec: dict, precision: str,
                    out_dir: str | os.PathLike, calib=None, force: bool = False) -> Path:
    """Export ``model`` (eval mode) with the target's exporter into ``out_dir`` (replaced whole,
    only if edgeage wrote it or ``force``); returns it."""
    import torch

    from edgeage.targets.spec import check_precision, load_module

    check_precision(spec, precision)
    if precision == "int8" and calib is None:
        raise EdgeAgeError(f"int8 export to {spec['name']} needs calibration images: pass --calib-data (the "
                           "model's training data, or any folder of your own photos) or a quantize result "
                           "with --from")
    out_dir = Path(out_dir)
    model.eval()
    try:
        with atomic_dir(out_dir, force=force, kind="artifact") as tmp:
            with step(f"load exporter {spec['exporter']}"):
                exporter = load_module(spec["exporter"], spec)
            with step(f"{spec['exporter']}.export"), torch.no_grad():
                files = exporter.export(model, example_input(manifest), tmp, precision, spec, calib)
            if not files or any(not isinstance(f, str) or Path(f).name != f or not (tmp / f).is_file()
                                for f in files):
                raise ExportError("collect files", None, f"exporter returned {files!r}, not a list of "
                                  "files it wrote")
            art = {"format": ARTIFACT_FORMAT, "target": spec["name"], "spec_file": spec["_file"],
                   "exporter": spec["exporter"], "runner": spec["runner"], "precision": precision,
                   "runtime": spec.get("runtime", {}),
                   "files": [{"name": f, "sha256": sha256_file(tmp / f), "size": (tmp / f).stat().st_size}
                             for f in files],
                   "source": _abs_source(manifest.get("source", {})), "versions": versions(spec),
                   "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
            art["size_bytes"] = sum(f["size"] for f in art["files"])
            (tmp / MANIFEST).write_text(json.dumps({**manifest, "artifact": art}, indent=2) + "\n")
    except EdgeAgeError as e:
        raise EdgeAgeError(f"export of {manifest['model']['name']} to {spec['name']} {precision} "
                           f"failed ({out_dir} not written): {e}") from e
    return out_dir


def _abs_source(src: dict) -> dict:
    return {**src, "path": str(Path(src["path"]).resolve())} if src.get("path") else src


def read_manifest(artifact_dir: str | os.PathLike) -> dict:
    """The artifact's manifest, after checking it (an artifact is data from elsewhere: every
    field edgeage reads is there, file names are plain names inside the folder) and every model
    file against its recorded sha256. Nothing in it is ever run or followed: the runner and the
    thresholds come from the installed target or a TOML the user names."""
    d = Path(artifact_dir)
    hint = "re-export it with `edgeage export`"
    if not d.is_dir():
        raise EdgeAgeError(f"{d}: artifact folder not found")
    where = str(d / MANIFEST)
    try:
        manifest = json.loads((d / MANIFEST).read_text())
        art = manifest["artifact"]
        files = art["files"]
        if not isinstance(art["target"], str) or not isinstance(art["precision"], str) or not files:
            raise TypeError("artifact.target / precision / files malformed")
        for f in files:
            plain_name(f["name"], where)
            f["size"], f["sha256"] = int(f["size"]), str(f["sha256"])
    except FileNotFoundError:
        raise EdgeAgeError(f"{d / MANIFEST}: missing; {d} is not an exported artifact ({hint})") from None
    except (ValueError, KeyError, TypeError) as e:
        raise EdgeAgeError(f"{d / MANIFEST}: unreadable artifact manifest ({type(e).__name__}: {e}); {hint}") from None
    from edgeage.checkpoint import check_manifest

    check_manifest(manifest, where)
    for f in files:
        p = d / f["name"]
        if p.is_symlink() or not p.is_file():
            raise EdgeAgeError(f"{p}: model file missing from the artifact; {hint}")
        if p.stat().st_size != f["size"] or sha256_file(p) != f["sha256"]:
            raise EdgeAgeError(f"{p}: corrupted or modified (size/sha256 differ from {MANIFEST}); {hint}")
    return manifest
