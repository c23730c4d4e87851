"""The qemu-aarch64 table: a shipped model's (default `mgpnet-xs`) fp32 and INT8 artifacts (onnx, tflite, openvino),
each checked by the device side on the same test-split crops on x86 (``--device local``) and as
aarch64 code under qemu (``--device qemu-aarch64:CPU`` for each CPU), compared with the float
model (drift, the target TOML's thresholds), plus the drift between the arm64 and the x86
outputs of the same artifact. OpenVINO under ``-cpu max`` (SME) is added to show the wrong case.

    python scripts/qemu_table.py [--data ../shared/datasets/utkface] [--count 100] \
        [--cpus cortex-a76,cortex-a53] [--out bench/qemu] [--work DIR]

Writes OUT/table.md and OUT/table.json (run times under emulation are not latencies and are not
in the table). Needs `edgeage device setup qemu-aarch64` first."""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from edgeage.utils import python_module_cmd
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("onnx", "tflite", "openvino")
PRECISIONS = ("fp32", "int8")


def sh(*args, check=True) -> subprocess.CompletedProcess:
    p = subprocess.run(python_module_cmd("edgeage.cli", *args), capture_output=True, text=True)
    if check and p.returncode != 0:
        raise SystemExit(f"edgeage {' '.join(map(str, args[:3]))} failed:\n{p.stderr[-3000:]}")
    return p


