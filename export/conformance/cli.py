"""``edgeage check`` and ``edgeage bench``."""
from __future__ import annotations

from pathlib import Path

import click

from edgeage.cli_options import (MAX_THREADS, PRECISIONS, InputPath, emit_json, finish, force_option, model_option,
                                 stdout_to_stderr, threads_type)


def latency_options(f):
    f = click.option("--warmup", type=click.IntRange(0, 100_000), default=10, show_default=True,
                     help="Untimed runs before timing.")(f)
    f = click.option("--runs", type=click.IntRange(0, 1_000_000), default=100, show_default=True,
                     help="Timed runs per round (batch 1); 0 = no latency measurement.")(f)
    f = click.option("--rounds", type=click.IntRange(1, 1000), default=3, show_default=True,
                     help="Timing rounds (spread between them is reported).")(f)
    return f


def data_options(f):
    f = click.option("--data", type=InputPath(exists=True), default=None,
                     help="Labelled faces (UTKFace folder, CSV, or prepared cache). Default: generated "
                          "unlabelled images (numeric drift and latency only).")(f)
    f = click.option("--limit", type=click.IntRange(min=1), default=None,
                     help="Use N images spread evenly over --data.")(f)
    f = click.option("--calib-data", type=InputPath(exists=True), default=None,
                     help="int8 exports here: PTQ calibration data. The checkpoint's training data "
                          "calibrates on its training split (default: --data when it is the training "
                          "data, else the recipe's data path); any other folder of photos (any names, "
                          "labels not needed), CSV with a path column or prepared cache calibrates on "
                          "those images. An INT8 model is never judged on images it was calibrated on "
                          "(compared by canonical-crop digest): check on others, e.g. --split test.")(f)
    f = click.option("--split", "split_part", type=click.Choice(["train", "val", "test"]), default=None,
                     help="Use only this part of the checkpoint's recorded split of --data (e.g. test).")(f)
    return f


def _latency(warmup, runs, rounds, threads=None, batches=None):
    from .check import Latency

    return Latency(warmup=warmup, runs=runs, rounds=rounds, threads=tuple(threads or ()), batches=tuple(batches or ()))


def int_list(ctx, param, value):
    """A comma-separated list of integers >= 1 (click callback), or None."""
    if not value:
        return None
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated integers, e.g. 1,2") from None
    hi = MAX_THREADS if param.name == "threads" else 4096
    if not out or min(out) < 1 or max(out) > hi:
        raise click.BadParameter(f"{value!r}: every value must be in 1..{hi}")
    return out


@click.command("check")
@click.option("--target", default=None, help="Target name or path of a target .toml (default with --artifact: its target).")
@model_option
@click.option("--artifact", type=InputPath(file_okay=False), default=None,
              help="Exported artifact folder; without it the model is exported to a temp folder first.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="Precision to export (without --artifact).")
@data_options
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Write report.json, report.md, report.html (one page, plots embedded), "
                   "age_abs_diff_hist.png, latency.png here.")
@click.option("--localize", is_flag=True, help="Compare intermediate activations layer by layer.")
@click.option("--op-profile", is_flag=True,
              help="The runtime's own per-op timing, summed by op type (OpenVINO, ONNX Runtime): where "
                   "the milliseconds go.")
@latency_options
@force_option
@click.pass_context
def check_cmd(ctx, target, model_path, artifact, precision, data, limit, split_part, calib_data, as_json, out,
              localize, op_profile, warmup, runs, rounds, force):
    """Check an exported model against the float PyTorch model: drift, accuracy, latency;
    exits 1 when a threshold of the target's TOML fails."""
    from edgeage.utils import check_output

    if out:
        check_output(out, force)  # before the check runs, not after

    from .check import run_check
    from .report import check_text, write_check_report

    with stdout_to_stderr():
        report = run_check(target, model_path, artifact, precision, data, limit, progress=True, split=split_part,
                           calib_data=calib_data, localize=localize, op_profile=op_profile,
                           latency=_latency(warmup, runs, rounds))
        if out:
            write_check_report(out, report, force)
    finish(ctx, report, as_json, check_text, "check")


