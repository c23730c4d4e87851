"""`edgeage eval --by` (race, gender, decade, face-size, CSV columns) and `edgeage
resolution-curve` on a handful of real UTKFace files: groups, counts, gap, refusals, outputs."""
import csv
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from edgeage.cli import main
from edgeage.data import load_prepared, prepare, save_prepared
from edgeage.groups import (BUILTIN, GENDERS, RACES, UNKNOWN, at_face_px, face_size_order, group_metrics,
                            utk_fields)

from conftest import UTK, copy_faces

THREE_FIELD = "39_1_20170116174525125.jpg.chip.jpg"  # a released name without the RACE field


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def faces(tmp_path_factory, edgeage_env):
    """10 real UTKFace files (spread over ages) plus one three-field name (race unknown)."""
    d = copy_faces(tmp_path_factory, "group-faces", 10)
    shutil.copy(UTK / THREE_FIELD, d / THREE_FIELD)
    return d


def known_gap(g):
    known = [v["mae"] for k, v in g["groups"].items() if k != UNKNOWN]
    return max(known) - min(known)


def test_eval_by_every_builtin_group_adds_up_and_writes_reports(faces, tiny_ckpt, tmp_path):
    out = tmp_path / "ev"
    r = cli("eval", "--model", tiny_ckpt, "--data", faces, "--by", "race,gender", "--by", "decade",
            "--by", "face-size", "--json", "--out", out)
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert list(res["groups"]) == list(BUILTIN)
    for name, g in res["groups"].items():
        assert sum(v["n"] for v in g["groups"].values()) == res["n"] == 11, name
        assert g["gap"] == pytest.approx(known_gap(g))
        assert g["groups"][g["worst"]]["mae"] - g["groups"][g["best"]]["mae"] == pytest.approx(g["gap"])
        assert all(0 <= v["cs5"] <= 1 and v["n"] > 0 for v in g["groups"].values())
        big = g["large_groups"]
        assert all(g["groups"][k]["n"] >= big["min_n"] for k in big["gap_over"])
    assert set(res["groups"]["race"]["groups"]) <= set(RACES) | {UNKNOWN}
    assert res["groups"]["race"]["groups"][UNKNOWN]["n"] >= 1  # the three-field name
    assert set(res["groups"]["gender"]["groups"]) <= set(GENDERS)
    assert set(res["groups"]["decade"]["groups"]) == set(res["per_decade"])
    fs = res["groups"]["face-size"]["groups"]
    assert set(fs) <= set(face_size_order()) | {UNKNOWN}
    assert sum(v["n"] for k, v in fs.items() if k != UNKNOWN) == res["n"] - res["faces_not_found"]
    saved = json.loads((out / "eval.json").read_text())
    assert saved["groups"] == res["groups"]
    md = (out / "eval.md").read_text()
    assert all(f"## By {n}" in md for n in BUILTIN) and "by_group.png" in md
    html = (out / "eval.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "By race" in html and "data:image/png;base64," in html
    assert (out / "by_group.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_by_name_is_one_clear_error(faces, tiny_ckpt, tmp_path):
    r = cli("eval", "--model", tiny_ckpt, "--data", faces, "--by", "race,ethnicity", "--out", tmp_path / "ev")
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "--by ethnicity" in r.output and "race, gender, decade, face-size" in r.output
    assert not (tmp_path / "ev" / "eval.json").exists()


def test_csv_extra_column_is_a_group_and_survives_the_cache(faces, tiny_ckpt, tmp_path):
    files = sorted(p.name for p in faces.iterdir())
    table = tmp_path / "faces.csv"
    with open(table, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "age", "camera", "race"])
        for i, f in enumerate(files):
            w.writerow([str(faces / f), f.split("_")[0], ["door", "lobby", ""][i % 3], "group-a"])
    r = cli("eval", "--model", tiny_ckpt, "--data", table, "--by", "camera,race", "--json")
    assert r.exit_code == 0, r.output
    g = json.loads(r.output)["groups"]
    assert set(g["camera"]["groups"]) == {"door", "lobby", UNKNOWN}
    assert [g["camera"]["groups"][k]["n"] for k in ("door", "lobby", UNKNOWN)] == [4, 4, 3]
    assert set(g["race"]["groups"]) == {"group-a"}  # the CSV's column wins over the file names
    assert g["race"]["gap"] == 0

    cache = tmp_path / "cache"
    assert cli("prepare", "--data", table, "--out", cache).exit_code == 0
    prep = load_prepared(cache)
    assert prep.groups["camera"][:3] == ["door", "lobby", ""] and prep.face_box.shape == (11, 4)
    r = cli("eval", "--model", tiny_ckpt, "--data", cache, "--by", "camera", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["groups"]["camera"]["groups"]["door"]["n"] == 4
    r = cli("eval", "--model", tiny_ckpt, "--data", cache, "--by", "site")
    assert r.exit_code != 0 and "camera" in r.output and "--by site" in r.output


def test_ages_labelled_as_ranges_report_the_share_in_range(faces, tiny_ckpt, tmp_path):
    """FairFace / Adience give age groups: with age_min / age_max columns eval reports the share of
    predictions inside each face's range and the distance to it, overall and per --by group."""
    files = sorted(p.name for p in faces.iterdir())
    r = cli("eval", "--model", tiny_ckpt, "--data", faces, "--json", "--out", tmp_path / "plain")
    pred = {row["file"]: float(row["pred"]) for row in csv.DictReader(open(tmp_path / "plain" / "predictions.csv"))}
    assert r.exit_code == 0 and len(pred) == len(files)
    table = tmp_path / "ranges.csv"
    with open(table, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "age", "age_min", "age_max", "age_group"])
        for i, f in enumerate(files):
            p = pred[f]
            lo, hi = ((max(int(p) - 2, 0), int(p) + 2) if i % 2 == 0 else (int(p) + 10, int(p) + 19))  # in / above
            w.writerow([str(faces / f), (lo + hi) / 2, lo, "" if i == 0 else hi, "in" if i % 2 == 0 else "out"])
    r = cli("eval", "--model", tiny_ckpt, "--data", table, "--by", "age_group", "--json", "--out", tmp_path / "ev")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    n_in = (len(files) + 1) // 2
    assert res["age_range"]["in_range"] == pytest.approx(n_in / len(files))
    g = res["groups"]["age_group"]["groups"]
    assert g["in"]["in_range"] == 1 and g["in"]["mae_to_range"] == 0
    assert g["out"]["in_range"] == 0
    dist = [int(pred[f]) + 10 - pred[f] for i, f in enumerate(files) if i % 2]
    assert g["out"]["mae_to_range"] == pytest.approx(float(np.mean(dist)), abs=2e-3)
    assert "in range" in (tmp_path / "ev" / "eval.md").read_text()

    bad = tmp_path / "bad.csv"
    rows = table.read_text().splitlines()
    f1 = rows[1].split(",")
    bad.write_text("\n".join([rows[0], ",".join([f1[0], f1[1], "thirty", *f1[3:]]), *rows[2:]]) + "\n")
    r = cli("eval", "--model", tiny_ckpt, "--data", bad, "--json", "--out", tmp_path / "bad")
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "age_min" in r.output and "'thirty'" in r.output and str(bad) in r.output
    assert not (tmp_path / "bad" / "eval.json").exists()


def test_old_cache_without_groups_or_boxes_still_groups(faces, tiny_ckpt, tmp_path):
    prep = prepare(faces, progress=False)
    prep.groups, prep.face_box = None, None  # as caches were written before
    save_prepared(prep, tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "meta.json").read_text())
    assert "face_box" not in meta and "groups" not in meta
    r = cli("eval", "--model", tiny_ckpt, "--data", tmp_path / "old", "--by", "race,face-size", "--json")
    assert r.exit_code == 0, r.output
    g = json.loads(r.output)["groups"]
    assert list(g["face-size"]["groups"]) == [UNKNOWN] and g["face-size"]["unknown"] == 11
    assert len(g["race"]["groups"]) >= 2


