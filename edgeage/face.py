"""Face detection with MediaPipe's BlazeFace short-range model (shipped in edgeage/assets,
Apache-2.0) run by ai-edge-litert, and the choice of one face per image.

``FaceDetector().detect(img)`` returns every face (box, score, 6 key points) in pixel
coordinates; ``choose_face`` picks the largest / most central one; ``crop_face`` makes the
canonical crop (``edgeage.preprocess``), falling back to the centre square when no face is found.
``letterbox`` and ``decode`` are the steps around the graph, so another runner of it (the PyTorch
module of ``edgeage.models.blazeface``) gives faces through the same code.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np

from .preprocess import CropParams, canonical_crop
from .utils import EdgeAgeError

if TYPE_CHECKING:
    from .manifest import Manifest

KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")
_INPUT = 128


@dataclass
class Face:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
    score: float
    keypoints: list[tuple[float, float]] = field(default_factory=list)

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])

    def to_dict(self) -> dict:
        return {"box": [round(v, 2) for v in self.box], "score": round(self.score, 4),
                "keypoints": {k: [round(x, 2), round(y, 2)] for k, (x, y) in
                              zip(KEYPOINTS, self.keypoints)}}


def _anchors() -> np.ndarray:
    """SSD anchors of BlazeFace short range: strides 8 (2 per cell) and 16 (6 per cell)."""
    out = []
    for stride, per_cell in ((8, 2), (16, 6)):
        g = _INPUT // stride
        ys, xs = np.meshgrid((np.arange(g) + 0.5) / g, (np.arange(g) + 0.5) / g, indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(cells, per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)  # [896, 2] (x, y)


def model_path() -> str:
    return str(resources.files("edgeage.assets") / "face_detection_short_range.tflite")


DETECTOR_NAME = "blazeface-short-range"
OUTPUT_WIDTH = 17  # an exported detector's one output [N,896,17]: the 16 regressors, then the score logit


def detector_manifest() -> "Manifest":
    """The manifest of the face detector as an exported model (``edgeage detector export``): a
    ``face-detector``, input the letterboxed frame ([N,3,128,128] NCHW, RGB, x / 127.5 - 1 =
    (x / 255 - 0.5) / 0.5), one output ``[N,896,17]`` read by ``decode`` (readout
    ``blazeface-anchors``), and the .tflite it was built from."""
    from .manifest import FACE_DETECTOR, MANIFEST_FORMAT, check_manifest
    from .utils import sha256_file

    return check_manifest({"format": MANIFEST_FORMAT,
            "model": {"name": DETECTOR_NAME, "kind": FACE_DETECTOR, "anchors": len(_anchors()),
                      "outputs": "regressors[16] + score logit[1] per anchor"},
            "readout": {"type": "blazeface-anchors"},
            "preprocess": {"crop": {"margin": 1.0, "shift_y": 0.0, "crop_size": _INPUT, "policy": "none"},
                           "normalize": {"input_size": _INPUT, "mean": [0.5] * 3, "std": [0.5] * 3,
                                         "channel_order": "RGB", "layout": "NCHW"}},
            "source": {"path": model_path(), "sha256": sha256_file(model_path())}}, DETECTOR_NAME)


def fused_runner(run: Callable[[np.ndarray], np.ndarray]) -> "Runner":
    """A ``Runner`` from an exported detector's model function (NCHW ``[N,3,128,128]`` ->
    ``[N,896,17]``, e.g. ``edgeage.targets.runner.load_runner(...).run``)."""
    def runner(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = np.asarray(run(np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.float32)), np.float32)
        if y.ndim != 3 or y.shape[-1] != OUTPUT_WIDTH:
            raise EdgeAgeError(f"face detector output has shape {list(y.shape)}, expected [N,896,{OUTPUT_WIDTH}]")
        return y[..., :OUTPUT_WIDTH - 1], y[..., OUTPUT_WIDTH - 1:]

    return runner


# a detector runner: letterboxed inputs [N,128,128,3] float32 (NHWC, in [-1, 1]) -> the graph's
# raw outputs, regressors [N,896,16] and score logits ("classificators") [N,896,1], float32
Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Letterbox:
    """Where an image lies in the square detector input: its scale and offsets in pixels."""
    scale: float
    ox: int
    oy: int

    def to_pixels(self, x: float, y: float) -> tuple[float, float]:
        """Letterboxed unit coordinates -> source pixels."""
        return ((x * _INPUT - self.ox) / self.scale, (y * _INPUT - self.oy) / self.scale)


def letterbox(img: np.ndarray) -> tuple[np.ndarray, Letterbox]:
    """HxWx3 uint8 RGB -> the detector input [128,128,3] float32 in [-1, 1] (the image resized
    to fit, centred, -1 around it) and where the image lies in it."""
    h, w = img.shape[:2]
    scale = _INPUT / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    canvas = np.zeros((_INPUT, _INPUT, 3), np.float32) - 1.0
    oy, ox = (_INPUT - nh) // 2, (_INPUT - nw) // 2
    small = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    canvas[oy:oy + nh, ox:ox + nw] = small.astype(np.float32) / 127.5 - 1.0
    return canvas, Letterbox(scale, ox, oy)


def decode(reg: np.ndarray, cls: np.ndarray, where: Letterbox, min_score: float = 0.5, iou: float = 0.3,
           anchors: np.ndarray | None = None) -> list[Face]:
    """One frame's raw outputs (regressors [896,16], score logits [896,1] or [896]) -> faces in
    source pixels: anchor decode, score threshold, weighted NMS."""
    anchors = _anchors() if anchors is None else anchors
    score = 1.0 / (1.0 + np.exp(-np.clip(cls.reshape(-1), -80, 80)))
    keep = score >= min_score
    if not keep.any():
        return []
    reg, score, anc = reg[keep], score[keep], anchors[keep]
    cx = reg[:, 0] / _INPUT + anc[:, 0]
    cy = reg[:, 1] / _INPUT + anc[:, 1]
    bw, bh = reg[:, 2] / _INPUT, reg[:, 3] / _INPUT
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    kps = reg[:, 4:16].reshape(-1, 6, 2) / _INPUT + anc[:, None, :]
    faces = []
    for idx in _weighted_nms(boxes, score, iou):
        wts = score[idx][:, None]
        b = (boxes[idx] * wts).sum(0) / wts.sum()
        k = (kps[idx] * wts[:, :, None]).sum(0) / wts.sum()
        (x0, y0), (x1, y1) = where.to_pixels(b[0], b[1]), where.to_pixels(b[2], b[3])
        faces.append(Face((float(x0), float(y0), float(x1), float(y1)), float(score[idx[0]]),
                          [tuple(float(v) for v in where.to_pixels(*p)) for p in k]))
    return faces


class FaceDetector:
    """``runner``: what computes the raw outputs (``Runner``); by default the shipped .tflite
    run by LiteRT (``interp``, one frame per invoke). Another runner of the same graph (the
    PyTorch module of ``edgeage.models.blazeface``, an exported copy) goes through the same
    letterbox, decode and NMS."""

    def __init__(self, min_score: float = 0.5, iou: float = 0.3, num_threads: int = 1,
                 runner: Runner | None = None):
        self.min_score, self.iou = min_score, iou
        self.anchors = _anchors()
        self.interp = None
        if runner is None:
            from .litert import interpreter

            self.interp = interpreter(model_path(), num_threads)
            self._in = self.interp.get_input_details()[0]["index"]
            outs = {d["name"]: d["index"] for d in self.interp.get_output_details()}
            self._reg, self._cls = outs["regressors"], outs["classificators"]
            runner = self._litert
        self.runner = runner

    def _litert(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        regs, clss = [], []
        for frame in x:  # the graph's batch is 1
            self.interp.set_tensor(self._in, np.ascontiguousarray(frame[None], np.float32))
            self.interp.invoke()
            regs.append(self.interp.get_tensor(self._reg)[0])
            clss.append(self.interp.get_tensor(self._cls)[0])
        return np.stack(regs), np.stack(clss)

    def detect(self, img: np.ndarray) -> list[Face]:
        """img: HxWx3 uint8 RGB. Letterboxed to 128x128, decoded, weighted NMS."""
        return self.detect_many([img])[0]

    def detect_many(self, imgs: list[np.ndarray]) -> list[list[Face]]:
        """Several images, one runner call: the faces of each."""
        if not len(imgs):
            return []
        canvases, where = zip(*(letterbox(img) for img in imgs))
        reg, cls = self.runner(np.stack(canvases))
        return [decode(reg[i], cls[i], w, self.min_score, self.iou, self.anchors) for i, w in enumerate(where)]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x0, y0 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x1, y1 = np.minimum(a[2], b[:, 2]), np.minimum(a[3], b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def _weighted_nms(boxes: np.ndarray, score: np.ndarray, thr: float) -> list[np.ndarray]:
    """MediaPipe's blending NMS: clusters of overlapping boxes, best first (indices per cluster)."""
    order = np.argsort(-score)
    clusters = []
    while len(order):
        ious = _iou(boxes[order[0]], boxes[order])
        clusters.append(order[ious > thr])
        order = order[ious <= thr]
    return clusters


def choose_face(faces: list[Face], img_w: int, img_h: int) -> Face | None:
    """The largest face, discounted by its distance from the image centre."""
    if not faces:
        return None
    diag = float(np.hypot(img_w, img_h))

    def rank(f: Face) -> float:
        cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
        d = np.hypot(cx - img_w / 2, cy - img_h / 2) / diag
        return f.area * (1.0 - d)

    return max(faces, key=rank)


class Cropper:
    """Image -> canonical crop, counting faces not found (centre-square fallback)."""

    def __init__(self, params: CropParams | None = None, detector: FaceDetector | None = None):
        self.params = params or CropParams()
        self.detector = detector
        if self.params.policy == "detect" and self.detector is None:
            self.detector = FaceDetector()
        self.not_found = 0

    def __call__(self, img: np.ndarray) -> tuple[np.ndarray, Face | None]:
        if self.params.policy == "none":
            return canonical_crop(img, None, self.params), None
        face = choose_face(self.detector.detect(img), img.shape[1], img.shape[0])
        if face is None:
            self.not_found += 1
        return canonical_crop(img, face.box if face else None, self.params), face
