"""Conformance of an exported artifact with the float PyTorch model it came from.

Both run on the very same preprocessed tensors (canonical crops of ``--data`` via
``edgeage.data.prepare``, or seeded generated images without labels, then
``AgeEstimator.inputs`` with the manifest's normalisation); ages come from one readout
(``edgeage.readout.apply_readout``). The report holds accuracy and numeric drift, the TOML's
thresholds for the precision with their verdicts, and latency/memory of both models measured
the same way (``latency.measure``). ``Reference`` (float model, inputs, float outputs, float
latency) is built once and shared by every artifact of a bench run."""
from __future__ import annotations

import copy
import csv
import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from edgeage.backend import TargetSpec
from edgeage.check_report import CheckReport, Verdict
from edgeage.checkpoint import TorchModel, load_model, shipped_models
from edgeage.check_report import Quantize
from edgeage.manifest import Manifest, ReadoutSpec, Source
from edgeage.data import (cache_key, cache_root, content_hash, discover, is_prepared, list_hash, load_prepared,
                          prepare)
from edgeage.artifact import read_manifest
from edgeage.metrics import cs, mae
from edgeage.pipeline import AgeEstimator
from edgeage.readout import apply_readout, argmax_bin
from edgeage.utils import EdgeAgeError, NotSupportedHere, sha256_file, stop_if_signalled

from edgeage.targets.runner import load_runner
from edgeage.targets.spec import THRESHOLDS, check_precision, known_targets, load_spec, thresholds, threads as spec_threads

from . import latency as lat
from ..artifact.writer import default_artifact_dir, export_artifact
from .localize import localize as localize_drift

GENERATED_N = 64       # generated images when no --data is given
LOCALIZE_N = 8         # images compared layer by layer with --localize
LATENCY_KEYS = ("p50", "p90", "p99", "min", "max")


@dataclasses.dataclass
class Latency:
    warmup: int = 10
    runs: int = 100     # 0 = do not measure latency
    rounds: int = 3
    threads: tuple = ()  # throughput grid: thread counts x batch sizes (empty: none)
    batches: tuple = ()

    def grid(self, default_threads: int) -> list[tuple[int, int]]:
        if self.runs <= 0 or not (self.threads or self.batches):
            return []
        return [(t, b) for t in (self.threads or (default_threads,)) for b in (self.batches or (1,))]


def throughput_row(res: dict, threads: int, batch: int) -> dict:
    return {"threads": threads, "batch": batch, "p50_ms": res["p50"], "p90_ms": res["p90"],
            "faces_per_s": batch / res["p50"] * 1e3}


@dataclasses.dataclass
class Inputs:
    x: np.ndarray                 # float32 [N,3,S,S] model inputs
    ages: np.ndarray | None       # labels, None for generated inputs
    names: list[str]
    faces_not_found: int | None
    source: str

    @property
    def labelled(self) -> bool:
        return self.ages is not None


def select(n: int, limit: int | None) -> np.ndarray:
    """``limit`` indices spread evenly over the (sorted) data set, or all."""
    if not limit or limit >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def generated_crops(size: int, n: int, seed: int) -> np.ndarray:
    """Seeded canonical-crop-sized images: smooth random colour fields + noise, then the
    training degradation model (blur, JPEG, ...) at p=0.5."""
    from edgeage.degrade import DegradationConfig, Degrader
    from edgeage.preprocess import resize, to_uint8

    rng, deg = np.random.default_rng(seed), Degrader(DegradationConfig(p=0.5))
    out = []
    for _ in range(n):
        g = int(rng.integers(2, 17))
        img = to_uint8(resize(rng.uniform(0, 255, (g, g, 3)), size) + rng.normal(0, 12, (size, size, 3)))
        out.append(deg(img, rng))
    return np.stack(out)


