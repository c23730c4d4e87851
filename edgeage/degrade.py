"""Random-order image degradation model of MGP-Net (Zang & Xiao, Sci Rep 2025).

Simulates small, blurry CCTV / phone faces: blur, down/up-sampling, noise, JPEG,
RGB shift and ISO noise, applied in a random order, each with probability ``p``.
``strength`` in [0, 1] scales the parameter ranges (0 = identity).

Determinism: every random choice is drawn from the caller's ``np.random.Generator``;
albumentations transforms (fixed ranges, ``p=1``) are re-seeded per call from that
generator, so the same seed gives byte-identical output.
"""

from __future__ import annotations

import os
import tempfile
import textwrap
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np
from PIL import Image, ImageDraw

if TYPE_CHECKING:
    import albumentations as A

ALL_OPS = ("blur", "downsample", "noise", "jpeg", "rgb_shift", "iso_noise")
MIN_SCALE_RANGE = (0.05, 0.75)   # allowed ``min_scale`` (recipes check it with the same bounds)
_DOWN_INTERP = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA)
_UP_INTERP = (cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA)  # nearest-up adds block edges, not blur

Op = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass
class DegradationConfig:
    p: float = 0.2  # trigger probability of each operation
    strength: float = 1.0  # 0..1 scale of parameter ranges
    ops: tuple[str, ...] = ALL_OPS
    # smallest down-sampling scale at strength 1 (0.25: a 96 px crop goes down to 24 px at most).
    # CCTV faces of 12-16 px need less: 0.125 reaches 12 px of a 96 px crop.
    min_scale: float = 0.25
    op_p: dict[str, float] = field(default_factory=dict)  # per-op trigger probability, else ``p``


