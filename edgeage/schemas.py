"""One schema library (pydantic v2) for every file edgeage reads from elsewhere: manifests (in
checkpoints and artifacts), recipes, target and peer TOMLs, device check results, Android bundle
labels, prepared crop caches' metadata.

Every such file goes through ``parse_text`` / ``read_data`` (bounded size, bounded nesting: a
deeply nested JSON or TOML is one error, not a RecursionError) and ``validate`` (the schema:
types, bounds, finite numbers, ages in 0..120), and any problem is one ``EdgeAgeError`` naming
the file and the field path, e.g. ``run/best.pt: manifest: preprocess.normalize.std.1: Input
should be greater than 1e-06 (got 0)``. Imports no torch (the device side reads these files)."""
from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from .backend import PRECISIONS
from .utils import EdgeAgeError

MAX_DEPTH = 32            # nesting of any file edgeage reads (its own files nest 6 deep at most)
MAX_BYTES = 512 << 20     # a prepared cache's meta.json holds every name: a few MB for UTKFace
AGE_MAX = 120.0
MODEL_NUMBER_MAX = 65536

PRECISION = Literal[PRECISIONS]   # edgeage.backend.PRECISIONS: the one list


def number(lo: float | None = None, hi: float | None = None, *, gt: float | None = None):
    """A finite float within bounds (nan and inf are refused, whatever the bounds)."""
    return Annotated[float, Field(ge=lo, le=hi, gt=gt, allow_inf_nan=False, strict=True)]


def integer(lo: int, hi: int):
    return Annotated[int, Field(ge=lo, le=hi, strict=True)]


Age = number(0.0, AGE_MAX)
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$")]   # a plain name: no path
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Open(BaseModel):
    """A section whose other keys edgeage keeps as they are (and does not read)."""

    model_config = ConfigDict(extra="allow")


class Closed(BaseModel):
    """A section whose every key edgeage reads: an unknown key is an error (a typo)."""

    model_config = ConfigDict(extra="forbid")


# ---- typed objects that round-trip their JSON (check reports, manifests) -----------------------

Num = int | float   # a number kept as it is (1 stays 1, 1.0 stays 1.0; strict: no bool, no string)


class Record(BaseModel):
    """A section of a typed object read from or written as JSON (a check report, a manifest): typed fields, other keys kept (extra allowed), assignments validated,
    and the order of its keys kept (``to_json_dict``)."""

    model_config = ConfigDict(extra="allow", strict=True, validate_assignment=True)
    _keys: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _key_order(cls, data, handler):
        obj = handler(data)
        if isinstance(data, dict) and isinstance(obj, Record):
            obj._keys = list(data)
        return obj

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_") and name not in self._keys:
            self._keys = [*self._keys, name]
        super().__setattr__(name, value)

    def has(self, name: str) -> bool:
        """Whether the section holds ``name`` (set, even to None)."""
        return name in self._keys

    def drop(self, name: str) -> None:
        """Take ``name`` out of the section (its attribute reads as the default again)."""
        if name not in self._keys:
            return
        self._keys = [k for k in self._keys if k != name]
        extra = self.__pydantic_extra__ or {}
        if name in extra:
            del extra[name]
        elif name in type(self).model_fields:
            self.__dict__[name] = type(self).model_fields[name].get_default(call_default_factory=True)

    def to_json_dict(self) -> dict:
        """The section as the JSON object it is written as: its keys in their order, nothing added."""
        extra = self.__pydantic_extra__ or {}
        return {k: _plain(extra[k] if k in extra else getattr(self, k)) for k in self._keys}


def _plain(v: Any) -> Any:
    if isinstance(v, Record):
        return v.to_json_dict()
    if isinstance(v, BaseModel):
        return v.model_dump(mode="json")
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


# ---- manifest ----------------------------------------------------------------------------------

class Crop(Closed):
    margin: number(0.1, 10.0) = 1.0
    shift_y: number(-1.0, 1.0) = 0.0
    crop_size: integer(8, 1024) = 96
    policy: Literal["detect", "none"] = "detect"


class Normalize(Closed):
    input_size: integer(8, 1024) = 64
    mean: Annotated[list[number(-10.0, 10.0)], Field(min_length=3, max_length=3)] = [0.5, 0.5, 0.5]
    std: Annotated[list[number(1e-6, 100.0)], Field(min_length=3, max_length=3)] = [0.25, 0.25, 0.25]
    channel_order: Literal["RGB", "BGR"] = "RGB"
    layout: Literal["NCHW", "NHWC"] = "NCHW"


class Preprocess(Open):
    crop: Crop
    normalize: Normalize


class ModelSection(Open):
    """A model config (the registry checks its keys): every number in it finite and at most
    ``MODEL_NUMBER_MAX`` (a width of 10**9 would exhaust memory before any error)."""

    name: Name
    kind: Literal["age-estimator", "face-detector"] = "age-estimator"   # what its outputs are

    @model_validator(mode="after")
    def _bounded_numbers(self):
        stack = list((self.model_extra or {}).items())
        while stack:
            key, v = stack.pop()
            if isinstance(v, dict):
                stack += [(f"{key}.{k}", x) for k, x in v.items()]
            elif isinstance(v, list):
                stack += [(f"{key}.{i}", x) for i, x in enumerate(v)]
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and not (
                    math.isfinite(v) and abs(v) <= MODEL_NUMBER_MAX):
                raise ValueError(f"{key} = {v!r} is out of range (finite, |x| <= {MODEL_NUMBER_MAX})")
        return self


