"""The ``edgeage`` command line. Core commands live here; each stage package contributes its
commands through ``STAGE_COMMANDS`` (imported only when that command runs, so the core never
imports a stage otherwise and ``edgeage --help`` stays fast)."""
from __future__ import annotations

import importlib
import json
import os
import sys

import click

from .utils import EdgeAgeError, install_signal_cleanup, stop_if_signalled

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

# command name -> "module:attribute" of a click command in a stage package
STAGE_COMMANDS = {
    "train": "edgeage.train.cli:train_cmd",
    "prune": "edgeage.train.prune_cli:prune_cmd",
    "quantize": "edgeage.export.quantize_cli:quantize_cmd",
    "export": "edgeage.export.cli:export_cmd",
    "check": "edgeage.export.check_cli:check_cmd",
    "bench": "edgeage.export.check_cli:bench_cmd",
    "pipeline-bench": "edgeage.export.check_cli:pipeline_bench_cmd",
    "android": "edgeage.export.android_cli:android_group",
    "device-check": "edgeage.export.android_cli:device_check_cmd",
    "device": "edgeage.export.android_cli:device_group",
}


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
            reason = f"{type(e).__name__}: {e}"

            @click.command(name, help=f"(unavailable: {reason})",
                           context_settings={"ignore_unknown_options": True})
            @click.argument("args", nargs=-1, type=click.UNPROCESSED)
            def unavailable(args):
                raise click.ClickException(f"command {name!r} is not available in this install ({reason})")

            return unavailable

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgeAgeError as e:
            stop_if_signalled()  # a failure a signal caused (e.g. an import it broke) is the signal
            raise click.ClickException(str(e)) from None
        except OSError as e:  # a file the command could not read or write: name it, no traceback
            if e.filename is None:
                raise
            raise click.ClickException(f"{e.filename}: {e.strerror or e}") from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgeage")
def main():
    """edgeage: facial age estimation from training to INT8 models on edge devices."""
    install_signal_cleanup()  # SIGTERM / SIGHUP clean up temp folders like Ctrl-C does


def model_option(f):
    return click.option("--model", "model_path", type=click.Path(dir_okay=False), default=None,
                        help="Checkpoint (.pt), or the name of a shipped model (`edgeage models` lists "
                             "them). Default: the shipped default model.")(f)


def crop_option(f):
    return click.option("--crop", type=click.Choice(["detect", "none"]), default=None,
                        help="Face crop policy (default: the model manifest's, i.e. detect). "
                             "none = use each image as is.")(f)


def force_option(f):
    return click.option("--force", is_flag=True,
                        help="Use --out even if it is a non-empty folder edgeage did not write (its "
                             "contents may be replaced).")(f)


def emit_json(obj) -> None:
    """Exactly one JSON object on stdout."""
    click.echo(json.dumps(obj, default=str))


@main.command()
@click.option("--data", required=True, type=click.Path(exists=True), help="Folder of UTKFace-named images or CSV (path, age).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Cache folder (default: ~/.cache/edgeage/<hash>).")
@crop_option
@click.option("--margin", type=click.FloatRange(min=0.1, max=10), default=None, help="Crop side / face box side.")
@click.option("--crop-size", type=click.IntRange(min=8, max=1024), default=None, help="Canonical crop resolution (px).")
@click.option("--skip-bad", is_flag=True, help="Skip and list unreadable/badly named files instead of stopping.")
@force_option
def prepare(data, out, crop, margin, crop_size, skip_bad, force):
    """Detect faces and cache canonical crops (uint8) for training and evaluation."""
    from .data import prepare as run
    from .preprocess import CropParams
    from .utils import check_output

    if out:
        check_output(out, force)
    kw = {k: v for k, v in (("policy", crop), ("margin", margin), ("crop_size", crop_size)) if v is not None}
    prep = run(data, CropParams(**kw), skip_bad=skip_bad, out=out, use_cache=False, force=force)
    click.echo(f"prepared {len(prep.names)} crops {prep.crops.shape[1]}px; faces not found: "
               f"{prep.faces_not_found} (centre square used); skipped: {len(prep.skipped)}")
    for s in prep.skipped:
        click.echo(f"  skipped: {s}", err=True)


