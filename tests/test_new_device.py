"""Adding a device kind touches nothing outside its file: a throw-away kind, written here in a temp
folder (the Python device side's check mode in this interpreter), is found through
EDGEAGE_DEVICE_PATH and runs `edgeage device-check` end to end like a shipped kind; never from
the current folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

KIND = '''"""A throw-away device kind: the Python device side's check mode in this interpreter."""
import sys

from edgeage.export.devices.device import Device
from edgeage.export.devices.python_side import device_side_command, run_check_command


class HereDevice(Device):
    usage = "here[:LABEL]"
    summary = "the device side in this interpreter, a test's"

    def __init__(self, label):
        self.label = label

    @classmethod
    def open(cls, spec, arg, options, artifact):
        return cls(arg or "unlabelled")

    def run_check(self, bundle, dest, count, warmup, threads, timeout):
        cmd = device_side_command(sys.executable, str(bundle), str(dest), count, warmup, threads)
        return run_check_command(cmd, f"here ({self.label})", dest, timeout)


DEVICE = HereDevice
'''


def test_a_throw_away_device_kind_works_from_its_file_alone(tmp_path, exported, tiny_ckpt, face_dir, edgeage_env):
    folder = tmp_path / "my-devices"
    folder.mkdir()
    (folder / "here.py").write_text(KIND)
    before = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                            capture_output=True, text=True).stdout
    env = {**edgeage_env, "EDGEAGE_DEVICE_PATH": str(folder)}
    art = exported("onnx")

    def cli(*args, env=env, cwd=None):
        return subprocess.run([sys.executable, "-P", "-m", "edgeage.cli", *map(str, args)], capture_output=True,
                              text=True, env=env, cwd=cwd, timeout=900)

    p = cli("device-check", "--help")
    assert p.returncode == 0 and "here[:LABEL] (the device side in this interpreter, a test's)." in " ".join(
        p.stdout.split()), p.stdout
    p = cli("device-check", "--device", "here:lab", "--artifact", art, "--model", tiny_ckpt, "--data", face_dir,
            "--count", 6, "--threads", 1, "--json", "--out", tmp_path / "rep")
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout)
    assert r["passed"] and r["n"] == 6 and r["target"] == "onnx" and r["age_abs_diff_max"] < 1e-3
    assert r["device"]["os_name"] == "Linux" and r["device_latency_ms"]["p50"] > 0
    assert (tmp_path / "rep" / "check-result.json").is_file() and (tmp_path / "rep" / "report.json").is_file()
    # the kind's own failure is one clear error (its `where` in it), and no report
    p = cli("device-check", "--device", "here:lab", "--artifact", art, "--model", tiny_ckpt, "--data", face_dir,
            "--count", 2, "--timeout", 0.01, "--out", tmp_path / "rep2")
    assert p.returncode == 1 and "here (lab)" in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert not (tmp_path / "rep2").exists()
    # without the search path, or with the kind only in the current folder, it is unknown
    for kw in ({"env": edgeage_env}, {"env": {**edgeage_env, "EDGEAGE_DEVICE_PATH": "."}, "cwd": folder}):
        p = cli("device-check", "--device", "here", "--artifact", art, "--data", face_dir, **kw)
        assert p.returncode == 1 and "--device here: unknown device kind; use adb[:SERIAL], local, " \
                                     "ssh://user@host[:port] or qemu-aarch64[:CPU]" in p.stderr, p.stderr
    after = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                           capture_output=True, text=True).stdout
    assert after == before
    assert os.environ.get("EDGEAGE_DEVICE_PATH") is None
