"""Hardening: output folders are never someone else's files, files from elsewhere are data (never
code), and bad input gets one clear error. Each test reproduces a defect found by probing the
installed CLI (issue "Hardening"), on the real runtimes and the real CLI, no mocks."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgeage.utils import EdgeAgeError

from conftest import clean_error, cli, copy_faces


@pytest.fixture(autouse=True)
def _isolated_cache(edgeage_env):
    """Every test here uses the session's temp crop cache (never ~/.cache)."""


# ------------------------------------------------------------------------------ data safety

def test_export_refuses_a_foreign_folder_and_keeps_its_files(tiny_ckpt, tmp_path):
    u = tmp_path / "u"
    u.mkdir()
    (u / "notes.txt").write_text("x")
    res = cli("export", "--target", "onnx", "--model", tiny_ckpt, "--out", u)
    clean_error(res, "--force", "did not write", "notes.txt")
    assert sorted(p.name for p in u.iterdir()) == ["notes.txt"]
    # an empty folder, and then edgeage's own artifact, are replaced freely
    e = tmp_path / "empty"
    e.mkdir()
    assert cli("export", "--target", "onnx", "--model", tiny_ckpt, "--out", e).exit_code == 0
    first = json.loads((e / "manifest.json").read_text())["artifact"]["exported_at"]
    assert (e / ".edgeage").is_file()
    assert cli("export", "--target", "onnx", "--model", tiny_ckpt, "--out", e).exit_code == 0
    assert json.loads((e / "manifest.json").read_text())["artifact"]["exported_at"] >= first
    # --force: the user said so; edgeage replaces only what it writes, the user's file stays
    assert cli("export", "--target", "onnx", "--model", tiny_ckpt, "--out", u, "--force").exit_code == 0
    assert (u / "model.onnx").is_file() and (u / "notes.txt").read_text() == "x"
    assert cli("export", "--target", "onnx", "--model", tiny_ckpt, "--out", u, "--force").exit_code == 0
    assert (u / "notes.txt").read_text() == "x"


def test_every_writer_refuses_a_foreign_folder(onnx_art, face_dir, tiny_ckpt, tmp_path):
    u = tmp_path / "u"
    u.mkdir()
    (u / "notes.txt").write_text("x")
    img = next(face_dir.iterdir())
    for args in (["prepare", "--data", face_dir, "--out", u],
                 ["android", "bundle", "--artifact", onnx_art, "--out", u],
                 ["check", "--artifact", onnx_art, "--model", tiny_ckpt, "--runs", 0, "--limit", 2, "--out", u],
                 ["eval", "--model", tiny_ckpt, "--data", face_dir, "--out", u],
                 ["predict", img, "--model", tiny_ckpt, "--annotate", u],
                 ["quantize", "--backend", "onnx", "--model", tiny_ckpt, "--calib-data", face_dir, "--out", u],
                 ["prune", "--model", tiny_ckpt, "--ratio", 0.5, "--out", u],
                 ["train", "--recipe", "smoke", "--data", face_dir, "--out", u],
                 ["bench", "--model", tiny_ckpt, "--targets", "onnx", "--runs", 0, "--out", u],
                 ["device-check", "--artifact", onnx_art, "--data", face_dir, "--out", u]):
        res = cli(*args)
        clean_error(res, "--force")
        assert sorted(p.name for p in u.iterdir()) == ["notes.txt"], args


@pytest.mark.parametrize("bad", [".", "link", "file"])
def test_out_that_is_the_current_folder_a_link_or_a_file_is_refused(bad, tiny_ckpt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "file").write_text("x")
    before = sorted(p.name for p in tmp_path.iterdir())
    res = cli("export", "--target", "onnx", "--model", tiny_ckpt, "--out", bad, "--force")
    clean_error(res, {".": "current folder", "link": "symbolic link", "file": "is a file"}[bad])
    assert sorted(p.name for p in tmp_path.iterdir()) == before and not any((tmp_path / "real").iterdir())


