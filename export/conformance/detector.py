"""``edgeage detector check``: an exported face detector against the float detector it came from
(the shipped .tflite run by LiteRT), on the same frames: do they find the same faces, in the
same places?

Frames are scenes (``export/artifact/detector.py``): 1-3 photos of ``--data`` at random sizes
on a 640x480 background. Both detectors decode with the same code (letterbox, anchors, weighted
NMS, ``edgeage.face``); the float detector's faces are the reference. A reference face is
*found* when an artifact face overlaps it at IoU >= ``MATCH_IOU`` (greedy, best IoU first).

- recall: found reference faces / reference faces; detection_precision: matched artifact faces /
  artifact faces (an extra face counts against it);
- IoU of the matched boxes: mean and minimum; key points: the largest distance, as a share of
  the face's box side; detector score: the largest difference.

The thresholds are data (``THRESHOLDS``, by precision): a float export must find the same faces
in practically the same places; INT8 may move a box by a few pixels."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from edgeage.check_report import DetectorCheckReport
from edgeage.utils import EdgeAgeError

MATCH_IOU = 0.5
DEFAULT_SCENES = 100

# precision -> metric -> the line it must hold: (">=", lowest) or ("<=", highest)
THRESHOLDS = {
    "fp32": {"recall": (">=", 0.99), "detection_precision": (">=", 0.99), "iou_mean": (">=", 0.98), "keypoint_err_max": ("<=", 0.05)},
    "fp16": {"recall": (">=", 0.98), "detection_precision": (">=", 0.98), "iou_mean": (">=", 0.95), "keypoint_err_max": ("<=", 0.08)},
    "bf16": {"recall": (">=", 0.95), "detection_precision": (">=", 0.95), "iou_mean": (">=", 0.90), "keypoint_err_max": ("<=", 0.15)},
    "int8": {"recall": (">=", 0.95), "detection_precision": (">=", 0.95), "iou_mean": (">=", 0.85), "keypoint_err_max": ("<=", 0.15)},
}


@dataclasses.dataclass
class Match:
    iou: float
    keypoint_err: float   # largest key point distance / box side
    score_diff: float


def box_iou(a, b) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_faces(ref: list, got: list, thr: float = MATCH_IOU) -> list[Match]:
    """Greedy one-to-one matching of two frames' faces by IoU (best first), pairs at IoU >= thr."""
    pairs = sorted(((box_iou(r.box, g.box), i, j) for i, r in enumerate(ref) for j, g in enumerate(got)),
                   reverse=True)
    used_r, used_g, out = set(), set(), []
    for iou, i, j in pairs:
        if iou < thr or i in used_r or j in used_g:
            continue
        used_r.add(i)
        used_g.add(j)
        r, g = ref[i], got[j]
        side = max(r.box[2] - r.box[0], r.box[3] - r.box[1], 1e-6)
        kp = max((float(np.hypot(p[0] - q[0], p[1] - q[1])) for p, q in zip(r.keypoints, g.keypoints)), default=0.0)
        out.append(Match(float(iou), kp / side, abs(r.score - g.score)))
    return out


def compare(ref_faces: list[list], got_faces: list[list]) -> dict:
    """The metrics of two detectors' faces on the same frames."""
    n_ref = sum(map(len, ref_faces))
    n_got = sum(map(len, got_faces))
    matches = [m for r, g in zip(ref_faces, got_faces) for m in match_faces(r, g)]
    ious = np.asarray([m.iou for m in matches]) if matches else np.zeros(0)
    return {"frames": len(ref_faces), "faces_float": n_ref, "faces_artifact": n_got, "matched": len(matches),
            "recall": len(matches) / n_ref if n_ref else None,
            "detection_precision": len(matches) / n_got if n_got else None,
            "iou_mean": float(ious.mean()) if len(ious) else None,
            "iou_min": float(ious.min()) if len(ious) else None,
            "keypoint_err_max": max((m.keypoint_err for m in matches), default=None),
            "score_diff_max": max((m.score_diff for m in matches), default=None)}


def judge(metrics: dict, precision: str) -> list[str]:
    """The lines of ``THRESHOLDS[precision]`` the metrics miss (empty: passed)."""
    if not metrics["faces_float"]:
        return ["the float detector found no face in the frames: give --data photos with faces"]
    fails = []
    for name, (op, lim) in THRESHOLDS[precision].items():
        v = metrics[name]
        if v is None or (v < lim if op == ">=" else v > lim):
            fails.append(f"{name} {'-' if v is None else f'{v:.4f}'} {'<' if op == '>=' else '>'} {lim}")
    return fails