@click.command("bench")
@model_option
@data_options
@click.option("--targets", default=None, help="Comma-separated targets (names or .toml paths). Default: all known; none: only --artifacts rows.")
@click.option("--precisions", default=None,
              help="Comma-separated precisions (default: every precision each target supports).")
@click.option("--artifacts", default=None,
              help="Comma-separated artifact / `edgeage quantize` result folders to add as rows (e.g. "
                   "int8-ptq and int8-qat results, a pruned model's int8); each is compared with the "
                   "checkpoint it came from on the same images.")
@click.option("--peer", "peers", multiple=True, type=InputPath(dir_okay=False),
              help="A peer model's TOML (edgeage.export.conformance.peer: model file, runtime, preprocessing): a "
                   "reference row timed in the same run and scored on the same faces. Repeatable.")
@click.option("--out", type=click.Path(file_okay=False), default="bench", show_default=True,
              help="Write bench.json, bench.md, bench.html (one page, plot embedded), bench_latency.png here.")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.option("--threads", "threads", callback=int_list, default=None,
              help="Throughput grid: comma-separated thread counts (e.g. 1,2); with --batch, faces/s and "
                   "latency per thread count and batch size for every row and the float model.")
@click.option("--batch", "batches", callback=int_list, default=None,
              help="Throughput grid: comma-separated batch sizes (e.g. 1,8,32).")
@latency_options
@force_option
@click.pass_context
def bench_cmd(ctx, model_path, data, limit, split_part, calib_data, targets, precisions, artifacts, peers, out,
              as_json, threads, batches, warmup, runs, rounds, force):
    """Every target x precision: size, accuracy, drift, latency vs PyTorch eager, pass/fail."""
    from edgeage.utils import check_output

    check_output(out, force)

    from .check import run_bench
    from .report import bench_text, compact_row, write_bench

    split = (lambda s: [v.strip() for v in s.split(",") if v.strip()] if s else None)
    with stdout_to_stderr():
        bench = run_bench(model_path, data, limit, [] if targets == "none" else split(targets), split(precisions),
                          progress=True,
                          split=split_part, artifacts=split(artifacts), calib_data=calib_data, peers=list(peers),
                          latency=_latency(warmup, runs, rounds, threads, batches))
        files = write_bench(out, bench, force)
    if as_json:
        emit_json(dict(bench, rows=[compact_row(r) for r in bench["rows"]]))
    else:
        click.echo(bench_text(bench))
        click.echo(f"\nwrote {', '.join(str(f) for f in files)}")
    if not bench["passed"]:
        click.echo("bench: some target failed its checks (see the result column)", err=True)
        ctx.exit(1)


@click.command("pipeline-bench")
@click.option("--photos", default=None, type=InputPath(file_okay=False),
              help="Folder of photos (whole photos or face crops) to run the whole pipeline on.")
@click.option("--video", default=None, type=InputPath(dir_okay=False),
              help="A video file instead of --photos: frames/s, faces/s, ms per frame by stage "
                   "(decode, detect, track, crop, model, readout).")
@click.option("--detect-every", "detect_every", type=click.IntRange(min=1), multiple=True,
              help="With --video: run the detector on every K-th frame (default 1; repeatable: each model runs "
                   "at each K, side by side).")
@click.option("--artifact", "artifacts", multiple=True, type=InputPath(file_okay=False),
              help="Exported artifact folder (repeatable: e.g. its fp32 and int8 exports).")
@click.option("--detector", "detectors", multiple=True, type=InputPath(file_okay=False, exists=True),
              help="An exported face detector (`edgeage detector export`; repeatable): every model runs once "
                   "with the shipped .tflite by LiteRT and once with each of these.")
