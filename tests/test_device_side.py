"""The device side (a first step of the devices issue): an exported artifact run by its
runtime alone, with PyTorch unimportable in the process, gives the same ages as the desktop
PyTorch model on real photos."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_predict_artifact_without_torch_matches_the_desktop(exported, tiny_ckpt, face_dir, edgeage_env):
    images = sorted(face_dir.iterdir())[:6]
    art = exported("onnx")
    no_torch = ("import sys; sys.modules['torch'] = None; from edgeage.cli import main; "
                "sys.argv = ['edgeage'] + sys.argv[1:]; main()")
    p = subprocess.run([sys.executable, "-c", no_torch, "predict", "--artifact", str(art), *map(str, images),
                        "--json"], capture_output=True, text=True, env=edgeage_env, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    device = json.loads(p.stdout)["images"]
    p = subprocess.run([sys.executable, "-m", "edgeage.cli", "predict", "--model", str(tiny_ckpt),
                        *map(str, images), "--json"], capture_output=True, text=True, env=edgeage_env)
    assert p.returncode == 0, p.stderr[-3000:]
    desktop = json.loads(p.stdout)["images"]

    def ages(recs):
        return [[f["age"] for f in r["faces"]] or [r["fallback_age"]] for r in recs]

    assert [len(a) for a in ages(device)] == [len(a) for a in ages(desktop)]
    for a, b in zip(ages(device), ages(desktop)):
        # predict prints ages rounded to 0.01: equal, or one rounding step apart
        assert max(abs(x - y) for x, y in zip(a, b)) <= 0.0101, (a, b)
    assert len({a[0] for a in ages(desktop)}) > 1  # the ages depend on the faces
    # one model per run: a checkpoint and an artifact together are refused
    p = subprocess.run([sys.executable, "-c", no_torch, "predict", "--artifact", str(art), "--model",
                        str(tiny_ckpt), str(images[0])], capture_output=True, text=True, env=edgeage_env, cwd=ROOT)
    assert p.returncode != 0 and "not both" in p.stderr
