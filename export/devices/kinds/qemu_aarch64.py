"""``qemu-aarch64[:CPU]``: the Python device side's check mode as real aarch64 code under qemu
user-mode emulation, on this x86 machine (correctness, never latency); ``CPU`` a qemu CPU model
(default cortex-a76), optionally with qemu's feature options.

``edgeage device setup qemu-aarch64`` builds, once, under ``EDGEAGE_DEVICES`` (default
``~/.cache/edgeage/devices``) ``/qemu-aarch64/``:

- ``bin/qemu-aarch64-static``: from Debian's ``qemu-user-static`` (the host's architecture),
  downloaded and unpacked with ``dpkg -x`` (nothing installed system-wide);
- ``sysroot/``: an arm64 Debian userland (python3.11 and the C/C++ libraries the runtimes link),
  downloaded with a private apt state (no ``dpkg --add-architecture``) and unpacked with
  ``dpkg -x``; the runtimes' aarch64 wheels from PyPI (the versions edgeage pins) installed with
  ``pip install --target sysroot/usr/lib/python3/dist-packages --platform ...aarch64``;
- ``cpu/<model>/``: one root per qemu CPU model (links to the sysroot's folders plus a
  ``proc/cpuinfo`` written from the AT_HWCAP / AT_HWCAP2 qemu gives that CPU: onnxruntime and
  LiteRT's XNNPACK read /proc/cpuinfo and crash on the host's x86 one);
- ``edgeage/<hash>/``: a copy of this edgeage's pure-python device side (``edgeage`` and
  ``edgeage.targets``, no torch), one folder per content hash, made when first needed.

Everything is built in a temp folder and renamed into place (``atomic_dir``): a failed download
leaves nothing half-made, and a second ``setup`` is a no-op.

``device-check --device qemu-aarch64[:CPU]`` then runs ``python3.11 -I`` of the sysroot under
``qemu-aarch64-static -cpu CPU -L cpu/CPU`` on the bundle (``QemuDevice``, through
``edgeage.export.devices.python_side.run_check_command``, the path ``--device local`` takes); the
result says ``emulated: true`` in its device identity and holds no latency."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgeage.utils import EdgeAgeError, atomic_dir, python_module_cmd

from ..device import Device, DeviceOptions
from ..python_side import device_side_command, run_check_command

DEFAULT_CPU = "cortex-a76"  # a phone-like core: 128-bit NEON, dotprod, fp16; no SVE / SME
# qemu 7.2's aarch64 CPU models; max = every feature qemu emulates (SVE2, SME, 512-bit vectors)
CPU_MODELS = ("cortex-a35", "cortex-a53", "cortex-a57", "cortex-a72", "cortex-a76", "neoverse-n1", "a64fx", "max")
# implementer, part: what /proc/cpuinfo says on such a core (max is no real core: part 0)
CPU_PART = {"cortex-a35": ("0x41", "0xd04"), "cortex-a53": ("0x41", "0xd03"), "cortex-a57": ("0x41", "0xd07"),
            "cortex-a72": ("0x41", "0xd08"), "cortex-a76": ("0x41", "0xd0b"), "neoverse-n1": ("0x41", "0xd0c"),
            "a64fx": ("0x46", "0x001"), "max": ("0x00", "0x000")}

# arm64 Debian packages of the sysroot: the interpreter and what the runtimes' wheels link
SYSROOT_PACKAGES = (
    "python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 libexpat1 zlib1g libffi8 libssl3 "
    "libbz2-1.0 liblzma5 libzstd1 libstdc++6 libgcc-s1 libgomp1 libatomic1 libsqlite3-0 libncursesw6 libtinfo6 "
    "libreadline8 libuuid1 libcrypt1 libdb5.3 libgdbm6 libnsl2 libtirpc3 libgssapi-krb5-2 libkrb5-3 libk5crypto3 "
    "libcom-err2 libkrb5support0 libkeyutils1 media-types libtbb12 libpugixml1v5 libhwloc15 libudev1 "
    "libnuma1").split()
# the device side's Python packages besides the runtimes (edgeage's own pins are read from its metadata)
BASE_PACKAGES = ("numpy", "pillow", "opencv-python-headless", "click", "tqdm", "pydantic")
PLATFORMS = ("manylinux_2_35_aarch64", "manylinux_2_34_aarch64", "manylinux_2_31_aarch64", "manylinux_2_28_aarch64",
             "manylinux_2_27_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")
PYTHON = "usr/bin/python3.11"
SITE = "usr/lib/python3/dist-packages"
LAYOUT = 1  # bump when the layout of the folder changes: setup rebuilds it

# the kernel's names of the arm64 HWCAP / HWCAP2 bits (arch/arm64/kernel/cpuinfo.c), in bit order
HWCAP = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop "
         "sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg").split()
HWCAP2 = ("dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svef32mm svef64mm svebf16 "
          "i8mm bf16 dgh rng bti mte ecv afp rpres mte3 sme smei16i64 smef64f64 smei8i32 smef16f32 smeb16f32 "
          "smef32f32 smefa64 wfxt ebf16 sveebf16 cssc rprfm sve2p1 sme2 sme2p1 smei16i32 smebi32i32 smeb16b16 "
          "smef16f16 mops hbc").split()


def home() -> Path:
    return Path(os.environ.get("EDGEAGE_DEVICES") or Path.home() / ".cache" / "edgeage" / "devices") / "qemu-aarch64"


def _say(msg: str, progress: bool) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


def parse_cpu(cpu: str | None, option: str | None = None) -> str:
    """``CPU`` of ``qemu-aarch64[:CPU]``: a qemu 7.2 model, optionally with qemu's feature options
    (``max,sme=off``, ``max,sve-default-vector-length=16``)."""
    cpu = cpu or DEFAULT_CPU
    option = option or f"--device qemu-aarch64:{cpu}"
    model, *opts = cpu.split(",")
    if model not in CPU_MODELS:
        raise EdgeAgeError(f"{option}: unknown CPU model {model!r}; qemu 7.2 offers "
                           f"{', '.join(CPU_MODELS)} (default {DEFAULT_CPU})")
    bad = [o for o in opts if not re.fullmatch(r"[a-z0-9-]+=[a-z0-9]+", o)]
    if bad:
        raise EdgeAgeError(f"{option}: {bad[0]!r} is not a qemu CPU option (KEY=VALUE, e.g. "
                           "max,sme=off)")
    return cpu


def device_packages() -> list[str]:
    """The device side's requirements with the versions edgeage pins (its installed metadata)."""
    import importlib.metadata

    reqs = importlib.metadata.requires("edgeage") or []
    pins = {}
    for r in reqs:  # the core's requirements and the runtime extras' (onnx, openvino, ...)
        req, _, marker = r.partition(";")
        if marker and "extra" not in marker:
            continue
        name = re.split(r"[<>=!~ \[]", req.strip(), maxsplit=1)[0].strip().lower()
        if name != "edgeage":
            pins.setdefault(name, req.replace(" ", ""))
    packages = BASE_PACKAGES + tuple(runtimes().values())
    missing = [p for p in packages if p not in pins]
    if missing:
        raise EdgeAgeError(f"edgeage's metadata pins no version of {', '.join(missing)}: reinstall edgeage")
    return [pins[p] for p in packages]


