"""Weight-space averaging of two checkpoints of one model (a weight-space ensemble, as in WiSE-FT:
Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022): ``(1 - alpha) * A + alpha * B``.

B is usually A fine-tuned (``train/recipes/accuracy/xs-grey-b.toml`` restarts the shipped
``mgpnet-xs`` with grey faces), so both sit in one basin and the average keeps most of each one's
strengths. The result keeps B's manifest, with ``training.averaged_from`` naming both parents
(path, SHA-256) and alpha, and ``training.val`` measured again on B's validation split: it is
evaluated, exported and released like a run's checkpoint. Choose alpha on the validation split,
never on the test split."""
from __future__ import annotations

import os

import torch

from edgeage.checkpoint import load_model
from edgeage.manifest import Manifest
from edgeage.utils import EdgeAgeError

from .loop import evaluate_split, load_data
from .recipes import Recipe


def _where(source) -> dict:
    return {"path": os.path.relpath(source.path) if source.path else None, "sha256": source.sha256}


@torch.no_grad()
def average_checkpoints(a, b, alpha: float) -> tuple[torch.nn.Module, Manifest]:
    """(model with ``(1 - alpha) * A + alpha * B``, B's manifest naming both parents). Floating
    tensors (weights, BN statistics) are averaged; integer ones (BN batch counts) are B's."""
    if not 0.0 <= alpha <= 1.0:
        raise EdgeAgeError(f"--alpha {alpha}: must be within [0, 1] (0 = A, 1 = B)")
    ma, mfa = load_model(a)
    mb, mfb = load_model(b)
    for what in ("model", "readout", "preprocess"):
        x, y = getattr(mfa, what), getattr(mfb, what)
        if what == "model":  # the name is a label: mgpnet-xs trained at 96 px is what ships as mgpnet-xs96
            x, y = x.model_copy(update={"name": ""}), y.model_copy(update={"name": ""})
        if x != y:
            raise EdgeAgeError(f"{a} and {b}: different {what} in their manifests; only checkpoints of one "
                               f"model with one preprocessing and readout can be averaged")
    sa, sb = ma.state_dict(), mb.state_dict()
    mb.load_state_dict({k: (1 - alpha) * sa[k] + alpha * sb[k] if sb[k].is_floating_point() else sb[k] for k in sb})
    training = mfb.training.to_json_dict()
    training["averaged_from"] = {"a": _where(mfa.source), "b": _where(mfb.source), "alpha": alpha}
    manifest = mfb.copy_with(training=training)
    manifest.drop("source")
    return mb, manifest


def revalidate(model: torch.nn.Module, manifest: Manifest, progress: bool = False) -> Manifest:
    """The manifest with ``training.val`` measured for ``model`` on the validation split its
    recipe records (the data folder must be there, with the same split)."""
    recipe = Recipe.from_dict(manifest.training.recipe, "the checkpoint's recipe")
    prep, parts, split_rec = load_data(recipe, progress)
    if manifest.training.split and split_rec.get("list_hash") != manifest.training.split.get("list_hash"):
        raise EdgeAgeError(f"{recipe.data.path}: not the data the checkpoint was trained on (its file-list "
                           f"hash differs from the manifest's); cannot measure its validation split")
    res, _ = evaluate_split(model.eval(), prep, parts["val"], manifest, torch.device("cpu"))
    training = manifest.training.to_json_dict()
    training["val"] = res
    return manifest.copy_with(training=training)