def prepared_subset(data, crop, limit: int | None, progress: bool):
    """Canonical crops of ``limit`` evenly spread images of ``data``: from the prepare cache of
    the whole data set when there is one, else only the chosen images are prepared (and cached
    under the prepare cache as a subset, keyed on the images' content like every cache)."""
    if is_prepared(data):
        prep = load_prepared(data, expect_crop=crop)
    else:
        samples, _ = discover(data)
        idx = select(len(samples), limit)
        whole = cache_key(str(data), list_hash(samples), crop, content_hash(samples))
        if len(idx) < len(samples) and not is_prepared(cache_root() / whole):
            chosen = [samples[i] for i in idx]
            out = cache_root() / cache_key(f"{data}#subset", list_hash(chosen), crop, content_hash(chosen))
            if is_prepared(out):
                return load_prepared(out, expect_crop=crop, fresh=False)
            with tempfile.TemporaryDirectory(prefix="edgeage-check-") as tmp:
                with open(Path(tmp) / "subset.csv", "w", newline="") as fh:
                    w = csv.writer(fh)
                    w.writerow(["path", "age"])
                    w.writerows([str(Path(s.path).resolve()), s.age] for s in chosen)
                return prepare(Path(tmp) / "subset.csv", crop, out=out, progress=progress, force=True)
        prep = prepare(data, crop, progress=progress)
    idx = select(len(prep.names), limit)
    return dataclasses.replace(prep, crops=prep.crops[idx], ages=prep.ages[idx], face_found=prep.face_found[idx],
                               names=[prep.names[i] for i in idx])


def split_subset(manifest: Manifest, data, part: str, limit: int | None):
    """The images of one part (train/val/test) of the checkpoint's recorded split of ``data``."""
    from ..artifact.calibration import load_split

    prep, parts = load_split(manifest, data)
    idx = parts[part][select(len(parts[part]), limit)]
    return dataclasses.replace(prep, crops=prep.crops[idx], ages=prep.ages[idx], face_found=prep.face_found[idx],
                               names=[prep.names[i] for i in idx])


def load_inputs(manifest: Manifest, data=None, limit: int | None = None, seed: int = 0,
                progress: bool = True, split: str | None = None) -> Inputs:
    crop = manifest.crop
    if split and data is None:
        raise EdgeAgeError(f"--split {split} needs --data (the data the checkpoint was trained on)")
    if split:
        prep = split_subset(manifest, data, split, limit)
        crops, ages, names, not_found = prep.crops, prep.ages, prep.names, prep.faces_not_found
        source = f"{data} ({split} split of the checkpoint, {len(names)} images)"
    elif data is None:
        crops = generated_crops(crop.crop_size, limit or GENERATED_N, seed)
        ages, names, not_found = None, [f"generated-{i}" for i in range(len(crops))], None
        source = f"generated: {len(crops)} random images through the degradation model (seed {seed})"
    else:
        prep = prepared_subset(data, crop, limit, progress)
        crops, ages, names, not_found, source = prep.crops, prep.ages, prep.names, prep.faces_not_found, str(data)
    return Inputs(AgeEstimator(None, manifest).inputs(crops), ages, names, not_found, source)


