"""Latency and peak memory at batch 1, each model measured in a fresh subprocess
(``python -m edgeage.export.conformance.latency ARGS.json``) so that neither the parity run nor another
runtime shares its memory or thread pools.

Timing: ``warmup`` untimed runs, then ``rounds`` x ``runs`` timed calls of the runner's
``run`` (perf_counter) on one input image; the statistics pool every timed run, ``round_p50``
shows the spread between rounds.

Memory: ``peak_rss_mb`` is the child's VmHWM (peak resident set of its own address space:
interpreter + imports + runtime + model + runs; ru_maxrss would not do: on Linux it carries the
parent's RSS over fork+exec); ``delta_mb`` is that peak minus the child's RSS right after start
(Python + numpy, before anything of the runtime or torch is imported), i.e. what this runtime
needs to run this model.

This module imports only the standard library and numpy at the top (so the baseline is clean)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MEMORY_METHOD = ("fresh subprocess: peak = VmHWM; delta = peak - RSS at start (python+numpy, "
                 "before the runtime/torch import)")


def stats(samples_ms) -> dict:
    a = np.asarray(samples_ms, np.float64).ravel()
    q = np.percentile(a, [50, 90, 99])
    return {"p50": q[0], "p90": q[1], "p99": q[2], "min": a.min(), "max": a.max(), "mean": a.mean()}


def time_runs(fn, x: np.ndarray, warmup: int, runs: int, rounds: int) -> dict:
    for _ in range(warmup):
        fn(x)
    samples = []
    for _ in range(rounds):
        r = []
        for _ in range(runs):
            t = time.perf_counter_ns()
            fn(x)
            r.append((time.perf_counter_ns() - t) / 1e6)
        samples.append(r)
    res = {k: float(v) for k, v in stats(samples).items()}
    res.update(round_p50=[float(np.median(r)) for r in samples], warmup=warmup, runs=runs, rounds=rounds,
               batch=int(x.shape[0]), samples_ms=samples)
    return res


def _status_mb(key: str) -> float:
    """VmRSS / VmHWM of this process from /proc/self/status (Linux), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def measure(job: dict, x1: np.ndarray, warmup: int, runs: int, rounds: int, batch: int = 1) -> dict:
    """job: {"kind": "artifact", "artifact": dir, "spec": toml path, "threads": n} or
    {"kind": "torch", "checkpoint": path, "threads": n} or {"kind": "peer", "peer": toml path,
    "threads": n} (``edgeage.export.conformance.peer``). ``batch``: images per timed call (the
    inputs repeated when there are fewer)."""
    from edgeage.utils import EdgeAgeError, python_module_cmd

    with tempfile.TemporaryDirectory(prefix="edgeage-latency-") as tmp:
        xb = np.concatenate([x1] * -(-batch // len(x1)))[:batch]
        np.save(Path(tmp) / "x.npy", np.ascontiguousarray(xb, np.float32))
        args = dict(job, x=str(Path(tmp) / "x.npy"), out=str(Path(tmp) / "res.json"),
                    warmup=warmup, runs=runs, rounds=rounds)
        (Path(tmp) / "args.json").write_text(json.dumps(args))
        p = subprocess.run(python_module_cmd("edgeage.export.conformance.latency", Path(tmp) / "args.json"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if p.returncode or not (Path(tmp) / "res.json").is_file():
            tail = "\n".join(p.stderr.strip().splitlines()[-8:])
            raise EdgeAgeError(f"latency measurement of {job.get('artifact') or job.get('checkpoint') or job.get('peer')} "
                               f"failed (exit {p.returncode}):\n{tail}")
        return json.loads((Path(tmp) / "res.json").read_text())


def _child(args_path: str) -> None:
    os.dup2(2, 1)  # runtimes print to stdout; keep the parent's stdout clean
    base = _status_mb("VmRSS")
    args = json.loads(Path(args_path).read_text())
    x = np.load(args["x"])
    t0 = time.perf_counter()
    if args["kind"] == "torch":
        import torch

        from edgeage.checkpoint import load_model

        torch.set_num_threads(args["threads"])
        model, _ = load_model(args["checkpoint"])
        fn = torch.inference_mode()(lambda a: model(torch.from_numpy(a)))
    elif args["kind"] == "peer":
        from edgeage.export.conformance.peer import PeerRunner, load_peer

        fn = PeerRunner(load_peer(args["peer"]), args["threads"]).run
    else:
        from edgeage.targets.runner import load_runner

        fn = load_runner(args["artifact"], args["spec"], args["threads"]).runner.run
    load_s = time.perf_counter() - t0
    res = time_runs(fn, x, args["warmup"], args["runs"], args["rounds"])
    peak = _status_mb("VmHWM")
    res.update(threads=args["threads"], load_s=load_s,
               memory={"peak_rss_mb": peak, "baseline_rss_mb": base, "delta_mb": peak - base,
                       "method": MEMORY_METHOD})
    Path(args["out"]).write_text(json.dumps(res))


if __name__ == "__main__":
    _child(sys.argv[1])