def _run(cmd: list[str], what: str, cwd=None, progress: bool = False, env=None) -> str:
    """Run a step; ``progress``: its output goes to the terminal (stderr) as it comes."""
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, text=True, stdout=sys.stderr if progress else subprocess.PIPE,
                           stderr=None if progress else subprocess.PIPE)
    except FileNotFoundError:
        raise EdgeAgeError(f"{what}: {cmd[0]} not found (the qemu-aarch64 setup needs Debian's apt-get and "
                           "dpkg, and pip)") from None
    if p.returncode != 0:
        tail = "\n".join(((p.stderr or "") + (p.stdout or "")).strip().splitlines()[-8:])
        raise EdgeAgeError(f"qemu-aarch64 setup: {what} failed (exit {p.returncode}); nothing was kept. "
                           f"Is the network reachable?\n{tail}")
    return p.stdout


def _apt(state: Path, *args: str) -> list[str]:
    """apt-get with a private state (lists, cache, no dpkg status): arm64 native, the host's
    architecture as a foreign one (for qemu-user-static); the system's sources."""
    host = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip() or "amd64"
    return ["apt-get", "-q", "-o", "APT::Architecture=arm64", "-o", f"APT::Architectures=arm64,{host}",
            "-o", f"Dir::State={state}", "-o", f"Dir::State::Lists={state}/lists", "-o", "Dir::State::status=/dev/null",
            "-o", f"Dir::Cache={state}/cache", "-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=root",
            *args]


