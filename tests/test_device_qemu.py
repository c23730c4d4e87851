"""device-check --device qemu-aarch64: the device side as real aarch64 code (Debian's arm64
python3.11, the runtimes' aarch64 wheels) under qemu user-mode emulation, compared on the host.
No mocks: the real emulator, the real runtimes. The emulated device is built by
`edgeage device setup qemu-aarch64` (scripts/install-test-deps.sh runs it; the fixture runs it
too, a no-op when it is there); without the network to build it the tests skip, saying why.
Each check runs few faces: an inference of the shipped model takes ~0.4 s under qemu."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeage.utils import EdgeAgeError


@pytest.fixture(scope="session")
def qemu_device():
    from edgeage.export.devices.kinds import qemu_aarch64 as qemu

    if qemu.info() is None:
        try:
            qemu.setup(progress=False)
        except EdgeAgeError as e:
            pytest.skip(f"the qemu-aarch64 device could not be set up here: {str(e).splitlines()[0]}")
    return qemu.home()


def _cli(env, *args):
    return subprocess.run([sys.executable, "-P", "-m", "edgeage.cli", *map(str, args)], capture_output=True, text=True,
                          env=env)


def _outputs(path) -> "np.ndarray":
    import numpy as np

    r = json.loads(Path(path).read_text())
    return np.asarray([im["output"] for im in r["images"]], np.float32)


@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_qemu_check_passes_and_is_marked_emulated(target, qemu_device, exported, tiny_ckpt, face_dir, edgeage_env,
                                                  tmp_path):
    art = exported(target)
    from edgeage.export.devices.bundle import make_bundle

    bundle = make_bundle(art, tmp_path / "bundle", face_dir, 8, progress=False, app=False)["out"]
    p = _cli(edgeage_env, "device-check", "--device", "qemu-aarch64", "--artifact", art, "--model", tiny_ckpt,
             "--bundle", bundle, "--count", 8, "--threads", 1, "--json", "--out", tmp_path / "rep")
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout)
    assert r["passed"] and r["n"] == 8 and r["age_abs_diff_max"] < 1e-3
    d = r["device"]
    assert d["emulated"] is True and d["os_arch"] == "aarch64" and d["qemu_cpu"] == "cortex-a76"
    assert d["emulator"].startswith("qemu-aarch64 ") and d["cpu_part"] == "0xd0b"
    assert "asimddp" in d["isa_features"] and "sve" not in d["isa_features"]  # the phone-like default core
    assert r["device_latency_ms"] is None  # emulated run times are never a latency
    res = json.loads((tmp_path / "rep" / "check-result.json").read_text())
    assert "latency_ms" not in res["summary"] and res["summary"]["emulated_time_ms"]["p50"] > 0
    assert all("latency_ms" not in im and im["emulated_ms"] > 0 for im in res["images"])
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "Emulated device (qemu-aarch64" in md and "Latency on the device" not in md
    # the same artifact and crops on x86 (--device local, this interpreter): arm64 vs x86 drift
    p = _cli(edgeage_env, "device-check", "--device", "local", "--artifact", art, "--model", tiny_ckpt,
             "--bundle", bundle, "--count", 8, "--threads", 1, "--json", "--out", tmp_path / "rep-x86")
    assert p.returncode == 0, p.stderr[-3000:]
    arm, x86 = _outputs(tmp_path / "rep" / "check-result.json"), _outputs(tmp_path / "rep-x86" / "check-result.json")
    assert arm.shape == x86.shape and float(abs(arm - x86).max()) < 1e-3
    assert float(abs(arm).max()) > 0.1  # outputs that mean something


def test_openvino_under_qemu_max_sme_gives_wrong_outputs_and_the_check_catches_them(qemu_device, face_dir,
                                                                                    edgeage_env, tmp_path):
    """OpenVINO 2026.4.1's ARM plugin with SME present (qemu's max CPU): its Winograd 3x3
    convolutions (ACL's SME transforms) give wrong outputs for the shipped model; the check
    must FAIL them. With SME off the same artifact passes. (The tiny test model has no
    convolution wide enough for Winograd: the shipped model it is.)"""
    art = tmp_path / "art-ov"
    p = _cli(edgeage_env, "export", "--target", "openvino", "--model", "mgpnet-xs", "--out", art)
    assert p.returncode == 0, p.stderr[-3000:]
    from edgeage.export.devices.bundle import make_bundle

    bundle = make_bundle(art, tmp_path / "bundle", face_dir, 3, progress=False, app=False)["out"]
    runs = {}
    for cpu in ("max", "max,sme=off"):
        p = _cli(edgeage_env, "device-check", "--device", f"qemu-aarch64:{cpu}", "--artifact", art, "--bundle",
                 bundle, "--count", 3, "--threads", 1, "--warmup", 0, "--json")
        runs[cpu] = p
        assert p.stdout, p.stderr[-3000:]
    bad, good = (json.loads(runs[c].stdout) for c in ("max", "max,sme=off"))
    assert "sme" in bad["device"]["isa_features"] and "sme" not in good["device"]["isa_features"]
    assert runs["max"].returncode == 1 and not bad["passed"], "the check PASSED OpenVINO's outputs under SME"
    assert bad["age_abs_diff_max"] > 1.0 and any("argmax" in f for f in bad["failures"])
    assert runs["max,sme=off"].returncode == 0 and good["passed"] and good["age_abs_diff_max"] < 1e-3


def test_qemu_errors_are_one_clear_line_and_leave_nothing(qemu_device, exported, face_dir, edgeage_env, tmp_path):
    art = exported("onnx")
    # ExecuTorch: why not (its Python runtime links libtorch), before anything runs
    p = _cli(edgeage_env, "device-check", "--device", "qemu-aarch64", "--artifact", exported("executorch"),
             "--data", face_dir, "--count", 2, "--out", tmp_path / "rep-et")
    assert p.returncode != 0 and "Error: ExecuTorch artifacts cannot be checked on --device qemu-aarch64" in p.stderr
    assert "libtorch" in p.stderr and "Traceback" not in p.stderr and not (tmp_path / "rep-et").exists()
    # an unknown CPU model, a bad option
    p = _cli(edgeage_env, "device-check", "--device", "qemu-aarch64:cortex-x9", "--artifact", art, "--data",
             face_dir, "--count", 2)
    assert p.returncode != 0 and "unknown CPU model 'cortex-x9'" in p.stderr and "cortex-a76" in p.stderr
    p = _cli(edgeage_env, "device-check", "--device", "qemu-aarch64:max,sme", "--artifact", art, "--data",
             face_dir, "--count", 2)
    assert p.returncode != 0 and "is not a qemu CPU option" in p.stderr
    # not set up: says how to set it up
    env = {**edgeage_env, "EDGEAGE_DEVICES": str(tmp_path / "no-devices")}
    p = _cli(env, "device-check", "--device", "qemu-aarch64", "--artifact", art, "--data", face_dir, "--count", 2,
             "--out", tmp_path / "rep")
    assert p.returncode != 0 and "edgeage device setup qemu-aarch64" in p.stderr and not (tmp_path / "rep").exists()


def test_setup_rerun_is_a_noop_and_a_failed_download_leaves_nothing(qemu_device, edgeage_env, tmp_path):
    rec = qemu_device / "setup.json"
    before = rec.stat().st_mtime_ns
    p = _cli(edgeage_env, "device", "setup", "qemu-aarch64")
    assert p.returncode == 0 and "nothing to do" in p.stderr, p.stderr[-2000:]
    assert rec.stat().st_mtime_ns == before
    # no network (apt's and pip's proxy a closed port): one clear error, nothing half-made
    devices = tmp_path / "devices"
    env = {**edgeage_env, "EDGEAGE_DEVICES": str(devices), "http_proxy": "http://127.0.0.1:9",
           "https_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    p = _cli(env, "device", "setup", "qemu-aarch64")
    assert p.returncode != 0 and "Error: qemu-aarch64 setup:" in p.stderr and "nothing was kept" in p.stderr
    assert not devices.exists() or not any(devices.iterdir()), os.listdir(devices)
