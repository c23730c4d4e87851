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
    if signum == signal.SIGINT:
        raise KeyboardInterrupt  # libraries know how to unwind it; the exit status is still 130
    raise SystemExit(128 + signum)


def signalled() -> int | None:
    """The first signal this process received (SIGINT, SIGTERM, SIGHUP), or None."""
    return _SIGNALLED[0] if _SIGNALLED else None


def stop_if_signalled() -> None:
    """Before an output is renamed into place, before an error is reported or a row is recorded,
    and when a command returns: a signal whose exception a library swallowed (a Ctrl-C raised in
    a runtime's callback) or turned into another error (a SIGTERM during ``import openvino``
    surfaces as ``ImportError: initialization failed``) still stops the run as that signal (exit
    128 + signal), and the temp folder is removed instead of committed."""
    if _SIGNALLED:
        raise SystemExit(128 + _SIGNALLED[0])


def install_signal_cleanup() -> None:
    """One interrupt policy for SIGINT, SIGTERM and SIGHUP: each is recorded and unwinds the main
    thread (KeyboardInterrupt for SIGINT, SystemExit(128 + signal) for the others), so ``finally``
    blocks (temp folders, locks) run; no output is committed after one, and the process exits
    with 128 + signal (130 for Ctrl-C)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler, None):
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
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise EdgeAgeError(f"{lock}: is a symbolic link; edgeage never writes through links. Remove it "
                                   "(it was not made by edgeage) and run again") from None
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

# ------------------------------------------------------------------------------ inputs

_INPUTS: set[Path] = set()
_INPUT_SCOPES: list[int] = []


@contextlib.contextmanager
def input_scope() -> Iterator[None]:
    """One command (the CLI wraps each in it): the files and folders it reads are recorded, and no
    output of it may equal or contain one of them. Outside a scope nothing is recorded."""
    _INPUTS.clear()
    _INPUT_SCOPES.append(1)
    try:
        yield
    finally:
        _INPUT_SCOPES.pop()
        if not _INPUT_SCOPES:
            _INPUTS.clear()


def register_input(path: str | os.PathLike) -> None:
    """Record a file or folder the running command reads (every CLI path option, checkpoints,
    artifacts, data): no output may equal it or contain it (``check_output``, and again before
    any commit)."""
    if not _INPUT_SCOPES:
        return
    with contextlib.suppress(OSError, ValueError, RuntimeError):
        _INPUTS.add(Path(path).resolve())


def _input_inside(full: Path) -> Path | None:
    """A registered input that ``full`` equals or contains."""
    return next((i for i in sorted(_INPUTS) if i == full or full in i.parents), None)


# ------------------------------------------------------------------------------ ownership marker

def _new_marker(kind: str, files=()) -> dict:
    from . import __version__

    return {"written_by": "edgeage", "id": os.urandom(16).hex(), "kind": kind, "version": __version__,
            "files": sorted(files)}


def read_marker(path: str | os.PathLike) -> dict | None:
    """The ownership marker of a folder edgeage wrote (``.edgeage``: a JSON object with a random
    ``id`` and the top-level ``files`` it wrote), or None. Ownership is this marker alone, never
    a guess from look-alike files; a marker that is a link, too big or malformed is no marker."""
    f = Path(path) / MARKER
    try:
        if f.is_symlink() or not f.is_file() or f.stat().st_size > 1 << 20:
            return None
        obj = json.loads(f.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    ok = (isinstance(obj, dict) and obj.get("written_by") == "edgeage" and isinstance(obj.get("id"), str)
          and re.fullmatch(r"[0-9a-f]{32}", obj["id"]) is not None
          and isinstance(obj.get("files", []), list) and all(isinstance(n, str) for n in obj.get("files", [])))
    return obj if ok else None


def written_by_edgeage(path: str | os.PathLike) -> bool:
    """True for a folder that holds edgeage's ownership marker."""
    return read_marker(path) is not None


def foreign_entries(path: Path) -> list[str]:
    """The top-level entries of ``path`` that edgeage did not write (not in its marker's list)."""
    mark = read_marker(path)
    own = set(mark.get("files", [])) | {MARKER} if mark else set()
    try:
        names = sorted(p.name for p in path.iterdir())
    except OSError:
        return []
    if mark is not None and "files" not in mark:
        return []
    return [n for n in names if n not in own]


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
    inp = _input_inside(full)
    if inp is not None:
        raise EdgeAgeError(f"{option} {path}: " + ("is" if inp == full else "holds") + f" an input of this "
                           f"command ({inp}); writing there could replace what is being read: give another "
                           f"{option}")
    if p.exists() and not p.is_dir():
        raise EdgeAgeError(f"{option} {path}: is a file, not a folder; give a folder path")
    parent = next((a for a in [full, *full.parents] if a.exists()), None)
    if parent is None or not os.access(parent, os.W_OK | os.X_OK) or (
            p.exists() and not os.access(full, os.W_OK | os.X_OK)):
        where = full if p.exists() else parent
        raise EdgeAgeError(f"{option} {path}: {where} is not writable; choose a folder you can write to")
    if p.is_dir() and not force:
        foreign = foreign_entries(p)
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise EdgeAgeError(f"{option} {path}: holds files edgeage did not write ({shown}). Choose a new or "
                               f"empty folder, or pass --force: edgeage then replaces only the files it "
                               f"writes and leaves these in place")
    return p


