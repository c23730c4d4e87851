"""The written contract between edgeage and a target backend (after ExecuTorch's
``BackendDetails`` and NNCF's ``*AlgoBackend``). Imports no torch and no runtime.

A target is one folder ``targets/<name>/`` (or any folder named on the command line or in
``EDGEAGE_TARGET_PATH``) holding ``target.toml`` and the modules it names:

``exporter`` (:class:`Exporter`)
    ``export(model, example, out_dir, precision, spec, calib) -> [file names]``: writes the
    model file(s) into ``out_dir`` (an empty folder), the file the runtime opens first. For
    ``int8``, ``calib`` is an :class:`Int8Options`. Failures inside ``step("what")`` blocks are
    reported as that step (and the op, when the message names one).
``exporter`` INT8 hooks (:class:`Quantizer`, optional)
    ``qat_prepare(model, example, opts, spec) -> trainable fake-quantized module``,
    ``qat_convert(prepared, example, spec) -> QATResult`` (the module ``export()`` takes: a
    fake-quantized one, converted with its learned ranges, or the fine-tuned float weights for
    the PTQ path to re-calibrate),
    ``simulate(model, example, opts, spec) -> callable`` (a fast torch model of the PTQ result,
    for edgeage's greedy accuracy control), ``ACCURACY_CONTROL`` (a name: the backend's own
    accuracy-controlled PTQ runs inside ``export`` when ``calib.accuracy`` is set).
``runner`` (:class:`Runner`)
    ``class Runner`` with ``__init__(artifact_dir, manifest, spec, threads)``,
    ``run(x: float32 [N,3,S,S]) -> float32 [N,K]``, ``files``, ``info``; optional
    ``intermediates(x)`` (torch module name -> array) and ``op_profile(x1, runs)``.

``spec`` is always a :class:`TargetSpec` (the target TOML, checked, with the shared conformance
lines of ``targets/conformance.toml``): ``spec.name``, ``spec.runtime``, ``spec.int8``, ...

``describe(module)`` checks a module against these protocols and says what it offers, so no
caller asks ``hasattr`` itself."""
from __future__ import annotations

import contextlib
import dataclasses
import re
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from .utils import EdgeAgeError

if TYPE_CHECKING:
    from .manifest import ReadoutSpec

PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """A target TOML, checked (``edgeage.targets.spec.load_spec`` makes it): what every exporter,
    runner, check and device receives. ``to_dict`` gives the TOML's keys back (``_file``: the
    path), e.g. for a report."""

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
    deploy: dict = dataclasses.field(default_factory=dict)   # [deploy]: the form it exports (edgeage.models.deploy)
    extra: dict = dataclasses.field(default_factory=dict)    # the target's own keys (e.g. localize)

    KNOWN = ("name", "exporter", "runner", "precisions", "packages", "runtime", "thresholds", "int8",
             "android_app", "deploy", "_file")

    def to_dict(self) -> dict:
        d = {"name": self.name, "exporter": self.exporter, "runner": self.runner, "precisions": list(self.precisions),
             "packages": list(self.packages), "runtime": dict(self.runtime), "thresholds": dict(self.thresholds),
             **self.extra, "_file": self.file}
        if self.int8:
            d["int8"] = dict(self.int8)
        if self.android_app:
            d["android_app"] = True
        if self.deploy:
            d["deploy"] = dict(self.deploy)
        return d


@runtime_checkable
class Exporter(Protocol):
    def export(self, model: Any, example: Any, out_dir: Any, precision: str, spec: TargetSpec,
               calib: Any = None) -> list[str]: ...


@runtime_checkable
class Quantizer(Protocol):
    def qat_prepare(self, model: Any, example: Any, opts: "Int8Options", spec: TargetSpec) -> Any: ...

    def qat_convert(self, prepared: Any, example: Any, spec: TargetSpec) -> "QATResult": ...


@runtime_checkable
class Simulator(Protocol):
    def simulate(self, model: Any, example: Any, opts: "Int8Options", spec: TargetSpec) -> Any: ...


@runtime_checkable
class Runner(Protocol):
    files: list[str]
    info: dict

    def run(self, x: np.ndarray) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class ExporterDetails:
    """What an exporter module offers (from :func:`describe`)."""

    module: Any
    name: str
    qat: bool                      # qat_prepare + qat_convert
    simulate: bool                 # greedy accuracy control possible
    accuracy_control: str | None   # the backend's own accuracy-controlled PTQ


def describe(module: Any, name: str = "") -> ExporterDetails:
    """Check ``module`` against :class:`Exporter` (required) and the optional INT8 hooks; an
    EdgeAgeError naming the module when ``export`` is missing or a hook is half there."""
    name = name or getattr(module, "__name__", repr(module))
    if not isinstance(module, Exporter) or not callable(module.export):
        raise EdgeAgeError(f"exporter {name}: defines no export(model, example, out_dir, precision, spec, calib) "
                           "(see edgeage/backend.py)")
    has = [h for h in ("qat_prepare", "qat_convert") if callable(getattr(module, h, None))]
    if len(has) == 1:
        raise EdgeAgeError(f"exporter {name}: defines {has[0]} without its pair (qat_prepare and qat_convert "
                           "go together)")
    return ExporterDetails(module, name, qat=isinstance(module, Quantizer),
                           simulate=isinstance(module, Simulator),
                           accuracy_control=getattr(module, "ACCURACY_CONTROL", None))


@dataclasses.dataclass(frozen=True)
class QATResult:
    """What an exporter's ``qat_convert`` returns: the model to export and how to export it."""

    model: Any
    recalibrate: bool = False   # True: fine-tuned float weights, re-calibrated by the PTQ path
    how: str = "fake-quantized model converted (learned quantizers kept)"

    def int8_options(self, calib: np.ndarray, ignored: list[str]) -> "Int8Options":
        """The Int8Options ``export()`` gets for this result."""
        if self.recalibrate:
            return Int8Options(calib=calib, ignored=list(ignored))
        return Int8Options(quantized=True, ignored=list(ignored))


@dataclasses.dataclass(frozen=True)
class AccuracyControl:
    """Accuracy-controlled PTQ: labelled validation inputs, their ages, the readout that turns the
    model's outputs into ages, and the largest MAE drop (years) the quantized model may show."""

    x: np.ndarray                         # float32 [N,3,S,S] model inputs
    ages: np.ndarray                      # [N] labels
    readout: ReadoutSpec
    max_drop: float


@dataclasses.dataclass
class Int8Options:
    """What an exporter needs for int8 (passed as its ``calib`` argument)."""

    calib: np.ndarray | None = None       # float32 [N,3,S,S] model inputs, one image per item
    ignored: list[str] = dataclasses.field(default_factory=list)  # torch module names kept float
    quantized: bool = False               # the model is already quantized (QAT result): convert only
    accuracy: AccuracyControl | None = None
    report: dict = dataclasses.field(default_factory=dict)  # exporter -> caller (e.g. layers kept float)

    def items(self) -> list[np.ndarray]:
        if self.calib is None or not len(self.calib):
            raise EdgeAgeError("int8 export needs calibration images (pass --calib-data, or quantize first "
                               "and export with --from)")
        return [np.ascontiguousarray(self.calib[i:i + 1], np.float32) for i in range(len(self.calib))]


# ---------------------------------------------------------------------------- export steps

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