def _du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def info() -> dict | None:
    """The setup's record (versions, sizes, time), or None when it is not (completely) set up."""
    f = home() / "setup.json"
    try:
        rec = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    return rec if rec.get("layout") == LAYOUT and (home() / "bin" / "qemu-aarch64-static").is_file() else None


def setup(progress: bool = True, cpus=(DEFAULT_CPU,), force: bool = False) -> dict:
    """Build the qemu-aarch64 device (see the module doc); a no-op when it is there with the
    packages edgeage pins now. Returns its record."""
    pkgs = device_packages()
    rec = info()
    if rec is not None and rec.get("python_packages") == pkgs and not force:
        _say(f"qemu-aarch64: set up already at {home()} ({rec['size_bytes'] / 1e6:.0f} MB); nothing to do", progress)
    else:
        rec = _build(pkgs, progress)
    for cpu in cpus:
        cpu_root(cpu, progress)
    edgeage_copy(progress)
    return rec


def _build(pkgs: list[str], progress: bool) -> dict:
    t0 = time.monotonic()
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise EdgeAgeError("qemu-aarch64 setup needs Debian's apt-get and dpkg (it fetches Debian's qemu-user-static "
                           "and arm64 packages); not found on this machine")
    timing = {}
    with atomic_dir(home(), force=True, kind="qemu-aarch64 device", option="EDGEAGE_DEVICES") as out:
        work = out / ".work"
        state = work / "apt"
        (state / "lists" / "partial").mkdir(parents=True)
        (state / "cache" / "archives" / "partial").mkdir(parents=True)
        _say("qemu-aarch64 setup [1/5]: apt-get update (arm64 + host architecture, private apt state)", progress)
        out_text = _run(_apt(state, "update"), "apt-get update")
        failed = [ln for ln in out_text.splitlines() if ln.startswith(("Err:", "W: Failed", "E:"))]
        if failed or not any((state / "lists").glob("*arm64_Packages*")):
            raise EdgeAgeError("qemu-aarch64 setup: apt-get update fetched no arm64 package lists; nothing was kept. "
                               "Is the network reachable?\n" + "\n".join(failed[-4:]))
        host = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
        debs = work / "debs"
        debs.mkdir()
        _say(f"qemu-aarch64 setup [2/5]: apt-get download qemu-user-static:{host} + {len(SYSROOT_PACKAGES)} arm64 "
             "packages", progress)
        _run(_apt(state, "download", f"qemu-user-static:{host}", *SYSROOT_PACKAGES), "apt-get download", cwd=debs)
        timing["apt_s"] = round(time.monotonic() - t0, 1)
        _say("qemu-aarch64 setup [3/5]: dpkg -x into the sysroot", progress)
        sysroot, qx = out / "sysroot", work / "qemu"
        deb_bytes = 0
        for deb in sorted(debs.glob("*.deb")):
            deb_bytes += deb.stat().st_size
            _run(["dpkg", "-x", str(deb), str(qx if deb.name.startswith("qemu-user-static_") else sysroot)],
                 f"dpkg -x {deb.name}")
        (out / "bin").mkdir()
        shutil.copy2(qx / "usr" / "bin" / "qemu-aarch64-static", out / "bin" / "qemu-aarch64-static")
        qemu_version = _run([str(out / "bin" / "qemu-aarch64-static"), "--version"], "qemu --version").splitlines()[0]
        for d in ("tmp", "home", "root", "proc", "dev", "sys", "run"):  # host paths must stay the host's
            shutil.rmtree(sysroot / d, ignore_errors=True)
        if not (sysroot / PYTHON).is_file():
            raise EdgeAgeError(f"qemu-aarch64 setup: the arm64 packages hold no {PYTHON}")
        t1 = time.monotonic()
        _say(f"qemu-aarch64 setup [4/5]: pip install --platform aarch64 {' '.join(pkgs)}", progress)
        cmd = python_module_cmd("pip", "install", "--disable-pip-version-check", "--no-compile",
               "--target", str(sysroot / SITE), "--only-binary=:all:", "--python-version", "3.11",
               "--implementation", "cp", "--abi", "cp311")
        for plat in PLATFORMS:
            cmd += ["--platform", plat]
        cmd += ["--no-warn-conflicts"] + ([] if progress else ["-q"])
        _run(cmd + pkgs, "pip install of the aarch64 wheels", progress=progress)
        timing["pip_s"] = round(time.monotonic() - t1, 1)
        shutil.rmtree(work)
        shutil.rmtree(sysroot / SITE / "bin", ignore_errors=True)  # x86 wrapper scripts pip wrote
        _say("qemu-aarch64 setup [5/5]: checking the interpreter under qemu", progress)
        rec = {"layout": LAYOUT, "qemu": qemu_version, "python_packages": pkgs, "debian_packages": SYSROOT_PACKAGES,
               "download_bytes": deb_bytes, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "time_s": {**timing}}
        versions = _probe(out, rec)
        rec["installed"] = versions
        rec["size_bytes"] = _du(out)
        rec["time_s"]["total"] = round(time.monotonic() - t0, 1)
        (out / "setup.json").write_text(json.dumps(rec, indent=1) + "\n")
    _say(f"qemu-aarch64: set up at {home()} in {rec['time_s']['total']:.0f} s, {rec['size_bytes'] / 1e6:.0f} MB "
         f"({rec['qemu']}; {', '.join(f'{k} {v}' for k, v in versions.items())})", progress)
    return rec


