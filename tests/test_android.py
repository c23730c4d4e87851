"""The Android demo (android-demo/): the Java core against golden vectors from real faces (JUnit),
the command-line APK build and its verification, the JVM parity run (the app's check mode with a
real model on >= 100 real faces, compared with the float model by `edgeage device-check
--from-json`), the app bundle, and device-check's errors without adb or a device.

Needs android-demo/install-deps.sh to have run: missing tools fail with its message."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from edgeage.utils import python_module_cmd

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "android-demo"
UTK = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "utkface"
PARITY_N = 120


def sh(*cmd, env=None, timeout=900) -> str:
    """Run a tool; on failure the assertion shows its whole output (e.g. install-deps.sh's hint)."""
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=timeout)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"{' '.join(map(str, cmd))} exited {p.returncode}:\n{out[-4000:]}"
    return out


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory, edgeage_env):
    """Build outputs under a temp folder (EDGEAGE_ANDROID_BUILD) so tests never touch a developer's."""
    d = tmp_path_factory.mktemp("android-build")
    return d, {**edgeage_env, "EDGEAGE_ANDROID_BUILD": str(d)}


def test_java_core_matches_python_golden_vectors(build_dir):
    """make_golden.py writes crops, inputs, readouts, BlazeFace outputs from real faces; JUnit
    compares: crops byte-identical, input tensors within 1e-6, same ages/argmax."""
    d, env = build_dir
    golden = DEMO / "build" / "golden"   # git-ignored (derived from licensed images)
    out = sh(sys.executable, DEMO / "tools" / "make_golden.py", "--data", UTK, "--out", golden, env=env)
    assert "golden vectors: 24 images" in out
    out = sh(DEMO / "jvm.sh", "test", golden, env=env)
    m = re.search(r"^OK \((\d+) tests\)", out, re.M)
    assert m and int(m.group(1)) >= 13, out
    diff = float(re.search(r"model input: max \|java - python\| = (\S+) over (\d+) tensors", out).group(1))
    assert diff <= 1e-6
    m = re.search(r"canonical crops: (\d+) crops, all (\d+) values identical", out)
    assert m and int(m.group(1)) >= 100, out


def test_bundle_and_signed_apk(build_dir, exported, face_dir, edgeage_cli):
    """An ExecuTorch artifact bundled with 8 check crops, built into a signed APK with the
    ExecuTorch JNI libraries; apksigner and aapt accept it."""
    d, env = build_dir
    bundle = d / "bundle-et"
    res = edgeage_cli("android", "bundle", "--artifact", exported("executorch"), "--check-data", face_dir,
                      "--check-count", 8, "--out", bundle)
    assert res.returncode == 0, res.stderr
    labels = (bundle / "check" / "labels.csv").read_text().splitlines()
    assert labels[0] == "file,age" and len(labels) == 9
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert (bundle / manifest["artifact"]["files"][0]["name"]).is_file()
    apk = d / "demo.apk"
    sh(DEMO / "build-apk.sh", "--bundle", bundle, "--out", apk, env=env)
    assert "Verifies" in sh("apksigner", "verify", "--verbose", apk)
    badging = sh("aapt", "dump", "badging", apk)
    assert "package: name='org.edgeage.demo'" in badging and "sdkVersion:'24'" in badging
    assert "launchable-activity: name='org.edgeage.demo.MainActivity'" in badging
    assert "native-code: 'arm64-v8a' 'x86_64'" in badging
    with zipfile.ZipFile(apk) as z:
        names = set(z.namelist())
        assert {"classes.dex", "lib/arm64-v8a/libexecutorch.so", "lib/x86_64/libexecutorch.so",
                "assets/edgeage/manifest.json", "assets/edgeage/model.pte", "assets/edgeage/check/labels.csv",
                "assets/edgeage/face_detection_short_range.tflite"} <= names
        assert z.getinfo("lib/arm64-v8a/libexecutorch.so").compress_type == zipfile.ZIP_STORED
        dex = z.read("classes.dex")
    for cls in (b"Lorg/edgeage/demo/MainActivity;", b"Lorg/edgeage/demo/ExecuTorchRunner;",
                b"Lorg/edgeage/core/Preprocess;", b"Lorg/pytorch/executorch/Module;"):
        assert cls in dex
    assert b"Lorg/edgeage/demo/LiteRtRunner;" not in dex  # LiteRT: Gradle build only


