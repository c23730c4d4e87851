"""Peer models as reference rows in ``edgeage bench --peer PEER.toml``: another project's age
model, timed in the same run as edgeage's rows, with the same latency protocol (fresh process,
batch 1, the runtime's own thread setting), and scored on the same faces with its own
preprocessing.

A peer is described by a TOML (data, never code), e.g. for OpenVINO's Open Model Zoo retail
model::

    name = "omz age-gender-recognition-retail-0013"
    model = "../shared/peers/omz-age-gender-recognition-retail-0013/FP16-INT8.xml"  # relative to the TOML
    runtime = "openvino"          # openvino | onnxruntime
    precision = "int8"
    params = 2.1e6                # as its documentation states (shown, not measured)
    input_size = 62
    channel_order = "bgr"         # rgb | bgr
    pixel_scale = 255.0           # input = pixels / 255 * pixel_scale, then (x - mean) / std
    mean = [0.0, 0.0, 0.0]
    std = [1.0, 1.0, 1.0]
    output = "age_conv3"          # output name (or index)
    age_scale = 100.0             # age = output * age_scale

Its input is edgeage's canonical crop of each face resized to ``input_size`` (the peer's own
demo may crop differently: its MAE here is on edgeage's crop). The peer's files are read where
they are; nothing of them is copied into reports or artifacts."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from edgeage.schemas import PRECISION, Closed, integer, number, read_data, validate
from edgeage.targets.spec import target_of_runtime
from edgeage.utils import EdgeAgeError, register_input



@dataclass
class PeerSpec:
    name: str
    model: Path
    runtime: str
    precision: str
    input_size: int
    channel_order: str = "rgb"
    pixel_scale: float = 1.0
    mean: list = field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: list = field(default_factory=lambda: [1.0, 1.0, 1.0])
    output: str | int = 0
    age_scale: float = 1.0
    params: float | None = None
    toml: Path | None = None

    @property
    def files(self) -> list[Path]:
        fs = [self.model]
        if self.model.suffix == ".xml":
            fs.append(self.model.with_suffix(".bin"))
        return fs

    @property
    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files if f.is_file())


class _PeerToml(Closed):
    """A peer TOML: every key, typed and bounded (``edgeage.schemas``)."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    model: Annotated[str, Field(min_length=1, max_length=4096)]
    runtime: Literal["openvino", "onnxruntime"]
    precision: PRECISION
    input_size: integer(8, 1024)
    channel_order: Literal["rgb", "bgr"] = "rgb"
    pixel_scale: number(hi=1e6, gt=0.0) = 1.0
    mean: Annotated[list[number(-1e6, 1e6)], Field(min_length=3, max_length=3)] = [0.0, 0.0, 0.0]
    std: Annotated[list[number(hi=1e6, gt=0.0)], Field(min_length=3, max_length=3)] = [1.0, 1.0, 1.0]
    output: Annotated[str, Field(max_length=256)] | integer(0, 1024) = 0
    age_scale: number(hi=1e6, gt=0.0) = 1.0
    params: number(0.0, 1e12) | None = None


def load_peer(path) -> PeerSpec:
    path = Path(path)
    register_input(path)
    where = f"--peer {path}"
    d = read_data(path, "toml", where)
    p = validate(_PeerToml, d, where)
    spec = PeerSpec(**{**p.model_dump(), "model": (path.parent / p.model).resolve()}, toml=path.resolve())
    missing = [str(f) for f in spec.files if not f.is_file()]
    if missing:
        raise EdgeAgeError(f"{where}: model file(s) not found: {', '.join(missing)}")
    return spec


def peer_inputs(spec: PeerSpec, crops: np.ndarray) -> np.ndarray:
    """uint8 RGB canonical crops [N,S,S,3] -> the peer's float32 NCHW inputs."""
    import cv2

    s = spec.input_size
    out = np.empty((len(crops), 3, s, s), np.float32)
    mean = np.asarray(spec.mean, np.float32)[:, None, None]
    std = np.asarray(spec.std, np.float32)[:, None, None]
    for i, c in enumerate(crops):
        r = cv2.resize(np.ascontiguousarray(c), (s, s), interpolation=cv2.INTER_AREA if c.shape[0] > s
                       else cv2.INTER_LINEAR)
        if spec.channel_order == "bgr":
            r = r[..., ::-1]
        x = r.transpose(2, 0, 1).astype(np.float32) * (spec.pixel_scale / 255.0)
        out[i] = (x - mean) / std
    return out


class PeerRunner:
    """The peer model on its runtime: float32 NCHW inputs (batch 1 per call) -> ages."""

    def __init__(self, spec: PeerSpec, threads: int = 1):
        self.spec = spec
        if spec.runtime == "openvino":
            import openvino as ov

            core = ov.Core()
            m = core.read_model(str(spec.model))
            m.reshape([1, 3, spec.input_size, spec.input_size])  # static shapes, as edgeage's OpenVINO rows
            self.compiled = core.compile_model(m, "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                                          "INFERENCE_NUM_THREADS": int(threads),
                                                          "NUM_STREAMS": 1})
            self.req = self.compiled.create_infer_request()
            outs = [o.get_any_name() for o in self.compiled.outputs]
            self.out_index = outs.index(spec.output) if isinstance(spec.output, str) else int(spec.output)
        else:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
            self.sess = ort.InferenceSession(str(spec.model), so, providers=["CPUExecutionProvider"])
            outs = [o.name for o in self.sess.get_outputs()]
            self.out_index = outs.index(spec.output) if isinstance(spec.output, str) else int(spec.output)
            self.in_name = self.sess.get_inputs()[0].name

    def raw(self, x: np.ndarray) -> np.ndarray:
        if self.spec.runtime == "openvino":
            res = self.req.infer({0: x})
            return np.asarray(res[self.compiled.outputs[self.out_index]])
        return self.sess.run(None, {self.in_name: x})[self.out_index]

    def run(self, x: np.ndarray) -> np.ndarray:
        """One timed call (batch as given); raw output."""
        return self.raw(np.ascontiguousarray(x, np.float32))

    def ages(self, x: np.ndarray) -> np.ndarray:
        return np.asarray([float(np.asarray(self.raw(x[i:i + 1])).ravel()[0]) * self.spec.age_scale
                           for i in range(len(x))], np.float64)


def peer_row(spec: PeerSpec, crops: np.ndarray, ages: np.ndarray | None, latency_fn, threads: int) -> dict:
    """The reference row: size, MAE (and CS5) on the same faces, latency in a fresh process."""
    from edgeage.metrics import summary

    x = peer_inputs(spec, crops)
    runner = PeerRunner(spec, threads)
    pred = runner.ages(x)
    acc = summary(pred, ages) if ages is not None else {}
    return {"name": spec.name, "toml": str(spec.toml), "model_file": spec.model.name, "runtime": spec.runtime,
            "target": target_of_runtime(spec.runtime),  # the edgeage target it is compared with
            "precision": spec.precision, "params": spec.params, "size_bytes": spec.size_bytes,
            "input_size": spec.input_size, "mae": acc.get("mae"), "cs5": acc.get("cs5"), "threads": threads,
            "latency_ms": latency_fn({"kind": "peer", "peer": str(spec.toml), "threads": threads}, x[:1])}
