"""The manifest: what travels with the weights in every checkpoint and every exported artifact
(after timm's ``PretrainedCfg``: the preprocessing travels with the weights).

    {"format": "edgeage-manifest/1", "model": {name + config}, "readout": {...},
     "preprocess": {"crop": CropParams, "normalize": Normalize}, "training": {split, recipe,
     metrics}, "versions": {...}}   (+ "artifact", "quantize", "source" where they apply)

A manifest read from a file is data: ``Manifest.from_dict`` / ``check_manifest`` check every
field edgeage reads. Imports no torch."""
from __future__ import annotations

from typing import Any

from pydantic import Field

from .check_report import Quantize
from .schemas import Num, Record
from .preprocess import CropParams, Normalize
from .utils import EdgeAgeError

MANIFEST_FORMAT = "edgeage-manifest/1"
AGE_ESTIMATOR, FACE_DETECTOR = "age-estimator", "face-detector"


# ---- the typed manifest -------------------------------------------------------------------------
# Record sections (edgeage.check_report): typed where edgeage reads them, every other key kept, the
# order of keys kept and numbers left as they are, so ``to_dict()`` is the very dict that was read.

class ModelInfo(Record):
    """``model``: the model config (the registry checks its other keys)."""

    name: str
    kind: str = AGE_ESTIMATOR          # what its raw outputs are (absent: an age estimator)
    pruned: dict[str, Any] | None = None

    def config(self) -> dict:
        return self.to_json_dict()


class ReadoutSpec(Record):
    """``readout``: how raw outputs become results (``edgeage.readout``)."""

    type: str
    age_min: Num | None = None
    age_max: Num | None = None

    def to_dict(self) -> dict:
        return self.to_json_dict()


class CropSection(Record):
    margin: Num = 1.0
    shift_y: Num = 0.0
    crop_size: int = 96
    policy: str = "detect"

    def params(self) -> CropParams:
        return CropParams(**self.to_json_dict())


class NormalizeSection(Record):
    input_size: int = 64
    mean: list[Num] = [0.5, 0.5, 0.5]
    std: list[Num] = [0.25, 0.25, 0.25]
    channel_order: str = "RGB"
    layout: str = "NCHW"

    def params(self) -> Normalize:
        d = self.to_json_dict()
        for k in ("mean", "std"):
            if k in d:
                d[k] = tuple(d[k])
        return Normalize(**d)


class PreprocessSection(Record):
    crop: CropSection
    normalize: NormalizeSection


class Source(Record):
    """``source`` (and ``artifact.source``): the checkpoint a model came from."""

    path: str | None = None
    sha256: str | None = None


class ArtifactFile(Record):
    name: str
    sha256: str
    size: int


class ArtifactInfo(Record):
    """``artifact``: an exported artifact's target, precision, files, source checkpoint."""

    target: str
    precision: str
    files: list[ArtifactFile]
    source: Source | None = None
    packaged_from: str | None = None


class Training(Record):
    """``training``: the split, the recipe (``Recipe.to_dict()``), the metrics."""

    split: dict[str, Any] | None = None
    recipe: dict[str, Any] | None = None
    val: dict[str, Any] | None = None
    epoch: int | None = None
    pruned_from: dict[str, Any] | None = None
    averaged_from: dict[str, Any] | None = None   # weights averaged from two checkpoints (scripts/average_weights.py)


class Manifest(Record):
    """The manifest as a type: what travels with the weights (checkpoints) and with every exported
    artifact (manifest.json). ``check_manifest`` / ``Manifest.parse`` give it from data (checked
    against ``edgeage.schemas.ManifestSchema``: one EdgeAgeError naming the file and the field);
    ``to_dict()`` is the plain dict written to disk (the very dict that was read: same keys, same
    order, ints stay ints). ``crop`` / ``normalize`` are the preprocessing as ``CropParams`` /
    ``Normalize``."""

    format: str | None = None
    model: ModelInfo
    readout: ReadoutSpec
    preprocess: PreprocessSection
    training: Training = Field(default_factory=Training)
    versions: dict[str, Any] | None = None
    source: Source | None = None
    artifact: ArtifactInfo | None = None
    quantize: Quantize | None = None

    @classmethod
    def parse(cls, obj: Any, where: str) -> "Manifest":
        """``obj`` checked (``check_manifest``) and typed."""
        return check_manifest(obj, where)

    @classmethod
    def from_dict(cls, d: Any, where: str = "manifest") -> "Manifest":
        return check_manifest(d, where)

    def to_dict(self) -> dict:
        """The plain dict (what checkpoints and manifest.json hold)."""
        return self.to_json_dict()

    def copy_with(self, **sections) -> "Manifest":
        """A copy with ``sections`` set (plain dicts or sections), keys in their order, new ones last."""
        return Manifest.model_validate({**self.to_dict(), **{k: _plain_section(v) for k, v in sections.items()}})

    @property
    def kind(self) -> str:
        return self.model.kind

    @property
    def crop(self) -> CropParams:
        return self.preprocess.crop.params()

    @property
    def normalize(self) -> Normalize:
        return self.preprocess.normalize.params()

    @property
    def source_path(self) -> str | None:
        """The checkpoint this model was loaded from (``source.path``), if recorded."""
        return self.source.path if self.source else None

    @property
    def input_size(self) -> int:
        return self.preprocess.normalize.input_size


def _plain_section(v):
    return v.to_json_dict() if isinstance(v, Record) else v


def check_manifest(manifest, where: str) -> Manifest:
    """The typed manifest if ``manifest`` has every field edgeage reads, with values in range
    (``edgeage.schemas.ManifestSchema``), else one EdgeAgeError naming ``where`` and the field
    path. A ``Manifest`` given is checked again (it may have been changed)."""
    from .schemas import ManifestSchema, validate

    if isinstance(manifest, Manifest):
        manifest = manifest.to_dict()
    if not isinstance(manifest, dict):
        raise EdgeAgeError(f"{where}: has no manifest (got {type(manifest).__name__}); not an edgeage file")
    validate(ManifestSchema, manifest, f"{where}: manifest")
    man = validate(Manifest, manifest, f"{where}: manifest")
    kind = man.model.kind
    known = READOUTS_OF_KIND[kind]
    if man.readout.type not in known:
        raise EdgeAgeError(f"{where}: unknown readout type {man.readout.type!r} for a {kind} (known: "
                           f"{', '.join(known)})")
    return man


# what a model's raw outputs are (manifest model.kind) -> the readouts that turn them into results
READOUTS_OF_KIND = {AGE_ESTIMATOR: ("expectation", "identity", "coral", "mean"),
                    FACE_DETECTOR: ("blazeface-anchors",)}
# the option of the commands that take each kind of artifact
_OPTION_OF_KIND = {AGE_ESTIMATOR: "--artifact", FACE_DETECTOR: "--detector"}


def model_kind(manifest: Manifest) -> str:
    return manifest.model.kind


def require_kind(manifest: Manifest, kind: str, where: str) -> Manifest:
    """The manifest if its model is a ``kind``, else one EdgeAgeError saying what it is and
    which option takes it (an exported face detector given as an age model, or the reverse)."""
    got = model_kind(manifest)
    if got != kind:
        raise EdgeAgeError(f"{where}: is an exported {got} ({manifest.model.name}), not an {kind}; pass "
                           f"it with {_OPTION_OF_KIND[got]}")
    return manifest

