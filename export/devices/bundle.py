"""The bundle a device checks (the artifact + canonical check crops: the Android demo app's assets,
and what the Python device side reads) and the comparison of a device's check result with the
float model like ``edgeage check``, for every device kind (``edgeage.export.devices.kinds``).

The bundle holds canonical crops, not raw photos: the check images are cropped here, by the same
code and selection as ``edgeage check --data D --limit N``
(``edgeage.export.conformance.check.prepared_subset``), and stored as lossless PNGs. The device runs the Java core's preprocessing (resize to the input size,
normalisation, layout), the model and the readout on exactly those crops, so the drift it reports
is the runtime's alone. Face detection + canonical crop on the device (photo mode) are checked
against golden vectors by the Java core's JUnit tests instead (android-demo/README.md).

Check result JSON ("edgeage-check-result/1", written by the app / the JVM parity run; schema in
android-demo/core/.../CheckRun.java): per image file, true age, predicted age, raw-output
argmax, raw outputs, latency; summary (MAE, CS(5), latency p50/p90/p99); device; model sha256."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from edgeage.backend import TargetSpec
from edgeage.check_report import CheckReport
from edgeage.manifest import ArtifactFile, Manifest
from edgeage.targets.device_check import RESULT_FORMAT
from edgeage.utils import EdgeAgeError, atomic_dir, plain_name


# ---- bundle ---------------------------------------------------------------------------------

def model_file(manifest: Manifest) -> ArtifactFile:
    """The artifact's model file: the first file its exporter wrote (``edgeage.backend.Exporter``)."""
    return manifest.artifact.files[0]


def app_spec(manifest: Manifest, target=None) -> TargetSpec:
    """The target spec of an artifact the app (or the JVM check) runs: its ``target.toml`` says
    ``android_app = true``. ``target``: the user's TOML for a target not installed here."""
    from edgeage.targets.runner import artifact_spec

    spec = artifact_spec(manifest, target)
    if not spec.android_app:
        raise EdgeAgeError(f"target {spec.name} ({spec.file}) does not run in the Android app (its TOML has no "
                           "android_app = true): bundle an executorch or tflite artifact")
    return spec


def make_bundle(artifact, out, check_data=None, count: int = 200, progress: bool = True,
                force: bool = False, target=None, app: bool = True) -> dict:
    """The app's assets: model file(s) + manifest.json + BlazeFace + check/ (canonical crops as
    PNG, labels.csv, source.json)."""
    from PIL import Image

    from edgeage.artifact import MANIFEST, read_manifest
    from edgeage.face import model_path as detector_path

    from ..conformance.check import prepared_subset

    artifact = Path(artifact)
    manifest = read_manifest(artifact)  # checks every file's sha256
    if app:  # the Android app runs it
        app_spec(manifest, target)
    else:  # the Python device side runs it with its target's runner
        from edgeage.targets.runner import artifact_spec

        artifact_spec(manifest, target)
    info = {"artifact": str(artifact), "target": manifest.artifact.target,
            "precision": manifest.artifact.precision, "check_images": 0}
    with atomic_dir(out, force=force, kind="android-bundle") as tmp:
        for f in manifest.artifact.files:  # plain names (read_manifest checked them)
            shutil.copy2(artifact / f.name, tmp / f.name)
        shutil.copy2(artifact / MANIFEST, tmp / MANIFEST)
        shutil.copy2(detector_path(), tmp / Path(detector_path()).name)
        if check_data is not None:
            prep = prepared_subset(check_data, manifest.crop, count, progress)
            (tmp / "check").mkdir()
            files = [f"{i:04d}.png" for i in range(len(prep.names))]
            for f, crop in zip(files, prep.crops):
                Image.fromarray(np.ascontiguousarray(crop)).save(tmp / "check" / f, format="PNG")
            (tmp / "check" / "labels.csv").write_text(
                "file,age\n" + "".join(f"{f},{a:g}\n" for f, a in zip(files, prep.ages)))
            (tmp / "check" / "source.json").write_text(json.dumps(
                {"data": str(check_data), "count": len(files), "names": dict(zip(files, prep.names)),
                 "faces_not_found": prep.faces_not_found, "crop": prep.crop.to_dict()}, indent=1))
            info.update(check_images=len(files), faces_not_found=prep.faces_not_found, data=str(check_data))
    info["out"] = str(out)
    return info


# ---- comparison with the float model ----------------------------------------------------------

def load_result(path) -> dict:
    from edgeage.schemas import CheckResult, read_data, validate

    res = read_data(path, "json")
    if not isinstance(res, dict) or res.get("format") != RESULT_FORMAT:
        fmt = res.get("format") if isinstance(res, dict) else type(res).__name__
        raise EdgeAgeError(f"{path}: not an {RESULT_FORMAT} file (format {fmt})")
    validate(CheckResult, res, str(path))  # per-image raw outputs (finite), model section
    for im in res["images"]:
        plain_name(im.get("file"), str(path))
    return res