class Reference:
    """The float model, the check inputs and the float outputs (and latency, measured once per
    thread count)."""

    def __init__(self, model_path=None, data=None, limit=None, seed: int = 0, progress: bool = True,
                 split: str | None = None, calib_data=None):
        self.model, self.manifest = load_model(model_path)
        self.source = self.manifest.source
        self.data, self.calib_data, self.args = data, calib_data, (data, limit, seed, progress, split, calib_data)
        self.inputs = load_inputs(self.manifest, data, limit, seed, progress, split)
        self._int8, self._digests = None, None
        self.out = self.forward(self.inputs.x)
        self.ages = apply_readout(self.manifest.readout, self.out)
        self.size_bytes = sum(t.numel() * t.element_size() for t in self.model.state_dict().values())
        self._latency: dict = {}

    def int8_options(self):
        """Default PTQ calibration (``edgeage.export.artifact.calibration``): --calib-data (its training
        split when it is the checkpoint's training data, else those photos), else the training
        split of --data when --data is the training data, else of the recipe's data path."""
        if self._int8 is None:
            from ..artifact.calibration import default_options, is_training_data

            data = self.calib_data
            if data is None and is_training_data(self.manifest, self.data):
                data = self.data
            self._int8 = default_options(self.manifest, data)
        return self._int8

    def crops(self) -> np.ndarray:
        """The judged images' uint8 canonical crops (the same crops ``load_inputs`` made: from
        the prepare cache)."""
        data, limit, seed, _, split, _ = self.args
        crop = self.manifest.crop
        if split:
            crops = split_subset(self.manifest, data, split, limit).crops
        elif data is None:
            crops = generated_crops(crop.crop_size, limit or GENERATED_N, seed)
        else:
            crops = prepared_subset(data, crop, limit, False).crops
        if len(crops) != len(self.inputs.x):
            raise EdgeAgeError(f"{data}: changed while being checked ({len(crops)} images now, "
                               f"{len(self.inputs.x)} before); check again")
        return crops

    def crop_digests(self) -> list[str]:
        """Canonical-crop digests of the judged images, compared with an INT8 model's calibration
        digests."""
        if self._digests is None:
            from ..artifact.calibration import crop_digests

            self._digests = crop_digests(self.crops())
        return self._digests

    def refuse_calibration_overlap(self, quantize: Quantize | None) -> int | None:
        """How many judged images calibrated the INT8 model with this ``quantize`` section (None:
        it records no calibration digests); an EdgeAgeError when any did."""
        from ..artifact.calibration import refuse_overlap

        return refuse_overlap(quantize, self.crop_digests())

    def forward(self, x: np.ndarray) -> np.ndarray:
        return AgeEstimator(TorchModel(self.model), self.manifest).outputs(x)

    def verify(self, manifest: Manifest, artifact_dir) -> None:
        """The artifact must come from this checkpoint, with its preprocessing and readout."""
        src = manifest.artifact.source or Source()
        if src.sha256 != self.source.sha256:
            raise EdgeAgeError(f"{artifact_dir} was exported from {src.path} (sha256 {str(src.sha256)[:12]}), "
                               f"not from {self.source.path}: pass the matching --model")
        for key in ("preprocess", "readout"):
            if getattr(manifest, key).to_json_dict() != getattr(self.manifest, key).to_json_dict():
                raise EdgeAgeError(f"{artifact_dir}: manifest {key} differs from {self.source.path}'s; re-export it")

    def latency(self, threads: int, cfg: Latency, batch: int = 1) -> dict | None:
        if cfg.runs <= 0:
            return None
        key = (threads, cfg.warmup, cfg.runs, cfg.rounds, batch)
        if key not in self._latency:
            job = {"kind": "torch", "checkpoint": self.source.path, "threads": threads}
            self._latency[key] = lat.measure(job, self.inputs.x, cfg.warmup, cfg.runs, cfg.rounds, batch)
        return self._latency[key]


def reference_checkpoint(manifest: Manifest, model_path):
    """The checkpoint an artifact was exported from: ``model_path``, else the recorded source
    path or the shipped default when its sha256 matches."""
    if model_path:
        return model_path
    src = manifest.artifact.source or Source()
    for cand in (src.path, *shipped_models().values()):
        if cand and Path(cand).is_file() and sha256_file(cand) == src.sha256:
            return cand
    raise EdgeAgeError(f"the artifact was exported from {src.path} (sha256 {str(src.sha256)[:12]}), "
                       "which is not available: pass that checkpoint with --model")


def conformance(ref: Reference, out: np.ndarray, readout: ReadoutSpec) -> dict:
    age = apply_readout(readout, out).astype(np.float64)
    d = np.abs(age - ref.ages)
    m = {"n": int(len(out)), "age_abs_diff_p50": float(np.percentile(d, 50)),
         "age_abs_diff_p99": float(np.percentile(d, 99)), "age_abs_diff_max": float(d.max()),
         "argmax_agreement": float(np.mean(argmax_bin(readout, out) == argmax_bin(readout, ref.out))),
         "logit_abs_diff_max": float(np.abs(out.astype(np.float64) - ref.out).max()),
         "float_mae": None, "target_mae": None, "mae_drift": None, "float_cs5": None, "target_cs5": None}
    if ref.inputs.labelled:
        true = ref.inputs.ages
        m.update(float_mae=mae(ref.ages, true), target_mae=mae(age, true), float_cs5=cs(ref.ages, true),
                 target_cs5=cs(age, true))
        m["mae_drift"] = m["target_mae"] - m["float_mae"]
    return m


