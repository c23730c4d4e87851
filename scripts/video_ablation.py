"""Track-smoothed vs single-frame age on clips built from labelled faces, and what --detect-every
changes (issue 26). Writes bench/video/ablation.json and ablation.md.

    OMP_NUM_THREADS=1 python scripts/video_ablation.py [--clips 10] [--every 1,2,3,5,10] [--out bench/video]
    python scripts/video_ablation.py --clip-only /tmp/clip.mp4   # one such clip, for pipeline-bench --video

Clips: ``--clips`` clips of 640x480, 15 fps, 6 s, each with 3 faces drawn at random (seeded) from the
shipped default model's UTKFace test split (held out; checked against the split hash in its
manifest), moving, entering and leaving, growing or shrinking between 90 and 170 px along their
paths (``edgeage.video.compose_clip``, mp4v). No face is chosen by how well the model does on it.
Each clip goes through ``edgeage.video.run_video`` (the code of ``edgeage predict VIDEO``) with the
shipped default model (PyTorch, 1 thread) for each --detect-every K. A track is matched to the
face whose path is nearest its first box.

Per face (person), with its label:
* single frame: the mean over that face's detected frames of |per-frame age - label| (the error of
  one frame drawn at random), averaged over faces;
* track (quality-weighted median, what predict reports), plain median and mean of the track's
  per-frame ages: |track age - label| averaged over faces (a face split over several tracks counts
  each track);
* still photo: the model on the original UTKFace photo (no video), for reference.
The clips and faces stay in a temp folder (UTKFace pixels are never written to the repository)."""
from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
UTK = ROOT.parent / "shared" / "datasets" / "utkface"
FRAMES, FPS = 90, 15.0


def clip_paths(rng, frames: int) -> list[list]:
    """Three non-overlapping paths like ``default_paths``, with sizes that change along them."""
    f = frames - 1
    s = lambda: int(rng.integers(90, 171))  # noqa: E731
    return [[(0, 20, 10, s()), (f, 220, 40, s())],
            [(int(0.1 * f), 640, 170, s()), (int(0.45 * f), 430, 220, s()), (int(0.8 * f), 645, 300, s())],
            [(int(0.3 * f), 40, 480, s()), (int(0.6 * f), 60, 300, s()), (f, 200, 310, s())]]