def test_gap_is_worst_minus_best_known_group_and_large_groups_apart():
    labs = ["a"] * 40 + ["b"] * 40 + ["c"] * 2 + [UNKNOWN] * 5
    true = np.zeros(len(labs))
    pred = np.array([1.0] * 40 + [3.0] * 40 + [10.0] * 2 + [50.0] * 5)
    g = group_metrics("site", pred, true, labs)
    assert list(g["groups"]) == ["a", "b", "c", UNKNOWN] and g["unknown"] == 5
    assert (g["worst"], g["best"]) == ("c", "a") and g["gap"] == pytest.approx(9.0)
    big = g["large_groups"]
    assert (big["worst"], big["best"], big["gap_over"]) == ("b", "a", ["a", "b"]) and big["gap"] == pytest.approx(2)


def test_utk_name_fields():
    assert utk_fields("26_1_3_20170104235421282.jpg.chip.jpg") == ("female", "indian")
    assert utk_fields(THREE_FIELD) == ("female", UNKNOWN)
    assert utk_fields("55_0_0_20170116232725357jpg.chip.jpg") == ("male", "white")
    assert utk_fields("photo.jpg") == (UNKNOWN, UNKNOWN)
    assert utk_fields("30_7_9_2017.jpg.chip.jpg") == (UNKNOWN, UNKNOWN)


