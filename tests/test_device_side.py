"""The device side (a first step of the devices issue): an exported artifact run by its runtime
alone, in a separate virtual environment where `import torch` fails (the core package and its
[onnx] extra, a plain non-editable `pip install`), gives the same ages as the desktop PyTorch
model on real photos; `pip check` passes there, and a command that needs another extra says so
in one line naming it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def device_venv(tmp_path_factory):
    """A fresh venv with the device side only (pip's cache holds these wheels after the main install)."""
    venv = tmp_path_factory.mktemp("device-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    p = subprocess.run(pip + [f"{ROOT}[onnx]"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    return venv


def test_the_core_install_is_consistent_and_names_missing_extras(device_venv, tmp_path):
    p = subprocess.run([str(device_venv / "bin" / "python"), "-m", "pip", "check"], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    for cmd, extra in ((["models"], "train"), (["info"], "train"), (["export", "--target", "onnx"], "export"),
                       (["eval", "--data", str(tmp_path)], "train"), (["bench"], "export")):
        p = subprocess.run([str(device_venv / "bin" / "edgeage"), *cmd], capture_output=True, text=True, cwd=tmp_path)
        err = p.stderr.strip()
        assert p.returncode == 1 and "Traceback" not in err, (cmd, err)
        assert err.count("\n") == 0 and f"[{extra}] extra" in err and f"edgeage[{extra}]" in err, (cmd, err)


def test_predict_artifact_in_a_torch_free_venv_matches_the_desktop(device_venv, exported, tiny_ckpt, face_dir,
                                                                    edgeage_env, tmp_path):
    py = str(device_venv / "bin" / "python")
    p = subprocess.run([py, "-c", "import torch"], capture_output=True, text=True)
    assert p.returncode != 0 and "No module named 'torch'" in p.stderr
    images = sorted(face_dir.iterdir())[:6]
    art = exported("onnx")
    env = {k: v for k, v in edgeage_env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    p = subprocess.run([str(device_venv / "bin" / "edgeage"), "predict", "--artifact", str(art),
                        *map(str, images), "--json"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    device = json.loads(p.stdout)["images"]
    p = subprocess.run([py, "-c", "import edgeage, sys; print(edgeage.__file__)"], capture_output=True, text=True,
                       cwd=tmp_path)
    assert str(device_venv) in p.stdout  # the venv's own copy, not the checkout
    p = subprocess.run([sys.executable, "-P", "-m", "edgeage.cli", "predict", "--model", str(tiny_ckpt),
                        *map(str, images), "--json"], capture_output=True, text=True, env=edgeage_env)
    assert p.returncode == 0, p.stderr[-3000:]
    desktop = json.loads(p.stdout)["images"]

    def ages(recs):
        return [[f["age"] for f in r["faces"]] or [r["fallback_age"]] for r in recs]

    assert [len(a) for a in ages(device)] == [len(a) for a in ages(desktop)]
    for a, b in zip(ages(device), ages(desktop)):
        assert max(abs(x - y) for x, y in zip(a, b)) <= 1e-3, (a, b)
    assert len({a[0] for a in ages(desktop)}) > 1  # the ages depend on the faces
    # one model per run: a checkpoint and an artifact together are refused
    p = subprocess.run([str(device_venv / "bin" / "edgeage"), "predict", "--artifact", str(art), "--model",
                        str(tiny_ckpt), str(images[0])], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert p.returncode != 0 and "not both" in p.stderr


def test_device_check_local_runs_the_device_side_and_compares(device_venv, exported, tiny_ckpt, face_dir,
                                                             edgeage_env, tmp_path):
    """device-check --device local: the bundle is checked by the torch-free venv's Python (the
    Android app's result format), compared on the host with the float model on the same crops."""
    py = device_venv / "bin" / "python"
    art = exported("onnx")

    def cli(*args):
        return subprocess.run([sys.executable, "-P", "-m", "edgeage.cli", "device-check", "--artifact", str(art),
                               "--model", str(tiny_ckpt), *map(str, args)], capture_output=True, text=True,
                              env=edgeage_env)

    p = cli("--device", "local", "--python", py, "--data", face_dir, "--count", 12, "--json", "--out",
            tmp_path / "rep")
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout)
    assert r["passed"] and r["n"] == 12 and r["age_abs_diff_max"] < 1e-3 and abs(r["mae_drift"]) < 1e-3
    assert r["device"]["os_name"] == "Linux" and r["device"]["cpus"] >= 1 and r["device"].get("isa_features")
    assert r["device_latency_ms"]["p50"] > 0 and "onnxruntime" in r["runtime"]["versions"]
    assert (tmp_path / "rep" / "check-result.json").is_file() and (tmp_path / "rep" / "report.html").is_file()
    # a device without the runtime: one clear error, nothing written
    p = subprocess.run([sys.executable, "-P", "-m", "edgeage.cli", "device-check", "--artifact", str(exported("openvino")),
                        "--model", str(tiny_ckpt), "--device", "local", "--python", str(py), "--data", face_dir,
                        "--count", "4", "--out", str(tmp_path / "rep2")], capture_output=True, text=True, env=edgeage_env)
    assert p.returncode != 0 and "openvino" in p.stderr and "Traceback" not in p.stderr.split("failed")[0]
    assert not (tmp_path / "rep2").exists()
    # a check that the device aborts midway (a damaged check image): a clear error, no partial result
    from edgeage.export.devices.bundle import make_bundle

    bundle = tmp_path / "bundle"
    make_bundle(art, bundle, face_dir, 4, progress=False, app=False)
    files = sorted((bundle / "check").glob("*.png"))
    files[2].write_bytes(files[2].read_bytes()[:40])
    p = subprocess.run([str(py), "-P", "-m", "edgeage.targets.device_check", str(bundle), str(tmp_path / "res.json")],
                       capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode != 0 and not (tmp_path / "res.json").exists()
    assert p.stderr.startswith("Error: ") and files[2].name in p.stderr and "Traceback" not in p.stderr
    # an interpreter that is not there
    p = cli("--device", "local", "--python", tmp_path / "no-python", "--data", face_dir, "--count", 2)
    assert p.returncode != 0 and "no such interpreter" in p.stderr


def test_device_check_local_runs_mivolo_face_plus_context(device_venv, face_dir, edgeage_env, tmp_path):
    """The dual-view mivolo through the device side: its one crop at the context margin (from the
    manifest) is made by the torch-free venv and both views are formed in the exported graph; the
    ages equal the float model's on the same photos."""
    import torch
    from conftest import perturb_bn

    from edgeage.checkpoint import build_manifest, save_checkpoint
    from edgeage.models import create

    torch.manual_seed(0)
    model = create("mivolo", dims=(24, 32), heads=(2, 2), depths=(1, 1, 1)).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            perturb_bn(m, g)
            if isinstance(m, torch.nn.Linear) and m is not model.head.fc:
                m.weight.normal_(0, m.in_features ** -0.5, generator=g)
        model.head.fc.weight.mul_(20.0)
    ckpt = tmp_path / "mivolo.pt"
    save_checkpoint(ckpt, model, build_manifest(model))
    art = tmp_path / "art"
    p = subprocess.run([sys.executable, "-P", "-m", "edgeage.cli", "export", "--target", "onnx", "--model", str(ckpt),
                        "--out", str(art)], capture_output=True, text=True, env=edgeage_env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads((art / "manifest.json").read_text())["preprocess"]["crop"]["margin"] == 2.0
    p = subprocess.run([sys.executable, "-P", "-m", "edgeage.cli", "device-check", "--artifact", str(art), "--model",
                        str(ckpt), "--device", "local", "--python", str(device_venv / "bin" / "python"), "--data",
                        str(face_dir), "--count", "10", "--json"], capture_output=True, text=True, env=edgeage_env)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout)
    assert r["passed"] and r["n"] == 10 and r["age_abs_diff_max"] < 1e-3
    assert r["float_mae"] > 0


def test_detector_and_age_model_on_one_runtime_without_torch(device_venv, exported, face_dir, edgeage_env, tmp_path):
    """The device side with both models exported to ONNX (`--artifact` + `--detector`): onnxruntime
    runs the detector and the age model, no torch; the faces and ages are the desktop's (the
    shipped .tflite detector by LiteRT, the same age artifact)."""
    from click.testing import CliRunner

    from edgeage.cli import main

    det = tmp_path / "det-onnx"
    res = CliRunner().invoke(main, ["detector", "export", "--target", "onnx", "--out", str(det)])
    assert res.exit_code == 0, res.output
    art, images = exported("onnx"), [str(p) for p in sorted(face_dir.iterdir())[:6]]
    env = {k: v for k, v in edgeage_env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    p = subprocess.run([str(device_venv / "bin" / "edgeage"), "predict", "--artifact", str(art), "--detector",
                        str(det), *images, "--json"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    device = json.loads(p.stdout)["images"]
    p = subprocess.run([sys.executable, "-P", "-m", "edgeage.cli", "predict", "--artifact", str(art), *images, "--json"],
                       capture_output=True, text=True, env=edgeage_env)
    assert p.returncode == 0, p.stderr[-3000:]
    desktop = json.loads(p.stdout)["images"]
    assert sum(len(r["faces"]) for r in desktop) >= 6
    for a, b in zip(device, desktop):
        assert len(a["faces"]) == len(b["faces"])
        for fa, fb in zip(a["faces"], b["faces"]):
            assert max(abs(x - y) for x, y in zip(fa["box"], fb["box"])) < 0.05 and abs(fa["age"] - fb["age"]) < 1e-3