def compare(result: dict, bundle, artifact, model_path=None, result_path: str = "", spec=None) -> CheckReport:
    """The check report of ``edgeage check`` (targets.check.conformance/judge), for outputs computed
    elsewhere (a phone, the JVM) on the bundle's check crops; plus the device's latency. ``result``:
    the device's check result (``load_result``: checked by ``edgeage.schemas.CheckResult``)."""
    from PIL import Image

    from edgeage.artifact import read_manifest
    from edgeage.checkpoint import TorchModel, load_model
    from edgeage.metrics import mae
    from edgeage.pipeline import AgeEstimator
    from edgeage.readout import apply_readout

    from ..conformance.check import conformance, judge, latency_section, reference_checkpoint
    from edgeage.targets.runner import artifact_spec

    manifest = read_manifest(artifact)
    art, mfile = manifest.artifact, model_file(manifest)
    got = result["model"]
    if got.get("sha256") != mfile.sha256:
        raise EdgeAgeError(f"{result_path}: ran model {got.get('file')} sha256 {str(got.get('sha256'))[:12]}, but "
                           f"{artifact}/{mfile.name} has {mfile.sha256[:12]}: not the same model")
    model, fman = load_model(reference_checkpoint(manifest, model_path))
    for key in ("preprocess", "readout"):
        want = getattr(manifest, key).to_json_dict()
        if getattr(fman, key).to_json_dict() != want or result.get(key, want) != want:
            raise EdgeAgeError(f"{key} differs between the float model, {artifact} and {result_path}; re-export")
    images = result["images"]
    crops = np.stack([np.asarray(Image.open(Path(bundle) / "check" / im["file"]).convert("RGB")) for im in images])
    est = AgeEstimator(TorchModel(model), manifest)
    ref_out = est.outputs(est.inputs(crops))
    true = np.asarray([im["true_age"] for im in images], np.float64)
    out = np.asarray([im["output"] for im in images], np.float32)
    ref = SimpleNamespace(ages=apply_readout(manifest.readout, ref_out).astype(np.float64), out=ref_out,
                          inputs=SimpleNamespace(labelled=True, ages=true))
    metrics = conformance(ref, out, manifest.readout)
    # the app's own readout (Java) against edgeage.readout on the device's raw outputs
    readout_diff = float(np.abs(np.asarray([im["pred_age"] for im in images]) -
                                apply_readout(manifest.readout, out)).max())
    try:  # the installed target's TOML or the user's --target, never the artifact's spec_file
        spec = artifact_spec(manifest, spec)
    except EdgeAgeError:  # a target unknown here: no thresholds, which judge() reports as a failure
        spec = TargetSpec(art.target, "", "", (), f"(no target spec found for {art.target})")
    verdict = judge(metrics, spec, art.precision)
    if readout_diff > 1e-3:
        verdict.failures = [*verdict.failures,
                            f"the app's readout differs from edgeage.readout by {readout_diff:.3g} years"]
        verdict.passed = False
    dev_mae = mae(np.asarray([im["pred_age"] for im in images]), true)
    source = Path(bundle) / "check" / "source.json"
    src = json.loads(source.read_text()) if source.is_file() else {}
    summary = result.get("summary", {})
    return CheckReport(**{
        "target": art.target, "precision": art.precision, "spec_file": spec.file,
        "artifact": str(artifact), "files": [f.to_json_dict() for f in art.files], "check_result": str(result_path),
        "model": fman.source.path, "model_sha256": fman.source.sha256,
        "data": f"{src.get('data', bundle)} (bundle {bundle})", "labelled": True,
        "faces_not_found": src.get("faces_not_found"), **metrics,
        "app_mae": dev_mae, "app_readout_abs_diff_max": readout_diff,
        "size_bytes": art.size_bytes if art.has("size_bytes") else mfile.size,
        "float_size_bytes": sum(t.numel() * t.element_size() for t in model.state_dict().values()),
        "threads": None, "runtime": {**result.get("runtime", {}), "device": _device_line(result.get("device", {}))},
        "device": result.get("device", {}), "device_latency_ms": summary.get("latency_ms"),
        "device_preprocess_ms_p50": float(np.percentile([im.get("preprocess_ms", np.nan) for im in images], 50)),
        **latency_section(None, None), **verdict.to_json_dict(),
        "per_image": {"name": [im["file"] for im in images], "age_float": ref.ages.tolist(),
                      "age_target": [im["pred_age"] for im in images]},
    })


def _device_line(d: dict) -> str:
    if "sdk_int" in d:
        return (f"{d.get('manufacturer', '')} {d.get('model', '')} "
                f"(Android {d.get('release', '?')}, sdk {d['sdk_int']})").strip()
    return " ".join(str(d[k]) for k in ("os_name", "os_arch", "java_version") if d.get(k)) or "?"
