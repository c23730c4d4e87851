"""INT8 vs fp32 size and latency of an architecture that has no trained weights here (the
paper-width `mgpnet` needs a GPU to train): random weights (seeded), BN statistics set by
forward passes over real training crops, the shipped model's split and preprocessing, then one
`edgeage bench` run of fp32 and INT8 (PTQ) on the chosen targets.

    python scripts/arch_int8_ratio.py --model mgpnet [--targets openvino,executorch] [--out bench/arch-mgpnet]

Only the size and latency columns mean anything (the weights are untrained: the MAE columns and
the drift checks do not). Written to <out>/bench.md and bench.json."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from edgeage.checkpoint import build_manifest, load_model, save_checkpoint
from edgeage.data import load_prepared, split
from edgeage.models import create
from edgeage.preprocess import model_input


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mgpnet", help="registry name")
    ap.add_argument("--data", default=".cache/utk-prepared")
    ap.add_argument("--targets", default="openvino,executorch")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out = Path(args.out or f"bench/arch-{args.model}")
    _, parent = load_model(None)
    rec = parent.training.split
    torch.manual_seed(0)
    model = create(args.model)
    norm = parent.normalize
    prep = load_prepared(args.data)
    train_idx = split(prep.names, rec["seed"], rec["val"], rec["test"])["train"]
    rng = np.random.default_rng(0)
    model.train()
    with torch.no_grad():  # BN running statistics from real crops (momentum None: plain average)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None
                # zero-initialised residual BN scales would fold into all-zero convolutions,
                # which the runtimes store once (deduplicated): sizes would come out too small
                m.weight.uniform_(0.5, 1.5)
        for _ in range(8):
            idx = rng.choice(train_idx, 32, replace=False)
            model(model_input(prep.crops[np.sort(idx)], norm))
    model.eval()
    ckpt = Path("runs/arch") / f"{args.model}-random.pt"  # 60+ MB: not next to the report
    parent_training = parent.training.to_json_dict()
    training = {k: parent_training[k] for k in ("split", "recipe") if k in parent_training}
    save_checkpoint(ckpt, model, build_manifest(model, norm, parent.crop, training))
    from edgeage.cli import main as cli

    cli(["bench", "--model", str(ckpt), "--data", args.data, "--split", "test", "--limit", str(args.limit),
         "--targets", args.targets, "--precisions", "fp32,int8", "--runs", str(args.runs), "--out", str(out)],
        standalone_mode=False)


if __name__ == "__main__":
    main()
