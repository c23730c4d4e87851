"""Average the weights of two checkpoints of one model: ``(1 - alpha) * A + alpha * B``
(edgeage.train.average: a weight-space ensemble, as in WiSE-FT).

    python scripts/average_weights.py A.pt B.pt --alpha 0.5 --out averaged.pt [--no-validate]

The output keeps B's manifest with ``training.averaged_from`` (both parents, alpha) and its
validation MAE measured again on B's recipe's data and split (``--no-validate``: keep B's, e.g.
when that data is not here). Choose alpha on the validation split (``edgeage eval --split val``),
never on the test split; ship the result with ``scripts/release_default.py --average-with``."""
from __future__ import annotations

import argparse
from pathlib import Path

from edgeage.checkpoint import save_checkpoint
from edgeage.train.average import average_checkpoints, revalidate
from edgeage.utils import EdgeAgeError


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--alpha", type=float, default=0.5, help="weight of B (default 0.5)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--no-validate", action="store_true", help="keep B's validation record")
    args = ap.parse_args()
    try:
        model, manifest = average_checkpoints(args.a, args.b, args.alpha)
        if not args.no_validate:
            manifest = revalidate(model, manifest)
    except EdgeAgeError as e:
        raise SystemExit(f"error: {e}") from None
    save_checkpoint(args.out, model, manifest)
    val = (manifest.training.val or {}).get("mae", float("nan"))
    note = " (B's, not measured again)" if args.no_validate else ""
    print(f"{args.out}: (1 - {args.alpha}) * {args.a} + {args.alpha} * {args.b}; validation MAE {val:.3f}{note}")


if __name__ == "__main__":
    main()
