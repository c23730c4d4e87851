"""The device side's check mode (``python -m edgeage.targets.device_check BUNDLE RESULT.json``):
what the Android app's check mode does, in Python, with the artifact's runtime alone (no torch).

It reads a bundle written by ``edgeage android bundle`` / ``device-check`` (the artifact's files
+ manifest.json + check/ canonical crops as PNG + labels.csv), verifies every file's sha256, runs
each crop through the pipeline (model input, the artifact's runner, the readout) one at a time,
times each inference, and writes the ``edgeage-check-result/1`` JSON the app writes (schema in
android-demo/core/.../CheckRun.java); the host compares it with the float model
(``edgeage.export.devices.bundle.compare``). The result is written atomically: an aborted check leaves
none."""
from __future__ import annotations

import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from edgeage.backend import TargetSpec
from edgeage.utils import EdgeAgeError, package_versions, plain_name, write_json

RESULT_FORMAT = "edgeage-check-result/1"


def device_info(emulated: dict | None = None) -> dict:
    """What the device is: OS, machine, CPU model, cores, ISA features, Python; ``emulated``
    (the emulator's description, e.g. qemu and its -cpu) marks an emulated device."""
    info = {"os_name": platform.system(), "os_release": platform.release(), "os_arch": platform.machine(),
            "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for key, name in (("model name", "cpu_model"), ("Hardware", "hardware"), ("CPU part", "cpu_part")):
        for line in text.splitlines():
            if line.split(":")[0].strip() == key:
                info[name] = line.split(":", 1)[1].strip()
                break
    for line in text.splitlines():
        if line.split(":")[0].strip() in ("flags", "Features"):
            info["isa_features"] = sorted(line.split(":", 1)[1].split())
            break
    if emulated:
        info.update(emulated=True, **{k: v for k, v in emulated.items() if k != "emulated"})
    return info


def runtime_versions(spec: TargetSpec) -> dict:
    return package_versions(["edgeage", "numpy", *list(spec.packages)])


def run_check(bundle, result_path, warmup: int = 3, threads: int = 1, count: int | None = None,
              emulated: dict | None = None) -> dict:
    """``emulated``: the device is an emulator (qemu): its identity says so, and the run times go
    to ``emulated_ms`` / ``summary.emulated_time_ms``, never to a latency field."""
    from edgeage.data import load_image
    from edgeage.metrics import cs, mae
    from edgeage.pipeline import AgeEstimator
    from edgeage.readout import argmax_bin

    from .runner import load_runner

    bundle = Path(bundle)
    labels = bundle / "check" / "labels.csv"
    if not labels.is_file():
        raise EdgeAgeError(f"{bundle}: no check/labels.csv: make the bundle with check images (--data)")
    rows = bundle_labels(labels)[:count or None]
    runner = load_runner(bundle, threads=threads)  # the installed target of the artifact's name; sha256s checked
    man = runner.manifest
    est = AgeEstimator(runner.run, man)
    model = man.artifact.files[0]
    x0 = est.inputs(load_image(bundle / "check" / plain_name(rows[0][0], str(labels))))
    for _ in range(warmup):
        runner.run(x0)
    images, lat = [], []
    for f, age in rows:  # checked: plain names, finite ages in 0..120
        crop = load_image(bundle / "check" / plain_name(f, str(labels)))  # a DataError names a damaged file
        t0 = time.perf_counter()
        x = est.inputs(crop)
        t1 = time.perf_counter()
        out = runner.run(x)
        t2 = time.perf_counter()
        lat.append((t2 - t1) * 1e3)
        images.append({"file": f, "true_age": float(age), "pred_age": float(est.ages_of(out)[0]),
                       "argmax": int(argmax_bin(man.readout, out)[0]), "latency_ms": lat[-1],
                       "preprocess_ms": (t1 - t0) * 1e3, "output": out[0].tolist()})
    pred = np.asarray([im["pred_age"] for im in images])
    true = np.asarray([im["true_age"] for im in images])
    q = np.percentile(lat, [50, 90, 99])
    timing = {"p50": q[0], "p90": q[1], "p99": q[2], "mean": float(np.mean(lat)), "min": float(np.min(lat)),
              "max": float(np.max(lat))}
    if emulated:  # times under an emulator are no device's latency
        for im in images:
            im["emulated_ms"] = im.pop("latency_ms")
    res = {"format": RESULT_FORMAT,
           "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "device": device_info(emulated),
           "runtime": {"backend": man.artifact.target, "runner": f"edgeage {runner.spec.name} runner "
                       f"(Python, threads {threads})", "warmup": warmup, "versions": runtime_versions(runner.spec),
                       **{k: v for k, v in runner.info.items() if isinstance(v, (str, int, float, bool))}},
           "model": {"file": model.name, "sha256": model.sha256, "size": model.size, "sha256_verified": True,
                     "target": man.artifact.target, "precision": man.artifact.precision,
                     "source": man.artifact.source.to_json_dict() if man.artifact.has("source") and man.artifact.source
                     else None},
           "preprocess": man.preprocess.to_json_dict(), "readout": man.readout.to_dict(), "images": images,
           "summary": {"n": len(images), "mae": mae(pred, true), "cs5": cs(pred, true),
                       ("emulated_time_ms" if emulated else "latency_ms"): timing}}
    write_json(result_path, res)
    return res


def bundle_labels(labels: Path) -> list[tuple[str, float]]:
    """A bundle's check/labels.csv (``file,age``), every row checked by the schema (a plain
    file name, an age in 0..120): one EdgeAgeError naming the file, row and field."""
    import csv
    import io

    from edgeage.schemas import LabelRow, MAX_BYTES, validate

    if labels.stat().st_size > MAX_BYTES:
        raise EdgeAgeError(f"{labels}: too large for a labels file")
    try:
        reader = csv.DictReader(io.StringIO(labels.read_text()))
        raw = list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise EdgeAgeError(f"{labels}: not a readable CSV ({e})") from None
    if reader.fieldnames is None or not {"file", "age"} <= set(reader.fieldnames):
        raise EdgeAgeError(f"{labels}: needs the columns file,age (has {reader.fieldnames})")
    rows = []
    for i, r in enumerate(raw, start=2):
        where = f"{labels}: line {i}"
        try:
            age = float(r["age"])
        except (TypeError, ValueError):
            raise EdgeAgeError(f"{where}: age {r['age']!r} is not a number") from None
        row = validate(LabelRow, {"file": r["file"], "age": age}, where)
        rows.append((plain_name(row.file, where), float(row.age)))
    if not rows:
        raise EdgeAgeError(f"{labels}: lists no images")
    return rows


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m edgeage.targets.device_check")
    ap.add_argument("bundle")
    ap.add_argument("result")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--count", type=int, default=None)
    ap.add_argument("--emulated", default=None, help="JSON object describing the emulator (qemu): the device is emulated")
    a = ap.parse_args(argv)
    try:
        import json

        emulated = json.loads(a.emulated) if a.emulated else None
        res = run_check(a.bundle, a.result, a.warmup, a.threads, a.count, emulated)
    except EdgeAgeError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    t = res["summary"].get("latency_ms") or res["summary"]["emulated_time_ms"]
    print(f"device check: n={res['summary']['n']} MAE {res['summary']['mae']:.3f} "
          f"{'p50' if emulated is None else 'emulated p50'} {t['p50']:.3f} ms -> {a.result}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
