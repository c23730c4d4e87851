"""Training recipes: TOML files merged over ``DEFAULTS``. ``load_recipe`` takes a path or the
name of a recipe shipped here (``mgpnet-t`` -> ``train/recipes/mgpnet-t.toml``)."""
from __future__ import annotations

import copy
import dataclasses
import tomllib
from importlib import resources
from pathlib import Path

from edgeage.utils import EdgeAgeError

DEFAULTS: dict = {
    "model": {"name": "mgpnet-t"},
    "data": {"path": "../shared/datasets/utkface", "seed": 0, "val": 0.1, "test": 0.15,
             "crop": "detect", "crop_margin": 1.0, "crop_shift_y": 0.0, "crop_size": 96,
             "skip_bad": False, "train_subset": 0},
    "train": {"epochs": 30, "batch_size": 64, "lr": 2e-3, "weight_decay": 0.05,
              "warmup_epochs": 1.0, "grad_clip": 5.0, "sord_temperature": 1.0,
              "label_smoothing": 0.0, "ema_decay": 0.0, "flip": 0.5, "erasing": 0.25,
              "jitter": 0.05, "rotate": True, "num_workers": 0, "amp": True, "seed": 0,
              "init": "", "init_skip": ""},
    "degrade": {"p": 0.2, "strength": 1.0, "strength_min": 1.0},
    # teacher: a checkpoint path or a list (ensemble; mode "clean" only). mode: "online" runs
    # the teacher on the student's augmented batch every step; "clean" runs the teachers once on
    # the clean training crops (views = 2: and their mirrors) and distills those distributions.
    "distill": {"teacher": "", "alpha": 0.5, "temperature": 2.0, "mode": "online", "views": 2},
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


def load_recipe(name_or_path: str, overrides: dict | None = None) -> dict:
    path = recipe_path(name_or_path)
    try:
        user = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise EdgeAgeError(f"{path}: invalid TOML ({e})") from None
    r = merge(DEFAULTS, user, str(path))
    r["name"] = user.get("name", path.stem)
    for sec, vals in (overrides or {}).items():
        r[sec].update({k: v for k, v in vals.items() if v is not None})
    return validate_recipe(r, str(path))


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Typed view of a recipe (``from_dict`` checks it like ``load_recipe``; ``to_dict`` gives the
    plain dict the training loop and the checkpoint manifests carry)."""

    name: str
    model: dict
    data: dict
    train: dict
    degrade: dict
    distill: dict

    @classmethod
    def from_dict(cls, d: dict, where: str = "recipe") -> "Recipe":
        full = merge(DEFAULTS, {k: v for k, v in d.items() if k != "name"}, where)
        validate_recipe(full, where)
        return cls(str(d.get("name", "recipe")), *(copy.deepcopy(full[k]) for k in
                                                  ("model", "data", "train", "degrade", "distill")))

    def to_dict(self) -> dict:
        return {"model": dict(self.model), "data": dict(self.data), "train": dict(self.train),
                "degrade": dict(self.degrade), "distill": dict(self.distill), "name": self.name}


# value checks beyond the type: (section, key) -> (test, what it must be)
_RANGES = {
    ("data", "val"): (lambda v: 0 < v < 1, "a fraction in (0, 1): training needs a validation split"),
    ("data", "test"): (lambda v: 0 <= v < 1, "a fraction in [0, 1)"),
    ("train", "epochs"): (lambda v: v >= 1, "an integer >= 1"),
    ("train", "batch_size"): (lambda v: v >= 1, "an integer >= 1"),
    ("train", "lr"): (lambda v: v > 0, "a number > 0"),
    ("train", "num_workers"): (lambda v: v >= 0, "an integer >= 0"),
    ("train", "ema_decay"): (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("data", "crop"): (lambda v: v in ("detect", "none"), '"detect" or "none"'),
    ("data", "crop_size"): (lambda v: 8 <= v <= 1024, "an integer in 8..1024"),
    ("data", "train_subset"): (lambda v: v >= 0, "an integer >= 0"),
    ("degrade", "p"): (lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
    ("distill", "alpha"): (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    ("distill", "mode"): (lambda v: v in ("online", "clean"), '"online" or "clean"'),
    ("distill", "temperature"): (lambda v: v > 0, "a number > 0"),
}


def validate_recipe(r: dict, where: str = "recipe") -> dict:
    """Every value's type (that of its default; an int where a float is expected is fine), the
    ranges above, and the model name and options (the registry's), as one EdgeAgeError naming the
    key; before anything is created."""
    from edgeage.models import default_config

    if not split_sum_ok(r["data"]):
        raise EdgeAgeError(f"{where}: [data] val + test = {r['data']['val'] + r['data']['test']:g} leaves no "
                           "training images; keep val + test < 1")
    for sec, defaults in DEFAULTS.items():
        for key, d in defaults.items():
            v = r[sec].get(key)
            if sec == "distill" and key == "teacher":
                ok = isinstance(v, str) or (isinstance(v, list) and all(isinstance(t, str) for t in v))
            elif isinstance(d, bool):
                ok = isinstance(v, bool)
            elif isinstance(d, float):
                ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            else:
                ok = isinstance(v, type(d)) and not (isinstance(v, bool) and not isinstance(d, bool))
            if not ok:
                raise EdgeAgeError(f"{where}: [{sec}] {key} = {v!r} must be a {type(d).__name__}")
            rng = _RANGES.get((sec, key))
            if rng and not rng[0](v):
                raise EdgeAgeError(f"{where}: [{sec}] {key} = {v!r} must be {rng[1]}")
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
    return r


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
