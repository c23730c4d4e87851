"""The Python device side's check mode (``python -I -m edgeage.targets.device_check BUNDLE
RESULT.json``) as a command, for the device kinds that run it (``local``, ``ssh``,
``qemu-aarch64``; ``edgeage.export.devices.kinds``), and running it on this machine.

Every failure (no interpreter, a device without the runtime, a check that stops midway) is one
EdgeAgeError, and no partial result is left on the host: the result file appears only when the
device's check completed."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from edgeage.utils import EdgeAgeError

MODULE = "edgeage.targets.device_check"


# -I ignores PYTHONPATH: a device side that is a folder (qemu's copy) goes first on sys.path by hand
_BOOT = ("import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
         f"runpy.run_module({MODULE!r}, run_name='__main__', alter_sys=True)")


def device_side_command(python, bundle: str, result: str, count: int, warmup: int, threads: int,
                        path: str | None = None, emulated: dict | None = None) -> list[str]:
    """The device side's check-mode command. ``python``: the interpreter (a path, or a command
    list such as qemu + the emulated interpreter); ``path``: a folder holding the device side
    (else the interpreter's own installation); ``emulated``: the emulator's description."""
    # -I: the device side's own installation only (never a checkout in the working folder)
    head = [python] if isinstance(python, str) else list(python)
    head += ["-I", "-m", MODULE] if path is None else ["-I", "-c", _BOOT, path]
    return head + [bundle, result, "--count", str(count), "--warmup", str(warmup), "--threads", str(threads)] + (
        ["--emulated", json.dumps(emulated)] if emulated else [])


def tail(text: str, n: int = 6) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def hint(text: str) -> str:
    """What to do about a device side that lacks edgeage or the runtime (``text``: its output's tail)."""
    return (" (install the device side there: pip install 'edgeage[onnx]' (or [openvino], [tflite]): the core and the "
            "runtime)") if "No module named" in text or "runtime is not installed" in text else ""


def run_check_command(cmd: list[str], where: str, dest, timeout: float, hint=hint) -> Path:
    """Run a device-side check command on this machine (``local``, ``qemu-aarch64``); its result
    JSON at ``dest``, or one EdgeAgeError and no result."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        Path(dest).unlink(missing_ok=True)
        raise EdgeAgeError(f"the device check in {where} wrote no result within {timeout:.0f} s (--timeout)") from None
    if p.returncode != 0 or not Path(dest).is_file():
        Path(dest).unlink(missing_ok=True)
        last = tail(p.stderr or p.stdout)
        raise EdgeAgeError(f"the device check in {where} failed (exit {p.returncode}){hint(last)}:\n{last}")
    return Path(dest)