class Readout(Open):
    type: Annotated[str, Field(min_length=1, max_length=64)]
    age_min: number(0.0, AGE_MAX) | None = None
    age_max: number(0.0, 1000.0) | None = None


class ArtifactFile(Closed):
    name: Annotated[str, Field(min_length=1, max_length=255)]
    sha256: Sha256
    size: integer(0, 1 << 40)


class ArtifactSection(Open):
    target: Name
    precision: PRECISION
    files: Annotated[list[ArtifactFile], Field(min_length=1, max_length=64)]


class ManifestSchema(Open):
    """The checks on a manifest read as data (bounds, types); the typed object edgeage passes
    around is ``edgeage.manifest.Manifest``."""

    format: str | None = None
    model: ModelSection
    readout: Readout
    preprocess: Preprocess
    training: dict[str, Any] | None = None
    versions: dict[str, Any] | None = None


class ArtifactManifestSchema(ManifestSchema):
    artifact: ArtifactSection


# ---- device check results, bundle labels, prepared caches -------------------------------------

class ResultImage(Open):
    file: Annotated[str, Field(min_length=1, max_length=255)]
    output: Annotated[list[number()], Field(min_length=1, max_length=100_000)]
    age: Age | None = None


class CheckResult(Open):
    format: Literal["edgeage-check-result/1"]
    images: Annotated[list[ResultImage], Field(min_length=1, max_length=1_000_000)]
    model: dict[str, Any]


class LabelRow(Open):
    file: Annotated[str, Field(min_length=1, max_length=255)]
    age: Age | None = None


class PreparedMeta(Open):
    format: str | None = None
    source: str
    list_hash: str
    names: list[str]
    ages: list[Age | None]   # None: a face without an age (an unlabelled set, for distillation)
    face_found: list[Literal[0, 1] | bool]
    crop: Crop


# ---- reading and validating ----------------------------------------------------------------------

def _depth_ok(obj: Any, limit: int = MAX_DEPTH) -> bool:
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > limit:
            return False
        if isinstance(o, dict):
            stack += [(v, d + 1) for v in o.values()]
        elif isinstance(o, list):
            stack += [(v, d + 1) for v in o]
    return True


def parse_text(text: str, kind: Literal["json", "toml"], where: str) -> Any:
    """JSON or TOML text -> its value; too large, too deeply nested, or malformed is one
    EdgeAgeError naming ``where``."""
    if len(text) > MAX_BYTES:
        raise EdgeAgeError(f"{where}: too large for an edgeage file ({len(text)} bytes)")
    try:
        obj = json.loads(text) if kind == "json" else tomllib.loads(text)
    except RecursionError:
        obj = None
        deep = True
    except (ValueError, tomllib.TOMLDecodeError) as e:  # JSONDecodeError is a ValueError
        raise EdgeAgeError(f"{where}: not valid {kind.upper()} ({e})") from None
    else:
        deep = not _depth_ok(obj)
    if deep:
        raise EdgeAgeError(f"{where}: nested more than {MAX_DEPTH} levels deep; not an edgeage file "
                           "(damaged or crafted)")
    return obj


def read_data(path: str | Path, kind: Literal["json", "toml"] | None = None, where: str | None = None) -> Any:
    """A JSON / TOML file (by its suffix unless ``kind``) read as data: bounded and parsed."""
    path = Path(path)
    where = where or str(path)
    kind = kind or ("toml" if path.suffix == ".toml" else "json")
    try:
        if path.stat().st_size > MAX_BYTES:
            raise EdgeAgeError(f"{where}: too large for an edgeage file ({path.stat().st_size} bytes)")
        text = path.read_text()
    except FileNotFoundError:
        raise EdgeAgeError(f"{where}: no such file") from None
    except UnicodeDecodeError:
        raise EdgeAgeError(f"{where}: not a text file (not UTF-8)") from None
    except OSError as e:
        raise EdgeAgeError(f"{where}: cannot read it ({e.strerror or e})") from None
    return parse_text(text, kind, where)


def _loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


DAMAGED = "the file is damaged or was not written for this edgeage version"


def validate(schema: type[BaseModel], obj: Any, where: str, loc=None, hint: str = DAMAGED) -> BaseModel:
    """``obj`` checked against ``schema``; the first problems (up to three) as one EdgeAgeError
    naming ``where`` and each field path."""
    if not _depth_ok(obj):
        raise EdgeAgeError(f"{where}: nested more than {MAX_DEPTH} levels deep (damaged or crafted)")
    try:
        return schema.model_validate(obj)
    except ValidationError as e:
        errs = e.errors(include_url=False)
        parts = []
        for err in errs[:3]:
            got = err.get("input")
            shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
            parts.append(f"{(loc or _loc)(err['loc'])}: {err['msg']}" + ("" if err["type"] == "missing" else
                                                                 f" (got {shown[:60]})"))
        more = f" (and {len(errs) - 3} more)" if len(errs) > 3 else ""
        raise EdgeAgeError(f"{where}: " + "; ".join(parts) + more + f"; {hint}") from None


def valid_dict(schema: type[BaseModel], obj: Any, where: str) -> dict:
    """``validate``, then the checked dict as it came (its own keys and values; none added)."""
    validate(schema, obj, where)
    return obj
