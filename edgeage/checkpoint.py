"""Checkpoints and the model manifest (after timm's PretrainedCfg: the preprocessing travels
with the weights). Every checkpoint and every exported artifact carries the manifest:

    {"format": "edgeage-manifest/1", "model": {name + config}, "readout": {...},
     "preprocess": {"crop": CropParams, "normalize": Normalize}, "training": {split, recipe,
     metrics}, "versions": {...}}
"""
from __future__ import annotations

import math
import os
from importlib import resources
from pathlib import Path

import torch

from . import __version__
from .models import from_config, shrink
from .manifest import MANIFEST_FORMAT, Manifest, check_manifest  # noqa: F401
from .preprocess import CropParams, Normalize
from .utils import EdgeAgeError, atomic_path, register_input, sha256_file

CKPT_FORMAT = "edgeage-checkpoint/1"
SHIPPED = "shipped.toml"   # the shipped models: the default's name, what each one is


def build_manifest(model, normalize: Normalize | None = None, crop: CropParams | None = None,
                   training: dict | None = None) -> Manifest:
    cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in model.config.items()}
    if "gem_ps" in cfg:  # strict JSON has no Infinity
        cfg["gem_ps"] = ["inf" if math.isinf(float(p)) else float(p) for p in cfg["gem_ps"]]
    normalize = normalize or Normalize(input_size=int(model.config.get("input_size", 64)))
    if crop is None and model.config.get("context_margin"):  # mivolo: one crop holds both views
        k = int(model.config["context_margin"])
        crop = CropParams(margin=float(k), crop_size=CropParams().crop_size * k)
    return check_manifest({
        "format": MANIFEST_FORMAT,
        "model": cfg,
        "readout": model.head.spec.to_dict(),
        "preprocess": {"crop": (crop or CropParams()).to_dict(), "normalize": normalize.to_dict()},
        "training": training or {},
        "versions": {"edgeage": __version__, "torch": str(torch.__version__)},
    }, f"model {cfg.get('name')}")


def model_from_manifest(manifest: Manifest, where: str = "manifest") -> torch.nn.Module:
    cfg = manifest.model.config()
    pruned = cfg.pop("pruned", None)
    for k in ("widths", "depths", "gem_ps"):
        if k in cfg and isinstance(cfg[k], list):
            cfg[k] = tuple(float(v) if k == "gem_ps" else v for v in cfg[k])
    try:
        model = from_config(cfg)
        if pruned:  # rebuilt at the pruned widths; the checkpoint's weights are loaded next
            shrink(model, pruned["layers"])
            model.config = dict(model.config, pruned=pruned)
    except KeyError as e:  # unknown model name / option (the registry's message names them)
        raise EdgeAgeError(f"{where}: {e.args[0] if e.args else e}") from None
    except (TypeError, ValueError, AttributeError) as e:
        raise EdgeAgeError(f"{where}: model config {cfg.get('name')!r} cannot be built "
                           f"({type(e).__name__}: {e})") from None
    return model


def save_checkpoint(path: str | os.PathLike, model, manifest: Manifest, train_state: dict | None = None,
                    half: bool = False) -> None:
    """Atomic write. ``half`` stores floating weights as fp16 (for shipped files)."""
    import json

    from .utils import json_default

    sd = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
          for k, v in _unwrap(model).state_dict().items()}
    # plain JSON types only: checkpoints are read back with torch.load(weights_only=True); the typed
    # manifest is never pickled into one, its plain dict is
    manifest = json.loads(json.dumps(manifest.to_dict(), default=json_default))
    obj = {"format": CKPT_FORMAT, "manifest": manifest, "state_dict": sd}
    if train_state is not None:
        obj["train_state"] = train_state
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


def shipped_info() -> dict:
    """``edgeage/assets/shipped.toml``: the default's name and what each shipped model is (part of
    the installed package, not a file from elsewhere)."""
    import tomllib

    info = tomllib.loads((Path(str(resources.files("edgeage.assets"))) / SHIPPED).read_text())
    return {"default": str(info["default"]), "models": dict(info.get("models", {}))}


def default_model_path() -> Path:
    """The checkpoint that runs without --model (``shipped.toml``'s ``default``)."""
    return Path(str(resources.files("edgeage.assets"))) / f"{shipped_info()['default']}.pt"


def shipped_models() -> dict[str, Path]:
    """The checkpoints shipped in the package, by name: ``default`` (the default's file) and every
    ``edgeage/assets/<name>.pt`` (``--model <name>`` selects one)."""
    assets = Path(str(resources.files("edgeage.assets")))
    return {"default": default_model_path(), **{f.stem: f for f in sorted(assets.glob("*.pt"))}}


def shipped_names() -> list[str]:
    """Every shipped model's name, the default first (what the evidence scripts measure)."""
    default = shipped_info()["default"]
    return [default] + [n for n in shipped_models() if n not in ("default", default)]


