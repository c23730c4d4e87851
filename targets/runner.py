"""Runner plugin interface and loading.

A target's runner module defines ``class Runner`` with

    __init__(self, artifact_dir: Path, manifest: Manifest, spec: TargetSpec, threads: int)
    run(self, x: np.ndarray) -> np.ndarray      # float32 [N,3,S,S] -> raw outputs [N,K] float32
    intermediates(self, x) -> dict[str, np.ndarray]   # optional: torch module name -> output
    op_profile(self, x1, runs) -> dict[str, float]    # optional: ms per inference by op type
    integer_kernel(self, op_type: str) -> bool   # optional: an op_profile key runs an INT8 conv / matmul
    files: list[str]                             # the model files it loaded
    info: dict                                   # optional: settings actually applied

``BaseRunner`` gives the common attributes; subclassing it is optional. ``load_runner`` checks
the artifact (manifest, sha256 of every file) and turns runtime failures on a bad file into an
EdgeAgeError naming the file."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeage.artifact import read_manifest
from edgeage.backend import TargetSpec
from edgeage.manifest import Manifest
from edgeage.utils import EdgeAgeError

from .spec import installed_spec, load_module, load_spec, threads as spec_threads


class BaseRunner:
    def __init__(self, artifact_dir: Path, manifest: Manifest, spec: TargetSpec, threads: int):
        self.artifact_dir, self.manifest, self.spec, self.threads = Path(artifact_dir), manifest, spec, threads
        self.precision = manifest.artifact.precision
        self.files = [f.name for f in manifest.artifact.files]
        self.info: dict = {"threads": threads}

    def path(self, suffix: str) -> Path:
        """The artifact's model file with this suffix."""
        for f in self.files:
            if f.endswith(suffix):
                return self.artifact_dir / f
        raise EdgeAgeError(f"{self.artifact_dir}: no *{suffix} file in the artifact; re-export it")

    def verified_bytes(self, suffix: str) -> bytes:
        """The model file's bytes, checked against the manifest's sha256 as read (what the runtime
        gets is exactly what was verified; nothing beside it, such as an external-data file, is
        opened by the runtime)."""
        from edgeage.utils import sha256_bytes

        path = self.path(suffix)
        data = path.read_bytes()
        want = next(f.sha256 for f in self.manifest.artifact.files if f.name == path.name)
        if sha256_bytes(data) != want:
            raise EdgeAgeError(f"{path}: corrupted or modified (sha256 differs from manifest.json); re-export it")
        return data

    def run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def runtime_error(artifact_dir: Path, manifest: Manifest, spec: TargetSpec, what: str, e: Exception) -> EdgeAgeError:
    files = ", ".join(str(artifact_dir / f.name) for f in manifest.artifact.files)
    return EdgeAgeError(f"{files}: {spec.name} runtime failed to {what} ({type(e).__name__}: "
                        f"{str(e).strip()[:500]}); the file may be corrupted or from another version: "
                        "re-export it with `edgeage export`")


