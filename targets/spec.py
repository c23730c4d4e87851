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
    [runtime]                              # free-form, passed to exporter and runner
    threads = 1
    [thresholds.fp32]
    mae_drift = 0.01
    ...
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import tomllib
import os
from importlib import resources
from pathlib import Path

from edgeage.backend import PRECISIONS
from edgeage.utils import EdgeAgeError

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
    """The shipped targets' folder, then those of EDGEAGE_TARGET_PATH."""
    extra = [Path(p) for p in os.environ.get(PATH_ENV, "").split(os.pathsep) if p]
    return [targets_dir(), *extra]


def target_folders() -> dict[str, Path]:
    """name (the folder's name) -> its target.toml, first found first (shipped ones win)."""
    out: dict[str, Path] = {}
    for d in search_dirs():
        for toml in sorted(d.glob(f"*/{SPEC_FILE}")) if d.is_dir() else []:
            out.setdefault(toml.parent.name, toml)
    return out


def known_targets() -> list[str]:
    return sorted(target_folders())


def spec_path(target: str) -> Path:
    """A target name, a target folder (holding target.toml) or a TOML path -> the TOML."""
    p = Path(target)
    if p.suffix == ".toml":
        if not p.is_file():
            raise EdgeAgeError(f"{target}: target spec file not found")
        return p.resolve()
    if p.is_dir() and (p / SPEC_FILE).is_file():
        return (p / SPEC_FILE).resolve()
    found = target_folders().get(target)
    if found is not None:
        return found
    raise EdgeAgeError(f"unknown target {target!r}; known targets: {', '.join(known_targets()) or '(none)'}"
                       f" (or pass a target folder / the path of a target .toml; more folders of targets: "
                       f"{PATH_ENV})")


def load_spec(target: str) -> dict:
    """The parsed, checked TOML of a target name or path; ``spec['_file']`` is its path."""
    path = spec_path(target)
    try:
        spec = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise EdgeAgeError(f"{path}: invalid TOML ({e})") from None
    spec.setdefault("name", path.parent.name if path.name == SPEC_FILE else path.stem)
    spec.setdefault("runtime", {})
    spec.setdefault("thresholds", {})
    spec.setdefault("packages", [])
    missing = [k for k in ("exporter", "runner", "precisions") if k not in spec]
    if missing:
        raise EdgeAgeError(f"{path}: missing key(s) {missing} (see edgeage/targets/spec.py)")
    validate(spec, path)
    spec["_file"] = str(path)
    return spec


def validate(spec: dict, path) -> None:
    """Types and values of every key edgeage reads, as one EdgeAgeError naming the key."""

    def bad(key: str, want: str, got) -> EdgeAgeError:
        return EdgeAgeError(f"{path}: {key} must be {want}, not {type(got).__name__} {got!r}")

    for key in ("name", "exporter", "runner"):
        if not isinstance(spec[key], str) or not spec[key]:
            raise bad(key, "a non-empty string", spec[key])
    prec = spec["precisions"]
    if not isinstance(prec, list) or not prec or not all(isinstance(p, str) for p in prec):
        raise bad("precisions", f'a list of strings, e.g. precisions = ["fp32"]', prec)
    unknown = [p for p in prec if p not in PRECISIONS]
    if unknown:
        raise EdgeAgeError(f"{path}: unknown precision(s) {unknown} in precisions; known: {', '.join(PRECISIONS)}")
    if not isinstance(spec["packages"], list) or not all(isinstance(p, str) for p in spec["packages"]):
        raise bad("packages", "a list of package names", spec["packages"])
    if not isinstance(spec.get("android_app", False), bool):
        raise bad("android_app", "true or false", spec["android_app"])
    for key in ("runtime", "thresholds", "int8"):
        if key in spec and not isinstance(spec[key], dict):
            raise bad(key, f"a table ([{key}])", spec[key])
    if "threads" in spec["runtime"] and (not isinstance(spec["runtime"]["threads"], int)
                                         or spec["runtime"]["threads"] < 1):
        raise bad("runtime.threads", "an integer >= 1", spec["runtime"]["threads"])
    for p, th in spec["thresholds"].items():
        if not isinstance(th, dict):
            raise bad(f"thresholds.{p}", f"a table ([thresholds.{p}])", th)
        unknown = set(th) - set(THRESHOLDS)
        if unknown:
            raise EdgeAgeError(f"{path}: unknown threshold(s) {sorted(unknown)} in [thresholds.{p}]; "
                               f"known: {', '.join(THRESHOLDS)}")
        for k, v in th.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v < 0:
                raise bad(f"thresholds.{p}.{k}", "a number >= 0", v)


def check_precision(spec: dict, precision: str) -> None:
    if precision not in spec["precisions"]:
        raise EdgeAgeError(f"target {spec['name']} ({spec['_file']}) does not support precision "
                           f"{precision!r}; supported: {', '.join(spec['precisions'])}")


def thresholds(spec: dict, precision: str) -> dict:
    return dict(spec["thresholds"].get(precision, {}))


def threads(spec: dict) -> int:
    return int(spec["runtime"].get("threads", 1))


def load_module(ref: str, spec: dict):
    """A dotted module name, or a .py path (relative paths: to the TOML's folder)."""
    if ref.endswith(".py"):
        path = Path(ref)
        if not path.is_absolute():
            path = Path(spec["_file"]).parent / path
        if not path.is_file():
            raise EdgeAgeError(f"{spec['_file']}: module file {path} not found")
        name = f"edgeage_target_{spec['name']}_{path.stem}".replace("-", "_")
        if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
            return sys.modules[name]
        mspec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(mspec)
        sys.modules[name] = mod
        try:
            mspec.loader.exec_module(mod)
        except Exception:
            del sys.modules[name]
            raise
        return mod
    try:
        return importlib.import_module(ref)
    except ModuleNotFoundError as e:
        raise EdgeAgeError(f"{spec['_file']}: cannot import {ref!r} ({e})") from None
