"""Target specs. A target is one folder holding ``target.toml`` and the modules it names
(``targets/<name>/`` for the shipped ones; any folder given on the command line, or found under
the folders of ``EDGEAGE_TARGET_PATH``). Known targets are discovered from those folders: adding
a target is adding a folder, nothing else changes. A target's modules are code: only name
folders and TOMLs you trust.

    name = "onnx"
    exporter = "edgeage.targets.onnx.exporter"   # module (dotted name, or a .py path relative
                                                 # to the TOML) with export(...): edgeage.backend
    runner = "edgeage.targets.onnx.runner"       # module with class Runner
    precisions = ["fp32", "fp16"]
    packages = ["onnx", "onnxruntime"]    # optional: versions recorded in the artifact manifest
    [runtime]                              # passed to exporter and runner (other keys: the target's own)
    package = "onnxruntime"                # the runtime's pip distribution (qemu and peers read it here)
    threads = 1
    [thresholds.fp32]
    mae_drift = 0.01
    ...
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import os
from importlib import resources
from pathlib import Path

from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool

from edgeage.backend import TargetSpec
from edgeage.schemas import PRECISION, Closed, Name, Open, integer, number, read_data
from edgeage.schemas import validate as validate_schema
from edgeage.utils import EdgeAgeError, import_file, search_path

SPEC_FILE = "target.toml"
PATH_ENV = "EDGEAGE_TARGET_PATH"   # more folders of target folders (os.pathsep-separated)

# threshold key in the TOML -> (metric in the check report, comparison); |value| for drift
THRESHOLDS = {
    "mae_drift": ("mae_drift", "abs<="),
    "age_abs_diff_max": ("age_abs_diff_max", "<="),
    "age_abs_diff_p99": ("age_abs_diff_p99", "<="),
    "argmax_agreement_min": ("argmax_agreement", ">="),
    "logit_abs_diff_max": ("logit_abs_diff_max", "<="),
}


def targets_dir() -> Path:
    return Path(str(resources.files("edgeage.targets")))


def search_dirs() -> list[Path]:
    """The shipped targets' folder, then those of EDGEAGE_TARGET_PATH (absolute paths only: a
    relative entry would depend on the current folder)."""
    return [targets_dir(), *search_path(PATH_ENV)]


def target_folders() -> dict[str, Path]:
    """name (the folder's name) -> its target.toml, first found first (shipped ones win)."""
    out: dict[str, Path] = {}
    for d in search_dirs():
        for toml in sorted(d.glob(f"*/{SPEC_FILE}")) if d.is_dir() else []:
            out.setdefault(toml.parent.name, toml)
    return out


def known_targets() -> list[str]:
    return sorted(target_folders())


def is_target_path(target: str) -> bool:
    """A path the user wrote (it holds a path separator or ends in ``.toml``: ``./my-target``,
    ``/opt/t/target.toml``); anything else is a target *name*."""
    return "/" in target or os.sep in target or target.endswith(".toml")


def spec_path(target: str) -> Path:
    """A target name -> the TOML of that installed target (the shipped folders, then those of
    EDGEAGE_TARGET_PATH; never the current folder: a folder there named like a target is data, not
    a target). A path (``./folder``, ``dir/target.toml``) is the user's explicit choice: a folder
    holding target.toml, or the TOML itself."""
    if not isinstance(target, str) or not target:
        raise EdgeAgeError(f"target {target!r}: expected a target name or a path")
    if is_target_path(target):
        p = Path(target)
        if p.suffix == ".toml":
            if not p.is_file():
                raise EdgeAgeError(f"{target}: target spec file not found")
            return p.resolve()
        if p.is_dir() and (p / SPEC_FILE).is_file():
            return (p / SPEC_FILE).resolve()
        raise EdgeAgeError(f"{target}: not a target folder (no {SPEC_FILE} in it) or a target .toml")
    found = target_folders().get(target)
    if found is not None:
        return found
    raise EdgeAgeError(f"unknown target {target!r}; known targets: {', '.join(known_targets()) or '(none)'}"
                       f" (a target of your own: pass its folder as a path, e.g. ./my-target, or the path of "
                       f"its .toml; more folders of targets: {PATH_ENV})")


def installed_spec(name: str) -> TargetSpec:
    """The installed target called ``name`` (a name read from a file, e.g. an artifact's
    ``artifact.target``): never a path, never the current folder."""
    if not isinstance(name, str) or is_target_path(name) or name not in target_folders():
        raise EdgeAgeError(f"the artifact was exported for target {name!r}, which is not installed here "
                           f"(known: {', '.join(known_targets())}); pass --target PATH.toml, a target TOML "
                           "you trust (its modules run as code)")
    return load_spec(name)


def spec_from_dict(d: dict, path) -> TargetSpec:
    """A target TOML's table (conformance defaults merged, ``with_conformance_defaults``), checked,
    as a TargetSpec (``name`` defaults to the folder's or the file's name)."""
    d = dict(d)
    d.setdefault("name", Path(path).parent.name if Path(path).name == SPEC_FILE else Path(path).stem)
    d.setdefault("runtime", {})
    d.setdefault("thresholds", {})
    d.setdefault("packages", [])
    missing = [k for k in ("exporter", "runner", "precisions") if k not in d]
    if missing:
        raise EdgeAgeError(f"{path}: missing key(s) {missing} (see edgeage/targets/spec.py)")
    validate(d, path)
    return TargetSpec(d["name"], d["exporter"], d["runner"], tuple(d["precisions"]), str(path), tuple(d["packages"]),
                      dict(d["runtime"]), dict(d["thresholds"]), dict(d.get("int8", {})),
                      bool(d.get("android_app", False)), dict(d.get("deploy", {})),
                      {k: v for k, v in d.items() if k not in TargetSpec.KNOWN})


def load_spec(target: str) -> TargetSpec:
    """The parsed, checked TOML of a target name, folder or path, as the ``TargetSpec`` exporters
    and runners receive (``spec.file``: its path). Its
    thresholds and QAT line start from ``targets/conformance.toml`` (``with_conformance_defaults``)."""
    path = spec_path(target)
    raw = read_data(path, "toml")
    return spec_from_dict(with_conformance_defaults(raw, path), path)


CONFORMANCE_FILE = Path(__file__).with_name("conformance.toml")


@functools.lru_cache(maxsize=1)
def conformance_defaults() -> dict:
    """targets/conformance.toml, checked: the lines every target starts from."""
    d = read_data(CONFORMANCE_FILE, "toml")
    validate_schema(_Conformance, d, str(CONFORMANCE_FILE))
    return d


def with_conformance_defaults(raw: dict, path) -> dict:
    """A target TOML with the shared lines under its own: ``[thresholds.P]`` key by key for every
    precision, ``[int8] qat_mae_drift`` when the target has an ``[int8]`` table."""
    if not isinstance(raw, dict):
        return raw  # validate() names the problem
    base = conformance_defaults()
    own = raw.get("thresholds", {})
    if not isinstance(own, dict) or not isinstance(raw.get("int8", {}), dict):
        return raw
    d = dict(raw)
    supported = raw.get("precisions") if isinstance(raw.get("precisions"), list) else []
    d["thresholds"] = {p: {**base["thresholds"].get(p, {}), **(own.get(p) or {})}
                       for p in sorted(set(base["thresholds"]) | set(own)) if p in own or p in supported}
    if "int8" in raw:
        d["int8"] = {**base.get("int8", {}), **raw["int8"]}
    return d


class _Thresholds(Closed):
    mae_drift: number(0.0, 1e6) | None = None
    age_abs_diff_max: number(0.0, 1e6) | None = None
    age_abs_diff_p99: number(0.0, 1e6) | None = None
    argmax_agreement_min: number(0.0, 1.0) | None = None
    logit_abs_diff_max: number(0.0, 1e6) | None = None


class _Runtime(Open):
    package: Annotated[str, Field(max_length=128)] = ""   # the runtime's pip distribution (onnxruntime, ...)
    threads: integer(1, 1024) = 1


class _Deploy(Closed):
    spatial: Literal["nhwc", "nchw"] = "nhwc"   # edgeage.models.deploy.SPATIAL_FORMS (that module imports torch)


class _Conformance(Closed):
    thresholds: dict[PRECISION, _Thresholds]
    int8: dict[str, number(0.0, 1e6)] = {}


class _TargetToml(Open):
    """A target TOML: every key edgeage reads, typed and bounded (other keys are the target's own)."""

    name: Name
    exporter: Annotated[str, Field(min_length=1, max_length=512)]
    runner: Annotated[str, Field(min_length=1, max_length=512)]
    precisions: Annotated[list[PRECISION], Field(min_length=1, max_length=4)]
    packages: Annotated[list[Annotated[str, Field(max_length=128)]], Field(max_length=64)] = []
    android_app: StrictBool = False
    runtime: _Runtime = _Runtime()
    thresholds: dict[PRECISION, _Thresholds] = {}
    int8: dict[str, Any] = {}
    deploy: _Deploy = _Deploy()


def validate(raw: dict, path) -> None:
    """Types and values of every key edgeage reads (the schema above), as one EdgeAgeError
    naming the file and the key."""
    validate_schema(_TargetToml, raw, str(path))


def check_precision(spec: TargetSpec, precision: str) -> None:
    if precision not in spec.precisions:
        raise EdgeAgeError(f"target {spec.name} ({spec.file}) does not support precision "
                           f"{precision!r}; supported: {', '.join(spec.precisions)}")


def thresholds(spec: TargetSpec, precision: str) -> dict:
    return dict(spec.thresholds.get(precision, {}))


def runtime_package(target: str) -> str:
    """The pip distribution that runs ``target``'s artifacts (``[runtime] package`` of its TOML)."""
    return load_spec(target).runtime.get("package", "")


def target_of_runtime(package: str) -> str | None:
    """The target whose artifacts ``package`` runs (``[runtime] package``), or None."""
    return next((t for t in known_targets() if runtime_package(t) == package), None)


def threads(spec: TargetSpec) -> int:
    return int(spec.runtime.get("threads", 1))


def load_module(ref: str, spec: TargetSpec):
    """A dotted module name, or a .py path (relative paths: to the TOML's folder)."""
    if ref.endswith(".py"):
        path = Path(ref)
        if not path.is_absolute():
            path = Path(spec.file).parent / path
        if not path.is_file():
            raise EdgeAgeError(f"{spec.file}: module file {path} not found")
        return import_file(path, f"edgeage_target_{spec.name}_{path.stem}".replace("-", "_"))
    try:
        return importlib.import_module(ref)
    except ModuleNotFoundError as e:
        raise EdgeAgeError(f"{spec.file}: cannot import {ref!r} ({e})") from None