def test_read_only_output_gives_a_clear_error(tiny_ckpt, tmp_path, edgeage_env):
    """A read-only file system (a private mount namespace: nothing leaks out of the test)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) not installed")
    ro = tmp_path / "ro"
    ro.mkdir()
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no mount namespaces here ({probe.stderr.decode().strip()})")
    script = (f'mount -t tmpfs -o ro tmpfs "{ro}" && exec "{sys.executable}" -m edgeage.cli export --target onnx '
              f'--model "{tiny_ckpt}" --out "{ro}/art"')
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], capture_output=True,
                       text=True, env=edgeage_env)
    clean_error(p, "not writable")


def _wait_for(pattern_dir: Path, prefix: str, proc, timeout: float = 120) -> bool:
    t = time.monotonic()
    while time.monotonic() - t < timeout and proc.poll() is None:
        if any(p.name.startswith(prefix) and p.name.endswith(".tmp") for p in pattern_dir.iterdir()):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_export_leaves_no_temp_folder(sig, tiny_ckpt, tmp_path, edgeage_env):
    out = tmp_path / "art"
    p = subprocess.Popen([sys.executable, "-P", "-m", "edgeage.cli", "export", "--target", "openvino", "--model",
                          str(tiny_ckpt), "--out", str(out)], env=edgeage_env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert _wait_for(tmp_path, ".art.", p), "the export never started writing"
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    if p.returncode == 0:  # on a loaded machine the poll above can see the temp folder just before
        # its rename: the signal then lands after the commit, and the artifact must be whole
        assert sorted(x.name for x in tmp_path.iterdir()) == ["art"]
        assert (out / "manifest.json").is_file() and (out / "model.xml").is_file()
        return
    assert p.returncode == 128 + sig, err
    assert sorted(x.name for x in tmp_path.iterdir()) == [], list(tmp_path.iterdir())


def test_a_signal_a_library_swallowed_still_stops_the_commit(tmp_path):
    """A library can swallow the handler's SystemExit or turn it into another error (a SIGTERM
    during `import openvino` became "ImportError: initialization failed", exit 1). A signal seen
    at any time before the rename stops the commit: nothing written, temps removed, 128 + sig."""
    from edgeage import utils

    try:
        try:
            utils._on_signal(signal.SIGHUP)
        except BaseException:  # noqa: BLE001 - what the library did
            pass
        with pytest.raises(SystemExit) as e:
            with utils.atomic_dir(tmp_path / "art", kind="artifact") as d:
                (d / "model.onnx").write_bytes(b"complete")
        assert e.value.code == 128 + signal.SIGHUP
        with pytest.raises(SystemExit):
            with utils.atomic_path(tmp_path / "r.json") as f:
                f.write_text("{}")
        assert list(tmp_path.iterdir()) == []
    finally:
        utils._SIGNALLED.clear()


def test_stale_temporaries_of_a_killed_run_are_removed(tiny_ckpt, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".art.{dead.pid}.abc123.tmp"
    (stale / "payload").mkdir(parents=True)
    (stale / "payload" / "model.onnx").write_bytes(b"half")
    alive = tmp_path / f".art.{os.getpid()}.def456.tmp"  # a live process's: left alone
    alive.mkdir()
    assert cli("export", "--target", "onnx", "--model", tiny_ckpt, "--out", tmp_path / "art").exit_code == 0
    assert not stale.exists() and alive.exists()


def test_a_second_writer_is_told_the_folder_is_busy(tiny_ckpt, tmp_path, edgeage_env):
    """Another process holds the destination's lock (a real flock from this test process): the
    CLI stops with a message naming it, writes nothing, and never reports a success."""
    from edgeage.utils import path_lock

    out = tmp_path / "art"
    with path_lock(out):
        p = subprocess.run([sys.executable, "-P", "-m", "edgeage.cli", "export", "--target", "onnx", "--model",
                            str(tiny_ckpt), "--out", str(out)], capture_output=True, text=True, env=edgeage_env)
    clean_error(p, "another edgeage process", str(os.getpid()))
    assert "exported" not in p.stdout and not out.exists()


def test_two_concurrent_writers_both_tell_the_truth(tiny_ckpt, tmp_path, edgeage_env):
    out = tmp_path / "art"
    cmd = [sys.executable, "-P", "-m", "edgeage.cli", "export", "--target", "onnx", "--model", str(tiny_ckpt),
           "--out", str(out)]
    procs = [subprocess.Popen(cmd, env=edgeage_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    ok = [r for r in results if r[0] == 0]
    assert ok, results
    for rc, so, se in results:  # a loser says so; a winner's artifact is intact
        assert rc == 0 or "another edgeage process" in se, se
        assert "Traceback" not in se
    from edgeage.artifact import read_manifest

    read_manifest(out)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["art"]


def test_cache_is_keyed_on_content_and_refuses_mismatched_settings(tmp_path, tmp_path_factory, tiny_ckpt):
    from edgeage.data import prepare
    from edgeage.preprocess import CropParams

    d = copy_faces(tmp_path_factory, "cache-faces", 3)
    a = prepare(d, progress=False)
    victim = sorted(d.iterdir())[0]
    other = sorted(d.iterdir())[1]
    shutil.copy(other, victim)  # replaced under the same name
    os.utime(victim, ns=(time.time_ns(), time.time_ns() + 10**9))
    b = prepare(d, progress=False)
    assert not np.array_equal(a.crops[0], b.crops[0]) and np.array_equal(b.crops[0], b.crops[1])
    # an explicit cache: stale after a change, refused when its crop settings are not the model's
    cache = tmp_path / "cache"
    assert cli("prepare", "--data", d, "--out", cache).exit_code == 0
    os.utime(victim, ns=(time.time_ns(), time.time_ns() + 5 * 10**9))
    clean_error(cli("eval", "--model", tiny_ckpt, "--data", cache), "stale")
    wide = tmp_path / "wide"
    assert cli("prepare", "--data", d, "--out", wide, "--margin", 1.6).exit_code == 0
    clean_error(cli("eval", "--model", tiny_ckpt, "--data", wide), "margin=1.6", "expects")
    assert prepare(d, CropParams(margin=1.6), progress=False).crop.margin == 1.6


# ------------------------------------------------------------------------------ security

class _Boom:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_a_checkpoint_cannot_run_code(tiny_ckpt, tmp_path, edgeage_env):
    pwned = tmp_path / "pwned"
    obj = torch.load(tiny_ckpt, weights_only=True)
    obj["manifest"]["training"]["x"] = _Boom(pwned)
    evil = tmp_path / "evil.pt"
    torch.save(obj, evil)
    res = cli("info", "--model", evil)
    clean_error(res, str(evil), "EDGEAGE_TRUST_PICKLE")
    assert not pwned.exists()
    # the same for every command that takes --model
    res = cli("export", "--target", "onnx", "--model", evil, "--out", tmp_path / "a")
    clean_error(res, str(evil))
    assert not pwned.exists() and not (tmp_path / "a").exists()


def test_old_pickled_checkpoints_load_only_through_the_opt_in(tiny_ckpt, tmp_path, monkeypatch):
    from edgeage.checkpoint import load_model

    obj = torch.load(tiny_ckpt, weights_only=True)
    obj["manifest"]["training"]["val"] = {"mae": np.float64(5.0)}  # what older versions stored
    old = tmp_path / "old.pt"
    torch.save(obj, old)
    with pytest.raises(EdgeAgeError, match="EDGEAGE_TRUST_PICKLE"):
        load_model(old)
    res = cli("checkpoint", "upgrade", old, "--out", tmp_path / "new.pt")
    clean_error(res, "--trust")
    res = cli("checkpoint", "upgrade", old, "--out", tmp_path / "new.pt", "--trust")
    assert res.exit_code == 0, res.output
    m, man = load_model(tmp_path / "new.pt")
    assert man.training.val["mae"] == 5.0
    monkeypatch.setenv("EDGEAGE_TRUST_PICKLE", "1")
    assert load_model(old)[1].model.name == man.model.name


def test_check_never_follows_the_artifacts_spec_file(onnx_art, tiny_ckpt, face_dir, tmp_path):
    """An artifact that names its own TOML (its own runner code, thresholds that pass anything)
    is run and judged by the installed target; the report names the TOML that judged it."""
    from edgeage.targets.spec import targets_dir

    art = tmp_path / "art"
    shutil.copytree(onnx_art, art)
    pwned = tmp_path / "pwned"
    (tmp_path / "evil.py").write_text(f"open({str(pwned)!r}, 'w').write('x')\nfrom edgeage.targets.onnx.runner import Runner\n")
    (tmp_path / "evil.toml").write_text('name = "onnx"\nexporter = "edgeage.targets.onnx.exporter"\nrunner = "evil.py"\n'
                                        'precisions = ["fp32"]\n[thresholds.fp32]\nmae_drift = 1e9\n')
    man = json.loads((art / "manifest.json").read_text())
    man["artifact"]["spec_file"] = str(tmp_path / "evil.toml")
    (art / "manifest.json").write_text(json.dumps(man))
    res = cli("check", "--artifact", art, "--model", tiny_ckpt, "--data", face_dir, "--runs", 0, "--json")
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert not pwned.exists()
    assert r["spec_file"] == str(targets_dir() / "onnx" / "target.toml")
    # a target that is not installed needs the user's own --target TOML
    man["artifact"]["target"] = "evil"
    (art / "manifest.json").write_text(json.dumps(man))
    clean_error(cli("check", "--artifact", art, "--model", tiny_ckpt, "--runs", 0), "--target")
    assert not pwned.exists()


@pytest.mark.parametrize("name", ["../../escaped.onnx", "/tmp/abs.onnx", "..", "sub/../../x"])
def test_file_names_in_a_manifest_cannot_leave_the_folder(name, onnx_art, tmp_path):
    art = tmp_path / "box" / "art"
    shutil.copytree(onnx_art, art)
    man = json.loads((art / "manifest.json").read_text())
    man["artifact"]["files"][0]["name"] = name
    (art / "manifest.json").write_text(json.dumps(man))
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for args in (["android", "bundle", "--artifact", art, "--out", tmp_path / "box" / "b"],
                 ["check", "--artifact", art, "--runs", 0, "--limit", 2],
                 ["export", "--target", "onnx", "--precision", "int8", "--from", art, "--out", tmp_path / "box" / "c"]):
        clean_error(cli(*args), "plain name")
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_device_result_file_names_cannot_leave_the_bundle(tmp_path):
    from edgeage.export.devices.bundle import load_result

    res = {"format": "edgeage-check-result/1", "model": {"file": "m", "sha256": "0"},
           "images": [{"file": "../../../etc/passwd", "output": [0.0], "true_age": 1, "pred_age": 1}]}
    (tmp_path / "r.json").write_text(json.dumps(res))
    with pytest.raises(EdgeAgeError, match="plain name"):
        load_result(tmp_path / "r.json")


# ------------------------------------------------------------------------------ clean errors

def _bomb(path: Path) -> Path:
    Image.new("1", (9000, 9000)).save(path, format="PNG")  # 81 M pixels in a few KB
    assert path.stat().st_size < 100_000
    return path


def test_decompression_bombs_error_and_skip_bad_skips_them(tmp_path_factory):
    d = copy_faces(tmp_path_factory, "bomb-faces", 2)
    bomb = _bomb(d / "30_0_0_20170101000000000.jpg.chip.jpg")
    clean_error(cli("prepare", "--data", d, "--out", tmp_path_factory.mktemp("o") / "c"), bomb.name, "pixels")
    res = cli("prepare", "--data", d, "--skip-bad", "--out", tmp_path_factory.mktemp("o") / "c")
    assert res.exit_code == 0 and "prepared 2 crops" in res.output and bomb.name in res.output, res.output


def test_csv_encodings(tmp_path_factory):
    d = copy_faces(tmp_path_factory, "csv-faces", 2)
    names = sorted(p.name for p in d.iterdir())
    (d / "bom.csv").write_bytes(("\ufeffpath,age,note\n" + "".join(f"{n},30,ok\n" for n in names)).encode("utf-8"))
    res = cli("prepare", "--data", d / "bom.csv", "--out", d.parent / "bom-cache")
    assert res.exit_code == 0 and "prepared 2 crops" in res.output, res.output
    (d / "latin.csv").write_bytes(("path,age,note\n" + "".join(f"{n},30,café\n" for n in names)).encode("latin-1"))
    clean_error(cli("prepare", "--data", d / "latin.csv"), "latin.csv", "UTF-8")


def test_ages_outside_the_range_are_refused(tmp_path_factory, tiny_ckpt):
    d = copy_faces(tmp_path_factory, "age-faces", 2)
    src = sorted(d.iterdir())[0]
    bad = d / ("500_" + src.name.split("_", 1)[1])
    src.rename(bad)
    clean_error(cli("eval", "--model", tiny_ckpt, "--data", d), bad.name, "outside 0..120")
    (d / "ages.csv").write_text("path,age\n" + "".join(f"{p.name},{a}\n" for p, a in zip(sorted(d.glob("*.jpg")),
                                                                                       (30, -2))))
    clean_error(cli("eval", "--model", tiny_ckpt, "--data", d / "ages.csv"), "ages.csv:3", "outside")
    res = cli("eval", "--model", tiny_ckpt, "--data", d, "--skip-bad", "--json")
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["n"] == 1 and r["skipped"] == 1 and bad.name in r["skipped_files"][0]
    res = cli("eval", "--model", tiny_ckpt, "--data", d, "--skip-bad")
    assert "skipped:" in res.output and bad.name in res.output


def _ckpt_variant(tiny_ckpt, tmp_path, name, edit) -> Path:
    obj = torch.load(tiny_ckpt, weights_only=True)
    edit(obj)
    p = tmp_path / name
    torch.save(obj, p)
    return p


@pytest.mark.parametrize("case,words", [
    ("shape", ["do not fit", "size mismatch"]),
    ("unknown-model", ["unknown model", "no-such-net"]),
    ("no-manifest", ["no manifest"]),
    ("missing-field", ["preprocess.normalize", "missing"]),
    ("not-a-checkpoint", ["not an edgeage checkpoint"]),
])
def test_bad_checkpoints_get_one_clear_error(case, words, tiny_ckpt, tmp_path):
    def edit(o):
        if case == "shape":
            k = next(k for k, v in o["state_dict"].items() if v.dim() == 4)
            o["state_dict"][k] = torch.zeros(3, 3, 3, 3)
        elif case == "unknown-model":
            o["manifest"]["model"]["name"] = "no-such-net"
        elif case == "no-manifest":
            del o["manifest"]
        elif case == "missing-field":
            del o["manifest"]["preprocess"]["normalize"]
        else:
            o["format"] = "something-else"

    p = _ckpt_variant(tiny_ckpt, tmp_path, f"{case}.pt", edit)
    clean_error(cli("info", "--model", p), str(p), *words)


@pytest.mark.parametrize("args,option", [
    (["check", "--target", "onnx", "--limit", 0], "--limit"),
    (["check", "--target", "onnx", "--rounds", 0], "--rounds"),
    (["check", "--target", "onnx", "--runs", -1], "--runs"),
    (["bench", "--warmup", -1], "--warmup"),
    (["eval", "--data", ".", "--degrade-p", 2], "--degrade-p"),
    (["export", "--target", "onnx", "--calib-images", 0], "--calib-images"),
    (["quantize", "--backend", "onnx", "--epochs", 0], "--epochs"),
    (["train", "--recipe", "mgpnet-t", "--epochs", 0], "--epochs"),
    (["android", "bundle", "--artifact", ".", "--out", "x", "--check-count", 0], "--check-count"),
    (["prepare", "--data", ".", "--margin", 0], "--margin"),
])
def test_out_of_range_numeric_options_are_usage_errors(args, option):
    res = cli(*args)
    assert res.exit_code == 2 and option in res.output and "Traceback" not in res.output, res.output


def test_training_with_an_empty_validation_split_or_unknown_model_leaves_nothing(face_dir, tmp_path):
    for i, (sec, body, words) in enumerate([
            ("data", "val = 0.001", ["val split is empty"]),
            ("data", "val = 0.0", ["[data] val", "greater than 0"]),
            ("model", 'name = "no-such-net"', ["unknown model", "no-such-net"]),
            ("train", 'batch_size = "ten"', ["batch_size", "int"])]):
        r = tmp_path / f"r{i}.toml"
        r.write_text(f'[{sec}]\n{body}\n' + (f'[data]\npath = "{face_dir}"\n' if sec != "data" else
                                             f'path = "{face_dir}"\n'))
        out = tmp_path / f"run{i}"
        res = cli("train", "--recipe", r, "--out", out, "--epochs", 1)
        clean_error(res, *words)
        assert not out.exists(), out


def test_a_toml_whose_precisions_is_a_string_is_refused(tiny_ckpt, tmp_path):
    t = tmp_path / "t.toml"
    t.write_text('name = "t"\nexporter = "edgeage.targets.onnx.exporter"\nrunner = "edgeage.targets.onnx.runner"\n'
                 'precisions = "fp32"\n')
    clean_error(cli("export", "--target", t, "--model", tiny_ckpt), "precisions", "list")
    t.write_text('name = "t"\nexporter = "edgeage.targets.onnx.exporter"\nrunner = "edgeage.targets.onnx.runner"\n'
                 'precisions = ["fp32"]\n[thresholds.fp32]\nmae_drift = "small"\n')
    clean_error(cli("export", "--target", t, "--model", tiny_ckpt), "thresholds.fp32.mae_drift")


def test_predict_goes_past_a_bad_image_and_never_overwrites_an_annotation(face_dir, tiny_ckpt, tmp_path):
    good = sorted(face_dir.iterdir())[:2]
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    shutil.copy(good[0], a / "face.jpg")
    shutil.copy(good[1], b / "face.jpg")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    out = tmp_path / "ann"
    res = cli("predict", a / "face.jpg", broken, b / "face.jpg", "--model", tiny_ckpt, "--annotate", out, "--json")
    assert res.exit_code == 1, res.output
    r = json.loads(res.stdout)
    assert [("error" in x) for x in r["images"]] == [False, True, False] and r["failed"] == 1
    assert "broken.jpg" in r["images"][1]["error"]
    files = sorted(p.name for p in out.iterdir() if p.suffix == ".png")
    assert files == ["face_age-2.png", "face_age.png"]
    assert r["images"][0]["annotated"] != r["images"][2]["annotated"]
    res = cli("predict", a / "face.jpg", broken, "--model", tiny_ckpt)
    assert res.exit_code == 1 and "face.jpg: " in res.output and "broken.jpg" in res.output
