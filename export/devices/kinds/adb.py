"""``adb[:SERIAL]``: the Android demo app's check mode on a phone, over adb: install the APK
(``--apk``), push the bundle, start check mode, wait, pull the result (``--serial`` or
``adb:SERIAL`` picks the phone when several are attached)."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from edgeage.utils import EdgeAgeError

from ..device import Device, DeviceOptions

APP_ID = "org.edgeage.demo"
DEVICE_DIR = f"/sdcard/Android/data/{APP_ID}/files"
DEMO = Path(__file__).resolve().parents[3] / "android-demo"   # in a source checkout
DEFAULT_APK = DEMO / "build" / "apk" / "edgeage-demo-debug.apk"


class Adb:
    def __init__(self, serial: str | None):
        self.exe = shutil.which("adb")
        if not self.exe:
            raise EdgeAgeError("adb not found: install the Android platform tools (Debian: apt-get install adb), "
                               "connect a phone with USB debugging on, or compare an existing result with --from-json")
        lines = self.run("devices").splitlines()[1:]
        devices = [ln.split("\t")[0] for ln in lines if ln.endswith("\tdevice")]
        others = [ln.strip() for ln in lines if ln.strip() and not ln.endswith("\tdevice")]
        if serial is None:
            if not devices:
                raise EdgeAgeError("no Android device attached (adb devices lists none ready"
                                   + (f"; not ready: {', '.join(others)}" if others else "")
                                   + "): connect one with USB debugging on and accept its prompt")
            if len(devices) > 1:
                raise EdgeAgeError(f"several devices attached ({', '.join(devices)}): choose one with --serial")
            serial = devices[0]
        elif serial not in devices:
            raise EdgeAgeError(f"device {serial} not attached and ready (adb devices: {', '.join(devices) or 'none'})")
        self.serial = serial

    def run(self, *args: str, check: bool = True, timeout: float = 600) -> str:
        cmd = [self.exe] + (["-s", self.serial] if getattr(self, "serial", None) else []) + list(args)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise EdgeAgeError(f"`{' '.join(cmd)}` failed ({p.returncode}): {(p.stderr or p.stdout).strip()[:500]}")
        return p.stdout

    def exists(self, path: str) -> bool:
        return "yes" in self.run("shell", f"[ -f {path} ] && echo yes || echo no")


def run_on_device(adb: Adb, apk, bundle, count: int, warmup: int, threads: int, timeout: float, dest) -> Path:
    apk = Path(apk)
    if not apk.is_file():
        raise EdgeAgeError(f"{apk}: APK not found; build it with android-demo/build-apk.sh (or Gradle) or pass --apk")
    adb.run("install", "-r", "-t", str(apk))
    adb.run("shell", f"rm -rf {DEVICE_DIR}/bundle {DEVICE_DIR}/check-result.json {DEVICE_DIR}/check-error.txt "
                     f"&& mkdir -p {DEVICE_DIR}")
    adb.run("push", str(bundle), f"{DEVICE_DIR}/bundle")
    adb.run("shell", "am", "start", "-S", "-W", "-n", f"{APP_ID}/.MainActivity", "--es", "mode", "check",
            "--ei", "count", str(count), "--ei", "warmup", str(warmup), "--ei", "threads", str(threads))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if adb.exists(f"{DEVICE_DIR}/check-error.txt"):
            err = adb.run("shell", "cat", f"{DEVICE_DIR}/check-error.txt")
            raise EdgeAgeError(f"check mode failed on {adb.serial}:\n{err.strip()[:3000]}")
        if adb.exists(f"{DEVICE_DIR}/check-result.json"):
            adb.run("pull", f"{DEVICE_DIR}/check-result.json", str(dest))
            return Path(dest)
        time.sleep(2)
    raise EdgeAgeError(f"check mode on {adb.serial} wrote no result within {timeout:.0f} s "
                       f"(adb -s {adb.serial} logcat -s edgeage shows its progress)")


class AdbDevice(Device):
    usage = "adb[:SERIAL]"
    summary = "the Android app's check mode"
    app = True
    order = 0

    def __init__(self, serial: str | None, apk):
        self.serial, self.apk = serial, apk

    @classmethod
    def open(cls, spec: str, arg: str, options: DeviceOptions, artifact: Path) -> "AdbDevice":
        return cls(options.serial or arg or None, options.apk or DEFAULT_APK)

    def run_check(self, bundle, dest: Path, count: int, warmup: int, threads: int, timeout: float) -> Path:
        return run_on_device(Adb(self.serial), self.apk, bundle, count, warmup, threads, timeout, dest)


DEVICE = AdbDevice
