"""OpenVINO's ARM CPU plugin with SME: one 3x3 convolution (random weights and input, f32
hint, 1 thread) compiled by OpenVINO as aarch64 code under qemu, against a float64 reference
computed in numpy, per qemu CPU; prints the max abs error and the kernel OpenVINO chose
(PERF_COUNT exec_type) per shape.

    python scripts/probes/qemu_sme_probe.py [--cpus max,max,sme=off;cortex-a76] [--qemu /path/to/qemu-aarch64]

(--cpus is ';'-separated because qemu options use commas.) --qemu runs another qemu binary on the
same sysroot (e.g. a newer Debian's qemu-user, unpacked with dpkg -x), to tell qemu's SME
emulation from OpenVINO's SME kernels. Needs `edgeage device setup qemu-aarch64`."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

PROBE = r'''
import json, sys, numpy as np, openvino as ov, openvino.opset13 as ops
res = {}
for cin, hw in [(16, 8), (32, 32), (48, 16), (64, 16), (80, 8), (128, 8), (160, 4)]:
    rng = np.random.default_rng(cin * 1000 + hw)
    x = rng.standard_normal((1, cin, hw, hw)).astype(np.float32)
    w = (rng.standard_normal((cin, cin, 3, 3)) / np.sqrt(cin * 9)).astype(np.float32)
    p = ops.parameter([1, cin, hw, hw], np.float32)
    m = ov.Model([ops.convolution(p, ops.constant(w), [1, 1], [1, 1], [1, 1], [1, 1])], [p])
    req = ov.Core().compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1,
                                             "PERF_COUNT": True}).create_infer_request()
    y = np.asarray(req.infer({0: x})[0], np.float64)[0]
    xp = np.pad(x[0].astype(np.float64), ((0, 0), (1, 1), (1, 1)))
    ref = sum(np.einsum("oc,chw->ohw", w[:, :, i, j], xp[:, i:i + hw, j:j + hw]) for i in range(3) for j in range(3))
    kind = sorted({q.exec_type for q in req.get_profiling_info() if q.node_type == "Convolution"})
    res[f"{cin}->{cin} 3x3 on {hw}x{hw}"] = [float(np.abs(y - ref).max()), ",".join(kind)]
print(json.dumps(res))
'''


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpus", default="max;max,sme=off;cortex-a76")
    ap.add_argument("--qemu", default=None, help="another qemu-aarch64 binary (default: the set-up one)")
    a = ap.parse_args()
    from edgeage.export.devices.kinds import qemu_aarch64 as qemu

    if qemu.info() is None:
        raise SystemExit("run `edgeage device setup qemu-aarch64` first")
    root = qemu.home() / "sysroot"
    exe = a.qemu or str(qemu.home() / "bin" / "qemu-aarch64-static")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    print(f"# {version}; OpenVINO {qemu.info()['installed']['openvino']}")
    for cpu in a.cpus.split(";"):
        p = subprocess.run([exe, "-cpu", cpu, "-L", str(root), str(root / qemu.PYTHON), "-I", "-c", PROBE],
                           capture_output=True, text=True)
        if p.returncode != 0:
            print(f"{cpu}: failed: {p.stderr[-500:]}")
            continue
        res = json.loads(p.stdout.strip().splitlines()[-1])
        print(f"-cpu {cpu}: " + "; ".join(f"{k}: {e:.2g} ({kind})" for k, (e, kind) in res.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
