"""Structural channel pruning of edgeage models with torch-pruning 1.6.1's dependency graph,
extended for MGP-Net.

torch-pruning alone gets MGP-Net wrong in two ways (../shared/notes/toolchain.md):

- It dropped every channel group of the residual path (stem, stage widths, MGPool outputs).
  The gates' own convolutions are traced as layers fed by the feature channels: ECA's
  Conv1d(1, 1, k) behind ``reshape(n, 1, c)`` (a flatten index mapping sends channel i to its one
  input channel) and spatial attention's Conv2d(2, 1, 7) behind the channel mean / max and
  ``cat`` (the mappings ask it to drop input channels [0..31] or [-1, 0, 1] of its 2). Each
  residual group thus asks to remove input channels of a conv that has 1 or 2; the pruner's
  over-pruning check rejects the group without a word (on other widths the chained flatten
  mappings blow up in memory instead). Fix: ECA and SpatialAttention are pass-through layers
  (``customized_pruners``): they have no per-channel parameters, a channel group flows through.
- It follows the MGPool concat but not the reshape/transpose channel shuffle, so it removed the
  wrong fuse-conv columns. Fix: MGPool is one custom layer with separate input and output channel
  spaces. ``MGPoolPruner`` removes input channel c from every pooling branch at its shuffled
  positions (from ``shuffle_permutation``) and prunes the fuse conv + BN as its output. Exact
  when the shuffle groups divide the branch count (4 and 4 in MGP-Net); else ``prune`` refuses.

While tracing, each of these three modules' output is replaced by a stand-in computed from its
input alone (``_trace``): the graph holds each as one node and never sees its inside.

A pruned model is its parent's architecture with narrower layers: ``model.config["pruned"]``
records the ratio and the [out, in] widths of every changed Conv2d / BatchNorm2d / Linear, from
which ``shrink`` rebuilds it (every forward pass reads its widths from the tensors; ECA keeps its
kernel size). ECA and spatial attention in a pruned model work on the kept channels only (ECA's
neighbourhood and the channel mean / max are over them), which no weight zeroing reproduces:
the tests compare with the unpruned model whose removed channels are zeroed and whose gates see
only the kept ones.
"""
from __future__ import annotations

import copy
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_pruning as tp

from edgeage.models import from_config
from edgeage.models.layers import ECA, SE, BasicBlock, MGPool, SpatialAttention, shuffle_permutation
from edgeage.utils import EdgeAgeError

from .recipes import Recipe, load_recipe


class PassThroughPruner(tp.pruner.BasePruningFunc):
    """A layer without per-channel parameters: a channel group passes through it unchanged
    (prune_in_channels is prune_out_channels: torch-pruning's intra-layer dependency)."""

    def prune_out_channels(self, layer, idxs):
        return layer

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer):
        return None

    get_in_channels = get_out_channels


class MGPoolPruner(tp.pruner.BasePruningFunc):
    """MGPool as one layer. Output channels: fuse-conv rows and BN. Input channel c: position
    b*C + c of every branch b of the concatenation, which the shuffle moves to position i with
    perm[i] = b*C + c: those fuse-conv columns (and SE-gate channels) go."""

    def prune_out_channels(self, layer: MGPool, idxs):
        tp.prune_conv_out_channels(layer.fuse, idxs)
        tp.prune_batchnorm_out_channels(layer.bn, idxs)
        return layer

    def prune_in_channels(self, layer: MGPool, idxs):
        pos = self.positions(layer, idxs)
        tp.prune_conv_in_channels(layer.fuse, pos)
        if isinstance(layer.gate, SE):
            tp.prune_conv_in_channels(layer.gate.fc1, pos)
            tp.prune_conv_out_channels(layer.gate.fc2, pos)
        return layer

    def positions(self, layer: MGPool, idxs) -> list[int]:
        """Shuffled concatenation positions of input channels ``idxs`` (per channel, per branch)."""
        c = self.get_in_channels(layer)
        perm = shuffle_permutation(layer.fuse.in_channels, layer.groups)
        where = {p: i for i, p in enumerate(perm)}
        return [where[b * c + i] for i in idxs for b in range(len(layer.pools))]

    def get_out_channels(self, layer: MGPool):
        return layer.fuse.out_channels

    def get_in_channels(self, layer: MGPool):
        return layer.fuse.in_channels // len(layer.pools)


CUSTOM = {ECA: PassThroughPruner(), SpatialAttention: PassThroughPruner(), MGPool: MGPoolPruner()}


