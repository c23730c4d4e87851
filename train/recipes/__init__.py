"""Training recipes: TOML files merged over ``DEFAULTS``. ``load_recipe`` takes a path or the
name of a recipe shipped here (``mgpnet-t`` -> ``train/recipes/mgpnet-t.toml``) and returns a
``Recipe``: the checked, typed, frozen object the training loop, pruning and QAT take (the schema
library's model; ``Recipe.to_dict()`` is what checkpoints record, ``replace`` a changed copy)."""
from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StrictBool

from edgeage.degrade import ALL_OPS, MIN_SCALE_RANGE
from edgeage.schemas import Closed, ModelSection, integer, number, parse_text, validate
from edgeage.utils import EdgeAgeError, register_input

DEFAULTS: dict = {
    "model": {"name": "mgpnet-t"},
    "data": {"path": "../shared/datasets/utkface", "seed": 0, "val": 0.1, "test": 0.15,
             "crop": "detect", "crop_margin": 1.0, "crop_shift_y": 0.0, "crop_size": 96,
             "skip_bad": False, "train_subset": 0, "extra": [], "unlabelled": []},
    "train": {"epochs": 30, "batch_size": 64, "lr": 2e-3, "weight_decay": 0.05,
              "warmup_epochs": 1.0, "grad_clip": 5.0, "sord_temperature": 1.0,
              "label_smoothing": 0.0, "ema_decay": 0.0, "flip": 0.5, "erasing": 0.25, "grayscale": 0.0,
              "jitter": 0.05, "rotate": True, "num_workers": 0, "amp": True, "seed": 0,
              "init": "", "init_skip": "", "mixup": 0.0, "age_balance": 0.0},
    # min_scale: smallest down-sampling scale at strength 1 (edgeage.degrade; 0.125 = 12 px of a 96 px crop)
    # op_p: trigger probability of single ops instead of p, e.g. {downsample = 0.5}
    "degrade": {"p": 0.2, "strength": 1.0, "strength_min": 1.0, "min_scale": 0.25, "op_p": {}},
    # teacher: a checkpoint path or a list (an ensemble). mode: "online" runs the teachers on the
    # student's augmented batch every step; "clean" runs them once on the clean training crops.
    # views = 2: each teacher also reads the mirror; the distributions are averaged.
    # teacher_view (online): "student", the student's own augmented, degraded batch; "undegraded",
    # the same jittered, flipped (and mixed) faces before degradation, grey and erasing.
    "distill": {"teacher": "", "alpha": 0.5, "temperature": 2.0, "mode": "online", "views": 2,
                "teacher_view": "student"},
}


def recipe_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml" and p.is_file():
        return p
    shipped = Path(str(resources.files("edgeage.train.recipes"))) / f"{p.stem}.toml"
    if shipped.is_file():
        return shipped
    known = sorted(f.stem for f in shipped.parent.glob("*.toml"))
    raise EdgeAgeError(f"recipe {name_or_path!r} not found (a .toml path, or one of: {', '.join(known)})")


