"""The structure, as tests: dependencies run one way (core <- backends / training <- export:
artifact <- int8 <- conformance <- devices <- CLI), the core imports without torch, a target is
one folder, a device kind is one file, and the command modules share their options through one
module and never import each other. Unit tier: no data set, no runtime beyond onnxruntime, seconds."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"edgeage": ROOT / "edgeage", "edgeage.export": ROOT / "export", "edgeage.targets": ROOT / "targets",
            "edgeage.train": ROOT / "train"}
CORE, BACKEND, TRAIN, CLI = "core", "backends", "train", "cli"
# the export stage's sub-packages, lowest first: each may import those before it
EXPORT = ["artifact", "int8", "conformance", "devices"]
# what each layer may import (besides itself)
ALLOWED = {CORE: {CORE}, BACKEND: {CORE, BACKEND}, TRAIN: {CORE, TRAIN},
           **{sub: {CORE, BACKEND, *EXPORT[:i + 1]} | ({TRAIN} if i >= EXPORT.index("int8") else set())
              for i, sub in enumerate(EXPORT)},
           CLI: {CORE, BACKEND, TRAIN, *EXPORT, CLI}}
# the shared options of the command modules (CLI layer)
OPTIONS = "edgeage.cli_options"


def modules() -> dict[str, Path]:
    out = {}
    for pkg, root in PACKAGES.items():
        for f in root.rglob("*.py"):
            rel = f.relative_to(root).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([pkg, *parts])
            if pkg == "edgeage" and parts and parts[0] in ("assets",):
                continue
            out[name] = f
    return out


def is_command_module(name: str) -> bool:
    """The modules that define commands: ``edgeage.cli`` (the group and the core's commands), each
    stage's ``cli`` / ``*_cli`` modules."""
    last = name.rsplit(".", 1)[-1]
    return last == "cli" or last.endswith("_cli")


def layer(name: str) -> str:
    if is_command_module(name) or name in (OPTIONS, "edgeage.api"):  # the front ends: the CLI and the Python API
        return CLI
    if name == "edgeage.export" or name.startswith("edgeage.export."):  # the namespace itself: the lowest
        parts = name.split(".")
        return parts[2] if len(parts) > 2 else EXPORT[0]
    for pkg, lay in (("edgeage.targets", BACKEND), ("edgeage.train", TRAIN)):
        if name == pkg or name.startswith(pkg + "."):
            return lay
    return CORE


def imports(name: str, path: Path) -> set[str]:
    """Every edgeage module ``name`` imports, at any depth (lazy imports inside functions too)."""
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}
    return {m for m in out if m == "edgeage" or m.startswith("edgeage.")}


def resolve(imported: str, known: dict[str, Path]) -> str | None:
    while imported and imported not in known:
        imported = imported.rsplit(".", 1)[0] if "." in imported else ""
    return imported or None


def violations(known: dict[str, Path]) -> list[str]:
    bad = set()
    for name, path in known.items():
        for imp in imports(name, path):
            target = resolve(imp, known)
            if target is None or target == "edgeage":
                continue
            if layer(target) not in ALLOWED[layer(name)]:
                bad.add(f"{name} ({layer(name)}) imports {target} ({layer(target)})")
    return sorted(bad)


def test_dependencies_run_one_way():
    known = modules()
    assert len(known) > 40 and "edgeage.export.conformance.check" in known and "edgeage.targets.onnx.runner" in known
    bad = violations(known)
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_export_is_split_by_concern():
    """Every module of the export stage sits in one of its sub-packages (none loose beside them),
    and each sub-package is a layer of its own."""
    loose = [n for n, f in modules().items() if f.parent == ROOT / "export" and f.name != "__init__.py"]
    assert not loose, f"modules directly in export/ (put them in {', '.join(EXPORT)}): {loose}"
    assert sorted(p.name for p in (ROOT / "export").iterdir() if (p / "__init__.py").is_file()) == sorted(EXPORT)
    assert {layer(n) for n in modules() if n.startswith("edgeage.export.") and not is_command_module(n)} == set(EXPORT)


