"""Issue 4's compression table in one go: INT8 PTQ and QAT on every backend, pruning at a ratio
with fine-tuning, the pruned model in fp32 and INT8 on every target, then one `edgeage bench`
run with every row side by side (ratios against the parent's fp32 on the same target).

    python scripts/compression_bench.py [--model CKPT] [--data .cache/utk-prepared] \
        [--ratio 0.5 --by macs --round-to 2] [--finetune-epochs 12] [--runs runs/compress] [--out bench/compression]

Every step is an `edgeage` command (printed before it runs) and is skipped when its output
already exists, so the script resumes where it stopped. Ends with the bench's Markdown table."""
from __future__ import annotations

import argparse
import shlex
import subprocess
import time
from pathlib import Path

from edgeage.export.int8.quantize import int8_targets  # noqa: E402
from edgeage.utils import python_module_cmd

# int8 backend name -> target, from the targets' own TOMLs ([int8] backend = ...)
BACKENDS = {b: spec.name for b, spec in int8_targets().items()}


def edgeage(*args: str) -> None:
    cmd = python_module_cmd("edgeage.cli", *args)
    print("$ edgeage " + " ".join(shlex.quote(a) for a in args), flush=True)
    t = time.time()
    subprocess.run(cmd, check=True)
    print(f"  ({time.time() - t:.0f} s)", flush=True)


def done(path: Path) -> bool:
    return (path / "manifest.json").is_file() or (path / "best.pt").is_file()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="parent checkpoint (default: the shipped default model)")
    ap.add_argument("--data", default=".cache/utk-prepared")
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--by", choices=["channels", "macs"], default="macs", help="edgeage prune --by")
    ap.add_argument("--round-to", type=int, default=2, help="edgeage prune --round-to")
    ap.add_argument("--finetune-epochs", type=int, default=12)
    ap.add_argument("--methods", default="ptq,qat", help="INT8 methods for the parent (ptq, qat or both)")
    ap.add_argument("--qat-epochs", type=int, default=2)
    ap.add_argument("--qat-steps", type=int, default=100)
    ap.add_argument("--limit", type=int, default=1000, help="test-split images in the bench")
    ap.add_argument("--runs", default="runs/compress")
    ap.add_argument("--out", default="bench/compression")
    ap.add_argument("--skip-bench", action="store_true")
    ap.add_argument("--no-prune", action="store_true",
                    help="INT8 rows only (e.g. the paper-width model on a CPU, where the pruning fine-tune "
                         "does not fit); the bench still runs")
    ap.add_argument("--part", choices=["all", "int8", "prune"], default="all",
                    help="only the parent's INT8 results, or only pruning and the pruned exports (two "
                         "processes can run the parts side by side; then bench with --part all)")
    args = ap.parse_args()
    runs = Path(args.runs)
    model = ["--model", args.model] if args.model else []
    data = ["--data", args.data]
    artifacts = []
    for backend in BACKENDS:  # INT8 of the parent
        for method in [m for m in ("ptq", "qat") if m in args.methods.split(",")]:
            out = runs / f"{method}-{backend}"
            extra = ["--epochs", str(args.qat_epochs), "--max-steps", str(args.qat_steps)] if method == "qat" else []
            if not done(out) and args.part in ("all", "int8"):
                edgeage("quantize", *model, "--method", method, "--backend", backend, *data, *extra,
                        "--out", str(out))
            artifacts.append(out)
    pruned = runs / f"pruned{round(args.ratio * 100)}-{args.by}"
    if args.part == "int8":
        return
    if not args.no_prune and not (pruned / "best.pt").is_file():
        edgeage("prune", *model, "--ratio", str(args.ratio), "--by", args.by, "--round-to", str(args.round_to),
                "--finetune-epochs", str(args.finetune_epochs), "--distill", *data, "--out", str(pruned))
    for backend, target in ({} if args.no_prune else BACKENDS).items():  # pruned: fp32 everywhere, INT8 PTQ
        out = runs / f"pruned-fp32-{target}"
        if not done(out):
            edgeage("export", "--target", target, "--model", str(pruned / "best.pt"), "--out", str(out))
        artifacts.append(out)
        out = runs / f"pruned-ptq-{backend}"
        if not done(out):
            edgeage("quantize", "--model", str(pruned / "best.pt"), "--method", "ptq", "--backend", backend,
                    *data, "--out", str(out))
        artifacts.append(out)
    if args.skip_bench or args.part != "all":
        return
    try:
        edgeage("bench", *model, *data, "--split", "test", "--limit", str(args.limit), "--precisions", "fp32",
                "--artifacts", ",".join(map(str, artifacts)), "--out", args.out)
    except subprocess.CalledProcessError as e:  # a failed check is a row in the table, not a crash
        print(f"bench exited with {e.returncode} (some row failed its checks)")
    print((Path(args.out) / "bench.md").read_text())


if __name__ == "__main__":
    main()
