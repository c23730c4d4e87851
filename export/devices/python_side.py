"""Devices other than the Android app that run the Python device side's check mode
(``edgeage.targets.device_check``) on a bundle and return its ``edgeage-check-result/1`` JSON:

- ``local``: another interpreter on this machine (e.g. a torch-free venv), ``--python``;
- ``ssh://user@host[:port]``: a Linux device over OpenSSH: the bundle is streamed over ssh (tar),
  the check runs there with the device's Python (``--python``, default python3), the result is
  read back, the remote folder removed;
- ``qemu-aarch64[:CPU]``: the device side as real aarch64 code under qemu user-mode emulation
  (``edgeage.export.devices.kinds.qemu``; ``edgeage device setup qemu-aarch64`` builds it), through the same
  code path as ``local``; its result is marked emulated and holds no latency.

Every failure (no interpreter, unreachable host, a refused key, a device without the runtime, a
check that stops midway) is one EdgeAgeError, and no partial result is left on the host: the
result file appears only when the device's check completed."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from edgeage.utils import EdgeAgeError

MODULE = "edgeage.targets.device_check"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$|^\[[0-9A-Fa-f:.]+\]$|^[0-9A-Fa-f:.]+$")


# -I ignores PYTHONPATH: a device side that is a folder (qemu's copy) goes first on sys.path by hand
_BOOT = ("import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
         f"runpy.run_module({MODULE!r}, run_name='__main__', alter_sys=True)")


def _check_cmd(python, bundle: str, result: str, count: int, warmup: int, threads: int, path: str | None = None,
               emulated: dict | None = None) -> list[str]:
    """The device side's check-mode command. ``python``: the interpreter (a path, or a command
    list such as qemu + the emulated interpreter); ``path``: a folder holding the device side
    (else the interpreter's own installation); ``emulated``: the emulator's description."""
    # -I: the device side's own installation only (never a checkout in the working folder)
    head = [python] if isinstance(python, str) else list(python)
    head += ["-I", "-m", MODULE] if path is None else ["-I", "-c", _BOOT, path]
    return head + [bundle, result, "--count", str(count), "--warmup", str(warmup), "--threads", str(threads)] + (
        ["--emulated", json.dumps(emulated)] if emulated else [])


def _tail(text: str, n: int = 6) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def _hint(tail: str) -> str:
    return (" (install the device side there: pip install 'edgeage[onnx]' (or [openvino], [tflite]): the core and the "
            "runtime)") if "No module named" in tail or "runtime is not installed" in tail else ""


def run_local(python: str, bundle, dest, count: int, warmup: int, threads: int, timeout: float) -> Path:
    """The device side's check mode in another Python (``python``: e.g. a torch-free venv's);
    its result JSON at ``dest``. A missing interpreter, a device side that lacks edgeage or the
    runtime, or a check that fails midway is one EdgeAgeError; no partial result is kept."""
    import shutil

    exe = shutil.which(python) or (python if Path(python).is_file() else None)
    if exe is None:
        raise EdgeAgeError(f"--python {python}: no such interpreter")
    return run_check_command(_check_cmd(exe, str(bundle), str(dest), count, warmup, threads), exe, dest, timeout)


def run_check_command(cmd: list[str], where: str, dest, timeout: float, hint=_hint) -> Path:
    """Run a device-side check command on this machine (``local``, ``qemu-aarch64``); its result
    JSON at ``dest``, or one EdgeAgeError and no result."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        Path(dest).unlink(missing_ok=True)
        raise EdgeAgeError(f"the device check in {where} wrote no result within {timeout:.0f} s (--timeout)") from None
    if p.returncode != 0 or not Path(dest).is_file():
        Path(dest).unlink(missing_ok=True)
        tail = _tail(p.stderr or p.stdout)
        raise EdgeAgeError(f"the device check in {where} failed (exit {p.returncode}){hint(tail)}:\n{tail}")
    return Path(dest)


def run_qemu(cpu: str | None, bundle, dest, count: int, warmup: int, threads: int, timeout: float) -> Path:
    """The device side's check mode as aarch64 code under qemu user-mode emulation (``-cpu
    cpu``, default cortex-a76), through ``run_check_command`` like ``local``. An artifact whose
    runtime the emulated device lacks (ExecuTorch) is one EdgeAgeError before anything runs."""
    from edgeage.artifact import read_manifest

    from .kinds import qemu

    target = read_manifest(bundle)["artifact"]["target"]
    qemu.check_runtime(target)
    python, path, emu = qemu.check_command(cpu)
    qemu.temp_dir_for_qemu()
    where = f"qemu-aarch64 -cpu {emu['qemu_cpu']}"
    return run_check_command(_check_cmd(python, str(bundle), str(dest), count, warmup, threads, path, emu), where,
                             dest, timeout, hint=lambda tail: qemu.hint(tail, target))