def command_imports(known: dict[str, Path]) -> list[str]:
    """Imports between front-end modules other than of the shared options module."""
    bad = set()
    for name, path in known.items():
        if layer(name) != CLI:
            continue
        for imp in imports(name, path):
            target = resolve(imp, known)
            if target not in (None, name, OPTIONS) and layer(target) == CLI:
                bad.add(f"{name} imports {target}")
    return sorted(bad)


def test_command_modules_share_one_options_module_and_never_import_each_other():
    """The CLI: `edgeage.cli` (the group) loads each stage's command module by name
    (``STAGE_COMMANDS``), and a command module takes its shared options from ``edgeage.cli_options``
    alone, never from another command module or from ``edgeage.cli``."""
    from edgeage.cli import STAGE_COMMANDS

    known = modules()
    commands = {m.split(":")[0] for m in STAGE_COMMANDS.values()}
    assert commands <= set(known) and all(is_command_module(m) for m in commands), commands
    assert {"edgeage.export.artifact.cli", "edgeage.export.int8.cli", "edgeage.export.conformance.cli",
            "edgeage.export.devices.cli"} <= commands
    bad = command_imports(known)
    assert not bad, "front ends importing each other (share options through edgeage.cli_options):\n" + "\n".join(bad)
    assert all(OPTIONS in {resolve(i, known) for i in imports(m, known[m])} for m in commands)


def test_the_layering_check_catches_a_cycle(tmp_path):
    """The check above is not vacuous: a backend that imports conformance code (the old
    export <-> targets cycle), lazily inside a function, and a relative upward import are found."""
    known = modules()
    fake = tmp_path / "fake.py"
    fake.write_text("def f():\n    from edgeage.export.conformance.check import judge\n    return judge\n")
    rel = tmp_path / "rel.py"
    rel.write_text("from ..targets import spec\n")
    # inside the export stage: a lower sub-package importing a higher one, relatively and lazily
    low = tmp_path / "low.py"
    low.write_text("def f():\n    from ..int8 import quantize\n    from edgeage.export.devices import bundle\n")
    bad = violations({**known, "edgeage.targets.fake": fake, "edgeage.train.rel": rel,
                      "edgeage.export.artifact.low": low})
    assert bad == ["edgeage.export.artifact.low (artifact) imports edgeage.export.devices (devices)",
                   "edgeage.export.artifact.low (artifact) imports edgeage.export.devices.bundle (devices)",
                   "edgeage.export.artifact.low (artifact) imports edgeage.export.int8 (int8)",
                   "edgeage.export.artifact.low (artifact) imports edgeage.export.int8.quantize (int8)",
                   "edgeage.targets.fake (backends) imports edgeage.export.conformance.check (conformance)",
                   "edgeage.train.rel (train) imports edgeage.targets (backends)",
                   "edgeage.train.rel (train) imports edgeage.targets.spec (backends)"], bad


def test_the_command_module_check_catches_a_chain(tmp_path):
    """Not vacuous: a command module taking an option from another one, or from edgeage.cli, is found."""
    chain = tmp_path / "cli.py"
    chain.write_text("from edgeage.export.artifact.cli import export_cmd\nfrom edgeage.cli import main\n")
    assert command_imports({**modules(), "edgeage.export.devices.cli": chain}) == [
        "edgeage.export.devices.cli imports edgeage.cli", "edgeage.export.devices.cli imports edgeage.export.artifact.cli"]


CORE_TORCH_FREE = ["edgeage.utils", "edgeage.preprocess", "edgeage.readout", "edgeage.manifest",
                   "edgeage.artifact", "edgeage.backend", "edgeage.pipeline", "edgeage.face", "edgeage.data",
                   "edgeage.metrics", "edgeage.targets.spec", "edgeage.targets.runner",
                   "edgeage.targets.onnx.runner", "edgeage.targets.openvino.runner", "edgeage.targets.tflite.runner",
                   "edgeage.schemas", "edgeage.litert", "edgeage.groups", "edgeage.document", "edgeage.video", "edgeage.track",
                   "edgeage.targets.device_check"]


