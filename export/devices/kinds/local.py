"""``local``: the Python device side's check mode in another interpreter on this machine
(``--python``, default this one; e.g. a torch-free venv's)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from edgeage.utils import EdgeAgeError

from ..device import Device, DeviceOptions
from ..python_side import device_side_command, run_check_command


class LocalDevice(Device):
    usage = "local"
    summary = "the Python device side in the interpreter --python, e.g. a torch-free venv's"
    order = 1

    def __init__(self, python: str):
        self.python = python

    @classmethod
    def open(cls, spec: str, arg: str, options: DeviceOptions, artifact: Path) -> "LocalDevice":
        return cls(options.python or sys.executable)

    def run_check(self, bundle, dest: Path, count: int, warmup: int, threads: int, timeout: float) -> Path:
        """The device side's check mode in ``self.python``; its result JSON at ``dest``. A
        missing interpreter, a device side that lacks edgeage or the runtime, or a check that
        fails midway is one EdgeAgeError; no partial result is kept."""
        exe = shutil.which(self.python) or (self.python if Path(self.python).is_file() else None)
        if exe is None:
            raise EdgeAgeError(f"--python {self.python}: no such interpreter")
        return run_check_command(device_side_command(exe, str(bundle), str(dest), count, warmup, threads), exe, dest,
                                 timeout)


DEVICE = LocalDevice