def judge(metrics: dict, spec: TargetSpec, precision: str, faces: bool = True) -> Verdict:
    """The TOML's thresholds for this precision, each one's verdict, and the failures (``metrics``:
    ``conformance``'s, by metric name; a metric that is None or absent is skipped).
    ``faces=False`` (generated images): the per-image limits of the reduced precisions (fp16,
    bf16, int8) are not judged - they are set for faces: noise images lie outside the calibration
    range (INT8 ages move by 20+ years there while faces move by 1-5) and their flat, wide logits
    round further in bf16 (the shipped model: p99 1.17 years on noise, 0.33 on faces)."""
    limits = thresholds(spec, precision)
    results, skipped = [], []
    for key, limit in limits.items():
        metric, op = THRESHOLDS[key]
        v = metrics.get(metric)
        if v is None or (not faces and precision != "fp32" and metric != "logit_abs_diff_max"
                         and (metric.startswith("age_abs_diff") or metric == "argmax_agreement")):
            skipped.append(key)  # e.g. MAE drift without labelled data
            continue
        ok = abs(v) <= limit if op == "abs<=" else v <= limit if op == "<=" else v >= limit
        results.append({"threshold": key, "metric": metric, "value": v, "op": op.replace("abs", "|x| "),
                        "limit": limit, "passed": bool(ok)})
    failures = [f"{r['threshold']}: " + (f"{r['metric']} = " if r["metric"] != r["threshold"] else "")
                + f"{r['value']:.6g}, must be {r['op']} {r['limit']:g}" for r in results if not r["passed"]]
    if not limits:
        failures.append(f"no [thresholds.{precision}] in {spec.file}")
    # "judged": at least one threshold was applied; a check with none applied (INT8 without
    # labelled faces, say) passed nothing and is reported as "not judged", never as PASSED
    return Verdict(thresholds=limits, threshold_results=results, skipped_thresholds=skipped,
                   passed=not failures, judged=bool(results), failures=failures)


def latency_section(t: dict | None, f: dict | None) -> dict:
    """Summary (p50..max) of the target's and the float model's latency, ratios, memory: the
    latency fields of a ``CheckReport`` (``t``, ``f``: ``latency.measure`` results, or None)."""
    if not t or not f:
        return {"latency_ms": None, "float_latency_ms": None, "latency_ratio": None, "memory_mb": None,
                "float_memory_mb": None, "latency": None, "float_latency": None}
    return {"latency_ms": {k: t[k] for k in LATENCY_KEYS}, "float_latency_ms": {k: f[k] for k in LATENCY_KEYS},
            "latency_ratio": {k: t[k] / f[k] for k in ("p50", "p90", "p99")},
            "memory_mb": t["memory"], "float_memory_mb": f["memory"], "latency": t, "float_latency": f}


