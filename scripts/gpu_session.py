"""Train on a leased GPU machine inside a fixed time budget, unattended.

    python scripts/gpu_session.py start --budget-min 20     # on the GPU machine, returns at once
    python scripts/gpu_session.py wait PHASE --out $OUT      # blocks until PHASE is done, copies results

``start`` unpacks the crops packed by ``scripts/pack_crops.py`` (``.gpu/utk``) and runs, detached
(so it outlives the tool call that started it):

- phase A: by default the paper-width ``mgpnet`` and ``mgpnet-xs-long`` side by side on the
  one GPU;
- phase B: by default nothing (``--phases`` names the recipes of each phase).

Each phase first runs two epochs of every recipe as a probe, reads the seconds per epoch off
them, and sets the epoch count so that the cosine schedule ends by the phase's deadline. The
best checkpoints are stored fp16 (split into <16 MiB parts when bigger) with the runs'
metrics.json / curve.png / logs, ready for ``wait`` to copy out."""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # edgeage from the checkout (collect() reads checkpoints)
WORK = Path("/tmp/gpu")
RES = WORK / "res"
LOG = WORK / "driver.log"
PHASES = {"A": ["mgpnet", "mgpnet-xs-long"], "B": []}
EPOCH_LINE = re.compile(r"^epoch \d+/\d+  loss")
# Run from the checkout: the stage folders join edgeage's package path as setuptools' package-dir does.
TRAIN = [sys.executable, "-c", "import sys, edgeage; edgeage.__path__.append(sys.argv.pop(1)); "
         "from edgeage.cli import main; sys.exit(main())", str(ROOT), "train"]


def log(msg: str) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    with open(LOG, "a") as f:
        f.write(line + "\n")


def run_parallel(recipes: list[str], epochs: dict[str, int], stop_after: int | None,
                 out_root: Path, data: Path) -> dict[str, list[float]]:
    """Run recipes side by side; return each one's wall-clock times of its epoch lines."""
    procs, times, logs = {}, {r: [] for r in recipes}, {}
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for r in recipes:
        cmd = TRAIN + ["--recipe", r, "--data", str(data),
                       "--epochs", str(epochs[r]), "--out", str(out_root / Path(r).stem)]
        if stop_after:
            cmd += ["--stop-after", str(stop_after)]
        logs[r] = open(WORK / f"{out_root.name}-{Path(r).stem}.log", "w")
        procs[r] = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, bufsize=1)
    import selectors

    sel = selectors.DefaultSelector()
    for r, p in procs.items():
        sel.register(p.stdout, selectors.EVENT_READ, r)
    open_streams = len(procs)
    while open_streams:
        for key, _ in sel.select(timeout=5):
            r = key.data
            line = key.fileobj.readline()
            if not line:
                sel.unregister(key.fileobj)
                open_streams -= 1
                continue
            logs[r].write(line)
            logs[r].flush()
            if EPOCH_LINE.match(line):
                times[r].append(time.time())
                log(f"{r}: {line.strip()}")
    for r, p in procs.items():
        if p.wait() != 0:
            log(f"{r}: exited with {p.returncode}; see {logs[r].name}")
    return times


def phase(name: str, recipes: list[str], deadline: float, data: Path) -> None:
    if not recipes:
        (WORK / f"{name}.done").write_text("{}")
        return
    log(f"phase {name}: probe (2 epochs each, side by side)")
    t = run_parallel(recipes, {r: 1000 for r in recipes}, 2, WORK / f"probe{name}", data)
    per_epoch = {r: (t[r][1] - t[r][0]) if len(t[r]) >= 2 else None for r in recipes}
    if any(v is None for v in per_epoch.values()):
        log(f"phase {name}: probe failed ({per_epoch}); stopping")
        raise SystemExit(1)
    left = deadline - time.time()
    epochs = {r: max(3, int(0.93 * left / per_epoch[r])) for r in recipes}
    log(f"phase {name}: s/epoch {per_epoch}; {left:.0f} s left -> epochs {epochs}")
    run_parallel(recipes, epochs, None, ROOT / "runs" / "gpu", data)
    collect(recipes, epochs, per_epoch)
    (WORK / f"{name}.done").write_text(json.dumps({"epochs": epochs, "s_per_epoch": per_epoch}))
    log(f"phase {name}: done")