def test_core_and_runners_import_without_torch():
    """The device side: with torch unimportable, the core, the runners and the whole pipeline
    (crop -> inputs -> model -> readout) work."""
    code = f"""
import sys
sys.modules["torch"] = None  # `import torch` raises ImportError
import importlib
for m in {CORE_TORCH_FREE!r}:
    importlib.import_module(m)
import numpy as np
from edgeage.manifest import check_manifest
from edgeage.pipeline import AgeEstimator
man = check_manifest({{"model": {{"name": "x"}}, "readout": {{"type": "expectation", "age_min": 0, "age_max": 100}},
       "preprocess": {{"crop": {{}}, "normalize": {{"input_size": 64, "mean": [0.5] * 3, "std": [0.25] * 3}}}}}}, "test")
est = AgeEstimator(lambda x: np.tile(np.eye(101, dtype=np.float32)[30] * 50, (len(x), 1)), man)
ages = est.ages(np.zeros((3, 96, 96, 3), np.uint8))
assert ages.shape == (3,) and abs(ages[0] - 30) < 1e-3, ages
assert "torch" not in [k for k, v in sys.modules.items() if v is not None]
print("ok")
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0 and p.stdout.strip().endswith("ok"), p.stderr[-3000:]


def test_every_shipped_target_is_one_folder():
    from edgeage.backend import describe
    from edgeage.targets.spec import SPEC_FILE, known_targets, load_module, load_spec, targets_dir

    names = known_targets()
    assert {"onnx", "openvino", "tflite", "executorch"} <= set(names)
    for t in names:
        spec = load_spec(t)
        assert Path(spec.file) == targets_dir() / t / SPEC_FILE
        for key in ("exporter", "runner"):
            assert getattr(spec, key).startswith(f"edgeage.targets.{t}.") or getattr(spec, key).endswith(".py"), (t, key)
        assert hasattr(load_module(spec.runner, spec), "Runner")
        if t in ("onnx", "openvino"):  # exporters that import quickly here
            assert describe(load_module(spec.exporter, spec)).qat
    # beside the folders: only the shared conformance lines (not a target)
    assert [p.name for p in targets_dir().glob("*.toml")] == ["conformance.toml"], "target TOMLs belong in their folders"


def test_conformance_lines_have_one_source(tmp_path):
    """Every target's thresholds and QAT line come from targets/conformance.toml unless its own
    TOML sets them (key by key); the shipped TOMLs repeat none of them."""
    import tomllib

    from edgeage.targets.spec import conformance_defaults, load_spec, targets_dir

    base = conformance_defaults()
    for t in ("onnx", "openvino", "tflite", "executorch"):
        spec, own = load_spec(t), tomllib.loads((targets_dir() / t / "target.toml").read_text())
        for p in spec.precisions:
            if p in base["thresholds"]:
                assert spec.thresholds[p] == base["thresholds"][p], (t, p)
        assert spec.int8["qat_mae_drift"] == base["int8"]["qat_mae_drift"] and "qat_mae_drift" not in own["int8"]
        assert set(own.get("thresholds", {})) <= {"bf16"}, t          # OpenVINO's bf16 is its own line
    toml = tmp_path / "mine.toml"
    toml.write_text('exporter = "x.py"\nrunner = "y.py"\nprecisions = ["fp32", "int8"]\n'
                    '[thresholds.int8]\nage_abs_diff_max = 9.0\n')
    spec = load_spec(str(toml))
    assert spec.thresholds["int8"] == {**base["thresholds"]["int8"], "age_abs_diff_max": 9.0}
    assert spec.thresholds["fp32"] == base["thresholds"]["fp32"] and not spec.int8  # no [int8]: no QAT line


def test_target_search_path_adds_folders(tmp_path, monkeypatch):
    from edgeage.targets.spec import PATH_ENV, known_targets, load_spec

    d = tmp_path / "more" / "mine"
    d.mkdir(parents=True)
    (d / "target.toml").write_text('exporter = "exporter.py"\nrunner = "runner.py"\nprecisions = ["fp32"]\n')
    assert "mine" not in known_targets()
    monkeypatch.setenv(PATH_ENV, os.pathsep.join([str(tmp_path / "nowhere"), str(tmp_path / "more")]))
    assert "mine" in known_targets()
    spec = load_spec("mine")
    assert spec.name == "mine" and spec.file == str(d / "target.toml")
    assert load_spec(str(d)).file == spec.file  # a folder path works too


def test_every_device_kind_is_one_file_implementing_the_device_protocol():
    """A device kind is one module of edgeage.export.devices.kinds, named after its scheme, whose
    DEVICE implements the Device protocol; the registry finds each, in the order of the CLI's lists."""
    import importlib

    from edgeage.export.devices.device import Device, device_kinds, kind_files, kinds_dir

    files = {p.stem for p in kinds_dir().glob("*.py") if p.stem != "__init__"}
    shipped = {s: f for s, f in kind_files().items() if f.parent == kinds_dir()}
    assert {f.stem for f in shipped.values()} == files == {"adb", "local", "ssh", "qemu_aarch64"}
    kinds = device_kinds()
    assert list(kinds)[:4] == ["adb", "local", "ssh", "qemu-aarch64"]
    for scheme, f in shipped.items():
        cls = importlib.import_module(f"edgeage.export.devices.kinds.{f.stem}").DEVICE
        assert issubclass(cls, Device) and not cls.__abstractmethods__, scheme
        assert kinds[scheme] is cls and cls.scheme == scheme and cls.usage.startswith(scheme) and cls.summary
    assert [s for s, k in kinds.items() if k.app] == ["adb"] and [s for s, k in kinds.items() if k.builds] == ["qemu-aarch64"]