def check_artifact(ref: Reference, artifact_dir, spec: TargetSpec | str | None = None, *, localize: bool = False,
                   latency: Latency = Latency(), keep_path: bool = True, op_profile: bool = False) -> CheckReport:
    runner = load_runner(artifact_dir, spec)
    spec, manifest = runner.spec, runner.manifest
    art = manifest.artifact
    ref.verify(manifest, artifact_dir)
    out = runner.run(ref.inputs.x)
    metrics = conformance(ref, out, manifest.readout)
    threads = runner.info.get("threads", spec_threads(spec))
    job = {"kind": "artifact", "artifact": str(artifact_dir), "spec": spec.file, "threads": threads}
    t_lat = lat.measure(job, ref.inputs.x, latency.warmup, latency.runs, latency.rounds) if latency.runs > 0 else None
    report = CheckReport(**{
        "target": spec.name, "precision": art.precision, "spec_file": spec.file,
        "artifact": str(artifact_dir) if keep_path else None, "files": [f.to_json_dict() for f in art.files],
        "model": ref.source.path, "model_sha256": ref.source.sha256,
        "data": ref.inputs.source, "labelled": ref.inputs.labelled, "faces_not_found": ref.inputs.faces_not_found,
        **metrics,
        "size_bytes": art.size_bytes, "float_size_bytes": ref.size_bytes, "threads": threads,
        "runtime": runner.info, **latency_section(t_lat, ref.latency(threads, latency)),
        **judge(metrics, spec, art.precision, faces=ref.inputs.labelled).to_json_dict(),
        "versions": getattr(art, "versions", None) or {},
        "per_image": {"name": ref.inputs.names, "age_float": ref.ages.tolist(),
                      "age_target": apply_readout(manifest.readout, out).tolist()},
    })
    if art.precision == "int8":
        q = manifest.quantize or Quantize()
        overlap = ref.refuse_calibration_overlap(manifest.quantize)
        report.variant = f"int8-{q.method if q.has('method') else 'ptq'}"
        quantize = {k: getattr(q, k) for k in ("method", "backend", "calibration_images", "kept_float",
                                               "val_mae_float", "val_mae_int8", "val_mae_drop")}
        cal = q.calibration
        quantize["calibration"] = {k: getattr(cal, k) for k in ("kind", "source", "count", "labelled",
                                                                "names_sha256")} if cal else None
        report.quantize = quantize
        report.calibration_overlap = overlap  # judged images that calibrated it (None: not recorded)
        if overlap is None:
            report.calibration_overlap_note = ("the artifact records no calibration crop digests (quantized "
                                               "before edgeage recorded them): overlap not checked")
        bar = spec.int8.get("qat_mae_drift")
        if bar is not None:
            d = metrics["mae_drift"]
            report.qat_bar = {"mae_drift_limit": bar, "mae_drift": d,
                              "holds": None if d is None else bool(abs(d) <= bar)}
    if not ref.inputs.labelled:
        report.note = "no labelled data (--data): numeric drift and latency only; MAE thresholds skipped" + (
            f"; {art.precision}'s per-image limits are set for faces and skipped on generated images too: pass "
            f"--data with face images to check a {art.precision} model" if art.precision != "fp32" else "")
    if localize:
        report.localize = localize_drift(ref.model, runner, ref.inputs.x[:LOCALIZE_N])
        if not report.localize["supported"] and spec.extra.get("localize") == "prefixes":
            from .localize import localize_by_prefixes

            calib = ref.int8_options()[0] if art.precision == "int8" else None
            report.localize = localize_by_prefixes(ref.model, spec, art.precision, ref.inputs.x[:LOCALIZE_N],
                                                      calib, threads)
    grid = latency.grid(threads)
    if grid:  # throughput: faces/s per thread count and batch size, the float model's beside
        rows = {"target": [], "float": []}
        for t, b in grid:
            res = lat.measure(dict(job, threads=t), ref.inputs.x, latency.warmup, latency.runs, latency.rounds, b)
            rows["target"].append(throughput_row(res, t, b))
            rows["float"].append(throughput_row(ref.latency(t, latency, b), t, b))
        report.throughput = rows
    if op_profile:
        report.op_profile = runner.op_profile(ref.inputs.x[:1], max(10, latency.runs))
    report.coverage = runner.coverage()
    return report


def export_and_check(ref: Reference, spec: TargetSpec, precision: str, **kw) -> CheckReport:
    """Export the reference model to a temp folder and check it there."""
    check_precision(spec, precision)
    manifest, calib = ref.manifest, None
    if precision == "int8":  # PTQ with the default calibration
        calib, info = ref.int8_options()
        manifest = manifest.copy_with(quantize=info)
        ref.refuse_calibration_overlap(manifest.quantize)  # before exporting: the judged images must not calibrate it
    with tempfile.TemporaryDirectory(prefix="edgeage-export-") as tmp:
        art = export_artifact(copy.deepcopy(ref.model), manifest, spec, precision, Path(tmp) / "artifact",
                              calib=calib)
        return check_artifact(ref, art, spec, keep_path=False, **kw)


