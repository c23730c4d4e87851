"""Reading an exported artifact: a folder with the model file(s) and ``manifest.json`` (the
checkpoint manifest + an ``artifact`` section: target, precision, files with sha256 and size,
source checkpoint, versions, export time). An artifact is data from elsewhere: every field is
checked, file names must be plain names inside the folder, every file's sha256 is verified, and
nothing in it is ever run or followed (the runner and the thresholds come from the installed
target or a TOML the user names). Imports no torch: the device side reads artifacts too."""
from __future__ import annotations

import os
from pathlib import Path

from .manifest import Manifest, check_manifest
from .schemas import ArtifactManifestSchema, read_data, validate
from .utils import EdgeAgeError, plain_name, register_input, sha256_file

ARTIFACT_FORMAT = "edgeage-artifact/1"
MANIFEST = "manifest.json"

def read_manifest(artifact_dir: str | os.PathLike) -> Manifest:
    """The artifact's manifest, after checking it (an artifact is data from elsewhere: every
    field edgeage reads is there, file names are plain names inside the folder) and every model
    file against its recorded sha256. Nothing in it is ever run or followed: the runner and the
    thresholds come from the installed target or a TOML the user names."""
    d = Path(artifact_dir)
    hint = "re-export it with `edgeage export`"
    if not d.is_dir():
        raise EdgeAgeError(f"{d}: artifact folder not found")
    where = str(d / MANIFEST)
    if not (d / MANIFEST).is_file():
        raise EdgeAgeError(f"{d / MANIFEST}: missing; {d} is not an exported artifact ({hint})")
    register_input(d)
    manifest = read_data(d / MANIFEST, "json")
    if not isinstance(manifest, dict):
        raise EdgeAgeError(f"{where}: not an artifact manifest (a JSON object); {hint}")
    validate(ArtifactManifestSchema, manifest, where)
    for f in manifest["artifact"]["files"]:
        plain_name(f["name"], where)
    manifest = check_manifest(manifest, where)
    for f in manifest.artifact.files:
        p = d / f.name
        if p.is_symlink() or not p.is_file():
            raise EdgeAgeError(f"{p}: model file missing from the artifact; {hint}")
        if p.stat().st_size != f.size or sha256_file(p) != f.sha256:
            raise EdgeAgeError(f"{p}: corrupted or modified (size/sha256 differ from {MANIFEST}); {hint}")
    return manifest