def test_device_spellings_dispatch_through_the_registry(tmp_path):
    """Every spelling of --device reaches its kind through open_device (nothing runs here)."""
    from edgeage.export.devices.device import DeviceOptions, open_device
    from edgeage.utils import EdgeAgeError

    none = DeviceOptions()
    local = open_device("local", none, tmp_path)
    assert type(local).__name__ == "LocalDevice" and local.python == sys.executable
    assert open_device("local", DeviceOptions(python="/venv/bin/python"), tmp_path).python == "/venv/bin/python"
    assert open_device("adb", none, tmp_path).serial is None and open_device("adb:S1", none, tmp_path).serial == "S1"
    assert open_device("adb:S1", DeviceOptions(serial="S2"), tmp_path).serial == "S2"  # --serial wins
    ssh = open_device("ssh://pi@board.local:2222", DeviceOptions(identity="k", ssh_options=("A=b",)), tmp_path)
    assert (ssh.user, ssh.host, ssh.port, ssh.identity, ssh.options, ssh.python) == ("pi", "board.local", 2222, "k",
                                                                                       ["A=b"], "python3")
    with pytest.raises(EdgeAgeError, match="unknown CPU model 'cortex-x9'"):
        open_device("qemu-aarch64:cortex-x9", none, tmp_path)
    with pytest.raises(EdgeAgeError) as e:
        open_device("bogus:1", none, tmp_path)
    assert str(e.value) == ("--device bogus:1: unknown device kind; use adb[:SERIAL], local, ssh://user@host[:port] "
                            "or qemu-aarch64[:CPU]")


