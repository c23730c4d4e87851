"""The device side (a first step of the devices issue): an exported artifact run by its runtime
alone, in a separate virtual environment where `import torch` fails (the package installed
without its dependencies + requirements-device.txt + onnxruntime), gives the same ages as the
desktop PyTorch model on real photos."""
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
    for args in (["--no-deps", str(ROOT)], ["-r", str(ROOT / "requirements-device.txt"), "onnxruntime==1.31.1"]):
        p = subprocess.run(pip + args, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr[-3000:]
    return venv


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
    p = subprocess.run([sys.executable, "-m", "edgeage.cli", "predict", "--model", str(tiny_ckpt),
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
