"""Shared fixtures: a few real UTKFace images, an isolated prepare cache, a tiny checkpoint with
non-trivial outputs, and artifacts exported once per (target, precision) for the session."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from edgeage.utils import python_module_cmd

UTK = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "utkface"
N_FACES = 24


def _as_at_a_terminal():
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn_cli(*args, env, **kw) -> subprocess.Popen:
    """``python -m edgeage.cli ARGS`` as a user starts it at a terminal, to send it signals: SIGINT
    at its default (a suite started in the background, ``pytest &``, inherits SIGINT ignored, and a
    Ctrl-C test would then test nohup). Text pipes for stdout and stderr."""
    return subprocess.Popen(python_module_cmd("edgeage.cli", *args), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_as_at_a_terminal, **kw)


@pytest.fixture(scope="session")
def edgeage_env(tmp_path_factory):
    """EDGEAGE_CACHE in a temp folder for this process, and an env for CLI subprocesses."""
    cache = tmp_path_factory.mktemp("edgeage-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEAGE_CACHE", str(cache))
        mp.setenv("NO_ALBUMENTATIONS_UPDATE", "1")
        torch.set_num_threads(1)
        yield {**os.environ, "OMP_NUM_THREADS": "1"}


def copy_faces(tmp_path_factory, name: str, n: int = None):
    """``n`` real UTKFace images spread over the (age-sorted) file list, copied to a new folder.
    Fails (never skips) when the data set is missing: every test here needs real faces."""
    n = n or N_FACES
    files = sorted(os.listdir(UTK)) if UTK.is_dir() else []
    if len(files) < n:
        pytest.fail(f"UTKFace images missing under {UTK} (the tests need ../shared/datasets/utkface)")
    d = tmp_path_factory.mktemp(name)
    for f in files[:: len(files) // n][:n]:
        shutil.copy(UTK / f, d / f)
    return d


@pytest.fixture(scope="session")
def face_dir(tmp_path_factory, edgeage_env):
    """N_FACES real UTKFace images spread over the (age-sorted) file list."""
    return copy_faces(tmp_path_factory, "faces")


def lively_model(head_scale: float, **cfg):
    """A random model (eval mode) whose outputs depend on the input: BN statistics and affine
    parameters perturbed (the default init zeroes every residual branch), logits scaled so ages
    spread over years. Seeded."""
    from edgeage.models import create

    torch.manual_seed(0)
    model = create("mgpnet-t", **cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            perturb_bn(m, g)
        model.head.fc.weight.mul_(head_scale)
    return model


def perturb_bn(m, g) -> None:
    """Seeded BatchNorm affine parameters and statistics (no-op on other modules)."""
    if isinstance(m, torch.nn.BatchNorm2d):
        n = m.num_features
        with torch.no_grad():
            m.weight.copy_(0.5 + torch.rand(n, generator=g))
            m.bias.copy_(0.2 * torch.randn(n, generator=g))
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """A small MGP-Net checkpoint (random init, eval mode) whose outputs depend on the input:
    BN statistics and affine parameters perturbed (the default init zeroes every residual
    branch), logits scaled so ages spread over years."""
    from edgeage.checkpoint import build_manifest, save_checkpoint

    model = lively_model(20.0, widths=(8, 16, 16, 32), depths=(1, 1, 1, 1))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model, build_manifest(model))
    return path


@pytest.fixture(scope="session")
def exported(tmp_path_factory, tiny_ckpt, edgeage_env):
    """exported(target, precision="fp32") -> artifact folder of tiny_ckpt (exported once, through
    the CLI)."""
    from click.testing import CliRunner

    from edgeage.cli import main

    root, done = tmp_path_factory.mktemp("artifacts"), {}

    def get(target: str, precision: str = "fp32") -> Path:
        if (target, precision) not in done:
            out = root / f"{target}-{precision}"
            res = CliRunner().invoke(main, ["export", "--target", target, "--model", str(tiny_ckpt),
                                            "--precision", precision, "--out", str(out)])
            assert res.exit_code == 0, res.output
            done[target, precision] = out
        return done[target, precision]

    return get


@pytest.fixture(scope="session")
def edgeage_cli(edgeage_env):
    """edgeage_cli(*args) runs the CLI in a fresh process (stdout and stderr kept apart)."""

    def run(*args) -> subprocess.CompletedProcess:
        return subprocess.run(python_module_cmd("edgeage.cli", *args), capture_output=True,
                              text=True, env=edgeage_env, timeout=900)  # a hang fails the test

    return run


def clean_error(res, *words):
    """One `Error:` line naming the culprit, exit != 0, never a traceback."""
    out = res.output if hasattr(res, "output") else res.stdout + res.stderr
    code = res.exit_code if hasattr(res, "exit_code") else res.returncode
    assert code != 0, out
    assert "Traceback" not in out and "Error" in out, out
    for w in words:
        assert str(w) in out, (w, out)
    return out


def cli(*args):
    """The CLI in this process (click's runner): exit code and output."""
    from click.testing import CliRunner

    from edgeage.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="session")
def onnx_art(exported):
    return exported("onnx")
