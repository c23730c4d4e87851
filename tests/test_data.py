"""Data pipeline on real UTKFace images: name parsing, folders, CSV, corrupt files, splits,
canonical crop and face detection."""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeage.data import DataError, discover, list_hash, load_image, parse_utk_name, prepare, split
from edgeage.face import Cropper, FaceDetector
from edgeage.preprocess import CropParams, Normalize, canonical_crop, model_input, resize, resize_weights

UTK = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "utkface"


@pytest.fixture(scope="module")
def utk_files():
    files = sorted(os.listdir(UTK))
    assert len(files) > 1000, f"UTKFace folder missing or incomplete: {UTK}"
    return files


@pytest.fixture
def folder(tmp_path, utk_files, monkeypatch):
    monkeypatch.setenv("EDGEAGE_CACHE", str(tmp_path / "cache"))
    d = tmp_path / "faces"
    d.mkdir()
    for f in utk_files[::1500][:12]:
        shutil.copy(UTK / f, d / f)
    return d


def test_parse_real_names_including_three_field_and_malformed_date(utk_files):
    ages = [parse_utk_name(f) for f in utk_files]
    assert min(ages) >= 1 and max(ages) <= 116
    three = [f for f in utk_files if len(f.split("_")) == 3]
    assert three, "expected a few three-field names in the release"
    assert parse_utk_name("39_1_20170116174525125.jpg.chip.jpg") == 39
    assert parse_utk_name("55_0_0_20170116232725357jpg.chip.jpg") == 55


@pytest.mark.parametrize("bad", ["x_0_0_2017.jpg.chip.jpg", "12.5_0_0_2017.jpg.chip.jpg",
                                 "face.jpg", "_0_0_2017.jpg.chip.jpg"])
def test_bad_names_are_rejected_naming_the_file(bad):
    with pytest.raises(DataError, match=bad.replace(".", r"\.")):
        parse_utk_name(bad)


def test_folder_with_bad_name_errors_or_lists_with_skip_bad(folder):
    (folder / "abc_0_0_2017.jpg.chip.jpg").write_bytes((folder / os.listdir(folder)[0]).read_bytes())
    with pytest.raises(DataError, match="abc_0_0_2017"):
        discover(folder)
    samples, skipped = discover(folder, skip_bad=True)
    assert len(samples) == 12 and len(skipped) == 1 and "abc_0_0_2017" in skipped[0]


def test_empty_folder_and_missing_path(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        discover(tmp_path / "empty")
    with pytest.raises(DataError, match="no such file"):
        discover(tmp_path / "missing")


def test_csv_with_extra_columns_relative_paths_and_errors(folder, tmp_path):
    files = sorted(os.listdir(folder))
    csv = folder / "labels.csv"
    csv.write_text("id,path,age,source\n" + "".join(f"{i},{f},{parse_utk_name(f)},utk\n"
                                                    for i, f in enumerate(files[:5])))
    samples, _ = discover(csv)
    assert [s.age for s in samples] == [float(parse_utk_name(f)) for f in files[:5]]
    assert all(Path(s.path).is_file() for s in samples)
    bad = folder / "bad.csv"
    bad.write_text(f"path,age\n{files[0]},thirty\n")
    with pytest.raises(DataError, match="thirty"):
        discover(bad)
    missing = folder / "missing.csv"
    missing.write_text("path,age\nnope.jpg,30\n")
    with pytest.raises(DataError, match="nope.jpg"):
        discover(missing)
    nohdr = folder / "nohdr.csv"
    nohdr.write_text("file,years\na.jpg,3\n")
    with pytest.raises(DataError, match="'path' and 'age'"):
        discover(nohdr)


def test_truncated_image_gives_clear_error_and_skip_bad_lists_it(folder):
    victim = sorted(os.listdir(folder))[3]
    data = (folder / victim).read_bytes()
    (folder / victim).write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match=victim):
        load_image(folder / victim)
    with pytest.raises(DataError, match=victim):
        prepare(folder, progress=False)
    prep = prepare(folder, skip_bad=True, progress=False)
    assert len(prep.names) == 11 and victim not in prep.names
    assert len(prep.skipped) == 1 and victim in prep.skipped[0]


def test_split_is_deterministic_disjoint_and_seeded(utk_files):
    a = split(utk_files, seed=0)
    b = split(list(reversed(utk_files)), seed=0)
    names = lambda parts, src: {k: sorted(src[i] for i in v) for k, v in parts.items()}  # noqa: E731
    assert names(a, utk_files) == names(b, list(reversed(utk_files)))
    all_idx = np.concatenate(list(a.values()))
    assert len(all_idx) == len(set(all_idx.tolist())) == len(utk_files)
    c = split(utk_files, seed=1)
    assert not np.array_equal(a["test"], c["test"])
    assert abs(len(a["test"]) / len(utk_files) - 0.15) < 0.01


def test_prepare_caches_crops_and_records_hash(folder):
    prep = prepare(folder, progress=False)
    assert prep.crops.shape == (12, 96, 96, 3) and prep.crops.dtype == np.uint8
    assert prep.faces_not_found <= 2  # ~1% of UTKFace crops have no detectable face
    samples, _ = discover(folder)
    assert prep.lhash == list_hash(samples)
    again = prepare(folder, progress=False)  # from the cache
    assert np.array_equal(again.crops, prep.crops)


def test_detector_finds_the_face_and_fallback_counts_not_found(utk_files):
    img = load_image(UTK / utk_files[100])
    faces = FaceDetector().detect(img)
    assert len(faces) >= 1
    x0, y0, x1, y1 = faces[0].box
    assert 0.5 * img.shape[1] < x1 - x0 < 1.3 * img.shape[1]
    (rx, ry), (lx, ly) = faces[0].keypoints[:2]
    assert rx < lx and abs(ry - ly) < 0.2 * img.shape[0]  # right eye on the image's left
    cropper = Cropper(CropParams())
    crop, face = cropper(np.full((120, 160, 3), 128, np.uint8))
    assert face is None and cropper.not_found == 1 and crop.shape == (96, 96, 3)


def test_resize_is_normalised_and_model_input_matches_definition():
    for n_in, n_out in ((96, 64), (64, 96), (200, 96), (7, 3)):
        w = resize_weights(n_in, n_out)
        assert np.allclose(w.sum(1), 1.0)
    const = np.full((50, 70, 3), 77, np.uint8)
    assert np.allclose(resize(const, 20, 30), 77.0)
    crop = load_image(UTK / sorted(os.listdir(UTK))[5])
    c = canonical_crop(crop, None, CropParams())
    x = model_input(c, Normalize())
    ref = (resize(c, 64) / 255.0 - 0.5) / 0.25
    assert x.shape == (1, 3, 64, 64)
    assert np.abs(x[0].numpy().transpose(1, 2, 0) - ref).max() < 1e-6
