"""OpenVINO INT8 latency of candidate architectures, side by side with the peer model, before
anything is trained: what an architecture costs on the target that the edge-model issue is judged
on (batch 1, 1 thread, static shapes, PERFORMANCE_HINT LATENCY).

    python scripts/arch_latency.py --cand 'xs=mgpnet-xs' --cand 'e64=mgpnet-e:input_size=64' \
        [--peer ../shared/peers/omz-age-gender-recognition-retail-0013/FP16-INT8.xml] [--out bench/arch-latency]

Each candidate: registry name plus ``key=value`` overrides (values parsed as Python literals).
Random weights (seeded); BatchNorm statistics set by forward passes over 256 real training crops;
INT8 by NNCF PTQ on 64 training crops with the OpenVINO target's own float scope
(``targets/openvino/exporter.py``). All compiled models are timed in one process, alternating
round by round (``--rounds`` x ``--runs`` each), so the ratios are comparable within one run.
Only latency, size, parameters and MACs mean anything here; the weights are untrained. Also
prints OpenVINO's per-op-type profile of each INT8 model (where the time goes, and how much of
it is outside int8 convolutions / matmuls: the "float islands")."""
from __future__ import annotations

import argparse
import ast
import json
import time
from pathlib import Path

import numpy as np
import torch

from edgeage.data import load_prepared, split
from edgeage.models import create
from edgeage.preprocess import Normalize, model_input
from edgeage.profile import count_macs, count_params

PEER = Path(__file__).resolve().parents[2] / "shared/peers/omz-age-gender-recognition-retail-0013/FP16-INT8.xml"


def parse_cand(s: str):
    """label=name[:key=value...]; a label ending in '+deploy' times the deploy form
    (edgeage.models.deploy) of the same weights."""
    label, _, rest = s.partition("=")
    name, *kvs = rest.split(":")
    cfg = {}
    for kv in kvs:
        k, _, v = kv.partition("=")
        try:
            cfg[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            cfg[k] = v
    return label, name, cfg


def build(name: str, cfg: dict, crops: np.ndarray):
    torch.manual_seed(0)
    m = create(name, **cfg)
    norm = Normalize(input_size=int(m.config["input_size"]))
    m.train()
    with torch.no_grad():  # BN running statistics from real faces (momentum None = plain average)
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.reset_running_stats()
                mod.momentum = None
        for i in range(0, 256, 32):
            m(model_input(crops[i:i + 32], norm))
    return m.eval(), norm


def to_int8(m, norm, crops, quantize_all: bool):
    import nncf
    import openvino as ov

    from edgeage.targets.openvino.exporter import ignored_scope

    s = int(m.config["input_size"])
    ex = model_input(crops[:1], norm)
    om = ov.convert_model(m, example_input=ex, input=[ov.PartialShape([1, 3, s, s])])
    items = [model_input(crops[i:i + 1], norm).numpy() for i in range(256, 320)]
    kw = {} if quantize_all else {"ignored_scope": ignored_scope([])}
    return om, nncf.quantize(om, nncf.Dataset(items), subset_size=len(items), **kw)


def compile_(core, om):
    return core.compile_model(om, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1,
                                          "NUM_STREAMS": 1, "PERF_COUNT": "YES"})


def profile(req) -> dict:
    by, total, fl = {}, 0.0, 0.0
    for p in req.profiling_info:
        if p.status.name != "EXECUTED":
            continue
        us = p.real_time.total_seconds() * 1e6
        total += us
        by[p.node_type] = by.get(p.node_type, 0.0) + us
        int8 = "I8" in p.exec_type.upper() or "U8" in p.exec_type.upper()
        if not (int8 and p.node_type in ("Convolution", "MatMul", "FullyConnected", "GroupConvolution")):
            fl += us
    return {"total_us": total, "float_islands_pct": 100 * fl / max(total, 1e-9),
            "by_type_us": dict(sorted(by.items(), key=lambda kv: -kv[1])[:8])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cand", action="append", required=True, help="label=registry-name[:key=value...]")
    ap.add_argument("--data", default=".cache/utk-prepared")
    ap.add_argument("--peer", default=str(PEER))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--quantize-all", action="store_true", help="NNCF's default scope (gates and pools int8 too)")
    ap.add_argument("--fp32", action="store_true", help="also time the fp32 IR of each candidate")
    ap.add_argument("--spatial", default="nhwc", choices=["nhwc", "nchw"],
                    help="deploy form of spatial attention for '+deploy' candidates (a target's [deploy] spatial)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    import openvino as ov

    torch.set_num_threads(1)
    prep = load_prepared(a.data)
    tr = split(prep.names, 0, 0.1, 0.15)["train"][:400]
    crops = prep.crops[tr]
    core = ov.Core()
    rows, nets = [], {}
    if a.peer and Path(a.peer).is_file():
        nets["peer-omz0013-int8"] = (compile_(core, core.read_model(a.peer)), (1, 3, 62, 62))
        rows.append({"label": "peer-omz0013-int8", "params": 2.1e6, "macs": 0.094e9})
    for c in a.cand:
        label, name, cfg = parse_cand(c)
        m, norm = build(name, cfg, crops)
        if label.endswith("+deploy"):
            from edgeage.models.deploy import deploy_form

            m = deploy_form(m, a.spatial)
        s = int(m.config["input_size"])
        om, q = to_int8(m, norm, crops, a.quantize_all)
        nets[label + "-int8"] = (compile_(core, q), (1, 3, s, s))
        if a.fp32:
            nets[label + "-fp32"] = (compile_(core, om), (1, 3, s, s))
        rows.append({"label": label + "-int8", "model": name, "cfg": cfg, "params": count_params(m),
                     "macs": count_macs(m, s)})
        print(f"built {label}: {count_params(m) / 1e6:.2f} M params, {count_macs(m, s) / 1e6:.1f} M MACs", flush=True)
    reqs = {k: (c.create_infer_request(), np.random.default_rng(0).standard_normal(sh).astype(np.float32))
            for k, (c, sh) in nets.items()}
    times = {k: [] for k in reqs}
    for _ in range(a.rounds):
        for k, (r, x) in reqs.items():
            for _ in range(20):
                r.infer({0: x})
            for _ in range(a.runs):
                t0 = time.perf_counter()
                r.infer({0: x})
                times[k].append(time.perf_counter() - t0)
    peer = float(np.median(times["peer-omz0013-int8"])) if "peer-omz0013-int8" in times else None
    by_label = {r["label"]: r for r in rows}
    for k, t in times.items():
        row = by_label.setdefault(k, {"label": k})
        row["p50_ms"] = 1e3 * float(np.median(t))
        row["p90_ms"] = 1e3 * float(np.percentile(t, 90))
        row["vs_peer"] = float(np.median(t)) / peer if peer else None
        row["profile"] = profile(reqs[k][0])
    print(f"{'model':28s} {'params M':>8s} {'MACs M':>8s} {'p50 ms':>7s} {'x peer':>6s} {'float %':>7s}")
    for k in times:
        r = by_label[k]
        print(f"{k:28s} {r.get('params', 0) / 1e6:8.2f} {r.get('macs', 0) / 1e6:8.1f} {r['p50_ms']:7.3f} "
              f"{(r['vs_peer'] or 0):6.2f} {r['profile']['float_islands_pct']:7.1f}")
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "latency.json").write_text(json.dumps({"rows": list(by_label.values()), "rounds": a.rounds,
                                                      "runs": a.runs, "openvino": ov.__version__}, indent=1,
                                                     default=str))


if __name__ == "__main__":
    main()