def _run_alb(t: A.BasicTransform, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Apply an albumentations transform seeded from ``rng`` (deterministic)."""
    t.set_random_seed(int(rng.integers(2**31)))
    return t(image=img)["image"]


def _alb(*ts: A.BasicTransform) -> list[Op]:
    return [partial(_run_alb, t) for t in ts]


def _poisson(img: np.ndarray, rng: np.random.Generator, log_peak: tuple[float, float]) -> np.ndarray:
    """Shot noise: a white pixel collects 10**U(log_peak) photons."""
    peak = 10.0 ** rng.uniform(*log_peak)
    noisy = rng.poisson(img.astype(np.float64) * (peak / 255.0)) * (255.0 / peak)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _candidates(name: str, s: float, min_scale: float = 0.25) -> list[Op]:
    """Alternative implementations of op ``name`` at strength ``s`` in (0, 1]; one is picked per call."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # else `import albumentations` phones home (2 s timeout)
    import albumentations as A  # here, not at the top: recipes read ALL_OPS without loading it (~1.3 s)

    if name == "blur":  # isotropic Gaussian or anisotropic generalized Gaussian (random sigmas + rotation)
        # sigma < ~0.3 rounds to identity on uint8; AdvancedBlur with small sigmas and beta > 1 can still be
        # a near-delta kernel (~0.5% of draws), as in Real-ESRGAN's kernel sampling.
        sigma = (0.4, 0.4 + 2.6 * s)
        return _alb(
            A.GaussianBlur(sigma_limit=sigma, blur_limit=0, p=1.0),
            A.AdvancedBlur(blur_limit=(7, 15), sigma_x_limit=sigma, sigma_y_limit=sigma, rotate_limit=(-90, 90),
                           beta_limit=(0.5, 4.0), p=1.0),
        )
    if name == "downsample":  # random scale, random down/up interpolation
        scale = (min(1.0 - (1.0 - min_scale) * s, 0.99), min(1.0 - 0.25 * s, 0.99))
        return _alb(*(A.Downscale(scale_range=scale, interpolation_pair={"downscale": d, "upscale": u}, p=1.0)
                     for d in _DOWN_INTERP for u in _UP_INTERP))
    if name == "noise":  # Gaussian (std as fraction of 255) or Poisson
        return _alb(A.GaussNoise(std_range=(0.004, 0.004 + 0.1 * s), p=1.0)) + [
            partial(_poisson, log_peak=(4.0 - 2.5 * s, 4.0))
        ]
    if name == "jpeg":
        return _alb(A.ImageCompression(quality_range=(round(95 - 65 * s), 95), p=1.0))
    if name == "rgb_shift":
        lim = (-20.0 * s, 20.0 * s)
        return _alb(A.RGBShift(r_shift_limit=lim, g_shift_limit=lim, b_shift_limit=lim, p=1.0))
    assert name == "iso_noise", name
    return _alb(A.ISONoise(color_shift=(0.01 * s, 0.05 * s), intensity=(0.1 * s, 0.5 * s), p=1.0))


class Degrader:
    """Callable ``(img uint8 HxWx3 RGB, rng) -> degraded img``; ``last_ops`` lists the ops applied, in order."""

    def __init__(self, cfg: DegradationConfig | None = None):
        self.cfg = cfg or DegradationConfig()
        if not 0.0 <= self.cfg.strength <= 1.0 or not 0.0 <= self.cfg.p <= 1.0:
            raise ValueError(f"p and strength must be in [0, 1], got {self.cfg}")
        lo, hi = MIN_SCALE_RANGE
        if not lo <= self.cfg.min_scale <= hi:
            raise ValueError(f"min_scale must be in [{lo}, {hi}], got {self.cfg.min_scale}")
        if unknown := (set(self.cfg.ops) | set(self.cfg.op_p)) - set(ALL_OPS):
            raise ValueError(f"unknown degradation ops {sorted(unknown)}; expected a subset of {ALL_OPS}")
        if any(not 0.0 <= v <= 1.0 for v in self.cfg.op_p.values()):
            raise ValueError(f"op_p values must be in [0, 1], got {self.cfg.op_p}")
        self.ops = ({n: _candidates(n, self.cfg.strength, self.cfg.min_scale) for n in self.cfg.ops}
                    if self.cfg.strength > 0 else {})
        self.last_ops: list[str] = []

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"expected HxWx3 uint8 RGB, got {img.shape} {img.dtype}")
        self.last_ops = []
        out = np.ascontiguousarray(img)
        names = list(self.ops)
        for i in rng.permutation(len(names)):
            if rng.random() < self.cfg.op_p.get(names[i], self.cfg.p):
                cands = self.ops[names[i]]
                out = cands[int(rng.integers(len(cands)))](out, rng)
                self.last_ops.append(names[i])
        return out.copy() if out is img else out


def _tile(img: np.ndarray, tile: int, label: str) -> Image.Image:
    im = Image.fromarray(cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA))
    draw = ImageDraw.Draw(im)
    lines = textwrap.wrap(label, width=max(tile // 6, 4)) or ["-"]
    y = tile - 11 * len(lines) - 1
    draw.rectangle((0, y, tile, tile), fill=(0, 0, 0))
    draw.multiline_text((2, y), "\n".join(lines), fill=(255, 255, 0), spacing=1)
    return im


def preview_grid(images: list[np.ndarray], cfg: DegradationConfig, out_png: str, *, seed: int = 0,
                 per_image: int = 6, tile: int = 96) -> None:
    """PNG grid: one row per image; clean tile then ``per_image`` degraded tiles labelled with the fired ops."""
    degrader, rng = Degrader(cfg), np.random.default_rng(seed)
    grid = Image.new("RGB", ((1 + per_image) * tile, len(images) * tile))
    for r, img in enumerate(images):
        grid.paste(_tile(img, tile, "clean"), (0, r * tile))
        for c in range(1, per_image + 1):
            out = degrader(img, rng)
            grid.paste(_tile(out, tile, " ".join(degrader.last_ops) or "none"), (c * tile, r * tile))
    folder = os.path.dirname(os.path.abspath(out_png))
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            grid.save(f, format="PNG")
        os.replace(tmp, out_png)
    except BaseException:
        os.unlink(tmp)
        raise
