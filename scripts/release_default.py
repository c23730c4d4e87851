"""Ship a run's best checkpoint as the package's default model.

    python scripts/release_default.py runs/mgpnet-t

Writes edgeage/assets/default.pt (fp16 weights + manifest), default-curve.png and
default-metrics.json (the run's training history); the recipe stays in train/recipes/."""
import shutil
import sys
from pathlib import Path

from edgeage.checkpoint import load_model, read_checkpoint, save_checkpoint

ASSETS = Path(__file__).resolve().parents[1] / "edgeage" / "assets"


def main(run: str) -> None:
    run = Path(run)
    ck = read_checkpoint(run / "best.pt")
    model, _ = load_model(run / "best.pt")
    save_checkpoint(ASSETS / "default.pt", model, ck["manifest"], half=True)
    shutil.copy(run / "curve.png", ASSETS / "default-curve.png")
    shutil.copy(run / "metrics.json", ASSETS / "default-metrics.json")
    t = ck["manifest"]["training"]
    print(f"shipped {run / 'best.pt'} (epoch {t['epoch']}, val MAE {t['val']['mae']:.3f}) "
          f"-> {ASSETS / 'default.pt'} ({(ASSETS / 'default.pt').stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main(sys.argv[1])