@main.command()
@click.option("--data", required=True, type=click.Path(exists=True))
@click.option("--preview", "out_png", required=True, type=click.Path(dir_okay=False), help="PNG grid to write.")
@click.option("--p", type=click.FloatRange(0, 1), default=0.2, show_default=True,
              help="Trigger probability of each operation.")
@click.option("--strength", type=click.FloatRange(0, 1), default=1.0, show_default=True)
@click.option("--images", type=click.IntRange(1, 100), default=6, show_default=True, help="Rows (source images).")
@click.option("--per-image", type=click.IntRange(1, 50), default=6, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def degrade(data, out_png, p, strength, images, per_image, seed):
    """Write a PNG grid of degraded examples (the training degradation model)."""
    import numpy as np

    from .data import discover, load_image
    from .degrade import DegradationConfig, preview_grid

    samples, _ = discover(data)
    pick = np.random.default_rng(seed).choice(len(samples), min(images, len(samples)), replace=False)
    imgs = [load_image(samples[i].path) for i in pick]
    preview_grid(imgs, DegradationConfig(p=p, strength=strength), out_png, seed=seed, per_image=per_image)
    click.echo(f"wrote {out_png}")


@main.command("models")
@click.option("--input-size", type=click.IntRange(16, 512), default=64, show_default=True)
def models_cmd(input_size):
    """List registered models with parameters and MACs."""
    from .models import create, list_models
    from .profile import count_macs, count_params

    for name in list_models():
        k = int(create(name).config.get("context_margin", 1))  # mivolo: k x the view size
        m = create(name, input_size=input_size * k)  # transformers size their position tables by it
        views = f" (face + context views of {input_size})" if k > 1 else ""
        click.echo(f"{name:13s} params {count_params(m) / 1e6:6.2f} M   MACs "
                   f"{count_macs(m, input_size * k) / 1e6:8.1f} M  @ {input_size * k}x{input_size * k}{views}")
    from .checkpoint import load_model, shipped_models

    click.echo("\nShipped weights (--model NAME):")
    for name, path in shipped_models().items():
        m, man = load_model(path)
        val = (man.get("training") or {}).get("val") or {}
        size = int(man["preprocess"]["normalize"]["input_size"])
        click.echo(f"{name:13s} params {count_params(m) / 1e6:6.2f} M   MACs {count_macs(m, size) / 1e6:8.1f} M  "
                   f"@ {size}x{size}  {man['model']['name']}" + (f", val MAE {val['mae']:.2f}" if "mae" in val else "")
                   + f" ({path.name})")


@main.command()
@model_option
def info(model_path):
    """Print the manifest of a checkpoint (default: the shipped model)."""
    from .checkpoint import load_model

    _, manifest = load_model(model_path)
    emit_json(manifest)


@main.group("checkpoint")
def checkpoint_group():
    """Checkpoint files (data, never code: see README, "Trust and safety")."""


@checkpoint_group.command("upgrade")
@click.argument("src", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The safe checkpoint to write.")
@click.option("--trust", is_flag=True,
              help="Required: you trust SRC (reading an old checkpoint runs its pickle code).")
def checkpoint_upgrade(src, out, trust):
    """Rewrite an older edgeage checkpoint (one that needs pickle beyond tensors and plain values)
    as a safe one that loads with weights_only=True. Training state (optimizer) is dropped."""
    from pathlib import Path

    from .checkpoint import TRUST_ENV, load_model, save_checkpoint

    if not trust:
        raise EdgeAgeError(f"{src}: reading an old checkpoint runs the pickle code inside it; pass --trust "
                           "if you trust the file (you made it)")
    if Path(out).resolve() == Path(src).resolve():
        raise EdgeAgeError(f"--out {out}: give a new file, not SRC itself")
    old = os.environ.get(TRUST_ENV)
    os.environ[TRUST_ENV] = "1"
    try:
        model, manifest = load_model(src)
    finally:
        if old is None:
            os.environ.pop(TRUST_ENV)
        else:
            os.environ[TRUST_ENV] = old
    manifest = {k: v for k, v in manifest.items() if k != "source"}
    save_checkpoint(out, model, manifest)
    load_model(out)  # proves it loads safely
    click.echo(f"wrote {out}: loads with weights_only=True")


@main.command("eval")
@model_option
@click.option("--data", required=True, type=click.Path(exists=True), help="Folder of UTKFace-named images, CSV (path, age), or a prepared cache.")
@crop_option
@click.option("--split", type=click.Choice(["all", "train", "val", "test"]), default="all", show_default=True,
              help="Evaluate only a part of the split recorded in the checkpoint (same data required).")
@click.option("--tta-flip", is_flag=True, help="Average with the mirrored face (reported separately).")
@click.option("--degrade-p", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Degrade the crops with the training degradation model (trigger probability p, seeded).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--skip-bad", is_flag=True)
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Write eval.json/.md, predictions.csv, error_by_age.png here.")
@force_option
def eval_cmd(model_path, data, crop, split, tta_flip, degrade_p, seed, skip_bad, as_json, out, force):
    """MAE, CS(5), MAE per age decade, faces not found."""
    from .evaluate import evaluate, write_eval_report
    from .utils import check_output

    if out:
        check_output(out, force)
    res, names, true, pred = evaluate(model_path, data, crop, split, tta_flip, degrade_p, seed, skip_bad,
                                      progress=not as_json)
    if out:
        write_eval_report(out, res, names, true, pred, force=force)
    if as_json:
        emit_json(res)
    else:
        click.echo(f"n={res['n']}  MAE {res['mae']:.3f}  CS(5) {res['cs5']:.3f}  "
                   f"faces not found {res['faces_not_found']}" + ("  (flip TTA)" if tta_flip else "")
                   + (f"  (degraded, p={degrade_p})" if degrade_p else ""))
        for k, v in res["per_decade"].items():
            click.echo(f"  {k:>7s}: n={v['n']:5d}  MAE {v['mae']:.2f}")
        if res["skipped_files"]:
            click.echo(f"skipped {res['skipped']} file(s):")
            for s in res["skipped_files"]:
                click.echo(f"  skipped: {s}")


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@model_option
@crop_option
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.option("--annotate", type=click.Path(file_okay=False), default=None, help="Write annotated copies here.")
@click.option("--artifact", type=click.Path(exists=True, file_okay=False), default=None,
              help="Run an exported artifact with its runtime alone (no PyTorch) instead of a checkpoint.")
@click.option("--target", default=None,
              help="With --artifact: the target TOML when the artifact's target is not installed here.")
@force_option
@click.pass_context
def predict(ctx, images, model_path, crop, as_json, annotate, artifact, target, force):
    """Detect every face in each image and estimate its age. A bad image is reported and
    skipped; the exit status is 1 when any image failed."""
    from .predict import predict_images
    from .utils import check_output

    if annotate:
        check_output(annotate, force, "--annotate")
    if artifact and model_path:
        raise EdgeAgeError("give --model (a checkpoint, PyTorch) or --artifact (an exported model), not both")
    estimator = None
    if artifact:
        from edgeage.targets.runner import artifact_estimator

        estimator = artifact_estimator(artifact, target)
    results = predict_images(images, model_path, crop, annotate, force=force, estimator=estimator)
    failed = [r for r in results if "error" in r]
    if as_json:
        emit_json({"images": results, "failed": len(failed)})
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


if __name__ == "__main__":  # torchrun -m edgeage.cli train ...
    sys.exit(main())