@dataclass
class SshDevice:
    """``ssh://user@host[:port]`` and how to reach it."""

    spec: str
    user: str | None
    host: str
    port: int | None
    identity: str | None = None
    options: list[str] = field(default_factory=list)   # extra ssh -o KEY=VALUE

    @classmethod
    def parse(cls, spec: str, identity: str | None = None, options=()) -> "SshDevice":
        try:
            u = urlsplit(spec)
            port = u.port
        except ValueError as e:
            raise EdgeAgeError(f"--device {spec}: not a valid ssh:// URL ({e}); expected ssh://user@host[:port]") from None
        if u.scheme != "ssh" or not u.hostname or u.path not in ("", "/") or u.query or u.fragment or u.password:
            raise EdgeAgeError(f"--device {spec}: expected ssh://user@host[:port] (no password, path or query)")
        # a user or host that ssh could read as an option (-oProxyCommand=...) or that holds shell /
        # control characters is refused; ssh also gets '--' before the destination
        for part, val in (("user", u.username), ("host", u.hostname)):
            if val is not None and (val.startswith("-") or not _SAFE_NAME.match(val)):
                raise EdgeAgeError(f"--device {spec}: the {part} {val!r} is not a plain name (letters, digits, "
                                   "'.', '_', '-', not starting with '-')")
        if port is not None and not 0 < port < 65536:
            raise EdgeAgeError(f"--device {spec}: port {port} is out of range (1..65535)")
        bad = [o for o in options if "=" not in o]
        if bad:
            raise EdgeAgeError(f"--ssh-option {bad[0]}: expected KEY=VALUE (as ssh -o)")
        return cls(spec, u.username, u.hostname, port, identity, list(options))

    def ssh(self, remote_cmd: str) -> list[str]:
        cmd = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]
        for o in self.options:
            cmd += ["-o", o]
        if self.identity:
            cmd += ["-i", self.identity]
        if self.port:
            cmd += ["-p", str(self.port)]
        # '--': the destination is never read as an option, whatever the URL held
        return cmd + ["--", f"{self.user}@{self.host}" if self.user else self.host, remote_cmd]

    def run(self, remote_cmd: str, timeout: float, what: str, stdin=None) -> subprocess.CompletedProcess:
        try:
            p = subprocess.run(self.ssh(remote_cmd), input=stdin, capture_output=True, timeout=timeout)
        except FileNotFoundError:
            raise EdgeAgeError("ssh not found: install the OpenSSH client (Debian: apt-get install "
                               "openssh-client)") from None
        except subprocess.TimeoutExpired:
            raise EdgeAgeError(f"{self.spec}: {what} took longer than {timeout:.0f} s") from None
        if p.returncode == 255:  # ssh's own failure: the connection or the authentication
            err = _tail(p.stderr.decode(errors="replace"), 3)
            raise EdgeAgeError(f"{self.spec}: cannot connect or log in ({err}); check the host, port, user and "
                               "key (--identity)")
        return p


def run_ssh(device: SshDevice, python: str, bundle, dest, count: int, warmup: int, threads: int,
            timeout: float) -> Path:
    """The device side's check mode on an SSH device; its result JSON at ``dest``."""
    import io
    import os
    import tempfile

    p = device.run("mktemp -d /tmp/edgeage-check.XXXXXX", 60, "making a work folder")
    remote = p.stdout.decode().strip()
    if p.returncode != 0 or not remote.startswith("/tmp/edgeage-check."):
        raise EdgeAgeError(f"{device.spec}: cannot make a work folder there ({_tail(p.stderr.decode(errors='replace'), 2)})")
    try:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(str(bundle), arcname="bundle")
        q = shlex.quote(remote)
        p = device.run(f"tar -C {q} -xzf -", timeout, "pushing the bundle", stdin=buf.getvalue())
        if p.returncode != 0:
            raise EdgeAgeError(f"{device.spec}: pushing the bundle failed ({_tail(p.stderr.decode(errors='replace'), 2)})")
        cmd = " ".join(shlex.quote(c) for c in _check_cmd(python, f"{remote}/bundle", f"{remote}/result.json",
                                                           count, warmup, threads))
        p = device.run(f"cd {q} && {cmd}", timeout, "the device check")
        if p.returncode != 0:
            tail = _tail(p.stderr.decode(errors="replace") or p.stdout.decode(errors="replace"))
            if p.returncode == 127:
                tail = f"{python}: not found on the device"
            raise EdgeAgeError(f"the device check on {device.spec} failed (exit {p.returncode}){_hint(tail)}:\n{tail}")
        p = device.run(f"cat {q}/result.json", timeout, "reading the result")
        if p.returncode != 0 or not p.stdout:
            raise EdgeAgeError(f"{device.spec}: the device check wrote no result")
        fd, tmp = tempfile.mkstemp(dir=str(Path(dest).parent), suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(p.stdout)
        os.replace(tmp, dest)
        return Path(dest)
    finally:
        try:
            device.run(f"rm -rf {shlex.quote(remote)}", 60, "cleaning up")
        except EdgeAgeError:
            pass
