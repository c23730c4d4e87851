"""Video input (issue 26): a clip generated from labelled, held-out UTKFace faces that move, enter
and leave; the tracks it gives and their ages; --detect-every; the artifact path without torch; one
clear error and a whole (or no) output file for bad videos, a dead stream and Ctrl-C.

The faces: three from the shipped default model's test split (checked against the split hash in
its manifest), adults of distinct ages whose still photo the model already gets within 6 years
(the model's per-face errors are heavy-tailed: MAE 5.48, but one test face in ten is off by more
than 12 years; this file tests the video pipeline, not the model). A track must then be within
``LABEL_TOL`` = 12 years (about 2x the model's test MAE) of its face's label and within
``STILL_TOL`` = 8 years of the model's age for the still photo (the clip rescales the faces to
150 px, mp4v-compresses them and shows some only in part: the detector's box, so the crop, moves,
and one face's age moved by 6 years here)."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import UTK, spawn_cli
from edgeage.video import match_tracks

LABEL_TOL, STILL_TOL = 12.0, 8.0
FRAMES, FPS = 60, 15.0


@pytest.fixture(scope="module")
def estimator(edgeage_env):
    from edgeage.pipeline import AgeEstimator

    return AgeEstimator.from_checkpoint(None)


def _age_as_in_a_clip(estimator, img) -> float:
    """The face's age after what a clip does to it: scaled to 150 px and JPEG-compressed at
    quality 40 (mp4v's artifacts), on a grey frame."""
    import cv2

    face = cv2.resize(img, (150, 150), interpolation=cv2.INTER_AREA)
    ok, enc = cv2.imencode(".jpg", face[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 40])
    frame = np.full((480, 640, 3), 127, np.uint8)
    frame[165:315, 245:395] = cv2.imdecode(enc, cv2.IMREAD_COLOR)[..., ::-1]
    faces = estimator.predict(frame)["faces"]
    return faces[0]["age"] if len(faces) == 1 else float("inf")


@pytest.fixture(scope="module")
def labelled(estimator):
    """Three held-out faces (image, label, still-photo age), ages at least 12 years apart."""
    from edgeage.data import load_image, parse_utk_name, split

    names = sorted(os.listdir(UTK)) if UTK.is_dir() else []
    if len(names) < 1000:
        pytest.fail(f"UTKFace images missing under {UTK}")
    test = split(names, 0)["test"]
    want = estimator.manifest.training.split["test_hash"]
    assert hashlib.sha256("\n".join(names[i] for i in test).encode()).hexdigest() == want
    out = []
    for i in np.random.default_rng(26).permutation(test):
        age = parse_utk_name(names[i])
        if not 20 <= age <= 70 or any(abs(age - o[1]) < 12 for o in out):
            continue
        img = load_image(UTK / names[i])
        rec = estimator.predict(img)
        # the model reads it within 6 years as a still photo and as the clip shows it (150 px,
        # lossy): the test then checks the video pipeline, not the model's bad cases
        if len(rec["faces"]) == 1 and abs(rec["faces"][0]["age"] - age) <= 6 and \
                abs(_age_as_in_a_clip(estimator, img) - age) <= 6:
            out.append((img, age, rec["faces"][0]["age"]))
        if len(out) == 3:
            return out
    pytest.fail("no three usable test faces")


@pytest.fixture(scope="module")
def clip(tmp_path_factory, labelled):
    from edgeage.video import compose_clip, default_paths

    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    paths = default_paths(3, FRAMES)
    seen = compose_clip([f[0] for f in labelled], path, paths, frames=FRAMES, fps=FPS)
    return path, paths, seen


def check_tracks(res: dict, labelled, paths, seen) -> None:
    assert len(res["tracks"]) == 3, [(t["id"], t["faces"], t["first_frame"], t["last_frame"]) for t in res["tracks"]]
    who = match_tracks(res, paths)
    assert sorted(who[t["id"]] for t in res["tracks"]) == [0, 1, 2]  # one track per face
    for t in res["tracks"]:
        k = who[t["id"]]
        _, label, still = labelled[k]
        assert abs(t["age"] - label) <= LABEL_TOL, (t, label)
        assert abs(t["age"] - still) <= STILL_TOL, (t, still)
        assert seen[k]["first_frame"] <= t["first_frame"] <= t["last_frame"] <= seen[k]["last_frame"]
        assert t["spread"] >= 0 and t["faces"] >= 3


def test_clip_gives_one_track_per_face_with_its_age(estimator, labelled, clip):
    from edgeage.video import STAGES, VideoOptions, VideoSource, run_video

    path, paths, seen = clip
    with VideoSource(path) as src:
        assert (src.width, src.height, src.frame_count) == (640, 480, FRAMES)
        res = run_video(estimator, src, VideoOptions(), progress=False)
    assert res["frames"] == res["detect_frames"] == FRAMES and res["frames_per_s"] > 0
    assert set(res["ms_per_frame"]) == set(STAGES)
    check_tracks(res, labelled, paths, seen)
    # the first face is in view throughout: one track from the first frame to the last
    whole = [t for t in res["tracks"] if t["first_frame"] == 0]
    assert len(whole) == 1 and whole[0]["last_frame"] == FRAMES - 1
    # per frame: a box, a track id and an age for each face; frame 0 shows exactly the first face
    assert len(res["per_frame"]) == FRAMES
    assert [f["track"] for f in res["per_frame"][0]["faces"]] == [whole[0]["id"]]


def test_tta_flip_reads_every_face_of_the_clip_with_its_mirror(estimator, labelled, clip):
    from edgeage.video import STAGES, VideoOptions, VideoSource, run_video

    path, paths, seen = clip
    flip = estimator.with_tta_flip()
    with VideoSource(path) as src:
        res = run_video(flip, src, VideoOptions(max_frames=20), progress=False)
    with VideoSource(path) as src:
        img = next(iter(src.frames(dict.fromkeys(STAGES, 0.0))))
    faces = estimator.faces(img)
    crops = estimator.crop_faces(img, faces)
    (face,) = res["per_frame"][0]["faces"]
    assert face["age"] == pytest.approx(float(flip.ages(crops)[0]), abs=0.01)
    assert face["age"] != pytest.approx(float(estimator.ages(crops)[0]), abs=0.01)
    assert res["frames"] == 20 and all(np.isfinite(t["age"]) for t in res["tracks"])


def test_detect_every_carries_boxes_and_keeps_the_tracks(estimator, labelled, clip):
    from edgeage.video import VideoOptions, VideoSource, run_video

    path, paths, seen = clip
    with VideoSource(path) as src:
        res = run_video(estimator, src, VideoOptions(detect_every=3, min_track_faces=2), progress=False)
    assert res["detect_frames"] == FRAMES // 3
    skipped = [fr for fr in res["per_frame"] if not fr["detected"]]
    assert skipped and all("age" not in f and f["track"] >= 0 for fr in skipped for f in fr["faces"])
    assert any(fr["faces"] for fr in skipped)
    check_tracks(res, labelled, paths, seen)


def test_min_face_and_max_faces(estimator, clip):
    from edgeage.video import VideoOptions, VideoSource, run_video

    path = clip[0]
    with VideoSource(path) as src:
        res = run_video(estimator, src, VideoOptions(max_faces=1), progress=False, keep_frames=True)
    assert max(len(fr["faces"]) for fr in res["per_frame"]) == 1
    with VideoSource(path) as src:
        res = run_video(estimator, src, VideoOptions(min_face=400), progress=False)
    assert res["faces"] == 0 and res["tracks"] == []


def test_cli_json_and_annotated_video(edgeage_cli, labelled, clip, tmp_path):
    import cv2

    path, paths, seen = clip
    out = tmp_path / "out" / "annotated.mp4"
    p = edgeage_cli("predict", path, "--json", "--annotate", out)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout)
    check_tracks(res, labelled, paths, seen)
    assert res["annotated"] == str(out) and "frame/s" not in p.stderr  # no progress bar with --json
    cap = cv2.VideoCapture(str(out))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (640, 480)
    cap.release()
    assert sorted(os.listdir(out.parent)) == ["annotated.mp4"]  # no temp left behind
    again = edgeage_cli("predict", path, "--annotate", out)  # an existing file: --force to replace
    assert again.returncode != 0 and "--force" in again.stderr and str(out) in again.stderr
    text = edgeage_cli("predict", path, "--annotate", out, "--force", "--detect-every", "2")
    assert text.returncode == 0, text.stderr[-2000:]
    assert text.stdout.count("track ") == 3 and "frame" in text.stderr  # the progress bar


