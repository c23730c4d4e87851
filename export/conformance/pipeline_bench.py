"""The whole pipeline's rate on a folder of photos: decode -> detect (BlazeFace) -> canonical crop
-> model input -> model -> readout, per model (the PyTorch checkpoint and exported artifacts,
e.g. fp32 vs INT8), with where the time goes.

    edgeage pipeline-bench --photos DIR --artifact ART_FP32 --artifact ART_INT8 [--model CKPT] [--out DIR]

Every photo goes through the same ``AgeEstimator`` stages ``predict`` uses, one photo at a time
(as a camera or a folder job would), after ``--warmup`` untimed photos; each stage is timed with
perf_counter around its call. Models run in this process one after the other, each over every
photo, ``--rounds`` times (the best round is kept per model: the least disturbed by the rest of
the machine). Reports photos/s and faces/s, and ms per photo for each stage."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from edgeage.data import IMAGE_EXTS, load_image
from edgeage.utils import EdgeAgeError

STAGES = ("decode", "detect", "crop", "input", "model", "readout")


def list_photos(folder, limit: int | None = None) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise EdgeAgeError(f"--photos {folder}: not a folder")
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not photos:
        raise EdgeAgeError(f"--photos {folder}: no images ({', '.join(sorted(IMAGE_EXTS))})")
    if limit and limit < len(photos):
        idx = np.unique(np.linspace(0, len(photos) - 1, limit).round().astype(int))
        photos = [photos[i] for i in idx]
    return photos


def time_pipeline(est, photos: list[Path], warmup: int = 3) -> dict:
    """One pass of ``est`` over ``photos``: per-stage seconds, faces found, ages."""
    for p in photos[:warmup]:
        est.predict(load_image(p))
    t = dict.fromkeys(STAGES, 0.0)
    faces, ages = 0, []
    wall0 = time.perf_counter()
    for p in photos:
        c0 = time.perf_counter()
        img = load_image(p)
        c1 = time.perf_counter()
        found = est.faces(img)
        c2 = time.perf_counter()
        crops = est.crop_faces(img, found)
        c3 = time.perf_counter()
        x = est.inputs(crops)
        c4 = time.perf_counter()
        out = est.outputs(x)
        c5 = time.perf_counter()
        a = est.ages_of(out)
        c6 = time.perf_counter()
        for k, (s, e) in zip(STAGES, [(c0, c1), (c1, c2), (c2, c3), (c3, c4), (c4, c5), (c5, c6)]):
            t[k] += e - s
        faces += len(found)
        ages.extend(float(v) for v in a)
    wall = time.perf_counter() - wall0
    return {"wall_s": wall, "stage_s": t, "faces": faces, "ages": ages}


def pipeline_bench(photos: list[Path], models: list[tuple[str, object]], warmup: int = 3, rounds: int = 2,
                   progress: bool = True) -> dict:
    """``models``: (label, AgeEstimator) pairs."""
    rows = []
    for label, est in models:
        best = None
        for r in range(rounds):
            res = time_pipeline(est, photos, warmup if r == 0 else 0)
            if best is None or res["wall_s"] < best["wall_s"]:
                best = res
        n = len(photos)
        total = sum(best["stage_s"].values())
        rows.append({"model": label, "photos": n, "faces": best["faces"], "wall_s": best["wall_s"],
                     "photos_per_s": n / best["wall_s"], "faces_per_s": best["faces"] / best["wall_s"],
                     "ms_per_photo": {k: 1e3 * v / n for k, v in best["stage_s"].items()},
                     "share": {k: v / total for k, v in best["stage_s"].items()},
                     "ages_first": best["ages"][:5]})
        if progress:
            print(f"{label}: {rows[-1]['photos_per_s']:.1f} photos/s, {rows[-1]['faces_per_s']:.1f} faces/s",
                  flush=True)
    return {"photos": len(photos), "rounds": rounds, "warmup": warmup, "rows": rows}


def pipeline_blocks(b: dict) -> list:
    from .report import Para, Table, Title

    headers = ["model", "photos/s", "faces/s"] + [f"{s} ms" for s in STAGES] + ["model share"]
    rows = [[r["model"], f"{r['photos_per_s']:.1f}", f"{r['faces_per_s']:.1f}"]
            + [f"{r['ms_per_photo'][s]:.2f}" for s in STAGES] + [f"{100 * r['share']['model']:.0f} %"]
            for r in b["rows"]]
    return [Title("edgeage pipeline-bench"),
            Para([f"{b['photos']} photos, one at a time (decode -> detect -> crop -> input -> model -> readout), "
                  f"best of {b['rounds']} rounds after {b['warmup']} warm-up photos; ms per photo by stage."]),
            Table(headers, rows)]


def write_pipeline_bench(out_dir, b: dict, force: bool = False) -> list[Path]:
    return _write_stages_report(out_dir, b, pipeline_blocks(b), "ms_per_photo", STAGES, "ms per photo",
                                "where the time goes", force)


def _write_stages_report(out_dir, b: dict, blocks: list, key: str, stages, xlabel: str, title: str,
                         force: bool) -> list[Path]:
    """pipeline.json / .md / .html and pipeline_stages.png (ms per stage, stacked, one bar a model):
    the photo and the video pipeline-bench alike."""
    from edgeage.document import blocks_md, plt_agg, savefig, write_html

    from .report import write_json_md, report_html

    out = write_json_md(out_dir, "pipeline", b, blocks_md(blocks), force)
    plt = plt_agg()
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.7 * len(b["rows"]) + 1.5)))
    left = np.zeros(len(b["rows"]))
    for i, s in enumerate(stages):
        v = np.array([r[key][s] for r in b["rows"]])
        ax.barh([r["model"] for r in b["rows"]], v, left=left, label=s, color=f"C{i}")
        left += v
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    savefig(fig, out / "pipeline_stages.png")
    page = report_html(blocks, True, [], [out / "pipeline_stages.png"])
    return [out / "pipeline.json", out / "pipeline.md", write_html(out / "pipeline.html", page),
            out / "pipeline_stages.png"]


# ---- video: decode -> detect -> track -> crop -> model -> readout, frames/s (issue 26) ---------

def video_bench(video, models: list[tuple], opts=None, warmup: int = 10, rounds: int = 2,
                progress: bool = True) -> dict:
    """Every model over every frame of ``video`` through ``edgeage.video.run_video`` (the same
    code as ``predict VIDEO``: tracker, batched faces per frame), ``rounds`` times after
    ``warmup`` untimed frames; the best round per model. ``models``: (label, AgeEstimator[,
    group]) -- a row's per-face ages are compared with the first row of its group (default: the
    first row), so an exported detector or another --detect-every is judged against the same age
    model. ``opts``: one VideoOptions or a list (every model runs with each, side by side)."""
    from edgeage.video import STAGES as VSTAGES
    from edgeage.video import VideoOptions, VideoSource, run_video

    everies = opts if isinstance(opts, list) else [opts or VideoOptions()]
    runs = [(label + (f", detect every {o.detect_every}" if len(everies) > 1 else ""), m[1],
             m[2] if len(m) > 2 else None, o) for o in everies for m in models for label in [m[0]]]
    rows, refs = [], {}
    for label, est, group, o in runs:
        if warmup:
            with VideoSource(video) as src:
                run_video(est, src, VideoOptions(max_frames=warmup), progress=False, keep_frames=False)
        best = None
        for _ in range(rounds):
            with VideoSource(video) as src:
                res = run_video(est, src, o, progress=False, keep_frames=True)
            if best is None or res["wall_s"] < best["wall_s"]:
                best = res
        ages = [[(f["box"], f["age"]) for f in fr["faces"]] if fr["detected"] else None for fr in best["per_frame"]]
        row = {"model": label, "detect_every": o.detect_every, "frames": best["frames"], "faces": best["faces"],
               "wall_s": best["wall_s"], "frames_per_s": best["frames"] / best["wall_s"],
               "faces_per_s": best["faces"] / best["wall_s"], "ms_per_frame": best["ms_per_frame"],
               "share": best["share"], "tracks": [{"id": t["id"], "age": t["age"], "faces": t["faces"]}
                                                  for t in best["tracks"]]}
        if group not in refs:
            refs[group] = (label, ages)
        else:
            row["age_drift_vs"] = refs[group][0]
            row["age_drift_vs_first"] = face_drift(refs[group][1], ages)
        rows.append(row)
        if progress:
            print(f"{label}: {row['frames_per_s']:.1f} frames/s, {row['faces_per_s']:.1f} faces/s", flush=True)
    with VideoSource(video) as src:
        meta = {"video": str(video), "width": src.width, "height": src.height, "fps": src.fps,
                "frames_in_file": src.frame_count}
    return {"kind": "video", **meta, "stages": list(VSTAGES), "rounds": rounds, "warmup": warmup,
            "options": dataclasses.asdict(everies[0]), "detect_every": [o.detect_every for o in everies],
            "rows": rows}


def face_drift(ref: list, got: list, iou: float = 0.5) -> dict:
    """Per-face age drift between two runs over the same frames (each frame: [(box, age)], or
    None where that run did not detect): faces paired by box IoU >= ``iou`` (greedy, best first),
    so a detector that moves a box a little still compares the same face, on the frames both runs
    detected; ``unmatched`` counts the faces of either run without a pair there."""
    from .detector import box_iou

    d, unmatched = [], 0
    for r, g in zip(ref, got):
        if r is None or g is None:
            continue
        pairs = sorted(((box_iou(a[0], b[0]), i, j) for i, a in enumerate(r) for j, b in enumerate(g)), reverse=True)
        ur, ug = set(), set()
        for v, i, j in pairs:
            if v >= iou and i not in ur and j not in ug:
                ur.add(i)
                ug.add(j)
                d.append(abs(r[i][1] - g[j][1]))
        unmatched += len(r) - len(ur) + len(g) - len(ug)
    return {"max": float(max(d, default=0.0)), "mean": float(np.mean(d)) if d else 0.0, "faces": len(d),
            "unmatched": unmatched}


def video_blocks(b: dict) -> list:
    from .report import Para, Table, Title

    st = b["stages"]
    headers = ["model", "frames/s", "faces/s"] + [f"{s} ms" for s in st] + ["model share", "age drift max / mean"]
    rows = [[r["model"], f"{r['frames_per_s']:.1f}", f"{r['faces_per_s']:.1f}"]
            + [f"{r['ms_per_frame'][s]:.2f}" for s in st] + [f"{100 * r['share']['model']:.0f} %",
                                                             _drift(r)] for r in b["rows"]]
    return [Title("edgeage pipeline-bench (video)"),
            Para([f"{b['video']}: {b['rows'][0]['frames'] if b['rows'] else 0} frames {b['width']}x{b['height']}, "
                  f"detect every {', '.join(map(str, b.get('detect_every', [b['options']['detect_every']])))}; decode -> detect -> track -> crop -> model -> "
                  f"readout, the faces of a frame as one batch; best of {b['rounds']} rounds after "
                  f"{b['warmup']} warm-up frames; ms per frame by stage; age drift: per face vs the first row of the same age model (faces paired by box IoU >= 0.5 on the frames both detected)."]),
            Table(headers, rows)]


def _drift(r: dict) -> str:
    d = r.get("age_drift_vs_first")
    if d is None:
        return "(reference)"
    return f"{d['max']:.3f} / {d['mean']:.3f}" + (f" ({d['unmatched']} unmatched)" if d.get("unmatched") else "")


def write_video_bench(out_dir, b: dict, force: bool = False) -> list[Path]:
    return _write_stages_report(out_dir, b, video_blocks(b), "ms_per_frame", b["stages"], "ms per frame",
                                "where the time goes (video)", force)