class Importance(tp.importance.GroupMagnitudeImportance):
    """torch-pruning's group L2 magnitude, also scoring MGPool's own weights: fuse-conv rows and
    BN scale (its output channels) or fuse-conv columns at the shuffled positions (its input)."""

    def __call__(self, group):
        items = []
        for it in group:
            mgpool = isinstance(it.dep.layer, MGPool)
            items += self._mgpool_items(*it, it.root_idxs) if mgpool else [it]
        return super().__call__(items)

    @staticmethod
    def _mgpool_items(dep, idxs, root):
        m, mp = dep.layer, CUSTOM[MGPool]

        def item(layer, fn, i, r):
            it = tp._helpers.GroupItem(SimpleNamespace(layer=layer, pruning_fn=fn), i)
            it.root_idxs = r
            return it

        if dep.pruning_fn == mp.prune_out_channels:
            return [item(m.fuse, tp.prune_conv_out_channels, idxs, root),
                    item(m.bn, tp.prune_batchnorm_out_channels, idxs, root)]
        return [item(m.fuse, tp.prune_conv_in_channels, mp.positions(m, idxs),
                     [r for r in root for _ in m.pools])]


def _standin(mod, args, out):
    return F.adaptive_avg_pool2d(args[0], out.shape[-2:])


def _trace(model, x):
    """Forward for tracing: the output of every module with a custom pruner is replaced by a
    stand-in computed from its input alone, so the graph holds it as one layer."""
    hooks = [m.register_forward_hook(_standin, prepend=True) for m in model.modules()
             if isinstance(m, tuple(CUSTOM))]
    try:
        return model(x)
    finally:
        for h in hooks:
            h.remove()


def prune(model: nn.Module, ratio: float, round_to: int | None = 4) -> dict:
    """Remove ``ratio`` of the channels of every channel group of ``model`` (in place; the head's
    outputs stay), least group-L2 magnitude first, keeping multiples of ``round_to``. Sets
    ``model.config["pruned"]``; returns the removed channels, indexed in the layers before this
    call: ``{layer name: {"out": [...], "in": [...]}}``."""
    for m in model.modules():
        if isinstance(m, MGPool) and m.groups > 1 and len(m.pools) % m.groups:
            raise EdgeAgeError(f"cannot prune MGPool with {len(m.pools)} branches and {m.groups} "
                               "shuffle groups: the shuffle groups straddle the branches, so the "
                               "shuffle of a narrower concatenation is another permutation")
    size = int(model.config.get("input_size", 64))
    pruner = tp.pruner.BasePruner(
        model, torch.zeros(1, 3, size, size), importance=Importance(p=2), pruning_ratio=ratio,
        round_to=round_to, ignored_layers=[model.head], customized_pruners=CUSTOM,
        forward_fn=_trace, root_module_types=[nn.Conv2d, nn.Linear, MGPool])
    names = {m: n for n, m in model.named_modules()}
    removed: dict[str, dict[str, list[int]]] = {}
    for group in pruner.step(interactive=True):
        for dep, idxs in group:
            if dep.target.module in names:
                side = "out" if pruner.DG.is_out_channel_pruning_fn(dep.handler) else "in"
                removed.setdefault(names[dep.target.module], {}).setdefault(side, []).extend(idxs)
        group.prune()
    base = layer_widths(from_config({k: v for k, v in model.config.items() if k != "pruned"}))
    model.config = dict(model.config, pruned={
        "ratio": ratio, "round_to": round_to, "importance": "group-l2",
        "layers": {n: w for n, w in layer_widths(model).items() if w != base[n]}})
    return removed


def channel_ratio_for_macs(model: nn.Module, macs_removed: float, round_to: int | None = 4,
                           tol: float = 0.005) -> float:
    """The per-group channel ratio that removes ``macs_removed`` of ``model``'s MACs (bisection on
    copies; MACs fall roughly with the square of the kept channels, so half the MACs is a channel
    ratio of about 0.25-0.3). Returns the smallest ratio (within ``tol``) that removes at least
    the target, so the pruned model has at most ``1 - macs_removed`` of the MACs."""
    from edgeage.profile import count_macs

    size = int(model.config.get("input_size", 64))
    base = count_macs(model, size)
    lo, hi = 0.0, 0.95
    for _ in range(12):
        mid = (lo + hi) / 2
        m = copy.deepcopy(model)
        prune(m, mid, round_to)
        if 1 - count_macs(m, size) / base >= macs_removed:
            hi = mid
        else:
            lo = mid
        if hi - lo < tol:
            break
    return hi


def layer_widths(model: nn.Module) -> dict[str, list[int]]:
    """[out, in] channels of every Conv2d / BatchNorm2d / Linear."""
    w = {}
    for n, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            w[n] = [m.out_channels, m.in_channels]
        elif isinstance(m, nn.BatchNorm2d):
            w[n] = [m.num_features, m.num_features]
        elif isinstance(m, nn.Linear):
            w[n] = [m.out_features, m.in_features]
    return w


