"""Trust, round 2 (issue 25): one mechanism per class of defect, each tested on the real CLI and
runtimes (no mocks). Classes: code from the current folder, ownership of output folders (a marker,
never look-alike files; an --out never holds an input; --force replaces only edgeage's files),
symlinked locks, one interrupt policy, damaged fields of every file type (one schema library),
nan / inf / huge options, ssh URLs, "not judged", quiet logs."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeage.utils import EdgeAgeError

from conftest import clean_error as one_error, cli, spawn_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_cache(edgeage_env):
    """The session's temp crop cache (never ~/.cache)."""


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------ code from the cwd

def _plant_target(folder: Path, sentinel: Path) -> None:
    """A folder named like a shipped target whose runner, if ever imported, leaves a file and
    declares every check passed."""
    folder.mkdir()
    (folder / "target.toml").write_text('exporter = "evil.py"\nrunner = "evil.py"\nprecisions = ["fp32"]\n'
                                        '[thresholds.fp32]\nmae_drift = 1000.0\n')
    (folder / "evil.py").write_text(f"open({str(sentinel)!r}, 'w').write('ran')\n")


def test_a_folder_in_the_current_directory_is_never_a_target(onnx_art, tiny_ckpt, face_dir, tmp_path,
                                                             monkeypatch):
    sentinel = tmp_path / "RAN"
    work = tmp_path / "work"
    work.mkdir()
    _plant_target(work / "onnx", sentinel)
    monkeypatch.chdir(work)
    img = sorted(face_dir.iterdir())[0]
    # the artifact's own target name, a bare --target name, check, predict and the device side
    assert cli("predict", "--artifact", onnx_art, img, "--json").exit_code == 0
    res = cli("check", "--artifact", onnx_art, "--model", tiny_ckpt, "--target", "onnx", "--runs", 0,
              "--limit", 2, "--json")
    assert res.exit_code == 0, res.output
    from edgeage.targets.runner import load_runner
    from edgeage.targets.spec import load_spec

    assert load_runner(onnx_art).spec.file == load_spec("onnx").file != str(work / "onnx" / "target.toml")
    assert not sentinel.exists()
    # a path is the user's explicit choice (and its modules are code, as documented)
    assert load_spec("./onnx").file == str((work / "onnx" / "target.toml").resolve())


def test_an_artifact_naming_a_path_as_its_target_is_refused(onnx_art, tmp_path):
    art = _copy(onnx_art, tmp_path / "art")
    man = json.loads((art / "manifest.json").read_text())
    man["artifact"]["target"] = "../onnx"
    (art / "manifest.json").write_text(json.dumps(man))
    one_error(cli("predict", "--artifact", art, str(art / "manifest.json")), "artifact.target")


def test_subprocesses_never_import_from_the_current_folder(tmp_path):
    """Every Python subprocess edgeage starts (latency, pip for the emulated device) runs with -P:
    a folder named ``edgeage`` in the working folder (a checkout's root, or one planted) is not
    imported in place of the installed package."""
    from edgeage.utils import python_module_cmd

    cmd = python_module_cmd("edgeage.export.conformance.latency", "x")
    assert cmd[:3] == [sys.executable, "-P", "-m"] and cmd[3:] == ["edgeage.export.conformance.latency", "x"]
    (tmp_path / "edgeage").mkdir()
    (tmp_path / "edgeage" / "__init__.py").write_text("raise SystemExit('planted package imported')\n")
    p = subprocess.run([*cmd[:2], "-c", "import edgeage; print(edgeage.__file__)"], capture_output=True, text=True,
                       cwd=tmp_path)
    assert p.returncode == 0 and str(tmp_path) not in p.stdout, p.stdout + p.stderr


# ------------------------------------------------------------------------------ output ownership

@pytest.mark.parametrize("name, body", [("bench.json", {"rows": []}), ("metrics.json", {"history": []}),
                                        ("meta.json", {"list_hash": "x"}),
                                        (".edgeage", {"written_by": "edgeage", "kind": "artifact"})])
