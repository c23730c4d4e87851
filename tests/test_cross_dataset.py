"""Cross-dataset preparation (scripts/datasets/): FG-NET and APPA-REAL labels.csv builders, the
All-Age-Faces guard, and `edgeage eval` on a built labels.csv. Synthetic images only: no file of
any real data set is used here."""
import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgeage.cli import main
from edgeage.data import discover

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts" / "datasets"


def load(name):
    spec = importlib.util.spec_from_file_location(f"datasets_{name}", SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fgnet, appa, fairface, cross = load("fgnet"), load("appa_real"), load("fairface"), load("cross_eval")
utk_groups = load("utk_test_as_groups")


def picture(path: Path, seed: int, size=(120, 150)):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


FG_NAMES = ["001A02.JPG", "001A43a.JPG", "001a43b.jpg", "002A05.JPG", "082A61.jpg"]


def fg_tree(root: Path, names=FG_NAMES):
    for i, n in enumerate(names):
        picture(root / "FGNET" / "images" / n, i)
    (root / "FGNET" / "images" / "Thumbs.db").write_text("not an image")
    return root


def test_fgnet_labels_from_names(tmp_path):
    root = fg_tree(tmp_path / "fgnet")
    assert fgnet.main([str(root), "--allow-partial"]) == 0
    rows = read(root / "labels.csv")
    assert [(r["path"], int(r["age"]), r["subject"]) for r in rows] == [
        ("FGNET/images/001A02.JPG", 2, "001"), ("FGNET/images/001A43a.JPG", 43, "001"),
        ("FGNET/images/001a43b.jpg", 43, "001"), ("FGNET/images/002A05.JPG", 5, "002"),
        ("FGNET/images/082A61.jpg", 61, "082")]
    samples, skipped = discover(root / "labels.csv")
    assert not skipped and [s.age for s in samples] == [2, 43, 43, 5, 61]
    assert all(Path(s.path).is_file() for s in samples)


def test_fgnet_folds_are_subject_disjoint_and_cover_the_set(tmp_path):
    names = FG_NAMES + ["003A10.JPG", "003A12.JPG", "004A30.JPG"]
    root = fg_tree(tmp_path / "fgnet", names)
    assert fgnet.main([str(root), "--allow-partial", "--folds", "2"]) == 0
    whole = read(root / "labels.csv")
    parts = [read(root / f"labels-fold{i}-of-2.csv") for i in (1, 2)]
    subjects = [{r["subject"] for r in p} for p in parts]
    assert not subjects[0] & subjects[1] and all(subjects)
    assert sorted(r["path"] for p in parts for r in p) == sorted(r["path"] for r in whole)
    # a subject's photos stay together: all three of 001 and both of 003 in one fold each
    assert {len([r for r in p if r["subject"] == s]) for p in parts for s in ("001", "003") if s in
            {r["subject"] for r in p}} == {2, 3}
    with pytest.raises(SystemExit):
        fgnet.main([str(root), "--allow-partial", "--folds", "1"])


def test_fgnet_refuses_a_partial_copy_by_default(tmp_path, capsys):
    root = fg_tree(tmp_path / "fgnet")
    assert fgnet.main([str(root)]) == 2
    assert "not the whole FG-NET set" in capsys.readouterr().err
    assert not (root / "labels.csv").exists()


@pytest.mark.parametrize("bad", ["00001A02.jpg", "12345A67.JPG"])
def test_fgnet_refuses_all_age_faces_names(tmp_path, bad, capsys):
    root = fg_tree(tmp_path / "fgnet", FG_NAMES + [bad])
    assert fgnet.main([str(root), "--allow-partial"]) == 2
    assert "All-Age-Faces" in capsys.readouterr().err
    assert not (root / "labels.csv").exists()
    with pytest.raises(fgnet.NotFGNet, match="All-Age-Faces"):
        fgnet.parse_name(bad)


@pytest.mark.parametrize("bad", ["25_0_2_20170116174525125.jpg.chip.jpg", "1A02.JPG", "001B02.JPG", "001A2.JPG"])
def test_fgnet_refuses_other_names(bad):
    with pytest.raises(fgnet.NotFGNet):
        fgnet.parse_name(bad)


def appa_tree(root: Path, split="test", files=(("005613.jpg", 24, 26.4), ("005614.jpg", 61, 55.0))):
    base = root / "appa-real-release"
    (base / split).mkdir(parents=True)
    with open(base / f"gt_avg_{split}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "num_ratings", "apparent_age_avg", "apparent_age_std", "real_age"])
        for name, real, apparent in files:
            w.writerow([name, 38, apparent, 3.1, real])
            picture(base / split / name, real)
            picture(base / split / (name + "_face.jpg"), real + 1, (64, 64))
    with open(base / f"allcategories_{split}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "gender", "race", "makeup", "time", "happiness"])
        w.writerow([files[0][0], "female", "caucasian", "makeup", "modernphoto", "happy"])
    return root


def test_appa_real_labels(tmp_path):
    root = appa_tree(tmp_path / "appa")
    assert appa.main([str(root), "--allow-partial"]) == 0
    rows = read(root / "labels.csv")
    assert [(r["path"], r["age"], r["apparent_age"], r["split"], r["gender"], r["race"]) for r in rows] == [
        ("appa-real-release/test/005613.jpg", "24", "26.4", "test", "female", "caucasian"),
        ("appa-real-release/test/005614.jpg", "61", "55.0", "test", "", "")]
    assert appa.main([str(root), "--allow-partial", "--face-crops", "--out", str(tmp_path / "f.csv")]) == 0
    assert read(tmp_path / "f.csv")[0]["path"] == "appa-real-release/test/005613.jpg_face.jpg"
    samples, _ = discover(root / "labels.csv")
    assert [s.age for s in samples] == [24, 61]


def test_appa_real_refuses_partial_or_missing(tmp_path, capsys):
    root = appa_tree(tmp_path / "appa")
    assert appa.main([str(root)]) == 2
    assert "expected 1978" in capsys.readouterr().err
    assert appa.main([str(root), "--splits", "valid", "--allow-partial"]) == 2
    assert "gt_avg_valid.csv: missing" in capsys.readouterr().err


def test_fairface_sample_labels_are_age_ranges(tmp_path):
    root = tmp_path / "ff"
    gt = [{"filename": "fairface_0001.jpg", "age": "50-59", "gender": "Male"},
          {"filename": "fairface_0002.jpg", "age": "0-2", "gender": "Female"},
          {"filename": "fairface_0003.jpg", "age": "70+", "gender": "Female"}]
    for i, it in enumerate(gt):
        picture(root / "images" / it["filename"], i)
    (root / "ground_truth.json").write_text(json.dumps(gt))
    assert fairface.main([str(root)]) == 0
    rows = read(root / "labels.csv")
    assert [(r["path"], r["age"], r["age_min"], r["age_max"], r["age_group"], r["gender"]) for r in rows] == [
        ("images/fairface_0001.jpg", "55", "50", "59", "50-59", "male"),
        ("images/fairface_0002.jpg", "1.5", "0", "2", "0-2", "female"),
        ("images/fairface_0003.jpg", "75", "70", "", "70+", "female")]
    samples, skipped = discover(root / "labels.csv")
    assert not skipped and samples[2].groups["age_max"] == ""


def test_fairface_release_layout_and_refusals(tmp_path, capsys):
    root = tmp_path / "ff"
    picture(root / "val" / "1.jpg", 0)
    (root / "fairface_label_val.csv").write_text("file,age,gender,race,service_test\nval/1.jpg,20-29,Male,East Asian,True\n")
    assert fairface.main([str(root)]) == 0
    assert read(root / "labels.csv")[0]["race"] == "East Asian"
    (root / "fairface_label_val.csv").write_text("file,age,gender,race\nval/1.jpg,20-30,Male,East Asian\n")
    assert fairface.main([str(root)]) == 2
    assert "'20-30' is not one of FairFace's" in capsys.readouterr().err
    other = tmp_path / "other"
    picture(other / "images" / "ig_0001.jpg", 1)
    (other / "ground_truth.json").write_text(json.dumps([{"filename": "ig_0001.jpg", "age": "20-29", "gender": "Male"}]))
    assert fairface.main([str(other)]) == 2
    assert "not one of the sample's FairFace files" in capsys.readouterr().err
    assert not (other / "labels.csv").exists()


def test_utk_test_split_gets_fairface_groups(tmp_path):
    from conftest import UTK
    from edgeage.checkpoint import model_path, read_checkpoint

    assert utk_groups.main([str(UTK), str(tmp_path / "g.csv")]) == 0
    rows = read(tmp_path / "g.csv")
    split = read_checkpoint(model_path(None))["manifest"].training.split
    assert len(rows) == split["sizes"]["test"]
    for r in rows:
        age, lo = float(r["age"]), float(r["age_min"])
        hi = float(r["age_max"]) + 1 if r["age_max"] else float("inf")
        assert lo <= age < hi and r["age_group"] in fairface.GROUPS and Path(r["path"]).is_file()
    assert {r["age_group"] for r in rows} == set(fairface.GROUPS)
    picture(tmp_path / "other" / "25_0_0_20170101000000000.jpg", 0)
    with pytest.raises(SystemExit, match="file-list hash differs"):
        utk_groups.test_split_rows(tmp_path / "other", split)


def test_eval_reads_a_built_labels_csv_by_decade_and_subject(tmp_path, monkeypatch):
    """The shipped default model on a built FG-NET-style labels.csv: no faces in noise, so every
    image falls back to the centre square, and the groups still add up."""
    monkeypatch.setenv("EDGEAGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    root = fg_tree(tmp_path / "fgnet")
    assert fgnet.main([str(root), "--allow-partial"]) == 0
    r = CliRunner().invoke(main, ["eval", "--data", str(root / "labels.csv"), "--json",
                                  "--by", "decade", "--by", "subject"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["n"] == 5 and res["faces_not_found"] == 5
    assert {k: v["n"] for k, v in res["groups"]["subject"]["groups"].items()} == {"001": 3, "002": 1, "082": 1}
    assert sum(v["n"] for v in res["groups"]["decade"]["groups"].values()) == 5


def test_cross_eval_summary_puts_utkface_beside_the_set():
    def res(n, mae, cs5, decades):
        return {"n": n, "mae": mae, "cs5": cs5, "faces_not_found": 1,
                "per_decade": {d: {"n": k, "mae": e} for d, (k, e) in decades.items()}}
    md = cross.summary_md("fgnet", "test data", {"mgpnet-xs": res(5, 7.5, 0.4, {"0-9": (3, 4.0), "60-69": (2, 9.0)})},
                          {"mgpnet-xs": res(9, 5.2, 0.62, {"0-9": (4, 2.0), "100-109": (1, 17.0)})},
                          ["OMP_NUM_THREADS=1 edgeage eval ..."])
    assert "| `mgpnet-xs` | fgnet | 5 | 1 | 7.50 | 0.400 |" in md
    assert "| `mgpnet-xs` | UTKFace test split (bench/eval-groups) | 9 | 1 | 5.20 | 0.620 |" in md
    rows = [line for line in md.splitlines() if line.startswith("| 0-9") or line.startswith("| 60-69")
            or line.startswith("| 100-109")]
    assert rows == ["| 0-9 | 4.00 (3) | 2.00 (4) |", "| 60-69 | 9.00 (2) | – |", "| 100-109 | – | 17.00 (1) |"]