def run_check(target: str | None, model_path=None, artifact=None, precision: str = "fp32", data=None,
              limit: int | None = None, seed: int = 0, progress: bool = True, split: str | None = None,
              calib_data=None, **kw) -> CheckReport:
    if artifact is None and target is None:
        raise EdgeAgeError("give --target (to export and check) or --artifact (an exported folder)")
    spec = load_spec(target) if target else None
    if artifact is not None:
        man = read_manifest(artifact)
        ref = Reference(reference_checkpoint(man, model_path), data, limit, seed, progress, split)
        if man.artifact.precision == "int8":
            ref.refuse_calibration_overlap(man.quantize)  # before running it
        return check_artifact(ref, artifact, spec, **kw)
    check_precision(spec, precision)
    ref = Reference(model_path, data, limit, seed, progress, split, calib_data)
    written = exported_by_export(ref, spec, precision)
    if written is not None:  # the newcomer path: `edgeage export` then `edgeage check` meet
        man = read_manifest(written)
        if precision == "int8":
            ref.refuse_calibration_overlap(man.quantize)
        report = check_artifact(ref, written, spec, **kw)
        report.note_artifact = f"checked the artifact `edgeage export` wrote at {written} (same model, target, precision)"
        return report
    return export_and_check(ref, spec, precision, **kw)


def exported_by_export(ref: Reference, spec: TargetSpec, precision: str) -> Path | None:
    """The artifact ``edgeage export`` writes by default for this model, target and precision, when
    it is there, intact and made from this very checkpoint (sha256); else None (export here)."""
    path = default_artifact_dir(ref.manifest.model.name, spec.name, precision)
    if not (path / "manifest.json").is_file():
        return None
    try:
        art = read_manifest(path).artifact
    except EdgeAgeError:
        return None
    same = ((art.source or Source()).sha256 == ref.source.sha256 and art.target == spec.name
            and art.precision == precision)
    return path if same else None


def bench_row(report: CheckReport) -> dict:
    """A bench row: the JSON object of a check report, ``per_image`` left out. A bench (``run_bench``)
    is a table: its rows are these objects (and ``error_row``'s), to which the bench adds its
    comparisons (``vs_fp32``, ``vs_peer``); they are written to bench.json as they are, and a row
    that is not an error row parses as a ``CheckReport`` again."""
    return {k: v for k, v in report.to_json_dict().items() if k != "per_image"}


def artifact_rows(ref: Reference, artifacts: list[str], **kw) -> list[dict]:
    """Bench rows (``bench_row``) of exported artifacts / quantize results (e.g. int8-ptq,
    int8-qat, a pruned model's int8): each against the float model it came from (a second
    reference for another checkpoint, on the same inputs)."""
    refs, rows = {ref.source.sha256: ref}, []
    for a in artifacts:
        try:
            man = read_manifest(a)
            sha = (man.artifact.source or Source()).sha256
            if sha not in refs:
                refs[sha] = Reference(reference_checkpoint(man, None), *ref.args)
            rep = check_artifact(refs[sha], a, **kw)
            if sha != ref.source.sha256:
                src = Path(man.artifact.source.path)
                pruned = man.model.pruned
                rep.variant = f"{rep.variant or rep.precision} ({man.model.name}" + \
                    (f" pruned, channel ratio {pruned['ratio']:.2f}" if pruned else "") + \
                    f", {src.parent.name}/{src.name})"
                rep.float_model_mae = refs[sha].inputs.labelled and mae(refs[sha].ages, refs[sha].inputs.ages)
        except EdgeAgeError as e:
            rows.append(error_row(str(a), "?", e))
            continue
        rows.append(bench_row(rep))
    return rows


def error_row(target: str, precision: str, e: Exception) -> dict:
    """A bench row for a failure (no check report: ``target``, ``precision``, ``passed`` False,
    ``error``, ``failures``). A failure that a signal caused (a Ctrl-C inside a runtime
    surfacing as its error) is not a row: the bench stops as that signal."""
    stop_if_signalled()
    return {"target": target, "precision": precision, "passed": False, "error": str(e), "failures": [str(e)]}