def load_recipe(name_or_path: str, overrides: dict | None = None) -> "Recipe":
    path = recipe_path(name_or_path)
    register_input(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise EdgeAgeError(f"{path}: cannot read the recipe ({e})") from None
    user = parse_text(text, "toml", str(path))
    if not all(isinstance(v, dict) for k, v in user.items() if k != "name"):
        bad = next(k for k, v in user.items() if k != "name" and not isinstance(v, dict))
        raise EdgeAgeError(f"{path}: {bad} must be a table ([{bad}])")
    r = merge(DEFAULTS, user, str(path))
    r["name"] = user.get("name", path.stem)
    for sec, vals in (overrides or {}).items():
        r[sec].update({k: v for k, v in vals.items() if v is not None})
    return validate_recipe(r, str(path))


class _Section(Closed):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSection(_Section):
    path: str
    seed: integer(0, 2**31 - 1)
    val: Annotated[float, Field(gt=0, lt=1, strict=True, allow_inf_nan=False)]  # training needs a validation split
    test: Annotated[float, Field(ge=0, lt=1, strict=True, allow_inf_nan=False)]
    crop: Literal["detect", "none"]
    crop_margin: number(0.1, 10.0)
    crop_shift_y: number(-1.0, 1.0)
    crop_size: integer(8, 1024)
    skip_bad: StrictBool
    train_subset: integer(0, 10**9)
    # more labelled sets (labels.csv, UTKFace-named folder or prepared crops), every image of
    # each added to the training split only; validation and test stay ``path``'s
    extra: tuple[str, ...]
    # faces without ages (a folder, its sub-folders too, or a CSV's path column; prepared crops),
    # added to the training split: only the teacher's targets train on them (needs [distill] teacher)
    unlabelled: tuple[str, ...]


class TrainSection(_Section):
    epochs: integer(1, 100_000)
    batch_size: integer(1, 65_536)
    lr: number(hi=10.0, gt=0.0)
    weight_decay: number(0.0, 10.0)
    warmup_epochs: number(0.0, 100_000.0)
    grad_clip: number(0.0, 1e6)
    sord_temperature: number(hi=100.0, gt=0.0)
    label_smoothing: number(0.0, 1.0)
    ema_decay: Annotated[float, Field(ge=0, lt=1, strict=True, allow_inf_nan=False)]
    flip: number(0.0, 1.0)
    erasing: number(0.0, 1.0)
    grayscale: number(0.0, 1.0)   # share of training crops turned grey (IR / night cameras, old photos)
    jitter: number(0.0, 1.0)
    rotate: StrictBool
    num_workers: integer(0, 256)
    amp: StrictBool
    seed: integer(0, 2**31 - 1)
    init: str
    init_skip: str
    # Beta(mixup, mixup) weight for mixing each batch with a shuffle of itself (labels and targets
    # mixed alike; an online teacher reads the mixed faces); 0 = off
    mixup: number(0.0, 10.0)
    # sampling weight of a training face = (its age's smoothed share of the training set) ** -age_balance
    # (label distribution smoothing, Yang et al., ICML 2021); 0 = every face equally often, 0.5 = the
    # square-root inverse, 1 = every age equally often
    age_balance: number(0.0, 1.0)


class DegradeSection(_Section):
    p: number(0.0, 1.0)
    strength: number(0.0, 1.0)
    strength_min: number(0.0, 1.0)
    min_scale: number(*MIN_SCALE_RANGE)
    op_p: dict[Literal[ALL_OPS], number(0.0, 1.0)]


class DistillSection(_Section):
    teacher: str | Annotated[list[str], Field(max_length=16)]
    alpha: number(0.0, 1.0)
    temperature: number(hi=100.0, gt=0.0)
    mode: Literal["online", "clean"]
    views: integer(1, 2)
    teacher_view: Literal["student", "undegraded"]


class Recipe(_Section):
    """A merged, checked recipe: every key's type and range (the model's options: the model
    registry). Frozen: ``replace`` gives a changed copy, checked again. Field order = the order
    checkpoints have always recorded."""

    model: dict[str, Any]
    data: DataSection
    train: TrainSection
    degrade: DegradeSection
    distill: DistillSection
    name: Annotated[str, Field(min_length=1, max_length=128)]

    @classmethod
    def from_dict(cls, d: dict, where: str = "recipe") -> "Recipe":
        """A recipe as a checkpoint records it (or partial: merged over ``DEFAULTS``), checked."""
        if not isinstance(d, dict):
            raise EdgeAgeError(f"{where}: a recipe is a table of sections (got {type(d).__name__})")
        full = merge(DEFAULTS, {k: v for k, v in d.items() if k != "name"}, where)
        full["name"] = d.get("name", "recipe")
        return validate_recipe(full, where)

    def to_dict(self) -> dict:
        """The plain dict checkpoints and manifests record."""
        return self.model_dump()

    def replace(self, where: str = "recipe", **sections: dict) -> "Recipe":
        """A copy with these sections' keys changed (``model`` and ``name`` replaced whole),
        checked again: ``r.replace(train={"epochs": 2})``."""
        d = self.to_dict()
        for sec, vals in sections.items():
            d[sec] = vals if sec in ("model", "name") else {**d[sec], **vals}
        return validate_recipe(d, where)


def _recipe_loc(loc: tuple) -> str:
    return f"[{loc[0]}] " + ".".join(str(p) for p in loc[1:]) if len(loc) > 1 else str(loc[0])


def validate_recipe(r: dict, where: str = "recipe") -> Recipe:
    """The ``Recipe``: every value's type and range (the one schema library's check), and the model
    name and options (the registry's), as one EdgeAgeError naming the key; before anything is
    created."""
    from edgeage.models import default_config

    if not split_sum_ok(r["data"]):
        raise EdgeAgeError(f"{where}: [data] val + test = {r['data']['val'] + r['data']['test']:g} leaves no "
                           "training images; keep val + test < 1")
    checked = validate(Recipe, {**{k: v for k, v in r.items() if k != "name"}, "name": r.get("name", "recipe")},
                       where, loc=_recipe_loc, hint="fix the recipe (see train/recipes/ for examples)")
    mcfg = dict(r["model"])
    name = mcfg.pop("name", None)
    if not isinstance(name, str):
        raise EdgeAgeError(f"{where}: [model] name must be a model name (edgeage models lists them)")
    try:
        known = default_config(name)
    except KeyError as e:
        raise EdgeAgeError(f"{where}: [model] {e.args[0]}") from None
    unknown = sorted(set(mcfg) - set(known))
    if unknown:
        raise EdgeAgeError(f"{where}: unknown option(s) {unknown} in [model] for {name!r}; valid: {sorted(known)}")
    validate(ModelSection, r["model"], f"{where}: [model]")
    dc = checked.distill
    if checked.data.unlabelled and not dc.teacher:
        raise EdgeAgeError(f"{where}: [data] unlabelled faces have no ages, so only a teacher's targets can train "
                           "on them, and this recipe has none: set [distill] teacher or drop [data] unlabelled")
    if dc.teacher_view != "student" and (dc.mode != "online" or not dc.teacher):
        raise EdgeAgeError(f"{where}: [distill] teacher_view = {dc.teacher_view!r} is what an online teacher "
                           "reads each step, but " + ("this recipe has none: set [distill] teacher"
                                                      if not dc.teacher else "mode = 'clean' reads the clean "
                                                      "crops once: set mode = 'online'") + " or drop teacher_view")
    return checked


def split_sum_ok(d: dict) -> bool:
    try:
        return float(d["val"]) + float(d["test"]) < 1
    except (TypeError, ValueError):
        return True  # the type check names the key


def merge(base: dict, user: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for sec, vals in user.items():
        if sec == "name":
            continue
        if sec not in out:
            raise EdgeAgeError(f"{where}: unknown section [{sec}]; known: {', '.join(out)}")
        if sec != "model":  # model keys are checked by the model registry
            bad = set(vals) - set(out[sec])
            if bad:
                raise EdgeAgeError(f"{where}: unknown key(s) {sorted(bad)} in [{sec}]; "
                                   f"known: {', '.join(out[sec])}")
        out[sec].update(vals)
    return out