def test_look_alike_files_do_not_make_a_folder_edgeages(name, body, tiny_ckpt, tmp_path):
    u = tmp_path / "u"
    u.mkdir()
    (u / name).write_text(json.dumps(body))
    (u / "thesis.tex").write_text("years of work")
    one_error(cli("export", "--target", "onnx", "--model", tiny_ckpt, "--out", u), "--force", "thesis.tex")
    assert (u / "thesis.tex").read_text() == "years of work" and not (u / "model.onnx").exists()


def test_an_out_that_holds_an_input_is_refused_even_with_force(tiny_ckpt, tmp_path):
    from edgeage.utils import output_dir

    run = output_dir(tmp_path / "run", kind="training-run")
    shutil.copy(tiny_ckpt, run / "best.pt")
    before = (run / "best.pt").read_bytes()
    for extra in ([], ["--force"]):
        one_error(cli("export", "--target", "onnx", "--model", run / "best.pt", "--out", run, *extra), "input")
        assert (run / "best.pt").read_bytes() == before
    # an out equal to the input file's folder's parent too
    one_error(cli("eval", "--model", run / "best.pt", "--data", tmp_path / "run", "--out", tmp_path), "input")


def test_force_replaces_only_what_edgeage_wrote(tmp_path):
    from edgeage.utils import MARKER, atomic_dir, read_marker

    out = tmp_path / "o"
    with atomic_dir(out) as d:
        (d / "old.bin").write_text("1")
    (out / "mine.txt").write_text("user")
    with pytest.raises(EdgeAgeError, match="mine.txt"):
        with atomic_dir(out) as d:
            (d / "new.bin").write_text("2")
    with atomic_dir(out, force=True) as d:
        (d / "new.bin").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "mine.txt", "new.bin"])
    mark = read_marker(out)
    assert mark["files"] == ["new.bin"] and len(mark["id"]) == 32


def test_single_file_outputs_are_not_overwritten_without_force(face_dir, tiny_ckpt, tmp_path):
    victim = tmp_path / "grid.png"
    victim.write_bytes(b"precious")
    one_error(cli("degrade", "--data", face_dir, "--preview", victim, "--images", 1, "--per-image", 1), "--force")
    assert victim.read_bytes() == b"precious"
    assert cli("degrade", "--data", face_dir, "--preview", victim, "--images", 1, "--per-image", 1,
               "--force").exit_code == 0
    notes = tmp_path / "notes.pt"
    notes.write_bytes(b"mine")
    one_error(cli("checkpoint", "upgrade", tiny_ckpt, "--out", notes, "--trust"), "--force")
    assert notes.read_bytes() == b"mine"


def test_a_lock_planted_as_a_symlink_is_never_written_through(tiny_ckpt, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / ".art.lock").symlink_to(victim)
    one_error(cli("export", "--target", "onnx", "--model", tiny_ckpt, "--out", tmp_path / "art"), "symbolic link")
    assert victim.read_text() == "keep me" and not (tmp_path / "art").exists()


def test_report_folders_are_locked_while_written(tmp_path, face_dir, tiny_ckpt, edgeage_env):
    from edgeage.utils import path_lock

    out = tmp_path / "ev"
    with path_lock(out):
        p = subprocess.run([sys.executable, "-P", "-m", "edgeage.cli", "eval", "--model", str(tiny_ckpt), "--data",
                            str(face_dir), "--out", str(out)], capture_output=True, text=True, env=edgeage_env)
    one_error(p, "another edgeage process")
    assert not out.exists() or not any(out.iterdir())


# ------------------------------------------------------------------------------ interrupts

