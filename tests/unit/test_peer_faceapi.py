"""scripts/peers/faceapi.py, the face-api.js side-by-side: the paired difference and its interval,
the report table, and the error when the npm cache is missing. The peer itself runs under Node.js
from a cache outside the repository (not installed in CI), so it is not run here."""
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "peers" / "faceapi.py"


def load(monkeypatch, cache: Path):
    monkeypatch.setenv("EDGEAGE_FACEAPI", str(cache))
    spec = importlib.util.spec_from_file_location("peer_faceapi", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_paired_difference_sign_and_interval(monkeypatch, tmp_path):
    fa = load(monkeypatch, tmp_path)
    rng = np.random.default_rng(0)
    ours = rng.uniform(0, 4, 500)
    peer = ours + 1.0 + rng.normal(0, 0.5, 500)  # the peer is about a year worse on every face
    r = fa.paired(ours, peer)
    assert r["mae_peer_minus_ours"] == pytest.approx(float(np.mean(peer - ours)))
    lo, hi = r["ci95"]
    assert 0 < lo < r["mae_peer_minus_ours"] < hi < 2
    flipped = fa.paired(peer, ours)
    assert flipped["mae_peer_minus_ours"] == pytest.approx(-r["mae_peer_minus_ours"])


def test_readme_lists_every_set_with_the_right_sign(monkeypatch, tmp_path):
    fa = load(monkeypatch, tmp_path)
    common = {"data": "x", "split": "all", "n": 10}
    ranges = {"age_range": {"in_range": 0.4, "mae_to_range": 5.5}}
    sets = {
        "aset": {**common, "set": "aset", "peer_trained_on": "FG-NET (80 % of it)", "ours": {"model": "m", "mae": 5.0, "cs5": 0.6, "faces_not_found": 1},
                 "peer": {"model": "p", "mae": 6.0, "cs5": 0.5, "faces_not_found": 2},
                 "paired": {"mae_peer_minus_ours": 1.0, "ci95": [0.5, 1.5]}},
        "groups": {**common, "set": "groups", "ours": {"model": "m", "mae": 9.0, "cs5": 0.4, "faces_not_found": 0, **ranges},
                   "peer": {"model": "p", "mae": 8.0, "cs5": 0.45, "faces_not_found": 3,
                            "age_range": {"in_range": 0.45, "mae_to_range": 5.0}},
                   "paired": {"mae_peer_minus_ours": -1.0, "ci95": [-2.0, 0.1]},
                   "paired_to_range": {"mae_peer_minus_ours": -0.5, "ci95": [-1.0, 0.2]}},
    }
    for name, r in sets.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(r))
    fa.write_readme(tmp_path)
    text = (tmp_path / "README.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| aset") or line.startswith("| groups")]
    assert len(rows) == 2
    assert "+1.00 (+0.50..+1.50)" in rows[0] and "1 / 2" in rows[0] and "| FG-NET (80 % of it) |" in rows[0]
    assert "| no |" in rows[1]  # a set the peer was not trained on says so
    # a set with age groups is compared by the years to the group, not by the MAE to its middle
    assert "-0.50 (-1.00..+0.20)" in rows[1] and "40.0 %, 5.50 y" in rows[1] and "45.0 %, 5.00 y" in rows[1]


def test_missing_npm_cache_names_the_folder_and_the_install(monkeypatch, tmp_path, capsys):
    fa = load(monkeypatch, tmp_path / "nowhere")
    with pytest.raises(SystemExit) as e:
        fa.run_peer([], [], tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "nowhere") in msg and "npm install" in msg and "@vladmandic/face-api@1.7.15" in msg


def test_per_group_means_each_models_error_in_the_order_met(monkeypatch, tmp_path):
    fa = load(monkeypatch, tmp_path)
    g = fa.per_group(["b", "a", "b"], np.array([1.0, 2.0, 3.0]), np.array([0.0, 5.0, 1.0]))
    assert list(g) == ["b", "a"]
    assert g["b"] == {"n": 2, "ours": 2.0, "peer": 0.5} and g["a"] == {"n": 1, "ours": 2.0, "peer": 5.0}
    assert fa.group_values(None, [0, 1], np.array([9.9, 70.0]), "decade", "d.csv") == ["0-9", "70-79"]
    prep = SimpleNamespace(groups={"age_group": ["0-2", "3-9", "70+"]})
    assert fa.group_values(prep, [2, 0], np.zeros(2), "age_group", "d.csv") == ["70+", "0-2"]
    with pytest.raises(SystemExit, match="--by race: d.csv has no such column"):
        fa.group_values(prep, [0], np.zeros(1), "race", "d.csv")


def test_groups_read_in_age_order(monkeypatch, tmp_path):
    fa = load(monkeypatch, tmp_path)
    assert sorted(["70+", "3-9", "10-19", "0-2", "male"], key=fa.group_order) == ["0-2", "3-9", "10-19", "70+", "male"]
