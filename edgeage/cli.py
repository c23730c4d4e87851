"""The ``edgeage`` command line. Core commands live here; each stage package contributes its
commands through ``STAGE_COMMANDS`` (imported only when that command runs, so the core never
imports a stage otherwise and ``edgeage --help`` stays fast). The options and output helpers the
command modules share are in ``edgeage.cli_options``."""
from __future__ import annotations

import importlib
import os
import signal
import sys

import click

from .cli_options import FiniteRange, InputPath, crop_option, detector_option, emit_json, force_option, model_option
from .utils import EdgeAgeError, install_signal_cleanup, signalled, stop_if_signalled

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

# command name -> "module:attribute" of a click command in a stage package
STAGE_COMMANDS = {
    "train": "edgeage.train.cli:train_cmd",
    "prune": "edgeage.train.prune_cli:prune_cmd",
    "quantize": "edgeage.export.int8.cli:quantize_cmd",
    "export": "edgeage.export.artifact.cli:export_cmd",
    "check": "edgeage.export.conformance.cli:check_cmd",
    "bench": "edgeage.export.conformance.cli:bench_cmd",
    "pipeline-bench": "edgeage.export.conformance.cli:pipeline_bench_cmd",
    "detector": "edgeage.export.conformance.detector_cli:detector_group",
    "android": "edgeage.export.devices.cli:android_group",
    "device-check": "edgeage.export.devices.cli:device_check_cmd",
    "device": "edgeage.export.devices.cli:device_group",
}


# top-level module -> the extra that installs it (pyproject.toml [project.optional-dependencies])
EXTRA_OF = {"torch": "train", "torchao": "train", "torch_pruning": "train", "albumentations": "train",
            "matplotlib": "train", "onnx": "export", "onnxscript": "export", "nncf": "export",
            "litert_torch": "export", "onnxruntime": "onnx", "openvino": "openvino", "executorch": "executorch",
            "ai_edge_litert": "tflite", "supervision": "video", "av": "video", "mkdocs": "docs"}


def command_extra(command: str | None) -> str:
    """The extra a command needs beyond the core: the stage package it lives in (export commands:
    [export]; train and prune, and the core's commands that load checkpoints: [train])."""
    mod = STAGE_COMMANDS.get(command or "", "")
    return "export" if mod.startswith("edgeage.export.") else "train"


def missing_extra(e: BaseException, command: str | None = None) -> str | None:
    """One line naming the extra to install, for an ImportError of a module an extra provides."""
    name = (getattr(e, "name", None) or "").split(".")[0]
    extra = EXTRA_OF.get(name)
    if not isinstance(e, ImportError) or extra is None:
        return None
    if extra in ("train", "export"):  # torch & co: whichever of the two the command is part of
        extra = command_extra(command)
    torch = " (PyTorch's CPU build: see the README's Set-up)" if extra in ("train", "export", "executorch") else ""
    return f"needs the [{extra}] extra, which is not installed here (no module {name!r}): pip install 'edgeage[{extra}]'{torch}"


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(STAGE_COMMANDS))

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        if cmd is not None or name not in STAGE_COMMANDS:
            return cmd
        mod, attr = STAGE_COMMANDS[name].split(":")
        try:
            return getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            extra_line = missing_extra(e, name)
            reason = extra_line or f"{type(e).__name__}: {e}"

            @click.command(name, help=f"(unavailable: {reason})",
                           context_settings={"ignore_unknown_options": True})
            @click.argument("args", nargs=-1, type=click.UNPROCESSED)
            def unavailable(args):
                raise click.ClickException(f"edgeage {name} {reason}" if extra_line else
                                           f"command {name!r} is not available in this install ({reason})")

            return unavailable

    def invoke(self, ctx):
        try:
            rv = super().invoke(ctx)
            stop_if_signalled()  # a Ctrl-C a library swallowed: the command did not finish
            return rv
        except KeyboardInterrupt:  # click would print "Aborted!" and exit 1
            click.echo("edgeage: interrupted; nothing was committed", err=True)
            raise SystemExit(128 + (signalled() or signal.SIGINT)) from None
        except EdgeAgeError as e:
            stop_if_signalled()  # a failure a signal caused (e.g. an import it broke) is the signal
            raise click.ClickException(str(e)) from None
        except ImportError as e:  # a command whose extra is not installed: one line naming it
            stop_if_signalled()
            line = missing_extra(e, ctx.invoked_subcommand)
            if line is None:
                raise
            raise click.ClickException(f"edgeage {ctx.invoked_subcommand} {line}") from None
        except OSError as e:  # a file the command could not read or write: name it, no traceback
            if e.filename is None:
                raise
            raise click.ClickException(f"{e.filename}: {e.strerror or e}") from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgeage")
