"""The public Python API: what the CLI does, as functions (``from edgeage import ...`` loads them
from here on first use). Like the CLI it is a front end over every layer, so it imports the stage
packages only inside each function: ``import edgeage`` stays torch-free, and the device side
(numpy and one runtime) uses ``AgeEstimator``, ``load_image`` and ``load_artifact`` without torch."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING


from .data import load_image
from .pipeline import AgeEstimator
from .utils import EdgeAgeError

if TYPE_CHECKING:
    from .manifest import Manifest
    from .check_report import CheckReport, DetectorCheckReport

__all__ = ["AgeEstimator", "EdgeAgeError", "bench", "check", "check_detector", "export_detector", "export_model",
           "load_artifact", "load_detector", "load_image", "load_model"]


def load_model(model: str | os.PathLike | None = None):
    """A checkpoint as (PyTorch model in eval mode, manifest); a path or a shipped model's name,
    None: the shipped default. Needs the ``[train]`` extra (torch)."""
    from .checkpoint import load_model as run

    return run(model)


def load_artifact(artifact: str | os.PathLike, target: str | None = None, threads: int | None = None,
                  detector=None) -> AgeEstimator:
    """An exported artifact as an :class:`AgeEstimator`, run by its runtime alone (no torch).

    :param artifact: the artifact folder (``edgeage export``'s output); every file's sha256 is
        checked against its manifest.
    :param target: a target TOML to run it with when its target is not installed here (its
        modules run as code: only one you trust); default: the installed target of its name.
    :param threads: runtime threads (default: the target TOML's).
    :param detector: an exported face detector's folder (:func:`export_detector`) or a
        :func:`load_detector` result; default: the shipped .tflite by LiteRT.
    """
    from .targets.runner import artifact_estimator

    return artifact_estimator(artifact, target, threads, detector=detector)


def export_detector(target: str, precision: str = "fp32", out: str | os.PathLike | None = None, *,
                    calib_data=None, calib_images: int = 200, force: bool = False) -> tuple[Path, Manifest]:
    """``edgeage detector export``: the shipped face detector (BlazeFace) to a target's format;
    returns (artifact folder, manifest).

    :param precision: as the target supports; ``int8`` calibrates on scenes made of the photos in
        ``calib_data`` (a folder or a CSV with a path column).
    """
    from .export.artifact.detector import export_detector as run

    return run(target, precision, out, calib_data=calib_data, calib_images=calib_images, force=force)


def check_detector(artifact: str | os.PathLike, data, scenes: int = 100, threads: int = 1) -> DetectorCheckReport:
    """``edgeage detector check``: an exported detector against the float .tflite on the same
    scenes of ``data``'s photos: recall, detection precision, box IoU; ``.passed`` and
    ``.failures`` by the precision's thresholds (an :class:`edgeage.check_report.DetectorCheckReport`)."""
    from .export.conformance.detector import check_detector as run

    return run(artifact, data, scenes, threads)


def load_detector(artifact: str | os.PathLike, threads: int | None = None):
    """An exported face detector as an ``edgeage.face.FaceDetector`` run by its runtime alone
    (``.detect(image)`` -> faces with boxes, scores and key points)."""
    from .targets.runner import artifact_face_detector

    return artifact_face_detector(artifact, threads=threads)


def export_model(target: str, model: str | os.PathLike | None = None, precision: str = "fp32",
                 out: str | os.PathLike | None = None, *, calib_data=None, calib_images: int = 300,
                 from_dir=None, force: bool = False) -> tuple[Path, Manifest]:
    """``edgeage export``: a checkpoint to a target's format; returns (artifact folder, manifest).

    :param target: an installed target's name (``onnx``, ``openvino``, ``tflite``,
        ``executorch``) or the path of a target folder / TOML.
    :param model: a checkpoint path or a shipped model's name; None: the shipped default.
    :param precision: ``fp32``, ``fp16``, ``bf16`` or ``int8`` (as the target supports).
    :param out: the artifact folder (default ``artifacts/<model>-<target>-<precision>``).
    :param calib_data: INT8: calibration images (a folder, CSV or prepared cache).
    :param from_dir: INT8: package an ``edgeage quantize`` result instead of calibrating.
    :param force: write into a folder holding files edgeage did not write (they stay).
    """
    from .export.artifact.writer import export_model as run

    return run(target, model, precision, out, calib_data=calib_data, calib_images=calib_images,
               from_dir=from_dir, force=force)


def check(target: str | None = None, model: str | os.PathLike | None = None, artifact=None,
          precision: str = "fp32", data=None, limit: int | None = None, **kw) -> CheckReport:
    """``edgeage check``: an exported model against the float model on the same inputs: drift,
    accuracy, latency, the target TOML's thresholds. Returns the report, an
    :class:`edgeage.check_report.CheckReport` (``.passed``, ``.judged``, ``.failures``, metrics;
    ``.to_json_dict()``: the JSON object ``check --out`` writes as report.json).

    :param target: export to this target first (with ``precision``), or None with ``artifact``.
    :param model: the float model (a checkpoint or a shipped model's name; None: the artifact's).
    :param artifact: an exported artifact folder to check.
    :param data: labelled faces (folder, CSV or prepared cache); None: generated inputs.
    :param limit: at most this many images.
    :param kw: ``latency=edgeage.export.conformance.check.Latency(...)``, ``localize``, ``op_profile``.
    """
    from .export.conformance.check import run_check

    return run_check(target, model, artifact, precision, data, limit, **kw)


def bench(targets: list[str] | None = None, precisions: list[str] | None = None, model=None, data=None,
          limit: int | None = None, **kw) -> dict:
    """``edgeage bench``: every target x precision side by side (size, accuracy, drift, latency,
    pass/fail). Returns the bench dict (``rows``, ``passed``).

    :param targets: target names (default: every installed target).
    :param precisions: precisions (default: every one each target supports; INT8 where
        calibration data is given: ``calib_data=...``).
    :param model: the float model (None: the shipped default).
    :param data: labelled faces to score on.
    :param kw: ``calib_data``, ``peers``, ``artifacts``, ``latency``, ``split``.
    """
    from .export.conformance.check import run_bench

    return run_bench(model, data, limit, targets, precisions, **kw)