def check_output_file(path: str | os.PathLike, force: bool = False, option: str = "--out") -> Path:
    """A single output file: not a link, not a folder, not an input, and an existing file only
    with ``force``."""
    p = Path(path)
    if p.is_symlink():
        raise EdgeAgeError(f"{option} {path}: is a symbolic link; edgeage does not write through links")
    if p.is_dir():
        raise EdgeAgeError(f"{option} {path}: is a folder; give a file path")
    inp = _input_inside(p.resolve())
    if inp is not None:
        raise EdgeAgeError(f"{option} {path}: is an input of this command ({inp}); give another {option}")
    if p.exists() and not force:
        raise EdgeAgeError(f"{option} {path}: exists; pass --force to replace it, or give a new file name")
    return p


def _os_error(path: Path, e: OSError) -> EdgeAgeError:
    why = {errno.EACCES: "permission denied", errno.EROFS: "read-only file system",
           errno.ENOSPC: "no space left on the device"}.get(e.errno, e.strerror or str(e))
    held = path.parent.resolve() in _HELD  # one file of a report folder: the others stay as they are
    return EdgeAgeError(f"{path}: cannot write ({why}); " + (
        f"{path.name} was not written (the files of {path.parent} written before it are whole)" if held else
        "nothing was written"))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, force: bool = False, kind: str = "output",
               option: str = "--out") -> Iterator[Path]:
    """Yield an empty temp folder; on success it replaces ``path`` (see the module doc: checks,
    lock, stale temps, marker). A folder edgeage wrote is replaced whole, by one rename (readers
    never see it missing); with ``force``, a folder holding files edgeage did not write keeps them:
    only the files edgeage writes (and those its marker lists) are replaced. On failure nothing
    changes."""
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
            names = [p.name for p in payload.iterdir() if p.name != MARKER]
            marker_tmp = payload.parent / "marker"  # our own temp folder; replaces any marker copied in
            _write_new(marker_tmp, json.dumps(_new_marker(kind, names)) + "\n")
            os.replace(marker_tmp, payload / MARKER)
            check_output(path, force, option)  # every input is known by now: none may be replaced
            stop_if_signalled()
            if path.is_dir() and foreign_entries(path):
                _merge_into(payload, path)
            else:
                _swap_into(payload, path)
        except OSError as e:
            raise _os_error(path, e) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0


def _swap_into(src: Path, path: Path) -> None:
    """Rename ``src`` onto ``path``: an old folder there is exchanged with it in one step (where
    the OS can; else moved aside first), then removed."""
    if path.is_dir() and not path.is_symlink():
        if _exchange(src, path):
            shutil.rmtree(src, ignore_errors=True)
            return
        old = _new_temp(path, "old")
        os.replace(path, old / "x")
        os.replace(src, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, path)


