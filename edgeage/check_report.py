"""The check report as a type: ``CheckReport`` (``edgeage check``, ``device-check``, the rows of
``edgeage bench``) and ``DetectorCheckReport`` (``edgeage detector check``), pydantic models of the
schema library (``edgeage.schemas``). Imports no torch (the core; the device side's imports).

A report keeps its keys in the order they were given or set, and only those: ``to_json_dict()``
is the very JSON object the reports have always written (report.json, bench.json rows, ``--json``),
key for key and value for value: an unset optional section is absent, not ``null``, and a number
stays the int or float it was. Numbers are not converted (``Num``: an int stays an int).

A report read back from a file (``CheckReport.read``) or given as data (``CheckReport.parse``)
goes through the schema: a damaged one is one EdgeAgeError naming the file and the field.

Sections whose shape is each runtime's own (``runtime``, ``coverage``, ``op_profile``,
``localize``, ``versions``, the device's identity) are kept as the dicts they come as; the
renderers read them key by key, with defaults."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from .schemas import PRECISION, ArtifactFile, Num, Record, read_data, validate

# ---- sections ---------------------------------------------------------------------------------

class ThresholdResult(Record):
    threshold: str
    metric: str
    value: Num
    op: str
    limit: Num
    passed: bool


class Verdict(Record):
    """The thresholds of a precision, each one's verdict, the failures (``conformance.check.judge``).
    ``judged``: at least one threshold was applied (a check with none passed nothing: NOT JUDGED)."""

    thresholds: dict[str, Num]
    threshold_results: list[ThresholdResult]
    skipped_thresholds: list[str]
    passed: bool
    judged: bool = True     # reports written before it: judged
    failures: list[str]


class LatencyStats(Record):
    p50: Num
    p90: Num
    p99: Num
    min: Num | None = None
    max: Num | None = None
    mean: Num | None = None


class Memory(Record):
    delta_mb: Num
    peak_rss_mb: Num
    method: str
    baseline_rss_mb: Num | None = None


class Measurement(LatencyStats):
    """One model's latency measurement (``conformance.latency.measure``): stats, per round, memory."""

    round_p50: list[Num]
    warmup: int
    runs: int
    rounds: int
    samples_ms: list[list[Num]]
    memory: Memory
    batch: int | None = None
    threads: int | None = None
    load_s: Num | None = None


class LatencyRatio(Record):
    p50: Num
    p90: Num
    p99: Num


class QuantizeCalibration(Record):
    kind: str | None = None
    source: str | None = None
    count: int | None = None
    labelled: bool | None = None
    names_sha256: str | None = None


class Quantize(Record):
    """An INT8 artifact's quantization, as its manifest records it."""

    method: str | None = None
    backend: str | None = None
    calibration_images: int | None = None
    kept_float: list[str] | None = None
    val_mae_float: Num | None = None
    val_mae_int8: Num | None = None
    val_mae_drop: Num | None = None
    calibration: QuantizeCalibration | None = None


class QatBar(Record):
    mae_drift_limit: Num
    mae_drift: Num | None = None
    holds: bool | None = None


class PerImage(Record):
    name: list[str]
    age_float: list[Num]
    age_target: list[Num]


class ThroughputRow(Record):
    threads: int
    batch: int
    p50_ms: Num
    p90_ms: Num
    faces_per_s: Num


class VsFp32(Record):
    size_ratio: Num
    p50_ratio: Num | None = None


class VsPeer(Record):
    peer: str
    p50_ratio: Num
    size_ratio: Num


# ---- the reports ------------------------------------------------------------------------------

