"""Installs that work as written: the README's set-up command (a plain, non-editable `pip install`
into a fresh venv, then export + check), run exactly as written from a repository root (the
checkout's own `edgeage/` folder lies in the working directory: the case that failed with `No
module named 'edgeage.export'`), then the README's Quick start lines in order, exactly as written."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import copy_faces

ROOT = Path(__file__).resolve().parents[1]


def readme_commands(section: str) -> list[str]:
    """The indented (code) lines of the README's first code block under ``## {section}``
    (Quick start) or, for ``Set-up``, the first one."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("## ") and section in ln)
    block, inside = [], False
    for ln in lines[start + 1:]:
        if ln.startswith("## "):
            break
        if ln.startswith("    ") and ln.strip():
            inside = True
            block.append(ln.strip())
        elif inside:
            break
    assert block, f"README has no code block under {section}"
    return block


def _strip_comment(line: str) -> str:
    return line.split("  #", 1)[0].strip()


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory):
    """A copy of the repository's files (what a fresh clone holds; no venv, no build output)."""
    dst = tmp_path_factory.mktemp("clone") / "edgeage"
    skip = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", ".cache", "runs", "artifacts", "bench",
                                  "site", "__pycache__", ".gradle", "android-demo")
    shutil.copytree(ROOT, dst, ignore=skip)
    return dst


def test_readme_setup_and_quick_start_run_as_written(repo_copy, face_dir, tmp_path_factory):
    from edgeage.data import load_image
    from edgeage.video import compose_clip, default_paths

    faces = sorted(face_dir.iterdir())
    shutil.copy(faces[0], repo_copy / "photo.jpg")
    shutil.copytree(copy_faces(tmp_path_factory, "my-photos", 40), repo_copy / "my-photos")
    compose_clip([load_image(f) for f in faces[1:3]], repo_copy / "clip.mp4", default_paths(2, 24), frames=24, fps=12)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(str(ROOT)))
    env.setdefault("OMP_NUM_THREADS", "1")
    setup = readme_commands("Set-up")[0]
    assert "pip install \"." in setup and " -e " not in setup, setup  # non-editable, as a user installs
    p = subprocess.run(["bash", "-c", setup], cwd=repo_copy, env=env, capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    venv = repo_copy / ".venv"
    site = subprocess.run([str(venv / "bin" / "python"), "-P", "-c", "import edgeage; print(edgeage.__file__)"],
                          capture_output=True, text=True, cwd=repo_copy / "my-photos")
    assert str(venv) in site.stdout, site.stdout + site.stderr  # the installed copy, not the checkout
    assert subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "check"], capture_output=True).returncode == 0
    for line in readme_commands("Quick start"):
        cmd = f". .venv/bin/activate && {_strip_comment(line)}"
        p = subprocess.run(["bash", "-c", cmd], cwd=repo_copy, env=env, capture_output=True, text=True, timeout=900)
        assert p.returncode == 0 and "Traceback" not in p.stderr, (line, p.stdout[-2000:], p.stderr[-3000:])
    assert (repo_copy / "clip_ages.mp4").stat().st_size > 0 and (repo_copy / "my-bench" / "bench.json").is_file()
    assert (repo_copy / "art-int8" / "manifest.json").is_file() and any((repo_copy / "out").iterdir())