def outputs(result: Path) -> tuple[np.ndarray, np.ndarray]:
    r = json.loads(result.read_text())
    return (np.asarray([im["output"] for im in r["images"]], np.float64),
            np.asarray([im["pred_age"] for im in r["images"]], np.float64))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "utkface"))
    ap.add_argument("--count", type=int, default=100, help="test-split faces per check")
    ap.add_argument("--model", default="mgpnet-xs",
                    help="checkpoint or shipped model name (the committed table: mgpnet-xs, the default then)")
    ap.add_argument("--cpus", default="cortex-a76,cortex-a53", help="qemu CPU models (comma list)")
    ap.add_argument("--sme-row", default="openvino:fp32", help="target:precision also run under -cpu max ('' = none)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "qemu"))
    ap.add_argument("--work", default=None, help="keep artifacts, bundles and results here (default: a temp folder)")
    a = ap.parse_args()

    from edgeage.artifact import read_manifest
    from edgeage.checkpoint import load_model, model_path
    from edgeage.export.devices.kinds import qemu_aarch64 as qemu
    from edgeage.export.devices.bundle import make_bundle
    from edgeage.export.conformance.check import split_subset
    from edgeage.utils import atomic_path, output_dir

    if qemu.info() is None:
        raise SystemExit("run `edgeage device setup qemu-aarch64` first")
    cpus = [qemu.parse_cpu(c) for c in a.cpus.split(",") if c]
    t_start = time.time()
    tmp = tempfile.TemporaryDirectory(prefix="edgeage-qemu-table-")
    work = Path(a.work or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    # the test faces: the shipped checkpoint's recorded test split, spread evenly
    _, fman = load_model(a.model)
    test = split_subset(fman, a.data, "test", a.count)
    faces = work / "test-faces.csv"
    with open(faces, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "age"])
        w.writerows([str((Path(a.data) / n).resolve()), f"{age:g}"] for n, age in zip(test.names, test.ages))
    rows = []
    sme_t, _, sme_p = a.sme_row.partition(":")
    for target in TARGETS:
        for precision in PRECISIONS:
            art = work / f"art-{target}-{precision}"
            if not (art / "manifest.json").is_file():
                print(f"export {target} {precision}", file=sys.stderr, flush=True)
                sh("export", "--target", target, "--model", a.model, "--precision", precision, "--calib-data",
                   a.data, "--out", art, "--force")
            bundle = work / f"bundle-{target}-{precision}"
            if not (bundle / "check" / "labels.csv").is_file():
                make_bundle(art, bundle, faces, a.count, progress=False, force=True, app=False)
            devices = [("x86", "local")] + [(f"arm64 {c}", f"qemu-aarch64:{c}") for c in cpus]
            if (target, precision) == (sme_t, sme_p):
                devices.append(("arm64 max (SME)", "qemu-aarch64:max"))
            x86 = None
            for isa, dev in devices:
                rep = work / f"rep-{target}-{precision}-{dev.replace(':', '-').replace(',', '-')}"
                t0 = time.time()
                print(f"{target} {precision} on {isa}", file=sys.stderr, flush=True)
                if (rep / "report.json").is_file() and (rep / "check-result.json").is_file():  # --work: kept
                    from edgeage.check_report import CheckReport

                    r = CheckReport.read(rep / "report.json").to_json_dict()  # through the schema
                else:
                    p = sh("device-check", "--device", dev, "--artifact", art, "--bundle", bundle, "--count",
                           a.count, "--threads", 1, "--json", "--out", rep, "--force", check=False)
                    if not p.stdout.strip():
                        rows.append({"target": target, "precision": precision, "isa": isa, "error": p.stderr[-500:]})
                        continue
                    r = json.loads(p.stdout)
                out, ages = outputs(rep / "check-result.json")
                row = {"target": target, "precision": precision, "isa": isa, "device": dev, "n": r["n"],
                       "passed": r["passed"], "failures": r["failures"], "mae": r["target_mae"],
                       "float_mae": r["float_mae"], "mae_drift": r["mae_drift"],
                       "age_abs_diff_p99": r["age_abs_diff_p99"], "age_abs_diff_max": r["age_abs_diff_max"],
                       "argmax_agreement": r["argmax_agreement"], "emulated": bool(r["device"].get("emulated")),
                       "isa_features": r["device"].get("isa_features"), "wall_s": round(time.time() - t0, 1),
                       "runtime_versions": r["runtime"].get("versions"),
                       "emulated_time_ms_p50": json.loads((rep / "check-result.json").read_text())["summary"]
                       .get("emulated_time_ms", {}).get("p50")}
                if x86 is None and isa == "x86":
                    x86 = (out, ages)
                elif x86 is not None:
                    row["vs_x86_logit_abs_diff_max"] = float(np.abs(out - x86[0]).max())
                    row["vs_x86_age_abs_diff_max"] = float(np.abs(ages - x86[1]).max())
                rows.append(row)
    manifest = read_manifest(work / "art-onnx-fp32")
    rec = {"model": str(model_path(a.model)), "model_sha256": manifest.source.sha256,
           "data": f"{a.data} (test split of the checkpoint, {len(test.names)} faces)", "count": a.count,
           "cpus": cpus, "qemu": qemu.info()["qemu"], "installed": qemu.info()["installed"], "rows": rows,
           "executorch": qemu.EXECUTORCH_WHY, "wall_s": round(time.time() - t_start, 1),
           "command": "python scripts/qemu_table.py " + " ".join(sys.argv[1:])}
    out = output_dir(a.out, force=True)
    with atomic_path(out / "table.json") as f:
        Path(f).write_text(json.dumps(rec, indent=1) + "\n")
    with atomic_path(out / "table.md") as f:
        Path(f).write_text(table_md(rec))
    print(table_md(rec))
    return 0


def _g(v, fmt=".2g"):
    return "" if v is None else format(v, fmt)


def table_md(rec: dict) -> str:
    lines = [f"# qemu-aarch64: the device side's check, x86 vs arm64 under emulation",
             "", f"Model {rec['model']} (sha256 {rec['model_sha256'][:12]}); {rec['data']}; {rec['qemu']}; "
             f"runtimes {', '.join(f'{k} {v}' for k, v in rec['installed'].items())}; 1 thread.",
             f"Command: `{rec['command']}` ({rec['wall_s'] / 60:.0f} min).", "",
             "Drift vs float = the device's ages against the PyTorch float model on the same crops (the target "
             "TOML's thresholds judge it); arm64 vs x86 = the same artifact's outputs on the emulated arm64 CPU "
             "against `--device local` on this x86 host. No latency: times under emulation are not a device's.", "",
             "| target | precision | ISA | MAE | MAE drift vs float | abs(delta age) p99 / max vs float | arg-max agr. "
             "| arm64 vs x86: max abs(delta logit) / abs(delta age) | check |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rec["rows"]:
        if "error" in r:
            lines.append(f"| {r['target']} | {r['precision']} | {r['isa']} | | | | | | ERROR: "
                         f"{' '.join(r['error'].split())[:150]} |")
            continue
        vs = (f"{r['vs_x86_logit_abs_diff_max']:.2g} / {r['vs_x86_age_abs_diff_max']:.2g}"
              if "vs_x86_logit_abs_diff_max" in r else "(reference)")
        res = "pass" if r["passed"] else "FAIL: " + "; ".join(f.split(":")[0] for f in r["failures"])
        lines.append(f"| {r['target']} | {r['precision']} | {r['isa']} | {r['mae']:.3f} | {r['mae_drift']:+.4f} | "
                     f"{_g(r['age_abs_diff_p99'])} / {_g(r['age_abs_diff_max'])} | {r['argmax_agreement']:.3f} | "
                     f"{vs} | {res} |")
    lines += ["", f"executorch: not run. {rec['executorch']}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
