"""``ssh://user@host[:port]``: a Linux device over OpenSSH, with the Python device side installed
(``--python``, default python3 there; ``--identity``, ``--ssh-option``). Every failure
(unreachable host, a refused key, a device without the runtime, a check that stops midway) is
one EdgeAgeError, and no result is left on the host."""
from __future__ import annotations

import re
import shlex
import subprocess
import tarfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from edgeage.utils import EdgeAgeError

from ..device import Device, DeviceOptions
from ..python_side import device_side_command, hint, tail

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$|^\[[0-9A-Fa-f:.]+\]$|^[0-9A-Fa-f:.]+$")


@dataclass
class SshDevice(Device):
    """``ssh://user@host[:port]`` and how to reach it."""

    usage: ClassVar[str] = "ssh://user@host[:port]"
    summary: ClassVar[str] = "the Python device side on a Linux device, with its --python"
    order: ClassVar[int] = 2

    spec: str
    user: str | None
    host: str
    port: int | None
    identity: str | None = None
    options: list[str] = field(default_factory=list)   # extra ssh -o KEY=VALUE
    python: str = "python3"                             # the device side's interpreter there

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

    @classmethod
    def open(cls, spec: str, arg: str, options: DeviceOptions, artifact: Path) -> "SshDevice":
        return replace(cls.parse(spec, options.identity, options.ssh_options), python=options.python or "python3")

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
            err = tail(p.stderr.decode(errors="replace"), 3)
            raise EdgeAgeError(f"{self.spec}: cannot connect or log in ({err}); check the host, port, user and "
                               "key (--identity)")
        return p

    def run_check(self, bundle, dest: Path, count: int, warmup: int, threads: int, timeout: float) -> Path:
        """The device side's check mode on the SSH device: the bundle streamed over ssh (tar) into a
        fresh work folder there, the check run with its Python, the result read back, the folder
        removed; its result JSON at ``dest``."""
        import io
        import os
        import tempfile

        python = self.python
        p = self.run("mktemp -d /tmp/edgeage-check.XXXXXX", 60, "making a work folder")
        remote = p.stdout.decode().strip()
        if p.returncode != 0 or not remote.startswith("/tmp/edgeage-check."):
            raise EdgeAgeError(f"{self.spec}: cannot make a work folder there "
                               f"({tail(p.stderr.decode(errors='replace'), 2)})")
        try:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w:gz") as tar:
                tar.add(str(bundle), arcname="bundle")
            q = shlex.quote(remote)
            p = self.run(f"tar -C {q} -xzf -", timeout, "pushing the bundle", stdin=buf.getvalue())
            if p.returncode != 0:
                raise EdgeAgeError(f"{self.spec}: pushing the bundle failed "
                                   f"({tail(p.stderr.decode(errors='replace'), 2)})")
            cmd = " ".join(shlex.quote(c) for c in device_side_command(python, f"{remote}/bundle",
                                                                       f"{remote}/result.json", count, warmup, threads))
            p = self.run(f"cd {q} && {cmd}", timeout, "the device check")
            if p.returncode != 0:
                last = tail(p.stderr.decode(errors="replace") or p.stdout.decode(errors="replace"))
                if p.returncode == 127:
                    last = f"{python}: not found on the device"
                raise EdgeAgeError(f"the device check on {self.spec} failed (exit {p.returncode}){hint(last)}:"
                                   f"\n{last}")
            p = self.run(f"cat {q}/result.json", timeout, "reading the result")
            if p.returncode != 0 or not p.stdout:
                raise EdgeAgeError(f"{self.spec}: the device check wrote no result")
            fd, tmp = tempfile.mkstemp(dir=str(Path(dest).parent), suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(p.stdout)
            os.replace(tmp, dest)
            return Path(dest)
        finally:
            try:
                self.run(f"rm -rf {shlex.quote(remote)}", 60, "cleaning up")
            except EdgeAgeError:
                pass


DEVICE = SshDevice
