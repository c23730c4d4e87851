"""Train on a leased GPU machine inside a fixed time budget, in one call.

    python scripts/gpu_session.py --budget-s 420 --out $OUT [--later /tmp/gpu/later] RECIPE...

Unpacks the crops packed by ``scripts/pack_crops.py`` (``.gpu/utk``), then trains every recipe
side by side on one augmented stream (``edgeage.train.multi.train_together``: the CPU-side
degradation pipeline, not the GPU, sets the pace, so each model costs only its GPU steps). The
epoch count is set after the first epoch so that the cosine schedules end by the budget.

Results: each run's best checkpoint stored fp16, with its metrics.json and curve.png and the
logs, packed in ``results.tar`` split into parts under 15 MiB in ``--out`` (the tool returns at
most 8 files, 16 MiB each, 64 MiB together). Checkpoints larger than ``--big-mib`` (the
paper-width teacher) go to ``--later`` instead, split the same way, for a second short call to
copy out while the machine is still warm."""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import edgeage  # noqa: E402

edgeage.__path__.append(str(ROOT))  # edgeage.train / .export / .targets from the checkout, as installed
PART = 15 * 2**20


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def split_write(data: bytes, dest: Path, stem: str) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(0, max(len(data), 1), PART):
        p = dest / f"{stem}.part{i // PART}"
        p.write_bytes(data[i:i + PART])
        out.append(p)
    return out


def collect(outs: dict[str, Path], dest: Path, later: Path, big_mib: float, extra: list[Path]) -> None:
    """fp16 best checkpoints + metrics + curves (+ logs) into results.tar parts; big ones to ``later``."""
    from edgeage.checkpoint import load_model, read_checkpoint, save_checkpoint

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, run in outs.items():
            for f in ("metrics.json", "curve.png"):
                if (run / f).is_file():
                    tf.add(run / f, arcname=f"{name}/{f}")
            if not (run / "best.pt").is_file():
                log(f"{name}: no best.pt")
                continue
            ck = read_checkpoint(run / "best.pt")
            model, _ = load_model(run / "best.pt")
            half = run / "best.fp16.pt"
            save_checkpoint(half, model, ck["manifest"], half=True)
            mib = half.stat().st_size / 2**20
            tr = ck["manifest"].training
            log(f"{name}: best epoch {tr.epoch}, val MAE {tr.val['mae']:.3f}, {mib:.1f} MiB fp16")
            if mib > big_mib:
                split_write(half.read_bytes(), later, f"{name}.fp16.pt")
            else:
                tf.add(half, arcname=f"{name}/best.fp16.pt")
        for f in extra:
            if f.is_file():
                tf.add(f, arcname=f"logs/{f.name}")
    parts = split_write(buf.getvalue(), dest, "results.tar")
    log(f"results.tar: {len(buf.getvalue()) / 2**20:.1f} MiB in {len(parts)} parts")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipes", nargs="+")
    ap.add_argument("--budget-s", type=float, required=True, help="training budget (after unpacking)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--later", type=Path, default=Path("/tmp/gpu/later"))
    ap.add_argument("--big-mib", type=float, default=12.0)
    ap.add_argument("--data", type=Path, default=Path("/tmp/gpu/utk-prepared"),
                    help="where to unpack the crops (never the CPU machine's own cache: the packed "
                         "copy has no test split)")
    ap.add_argument("--packed", type=Path, default=ROOT / ".gpu/utk")
    ap.add_argument("--runs", type=Path, default=Path("/tmp/gpu/runs"))
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    ap.add_argument("--val-every", type=int, default=3)
    ap.add_argument("--train-subset", type=int, default=0, help="(smoke tests) train on this many images")
    a = ap.parse_args()
    t0 = time.time()
    if not (a.data / "crops.npy").is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts/pack_crops.py"), "unpack", "--src", str(a.packed),
                        "--out", str(a.data)], check=True)
        log(f"unpacked in {time.time() - t0:.0f} s")
    import torch

    log(f"torch {torch.__version__}, cuda {torch.cuda.is_available()}"
        f" {torch.cuda.get_device_name(0) if torch.cuda.is_available() else ''}; {a.workers} loader workers")
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    from edgeage.train.multi import train_together

    outs = {Path(r).stem: a.runs / Path(r).stem for r in a.recipes}
    res = {}
    try:
        res = train_together(a.recipes, list(outs.values()), force=True, log=log, val_every=a.val_every,
                             overrides={"data": {"path": str(a.data), "train_subset": a.train_subset},
                                        "train": {"batch_size": a.batch_size, "num_workers": a.workers}},
                             budget_s=a.budget_s - (time.time() - t0))
    finally:  # whatever finished is collected, also after an error
        (a.runs / "summary.json").parent.mkdir(parents=True, exist_ok=True)
        (a.runs / "summary.json").write_text(json.dumps(res, indent=1, default=str))
        collect(outs, a.out, a.later, a.big_mib, [a.runs / "summary.json"])
    log(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