class CheckReport(Verdict):
    """An exported model against the float model it came from, on the same inputs: ``edgeage
    check`` (``export.conformance.check.check_artifact``), ``device-check`` (a device's outputs,
    ``export.devices.bundle.compare``: ``check_result``, ``app_*``, ``device*``), and a row of
    ``edgeage bench`` (``per_image`` left out; ``variant``, ``vs_fp32``, ``vs_peer``,
    ``float_model_mae`` added there). Also the thresholds' verdict (``Verdict``)."""

    target: str
    precision: PRECISION
    spec_file: str
    artifact: str | None = None           # None: a temporary export
    files: list[ArtifactFile] = []
    check_result: str | None = None       # device-check: the device's result file
    model: str
    model_sha256: str
    data: str
    labelled: bool
    faces_not_found: int | None = None
    # metrics (conformance.check.conformance)
    n: int
    age_abs_diff_p50: Num
    age_abs_diff_p99: Num
    age_abs_diff_max: Num
    argmax_agreement: Num
    logit_abs_diff_max: Num
    float_mae: Num | None = None
    target_mae: Num | None = None
    mae_drift: Num | None = None
    float_cs5: Num | None = None
    target_cs5: Num | None = None
    # device-check: the app's own readout, the device and its latency
    app_mae: Num | None = None
    app_readout_abs_diff_max: Num | None = None
    device: dict[str, Any] | None = None
    device_latency_ms: dict[str, Num] | None = None
    device_preprocess_ms_p50: Num | None = None
    # size, runtime, latency (conformance.check.latency_section)
    size_bytes: int | None = None
    float_size_bytes: int | None = None
    threads: int | None = None
    runtime: dict[str, Any] = {}
    latency_ms: LatencyStats | None = None
    float_latency_ms: LatencyStats | None = None
    latency_ratio: LatencyRatio | None = None
    memory_mb: Memory | None = None
    float_memory_mb: Memory | None = None
    latency: Measurement | None = None
    float_latency: Measurement | None = None
    versions: dict[str, Any] | None = None
    per_image: PerImage | None = None
    # optional sections
    variant: str | None = None                   # int8-ptq, int8-qat, a pruned model's ...
    quantize: Quantize | None = None
    calibration_overlap: int | None = None       # judged images that calibrated it (None: not recorded)
    calibration_overlap_note: str | None = None
    qat_bar: QatBar | None = None
    note: str | None = None
    note_artifact: str | None = None
    localize: dict[str, Any] | None = None       # export.conformance.localize
    throughput: dict[str, list[ThroughputRow]] | None = None   # "target" and "float" rows
    op_profile: dict[str, Any] | None = None     # the runner's op_profile()
    coverage: dict[str, Any] | None = None       # the runner's coverage()
    # bench rows
    float_model_mae: Num | bool | None = None    # False: unlabelled data
    vs_fp32: VsFp32 | None = None
    vs_peer: VsPeer | None = None

    @classmethod
    def parse(cls, obj: Any, where: str) -> "CheckReport":
        """A check report given as data (a JSON object): one EdgeAgeError naming ``where`` and the field."""
        return validate(cls, obj, f"{where}: check report")

    @classmethod
    def read(cls, path: str | Path) -> "CheckReport":
        """A check report's JSON file (report.json) read back through the schema."""
        return cls.parse(read_data(path, "json"), str(path))


class DetectorCheckReport(Record):
    """``edgeage detector check`` (``export.conformance.detector``): a detector artifact against
    the float detector on the same scenes. Shaped unlike ``CheckReport`` (faces matched by IoU,
    recall and precision, no age metrics), so a type of its own."""

    kind: Literal["detector-check"] = "detector-check"
    artifact: str
    target: str
    precision: PRECISION
    model: str
    data: str
    scenes: int
    seed: int
    threads: int
    size_bytes: int | None = None
    reference: str
    match_iou: Num
    frames: int
    faces_float: int
    faces_artifact: int
    matched: int
    recall: Num | None = None
    detection_precision: Num | None = None
    iou_mean: Num | None = None
    iou_min: Num | None = None
    keypoint_err_max: Num | None = None
    score_diff_max: Num | None = None
    ms_per_frame_float: Num
    ms_per_frame_artifact: Num
    thresholds: dict[str, Any]     # metric -> [op, limit]
    failures: list[str]
    passed: bool

    @classmethod
    def read(cls, path: str | Path) -> "DetectorCheckReport":
        return validate(cls, read_data(path, "json"), f"{path}: detector check report")