def test_artifact_runs_the_video_without_torch(exported, clip, edgeage_env):
    """The device side: an exported artifact's runtime, detector, tracker; torch unimportable."""
    art = exported("onnx")
    code = (f"import sys, json; sys.modules['torch'] = None\n"
            f"from edgeage.cli import main\n"
            f"main(['predict', {str(clip[0])!r}, '--artifact', {str(art)!r}, '--json', '--detect-every', '2'])\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=edgeage_env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout)
    assert len(res["tracks"]) == 3 and all(np.isfinite(t["age"]) for t in res["tracks"])


def test_missing_tracker_is_one_clear_error(clip, edgeage_env):
    code = (f"import sys; sys.modules['supervision'] = None\n"
            f"from edgeage.cli import main\n"
            f"main(['predict', {str(clip[0])!r}])\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=edgeage_env, timeout=300)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert "video extra" in p.stderr and "pip install 'edgeage[video]'" in p.stderr


@pytest.mark.parametrize("kind", ["text", "empty", "truncated", "missing"])
def test_bad_video_is_one_clear_error_and_no_output(edgeage_cli, clip, tmp_path, kind):
    bad = tmp_path / "bad.mp4"
    if kind == "text":
        bad.write_text("not a video\n")
    elif kind == "empty":
        bad.write_bytes(b"")
    elif kind == "truncated":
        bad.write_bytes(clip[0].read_bytes()[:4000])
    out = tmp_path / "out.mp4"
    p = edgeage_cli("predict", bad, "--json", "--annotate", out)
    assert p.returncode == 1 and p.stdout == "", p.stdout[-500:]
    err = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith("INFO:")]
    assert len(err) == 1 and err[0].startswith("Error: ") and str(bad) in err[0], p.stderr
    assert not out.exists() and os.listdir(tmp_path) == (["bad.mp4"] if kind != "missing" else [])


def test_dead_stream_is_one_clear_error(edgeage_cli, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/live.mp4"
    t0 = time.perf_counter()
    p = edgeage_cli("predict", "--stream", url, "--annotate", tmp_path / "o.mp4")
    assert p.returncode == 1 and time.perf_counter() - t0 < 60
    assert "Error: --stream " + url in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert os.listdir(tmp_path) == []
    q = edgeage_cli("predict", "--camera", "57")
    assert q.returncode == 1 and "--camera 57" in q.stderr and "Traceback" not in q.stderr, q.stderr


def test_ctrl_c_mid_video_exits_130_and_writes_nothing(labelled, tmp_path, edgeage_env):
    from edgeage.video import compose_clip

    long = tmp_path / "long.mp4"
    compose_clip([f[0] for f in labelled], long, frames=150, fps=FPS)
    out = tmp_path / "out" / "a.mp4"
    proc = spawn_cli("predict", long, "--annotate", out, env=edgeage_env)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # the annotator's temp file: mid-video
        if out.parent.is_dir() and any(p.name == "annotated.mp4" for p in out.parent.rglob("*")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and stdout == ""
    assert not out.exists() and list(out.parent.iterdir()) == []  # no half-written file, no temp


def test_video_module_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import edgeage.video, edgeage.track\n"
            "assert 'torch' not in [k for k, v in sys.modules.items() if v is not None]\nprint('ok')\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1])
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-2000:]


def test_weighted_median_and_quality():
    from edgeage.track import face_quality, weighted_median

    assert weighted_median([10, 50, 20], [1, 1, 1]) == 20
    assert weighted_median([10, 50, 20], [0.1, 5, 0.1]) == 50
    assert face_quality((0, 0, 128, 128), 0.9) == pytest.approx(0.9)
    assert face_quality((0, 0, 32, 32), 0.9) == pytest.approx(0.45)
