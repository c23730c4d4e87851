"""Small shared helpers: safe output folders and atomic writes, hashing, errors.

Output safety (every writer goes through these):

* ``atomic_dir(path, force)`` replaces a whole folder (an artifact, a crop cache, a bundle, a
  quantize result): it is built in a hidden temp folder beside ``path`` and renamed into place
  only when complete. An existing ``path`` is replaced only when edgeage wrote it (it holds the
  ``.edgeage`` marker, or an edgeage manifest / crop-cache meta); any other non-empty folder is
  refused unless ``force``.
* ``output_dir(path, force)`` is the folder a report goes into (files written one by one with
  ``atomic_path``): the same checks, nothing else in it is touched.
* Both refuse ``.`` (or any folder holding the current one), symbolic links, files and
  read-only places with one clear message; both take a lock beside ``path`` so that two edgeage
  processes never write the same folder at once (the second one stops with a message naming the
  first); temp folders carry their owner's pid, so a run removes those a killed run left behind.
* ``install_signal_cleanup()`` (called by the CLI) turns SIGTERM / SIGHUP into an orderly exit,
  so every temp folder is removed as with Ctrl-C.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any, Iterator

MARKER = ".edgeage"


class EdgeAgeError(Exception):
    """An error with a message meant for the user (the CLI prints it without a traceback)."""


class NotSupportedHere(EdgeAgeError):
    """The runtime cannot run this artifact as named on this machine (e.g. an fp16 row on a CPU
    without f16 compute). ``bench`` lists such rows as skipped; ``check`` fails with the message."""


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------ signals

_SIGNALLED: list[int] = []


def _on_signal(signum, _frame=None):
    _SIGNALLED.append(signum)
    raise SystemExit(128 + signum)


def stop_if_signalled() -> None:
    """Before an output is renamed into place, and before an error is reported: a signal whose
    SystemExit a library swallowed or turned into another error (a SIGTERM during ``import
    openvino`` surfaces as ``ImportError: initialization failed``) still stops the run as that
    signal (exit 128 + signal), and the temp folder is removed instead of committed."""
    if _SIGNALLED:
        raise SystemExit(128 + _SIGNALLED[0])


def install_signal_cleanup() -> None:
    """SIGTERM and SIGHUP raise SystemExit(128 + signal) in the main thread, so ``finally``
    blocks (temp folders, locks) run as they do for Ctrl-C; and no output is committed after one."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, _on_signal)
        except (ValueError, OSError):  # not the main thread
            pass


# ------------------------------------------------------------------------------ locks + temps

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.(?:tmp|old)$")


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove the temp / old folders beside ``path`` that a killed edgeage process left (their
    pid, in the name, is no longer running). Returns what was removed."""
    removed = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _TEMP_RE.match(p.name)
        if not m or m["name"] != path.name or int(m["pid"]) == os.getpid() or _pid_alive(int(m["pid"])):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()
        removed.append(p)
    return removed


@contextlib.contextmanager
def path_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (a hidden ``.<name>.lock`` file beside it, removed after).
    A second process asking for it gets an EdgeAgeError at once, naming the holder."""
    import fcntl

    lock = path.parent / f".{path.name}.lock"
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise EdgeAgeError(f"{path.parent}: cannot write there ({e.strerror}); choose another output") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise EdgeAgeError(f"{path}: another edgeage process (pid {holder}) is writing it right now; "
                               "wait for it to finish or choose another output") from None
        try:  # the file may have been removed by the previous holder after we opened it
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def _new_temp(path: Path, suffix: str = "tmp") -> Path:
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=f".{suffix}", dir=path.parent))


# ------------------------------------------------------------------------------ output folders

# files by which a folder written before the marker existed is still recognised as edgeage's:
# (file, a key its JSON object always has, the prefix that key's value starts with)
_OWN_FILES = (("manifest.json", "format", "edgeage-"), ("meta.json", "list_hash", ""),
              ("metrics.json", "history", ""), ("report.json", "spec_file", ""), ("bench.json", "rows", ""),
              ("eval.json", "per_decade", ""), ("prune.json", "macs_ratio", ""))