@click.option("-v", "--verbose", is_flag=True, help="Show the libraries' own logs and warnings (quiet by default).")
def main(verbose):
    """edgeage: facial age estimation from training to INT8 models on edge devices."""
    from .utils import input_scope, quiet_libraries

    # this command's inputs only (recorded while it runs; the CLI can run many times in a process)
    click.get_current_context().with_resource(input_scope())
    install_signal_cleanup()  # SIGINT / SIGTERM / SIGHUP: one policy (exit 128 + signal, nothing committed)
    if verbose:
        os.environ["EDGEAGE_VERBOSE"] = "1"  # the subprocesses (latency, device side) inherit it
    quiet_libraries()


@main.command()
@click.option("--data", required=True, type=InputPath(exists=True), help="Folder of UTKFace-named images or CSV (path, age).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Cache folder (default: ~/.cache/edgeage/<hash>).")
@crop_option
@click.option("--margin", type=FiniteRange(min=0.1, max=10), default=None, help="Crop side / face box side.")
@click.option("--crop-size", type=click.IntRange(min=8, max=1024), default=None, help="Canonical crop resolution (px).")
@click.option("--skip-bad", is_flag=True, help="Skip and list unreadable/badly named files instead of stopping.")
@click.option("--unlabelled", is_flag=True, help="Faces without ages: every image of --data and its sub-folders "
              "(or a CSV's path column), for `edgeage train --unlabelled-data` (distillation).")
@force_option
def prepare(data, out, crop, margin, crop_size, skip_bad, unlabelled, force):
    """Detect faces and cache canonical crops (uint8) for training and evaluation."""
    from .data import prepare as run
    from .preprocess import CropParams
    from .utils import check_output

    if out:
        check_output(out, force)
    kw = {k: v for k, v in (("policy", crop), ("margin", margin), ("crop_size", crop_size)) if v is not None}
    prep = run(data, CropParams(**kw), skip_bad=skip_bad, out=out, use_cache=False, force=force,
               labelled=not unlabelled)
    click.echo(f"prepared {len(prep.names)} crops {prep.crops.shape[1]}px; faces not found: "
               f"{prep.faces_not_found} (centre square used); skipped: {len(prep.skipped)}")
    for s in prep.skipped:
        click.echo(f"  skipped: {s}", err=True)


@main.command()
@click.option("--data", required=True, type=InputPath(exists=True))
@click.option("--preview", "out_png", required=True, type=click.Path(dir_okay=False), help="PNG grid to write.")
@click.option("--p", type=FiniteRange(0, 1), default=0.2, show_default=True,
              help="Trigger probability of each operation.")
@click.option("--strength", type=FiniteRange(0, 1), default=1.0, show_default=True)
@click.option("--min-scale", type=FiniteRange(0.05, 0.75), default=0.25, show_default=True,
              help="Smallest down-sampling scale at strength 1 (a recipe's [degrade] min_scale).")