def _qemu_cmd(base: Path, cpu: str, root: Path) -> list[str]:
    return [str(base / "bin" / "qemu-aarch64-static"), "-cpu", cpu, "-L", str(root), str(root / PYTHON)]


def _probe(base: Path, rec: dict) -> dict:
    """The interpreter runs under qemu and finds numpy and the runtimes' metadata."""
    names = ("numpy",) + tuple(runtimes().values())
    code = ("import importlib.metadata as m, json, platform; print(json.dumps({'machine': platform.machine(), "
            f"**{{p: m.version(p) for p in {names!r}}}}}))")
    out = _run(_qemu_cmd(base, "cortex-a53", base / "sysroot") + ["-I", "-c", code], "python3.11 under qemu")
    got = json.loads(out.strip().splitlines()[-1])
    if got.pop("machine") != "aarch64":
        raise EdgeAgeError("qemu-aarch64 setup: the emulated interpreter does not report aarch64")
    return got


def _safe(cpu: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", cpu)


def cpu_root(cpu: str, progress: bool = False) -> Path:
    """The root (``-L``) for one qemu CPU model: links to the sysroot plus its own
    /proc/cpuinfo (made once; atomic)."""
    base = home()
    if info() is None:
        raise EdgeAgeError(f"--device qemu-aarch64: not set up (no {base / 'setup.json'}); run "
                           "`edgeage device setup qemu-aarch64` first (downloads ~0.5 GB once)")
    cpu = parse_cpu(cpu)
    root = base / "cpu" / _safe(cpu)
    if (root / "proc" / "cpuinfo").is_file():
        return root
    _say(f"qemu-aarch64: a root for -cpu {cpu} (its /proc/cpuinfo from AT_HWCAP)", progress)
    for attempt in range(120):  # another process may be making the same one
        try:
            with atomic_dir(root, force=True, kind="qemu-aarch64 cpu root", option="--device") as out:
                for entry in (base / "sysroot").iterdir():
                    os.symlink(os.path.join("..", "..", "sysroot", entry.name), out / entry.name)
                hw = hwcaps(cpu, base / "sysroot")
                (out / "proc").mkdir()
                (out / "proc" / "cpuinfo").write_text(cpuinfo_text(cpu, hw))
                (out / "hwcap.json").write_text(json.dumps(hw) + "\n")
            return root
        except EdgeAgeError as e:
            if "another edgeage process" not in str(e):
                raise
            time.sleep(1)
            if (root / "proc" / "cpuinfo").is_file():
                return root
    raise EdgeAgeError(f"{root}: another process kept it locked for 2 minutes")


def hwcaps(cpu: str, root: Path) -> dict:
    """AT_HWCAP / AT_HWCAP2 as the interpreter sees them under ``-cpu cpu`` (getauxval)."""
    code = ("import ctypes; g = ctypes.CDLL(None).getauxval; g.restype = ctypes.c_ulong; "
            "g.argtypes = [ctypes.c_ulong]; print(g(16), g(26))")
    out = _run(_qemu_cmd(home(), cpu, root) + ["-I", "-c", code], f"getauxval under -cpu {cpu}")
    h1, h2 = (int(v) for v in out.split())
    return {"hwcap": h1, "hwcap2": h2, "features": [n for i, n in enumerate(HWCAP) if h1 >> i & 1]
            + [n for i, n in enumerate(HWCAP2) if h2 >> i & 1]}


def cpuinfo_text(cpu: str, hw: dict, n: int | None = None) -> str:
    impl, part = CPU_PART[cpu.split(",")[0]]
    block = (f"BogoMIPS\t: 50.00\nFeatures\t: {' '.join(hw['features'])}\nCPU implementer\t: {impl}\n"
             f"CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {part}\nCPU revision\t: 0\n")
    return "\n".join(f"processor\t: {i}\n{block}" for i in range(n or os.cpu_count() or 1))


# ---------------------------------------------------------------------------- the edgeage copy

def _device_side_sources() -> list[tuple[Path, str]]:
    """(file, path in the copy) of the torch-free device side: edgeage (core, with its
    models and assets but no checkpoints) and edgeage.targets."""
    import edgeage
    import edgeage.targets

    out = []
    for src, dest in ((Path(edgeage.__file__).parent, "edgeage"), (Path(edgeage.targets.__file__).parent,
                                                                   "edgeage/targets")):
        for f in sorted(src.rglob("*")):
            rel = f.relative_to(src)
            if (f.is_file() and "__pycache__" not in rel.parts and f.suffix not in (".pyc", ".pt")
                    and not (dest == "edgeage" and rel.parts[0] in ("targets",))):
                out.append((f, f"{dest}/{rel.as_posix()}"))
    return out


def edgeage_copy(progress: bool = False) -> Path:
    """This edgeage's device side as a folder for the emulated interpreter's sys.path (one per
    content hash; made once, atomically), with a dist-info so its version reads as installed."""
    import importlib.metadata

    files = _device_side_sources()
    h = hashlib.sha256()
    for f, rel in files:
        h.update(rel.encode() + b"\0" + f.read_bytes() + b"\0")
    version = importlib.metadata.version("edgeage")
    dest = home() / "edgeage" / h.hexdigest()[:16]
    if (dest / "edgeage" / "__init__.py").is_file():
        return dest
    _say(f"qemu-aarch64: copying edgeage {version}'s device side ({len(files)} files)", progress)
    try:
        with atomic_dir(dest, force=True, kind="edgeage device side", option="--device") as out:
            for f, rel in files:
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, out / rel)
            meta = out / f"edgeage-{version}.dist-info"
            meta.mkdir()
            (meta / "METADATA").write_text(f"Metadata-Version: 2.1\nName: edgeage\nVersion: {version}\n")
    except EdgeAgeError as e:
        if "another edgeage process" not in str(e):
            raise
        for _ in range(60):
            if (dest / "edgeage" / "__init__.py").is_file():
                return dest
            time.sleep(1)
        raise
    _prune_copies(dest)
    return dest