@model_option
@click.option("--no-torch", is_flag=True, help="Leave out the PyTorch row (--model / the shipped model).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use N photos spread over the folder.")
@click.option("--threads", type=threads_type(), default=1, show_default=True,
              help="Threads of every runtime (and of the detector).")
@click.option("--warmup", type=click.IntRange(0, 100_000), default=3, show_default=True)
@click.option("--rounds", type=click.IntRange(1, 1000), default=2, show_default=True)
@click.option("--tta-flip", is_flag=True,
              help="Run every model twice, once as it is and once reading each face also mirrored "
                   "(rows '+ flip'): the cost of `predict --tta-flip`, side by side.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Write pipeline.json, pipeline.md, pipeline.html, pipeline_stages.png here.")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@force_option
def pipeline_bench_cmd(photos, video, detect_every, artifacts, detectors, model_path, no_torch, limit, threads,
                       warmup, rounds, tta_flip, out, as_json, force):
    """Photos/s and faces/s of the whole pipeline (decode, detect, crop, model, readout) per
    model, with ms per photo by stage; with --video, frames/s and faces/s of the video pipeline
    (tracker included), ms per frame by stage."""
    from edgeage.utils import EdgeAgeError, check_output

    from .pipeline_bench import list_photos, pipeline_bench, pipeline_blocks, write_pipeline_bench

    if out:
        check_output(out, force)
    if (photos is None) == (video is None):
        raise EdgeAgeError("pipeline-bench: give --photos DIR or --video FILE (one of them)")
    if video is not None:
        from edgeage.video import VideoSource

        VideoSource(video).close()  # a bad video fails before any model loads
    pics = list_photos(photos, limit) if photos is not None else None
    models = []
    if not no_torch:
        import torch

        from edgeage.pipeline import AgeEstimator

        torch.set_num_threads(threads)
        models.append(("pytorch fp32", AgeEstimator.from_checkpoint(model_path)))
    from edgeage.targets.runner import artifact_estimator
    from edgeage.artifact import read_manifest

    for a in artifacts:
        art = read_manifest(a).artifact
        models.append((f"{art.target} {art.precision} ({Path(a).name})", artifact_estimator(a, threads=threads)))
    if not models:
        raise EdgeAgeError("pipeline-bench: nothing to run (give --artifact, or drop --no-torch)")
    import cv2

    from edgeage.face import FaceDetector
    from edgeage.targets.runner import artifact_face_detector

    cv2.setNumThreads(threads)  # OpenCV's resizes and colour conversions at --threads too
    dets = [("", FaceDetector(num_threads=threads))]
    for d in detectors:  # the same models with each exported detector, at the same thread count
        art = read_manifest(d).artifact
        dets.append((f" + detector {art.target} {art.precision}", artifact_face_detector(d, threads=threads)))
    views = [("", False)] + ([(" + flip", True)] if tta_flip else [])
    # (label, estimator, group): a row's ages are compared with the first row of its group (the same age model)
    models = [(label + suffix + view, est.with_detector(det).with_tta_flip(flip), label)
              for view, flip in views for suffix, det in dets for label, est in models]
    if video is not None:
        from edgeage.video import VideoOptions

        from .pipeline_bench import video_bench, video_blocks, write_video_bench

        b = video_bench(video, models, [VideoOptions(detect_every=k) for k in (detect_every or (1,))], warmup,
                        rounds, progress=not as_json)
        blocks, write = video_blocks, write_video_bench
    else:
        if detect_every:
            raise EdgeAgeError("--detect-every is for --video (photos are each detected once)")
        b = pipeline_bench(pics, [(label, est) for label, est, _ in models], warmup, rounds, progress=not as_json)
        blocks, write = pipeline_blocks, write_pipeline_bench
    b["threads"] = threads
    files = write(out, b, force) if out else []
    if as_json:
        emit_json(b)
    else:
        from .report import blocks_md

        click.echo(blocks_md(blocks(b)))
        if files:
            click.echo(f"\nwrote {', '.join(str(f) for f in files)}")
