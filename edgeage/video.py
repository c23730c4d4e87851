"""Video input for ``edgeage predict VIDEO | --camera N | --stream URL``: decode (OpenCV's
``VideoCapture``, FFmpeg backend), detect faces every k-th frame (BlazeFace), track them
(``edgeage.track``: ByteTrack), one batch of face crops per frame through the age model
(``AgeEstimator``: a PyTorch checkpoint or an exported artifact's runtime, no torch here), one
smoothed age per track.

``run_video(est, source, options)`` returns one JSON-ready dict: ``tracks`` (each with its
``age``, spread, first / last frame, faces used), ``per_frame`` records (boxes, track ids,
per-frame ages), the run's frames/s and faces/s, and ms per frame for each stage (decode, detect,
track, crop, model, readout). ``annotate=OUT.mp4`` writes the frames with boxes, ids and ages,
atomically (nothing at OUT unless the whole video was processed).

Frames where detection is skipped (``detect_every`` > 1) carry each track's last box forward,
marked ``"detected": false``, without an age: the age model runs on detected faces only."""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .face import Face
from .track import FaceTracker, Track, face_quality, tracker_version
from .utils import EdgeAgeError, atomic_path

VIDEO_EXTS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".3gp")
STAGES = ("decode", "detect", "track", "crop", "model", "readout")
OPEN_TIMEOUT_MS = 8000
_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def is_video(path) -> bool:
    return Path(str(path)).suffix.lower() in VIDEO_EXTS


@dataclass
class VideoOptions:
    detect_every: int = 1     # run the detector on every k-th frame
    min_face: float = 0.0     # drop faces whose box side is below this (px)
    max_faces: int = 0        # keep at most this many faces per frame (best quality first); 0: all
    min_track_faces: int = 3  # tracks with fewer faces are counted but not reported
    lost_s: float = 1.0       # a face unseen this long loses its track id
    max_frames: int = 0       # stop after this many frames (camera / stream); 0: to the end


def _quiet_opencv(cv2) -> None:
    """OpenCV's and FFmpeg's own log lines (a damaged file prints a dozen) would bury the one
    error edgeage gives; errors only."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET, read when FFmpeg starts
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # pragma: no cover - an OpenCV build without the logging module
        pass


class VideoSource:
    """Frames (RGB uint8) of a video file, a camera or a stream URL, decoded by OpenCV."""

    def __init__(self, video=None, camera: int | None = None, stream: str | None = None):
        import cv2

        given = [x is not None for x in (video, camera, stream)]
        if sum(given) != 1:
            raise EdgeAgeError("give one video source: VIDEO (a file), --camera N or --stream URL")
        if video is not None:
            p = Path(video)
            self.label, self.kind = f"video {video}", "file"
            if not p.is_file():
                raise EdgeAgeError(f"{video}: no such video file")
            if p.stat().st_size == 0:
                raise EdgeAgeError(f"{video}: empty file, not a video")
            src, params = str(p), []
        elif camera is not None:
            self.label, self.kind = f"--camera {camera}", "camera"
            src, params = int(camera), []
        else:
            self.label, self.kind = f"--stream {stream}", "stream"
            src = str(stream)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, OPEN_TIMEOUT_MS]
        self._cv2 = cv2
        _quiet_opencv(cv2)
        cap = cv2.VideoCapture(src, cv2.CAP_ANY if camera is not None else cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            what = {"file": "cannot be decoded (not a video, or a damaged or unsupported one)",
                    "camera": "cannot be opened (no such camera, or it is busy)",
                    "stream": f"cannot be opened (dead stream, wrong URL, or a protocol FFmpeg here lacks; "
                              f"waited up to {OPEN_TIMEOUT_MS / 1000:g} s)"}[self.kind]
            raise EdgeAgeError(f"{self.label}: {what}")
        self.cap = cap
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not np.isfinite(self.fps) or self.fps <= 0 or self.fps > 1000:
            self.fps = 0.0
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = n if self.kind == "file" and n > 0 else None
        self.width, self.height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))

    def frames(self, timings: dict | None = None) -> Iterator[np.ndarray]:
        cv2 = self._cv2
        while True:
            t0 = time.perf_counter()
            ok, bgr = self.cap.read()
            if not ok or bgr is None:
                return
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if bgr.ndim == 3 else cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
            if timings is not None:
                timings["decode"] += time.perf_counter() - t0
            yield rgb

    def close(self) -> None:
        self.cap.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def select_faces(faces: list[Face], opts: VideoOptions) -> list[Face]:
    """Faces at least ``min_face`` px on their shorter side, at most ``max_faces`` of them (the
    best quality first), in the detector's order."""
    keep = [f for f in faces if min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= opts.min_face]
    if opts.max_faces and len(keep) > opts.max_faces:
        best = sorted(range(len(keep)), key=lambda i: -face_quality(keep[i].box, keep[i].score))[:opts.max_faces]
        keep = [keep[i] for i in sorted(best)]
    return keep


