"""bench --peer (a foreign age model as a reference row) and pipeline-bench (the whole pipeline's
rate on photos, by stage), with the real runtimes on real faces."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgeage.cli import main


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


class _AgeOut(torch.nn.Module):
    """A 'peer': the tiny model with its readout inside, so it outputs an age (years / 100)."""

    def __init__(self, model, bins):
        super().__init__()
        self.model = model
        self.register_buffer("bins", torch.as_tensor(bins, dtype=torch.float32))

    def forward(self, x):
        return (torch.softmax(self.model(x), 1) * self.bins).sum(1, keepdim=True) / 100.0


@pytest.fixture(scope="module")
def peer_toml(tmp_path_factory, tiny_ckpt):
    from edgeage.checkpoint import load_model

    model, man = load_model(tiny_ckpt)
    ro = man.readout
    bins = np.arange(ro.age_min, ro.age_max + 1, dtype=np.float32) if not ro.has("bins") else ro.bins
    d = tmp_path_factory.mktemp("peer")
    s = man.input_size
    torch.onnx.export(_AgeOut(model, bins).eval(), (torch.zeros(1, 3, s, s),), str(d / "peer.onnx"),
                      input_names=["data"], output_names=["age"], dynamo=False)
    norm = man.preprocess.normalize.to_json_dict()
    (d / "peer.toml").write_text(
        f'name = "test peer"\nmodel = "peer.onnx"\nruntime = "onnxruntime"\nprecision = "fp32"\n'
        f'input_size = {s}\nchannel_order = "rgb"\npixel_scale = 1.0\nmean = {list(norm["mean"])}\n'
        f'std = {list(norm["std"])}\noutput = "age"\nage_scale = 100.0\n')
    return d / "peer.toml"


def test_peer_row_is_timed_and_scored_on_the_same_faces(tiny_ckpt, face_dir, peer_toml, tmp_path):
    res = cli("bench", "--model", tiny_ckpt, "--data", face_dir, "--targets", "onnx", "--precisions", "fp32",
              "--peer", peer_toml, "--runs", 5, "--rounds", 1, "--warmup", 1, "--out", tmp_path / "b")
    assert res.exit_code == 0, res.output
    b = json.loads((tmp_path / "b" / "bench.json").read_text())
    (p,) = b["peers"]
    assert p["name"] == "test peer" and p["latency_ms"]["p50"] > 0 and p["size_bytes"] > 0
    # the same model behind another preprocessing path: the same ages up to resampling differences
    assert p["mae"] == pytest.approx(b["float"]["mae"], abs=0.5)
    (row,) = b["rows"]
    assert row["vs_peer"]["peer"] == "test peer" and row["vs_peer"]["p50_ratio"] > 0  # onnxruntime = target onnx
    md = (tmp_path / "b" / "bench.md").read_text()
    assert "peer: test peer" in md and "reference (not edgeage)" in md


def test_peer_toml_errors_name_the_file(tiny_ckpt, tmp_path, peer_toml):
    bad = tmp_path / "bad.toml"
    bad.write_text(peer_toml.read_text() + 'colour = "red"\n')
    res = cli("bench", "--model", tiny_ckpt, "--targets", "none", "--peer", bad, "--out", tmp_path / "o1")
    assert res.exit_code != 0 and "bad.toml" in res.output and "colour" in res.output
    gone = tmp_path / "gone.toml"
    gone.write_text(peer_toml.read_text().replace('model = "peer.onnx"', 'model = "missing.onnx"'))
    res = cli("bench", "--model", tiny_ckpt, "--targets", "none", "--peer", gone, "--out", tmp_path / "o2")
    assert res.exit_code != 0 and "missing.onnx" in res.output
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_pipeline_bench_reports_rate_and_stages(tiny_ckpt, face_dir, exported, tmp_path):
    art = exported("onnx")
    res = cli("pipeline-bench", "--photos", face_dir, "--model", tiny_ckpt, "--artifact", art, "--limit", 6,
              "--rounds", 1, "--warmup", 1, "--out", tmp_path / "pb")
    assert res.exit_code == 0, res.output
    b = json.loads((tmp_path / "pb" / "pipeline.json").read_text())
    assert [r["model"].split()[0] for r in b["rows"]] == ["pytorch", "onnx"] and b["photos"] == 6
    for r in b["rows"]:
        assert r["faces"] >= 1 and r["photos_per_s"] > 0
        assert set(r["ms_per_photo"]) == {"decode", "detect", "crop", "input", "model", "readout"}
        assert sum(r["share"].values()) == pytest.approx(1.0)
        assert r["photos_per_s"] == pytest.approx(r["photos"] / r["wall_s"])
    # the same faces and model: the artifact's first ages match PyTorch's
    assert np.allclose(b["rows"][0]["ages_first"], b["rows"][1]["ages_first"], atol=1e-3)
    for f in ("pipeline.md", "pipeline.html", "pipeline_stages.png"):
        assert (tmp_path / "pb" / f).stat().st_size > 0
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = cli("pipeline-bench", "--photos", empty, "--model", tiny_ckpt)
    assert bad.exit_code != 0 and "no images" in bad.output


def test_executorch_localize_runs_each_prefix_on_the_runtime(tiny_ckpt, exported, face_dir):
    """One XNNPACK segment exposes no intermediates: --localize exports each prefix (stem, + stage
    1, ...) and compares it on the runtime, in the model's order."""
    res = cli("check", "--model", tiny_ckpt, "--artifact", exported("executorch"), "--data", face_dir,
              "--limit", 4, "--runs", 0, "--localize", "--json")
    assert res.exit_code == 0, res.output
    loc = json.loads(res.output[res.output.index("{"):])["localize"]
    assert loc["supported"] and loc["method"].startswith("prefixes")
    assert [r["layer"] for r in loc["layers"]] == ["backbone.stem"] + [f"backbone.stages.{i}" for i in range(4)]
    assert all(r["rel_error"] < 1e-4 for r in loc["layers"]) and loc["first_jump"] is None  # fp32
