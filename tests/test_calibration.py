"""INT8 calibration on the user's own photos (no training data), on the real runtimes (no mocks):
unlabelled folders and CSVs, provenance in the manifest, the check's refusal to judge a model on
the images that calibrated it, and the clear errors where labels or the training split are
needed."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import UTK
from edgeage.cli import main
from edgeage.utils import EdgeAgeError

CALIB = 16


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def crops_of(paths, manifest) -> dict[str, str]:
    """file name -> canonical-crop digest, cropped independently of the code under test."""
    from edgeage.data import load_image
    from edgeage.face import Cropper
    from edgeage.manifest import check_manifest

    if isinstance(manifest, dict):  # a manifest.json read back from disk
        manifest = check_manifest(manifest, "manifest.json")
    cropper = Cropper(manifest.crop)
    return {os.path.basename(p): hashlib.sha256(cropper(load_image(p))[0].tobytes()).hexdigest()[:16] for p in paths}


@pytest.fixture(scope="module")
def photos(tmp_path_factory, face_dir):
    """face_dir's 24 faces as a user's unlabelled photos: camera-style names, half of them in a
    subfolder, plus one file that is not an image."""
    d = tmp_path_factory.mktemp("photos")
    (d / "2024" / "trip").mkdir(parents=True)
    for i, f in enumerate(sorted(face_dir.iterdir())):
        shutil.copy(f, (d if i % 2 else d / "2024" / "trip") / f"IMG_{1000 + i}.jpg")
    (d / "IMG_broken.jpg").write_bytes(b"not a jpeg")
    return d


@pytest.fixture(scope="module")
def other_faces(tmp_path_factory, edgeage_env):
    """12 real faces none of which is in face_dir (half a step further along the same list)."""
    files = sorted(os.listdir(UTK))
    step = len(files) // 24
    d = tmp_path_factory.mktemp("other-faces")
    for f in files[step // 2::step][:12]:
        shutil.copy(UTK / f, d / f)
    return d


@pytest.fixture(scope="module")
def user_int8(tmp_path_factory, tiny_ckpt, photos):
    """tiny_ckpt (no training split recorded) exported to ONNX INT8, calibrated on ``photos``."""
    out = tmp_path_factory.mktemp("user-int8") / "onnx-int8"
    res = cli("export", "--target", "onnx", "--precision", "int8", "--model", tiny_ckpt, "--calib-data", photos,
              "--calib-images", CALIB, "--out", out)
    assert res.exit_code == 0, res.output
    return out, res.output


def test_int8_export_calibrated_on_unlabelled_photos_records_provenance(user_int8, photos, face_dir):
    import onnx

    art, output = user_int8
    man = json.loads((art / "manifest.json").read_text())
    q = man["quantize"]
    cal = q["calibration"]
    assert man["artifact"]["precision"] == "int8" and q["method"] == "ptq" and q["split"] is None
    assert cal["kind"] == "user-images" and cal["source"] == str(photos.resolve()) and not cal["labelled"]
    assert cal["count"] == q["calibration_images"] == CALIB == len(cal["crop_digests"])
    # the file that is not an image is skipped and reported (manifest and the command's output)
    assert cal["skipped_count"] == 1 and "IMG_broken.jpg" in cal["skipped"][0]
    assert "warning:" in output and "IMG_broken.jpg" in output
    # the digests are those of the photos' canonical crops, the names hash that of their (relative) names
    every = sorted(p for p in photos.rglob("IMG_1*.jpg"))
    by_name = crops_of(every, man)
    rel = {os.path.basename(p): p.relative_to(photos).as_posix() for p in every}
    used = sorted(rel[n] for n, d in by_name.items() if d in set(cal["crop_digests"]))
    assert len(used) == CALIB and any("/" in u for u in used)  # subfolders are searched
    assert cal["names_sha256"] == hashlib.sha256("\n".join(used).encode()).hexdigest()
    m = onnx.load(str(art / "model.onnx"))
    assert sum(n.op_type == "QuantizeLinear" for n in m.graph.node) > 5


def test_data_alias_and_a_csv_without_ages_calibrate_the_same(user_int8, tiny_ckpt, photos, tmp_path):
    from edgeage.checkpoint import load_model
    from edgeage.export.artifact.calibration import quant_data

    first = json.loads((user_int8[0] / "manifest.json").read_text())["quantize"]["calibration"]
    res = cli("export", "--target", "onnx", "--precision", "int8", "--model", tiny_ckpt, "--data", photos,
              "--calib-images", CALIB, "--out", tmp_path / "alias")
    assert res.exit_code == 0, res.output
    again = json.loads((tmp_path / "alias" / "manifest.json").read_text())["quantize"]["calibration"]
    assert again["crop_digests"] == first["crop_digests"] and again["names_sha256"] == first["names_sha256"]

    _, manifest = load_model(tiny_ckpt)
    csv_path = tmp_path / "list.csv"  # a path column (absolute paths here), no age column
    rows = [f"{p},x" for p in sorted(photos.rglob("IMG_1*.jpg"))] + [f"{tmp_path / 'gone.jpg'},x"]
    csv_path.write_text("\n".join(["path,note"] + rows) + "\n")
    with pytest.warns(UserWarning, match="gone.jpg"):
        b = quant_data(manifest, csv_path, calib_images=300, val_images=4)
    assert b.kind == "user-images" and not b.labelled and len(b.calib) == 24 and len(b.val) == 0
    assert b.info()["calibration"]["skipped_count"] == 1
    assert set(b.calib_digests) == set(crops_of(sorted(photos.rglob("IMG_1*.jpg")), manifest).values())
    (tmp_path / "bad.csv").write_text("file,age\na.jpg,3\n")
    with pytest.raises(EdgeAgeError, match="'path' column"):
        quant_data(manifest, tmp_path / "bad.csv", 4)


def test_check_on_the_calibration_images_is_refused(user_int8, tiny_ckpt, face_dir, photos, edgeage_cli):
    art, _ = user_int8
    # face_dir holds the very photos (under their UTKFace names): found by content, not by name
    p = edgeage_cli("check", "--artifact", art, "--model", tiny_ckpt, "--data", face_dir, "--runs", 0, "--json")
    err = p.stderr.strip().splitlines()
    assert p.returncode != 0 and p.stdout == "" and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert err[-1] == (f"Error: {CALIB} of the 24 images checked were used to calibrate this INT8 model: judge it "
                       "on other images, e.g. --split test, or calibrate on other photos with --calib-data")
    # exporting and checking in one go is refused before the export
    res = cli("check", "--target", "onnx", "--precision", "int8", "--model", tiny_ckpt, "--data", face_dir,
              "--calib-data", photos, "--runs", 0)
    assert res.exit_code != 0 and "24 of the 24 images checked were used to calibrate" in res.output, res.output


def test_check_on_other_images_passes_the_guard(user_int8, tiny_ckpt, face_dir, other_faces, photos):
    art, _ = user_int8
    assert not set(os.listdir(other_faces)) & set(os.listdir(face_dir))
    res = cli("check", "--artifact", art, "--model", tiny_ckpt, "--data", other_faces, "--runs", 0, "--json")
    assert res.exit_code in (0, 1), res.output
    r = json.loads(res.stdout)
    assert r["precision"] == "int8" and r["n"] == 12 and r["calibration_overlap"] == 0
    assert r["quantize"]["calibration"]["kind"] == "user-images" and r["quantize"]["calibration_images"] == CALIB
    res = cli("check", "--target", "onnx", "--precision", "int8", "--model", tiny_ckpt, "--data", other_faces,
              "--calib-data", photos, "--runs", 0, "--json")
    assert res.exit_code in (0, 1), res.output
    r = json.loads(res.stdout)
    assert r["calibration_overlap"] == 0 and r["quantize"]["calibration_images"] == 24


def test_accuracy_control_needs_labels(tiny_ckpt, photos, face_dir, tmp_path):
    res = cli("quantize", "--model", tiny_ckpt, "--backend", "onnx", "--calib-data", photos, "--max-mae-drop", 0.5,
              "--out", tmp_path / "q")
    assert res.exit_code != 0 and "Traceback" not in res.output and not (tmp_path / "q").exists()
    assert "accuracy control (--max-mae-drop) needs labelled validation images" in res.output, res.output
    assert "carry no ages" in res.output and "CSV with path and age columns" in res.output
    # labelled photos (UTKFace names; not this checkpoint's training data), all taken by calibration
    res = cli("quantize", "--model", tiny_ckpt, "--backend", "onnx", "--calib-data", face_dir, "--calib-images", 24,
              "--max-mae-drop", 0.5, "--out", tmp_path / "q")
    assert res.exit_code != 0 and "none left" in res.output and not (tmp_path / "q").exists(), res.output
    res = cli("quantize", "--model", tiny_ckpt, "--backend", "onnx", "--calib-images", 0, "--calib-data", photos)
    assert res.exit_code == 2 and "--calib-images" in res.output  # click's range check


def test_labelled_photos_give_validation_mae(tiny_ckpt, face_dir, tmp_path):
    res = cli("quantize", "--model", tiny_ckpt, "--backend", "onnx", "--calib-data", face_dir, "--calib-images", 16,
              "--val-images", 8, "--out", tmp_path / "q")
    assert res.exit_code == 0, res.output
    q = json.loads((tmp_path / "q" / "manifest.json").read_text())["quantize"]
    assert q["calibration"]["kind"] == "user-images" and q["calibration"]["labelled"]
    assert q["calibration_images"] == 16 and q["validation_images"] == 8
    assert np.isfinite(q["val_mae_float"]) and np.isfinite(q["val_mae_int8"])


def test_qat_needs_the_labelled_training_data(tiny_ckpt, photos, tmp_path):
    res = cli("quantize", "--model", tiny_ckpt, "--backend", "litert", "--method", "qat", "--calib-data", photos,
              "--out", tmp_path / "qat")
    assert res.exit_code != 0 and "Traceback" not in res.output and not (tmp_path / "qat").exists()
    assert "QAT trains the model on the checkpoint's labelled training split" in res.output, res.output
    assert "records no training split" in res.output and "--method ptq" in res.output


@pytest.fixture(scope="module")
def split_case(tmp_path_factory, face_dir):
    """face_dir plus one duplicate (same photo, another UTKFace name) that the checkpoint's split
    puts in the training part while the original is held out, and a checkpoint trained on it."""
    from edgeage.checkpoint import build_manifest, save_checkpoint
    from edgeage.data import prepare, split, split_record
    from conftest import lively_model

    d = tmp_path_factory.mktemp("split-data")
    for f in face_dir.iterdir():
        shutil.copy(f, d / f.name)
    names = sorted(os.listdir(d))
    for age in range(1, 100):  # the name's place in the sorted list decides its part
        dup = f"{age}_0_0_20170101000000.jpg.chip.jpg"
        for orig in names:
            cand = sorted(names + [dup])
            parts = split(cand, seed=0, val=0.1, test=0.15)
            where = {cand[i]: p for p, idx in parts.items() for i in idx}
            if where[dup] == "train" and where[orig] == "test":
                break
        else:
            continue
        break
    else:
        pytest.fail("no name found that the split puts in the training part")
    shutil.copy(d / orig, d / dup)
    model = lively_model(20.0, widths=(8, 16, 16, 32), depths=(1, 1, 1, 1))
    manifest = build_manifest(model)
    prep = prepare(d, manifest.crop, progress=False)
    parts = split(prep.names, seed=0, val=0.1, test=0.15)
    manifest.training = {"split": split_record(prep.names, parts, 0, 0.1, 0.15, prep.lhash)}
    path = tmp_path_factory.mktemp("split-ckpt") / "tiny-split.pt"
    save_checkpoint(path, model, manifest)
    return d, path, orig, dup


def test_training_split_stays_the_default_and_leaves_out_held_out_duplicates(split_case, photos, tmp_path):
    from edgeage.checkpoint import load_model
    from edgeage.export.artifact.calibration import quant_data

    data, ckpt, orig, dup = split_case
    _, manifest = load_model(ckpt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qd = quant_data(manifest, data, calib_images=300, val_images=0)
    cal = qd.info()["calibration"]
    assert cal["kind"] == "training-split" and qd.info()["split"] == "train" and cal["labelled"]
    # the duplicate of a test image is in the training part but does not calibrate
    assert dup not in qd.calib_names and cal["duplicates_left_out"] == 1
    assert cal["count"] == len(qd.parts["train"]) - 1 and cal["evaluation_overlap"]["images"] == 0
    # the same data without one image is not the training data: calibrates as user images
    other = tmp_path / "other"
    shutil.copytree(data, other)
    (other / orig).unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert quant_data(manifest, other, 4, val_images=0).kind == "user-images"
    # checked on the test part: no overlap (the duplicate included); on everything: refused
    res = cli("check", "--target", "onnx", "--precision", "int8", "--model", ckpt, "--data", data, "--split",
              "test", "--runs", 0, "--json")
    assert res.exit_code in (0, 1), res.output
    r = json.loads(res.stdout)
    assert r["calibration_overlap"] == 0 and r["quantize"]["calibration"]["kind"] == "training-split"
    res = cli("check", "--target", "onnx", "--precision", "int8", "--model", ckpt, "--data", data, "--runs", 0)
    assert res.exit_code != 0 and "images checked were used to calibrate" in res.output, res.output
