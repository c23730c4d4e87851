"""device-check over SSH against a real OpenSSH server (Debian's openssh-server), started here on
127.0.0.1 at a free port with a throw-away host key and an authorized key; the device side runs
from the torch-free venv of test_device_side. No mocks: real sshd, real ssh, real runtimes."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_device_side import device_venv  # noqa: F401 - the torch-free venv fixture

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    if not Path(SSHD).is_file() or shutil.which("ssh") is None:
        pytest.fail("OpenSSH server/client missing: scripts/install-test-deps.sh installs openssh-server")
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host", "user", "stranger"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "user.pub").read_text())
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        f"PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPidFile {d / 'sshd.pid'}\nLogLevel ERROR\n")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"sshd did not start: {proc.stderr.read().decode()[-1000:]}")
            time.sleep(0.1)
    user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    yield {"url": f"ssh://{user}@127.0.0.1:{port}", "key": d / "user", "stranger": d / "stranger", "port": port,
           "user": user}
    proc.terminate()
    proc.wait(timeout=10)


def _check(env, art, ckpt, *args):
    return subprocess.run([sys.executable, "-P", "-m", "edgeage.cli", "device-check", "--artifact", str(art), "--model",
                           str(ckpt), *map(str, args)], capture_output=True, text=True, env=env)


OPTS = ["--ssh-option", "StrictHostKeyChecking=no", "--ssh-option", "UserKnownHostsFile=/dev/null"]


def test_device_check_over_ssh(sshd, device_venv, exported, tiny_ckpt, face_dir, edgeage_env, tmp_path):  # noqa: F811
    py = device_venv / "bin" / "python"
    art = exported("onnx")
    p = _check(edgeage_env, art, tiny_ckpt, "--device", sshd["url"], "--identity", sshd["key"], *OPTS,
               "--python", py, "--data", face_dir, "--count", 10, "--json", "--out", tmp_path / "rep")
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout)
    assert r["passed"] and r["n"] == 10 and r["age_abs_diff_max"] < 1e-3 and r["device_latency_ms"]["p50"] > 0
    assert r["device"]["os_name"] == "Linux" and r["runtime"]["versions"]["onnxruntime"]
    assert json.loads((tmp_path / "rep" / "check-result.json").read_text())["format"] == "edgeage-check-result/1"
    leftovers = subprocess.run(["bash", "-c", "ls -d /tmp/edgeage-check.* 2>/dev/null | wc -l"],
                               capture_output=True, text=True).stdout.strip()
    assert leftovers == "0"  # the device's work folder is removed


@pytest.mark.parametrize("case", ["unreachable", "refused-key", "no-runtime", "aborted"])
def test_ssh_failures_are_one_clear_error_and_leave_nothing(case, sshd, device_venv, exported, tiny_ckpt,  # noqa: F811
                                                            face_dir, edgeage_env, tmp_path):
    py = device_venv / "bin" / "python"
    art, url, key, data = exported("onnx"), sshd["url"], sshd["key"], face_dir
    want = {"unreachable": "cannot connect", "refused-key": "cannot connect or log in",
            "no-runtime": "runtime is not installed", "aborted": "cannot read image"}[case]
    if case == "unreachable":
        url = f"ssh://{sshd['user']}@127.0.0.1:{_free_port()}"
    elif case == "refused-key":
        key = sshd["stranger"]
    elif case == "no-runtime":
        art = exported("openvino")  # the device venv has onnxruntime only
    else:  # a damaged check image: the device side stops midway
        data = tmp_path / "faces"
        shutil.copytree(face_dir, data)
        victim = sorted(data.iterdir())[len(list(data.iterdir())) // 2]
        from edgeage.export.devices.bundle import make_bundle

        bundle = make_bundle(art, tmp_path / "bundle", data, 6, progress=False, app=False)["out"]
        png = sorted((Path(bundle) / "check").glob("*.png"))[3]
        png.write_bytes(png.read_bytes()[:50])
        assert victim.exists()
    extra = ["--bundle", tmp_path / "bundle", "--count", 6] if case == "aborted" else ["--data", data, "--count", 4]
    p = _check(edgeage_env, art, tiny_ckpt, "--device", url, "--identity", key, *OPTS, "--python", py, *extra,
               "--out", tmp_path / "rep")
    assert p.returncode != 0 and want in p.stderr, p.stderr[-2000:]
    assert "Traceback" not in p.stderr.split("failed")[0]
    assert not (tmp_path / "rep").exists()
