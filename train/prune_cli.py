"""``edgeage prune``."""
from __future__ import annotations

import click

from edgeage.cli_options import FiniteRange, InputPath


@click.command("prune")
@click.option("--model", "model_path", type=InputPath(dir_okay=False), default=None,
              help="Checkpoint to prune. Default: the shipped default model.")
@click.option("--ratio", type=FiniteRange(0, 1, min_open=True, max_open=True), required=True,
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
@click.option("--data", type=InputPath(exists=True), default=None,
              help="Override the recipe's [data].path (it must give the checkpoint's split).")
@click.option("--lr", type=FiniteRange(min=0, min_open=True), default=None,
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
    from .prune import prune_checkpoint

    report = prune_checkpoint(model_path, ratio, by, round_to, finetune_epochs, recipe, data, lr, distill, out,
                              force, echo=click.echo)
    out = report["out"]
    click.echo(f"wrote {out}: pruned.pt, prune.json"
               + (", best.pt, last.pt, metrics.json, curve.png" if finetune_epochs > 0 else ""))
