"""OpenVINO INT8 of one checkpoint with its attention gates in different forms and scopes: p50
(batch 1, 1 thread, alternating rounds with the peer model) and per-face |delta age| against the
float model on 1,000 test faces. How the gate scope of targets/int8_scope.py was chosen.

    python scripts/probes/gate_scope_probe.py CHECKPOINT
"""
import sys, time, numpy as np, torch, openvino as ov, nncf
from edgeage.checkpoint import load_model
from edgeage.models.deploy import deploy_form, DenseECA
from edgeage.models.layers import SpatialAttention
from edgeage.targets.openvino.exporter import ignored_scope
from edgeage.data import load_prepared, split
from edgeage.preprocess import Normalize, model_input
import copy
torch.set_num_threads(1)
ck = sys.argv[1]  # a trained checkpoint (edge-v2 candidate or the shipped model)
m, man = load_model(ck); s = man.input_size
prep = load_prepared(".cache/utk-prepared"); parts = split(prep.names, 0, 0.1, 0.15)
norm = Normalize(input_size=s)
cal = [model_input(prep.crops[i:i+1], norm).numpy() for i in parts["train"][:300]]
te = parts["test"][:1000]
xt = model_input(prep.crops[te], norm).numpy()
bins = np.arange(0, 101)
def ages(o): e = np.exp(o - o.max(1, keepdims=True)); p = e / e.sum(1, keepdims=True); return p @ bins
with torch.no_grad(): fa = ages(m(torch.from_numpy(xt)).numpy())
def variant(name, model, ign):
    om = ov.convert_model(model, example_input=torch.from_numpy(cal[0]), input=[ov.PartialShape([1,3,s,s])])
    q = nncf.quantize(om, nncf.Dataset(cal), subset_size=300, ignored_scope=ignored_scope(ign))
    return name, q
dm = deploy_form(m)  # ECA dense, MGPool shuffle folded; spatial attention as it is
gates_eca = [n for n, x in dm.named_modules() if isinstance(x, DenseECA)]
gates_sa = [n for n, x in dm.named_modules() if isinstance(x, SpatialAttention)]
vs = [variant("gates float (shipped scope)", dm, gates_eca + gates_sa), variant("SA conv int8, ECA float", dm, gates_eca),
      variant("gates int8", dm, [])]
core = ov.Core()
reqs = {}
for name, q in vs:
    c = core.compile_model(q, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"})
    r = c.create_infer_request()
    out = np.concatenate([np.asarray(r.infer({0: xt[i:i+1]})[0]) for i in range(len(xt))])
    d = np.abs(ages(out) - fa)
    reqs[name] = (r, d)
pm = core.read_model("../shared/peers/omz-age-gender-recognition-retail-0013/FP16-INT8.xml"); pm.reshape([1,3,62,62])
reqs["peer"] = (core.compile_model(pm, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1}).create_infer_request(), None)
t = {k: [] for k in reqs}
for _ in range(4):
    for k, (r, _) in reqs.items():
        x = np.zeros((1,3,62,62) if k == "peer" else (1,3,s,s), np.float32)
        for _ in range(20): r.infer({0: x})
        for _ in range(150):
            t0 = time.perf_counter(); r.infer({0: x}); t[k].append(time.perf_counter() - t0)
pp = np.median(t["peer"])
for k, (r, d) in reqs.items():
    print(f"{k:36s} p50 {1e3*np.median(t[k]):.3f} ms  x peer {np.median(t[k])/pp:.2f}" + ("" if d is None else f"  |dage| p99 {np.percentile(d,99):.2f} max {d.max():.2f} mean {d.mean():.3f}"))
