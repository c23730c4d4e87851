"""Face tracks over video frames: a multi-object tracker from a maintained package (ByteTrack as
shipped in ``supervision``; not a home-made one) behind one small adapter, and the per-track age
smoothing.

``FaceTracker.update(faces)`` assigns a track id to each face of a detection frame. The tracker
package is the ``video`` extra: without it, one ``EdgeAgeError`` says how to install it.

A track's age is the weighted median of its per-frame ages, each weighted by the face's quality
(detector score x face size up to ``QUALITY_REF_PX``: a face smaller than the canonical crop's
useful resolution counts less); its spread is the weighted median absolute deviation (years).
Imports no torch."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .utils import EdgeAgeError

TRACKER_PACKAGE = "supervision"  # ByteTrack (supervision 0.30.x): the `video` extra
VIDEO_EXTRA_HINT = "pip install 'edgeage[video]'"
QUALITY_REF_PX = 64.0  # a face this wide or wider counts fully; smaller ones in proportion


def _bytetrack_class():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from supervision.tracker.byte_tracker.core import ByteTrack
            from supervision import Detections
    except ImportError as e:
        raise EdgeAgeError(f"tracking faces in video needs the video extra ({TRACKER_PACKAGE} "
                           f"with ByteTrack; {type(e).__name__}: {e}): {VIDEO_EXTRA_HINT}") from None
    return ByteTrack, Detections


def tracker_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{TRACKER_PACKAGE} {version(TRACKER_PACKAGE)} ByteTrack"
    except PackageNotFoundError:
        return "missing"


class FaceTracker:
    """ByteTrack over face boxes. ``rate``: detection frames per second (the video's fps divided
    by --detect-every), so that ``lost_s`` (how long a face may go unseen and keep its id) holds in
    seconds whatever the detection rate."""

    def __init__(self, rate: float, lost_s: float = 1.0, match_iou: float = 0.2):
        ByteTrack, self._Detections = _bytetrack_class()
        rate = max(float(rate), 1e-3)
        with warnings.catch_warnings():  # ByteTrack's own deprecation notice (moved to `trackers`)
            warnings.simplefilter("ignore")
            # minimum_matching_threshold is a cost (1 - IoU, fused with the score): 1 - match_iou
            self._bt = ByteTrack(track_activation_threshold=0.25, lost_track_buffer=max(1, round(lost_s * 30)),
                                 minimum_matching_threshold=1.0 - match_iou, frame_rate=rate,
                                 minimum_consecutive_frames=1)
        self._bt.max_time_lost = max(1, round(lost_s * rate))  # in tracker updates (detection frames)

    def update(self, faces: list) -> list[int]:
        """Track ids of ``faces`` (Face objects of one detection frame), -1 for a face not (yet)
        on a track."""
        if not faces:
            self._bt.update_with_detections(self._Detections.empty())
            return []
        xyxy = np.asarray([f.box for f in faces], np.float32)
        det = self._Detections(xyxy=xyxy, confidence=np.asarray([f.score for f in faces], np.float32),
                               class_id=np.zeros(len(faces), int), data={"idx": np.arange(len(faces))})
        out = self._bt.update_with_detections(det)
        ids = [-1] * len(faces)
        for i, t in zip(out.data.get("idx", []), out.tracker_id if out.tracker_id is not None else []):
            ids[int(i)] = int(t)
        return ids


def face_quality(box, score: float, ref_px: float = QUALITY_REF_PX) -> float:
    """Detector score x min(1, face side / ref_px)."""
    side = min(box[2] - box[0], box[3] - box[1])
    return float(score) * float(np.clip(side / ref_px, 0.05, 1.0))


def weighted_median(values, weights) -> float:
    v, w = np.asarray(values, np.float64), np.asarray(weights, np.float64)
    if not len(v):
        return float("nan")
    if w.sum() <= 0:
        w = np.ones_like(v)
    o = np.argsort(v)
    v, c = v[o], np.cumsum(w[o])
    return float(v[np.searchsorted(c, 0.5 * c[-1])])


@dataclass
class Track:
    id: int
    first_frame: int
    last_frame: int = -1
    frames: list = field(default_factory=list)
    ages: list = field(default_factory=list)
    weights: list = field(default_factory=list)
    box: tuple | None = None  # last box

    def add(self, frame: int, box, age: float, weight: float) -> None:
        self.last_frame, self.box = frame, tuple(box)
        self.frames.append(frame)
        self.ages.append(float(age))
        self.weights.append(float(weight))

    @property
    def age(self) -> float:
        return weighted_median(self.ages, self.weights)

    def summary(self, fps: float) -> dict:
        a, w = np.asarray(self.ages), np.asarray(self.weights)
        age = weighted_median(a, w)
        spread = weighted_median(np.abs(a - age), w)
        fps = fps if fps and fps > 0 else None
        return {"id": self.id, "age": round(age, 2), "spread": round(spread, 2),
                "age_mean": round(float(np.average(a, weights=w) if w.sum() > 0 else a.mean()), 2),
                "age_min": round(float(a.min()), 2), "age_max": round(float(a.max()), 2),
                "faces": len(a), "first_frame": self.first_frame, "last_frame": self.last_frame,
                "first_s": round(self.first_frame / fps, 3) if fps else None,
                "last_s": round(self.last_frame / fps, 3) if fps else None,
                "quality_mean": round(float(w.mean()), 3)}
