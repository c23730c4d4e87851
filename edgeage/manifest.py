"""The manifest: what travels with the weights in every checkpoint and every exported artifact
(after timm's ``PretrainedCfg``: the preprocessing travels with the weights).

    {"format": "edgeage-manifest/1", "model": {name + config}, "readout": {...},
     "preprocess": {"crop": CropParams, "normalize": Normalize}, "training": {split, recipe,
     metrics}, "versions": {...}}   (+ "artifact", "quantize", "source" where they apply)

A manifest read from a file is data: ``Manifest.from_dict`` / ``check_manifest`` check every
field edgeage reads. Imports no torch."""
from __future__ import annotations

import dataclasses

from .preprocess import CropParams, Normalize
from .utils import EdgeAgeError

MANIFEST_FORMAT = "edgeage-manifest/1"


def check_manifest(manifest, where: str) -> dict:
    """The manifest if it has every field edgeage reads, with values in range
    (``edgeage.schemas.Manifest``), else one EdgeAgeError naming ``where`` and the field path."""
    from .schemas import Manifest as Schema, validate

    if not isinstance(manifest, dict):
        raise EdgeAgeError(f"{where}: has no manifest (got {type(manifest).__name__}); not an edgeage file")
    validate(Schema, manifest, f"{where}: manifest")
    kind = model_kind(manifest)
    known = READOUTS_OF_KIND[kind]
    if manifest["readout"]["type"] not in known:
        raise EdgeAgeError(f"{where}: unknown readout type {manifest['readout']['type']!r} for a {kind} (known: "
                           f"{', '.join(known)})")
    return manifest


AGE_ESTIMATOR, FACE_DETECTOR = "age-estimator", "face-detector"
# what a model's raw outputs are (manifest model.kind) -> the readouts that turn them into results
READOUTS_OF_KIND = {AGE_ESTIMATOR: ("expectation", "identity", "coral", "mean"),
                    FACE_DETECTOR: ("blazeface-anchors",)}
# the option of the commands that take each kind of artifact
_OPTION_OF_KIND = {AGE_ESTIMATOR: "--artifact", FACE_DETECTOR: "--detector"}


def model_kind(manifest: dict) -> str:
    return manifest["model"].get("kind", AGE_ESTIMATOR)


def require_kind(manifest: dict, kind: str, where: str) -> dict:
    """The manifest if its model is a ``kind``, else one EdgeAgeError saying what it is and
    which option takes it (an exported face detector given as an age model, or the reverse)."""
    got = model_kind(manifest)
    if got != kind:
        raise EdgeAgeError(f"{where}: is an exported {got} ({manifest['model']['name']}), not an {kind}; pass "
                           f"it with {_OPTION_OF_KIND[got]}")
    return manifest


def manifest_normalize(manifest: dict) -> Normalize:
    d = dict(manifest["preprocess"]["normalize"])
    d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
    return Normalize(**d)


def manifest_crop(manifest: dict) -> CropParams:
    return CropParams(**manifest["preprocess"]["crop"])




@dataclasses.dataclass
class Manifest:
    """Typed view of a manifest: ``from_dict`` checks it, ``to_dict`` gives the plain dict back
    (unknown sections, e.g. ``artifact`` or ``quantize``, are kept in ``extra``)."""

    model: dict
    readout: dict
    crop: CropParams
    normalize: Normalize
    training: dict = dataclasses.field(default_factory=dict)
    versions: dict = dataclasses.field(default_factory=dict)
    extra: dict = dataclasses.field(default_factory=dict)

    KNOWN = ("format", "model", "readout", "preprocess", "training", "versions")

    @classmethod
    def from_dict(cls, d: dict, where: str = "manifest") -> "Manifest":
        check_manifest(d, where)
        return cls(dict(d["model"]), dict(d["readout"]), manifest_crop(d), manifest_normalize(d),
                   dict(d.get("training") or {}), dict(d.get("versions") or {}),
                   {k: v for k, v in d.items() if k not in cls.KNOWN})

    def to_dict(self) -> dict:
        return {"format": MANIFEST_FORMAT, "model": dict(self.model), "readout": dict(self.readout),
                "preprocess": {"crop": self.crop.to_dict(), "normalize": self.normalize.to_dict()},
                "training": dict(self.training), "versions": dict(self.versions), **self.extra}

    @property
    def input_size(self) -> int:
        return self.normalize.input_size