def model_path(path: str | os.PathLike | None) -> Path:
    """``path`` as a checkpoint file: None = the shipped default; a bare name that is not a file
    here but a shipped model's (``mgpnet-xs``) = that shipped checkpoint."""
    if not path:
        return default_model_path()
    p = Path(path)
    if not p.exists() and _bare_name(p):
        shipped = shipped_models()
        if p.name in shipped:
            return shipped[p.name]
    return p


def _bare_name(p: Path) -> bool:
    """A name like ``mgpnet-xs``: no folder, no .pt suffix (what --model NAME means)."""
    return str(p) == p.name and p.suffix != ".pt"


TRUST_ENV = "EDGEAGE_TRUST_PICKLE"


def read_checkpoint(path: str | os.PathLike | None, *, own_output: bool = False) -> dict:
    """A checkpoint's contents, read as data: ``torch.load(weights_only=True)`` (tensors and
    plain values only; a file that needs more cannot run code here, it is refused). Checkpoints
    written before edgeage stored plain values load only with the documented opt-in
    EDGEAGE_TRUST_PICKLE=1, for files you trust (it runs the file's pickle code). ``own_output``:
    the file is the command's own output being resumed (not an input an --out may not hold).
    ``["manifest"]`` is the typed ``Manifest`` (the file holds its plain dict)."""
    path = model_path(path)
    if not own_output:  # a run resuming from its own last.pt writes that folder by design
        register_input(path)
    if not path.is_file():
        raise EdgeAgeError(f"{path}: model checkpoint not found"
                           + (" (the shipped default model is missing from this install)"
                              if path == default_model_path() else
                              f"; shipped models (--model NAME): {', '.join(shipped_models())}"
                              if _bare_name(path) else ""))
    from torch.torch_version import TorchVersion  # a str subclass that old manifests hold

    trust = os.environ.get(TRUST_ENV) == "1"
    try:
        with torch.serialization.safe_globals([TorchVersion]):
            obj = torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle_error() as e:
        raise EdgeAgeError(f"{path}: holds Python objects beyond tensors and plain values, which edgeage does "
                           f"not load from a file (loading them can run code). If you trust the file (an "
                           f"older edgeage checkpoint of your own), load it once with {TRUST_ENV}=1 and "
                           f"save it again (`edgeage checkpoint upgrade`). ({str(e).splitlines()[0][:200]})") from None
    except Exception as e:  # noqa: BLE001 - any other failure means a bad file
        raise EdgeAgeError(f"{path}: not a readable edgeage checkpoint ({type(e).__name__}: "
                           f"{str(e).splitlines()[0][:300] if str(e) else ''})") from None
    if not isinstance(obj, dict) or obj.get("format") != CKPT_FORMAT:
        raise EdgeAgeError(f"{path}: not an edgeage checkpoint (format {obj.get('format') if isinstance(obj, dict) else type(obj).__name__})")
    manifest = check_manifest(obj.get("manifest"), str(path))
    if not isinstance(obj.get("state_dict"), dict):
        raise EdgeAgeError(f"{path}: has no weights (state_dict); not a usable edgeage checkpoint")
    obj["manifest"] = manifest   # the typed manifest (the file holds its plain dict)
    obj["path"] = str(path)
    obj["sha256"] = sha256_file(path)
    return obj


def pickle_error() -> type[Exception]:
    import pickle

    return pickle.UnpicklingError


def load_model(path: str | os.PathLike | None = None, ema: bool = True):
    """(model in eval mode, manifest) from a checkpoint; None = the shipped default model."""
    obj = read_checkpoint(path)
    manifest = obj["manifest"]
    model = model_from_manifest(manifest, obj["path"])
    sd = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in obj["state_dict"].items()}
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except (RuntimeError, TypeError, AttributeError) as e:  # shapes (size mismatch) or non-tensors
        first = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), str(e).splitlines()[0])
        raise EdgeAgeError(f"{obj['path']}: weights do not fit model {manifest.model.name} as its manifest "
                           f"describes it ({first[:300]})") from None
    if missing or unexpected:
        raise EdgeAgeError(f"{obj['path']}: weights do not fit model {manifest.model.name} "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.eval()
    manifest = manifest.copy_with(source={"path": obj["path"], "sha256": obj["sha256"]})
    return model, manifest


class TorchModel:
    """A PyTorch model as the pipeline's model callable: float32 numpy inputs -> raw outputs
    (eval mode, no grad; batches moved to ``device`` and back)."""

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu"):
        self.module, self.device = model, torch.device(device)

    def __call__(self, x):
        import numpy as np

        was_training = self.module.training
        self.module.eval()
        try:
            with torch.no_grad():
                out = self.module(torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device))
        finally:
            self.module.train(was_training)
        return out.float().cpu().numpy()
