"""``edgeage train``."""
from __future__ import annotations

import click

from edgeage.cli_options import FiniteRange, InputPath


@click.command("train")
@click.option("--recipe", "recipes", required=True, multiple=True,
              help="Recipe TOML path or shipped recipe name (mgpnet-t, ...). Several: trained side by side "
                   "on one augmented stream (they must share [data], [degrade] and the augmentation keys).")
@click.option("--data", type=InputPath(exists=True), default=None, help="Override [data].path.")
@click.option("--extra-data", "extra", type=InputPath(exists=True), multiple=True,
              help="Override [data].extra: a labelled set (labels.csv, UTKFace-named folder or prepared crops) "
                   "added whole to the training split; validation and test stay --data's. Repeatable.")
@click.option("--unlabelled-data", "unlabelled", type=InputPath(exists=True), multiple=True,
              help="Override [data].unlabelled: faces without ages (a folder and its sub-folders, a CSV's path "
                   "column, or crops prepared with --unlabelled) added to the training split; only the "
                   "[distill] teacher's targets train on them. Repeatable.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override [train].epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None)
@click.option("--lr", type=FiniteRange(min=0, min_open=True), default=None)
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Run folder (default runs/<recipe>).")
@click.option("--resume", is_flag=True, help="Continue from <out>/last.pt if present.")
@click.option("--stop-after", type=click.IntRange(min=1), default=None, help="End this run after N epochs (resumable).")
@click.option("--workers", type=click.IntRange(min=0), default=None, help="DataLoader workers.")
@click.option("--force", is_flag=True, help="Use --out even if it is a non-empty folder edgeage did not write.")
def train_cmd(recipes, data, extra, unlabelled, epochs, batch_size, lr, out, resume, stop_after, workers, force):
    """Train a model from a recipe (CPU, one GPU, or many under torchrun)."""
    from .loop import train
    from .recipes import load_recipe

    over = {"data": {"path": data, "extra": list(extra) or None, "unlabelled": list(unlabelled) or None},
            "train": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "num_workers": workers}}
    if len(recipes) > 1:
        from pathlib import Path

        from edgeage.utils import EdgeAgeError

        from .multi import train_together

        if resume or stop_after:
            raise EdgeAgeError("--resume / --stop-after: one --recipe at a time")
        loaded = [load_recipe(r, over) for r in recipes]
        outs = [Path(out or "runs") / r.name for r in loaded]
        res = train_together(loaded, outs, force=force, log=click.echo)
        for name, v in res.items():
            click.echo(f"{name}: best validation MAE {v['best']['val_mae']:.3f} at epoch {v['best']['epoch']}; "
                       f"{v['out']}")
        return
    recipe = recipes[0]
    r = load_recipe(recipe, over)
    res = train(r, out or f"runs/{r.name}", resume=resume, stop_after=stop_after, force=force)
    b = res["best"]
    click.echo(f"best validation MAE {b['val_mae']:.3f} at epoch {b['epoch']}; "
               f"checkpoints in {res['out']} (best.pt, last.pt), curve.png, metrics.json")
