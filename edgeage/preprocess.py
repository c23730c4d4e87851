"""The canonical preprocessing, one definition for training, eval, predict, every target runner
and the Android core (which re-implements these exact formulas in Java and is checked against
golden vectors written from here):

1. canonical crop: a square around the face box, side = ``margin`` x max(box w, h), centre
   shifted by ``shift_y`` x side, rounded to integer pixel bounds, pixels outside the image
   replicate the edge; resized to ``crop_size`` (uint8). Without a face: the centre square.
2. model input: resize the canonical crop to ``input_size`` (float), /255, (x - mean) / std,
   RGB, NCHW.

Both resizes use ``resize`` below: separable, antialiased triangle (bilinear) filter, pixel
centres at +0.5, kernel widened by the downscale factor, weights normalised per output pixel
(the PIL 'BILINEAR' definition), computed in float64.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class CropParams:
    margin: float = 1.0        # square side = margin * max(face box w, h)
    shift_y: float = 0.0      # centre moved by shift_y * side (negative = up)
    crop_size: int = 96        # canonical crop resolution (uint8, cached)
    policy: str = "detect"     # detect | none (use the image as is)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Normalize:
    input_size: int = 64
    mean: tuple = (0.5, 0.5, 0.5)
    std: tuple = (0.25, 0.25, 0.25)
    channel_order: str = "RGB"
    layout: str = "NCHW"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d


@lru_cache(maxsize=512)
def resize_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] matrix of the antialiased triangle filter (rows sum to 1); cached, read-only."""
    w = _resize_weights(n_in, n_out)
    w.flags.writeable = False
    return w


def _resize_weights(n_in: int, n_out: int) -> np.ndarray:
    scale = n_in / n_out
    support = max(scale, 1.0)
    centers = (np.arange(n_out) + 0.5) * scale
    src = np.arange(n_in) + 0.5
    w = np.maximum(0.0, 1.0 - np.abs(src[None, :] - centers[:, None]) / support)
    s = w.sum(axis=1, keepdims=True)
    return w / np.where(s == 0, 1.0, s)


def resize(img: np.ndarray, out_h: int, out_w: int | None = None) -> np.ndarray:
    """HxWxC (any dtype) -> out_h x out_w x C float64, by ``resize_weights`` on both axes."""
    out_w = out_h if out_w is None else out_w
    return resize_batch(img[None], out_h, out_w)[0]


def resize_batch(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """[B,H,W,C] (any dtype) -> [B,out_h,out_w,C] float64: the vertical pass, then the horizontal,
    each one matrix product with ``resize_weights``."""
    b, h, w, c = x.shape
    rows = resize_weights(h, out_h) @ x.reshape(b, h, w * c).astype(np.float64)     # [B,out_h,W*C]
    t = rows.reshape(b, out_h, w, c).transpose(0, 1, 3, 2).reshape(b * out_h * c, w) @ resize_weights(w, out_w).T
    return t.reshape(b, out_h, c, out_w).transpose(0, 1, 3, 2)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Round half up, tie-proof: exact halves (x.5) land on either side of .5 by ~1e-13
    depending on the summation order of the resize, so 2^-20 is added to make every
    implementation (numpy's BLAS, the Java core) round them the same way."""
    return np.clip(np.floor(x + (0.5 + 2.0 ** -20)), 0, 255).astype(np.uint8)


GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 luma, as OpenCV and PIL


def grey(img: np.ndarray) -> np.ndarray:
    """RGB uint8 crop(s) [..., 3] as grey ones (the luma in all three channels), as an IR or
    monochrome camera, or a black-and-white photo, gives them."""
    y = np.clip(np.rint(np.asarray(img).astype(np.float32) @ GREY_WEIGHTS), 0, 255).astype(np.uint8)
    return np.repeat(y[..., None], 3, axis=-1)


def square_bounds(box, img_w: int, img_h: int, p: CropParams) -> tuple[int, int, int]:
    """(x0, y0, side) integer square for a face box (x0, y0, x1, y1) in pixels, or the centre
    square when box is None."""
    if box is None:
        side = min(img_w, img_h)
        return (img_w - side) // 2, (img_h - side) // 2, side
    x0, y0, x1, y1 = box
    side = p.margin * max(x1 - x0, y1 - y0)
    cx = (x0 + x1) / 2.0
    cy = (y0 + y1) / 2.0 + p.shift_y * side
    iside = max(1, int(np.floor(side + 0.5)))
    return int(np.floor(cx - side / 2 + 0.5)), int(np.floor(cy - side / 2 + 0.5)), iside


def extract_square(img: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """side x side window at (x0, y0); outside pixels replicate the nearest edge pixel."""
    h, w = img.shape[:2]
    if x0 >= 0 and y0 >= 0 and x0 + side <= w and y0 + side <= h:  # inside the image: a view
        return img[y0:y0 + side, x0:x0 + side]
    ys = np.clip(np.arange(y0, y0 + side), 0, h - 1)
    xs = np.clip(np.arange(x0, x0 + side), 0, w - 1)
    return img[ys[:, None], xs[None, :]]


def canonical_crop(img: np.ndarray, box, p: CropParams) -> np.ndarray:
    """HxWx3 uint8 RGB -> crop_size x crop_size x 3 uint8 canonical crop."""
    if p.policy == "none":
        return to_uint8(resize(img, p.crop_size))
    x0, y0, side = square_bounds(box, img.shape[1], img.shape[0], p)
    return to_uint8(resize(extract_square(img, x0, y0, side), p.crop_size))


def model_input_np(crops, n: Normalize) -> np.ndarray:
    """[N,]HxWx3 uint8 canonical crops -> N x 3 x S x S float32 numpy array (no torch: the
    pipeline and the device side). The same float64 arithmetic as ``model_input``."""
    x = np.asarray(crops)
    x = x[None] if x.ndim == 3 else x
    x = resize_batch(x, n.input_size, n.input_size) / 255.0
    if n.channel_order == "BGR":
        x = x[..., ::-1]
    x = (x - np.asarray(n.mean, np.float64)) / np.asarray(n.std, np.float64)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)).astype(np.float32)


def model_input(crops, n: Normalize):
    """[N,]HxWx3 uint8 canonical crops (numpy or torch) -> N x 3 x S x S float32 torch tensor, on
    the crops' device when they are a tensor.

    Computed in float64 and rounded once to float32, so other implementations (the Java core)
    can match it to ~1e-7."""
    import torch

    x = torch.as_tensor(np.asarray(crops) if not isinstance(crops, torch.Tensor) else crops)
    x = x[None] if x.ndim == 3 else x
    x = x.to(torch.float64)
    wy = torch.tensor(resize_weights(x.shape[1], n.input_size), device=x.device)
    wx = torch.tensor(resize_weights(x.shape[2], n.input_size), device=x.device)
    x = torch.einsum("oh,nhwc,pw->nopc", wy, x, wx) / 255.0
    if n.channel_order == "BGR":
        x = x.flip(-1)
    mean = torch.tensor(n.mean, dtype=torch.float64, device=x.device)
    std = torch.tensor(n.std, dtype=torch.float64, device=x.device)
    return ((x - mean) / std).permute(0, 3, 1, 2).contiguous().to(torch.float32)