@click.option("--images", type=click.IntRange(1, 100), default=6, show_default=True, help="Rows (source images).")
@click.option("--per-image", type=click.IntRange(1, 50), default=6, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Replace --preview if it exists.")
def degrade(data, out_png, p, strength, min_scale, images, per_image, seed, force):
    """Write a PNG grid of degraded examples (the training degradation model)."""
    import numpy as np

    from .data import discover, load_image
    from .degrade import DegradationConfig, preview_grid
    from .utils import check_output_file

    if not out_png.lower().endswith(".png"):
        raise EdgeAgeError(f"--preview {out_png}: give a .png file name")
    check_output_file(out_png, force, "--preview")

    samples, _ = discover(data)
    pick = np.random.default_rng(seed).choice(len(samples), min(images, len(samples)), replace=False)
    imgs = [load_image(samples[i].path) for i in pick]
    preview_grid(imgs, DegradationConfig(p=p, strength=strength, min_scale=min_scale), out_png, seed=seed, per_image=per_image)
    click.echo(f"wrote {out_png}")


@main.command("models")
@click.option("--input-size", type=click.IntRange(16, 512), default=None,
              help="Count MACs at this face size (default: each model's own input size).")
def models_cmd(input_size):
    """List registered models with parameters and MACs."""
    from .models import create, list_models
    from .profile import count_macs, count_params

    for name in list_models():
        own = create(name).config
        k = int(own.get("context_margin", 1))  # mivolo: k x the view size
        view = input_size or int(own.get("input_size", 64)) // k
        try:
            m = create(name, input_size=view * k)  # transformers size their position tables by it
        except ValueError as e:  # a size this network cannot read (faceres29 below 104 px)
            click.echo(f"{name:13s} not at {view * k}x{view * k}: {e}")
            continue
        views = f" (face + context views of {view})" if k > 1 else ""
        click.echo(f"{name:13s} params {count_params(m) / 1e6:6.2f} M   MACs "
                   f"{count_macs(m, view * k) / 1e6:8.1f} M  @ {view * k}x{view * k}{views}")
    from .checkpoint import load_model, shipped_info, shipped_models

    info = shipped_info()
    click.echo(f"\nShipped weights (--model NAME; without --model: {info['default']}):")
    for name, path in shipped_models().items():
        if name == "default":
            continue
        m, man = load_model(path)
        val = man.training.val or {}
        size = int(man.input_size)
        what = (info["models"].get(name) or {}).get("what", "")
        click.echo(f"{name:13s} params {count_params(m) / 1e6:6.2f} M   MACs {count_macs(m, size) / 1e6:8.1f} M  "
                   f"@ {size}x{size}  {man.model.name}" + (f", val MAE {val['mae']:.2f}" if "mae" in val else "")
                   + f" ({path.name})" + (f"\n{'':13s} {what}" if what else ""))


@main.command()
@model_option
def info(model_path):
    """Print the manifest of a checkpoint (default: the shipped model)."""
    from .checkpoint import load_model

    _, manifest = load_model(model_path)
    emit_json(manifest.to_dict())


@main.group("checkpoint")
def checkpoint_group():
    """Checkpoint files (data, never code: see README, "Trust and safety")."""


@checkpoint_group.command("upgrade")
@click.argument("src", type=InputPath(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The safe checkpoint to write.")
@click.option("--trust", is_flag=True,
              help="Required: you trust SRC (reading an old checkpoint runs its pickle code).")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def checkpoint_upgrade(src, out, trust, force):
    """Rewrite an older edgeage checkpoint (one that needs pickle beyond tensors and plain values)
    as a safe one that loads with weights_only=True. Training state (optimizer) is dropped."""
    from .checkpoint import TRUST_ENV, load_model, save_checkpoint

    if not trust:
        raise EdgeAgeError(f"{src}: reading an old checkpoint runs the pickle code inside it; pass --trust "
                           "if you trust the file (you made it)")
    from .utils import check_output_file

    check_output_file(out, force)  # SRC is an input: never replaced
    old = os.environ.get(TRUST_ENV)
    os.environ[TRUST_ENV] = "1"
    try:
        model, manifest = load_model(src)
    finally:
        if old is None:
            os.environ.pop(TRUST_ENV)
        else:
            os.environ[TRUST_ENV] = old
    from .manifest import check_manifest

    manifest = check_manifest({k: v for k, v in manifest.to_dict().items() if k != "source"}, str(src))
    save_checkpoint(out, model, manifest)
    load_model(out)  # proves it loads safely
    click.echo(f"wrote {out}: loads with weights_only=True")


@main.command("eval")
@model_option
@click.option("--data", required=True, type=InputPath(exists=True), help="Folder of UTKFace-named images, CSV (path, age), or a prepared cache.")
@crop_option
@click.option("--split", type=click.Choice(["all", "train", "val", "test"]), default="all", show_default=True,
              help="Evaluate only a part of the split recorded in the checkpoint (same data required).")
@click.option("--tta-flip", is_flag=True, help="Average with the mirrored face (reported separately).")
@click.option("--degrade-p", type=FiniteRange(0, 1), default=0.0, show_default=True,
              help="Degrade the crops with the training degradation model (trigger probability p, seeded).")
@click.option("--degrade-op", "degrade_ops", multiple=True, metavar="OP",
              help="With --degrade-p: only this degradation (blur, downsample, noise, jpeg, rgb_shift, "
                   "iso_noise); repeatable. --degrade-p 1 --degrade-op jpeg: what JPEG alone costs.")
@click.option("--grey", is_flag=True, help="Turn the crops grey first (BT.601 luma), as an IR / night or monochrome "
                                           "camera sees faces.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--skip-bad", is_flag=True)
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.option("--by", "by", multiple=True, metavar="NAME[,NAME]",
              help="MAE, CS(5), n per group and the worst - best gap: race, gender (UTKFace names or a CSV "
                   "column), decade, face-size (detector box on the source, px), or any extra CSV column. "
                   "Repeatable or a comma list.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Write eval.json/.md/.html, predictions.csv, error_by_age.png (and by_group.png) here.")
@force_option
def eval_cmd(model_path, data, crop, split, tta_flip, degrade_p, degrade_ops, grey, seed, skip_bad, by, as_json, out,
             force):
    """MAE, CS(5), MAE per age decade, faces not found; per group with --by."""
    from .evaluate import evaluate, write_eval_report
    from .groups import parse_by
    from .utils import check_output

    if out:
        check_output(out, force)
    res, names, true, pred = evaluate(model_path, data, crop, split, tta_flip, degrade_p, seed, skip_bad,
                                      progress=not as_json, by=parse_by(by), grey=grey, degrade_ops=degrade_ops)
    if out:
        write_eval_report(out, res, names, true, pred, force=force)
    if as_json:
        emit_json(res)
    else:
        click.echo(f"n={res['n']}  MAE {res['mae']:.3f}  CS(5) {res['cs5']:.3f}  "
                   f"faces not found {res['faces_not_found']}" + ("  (flip TTA)" if tta_flip else "")
                   + (f"  (degraded, p={degrade_p}{', ' + '+'.join(degrade_ops) if degrade_ops else ''})"
                      if degrade_p else "") + ("  (grey)" if grey else ""))
        if res.get("age_range"):
            r = res["age_range"]
            click.echo(f"age ranges: {100 * r['in_range']:.1f} % in range, {r['mae_to_range']:.2f} years from it")
        for k, v in res["per_decade"].items():
            click.echo(f"  {k:>7s}: n={v['n']:5d}  MAE {v['mae']:.2f}")
        for name, g in (res.get("groups") or {}).items():
            big = g["large_groups"]
            click.echo(f"by {name}: gap {g['gap']:.2f} ({g['worst']} - {g['best']})"
                       + (f"; groups of n >= {big['min_n']}: {big['gap']:.2f} ({big['worst']} - {big['best']})"
                          if big["worst"] is not None else ""))
            for k, v in g["groups"].items():
                click.echo(f"  {k:>9s}: n={v['n']:5d}  MAE {v['mae']:.2f}  CS(5) {v['cs5']:.3f}"
                           + (f"  in range {100 * v['in_range']:.1f} %" if "in_range" in v else ""))
        if res["skipped_files"]:
            click.echo(f"skipped {res['skipped']} file(s):")
            for s in res["skipped_files"]:
                click.echo(f"  skipped: {s}")


@main.command("resolution-curve")
@click.option("--model", "models", multiple=True, type=click.Path(dir_okay=False),
              help="Checkpoint (.pt) or shipped model name (`edgeage models`); repeatable, one line each. "
                   "Default: the shipped default model.")
@click.option("--data", required=True, type=click.Path(exists=True),
              help="Folder of UTKFace-named images, CSV (path, age), or a prepared cache.")
@click.option("--split", type=click.Choice(["all", "train", "val", "test"]), default="test", show_default=True,
              help="Part of the split recorded in each checkpoint (same data required), or all.")
@click.option("--sizes", default="12,16,24,32,48,64", show_default=True,
              help="Face sizes (px) to down-sample each face to, comma list.")
@click.option("--skip-bad", is_flag=True)
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Write curve.json/.md/.html and curve.png (one line per model) here.")
@force_option
def resolution_curve_cmd(models, data, split, sizes, skip_bad, as_json, out, force):
    """MAE vs source face size: each face down-sampled (area), brought back to the model's input
    as a CCTV pipeline would (bilinear), evaluated; one line per model."""
    from .evaluate import resolution_curve
    from .groups import write_curve_report
    from .utils import check_output

    try:
        px = sorted({int(v) for v in sizes.split(",") if v.strip()})
    except ValueError:
        px = []
    if not px or not all(4 <= v <= 1024 for v in px):
        raise EdgeAgeError(f"--sizes {sizes}: give a comma list of face sizes in px, each 4..1024 (e.g. 12,16,24)")
    check_output(out, force)
    res = resolution_curve(list(models) or [None], data, split, px, skip_bad, progress=not as_json)
    write_curve_report(out, res, force=force)
    if as_json:
        emit_json(res)
        return
    click.echo(f"n={res['n']} ({split}); MAE by face size (px):")
    for m in res["models"]:
        click.echo(f"  {m['name']:>12s}: " + "  ".join(f"{p['px']}:{p['mae']:.2f}" for p in m["points"])
                   + f"  as prepared: {m['full']['mae']:.2f}")
    click.echo(f"wrote {out}")


@main.command()
@click.argument("images", nargs=-1, required=False, type=InputPath())
@model_option
@crop_option
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.option("--annotate", type=click.Path(), default=None,
              help="Write annotated copies here (a folder); for a video, a file OUT.mp4 (or .avi/.mov/.mkv).")
@click.option("--artifact", type=InputPath(exists=True, file_okay=False), default=None,
              help="Run an exported artifact with its runtime alone (no PyTorch) instead of a checkpoint.")
@click.option("--target", default=None,
              help="With --artifact: the target TOML when the artifact's target is not installed here.")
@detector_option
@click.option("--camera", type=click.IntRange(min=0), default=None, help="Video: read camera N (instead of files).")
@click.option("--stream", default=None, help="Video: read a stream URL (rtsp://, http://, ...).")
@click.option("--detect-every", type=click.IntRange(min=1), default=1, show_default=True,
              help="Video: run the face detector on every K-th frame (tracks carry the boxes between).")
@click.option("--min-face", type=FiniteRange(min=0), default=0, show_default=True,
              help="Video: ignore faces smaller than PX on their shorter side.")
@click.option("--max-faces", type=click.IntRange(min=0), default=0, show_default=True,
              help="Video: at most N faces per frame, the best (score x size) first; 0 = all.")
@click.option("--min-track", type=click.IntRange(min=1), default=3, show_default=True,
              help="Video: report tracks with at least N faces (shorter ones are counted only).")
@click.option("--max-frames", type=click.IntRange(min=0), default=0, show_default=True,
              help="Video: stop after N frames (a camera or a stream runs until then or Ctrl-C); 0 = to the end.")
@click.option("--tta-flip", is_flag=True,
              help="Read every face also mirrored and average the two ages: about 0.05 years more accurate "
                   "for the shipped models, twice the model's work (docs/usage.md).")
@force_option
@click.pass_context
def predict(ctx, images, model_path, crop, as_json, annotate, artifact, target, detector, camera, stream,
            detect_every, min_face, max_faces, min_track, max_frames, tta_flip, force):
    """Detect every face in each image and estimate its age. A bad image is reported and
    skipped; the exit status is 1 when any image failed. A video (VIDEO file, --camera N or
    --stream URL): faces tracked over the frames, one smoothed age per track."""
    from .predict import predict_images
    from .utils import check_output
    from .video import is_video

    if artifact and model_path:
        raise EdgeAgeError("give --model (a checkpoint, PyTorch) or --artifact (an exported model), not both")
    videos = [p for p in images if is_video(p)]
    if camera is not None or stream is not None or videos:
        from .video import VideoOptions, predict_video, print_video

        if len(images) > (0 if camera is not None or stream is not None else 1):
            raise EdgeAgeError("predict: give one video (a file, --camera N or --stream URL) and no images with it")
        opts = VideoOptions(detect_every=detect_every, min_face=min_face, max_faces=max_faces,
                            min_track_faces=min_track, max_frames=max_frames)

        res = predict_video(videos[0] if videos else None, camera, stream, opts,
                            lambda: _estimator(model_path, artifact, target, detector, tta_flip), crop, annotate,
                            force, progress=not as_json)
        if as_json:
            emit_json(res)
        else:
            print_video(res)
        return
    if not images:
        raise EdgeAgeError("predict: give images, a video, --camera N or --stream URL")
    if annotate:
        check_output(annotate, force, "--annotate")
    results = predict_images(images, model_path, crop, annotate, force=force,
                             estimator=_estimator(model_path, artifact, target, detector, tta_flip))
    failed = [r for r in results if "error" in r]
    if as_json:
        emit_json({"images": results, "failed": len(failed), "tta_flip": tta_flip})
        if failed:
            ctx.exit(1)
        return
    for r in results:
        if "error" in r:
            click.echo(f"Error: {r['error']}", err=True)
            continue
        if not r["faces"]:
            click.echo(f"{r['image']}: no face found" + (f" (centre square: age {r['fallback_age']:.1f})" if r.get("fallback_age") is not None else ""))
        for i, f in enumerate(r["faces"]):
            click.echo(f"{r['image']}: face {i + 1} box {[round(v) for v in f['box']]} age {f['age']:.1f}")
    if failed:
        click.echo(f"predict: {len(failed)} of {len(results)} image(s) failed (listed above)", err=True)
        ctx.exit(1)


def _estimator(model_path, artifact, target, detector, tta_flip: bool = False):
    """The AgeEstimator of predict's options: an artifact (its runtime alone) or a checkpoint
    (PyTorch), with an exported face detector when ``detector`` is given, reading each face also
    mirrored with ``tta_flip``."""
    if detector:
        from edgeage.targets.runner import artifact_face_detector

        detector = artifact_face_detector(detector)
    if artifact:
        from edgeage.targets.runner import artifact_estimator

        return artifact_estimator(artifact, target, detector=detector, tta_flip=tta_flip)
    from .pipeline import AgeEstimator

    return AgeEstimator.from_checkpoint(model_path, detector=detector, tta_flip=tta_flip)


if __name__ == "__main__":  # torchrun -m edgeage.cli train ...
    sys.exit(main())