def _merge_into(src: Path, path: Path) -> None:
    """``--force`` on a folder holding files edgeage did not write: each entry edgeage wrote is
    replaced by rename, entries its old marker listed are removed, every other file stays."""
    old = read_marker(path)
    new_names = {p.name for p in src.iterdir()}
    for name in (old or {}).get("files", []):
        if name not in new_names and name == plain_name(name, str(path / MARKER)):
            victim = path / name
            if victim.is_dir() and not victim.is_symlink():
                shutil.rmtree(victim, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    victim.unlink()
    for entry in sorted(src.iterdir(), key=lambda p: p.name == MARKER):  # the marker last
        _swap_into(entry, path / entry.name)


def _write_new(path: Path, text: str) -> None:
    """Create ``path`` (never following a link planted there) and write ``text``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(text)


_HELD: dict[Path, contextlib.ExitStack] = {}


def output_dir(path: str | os.PathLike, force: bool = False, kind: str = "report",
               option: str = "--out") -> Path:
    """A folder for report files (created, marked, locked for the rest of this process): the
    checks of ``check_output``. Its files are written one by one through ``atomic_path``; another
    edgeage process asking for the same folder is refused while this one runs."""
    path = check_output(path, force, option)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _os_error(path, e) from None
    key = path.resolve()
    if key not in _HELD:
        stack = contextlib.ExitStack()
        stack.enter_context(path_lock(path))
        _HELD[key] = stack
        import atexit

        atexit.register(stack.close)
    if read_marker(path) is None:
        with atomic_path(path / MARKER) as tmp:
            tmp.write_text(json.dumps(_new_marker(kind)) + "\n")
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
        if path.name != MARKER and path.parent.resolve() in _HELD:
            _note_written(path.parent, path.name)
    except OSError as e:
        raise _os_error(path, e) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _note_written(folder: Path, name: str) -> None:
    """Add ``name`` to the marker of a report folder this process holds (so that a later run
    recognises it as edgeage's own file)."""
    mark = read_marker(folder)
    if mark is None or name in mark.get("files", []):
        return
    mark["files"] = sorted({*mark.get("files", []), name})
    with atomic_path(folder / MARKER) as tmp:
        tmp.write_text(json.dumps(mark) + "\n")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def json_default(o: Any) -> Any:
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


class NativeOutput:
    """What native code wrote to fds 1 and 2 inside ``capture_native_output`` (``text``)."""

    text: str = ""

    def replay(self, drop=lambda line: False) -> None:
        """Write the captured lines back to stderr, less those ``drop`` accepts (known-benign
        INFO lines), so a real error from the runtime is never lost."""
        import sys

        lines = [ln for ln in self.text.splitlines() if ln.strip() and not drop(ln)]
        if lines:
            sys.stderr.write("\n".join(lines) + "\n")


@contextlib.contextmanager
def capture_native_output() -> Iterator[NativeOutput]:
    """Capture what C / C++ code writes to fds 1 and 2 (runtimes log there, below Python's
    ``sys.stderr``); the text is on the yielded object afterwards."""
    import sys

    out = NativeOutput()
    for stream in (sys.stdout, sys.stderr):  # what Python holds goes out before fds 1, 2 move
        stream.flush()
    with tempfile.TemporaryFile(mode="w+b") as log:
        saved = {fd: os.dup(fd) for fd in (1, 2)}
        for fd in saved:
            os.dup2(log.fileno(), fd)
        try:
            yield out
        finally:
            try:  # C stdio may hold the log in a buffer: flush it into ours
                import ctypes

                ctypes.CDLL(None).fflush(None)
            except (OSError, AttributeError):
                pass
            for fd, orig in saved.items():
                os.dup2(orig, fd)
                os.close(orig)
            log.seek(0)
            out.text = log.read().decode(errors="replace")


def verbose() -> bool:
    """``edgeage -v``: the libraries' own logs are shown (quiet by default)."""
    return os.environ.get("EDGEAGE_VERBOSE") == "1"


def quiet_libraries() -> None:
    """Quiet by default: the libraries' INFO logs (NNCF, torch, torchao, ExecuTorch, ...) and
    their deprecation / future warnings are hidden unless ``-v``; their errors still show."""
    if verbose():
        return
    import logging
    import warnings

    # every library's records up to WARNING (NNCF's INFO progress, torch's deprecation lines,
    # torchao's "Failed to load" of CUDA kernels a CPU never needs); errors still show
    logging.disable(logging.WARNING)
    for cat in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=cat, module=r"^(?!edgeage)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def library_log(name: str, handler) -> Iterator[None]:
    """Route one library logger's records (all levels) to ``handler`` alone for a while (NNCF's
    accuracy-control summary is read from its log), whatever ``quiet_libraries`` disabled."""
    import logging

    log = logging.getLogger(name)
    saved = (logging.root.manager.disable, log.handlers[:], log.level, log.propagate)
    logging.disable(logging.NOTSET)
    log.handlers, log.propagate = [handler], False
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        logging.disable(saved[0])
        log.handlers, log.propagate = saved[1], saved[3]
        log.setLevel(saved[2])


def python_module_cmd(module: str, *args) -> list[str]:
    """``python -m module args`` in this interpreter, isolated from the current folder: ``-P``
    keeps the working folder off ``sys.path``, so a folder there named like a package (a checkout's
    own ``edgeage/``, or one planted) never shadows the installed one. Every subprocess of edgeage
    that runs Python code is started through this."""
    import sys

    return [sys.executable, "-P", "-m", module, *(str(a) for a in args)]


def search_path(env: str) -> list[Path]:
    """The folders of an ``os.pathsep``-separated search path in the environment variable ``env``
    (``EDGEAGE_TARGET_PATH``, ``EDGEAGE_DEVICE_PATH``): absolute paths only, as a relative entry
    would load code from whatever folder edgeage runs in."""
    return [Path(p) for p in os.environ.get(env, "").split(os.pathsep) if p and os.path.isabs(p)]


def import_file(path: Path, name: str):
    """The module of the .py file ``path`` (code the user pointed to: a target's exporter or
    runner, a device kind), imported under ``name`` once per file."""
    import importlib.util
    import sys

    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except Exception:
        del sys.modules[name]
        raise
    return mod


def resolve_threads(n: int | None) -> int:
    return int(n) if n else max(1, os.cpu_count() or 1)