def screenshot(est, clip, png, frame: int = 40, blocks: int = 5) -> int:
    """Frame ``frame`` of ``clip`` as ``predict --annotate`` draws it, each face's square first
    pixelated to ``blocks`` x ``blocks`` cells (unrecognisable), then the boxes, ids and ages."""
    import cv2

    from edgeage.track import Track
    from edgeage.utils import atomic_path
    from edgeage.video import VideoOptions, VideoSource, draw_frame, run_video

    with VideoSource(clip) as src:
        res = run_video(est, src, VideoOptions(max_frames=frame + 1), progress=False)
    tracks = {}
    for fr in res["per_frame"]:
        for f in fr["faces"]:
            if "age" in f and f["track"] >= 0:
                tracks.setdefault(f["track"], Track(f["track"], fr["frame"])).add(fr["frame"], f["box"], f["age"],
                                                                                  f["quality"])
    with VideoSource(clip) as src:
        for i, rgb in enumerate(src.frames()):
            if i == frame:
                break
    rgb = rgb.copy()
    for f in res["per_frame"][frame]["faces"]:
        x0, y0, x1, y1 = (int(round(v)) for v in f["box"])
        m = (x1 - x0) // 3  # the whole face and hair, not only the box
        x0, y0, x1, y1 = max(0, x0 - m), max(0, y0 - m), min(rgb.shape[1], x1 + m), min(rgb.shape[0], y1 + m)
        small = cv2.resize(rgb[y0:y1, x0:x1], (blocks, blocks), interpolation=cv2.INTER_AREA)
        rgb[y0:y1, x0:x1] = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    with atomic_path(png) as tmp:
        ok, buf = cv2.imencode(".png", draw_frame(rgb, res["per_frame"][frame], tracks))
        tmp.write_bytes(buf.tobytes())
    print(f"wrote {png} (frame {frame}, faces pixelated to {blocks}x{blocks})")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=10)
    ap.add_argument("--every", default="1,2,3,5,10")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "video"))
    ap.add_argument("--clip-only", metavar="CLIP.mp4", default=None,
                    help="Only write the first clip (its 3 test faces, 640x480, 6 s) there, e.g. for "
                         "`edgeage pipeline-bench --video`, and stop.")
    ap.add_argument("--screenshot", metavar="PNG", default=None,
                    help="Only write one annotated frame of the first clip, its faces pixelated beyond "
                         "recognition (UTKFace is for non-commercial research: no face of it in the docs), and stop.")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from edgeage.data import load_image, parse_utk_name, split
    from edgeage.pipeline import AgeEstimator
    from edgeage.track import tracker_version, weighted_median
    from edgeage.utils import atomic_path, write_json
    from edgeage.video import VideoOptions, VideoSource, compose_clip, match_tracks, run_video

    est = AgeEstimator.from_checkpoint(None)
    names = sorted(os.listdir(UTK))
    test = split(names, 0)["test"]
    assert hashlib.sha256("\n".join(names[i] for i in test).encode()).hexdigest() == \
        est.manifest.training.split["test_hash"], "not the default model's test split"
    rng = np.random.default_rng(a.seed)
    pick = rng.choice(test, 3 * a.clips, replace=False)
    everies = [int(k) for k in a.every.split(",")]
    faces = []  # per face: label, still age
    per_k = {k: {"single": [], "track": [], "median": [], "mean": [], "tracks": 0, "faces_missed": 0,
                 "fps": [], "per_frame_n": 0} for k in everies}
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for c in range(a.clips):
            idx = pick[3 * c:3 * c + 3]
            imgs = [load_image(UTK / names[i]) for i in idx]
            labels = [parse_utk_name(names[i]) for i in idx]
            still = []
            for img in imgs:
                r = est.predict(img)
                still.append(r["faces"][0]["age"] if r["faces"] else r["fallback_age"])
            faces += [{"label": lab, "still": s} for lab, s in zip(labels, still)]
            paths = clip_paths(rng, FRAMES)
            clip = Path(tmp) / f"clip{c}.mp4"
            compose_clip(imgs, clip, paths, frames=FRAMES, fps=FPS, seed=c)
            if a.screenshot:
                return screenshot(est, clip, a.screenshot)
            if a.clip_only:
                with atomic_path(a.clip_only) as dest:
                    dest.write_bytes(clip.read_bytes())
                print(f"wrote {a.clip_only}: labels {labels}")
                return 0
            for k in everies:
                with VideoSource(clip) as src:
                    res = run_video(est, src, VideoOptions(detect_every=k, min_track_faces=2), progress=False)
                who = match_tracks(res, paths)
                per_k[k]["fps"].append(res["frames_per_s"])
                per_k[k]["tracks"] += len(res["tracks"])
                ages = {}
                for fr in res["per_frame"]:
                    for face in fr["faces"]:
                        if "age" in face and face["track"] in who:
                            ages.setdefault(face["track"], []).append((face["age"], face["quality"]))
                            per_k[k]["per_frame_n"] += 1
                got = set()
                for t in res["tracks"]:
                    j = who[t["id"]]
                    got.add(j)
                    a_, w_ = np.array(ages[t["id"]]).T
                    lab = labels[j]
                    per_k[k]["single"].append(float(np.mean(np.abs(a_ - lab))))
                    per_k[k]["track"].append(abs(weighted_median(a_, w_) - lab))
                    per_k[k]["median"].append(abs(float(np.median(a_)) - lab))
                    per_k[k]["mean"].append(abs(float(np.mean(a_)) - lab))
                per_k[k]["faces_missed"] += 3 - len(got)
            print(f"clip {c + 1}/{a.clips} done ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    still_mae = float(np.mean([abs(f["still"] - f["label"]) for f in faces]))
    rows = []
    for k in everies:
        d = per_k[k]
        rows.append({"detect_every": k, "tracks": d["tracks"], "faces": len(faces), "faces_missed": d["faces_missed"],
                     "face_frames_per_track": round(d["per_frame_n"] / max(1, d["tracks"]), 1),
                     "mae_single_frame": round(float(np.mean(d["single"])), 3),
                     "mae_track_weighted_median": round(float(np.mean(d["track"])), 3),
                     "mae_track_median": round(float(np.mean(d["median"])), 3),
                     "mae_track_mean": round(float(np.mean(d["mean"])), 3),
                     "frames_per_s_median": round(float(np.median(d["fps"])), 1)})
    cmd = "OMP_NUM_THREADS=1 python scripts/video_ablation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = {"command": cmd.strip(), "clips": a.clips, "faces": len(faces), "frames_per_clip": FRAMES, "fps": FPS,
           "size": [640, 480], "model": est.manifest.model.name + " (shipped default, PyTorch, 1 thread)",
           "tracker": tracker_version(), "seed": a.seed, "mae_still_photo": round(still_mae, 3),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared with other jobs)", "rows": rows}
    od = Path(a.out)
    write_json(od / "ablation.json", out)
    md = [f"# Video ablation: track-smoothed vs single-frame age (issue 26)", "",
          f"`{out['command']}`", "",
          f"{a.clips} clips of 640x480, {FRAMES} frames at {FPS:g} fps, 3 faces each ({len(faces)} faces from the "
          "shipped model's UTKFace test split, drawn at random), moving, entering and leaving, 90-170 px; "
          f"model {out['model']}; tracker {out['tracker']}. MAE in years against the UTKFace label, per face. "
          "Single frame: one detected frame of the face, at random (mean over its frames). Track: what "
          "`edgeage predict VIDEO` reports (quality-weighted median of the per-frame ages); plain median and mean "
          f"for comparison. Still photo (the model on the original photo, no video): MAE {still_mae:.2f}.", "",
          "| --detect-every | tracks (faces) | faces missed | face frames / track | MAE single frame | "
          "MAE track (weighted median) | MAE track median | MAE track mean | frames/s |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['detect_every']} | {r['tracks']} ({r['faces']}) | {r['faces_missed']} | "
                  f"{r['face_frames_per_track']} | {r['mae_single_frame']:.2f} | "
                  f"{r['mae_track_weighted_median']:.2f} | {r['mae_track_median']:.2f} | "
                  f"{r['mae_track_mean']:.2f} | {r['frames_per_s_median']:.1f} |")
    with atomic_path(od / "ablation.md") as tmp:
        tmp.write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
