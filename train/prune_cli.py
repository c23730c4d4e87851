"""``edgeage prune``."""
from __future__ import annotations

import copy
from pathlib import Path

import click


@click.command("prune")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint to prune. Default: the shipped default model.")
@click.option("--ratio", type=click.FloatRange(0, 1, min_open=True, max_open=True), required=True,
              help="Fraction of the channels removed from every channel group (residual widths "
                   "included); 0.5 leaves about a quarter of the MACs.")
@click.option("--by", type=click.Choice(["channels", "macs"]), default="channels", show_default=True,
              help="What --ratio removes: channels (torch-pruning's pruning_ratio, the same fraction "
                   "of every channel group) or MACs (the channel ratio that removes that fraction of "
                   "the MACs is searched for; 0.5 -> a channel ratio of about 0.25).")
@click.option("--round-to", type=click.IntRange(1, 256), default=4, show_default=True,
              help="Keep channel counts multiples of this (kernel-friendly).")
@click.option("--finetune-epochs", type=click.IntRange(min=0), default=0, show_default=True,
              help="Fine-tune the pruned model this many epochs (the training loop, degradation "
                   "model included, on the checkpoint's data split).")
@click.option("--recipe", default=None,
              help="Recipe for fine-tuning. Default: the one recorded in the checkpoint.")
@click.option("--data", type=click.Path(exists=True), default=None,
              help="Override the recipe's [data].path (it must give the checkpoint's split).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Override the recipe's learning rate.")
@click.option("--distill", is_flag=True,
              help="Fine-tune with the unpruned model as teacher (the recipe's [distill] alpha "
                   "and temperature).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder. Default: runs/<model>-pruned<percent>.")
@click.option("--force", is_flag=True, help="Use --out even if it is a non-empty folder edgeage did not write.")
def prune_cmd(model_path, ratio, by, round_to, finetune_epochs, recipe, data, lr, distill, out, force):
    """Remove channels (torch-pruning's dependency graph, extended for MGP-Net) and fine-tune.

    Writes pruned.pt (before fine-tuning), prune.json (params, MACs, widths before and after)
    and, with --finetune-epochs, the training loop's best.pt, last.pt, metrics.json, curve.png."""
    from edgeage.checkpoint import (build_manifest, load_model, manifest_crop, manifest_normalize,
                                    save_checkpoint)
    from edgeage.profile import count_macs, count_params
    from edgeage.utils import EdgeAgeError, check_output, output_dir, write_json

    from .prune import channel_ratio_for_macs, finetune, prune, residual_widths
    from .recipes import load_recipe

    if out:
        check_output(out, force)
    model, manifest = load_model(model_path)
    size = int(model.config.get("input_size", 64))

    def measure():
        return {"params": count_params(model), "macs": count_macs(model, size),
                "residual_widths": residual_widths(model)}

    before = measure()
    channels = channel_ratio_for_macs(model, ratio, round_to) if by == "macs" else ratio
    if by == "macs":
        click.echo(f"--by macs {ratio}: channel ratio {channels:.3f}")
    prune(model, channels, round_to)
    after = measure()
    out = Path(out or f"runs/{model.config['name']}-pruned{round(ratio * 100)}{'-macs' if by == 'macs' else ''}")
    r = None
    if finetune_epochs > 0:  # the recipe is checked before anything is written
        r = load_recipe(recipe) if recipe else copy.deepcopy(manifest.get("training", {}).get("recipe"))
        if not r:
            raise EdgeAgeError(f"{manifest['source']['path']} records no training recipe; "
                               "pass --recipe for fine-tuning")
    output_dir(out, force, kind="prune-run")
    parent = manifest.get("training", {})  # the split and recipe carry over, the metrics do not
    training = {k: parent[k] for k in ("recipe", "split") if k in parent}
    training["pruned_from"] = dict(manifest["source"], val=parent.get("val"))
    save_checkpoint(out / "pruned.pt", model, build_manifest(
        model, manifest_normalize(manifest), manifest_crop(manifest), training))
    report = {"parent": manifest["source"], "ratio": ratio, "by": by, "channel_ratio": channels,
              "round_to": round_to,
              "before": before, "after": after,
              "params_ratio": after["params"] / before["params"],
              "macs_ratio": after["macs"] / before["macs"]}
    click.echo(f"pruned {manifest['source']['path']} at channel ratio {channels:.3f}: params "
               f"{before['params']:,} -> {after['params']:,} ({report['params_ratio']:.3f}), MACs "
               f"{before['macs']:,} -> {after['macs']:,} ({report['macs_ratio']:.3f}); residual "
               f"widths {before['residual_widths']} -> {after['residual_widths']}")
    if finetune_epochs > 0:
        teacher = manifest["source"]["path"] if distill else None
        for sec, key, val in (("data", "path", data), ("train", "lr", lr),
                              ("distill", "teacher", teacher)):
            if val is not None:
                r[sec][key] = val
        res = finetune(model, r, out, finetune_epochs, training.get("split"))
        report["finetune"] = {"epochs": finetune_epochs, "best": res["best"]}
        click.echo(f"fine-tuned {finetune_epochs} epochs: best validation MAE "
                   f"{res['best']['val_mae']:.3f} at epoch {res['best']['epoch']}")
    write_json(out / "prune.json", report)
    click.echo(f"wrote {out}: pruned.pt, prune.json"
               + (", best.pt, last.pt, metrics.json, curve.png" if finetune_epochs > 0 else ""))
