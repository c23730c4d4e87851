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

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """Typed view of a target TOML (``from_dict`` checks it, ``to_dict`` gives the dict the
    exporters and runners receive, with ``_file``)."""

    name: str
    exporter: str
    runner: str
    precisions: tuple[str, ...]
    file: str
    packages: tuple[str, ...] = ()
    runtime: dict = dataclasses.field(default_factory=dict)
    thresholds: dict = dataclasses.field(default_factory=dict)
    int8: dict = dataclasses.field(default_factory=dict)
    android_app: bool = False
    extra: dict = dataclasses.field(default_factory=dict)

    KNOWN = ("name", "exporter", "runner", "precisions", "packages", "runtime", "thresholds", "int8",
             "android_app", "_file")

    @classmethod
    def from_dict(cls, d: dict, path) -> "TargetSpec":
        d = dict(d)
        d.setdefault("name", Path(path).parent.name if Path(path).name == SPEC_FILE else Path(path).stem)
        d.setdefault("runtime", {})
        d.setdefault("thresholds", {})
        d.setdefault("packages", [])
        missing = [k for k in ("exporter", "runner", "precisions") if k not in d]
        if missing:
            raise EdgeAgeError(f"{path}: missing key(s) {missing} (see edgeage/targets/spec.py)")
        validate(d, path)
        return cls(d["name"], d["exporter"], d["runner"], tuple(d["precisions"]), str(path), tuple(d["packages"]),
                   dict(d["runtime"]), dict(d["thresholds"]), dict(d.get("int8", {})), bool(d.get("android_app", False)),
                   {k: v for k, v in d.items() if k not in cls.KNOWN})

    def to_dict(self) -> dict:
        d = {"name": self.name, "exporter": self.exporter, "runner": self.runner, "precisions": list(self.precisions),
             "packages": list(self.packages), "runtime": dict(self.runtime), "thresholds": dict(self.thresholds),
             **self.extra, "_file": self.file}
        if self.int8:
            d["int8"] = dict(self.int8)
        if self.android_app:
            d["android_app"] = True
        return d


def load_spec(target: str) -> dict:
    """The parsed, checked TOML of a target name, folder or path, as the dict exporters and
    runners receive; ``spec['_file']`` is its path (``TargetSpec`` is the typed view)."""
    path = spec_path(target)
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise EdgeAgeError(f"{path}: invalid TOML ({e})") from None
    return TargetSpec.from_dict(raw, path).to_dict()


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
    for key in ("runtime", "thresholds", "int8", "deploy"):
        if key in spec and not isinstance(spec[key], dict):
            raise bad(key, f"a table ([{key}])", spec[key])
    for k, v in spec.get("deploy", {}).items():  # edgeage.models.deploy.deploy_form's options
        if k != "spatial":
            raise EdgeAgeError(f"{path}: unknown key deploy.{k}; known: spatial")
        if v not in ("nhwc", "nchw"):  # edgeage.models.deploy.SPATIAL_FORMS (that module imports torch)
            raise bad("deploy.spatial", '"nhwc" or "nchw"', v)
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
