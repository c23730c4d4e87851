"""The arguments every per-shipped-model evidence script takes (``degradation_ops.py``,
``tta_flip.py``): which models, which data and split, the degradation seed, where to write."""
from __future__ import annotations

import argparse
from pathlib import Path


def evidence_parser(doc: str, out: str) -> argparse.ArgumentParser:
    """``--model`` (repeatable; default: every shipped model), ``--data``, ``--split``, ``--seed``, ``--out``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--model", action="append", help="repeatable; default: every shipped model")
    ap.add_argument("--data", default=".cache/utk-prepared")
    ap.add_argument("--split", default="test", choices=["all", "train", "val", "test"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(out))
    return ap