def test_jvm_parity_run_against_float_model(build_dir, edgeage_cli):
    """The shipped model exported for OpenCV 4.6, >= 100 real faces through the app's check code
    on the JVM; device-check --from-json: |MAE drift| <= 0.01 and every onnx threshold passes."""
    d, env = build_dir
    art, bundle, result = d / "onnx-opencv46", d / "bundle-onnx", d / "jvm-result.json"
    res = edgeage_cli("export", "--target", DEMO / "tools" / "onnx-opencv46.toml", "--out", art)
    assert res.returncode == 0, res.stderr
    toml = DEMO / "tools" / "onnx-opencv46.toml"  # a user TOML: named, never followed from the artifact
    res = edgeage_cli("android", "bundle", "--artifact", art, "--check-data", UTK, "--check-count", PARITY_N,
                      "--out", bundle)
    assert res.returncode == 1 and "not installed here" in res.stderr and "--target" in res.stderr
    res = edgeage_cli("android", "bundle", "--artifact", art, "--check-data", UTK, "--check-count", PARITY_N,
                      "--out", bundle, "--target", toml)
    assert res.returncode == 0, res.stderr
    out = sh(DEMO / "jvm.sh", "check", bundle, result, env=env)
    assert f"jvm check: n={PARITY_N}" in out
    res_json = json.loads(result.read_text())
    assert res_json["format"] == "edgeage-check-result/1" and res_json["model"]["sha256_verified"]
    assert len(res_json["images"]) == PARITY_N and {"p50", "p90", "p99"} <= set(res_json["summary"]["latency_ms"])
    # the artifact's target is a user TOML: it judges only when named (never followed from the artifact)
    res = edgeage_cli("device-check", "--artifact", art, "--bundle", bundle, "--from-json", result)
    assert res.returncode == 1 and "no target spec found for onnx-opencv46" in res.stdout + res.stderr
    res = edgeage_cli("device-check", "--artifact", art, "--bundle", bundle, "--from-json", result, "--json",
                      "--target", toml)
    assert res.returncode == 0, res.stdout + res.stderr
    rep = json.loads(res.stdout)
    assert rep["n"] == PARITY_N >= 100 and rep["passed"], rep["failures"]
    assert rep["spec_file"] == str(toml.resolve())
    assert abs(rep["mae_drift"]) <= 0.01 and rep["argmax_agreement"] >= 0.99
    assert rep["app_readout_abs_diff_max"] <= 1e-3
    assert rep["target_mae"] == pytest.approx(res_json["summary"]["mae"], abs=1e-3)
    # a result from another model is refused
    res_json["model"]["sha256"] = "0" * 64
    (d / "other.json").write_text(json.dumps(res_json))
    res = edgeage_cli("device-check", "--artifact", art, "--bundle", bundle, "--from-json", d / "other.json")
    assert res.returncode != 0 and "not the same model" in res.stderr


FAKE_ADB = """#!/bin/sh
# a stand-in for adb with one device whose check mode "writes" $FAKE_RESULT; logs every call
[ "$1" = "-s" ] && shift 2
echo "$*" >> "$FAKE_LOG"
case "$1" in
  devices) printf 'List of devices attached\\n%s\\n\\n' "$FAKE_DEVICES" ;;
  shell) case "$*" in *'[ -f'*check-error.txt*) echo no ;; *'[ -f'*) echo yes ;; esac ;;
  pull) /bin/cp "$FAKE_RESULT" "$3" ;;
esac
"""


def test_device_check_over_adb(build_dir, tmp_path, edgeage_env):
    """Without adb, and with an adb listing no device: clear errors. With a (fake) device: the
    APK is installed, the bundle pushed, check mode started, the result pulled and compared."""
    d, _ = build_dir
    art, bundle, apk = d / "onnx-opencv46", d / "bundle-onnx", d / "demo.apk"
    if not (bundle / "manifest.json").is_file() or not apk.is_file():
        pytest.fail("needs the APK and the parity run's bundle of the tests above (run the whole file)")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "adb").write_text(FAKE_ADB)
    (fake / "adb").chmod(0o755)
    env = {**edgeage_env, "PATH": str(Path(sys.executable).parent), "FAKE_LOG": str(tmp_path / "adb.log"),
           "FAKE_RESULT": str(d / "jvm-result.json"), "FAKE_DEVICES": ""}
    cmd = python_module_cmd("edgeage.cli", "device-check", "--artifact", art, "--bundle", bundle,
                            "--apk", apk, "--count", "50", "--target", DEMO / "tools" / "onnx-opencv46.toml")

    def run(**kw):
        return subprocess.run(cmd, capture_output=True, text=True, env={**env, **kw})

    p = run()
    assert p.returncode == 1 and "adb not found" in p.stderr, p.stderr
    p = run(PATH=f"{fake}:{env['PATH']}")
    assert p.returncode == 1 and "no Android device attached" in p.stderr, p.stderr
    p = run(PATH=f"{fake}:{env['PATH']}", FAKE_DEVICES="FAKE123\tdevice")
    assert p.returncode == 0 and "PASSED" in p.stdout, p.stdout + p.stderr
    log = (tmp_path / "adb.log").read_text()
    assert f"install -r -t {apk}" in log and f"push {bundle} /sdcard/Android/data/org.edgeage.demo/files/bundle" in log
    assert "am start -S -W -n org.edgeage.demo/.MainActivity --es mode check --ei count 50" in log