def written_by_edgeage(path: Path) -> bool:
    """True for a folder edgeage wrote: the marker, or one of edgeage's own JSON files."""
    if (path / MARKER).is_file():
        return True
    for name, key, prefix in _OWN_FILES:
        try:
            obj = json.loads((path / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(obj, dict) and key in obj and str(obj[key]).startswith(prefix):
            return True
    return False


def check_output(path: str | os.PathLike, force: bool = False, option: str = "--out",
                 what: str = "output folder") -> Path:
    """Everything that makes ``path`` unusable as an output folder, as one EdgeAgeError, before
    any work is done. Creates nothing."""
    p = Path(path)
    here = Path.cwd().resolve()
    if p.is_symlink():
        raise EdgeAgeError(f"{option} {path}: is a symbolic link (to {os.readlink(p)}); edgeage does not "
                           "write through links: give a real folder path")
    full = p.resolve()
    if full == here or full in here.parents:
        raise EdgeAgeError(f"{option} {path}: is the current folder (or holds it); edgeage replaces or fills "
                           f"its {what} as a whole: give a new folder name, e.g. {option} out/")
    if full == Path(full.anchor) or full == Path.home().resolve():
        raise EdgeAgeError(f"{option} {path}: refusing to use / or the home folder as the {what}")
    if p.exists() and not p.is_dir():
        raise EdgeAgeError(f"{option} {path}: is a file, not a folder; give a folder path")
    parent = next((a for a in [full, *full.parents] if a.exists()), None)
    if parent is None or not os.access(parent, os.W_OK | os.X_OK) or (
            p.exists() and not os.access(full, os.W_OK | os.X_OK)):
        where = full if p.exists() else parent
        raise EdgeAgeError(f"{option} {path}: {where} is not writable; choose a folder you can write to")
    if p.is_dir() and not force and any(True for _ in p.iterdir()) and not written_by_edgeage(p):
        raise EdgeAgeError(f"{option} {path}: is a non-empty folder that edgeage did not write; edgeage "
                           f"would replace files in it. Choose a new or empty folder, or pass --force "
                           f"to let edgeage use it anyway")
    return p


def _marker_text(kind: str) -> str:
    from . import __version__

    return json.dumps({"written_by": "edgeage", "kind": kind, "version": __version__}) + "\n"


def _os_error(path: Path, e: OSError) -> EdgeAgeError:
    why = {errno.EACCES: "permission denied", errno.EROFS: "read-only file system",
           errno.ENOSPC: "no space left on the device"}.get(e.errno, e.strerror or str(e))
    return EdgeAgeError(f"{path}: cannot write ({why}); nothing was written")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, force: bool = False, kind: str = "output",
               option: str = "--out") -> Iterator[Path]:
    """Yield an empty temp folder; on success it replaces ``path`` whole (see the module doc:
    checks, lock, stale temps, marker). On failure nothing changes."""
    path = check_output(path, force, option)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _os_error(path, e) from None
    with path_lock(path):
        remove_stale_temps(path)
        check_output(path, force, option)  # again, under the lock
        try:
            tmp = _new_temp(path)
        except OSError as e:
            raise _os_error(path, e) from None
        payload = tmp / "payload"
        try:
            payload.mkdir()
            yield payload
            (payload / MARKER).write_text(_marker_text(kind))
            stop_if_signalled()
            _swap_into(payload, path)
        except OSError as e:
            raise _os_error(path, e) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _swap_into(src: Path, path: Path) -> None:
    """Rename ``src`` onto ``path``; an old folder there is moved aside first, then removed."""
    if path.is_dir() and not path.is_symlink():
        old = _new_temp(path, "old")
        os.replace(path, old / "x")
        os.replace(src, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, path)


def output_dir(path: str | os.PathLike, force: bool = False, kind: str = "report",
               option: str = "--out") -> Path:
    """A folder for report files (created, marked): the checks of ``check_output``."""
    path = check_output(path, force, option)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not (path / MARKER).is_file():
            (path / MARKER).write_text(_marker_text(kind))
    except OSError as e:
        raise _os_error(path, e) from None
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (a file or a folder you create); rename it onto
    ``path`` only on success. A failure leaves nothing behind (and the old ``path`` untouched).
    Whole output folders go through ``atomic_dir`` instead (checks and lock)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        tmp = _new_temp(path)
    except OSError as e:
        raise _os_error(path, e) from None
    target = tmp / "payload"
    try:
        yield target
        if not target.exists():
            raise EdgeAgeError(f"internal error: nothing was written for {path}")
        stop_if_signalled()
        _swap_into(target, path)
    except OSError as e:
        raise _os_error(path, e) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def plain_name(name: Any, where: str) -> str:
    """A file name from a manifest / result file (data from elsewhere): one plain path component
    inside its folder, never a path that leads out of it."""
    ok = (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name
          and "\x00" not in name and not re.match(r"^[A-Za-z]:", name))
    if not ok:
        raise EdgeAgeError(f"{where}: file name {name!r} is not a plain name inside the folder; refusing "
                           "to read or write outside it (the file is corrupted or was crafted)")
    return name


def package_versions(packages) -> dict:
    """Installed version of each distribution (None where it is not installed)."""
    import importlib.metadata

    out = {}
    for pkg in packages:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def resolve_threads(n: int | None) -> int:
    return int(n) if n else max(1, os.cpu_count() or 1)
