"""Adding a target touches nothing outside its folder: a throw-away target, written here in a
temp folder (its own exporter and runner, real ONNX Runtime), is found through
EDGEAGE_TARGET_PATH and exported, checked and benched like a shipped one."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TOML = '''# a throw-away target: ONNX through the legacy (TorchScript) exporter, fixed batch 1
precisions = ["fp32"]
exporter = "exporter.py"
runner = "runner.py"
packages = ["onnxruntime"]
[runtime]
threads = 1
[thresholds.fp32]
age_abs_diff_max = 0.05
argmax_agreement_min = 0.99
mae_drift = 0.01
'''
EXPORTER = '''"""Exporter of the throw-away target (edgeage.backend.Exporter)."""
from pathlib import Path

import torch

from edgeage.backend import step


def export(model, example, out_dir, precision, spec, calib=None):
    with step("torch.onnx.export (legacy)"):
        torch.onnx.export(model, (example[:1],), str(Path(out_dir) / "net.onnx"), dynamo=False,
                          input_names=["x"], output_names=["y"], opset_version=17)
    return ["net.onnx"]
'''
RUNNER = '''"""Runner of the throw-away target (edgeage.backend.Runner): batch 1, image by image."""
import numpy as np
import onnxruntime as ort

from edgeage.targets.runner import BaseRunner


class Runner(BaseRunner):
    def __init__(self, artifact_dir, manifest, spec, threads):
        super().__init__(artifact_dir, manifest, spec, threads)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        self.sess = ort.InferenceSession(str(self.path(".onnx")), so, providers=["CPUExecutionProvider"])

    def run(self, x):
        return np.concatenate([self.sess.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])
'''


def test_a_throw_away_target_works_from_its_folder_alone(tmp_path, tiny_ckpt, face_dir, edgeage_env):
    folder = tmp_path / "my-targets" / "legacy-onnx"
    folder.mkdir(parents=True)
    (folder / "target.toml").write_text(TOML)
    (folder / "exporter.py").write_text(EXPORTER)
    (folder / "runner.py").write_text(RUNNER)
    before = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                            capture_output=True, text=True).stdout
    env = {**edgeage_env, "EDGEAGE_TARGET_PATH": str(tmp_path / "my-targets")}

    def cli(*args):
        return subprocess.run([sys.executable, "-P", "-m", "edgeage.cli", *map(str, args)], capture_output=True,
                              text=True, env=env)

    art = tmp_path / "art"
    p = cli("export", "--target", "legacy-onnx", "--model", tiny_ckpt, "--out", art)
    assert p.returncode == 0, p.stderr[-2000:]
    man = json.loads((art / "manifest.json").read_text())
    assert man["artifact"]["target"] == "legacy-onnx" and [f["name"] for f in man["artifact"]["files"]] == ["net.onnx"]
    p = cli("check", "--artifact", art, "--model", tiny_ckpt, "--data", face_dir, "--runs", 5, "--rounds", 1,
            "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout)
    assert r["passed"] and r["target"] == "legacy-onnx" and r["spec_file"] == str(folder / "target.toml")
    assert r["age_abs_diff_max"] < 1e-3 and r["mae_drift"] is not None
    p = cli("bench", "--model", tiny_ckpt, "--targets", "legacy-onnx,onnx", "--precisions", "fp32", "--limit", 8,
            "--runs", 2, "--rounds", 1, "--warmup", 1, "--out", tmp_path / "bench", "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    assert sorted(row["target"] for row in json.loads(p.stdout)["rows"]) == ["legacy-onnx", "onnx"]
    # without the search path the target is unknown again; nothing in the repository changed
    p = subprocess.run([sys.executable, "-P", "-m", "edgeage.cli", "export", "--target", "legacy-onnx"],
                       capture_output=True, text=True, env={k: v for k, v in env.items() if k != "EDGEAGE_TARGET_PATH"})
    assert p.returncode != 0 and "unknown target 'legacy-onnx'" in p.stderr and "EDGEAGE_TARGET_PATH" in p.stderr
    after = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                           capture_output=True, text=True).stdout
    assert after == before
    assert os.environ.get("EDGEAGE_TARGET_PATH") is None