def run_bench(model_path=None, data=None, limit: int | None = None, targets: list[str] | None = None,
              precisions: list[str] | None = None, seed: int = 0, progress: bool = True,
              split: str | None = None, artifacts: list[str] | None = None, calib_data=None,
              peers: list[str] | None = None, **kw) -> dict:
    """The bench: a table (a dict, written to bench.json), not a check report: its ``rows`` are
    ``bench_row``s of the check reports and ``error_row``s."""
    from .peer import load_peer

    peer_specs = [load_peer(p) for p in peers or []]  # bad --peer files fail before any work
    ref = Reference(model_path, data, limit, seed, progress, split, calib_data)
    rows, skipped = [], []
    for t in (targets if targets is not None else known_targets()):
        spec = load_spec(t)
        for p in precisions or spec.precisions:
            if p not in spec.precisions:
                skipped.append(f"{spec.name} {p} (supports {', '.join(spec.precisions)})")
                continue
            if p == "int8" and not precisions:  # by default only where calibration data is at hand
                try:
                    _, info = ref.int8_options()
                except EdgeAgeError as e:
                    skipped.append(f"{spec.name} int8 (no calibration data: {e})")
                    continue
                try:  # and not on the images that would calibrate it
                    ref.refuse_calibration_overlap(info)
                except EdgeAgeError as e:
                    skipped.append(f"{spec.name} int8 ({e})")
                    continue
            try:
                rep = export_and_check(ref, spec, p, **kw)
            except EdgeAgeError as e:
                if isinstance(e, NotSupportedHere) and not precisions:
                    # every precision the target names, by default: this machine can't run it
                    stop_if_signalled()
                    skipped.append(f"{spec.name} {p} (not supported on this machine: {e})")
                    continue
                rows.append(error_row(spec.name, p, e))
                continue
            rows.append(bench_row(rep))
    rows += artifact_rows(ref, artifacts or [], **kw)
    main = ref.source.sha256
    fp32 = {r["target"]: r for r in rows
            if r.get("precision") == "fp32" and "error" not in r and r.get("model_sha256") == main}
    for r in rows:  # every other row (int8, a pruned model's fp32 / int8) vs the same target's
        f = fp32.get(r.get("target"))  # fp32 row of --model in this run
        if f is None or r is f or "error" in r:
            continue
        r["vs_fp32"] = {"size_ratio": r["size_bytes"] / f["size_bytes"],
                        "p50_ratio": (r["latency_ms"]["p50"] / f["latency_ms"]["p50"]
                                      if r.get("latency_ms") and f.get("latency_ms") else None)}
    floats = {r["threads"]: r["float_latency_ms"] for r in rows if r.get("float_latency_ms")}
    peer_rows = bench_peers(ref, peer_specs, kw.get("latency"), rows)
    return {"peers": peer_rows, "model": ref.source.path, "model_sha256": ref.source.sha256, "data": ref.inputs.source,
            "labelled": ref.inputs.labelled, "n": int(len(ref.inputs.x)),
            "faces_not_found": ref.inputs.faces_not_found,
            "float": {"mae": mae(ref.ages, ref.inputs.ages) if ref.inputs.labelled else None,
                      "size_bytes": ref.size_bytes, "latency_ms_by_threads": floats},
            "rows": rows, "skipped": skipped, "passed": all(r["passed"] for r in rows)}


def bench_peers(ref: Reference, specs: list, cfg: Latency | None, rows: list[dict]) -> list[dict]:
    """Peer reference rows (``edgeage.export.conformance.peer``), timed with the same protocol as the rows at
    each thread count they use; every row on the peer's runtime gets ``vs_peer`` (p50 ratio)."""
    from .peer import peer_row

    if not specs:
        return []
    cfg = cfg or Latency()
    crops = ref.crops()
    threads = sorted({r.get("threads") or 1 for r in rows if "error" not in r}) or [1]

    def measure(job, x1):
        return lat.measure(job, x1, cfg.warmup, cfg.runs, cfg.rounds) if cfg.runs > 0 else None

    out = [peer_row(spec, crops, ref.inputs.ages, measure, th) for spec in specs for th in threads]
    for r in rows:
        lt = r.get("latency_ms") or {}
        for p in out:
            if p["target"] == r.get("target") and p["threads"] == (r.get("threads") or 1) \
                    and lt.get("p50") and p.get("latency_ms"):
                r["vs_peer"] = {"peer": p["name"], "p50_ratio": lt["p50"] / p["latency_ms"]["p50"],
                                "size_ratio": r["size_bytes"] / p["size_bytes"]}
    return out
