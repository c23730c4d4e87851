"""The ``Device`` protocol and the registry of device kinds: what ``edgeage device-check --device
SPEC`` runs the check on.

A device kind is one file holding one class that implements ``Device``, named after the kind's
*scheme* (``-`` written ``_``) and setting ``DEVICE`` to that class. ``SPEC`` picks the kind by
what comes before its first ``:`` (``adb``, ``local``, ``ssh`` of ``ssh://user@host``,
``qemu-aarch64``); the kind reads the rest (``adb:SERIAL``, ``qemu-aarch64:CPU``).

Kinds are discovered from files, as targets are from folders: the modules of
``edgeage.export.devices.kinds`` (the shipped ``adb``, ``local``, ``ssh``, ``qemu_aarch64``), then
the ``*.py`` files in the folders of ``EDGEAGE_DEVICE_PATH`` (``os.pathsep``-separated, absolute
paths only: never the current folder); the first file of a scheme wins. A kind file is code: put
only files you trust on that path. Adding a kind is adding a file; nothing else changes
(``tests/test_new_device.py``)."""
from __future__ import annotations

import abc
import dataclasses
import importlib
import re
from importlib import resources
from pathlib import Path
from typing import ClassVar

from edgeage.utils import EdgeAgeError, import_file, search_path

PATH_ENV = "EDGEAGE_DEVICE_PATH"   # more folders of device kind files (os.pathsep-separated)
KINDS_PACKAGE = "edgeage.export.devices.kinds"
SCHEME = re.compile(r"[a-z][a-z0-9-]{0,39}")   # a kind's scheme: also its file's name ('-' as '_')


@dataclasses.dataclass(frozen=True)
class DeviceOptions:
    """The options of ``edgeage device-check`` that reach the device; each kind reads those it takes."""

    python: str | None = None           # --python: the device side's interpreter
    identity: str | None = None         # --identity: ssh's private key
    ssh_options: tuple[str, ...] = ()   # --ssh-option KEY=VALUE (ssh -o)
    serial: str | None = None           # --serial: adb's device
    apk: str | None = None              # --apk: the app adb installs


class Device(abc.ABC):
    """One kind of device the check runs on. ``device-check``:

    1. ``Kind.open(spec, arg, options, artifact)``: parses ``--device SPEC`` (``arg``: what follows
       its first ``:``, or ``""``) and checks what can be checked before any work (the kind's
       options, that it is set up, that it can run the artifact's target); one EdgeAgeError
       otherwise. Runs also with ``--from-json`` (nothing is run then).
    2. makes the bundle (the artifact and the canonical check crops; ``app``: checked as one the
       Android app runs),
    3. ``device.run_check(bundle, dest, count, warmup, threads, timeout)``: the device's check mode
       on the bundle; returns ``dest``, its ``edgeage-check-result/1`` JSON (the Android app's
       format, ``edgeage.targets.device_check``'s), or raises one EdgeAgeError and leaves no
       result,
    4. compares that result with the float model on the host (``edgeage.export.devices.bundle``).

    Class attributes: ``usage`` (how SPEC is written, in messages: ``adb[:SERIAL]``), ``summary``
    (what runs there, in ``--device``'s help), ``app``, ``order`` (place in those lists) and
    ``builds`` (``edgeage device setup SCHEME`` builds it, through ``setup``). The registry sets
    ``scheme`` from the file's name."""

    scheme: ClassVar[str] = ""
    usage: ClassVar[str]
    summary: ClassVar[str]
    app: ClassVar[bool] = False     # the device runs the Android app (else the Python device side)
    order: ClassVar[int] = 100      # the shipped kinds: 0..3
    builds: ClassVar[bool] = False  # `edgeage device setup SCHEME` builds it

    @classmethod
    @abc.abstractmethod
    def open(cls, spec: str, arg: str, options: DeviceOptions, artifact: Path) -> "Device":
        """The device of ``--device spec``, checked before the bundle is made."""

    @abc.abstractmethod
    def run_check(self, bundle, dest: Path, count: int, warmup: int, threads: int, timeout: float) -> Path:
        """The device's check mode on ``bundle`` (``count`` images, ``warmup`` untimed runs,
        ``threads`` runtime threads, at most ``timeout`` s); its result JSON at ``dest``."""

    @classmethod
    def setup(cls, cpus: tuple[str, ...] = (), force: bool = False) -> str:
        """Build the device once (a re-run is a no-op; ``force``: rebuild), with the CPU models
        ``cpus`` (``--cpu``) of an emulated one; returns the line ``device setup`` prints."""
        raise EdgeAgeError(f"{cls.scheme}: nothing to set up")


def kinds_dir() -> Path:
    return Path(str(resources.files(KINDS_PACKAGE)))


def kind_files() -> dict[str, Path]:
    """scheme -> its file: the shipped kinds, then those of EDGEAGE_DEVICE_PATH (first found wins)."""
    out: dict[str, Path] = {}
    for d in [kinds_dir(), *search_path(PATH_ENV)]:
        for f in sorted(d.glob("*.py")) if d.is_dir() else []:
            scheme = f.stem.replace("_", "-")
            if SCHEME.fullmatch(scheme):
                out.setdefault(scheme, f)
    return out


def load_kind(scheme: str, path: Path) -> type[Device]:
    """The class of a kind file, checked against ``Device``."""
    if path.parent == kinds_dir():
        mod = importlib.import_module(f"{KINDS_PACKAGE}.{path.stem}")
    else:
        mod = import_file(path, f"edgeage_device_{path.stem}")
    cls = getattr(mod, "DEVICE", None)
    if not (isinstance(cls, type) and issubclass(cls, Device) and cls.__module__ == mod.__name__):
        raise EdgeAgeError(f"{path}: a device kind file sets DEVICE to the class it defines, a subclass of "
                           f"{Device.__module__}.Device")
    missing = sorted(cls.__abstractmethods__) + [a for a in ("usage", "summary")
                                                 if not isinstance(getattr(cls, a, None), str)]
    if missing:
        raise EdgeAgeError(f"{path}: {cls.__name__} lacks {', '.join(missing)} of the Device protocol")
    cls.scheme = scheme
    return cls


def device_kinds() -> dict[str, type[Device]]:
    """Every known kind, scheme -> class, in the order of the CLI's lists."""
    kinds = [load_kind(s, f) for s, f in kind_files().items()]
    return {k.scheme: k for k in sorted(kinds, key=lambda k: (k.order, k.scheme))}


def _either(items: list[str]) -> str:
    return " or ".join(filter(None, [", ".join(items[:-1]), items[-1]])) if items else "(none)"


def kinds_help() -> str:
    """``--device``'s help: every kind's usage and what it runs."""
    return _either([f"{k.usage} ({k.summary})" for k in device_kinds().values()]) + "."


def open_device(spec: str, options: DeviceOptions, artifact) -> Device:
    """The device ``--device spec`` names, opened by its kind (``Device.open``)."""
    scheme, _, arg = spec.partition(":")
    path = kind_files().get(scheme)
    if path is None:
        raise EdgeAgeError(f"--device {spec}: unknown device kind; use "
                           f"{_either([k.usage for k in device_kinds().values()])}")
    return load_kind(scheme, path).open(spec, arg, options, Path(artifact))