def collect(recipes, epochs, per_epoch) -> None:
    """fp16 best checkpoints (parts < 16 MiB) + a tar of metrics, curves and logs."""
    from edgeage.checkpoint import load_model, read_checkpoint, save_checkpoint

    RES.mkdir(parents=True, exist_ok=True)
    for r in recipes:
        run = ROOT / "runs" / "gpu" / Path(r).stem
        if not (run / "best.pt").is_file():
            log(f"{r}: no best.pt")
            continue
        ck = read_checkpoint(run / "best.pt")
        model, _ = load_model(run / "best.pt")
        half = WORK / f"{Path(r).stem}.fp16.pt"
        save_checkpoint(half, model, ck["manifest"], half=True)
        data = half.read_bytes()
        step = 15 * 2**20
        for i in range(0, len(data), step):
            (RES / f"{Path(r).stem}.fp16.pt.part{i // step}").write_bytes(data[i:i + step])
        log(f"{r}: best epoch {ck['manifest']['training']['epoch']}, val MAE "
            f"{ck['manifest']['training']['val']['mae']:.3f}, {len(data) / 2**20:.1f} MiB fp16")
        (run / "gpu_phase.json").write_text(json.dumps({"epochs": epochs[r],
                                                        "s_per_epoch_probe": per_epoch[r]}))
    with tarfile.open(RES / f"logs-{'-'.join(Path(r).stem for r in recipes)}.tar.gz", "w:gz") as tf:
        for r in recipes:
            run = ROOT / "runs" / "gpu" / Path(r).stem
            for f in ("metrics.json", "curve.png", "gpu_phase.json"):
                if (run / f).is_file():
                    tf.add(run / f, arcname=f"{Path(r).stem}/{f}")
        for f in WORK.glob("*.log"):
            tf.add(f, arcname=f"logs/{f.name}")


def start(budget_min: float, split_min: float, data: Path, phases: dict) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    subprocess.run([sys.executable, str(ROOT / "scripts/pack_crops.py"), "unpack", "--src",
                    str(ROOT / ".gpu/utk"), "--out", str(data)], check=True)
    log(f"unpacked in {time.time() - t0:.0f} s; budget {budget_min} min, phase A until {split_min} min")
    phase("A", phases["A"], t0 + 60 * split_min, data)
    phase("B", phases["B"], t0 + 60 * budget_min, data)


def _driver_alive() -> bool:
    try:
        os.kill(int((WORK / "driver.pid").read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def wait(name: str, out: Path, timeout: float) -> None:
    t0, seen = time.time(), 0
    while time.time() - t0 < timeout:
        if LOG.is_file():
            lines = LOG.read_text().splitlines()
            for line in lines[seen:]:
                print(line, flush=True)
            seen = len(lines)
        if (WORK / f"{name}.done").is_file():
            break
        if not _driver_alive():
            print("the driver is not running; its output:", flush=True)
            print((WORK / "start.out").read_text()[-4000:] if (WORK / "start.out").is_file() else "-")
            break
        time.sleep(10)
    out.mkdir(parents=True, exist_ok=True)
    if RES.is_dir():
        for f in sorted(RES.iterdir()):
            shutil.copy(f, out / f.name)
    print("phase", name, "done" if (WORK / f"{name}.done").is_file() else "NOT done", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start")
    s.add_argument("--budget-min", type=float, default=20)
    s.add_argument("--phase-a-min", type=float, default=11.5)
    s.add_argument("--foreground", action="store_true")
    s.add_argument("--data", type=Path, default=ROOT / ".cache/utk-prepared",
                   help="where to unpack the crops (never the CPU machine's own cache: the packed "
                        "copy has no test split)")
    s.add_argument("--phases", default=json.dumps(PHASES), help="JSON {A: [recipes], B: [recipes]}")
    w = sub.add_parser("wait")
    w.add_argument("phase")
    w.add_argument("--out", type=Path, required=True)
    w.add_argument("--timeout", type=float, default=560)
    a = ap.parse_args()
    if a.cmd == "wait":
        wait(a.phase, a.out, a.timeout)
    elif a.foreground:
        start(a.budget_min, a.phase_a_min, a.data, json.loads(a.phases))
    else:  # detach: a new session outlives the tool call
        WORK.mkdir(parents=True, exist_ok=True)
        p = subprocess.Popen([sys.executable, __file__, "start", "--foreground", "--budget-min",
                              str(a.budget_min), "--phase-a-min", str(a.phase_a_min), "--data",
                              str(a.data), "--phases", a.phases],
                             stdout=open(WORK / "start.out", "w"), stderr=subprocess.STDOUT,
                             start_new_session=True, cwd=ROOT)
        (WORK / "driver.pid").write_text(str(p.pid))
        print("started; log:", LOG)


if __name__ == "__main__":
    main()
