"""Tests for edgeage.degrade on real UTKFace crops (no mocks)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from edgeage.degrade import ALL_OPS, DegradationConfig, Degrader, preview_grid

UTK = Path(__file__).resolve().parents[1].parent / "shared/datasets/utkface"
N_SEEDS = 12


@pytest.fixture(scope="module")
def faces() -> list[np.ndarray]:
    files = sorted(UTK.glob("*.jpg"))[::2000][:4]
    if not files:
        pytest.fail(f"no UTKFace images under {UTK} (the tests need ../shared/datasets/utkface)")
    return [np.asarray(Image.open(f).convert("RGB")) for f in files]


def lap_energy(img: np.ndarray) -> float:
    """Mean |Laplacian| of the luma: a high-frequency energy measure."""
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(gray, cv2.CV_32F)).mean())


def test_same_seed_identical_different_seed_differs(faces):
    d = Degrader(DegradationConfig(p=1.0))
    img = faces[0]
    a = d(img, np.random.default_rng(123))
    b = d(img, np.random.default_rng(123))
    assert a.tobytes() == b.tobytes()
    c = d(img, np.random.default_rng(124))
    assert a.tobytes() != c.tobytes()
    # a fresh Degrader (fresh albumentations state) reproduces too, at the default p
    d2, d3 = Degrader(), Degrader()
    outs2 = [d2(img, np.random.default_rng(s)).tobytes() for s in range(10)]
    outs3 = [d3(img, np.random.default_rng(s)).tobytes() for s in range(10)]
    assert outs2 == outs3


def test_p0_is_identity_and_input_untouched(faces):
    img = faces[1]
    before = img.copy()
    d = Degrader(DegradationConfig(p=0.0))
    out = d(img, np.random.default_rng(0))
    assert np.array_equal(out, img) and d.last_ops == []
    Degrader(DegradationConfig(p=1.0))(img, np.random.default_rng(0))
    assert np.array_equal(img, before), "input must not be modified in place"


def test_p1_fires_all_ops_in_random_order(faces):
    d = Degrader(DegradationConfig(p=1.0))
    orders = set()
    for s in range(N_SEEDS):
        out = d(faces[0], np.random.default_rng(s))
        assert sorted(d.last_ops) == sorted(ALL_OPS)
        assert out.shape == faces[0].shape and out.dtype == np.uint8
        orders.add(tuple(d.last_ops))
    assert len(orders) >= N_SEEDS // 2


def test_strength_zero_is_identity(faces):
    d = Degrader(DegradationConfig(p=1.0, strength=0.0))
    for img in faces:
        assert np.array_equal(d(img, np.random.default_rng(7)), img)
        assert d.last_ops == []


@pytest.mark.parametrize("op", ALL_OPS)
def test_single_op_changes_image(op, faces):
    d = Degrader(DegradationConfig(p=1.0, ops=(op,)))
    changed = 0
    for s in range(N_SEEDS):
        img = faces[s % len(faces)]
        out = d(img, np.random.default_rng(s))
        assert out.shape == img.shape and out.dtype == np.uint8
        assert d.last_ops == [op]
        changed += not np.array_equal(out, img)
    # AdvancedBlur can rarely draw a near-delta kernel (~0.5%); everything else always changes the image
    assert changed >= N_SEEDS - 1


@pytest.mark.parametrize("op, direction", [("blur", -1), ("downsample", -1), ("noise", +1)])
def test_high_frequency_energy(op, direction, faces):
    d = Degrader(DegradationConfig(p=1.0, ops=(op,)))
    for img in faces:
        clean = lap_energy(img)
        degraded = np.median([lap_energy(d(img, np.random.default_rng(s))) for s in range(N_SEEDS)])
        assert direction * (degraded - clean) > 0.05 * clean, (op, clean, degraded)


def test_trigger_rate_is_p(faces):
    d = Degrader(DegradationConfig(p=0.2))
    rng = np.random.default_rng(0)
    small = cv2.resize(faces[2], (48, 48), interpolation=cv2.INTER_AREA)
    n = 300
    counts = dict.fromkeys(ALL_OPS, 0)
    for _ in range(n):
        d(small, rng)
        for name in d.last_ops:
            counts[name] += 1
    for name, c in counts.items():
        assert abs(c / n - 0.2) <= 0.07, (name, c / n)


def test_strength_scales_severity(faces):
    def mean_abs_diff(strength: float) -> float:
        d = Degrader(DegradationConfig(p=1.0, strength=strength))
        img = faces[3].astype(np.int16)
        return float(np.mean([np.abs(d(faces[3], np.random.default_rng(s)) - img).mean() for s in range(N_SEEDS)]))

    assert 0 < mean_abs_diff(0.1) < mean_abs_diff(0.5) < mean_abs_diff(1.0)


def test_unknown_op_rejected():
    with pytest.raises(ValueError):
        Degrader(DegradationConfig(ops=("blur", "sharpen")))
    with pytest.raises(ValueError, match="zoom"):
        Degrader(DegradationConfig(op_p={"zoom": 0.5}))
    with pytest.raises(ValueError, match="min_scale"):
        Degrader(DegradationConfig(min_scale=0.0))


def test_op_p_overrides_the_trigger_probability_of_one_op(faces):
    d = Degrader(DegradationConfig(p=0.0, op_p={"jpeg": 1.0}))
    rng = np.random.default_rng(0)
    for img in faces:
        d(img, rng)
        assert d.last_ops == ["jpeg"]


def _detail_rank(img: np.ndarray) -> int:
    """How many independent rows of detail the image keeps: a face brought down to k px and back
    up has at most k (singular values of the mean-free first channel above the uint8 rounding)."""
    x = img[..., 0].astype(np.float64)
    return int((np.linalg.svd(x - x.mean(), compute_uv=False) > 20.0).sum())


def test_min_scale_reaches_smaller_faces():
    """The default range stops at 0.25 of the crop (24 of 96 px); min_scale 0.08 reaches 8 px."""
    img = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)

    def ranks(min_scale: float) -> list[int]:
        d, rng = Degrader(DegradationConfig(p=1.0, ops=("downsample",), min_scale=min_scale)), np.random.default_rng(1)
        return [_detail_rank(d(img, rng)) for _ in range(100)]

    assert _detail_rank(img) > 80
    assert min(ranks(0.25)) >= 20
    assert min(ranks(0.08)) <= 14


def test_preview_grid_png(faces, tmp_path):
    out = tmp_path / "grid.png"
    preview_grid(faces[:3], DegradationConfig(p=0.5), str(out), seed=1, per_image=4, tile=64)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == ((1 + 4) * 64, 3 * 64)
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # no temp file left behind