def test_ctrl_c_inside_a_library_callback_is_not_lost(tmp_path):
    """A KeyboardInterrupt a library swallowed (a runtime's callback): nothing is committed and
    the exit is 130."""
    from edgeage import utils

    try:
        try:
            utils._on_signal(signal.SIGINT)
        except KeyboardInterrupt:  # what the library did with it
            pass
        with pytest.raises(SystemExit) as e:
            with utils.atomic_dir(tmp_path / "art", kind="artifact") as d:
                (d / "model.onnx").write_bytes(b"complete")
        assert e.value.code == 130 and list(tmp_path.iterdir()) == []
    finally:
        utils._SIGNALLED.clear()


@pytest.mark.parametrize("sig, delay", [(signal.SIGINT, 0.4), (signal.SIGTERM, 0.4), (signal.SIGINT, None)])
def test_a_signal_at_any_time_exits_128_plus_signal_with_nothing_written(sig, delay, tiny_ckpt, tmp_path,
                                                                         edgeage_env):
    """``delay`` 0.4 s: during the imports (torch, openvino); None: once the export writes."""
    out = tmp_path / "art"
    p = spawn_cli("export", "--target", "openvino", "--model", tiny_ckpt, "--out", out, env=edgeage_env)
    if delay is not None:
        time.sleep(delay)
    else:
        t = time.monotonic()
        while p.poll() is None and time.monotonic() - t < 120 and not any(
                x.name.startswith(".art.") and x.name.endswith(".tmp") for x in tmp_path.iterdir()):
            time.sleep(0.05)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    if p.returncode == 0:  # finished just before the signal: then the artifact is whole
        assert (out / "manifest.json").is_file()
        return
    assert p.returncode == 128 + sig, err
    assert "Traceback" not in err and sorted(x.name for x in tmp_path.iterdir()) == [], err


def test_bench_stops_on_ctrl_c(tiny_ckpt, tmp_path, edgeage_env):
    out = tmp_path / "b"
    p = spawn_cli("bench", "--model", tiny_ckpt, "--targets", "onnx,openvino", "--precisions", "fp32",
                  "--runs", "100000", "--rounds", "3", "--out", out, env=edgeage_env)
    time.sleep(12)
    p.send_signal(signal.SIGINT)
    so, err = p.communicate(timeout=180)
    assert p.returncode == 130, (so, err)
    assert "ERROR" not in so and not (out / "bench.json").exists()


# ------------------------------------------------------------------------------ damaged files

@pytest.mark.parametrize("edit, field", [
    (lambda m: m["preprocess"]["normalize"].update(input_size="64"), "preprocess.normalize.input_size"),
    (lambda m: m["artifact"].update(precision=5), "artifact.precision"),
    (lambda m: m["readout"].update(age_max=float("inf")), "readout.age_max"),
    (lambda m: m["model"].update(widths=[10 ** 9] * 4), "widths"),
    (lambda m: m.update(versions=json.loads("[" * 40 + "]" * 40)), "nested"),
])
def test_a_damaged_artifact_manifest_is_one_error_naming_the_field(edit, field, onnx_art, face_dir, tmp_path):
    art = _copy(onnx_art, tmp_path / "art")
    man = json.loads((art / "manifest.json").read_text())
    edit(man)
    (art / "manifest.json").write_text(json.dumps(man))
    one_error(cli("predict", "--artifact", art, sorted(face_dir.iterdir())[0]), "manifest.json", field)


def test_an_onnx_external_data_file_no_sha256_covers_is_never_loaded(onnx_art, face_dir, tmp_path):
    """The weights moved to an external-data file beside model.onnx, the manifest's sha256 of
    model.onnx updated (as an export that forgot the data file would leave it): the runtime gets
    the verified bytes only, so the unverified weights are never used; one clear error."""
    import onnx

    from edgeage.utils import sha256_file

    art = _copy(onnx_art, tmp_path / "art")
    m = onnx.load(str(art / "model.onnx"))
    onnx.save(m, str(art / "model.onnx"), save_as_external_data=True, location="weights.bin", size_threshold=0)
    man = json.loads((art / "manifest.json").read_text())
    f = next(f for f in man["artifact"]["files"] if f["name"] == "model.onnx")
    f.update(sha256=sha256_file(art / "model.onnx"), size=(art / "model.onnx").stat().st_size)
    (art / "manifest.json").write_text(json.dumps(man))
    assert (art / "weights.bin").stat().st_size > 10_000
    one_error(cli("predict", "--artifact", art, sorted(face_dir.iterdir())[0]), "model.onnx")