def _prune_copies(keep: Path, age_s: float = 86400) -> None:
    """Copies of older edgeage versions (one per source change while developing) made over a
    day ago are removed; the current one stays."""
    now = time.time()
    for d in keep.parent.iterdir():
        try:
            if d != keep and re.fullmatch(r"[0-9a-f]{16}", d.name) and now - d.stat().st_mtime > age_s:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


# ---------------------------------------------------------------------------- running the check

def qemu_version() -> str:
    """``qemu-aarch64 7.2.22`` (from ``--version``, recorded at setup)."""
    rec = info()
    m = re.search(r"version (\S+)", rec["qemu"]) if rec else None
    return f"qemu-aarch64 {m.group(1)}" if m else "qemu-aarch64"


def check_command(cpu: str) -> tuple[list[str], str, dict]:
    """(interpreter command, the path to put first on its sys.path, the emulation record) for
    the device side under ``-cpu cpu``."""
    cpu = parse_cpu(cpu)
    root = cpu_root(cpu)
    pkg = edgeage_copy()
    emu = {"emulator": f"{qemu_version()} user-mode", "qemu_cpu": cpu}
    return _qemu_cmd(home(), cpu, root), str(pkg), emu


def temp_dir_for_qemu() -> str:
    """A temp folder path the sysroot does not shadow (qemu -L redirects a path that exists in
    the root): the system's temp folder, unless the root has one of that name."""
    t = tempfile.gettempdir()
    if (home() / "sysroot" / t.lstrip("/")).exists():
        raise EdgeAgeError(f"{home() / 'sysroot'} holds {t}: re-run edgeage device setup qemu-aarch64 --force")
    return t