def timed_detect(det, frames: list[np.ndarray]) -> tuple[list[list], float]:
    """Each frame's faces (one frame per call, as a camera delivers them) and the median ms per
    frame (letterbox + graph + decode)."""
    faces, ms = [], []
    det.detect(frames[0])  # warm-up (lazy compilation)
    for f in frames:
        t0 = time.perf_counter()
        faces.append(det.detect(f))
        ms.append((time.perf_counter() - t0) * 1e3)
    return faces, float(np.median(ms))


def check_detector(artifact_dir, data, scenes_n: int = DEFAULT_SCENES, threads: int = 1,
                   seed: int = 1) -> DetectorCheckReport:
    """The conformance report of a detector artifact on ``scenes_n`` scenes of ``data``'s photos
    (seed 1: other scenes than INT8 calibration's, seed 0)."""
    from edgeage.artifact import read_manifest
    from edgeage.face import FaceDetector
    from edgeage.manifest import FACE_DETECTOR, require_kind
    from edgeage.targets.runner import artifact_face_detector

    from ..artifact.detector import scene_photos, scenes

    manifest = require_kind(read_manifest(artifact_dir), FACE_DETECTOR, str(artifact_dir))
    art = manifest.artifact
    if data is None:
        raise EdgeAgeError("edgeage detector check needs --data: a folder of photos with faces (they are placed "
                           "at random sizes in 640x480 frames)")
    frames = scenes(scene_photos(data, scenes_n * 2, seed), scenes_n, seed)
    ref, ref_ms = timed_detect(FaceDetector(num_threads=threads), frames)
    got, got_ms = timed_detect(artifact_face_detector(artifact_dir, threads=threads), frames)
    metrics = compare(ref, got)
    failures = judge(metrics, art.precision)
    return DetectorCheckReport(**{
        "kind": "detector-check", "artifact": str(Path(artifact_dir)), "target": art.target,
        "precision": art.precision, "model": manifest.model.name, "data": str(data),
        "scenes": scenes_n, "seed": seed, "threads": threads, "size_bytes": getattr(art, "size_bytes", None),
        "reference": "the shipped .tflite (float) by LiteRT", "match_iou": MATCH_IOU,
        **metrics, "ms_per_frame_float": ref_ms, "ms_per_frame_artifact": got_ms,
        "thresholds": THRESHOLDS[art.precision], "failures": failures, "passed": not failures})


def report_blocks(r: DetectorCheckReport):
    from .report import Para, Table, Title, fmt_num, fmt_mb

    rows = [["faces (float / artifact / matched)", f"{r.faces_float} / {r.faces_artifact} / {r.matched}", ""],
            *[[k, fmt_num(getattr(r, k)), f"{op} {lim}"] for k, (op, lim) in r.thresholds.items()],
            ["iou_min", fmt_num(r.iou_min), ""], ["score_diff_max", fmt_num(r.score_diff_max), ""],
            ["ms per frame (float LiteRT / artifact)", f"{r.ms_per_frame_float:.3f} / {r.ms_per_frame_artifact:.3f}",
             f"{r.threads} thread(s)"]]
    return [Title(f"Detector check: {r.target} {r.precision}"),
            Para([f"artifact {r.artifact} ({fmt_mb(r.size_bytes)}), model {r.model}; reference: {r.reference}",
                   f"{r.frames} scenes of {r.data} (1-3 photos per 640x480 frame, seed {r.seed}); a face is "
                   f"found at IoU >= {r.match_iou}"]),
            Table(["metric", "value", "threshold"], rows)]


def report_text(r: DetectorCheckReport) -> str:
    from .report import blocks_md

    verdict = "PASSED" if r.passed else "FAILED: " + "; ".join(r.failures)
    return blocks_md(report_blocks(r)) + f"\n\n{verdict}"


def write_report(out_dir, r: DetectorCheckReport, force: bool = False) -> list[Path]:
    """report.json, report.md and report.html in ``out_dir``."""
    from edgeage.document import write_html

    from .report import report_html, write_json_md

    out = write_json_md(out_dir, "report", r.to_json_dict(), report_text(r), force)
    html = write_html(out / "report.html", report_html(report_blocks(r), r.passed, r.failures))
    return [out / "report.json", out / "report.md", html]
