"""Packaging an ``edgeage quantize`` result (an int8 artifact) as an artifact of its target."""
from __future__ import annotations

import json
from pathlib import Path

from edgeage.artifact import read_manifest
from edgeage.backend import TargetSpec
from edgeage.utils import EdgeAgeError, atomic_dir


def is_quantize_result(path) -> bool:
    p = Path(path) / "manifest.json"
    try:
        return p.is_file() and "quantize" in json.loads(p.read_text())
    except ValueError:
        return False


def package(from_dir, spec: TargetSpec, out=None, force: bool = False, model_path=None) -> Path:
    """Copy a quantize result (an int8 artifact) into a new artifact folder (``out``, default
    artifacts/<model>-<target>-int8-<method>), after checking it is one for ``spec``'s target,
    intact, and (with ``model_path``) quantized from that checkpoint."""
    import shutil

    man = read_manifest(from_dir)
    if model_path and man.source and man.source.sha256:
        from edgeage.utils import sha256_file

        if sha256_file(model_path) != man.source.sha256:
            raise EdgeAgeError(f"{from_dir} was quantized from {man.source.path}, not from {model_path}")
    if man.quantize is None:
        raise EdgeAgeError(f"{from_dir}: not an `edgeage quantize` result (no quantize section in manifest.json)")
    art = man.artifact
    if art.target != spec.name or art.precision != "int8":
        raise EdgeAgeError(f"{from_dir} is a {art.target} {art.precision} result, not {spec.name} int8: "
                           f"quantize with --backend {spec.int8.get('backend', spec.name)}")
    if out is None:
        out = Path("artifacts") / f"{man.model.name}-{spec.name}-int8-{man.quantize.method}"
    with atomic_dir(out, force=force, kind="artifact") as tmp:
        for f in art.files:  # plain names (read_manifest checked them)
            shutil.copy2(Path(from_dir) / f.name, tmp / f.name)
        art.packaged_from = str(Path(from_dir).resolve())
        (tmp / "manifest.json").write_text(json.dumps(man.to_dict(), indent=2) + "\n")
    return Path(out)