# the targets whose runtimes the emulated device has (setup installs their aarch64 wheels); each
# runtime's package is its target's `[runtime] package`
TARGETS = ("tflite", "onnx", "openvino")  # this order: the package list a setup records


def runtimes() -> dict[str, str]:
    """target -> the runtime package the emulated device runs it with."""
    from edgeage.targets.spec import runtime_package

    return {t: runtime_package(t) for t in TARGETS}


EXECUTORCH_WHY = (
    "ExecuTorch artifacts cannot be checked on --device qemu-aarch64: ExecuTorch's Python runtime "
    "(executorch.runtime) links libtorch, and PyPI's aarch64 torch 2.13.0 is the CUDA 13 build (957 MB) whose "
    "CUDA libraries (nvidia-nccl-cu13, nvidia-cuda-cupti, ...) have no installable aarch64 versions, so the "
    "emulated device has no ExecuTorch. Check .pte files with the Android app (--device adb) or ExecuTorch's C++ "
    "runtime on the board; --device qemu-aarch64 checks onnx, tflite and openvino artifacts")


def check_runtime(target: str) -> None:
    """One clear error, before anything runs, for an artifact whose runtime the emulated device
    lacks."""
    if target == "executorch":
        raise EdgeAgeError(EXECUTORCH_WHY)
    if target not in TARGETS:
        raise EdgeAgeError(f"--device qemu-aarch64: the emulated device has no runtime for target {target!r} "
                           f"(it has {', '.join(f'{v} ({k})' for k, v in runtimes().items())})")


def hint(tail: str, target: str) -> str:
    m = re.search(r"No module named '([\w.]+)'", tail)
    if m or "runtime is not installed" in tail:
        what = f"the Python package {m.group(1)!r}" if m else f"the {target} runtime"
        return f" (the emulated device lacks {what}: run `edgeage device setup qemu-aarch64 --force`)"
    if "Segmentation fault" in tail or "SIGSEGV" in tail or "core dumped" in tail:
        return " (the runtime crashed under qemu)"
    return ""


# ---------------------------------------------------------------------------- the device kind

class QemuDevice(Device):
    usage = "qemu-aarch64[:CPU]"
    summary = ("the Python device side as aarch64 code under qemu, CPU a qemu model, default cortex-a76: "
               "correctness only, no latency; `edgeage device setup qemu-aarch64` first")
    order = 3
    builds = True

    def __init__(self, cpu: str):
        self.cpu = cpu

    @classmethod
    def open(cls, spec: str, arg: str, options: DeviceOptions, artifact: Path) -> "QemuDevice":
        """An artifact whose runtime the emulated device lacks (ExecuTorch), an unknown CPU and a
        device not set up are one EdgeAgeError each, before the bundle is made."""
        from edgeage.artifact import read_manifest

        cpu = parse_cpu(arg or None)
        check_runtime(read_manifest(artifact).artifact.target)
        cpu_root(cpu)  # set up? (a clear error before the bundle is made)
        return cls(cpu)

    def run_check(self, bundle, dest: Path, count: int, warmup: int, threads: int, timeout: float) -> Path:
        """The device side's check mode under ``-cpu self.cpu``, through ``run_check_command``
        like ``local``."""
        from edgeage.artifact import read_manifest

        target = read_manifest(bundle).artifact.target
        check_runtime(target)
        python, path, emu = check_command(self.cpu)
        temp_dir_for_qemu()
        where = f"qemu-aarch64 -cpu {emu['qemu_cpu']}"
        return run_check_command(device_side_command(python, str(bundle), str(dest), count, warmup, threads, path, emu),
                                 where, dest, timeout, hint=lambda tail: hint(tail, target))

    @classmethod
    def setup(cls, cpus: tuple[str, ...] = (), force: bool = False) -> str:
        cpus = [parse_cpu(c, f"--cpu {c}") for c in cpus]
        rec = setup(progress=True, cpus=[DEFAULT_CPU, *cpus], force=force)  # the module's setup(), above
        return (f"qemu-aarch64: {home()} ({rec['size_bytes'] / 1e6:.0f} MB; {rec['qemu']}; "
                + ", ".join(f"{k} {v}" for k, v in rec["installed"].items()) + ")")


DEVICE = QemuDevice
