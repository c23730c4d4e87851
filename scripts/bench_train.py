"""Training throughput (images/s) of every registered model on this machine: full training
steps (forward, SORD loss, backward, AdamW) at batch 64, 64x64 input, after warm-up.

    python scripts/bench_train.py [--steps 6] [--threads 2] [--out bench/train_throughput.json]
"""
import argparse
import json
import time

import torch

from edgeage.models import create, list_models
from edgeage.profile import count_macs, count_params
from edgeage.train.losses import make_loss
from edgeage.utils import write_json


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--models", default=",".join(list_models()))
    ap.add_argument("--out", default="bench/train_throughput.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    for name in a.models.split(","):
        m = create(name)
        loss_fn = make_loss(m.head.spec, m.head.kind)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
        x, y = torch.randn(a.batch, 3, 64, 64), torch.rand(a.batch) * 80
        times = []
        for i in range(a.steps + 2):
            t = time.perf_counter()
            loss = loss_fn(m(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i >= 2:
                times.append(time.perf_counter() - t)
        med = sorted(times)[len(times) // 2]
        rows.append({"model": name, "params_m": count_params(m) / 1e6, "macs_m": count_macs(m) / 1e6,
                     "s_per_batch": med, "images_per_s": a.batch / med, "threads": a.threads})
        print(f"{name:10s} {rows[-1]['params_m']:6.2f} M params  {rows[-1]['macs_m']:8.1f} M MACs  "
              f"{med:6.2f} s/batch  {a.batch / med:7.1f} img/s", flush=True)
    write_json(a.out, rows)


if __name__ == "__main__":
    main()