def draw_frame(rgb: np.ndarray, rec: dict, tracks: dict) -> np.ndarray:
    """A BGR copy of a frame with each face's box, track id and age (the track's smoothed age so
    far; a box carried over a frame without detection is drawn in amber)."""
    import cv2

    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    lw = max(2, round(max(rgb.shape[:2]) / 320))
    for f in rec["faces"]:
        x0, y0, x1, y1 = (int(round(v)) for v in f["box"])
        tid = f.get("track", -1)
        color = (64, 64, 255) if f.get("detected", True) else (64, 200, 255)
        cv2.rectangle(bgr, (x0, y0), (x1, y1), color, lw)
        t = tracks.get(tid)
        age = t.age if t is not None and t.ages else f.get("age")
        label = (f"#{tid} " if tid >= 0 else "") + (f"{age:.0f}" if age is not None else "?")
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 2)
        cv2.rectangle(bgr, (x0, max(0, y0 - th - 8)), (x0 + tw + 6, y0), color, -1)
        cv2.putText(bgr, label, (x0 + 3, y0 - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
    return bgr


class _Annotator:
    """Writes annotated frames to a temp file inside ``atomic_path``'s folder (the container is
    chosen by the extension, which the temp name keeps)."""

    def __init__(self, tmp: Path, suffix: str, fps: float, size: tuple[int, int]):
        import cv2

        self.cv2, self.tmp = cv2, tmp
        self.file = tmp.parent / f"annotated{suffix}"
        self.w = cv2.VideoWriter(str(self.file), cv2.VideoWriter_fourcc(*_FOURCC[suffix]), fps or 25.0, size)
        if not self.w.isOpened():
            raise EdgeAgeError(f"--annotate: OpenCV cannot write {suffix} video here (codec {_FOURCC[suffix]})")

    def write(self, rgb: np.ndarray, rec: dict, tracks: dict) -> None:
        self.w.write(draw_frame(rgb, rec, tracks))

    def finish(self) -> None:
        self.w.release()
        os.replace(self.file, self.tmp)


def _progress(source: VideoSource, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=source.frame_count, desc=source.label[:40], unit="frame", disable=not enabled,
                leave=False, mininterval=0.5)


def run_video(est, source: VideoSource, opts: VideoOptions | None = None, annotate=None,
              progress: bool = True, keep_frames: bool = True) -> dict:
    """Every frame of ``source`` through ``est`` (an AgeEstimator): see the module docstring.
    ``annotate``: an .mp4 / .avi / .mov / .mkv path, written only when the video ends normally."""
    opts = opts or VideoOptions()
    if opts.detect_every < 1:
        raise EdgeAgeError("--detect-every must be 1 or more")
    if annotate is not None:
        suffix = Path(annotate).suffix.lower()
        if suffix not in _FOURCC:
            raise EdgeAgeError(f"--annotate {annotate}: give a video file name ending in "
                               f"{', '.join(sorted(_FOURCC))}")
        with atomic_path(annotate) as tmp:
            ann: list[_Annotator] = []  # made on the first frame (its size)

            def on_frame(rgb, rec, tracks):
                if not ann:
                    ann.append(_Annotator(tmp, suffix, source.fps, (rgb.shape[1], rgb.shape[0])))
                ann[0].write(rgb, rec, tracks)

            try:
                res = _run(est, source, opts, progress, keep_frames, on_frame)
            finally:
                if ann:
                    ann[0].w.release()
            ann[0].finish()
        res["annotated"] = str(annotate)
        return res
    return _run(est, source, opts, progress, keep_frames, None)


def _run(est, source, opts, progress, keep_frames, on_frame) -> dict:
    t = dict.fromkeys(STAGES, 0.0)
    fps = source.fps
    tracker = FaceTracker((fps or 25.0) / opts.detect_every, lost_s=opts.lost_s)
    tracks: dict[int, Track] = {}
    per_frame, carried = [], []
    n_frames = n_faces = n_detect = 0
    bar = _progress(source, progress)
    wall0 = time.perf_counter()
    try:
        for i, img in enumerate(source.frames(t)):
            n_frames += 1
            rec = {"frame": i, "time_s": round(i / fps, 3) if fps else None, "detected": False, "faces": []}
            if i % opts.detect_every == 0:
                n_detect += 1
                rec["detected"] = True
                c0 = time.perf_counter()
                faces = select_faces(est.faces(img), opts)
                c1 = time.perf_counter()
                ids = tracker.update(faces)
                c2 = time.perf_counter()
                x = est.inputs(est.crop_faces(img, faces)) if faces else None
                c3 = time.perf_counter()
                out = est.outputs(x) if faces else None
                c4 = time.perf_counter()
                ages = est.ages_of(out) if faces else []
                c5 = time.perf_counter()
                for k, (s, e) in zip(STAGES[1:], ((c0, c1), (c1, c2), (c2, c3), (c3, c4), (c4, c5))):
                    t[k] += e - s
                n_faces += len(faces)
                carried = []
                for f, tid, a in zip(faces, ids, ages):
                    q = face_quality(f.box, f.score)
                    rec["faces"].append({"track": tid, "box": [round(v, 1) for v in f.box],
                                         "score": round(f.score, 3), "quality": round(q, 3), "age": round(float(a), 2)})
                    if tid >= 0:
                        tracks.setdefault(tid, Track(tid, i)).add(i, f.box, a, q)
                        carried.append({"track": tid, "box": [round(v, 1) for v in f.box], "detected": False})
            else:
                rec["faces"] = [dict(c) for c in carried]
            if on_frame is not None:
                on_frame(img, rec, tracks)
            if keep_frames:
                per_frame.append(rec)
            bar.update(1)
            if opts.max_frames and n_frames >= opts.max_frames:
                break
    finally:
        bar.close()
    wall = time.perf_counter() - wall0
    if n_frames == 0:
        raise EdgeAgeError(f"{source.label}: no frame could be decoded"
                           + (" (not a video, or a damaged one)" if source.kind == "file" else ""))
    kept = [tr for tr in tracks.values() if len(tr.ages) >= opts.min_track_faces]
    total = sum(t.values())
    return {"source": source.label, "kind": source.kind, "fps": round(fps, 3) if fps else None,
            "width": int(img.shape[1]), "height": int(img.shape[0]),
            "frames": n_frames, "detect_frames": n_detect, "faces": n_faces,
            "frames_expected": source.frame_count,
            "wall_s": round(wall, 4), "frames_per_s": round(n_frames / wall, 2) if wall > 0 else None,
            "faces_per_s": round(n_faces / wall, 2) if wall > 0 else None,
            "ms_per_frame": {k: round(1e3 * v / n_frames, 4) for k, v in t.items()},
            "share": {k: round(v / total, 4) if total else 0.0 for k, v in t.items()},
            "options": asdict(opts), "tracker": tracker_version(),
            "tracks": [tr.summary(fps) for tr in sorted(kept, key=lambda x: x.first_frame)],
            "short_tracks": len(tracks) - len(kept),
            **({"per_frame": per_frame} if keep_frames else {})}


# ---- a synthetic clip from still faces (tests, the ablation, the docs' screenshot) ----------

def default_paths(n: int, frames: int, size: int = 150, width: int = 640, height: int = 480) -> list[list]:
    """Keyframes ``(frame, x, y, side)`` for up to 3 faces that move, enter and leave without
    overlapping: one crosses the top from the start to the end, one enters from the right, turns
    and leaves again, one rises from the bottom edge a third of the way in."""
    f = frames - 1
    paths = [[(0, 30, 20, size), (f, 230, 50, size)],
             [(int(0.12 * f), width, 170, size), (int(0.45 * f), width - size - 40, 230, size),
              (int(0.8 * f), width + 5, 300, size)],
             [(int(0.35 * f), 40, height, size), (int(0.6 * f), 60, height - size - 20, size),
              (f, 200, height - size - 10, size)]]
    return paths[:n]


def path_at(path: list, i: int):
    """The (x, y, side) of a keyframed path at frame i, or None outside it (piecewise linear)."""
    if i < path[0][0] or i > path[-1][0]:
        return None
    for (f0, *a), (f1, *b) in zip(path, path[1:]):
        if f0 <= i <= f1:
            u = (i - f0) / max(1, f1 - f0)
            return tuple((1 - u) * p + u * q for p, q in zip(a, b))
    return tuple(path[-1][1:])


def compose_clip(faces: list[np.ndarray], out, paths: list[list] | None = None, frames: int = 60,
                 fps: float = 15.0, size: tuple[int, int] = (640, 480), seed: int = 0,
                 fourcc: str = "mp4v") -> list[dict]:
    """Write a clip (cv2.VideoWriter) of still face images (RGB) moving over a fixed background
    along ``paths`` (``default_paths``); returns per face the frames where it is wholly or partly
    in view. Seeded: the same inputs give the same clip."""
    import cv2

    w, h = size
    paths = paths or default_paths(len(faces), frames, width=w, height=h)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    bg = np.stack([90 + 60 * xx / w, 100 + 40 * yy / h, 120 + 0 * xx], -1)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    if not writer.isOpened():
        raise EdgeAgeError(f"{out}: OpenCV cannot write a {fourcc} video here")
    seen = [[] for _ in faces]
    try:
        for i in range(frames):
            fr = np.clip(bg + rng.normal(0, 3, bg.shape), 0, 255).astype(np.uint8)
            for k, (img, path) in enumerate(zip(faces, paths)):
                pos = path_at(path, i)
                if pos is None:
                    continue
                x, y, s = (int(round(v)) for v in pos)
                face = cv2.resize(img, (s, s), interpolation=cv2.INTER_AREA)
                x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + s, w), min(y + s, h)
                if x1 <= x0 or y1 <= y0:
                    continue
                fr[y0:y1, x0:x1] = face[y0 - y:y1 - y, x0 - x:x1 - x]
                seen[k].append(i)
            writer.write(cv2.cvtColor(fr, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return [{"first_frame": s[0] if s else None, "last_frame": s[-1] if s else None, "frames": len(s)}
            for s in seen]


# ---- the predict command's video mode -------------------------------------------------------

def check_annotate_file(annotate, force: bool = False) -> None:
    p = Path(annotate)
    if p.suffix.lower() not in _FOURCC:
        raise EdgeAgeError(f"--annotate {annotate}: for a video give a file name ending in "
                           f"{', '.join(sorted(_FOURCC))}")
    if p.is_dir():
        raise EdgeAgeError(f"--annotate {annotate}: is a folder; give a video file name")
    if p.exists() and not force:
        raise EdgeAgeError(f"--annotate {annotate}: exists; pass --force to replace it")


def predict_video(video, camera, stream, opts: VideoOptions, load_estimator, crop=None, annotate=None,
                  force: bool = False, progress: bool = True) -> dict:
    """``edgeage predict`` on a video: the source is opened (and the --annotate file checked)
    before the model is loaded, so a bad video or a dead stream fails at once."""
    if crop == "none":
        raise EdgeAgeError("--crop none: video needs the face detector (tracks are made of detected faces)")
    if annotate:
        check_annotate_file(annotate, force)
    with VideoSource(video, camera, stream) as src:
        est = load_estimator().with_crop_policy(crop)
        res = run_video(est, src, opts, annotate=annotate, progress=progress)
    res["model"] = est.manifest.model.name
    res["tta_flip"] = est.tta_flip
    return res


def print_video(res: dict) -> None:
    import click

    click.echo(f"{res['source']}: {res['frames']} frames ({res['width']}x{res['height']}"
               + (f", {res['fps']:g} fps" if res["fps"] else "") + f"), {res['faces']} faces, "
               f"{res['frames_per_s']:.1f} frames/s, {len(res['tracks'])} track(s)"
               + (f" (+{res['short_tracks']} shorter than {res['options']['min_track_faces']} faces)"
                  if res["short_tracks"] else ""))
    for t in res["tracks"]:
        when = (f"{t['first_s']:.2f}-{t['last_s']:.2f} s" if t["first_s"] is not None
                else f"frames {t['first_frame']}-{t['last_frame']}")
        click.echo(f"  track {t['id']}: age {t['age']:.1f} ± {t['spread']:.1f} ({t['faces']} faces, {when})")
    if res.get("annotated"):
        click.echo(f"wrote {res['annotated']}")


def match_tracks(res: dict, paths) -> dict:
    """For a clip made by ``compose_clip``: track id -> index of the composed face whose path is
    nearest the track's first detected box (tests and the ablation score tracks with it)."""
    first = {}
    for fr in res["per_frame"]:
        for f in fr["faces"]:
            if f.get("track", -1) >= 0 and "age" in f and f["track"] not in first:
                first[f["track"]] = (fr["frame"], f["box"])
    out = {}
    for tid, (i, b) in first.items():
        c = np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])
        d = [np.hypot(*(c - (np.array(p[:2]) + p[2] / 2))) if (p := path_at(path, i)) else np.inf for path in paths]
        out[tid] = int(np.argmin(d))
    return out