def test_device_search_path_adds_kind_files_never_from_the_current_folder(tmp_path, monkeypatch):
    """EDGEAGE_DEVICE_PATH's absolute folders add kinds; a relative entry (the current folder) is
    never read, and a file that is not a kind is one clear error."""
    from edgeage.export.devices.device import PATH_ENV, DeviceOptions, device_kinds, open_device
    from edgeage.utils import EdgeAgeError

    d = tmp_path / "kinds"
    d.mkdir()
    (d / "my_board.py").write_text(
        "from edgeage.export.devices.device import Device\n\n\nclass Board(Device):\n"
        "    usage, summary = 'my-board:NAME', 'a board'\n\n    @classmethod\n"
        "    def open(cls, spec, arg, options, artifact):\n        return cls()\n\n"
        "    def run_check(self, bundle, dest, count, warmup, threads, timeout):\n        return dest\n\n\n"
        "DEVICE = Board\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(PATH_ENV, os.pathsep.join(["kinds", str(tmp_path / "nowhere")]))
    assert "my-board" not in device_kinds()
    monkeypatch.chdir(d)
    monkeypatch.setenv(PATH_ENV, ".")
    assert "my-board" not in device_kinds()
    monkeypatch.setenv(PATH_ENV, str(d))
    assert list(device_kinds())[-1] == "my-board" and device_kinds()["my-board"].scheme == "my-board"
    assert type(open_device("my-board:x", DeviceOptions(), tmp_path)).__name__ == "Board"
    (d / "broken.py").write_text("DEVICE = object\n")
    with pytest.raises(EdgeAgeError, match="broken.py: a device kind file sets DEVICE"):
        open_device("broken", DeviceOptions(), tmp_path)


def test_describe_names_what_an_exporter_lacks():
    import types

    from edgeage.backend import describe
    from edgeage.utils import EdgeAgeError

    with pytest.raises(EdgeAgeError, match="defines no export"):
        describe(types.SimpleNamespace(), "empty")
    half = types.SimpleNamespace(export=lambda *a: [], qat_prepare=lambda *a: None)
    with pytest.raises(EdgeAgeError, match="qat_prepare without its pair"):
        describe(half, "half")
    full = types.SimpleNamespace(export=lambda *a: [], qat_prepare=lambda *a: None, qat_convert=lambda *a: None,
                                 ACCURACY_CONTROL="own")
    d = describe(full, "full")
    assert d.qat and not d.simulate and d.accuracy_control == "own"


def test_the_training_path_imports_no_export_runtime():
    """Training forks loader workers: nothing multithreaded of the export stage (JAX through
    litert-torch, ExecuTorch, OpenVINO, NNCF) may be imported before that (the JAX fork warning)."""
    code = """
import sys
import edgeage.train.loop, edgeage.train.cli, edgeage.data, edgeage.evaluate, edgeage.pipeline
from edgeage.cli import main  # the CLI entry, as `edgeage train` loads it
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"jax", "litert_torch", "executorch", "openvino",
                                                         "nncf", "onnxruntime", "tensorflow"})
print(loaded)
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stdout + p.stderr[-2000:]


def test_the_public_api_resolves_and_its_device_part_is_torch_free():
    """`from edgeage import ...`: every public name resolves (edgeage/api.py, loaded on first use);
    `import edgeage` and the device side's names load no torch."""
    code = """
import sys
sys.modules["torch"] = None
import edgeage
assert set(edgeage.__all__) >= {"AgeEstimator", "load_image", "load_artifact", "export_model", "check", "bench"}
from edgeage import AgeEstimator, EdgeAgeError, load_artifact, load_image
assert AgeEstimator.__module__ == "edgeage.pipeline" and callable(load_artifact) and callable(load_image)
print("ok")
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr
    import edgeage

    assert all(callable(getattr(edgeage, n)) for n in edgeage.__all__ if n != "__version__")
    with pytest.raises(AttributeError):
        edgeage.no_such_name


def private_imports(files) -> list[str]:
    """``from M import _name`` and ``M._name`` (M one of ours, bound by an import) across modules:
    a helper another module needs is public in its own module, with a name that says so."""
    found = []
    for f in files:
        tree = ast.parse(Path(f).read_text())
        ours = set()  # names bound to our own modules by an import
        for n in ast.walk(tree):
            if isinstance(n, ast.ImportFrom) and n.module != "__future__":
                internal = n.level > 0 or (n.module or "").startswith("edgeage")
                for a in n.names:
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        found.append(f"{f}:{n.lineno}: from {'.' * n.level}{n.module or ''} import {a.name}")
                    elif internal:
                        ours.add(a.asname or a.name)
            elif isinstance(n, ast.Import):
                ours |= {(a.asname or a.name).split(".")[0] for a in n.names if a.name.startswith("edgeage")}
        for n in ast.walk(tree):
            if (isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in ours
                    and n.attr.startswith("_") and not n.attr.startswith("__")):
                found.append(f"{f}:{n.lineno}: {n.value.id}.{n.attr}")
    return found


def test_no_module_reaches_into_another_modules_private_names():
    assert private_imports(modules().values()) == []


def test_the_private_name_check_catches_both_spellings(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("from . import loop\nfrom .loop import _load_data, train\nfrom numpy import _x\n"
                 "loop._step(1)\ntrain._private\n")
    got = private_imports([f])
    assert sorted(g.split(": ", 1)[1] for g in got) == ["from .loop import _load_data", "from numpy import _x",
                                                       "loop._step", "train._private"], got