def test_face_size_down_sampling_keeps_shape_and_loses_detail(faces):
    crops = prepare(faces, progress=False).crops[:4]
    err = {}
    for px in (12, 64):
        out = at_face_px(crops, px)
        assert out.shape == crops.shape and out.dtype == np.uint8
        err[px] = np.abs(out.astype(float) - crops).mean()
    assert err[12] > err[64] > 0


def test_resolution_curve_one_point_per_size_per_model(faces, tiny_ckpt, tmp_path):
    out = tmp_path / "curve"
    r = cli("resolution-curve", "--model", tiny_ckpt, "--model", "default", "--data", faces, "--split", "all",
            "--json", "--out", out)
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["sizes"] == [12, 16, 24, 32, 48, 64] and res["n"] == 11
    assert [m["name"] for m in res["models"]] == [str(tiny_ckpt), "default"]
    for m in res["models"]:
        assert [p["px"] for p in m["points"]] == res["sizes"]
        assert all(p["n"] == 11 and p["mae"] >= 0 for p in m["points"]) and m["full"]["n"] == 11
    assert json.loads((out / "curve.json").read_text()) == res
    assert "| 12 |" in (out / "curve.md").read_text()
    assert "default" in (out / "curve.html").read_text()
    assert (out / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_resolution_curve_refuses_bad_sizes(faces, tmp_path):
    r = cli("resolution-curve", "--data", faces, "--sizes", "12,x", "--out", tmp_path / "c")
    assert r.exit_code != 0 and "--sizes" in r.output and "Traceback" not in r.output


def test_range_groups_sort_by_their_first_age():
    labs = ["70+", "3-9", "10-19", "0-2", "3-9"]
    g = group_metrics("age_group", [1, 5, 12, 1, 6], [75, 6, 15, 1, 6], labs)
    assert list(g["groups"]) == ["0-2", "3-9", "10-19", "70+"]


def test_eval_grey_reads_the_faces_as_a_monochrome_camera(faces, tiny_ckpt, tmp_path):
    from edgeage.preprocess import grey

    colour = json.loads(cli("eval", "--model", tiny_ckpt, "--data", faces, "--json").output)
    r = cli("eval", "--model", tiny_ckpt, "--data", faces, "--json", "--grey")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["grey"] is True and colour["grey"] is False and res["n"] == colour["n"]
    assert res["mae"] != colour["mae"]
    x = np.random.default_rng(0).integers(0, 256, (2, 5, 5, 3), dtype=np.uint8)
    g = grey(x)
    assert g.shape == x.shape and (g[..., 0] == g[..., 2]).all()
    assert np.abs(g[..., 0] - (x @ np.array([0.299, 0.587, 0.114]))).max() <= 0.5 + 1e-6


def test_eval_degrade_op_applies_one_degradation_and_refuses_bad_use(faces, tiny_ckpt, tmp_path):
    from edgeage.data import prepare
    from edgeage.evaluate import degrade_crops
    from edgeage.pipeline import AgeEstimator

    clean = json.loads(cli("eval", "--model", tiny_ckpt, "--data", faces, "--json").output)
    r = cli("eval", "--model", tiny_ckpt, "--data", faces, "--json", "--degrade-p", 1, "--degrade-op", "downsample")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["degrade_ops"] == ["downsample"] and res["degrade_p"] == 1 and res["n"] == clean["n"]
    assert res["mae"] != clean["mae"]
    assert "degrade_ops" not in clean
    # the op alone, seeded: the same crops again, other crops for another op, none left untouched at p = 1
    crops = prepare(faces, AgeEstimator.from_checkpoint(tiny_ckpt).crop, progress=False).crops[:4]
    jpeg = degrade_crops(crops, 1.0, seed=3, ops=("jpeg",))
    assert np.array_equal(jpeg, degrade_crops(crops, 1.0, seed=3, ops=("jpeg",)))
    assert not np.array_equal(jpeg, degrade_crops(crops, 1.0, seed=3, ops=("blur",)))
    assert all(not np.array_equal(a, b) for a, b in zip(jpeg, crops))
    for args, words in ((["--degrade-p", 1, "--degrade-op", "fog"], ("--degrade-op fog", "jpeg")),
                        (["--degrade-op", "jpeg"], ("--degrade-op", "--degrade-p"))):
        bad = cli("eval", "--model", tiny_ckpt, "--data", faces, *args, "--out", tmp_path / "never")
        assert bad.exit_code != 0 and all(w in bad.output for w in words), bad.output
        assert not (tmp_path / "never").exists()