def test_an_export_lists_every_file_it_wrote(onnx_art):
    man = json.loads((onnx_art / "manifest.json").read_text())
    listed = {f["name"] for f in man["artifact"]["files"]}
    assert listed == {p.name for p in onnx_art.iterdir()} - {"manifest.json", ".edgeage"}


@pytest.mark.parametrize("line, key", [("lr = nan", "[train] lr"), ("lr = inf", "[train] lr"),
                                       ("lr = 1e9", "[train] lr"), ("epochs = \"3\"", "[train] epochs"),
                                       ("batch_size = 10000000", "[train] batch_size")])
def test_a_damaged_recipe_is_one_error_naming_the_key(line, key, face_dir, tmp_path):
    r = tmp_path / "r.toml"
    r.write_text(f'[model]\nname = "mgpnet-t"\n[train]\n{line}\n')
    one_error(cli("train", "--recipe", r, "--data", face_dir, "--out", tmp_path / "run"), str(r), key)
    assert not (tmp_path / "run").exists()


def test_a_deeply_nested_recipe_is_one_error(face_dir, tmp_path):
    r = tmp_path / "deep.toml"
    r.write_text("x = " + "[" * 3000 + "]" * 3000 + "\n")
    one_error(cli("train", "--recipe", r, "--data", face_dir, "--out", tmp_path / "run"), "nested")


@pytest.mark.parametrize("line, field", [("input_size = -1", "input_size"), ("mean = [nan, 0.0, 0.0]", "mean.0"),
                                         ("runtime = \"tensorrt\"", "runtime"), ("age_scale = \"100\"", "age_scale")])
def test_a_damaged_peer_toml_is_one_error_naming_the_field(line, field, tmp_path):
    from edgeage.export.conformance.peer import load_peer

    (tmp_path / "m.onnx").write_bytes(b"x")
    base = {"name": '"p"', "model": '"m.onnx"', "runtime": '"onnxruntime"', "precision": '"fp32"',
            "input_size": "62"}
    key = line.split(" = ")[0]
    base[key] = line.split(" = ", 1)[1]
    t = tmp_path / "peer.toml"
    t.write_text("".join(f"{k} = {v}\n" for k, v in base.items()))
    with pytest.raises(EdgeAgeError, match=field):
        load_peer(t)


def test_bundle_labels_and_check_results_are_checked(onnx_art, face_dir, tmp_path):
    from edgeage.export.devices.bundle import load_result
    from edgeage.targets.device_check import bundle_labels

    labels = tmp_path / "labels.csv"
    for body, words in (("file,age\n0000.png,1000000\n", ["line 2", "age"]),
                        ("file,age\n0000.png,nan\n", ["line 2", "age"]),
                        ("file,age\n../x.png,30\n", ["line 2", "plain name"]),
                        ("name,years\n0000.png,30\n", ["file,age"])):
        labels.write_text(body)
        with pytest.raises(EdgeAgeError) as e:
            bundle_labels(labels)
        assert all(w in str(e.value) for w in words), (body, e.value)
    res = tmp_path / "result.json"
    res.write_text(json.dumps({"format": "edgeage-check-result/1", "model": {},
                               "images": [{"file": "0000.png", "output": [float("nan"), 1.0]}]}))
    with pytest.raises(EdgeAgeError, match=r"images\.0\.output\.0"):
        load_result(res)


def test_sixteen_bit_images_are_scaled_not_saturated(tmp_path):
    from edgeage.data import load_image

    a = np.tile(np.linspace(0, 65535, 64), (64, 1)).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    x = load_image(tmp_path / "g16.png")
    assert x.shape == (64, 64, 3) and x.dtype == np.uint8
    assert abs(float(x.mean()) - 127.5) < 2 and x[:, 0].max() == 0  # a ramp, not a white image