def residual_widths(model: nn.Module) -> list[int]:
    """The stem's output width and every stage's residual width."""
    bb = model.backbone
    last = [[b for b in s if isinstance(b, BasicBlock)][-1] for s in bb.stages]
    return [bb.stem[0].out_channels] + [b.conv2.out_channels for b in last]


def finetune(model: nn.Module, recipe: Recipe, out, epochs: int, split: dict | None = None,
             progress: bool = True) -> dict:
    """Train ``model`` (in place) for ``epochs`` epochs with edgeage.train.loop: the recipe's
    data, augmentation + degradation model, loss, optimiser and schedule. ``split``: the parent's
    recorded split, which the recipe's data must reproduce (no validation or test image may be
    trained on). Returns ``loop.train``'s result; ``out`` gets its checkpoints and curves."""
    from . import loop

    r = recipe.replace(train={"epochs": epochs},
                       model={"name": model.config["name"]})  # recorded only: the loop trains ``model``
    data = loop.load_data(r, progress)
    bad = [k for k, v in (split or {}).items() if k.endswith("hash") and data[2].get(k) != v]
    if bad:
        raise EdgeAgeError(f"data {r.data.path} does not give the split the model was "
                           f"trained on ({', '.join(bad)} differ); use that model's data")
    return loop.train(r, out, progress=progress, model=model, data=data)


def prune_checkpoint(model_path, ratio: float, by: str = "channels", round_to: int = 4, finetune_epochs: int = 0,
                     recipe=None, data=None, lr=None, distill: bool = False, out=None, force: bool = False,
                     echo=print) -> dict:
    """``edgeage prune``: prune a checkpoint (``by`` channels or MACs), optionally fine-tune it on
    the checkpoint's split, write pruned.pt, prune.json (and the training run's files) to ``out``;
    returns the report (with ``out``)."""
    from pathlib import Path

    from edgeage.checkpoint import build_manifest, load_model, save_checkpoint
    from edgeage.profile import count_macs, count_params
    from edgeage.utils import EdgeAgeError, check_output, output_dir, write_json

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
        echo(f"--by macs {ratio}: channel ratio {channels:.3f}")
    prune(model, channels, round_to)
    after = measure()
    out = Path(out or f"runs/{model.config['name']}-pruned{round(ratio * 100)}{'-macs' if by == 'macs' else ''}")
    r = None
    if finetune_epochs > 0:  # the recipe is checked before anything is written
        recorded = manifest.training.recipe
        if not recipe and not recorded:
            raise EdgeAgeError(f"{manifest.source.path} records no training recipe; "
                               "pass --recipe for fine-tuning")
        r = load_recipe(recipe) if recipe else Recipe.from_dict(recorded, f"{manifest.source.path}: recipe")
        teacher = manifest.source.path if distill else None
        changes = {sec: {key: val} for sec, key, val in (("data", "path", data), ("train", "lr", lr),
                                                          ("distill", "teacher", teacher)) if val is not None}
        r = r.replace("--data / --lr / --distill", **changes)
    output_dir(out, force, kind="prune-run")
    parent = manifest.training.to_json_dict()  # the split and recipe carry over, the metrics do not
    training = {k: parent[k] for k in ("recipe", "split") if k in parent}
    training["pruned_from"] = dict(manifest.source.to_json_dict(), val=parent.get("val"))
    save_checkpoint(out / "pruned.pt", model, build_manifest(model, manifest.normalize, manifest.crop, training))
    report = {"parent": manifest.source.to_json_dict(), "ratio": ratio, "by": by, "channel_ratio": channels,
              "round_to": round_to,
              "before": before, "after": after,
              "params_ratio": after["params"] / before["params"],
              "macs_ratio": after["macs"] / before["macs"]}
    echo(f"pruned {manifest.source.path} at channel ratio {channels:.3f}: params "
               f"{before['params']:,} -> {after['params']:,} ({report['params_ratio']:.3f}), MACs "
               f"{before['macs']:,} -> {after['macs']:,} ({report['macs_ratio']:.3f}); residual "
               f"widths {before['residual_widths']} -> {after['residual_widths']}")
    if finetune_epochs > 0:
        res = finetune(model, r, out, finetune_epochs, training.get("split"))
        report["finetune"] = {"epochs": finetune_epochs, "best": res["best"]}
        echo(f"fine-tuned {finetune_epochs} epochs: best validation MAE "
                   f"{res['best']['val_mae']:.3f} at epoch {res['best']['epoch']}")
    write_json(out / "prune.json", report)
    report["out"] = str(out)
    return report