class LoadedRunner:
    """A runner plus the artifact it runs; runtime errors name the artifact's files."""

    def __init__(self, runner, artifact_dir: Path, manifest: Manifest, spec: TargetSpec):
        self.runner, self.artifact_dir, self.manifest, self.spec = runner, artifact_dir, manifest, spec
        self.info = dict(getattr(runner, "info", {}))
        self.has_intermediates = callable(getattr(runner, "intermediates", None))
        self.has_op_profile = callable(getattr(runner, "op_profile", None))

    def run(self, x: np.ndarray, batch: int = 64) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        try:
            outs = [np.asarray(self.runner.run(x[i:i + batch]), np.float32) for i in range(0, len(x), batch)]
        except EdgeAgeError:
            raise
        except Exception as e:  # noqa: BLE001
            raise runtime_error(self.artifact_dir, self.manifest, self.spec, "run", e) from e
        return np.concatenate(outs)

    def intermediates(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return self.runner.intermediates(np.ascontiguousarray(x, np.float32))

    def coverage(self) -> dict:
        """Which ops the runtime runs on its fast path (delegate / precision), where it tells:
        the runner's ``coverage()``, else a note saying the runtime does not."""
        fn = getattr(self.runner, "coverage", None)
        if not callable(fn):
            return {"available": False, "note": f"{self.spec.name}: the runtime does not report it"}
        return {"available": True, **fn()}

    def op_profile(self, x1: np.ndarray, runs: int = 50) -> dict:
        """The runtime's own per-op timing of ``runs`` batch-1 inferences, summed by op type
        (ms per inference, largest first), or a note where the runtime exposes none."""
        if not self.has_op_profile:
            return {"available": False, "note": f"{self.spec.name}: the runner exposes no per-op timing"}
        by_type = self.runner.op_profile(np.ascontiguousarray(x1[:1], np.float32), runs)
        by_type = dict(sorted(by_type.items(), key=lambda kv: -kv[1]))
        out = {"available": True, "runs": runs, "total_ms": float(sum(by_type.values())), "by_op_type_ms": by_type}
        is_int = getattr(self.runner, "integer_kernel", None)
        if self.manifest.artifact.precision == "int8" and callable(is_int) and out["total_ms"] > 0:
            # "float islands": time in every op that is not an integer convolution / matmul (gates,
            # pools, reductions, reorders, quantize / dequantize) -- issue 18's measure
            integer = sum(v for k, v in by_type.items() if is_int(k))
            out["float_islands_share"] = float(1 - integer / out["total_ms"])
        return out


def artifact_spec(manifest: Manifest, spec: TargetSpec | str | None = None) -> TargetSpec:
    """The target spec that runs and judges an artifact: ``spec`` (a dict, or a target name /
    TOML path the user gave), else the *installed* target of the artifact's target name. The
    artifact's own ``spec_file`` is never followed: a folder from elsewhere could otherwise bring
    its own runner code and its own thresholds."""
    if spec is None:
        return installed_spec(manifest.artifact.target)
    return load_spec(spec) if isinstance(spec, str) else spec


def load_runner(artifact_dir, spec: TargetSpec | str | None = None, threads: int | None = None) -> LoadedRunner:
    """Validate the artifact and load it with the runner of ``spec`` (a TargetSpec, a target
    name/path, or None = the installed target of the artifact's target name)."""
    artifact_dir = Path(artifact_dir)
    manifest = read_manifest(artifact_dir)
    art = manifest.artifact
    spec = artifact_spec(manifest, spec)
    if spec.name != art.target:
        raise EdgeAgeError(f"{artifact_dir} was exported for target {art.target!r}, not {spec.name!r}")
    mod = load_module(spec.runner, spec)
    n = spec_threads(spec) if threads is None else threads
    try:
        runner = mod.Runner(artifact_dir, manifest, spec, n)
    except EdgeAgeError:
        raise
    except ImportError as e:  # the runtime is not installed here: not the file's fault
        how = (f"pip install 'edgeage[{spec.name}]'" if spec.name in ("onnx", "openvino", "tflite", "executorch")
               else f"install {', '.join(list(spec.packages) or [spec.name])}")
        raise EdgeAgeError(f"{artifact_dir}: the {spec.name} runtime is not installed here ({e}); {how} to run "
                           "this artifact") from None
    except Exception as e:  # noqa: BLE001 - a runtime that cannot load the file
        raise runtime_error(artifact_dir, manifest, spec, "load the model", e) from e
    return LoadedRunner(runner, artifact_dir, manifest, spec)


def artifact_estimator(artifact_dir, spec: TargetSpec | str | None = None, threads: int | None = None,
                       detector=None, **kw):
    """An ``AgeEstimator`` on an exported artifact: its runtime alone, no torch (the device side:
    detector, canonical crop, the artifact's model, the readout, all from its manifest).
    ``detector``: an exported face detector's artifact folder (``edgeage detector export``), run
    by its own target's runtime, or a ``FaceDetector``; None: the shipped .tflite by LiteRT."""
    from edgeage.manifest import AGE_ESTIMATOR, require_kind
    from edgeage.pipeline import AgeEstimator

    runner = load_runner(artifact_dir, spec, threads)
    require_kind(runner.manifest, AGE_ESTIMATOR, str(artifact_dir))
    if detector is not None and not hasattr(detector, "detect_many"):
        detector = artifact_face_detector(detector, threads=threads)
    return AgeEstimator(runner.run, runner.manifest, detector=detector, **kw)


def artifact_face_detector(artifact_dir, spec: TargetSpec | str | None = None, threads: int | None = None, **kw):
    """An ``edgeage.face.FaceDetector`` on an exported face detector (``edgeage detector export``):
    the same letterbox, decode and NMS as the shipped .tflite, the artifact's runtime computing the
    graph. ``kw``: ``min_score``, ``iou``."""
    from edgeage.face import FaceDetector, fused_runner
    from edgeage.manifest import FACE_DETECTOR, require_kind

    runner = load_runner(artifact_dir, spec, threads)
    require_kind(runner.manifest, FACE_DETECTOR, str(artifact_dir))
    return FaceDetector(runner=fused_runner(runner.run), **kw)