# ------------------------------------------------------------------------------ options and URLs

@pytest.mark.parametrize("args", [["eval", "--data", ".", "--degrade-p", "nan"],
                                  ["train", "--recipe", "smoke", "--lr", "inf"],
                                  ["bench", "--threads", "100000"],
                                  ["pipeline-bench", "--photos", ".", "--threads", "100000"],
                                  ["check", "--runs", "10000000000"]])
def test_nan_inf_and_huge_options_are_usage_errors(args):
    res = cli(*args)
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output


@pytest.mark.parametrize("url", ["ssh://-oProxyCommand=touch%20/tmp/pwned@host", "ssh://user@-oProxyCommand=x",
                                 "ssh://user@host:99999", "ssh://user@[::1", "ssh://us;er@host"])
def test_a_malformed_ssh_url_is_refused(url):
    from edgeage.export.devices.kinds.ssh import SshDevice

    with pytest.raises(EdgeAgeError, match="--device"):
        SshDevice.parse(url)


def test_ssh_never_reads_the_destination_as_an_option():
    from edgeage.export.devices.kinds.ssh import SshDevice

    cmd = SshDevice.parse("ssh://pi@board.local:2222").ssh("true")
    assert cmd[cmd.index("--") + 1] == "pi@board.local" and cmd[-1] == "true"


# ------------------------------------------------------------------------------ verdicts and logs

def test_a_check_with_no_threshold_applied_is_not_judged():
    from edgeage.backend import TargetSpec
    from edgeage.export.conformance.check import judge
    from edgeage.export.conformance.report import verdict, verdict_line

    spec = TargetSpec("t", "", "", ("int8",), "t.toml", thresholds={"int8": {"mae_drift": 0.5, "age_abs_diff_max": 15.0}})
    r = judge({"mae_drift": None, "age_abs_diff_max": 40.0}, spec, "int8", faces=False)
    assert r.passed and not r.judged and verdict(r) == "NOT JUDGED"
    assert verdict_line(r).startswith("NOT JUDGED") and "PASSED" not in verdict_line(r)
    r = judge({"mae_drift": 0.1, "age_abs_diff_max": 4.0}, spec, "int8", faces=True)
    assert r.judged and verdict(r) == "PASSED"


def test_quiet_by_default_and_verbose_on_request(face_dir, tiny_ckpt, edgeage_env):
    img = str(sorted(face_dir.iterdir())[0])
    base = [sys.executable, "-P", "-m", "edgeage.cli"]
    quiet = subprocess.run(base + ["predict", img, "--model", str(tiny_ckpt)], capture_output=True, text=True,
                           env=edgeage_env)
    loud = subprocess.run(base + ["-v", "predict", img, "--model", str(tiny_ckpt)], capture_output=True,
                          text=True, env=edgeage_env)
    assert quiet.returncode == 0 and loud.returncode == 0, quiet.stderr + loud.stderr
    assert "INFO" not in quiet.stderr and quiet.stderr.strip() == "", quiet.stderr
    assert "XNNPACK" in loud.stderr


@pytest.mark.parametrize("edit, field", [(lambda m: m["ages"].__setitem__(0, 1e6), "ages.0"),
                                         (lambda m: m["ages"].__setitem__(1, float("nan")), "ages.1"),
                                         (lambda m: m["crop"].update(crop_size="96"), "crop.crop_size")])
def test_a_damaged_prepared_cache_never_trains(edit, field, face_dir, tmp_path):
    prep = tmp_path / "prep"
    assert cli("prepare", "--data", face_dir, "--out", prep).exit_code == 0
    meta = json.loads((prep / "meta.json").read_text())
    edit(meta)
    (prep / "meta.json").write_text(json.dumps(meta))
    one_error(cli("train", "--recipe", "smoke", "--data", prep, "--out", tmp_path / "run"), "meta.json", field)
    assert not (tmp_path / "run").exists()
