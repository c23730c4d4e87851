"""TFLite (LiteRT) exporter: litert-torch converts the nn.Module straight to a .tflite flatbuffer
(no TensorFlow). The graph keeps the NCHW input and ends at the logits.

litert-torch 0.10 cannot lower this network with a dynamic batch (its JAX bridge needs concrete
shapes), so the file has a static batch of 1 and the runner loops over the batch."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import torch

from edgeage.utils import EdgeAgeError

PRECISIONS = ("fp32",)
MODEL_FILE = "model.tflite"


@contextlib.contextmanager
def _quiet_progress():
    """litert-torch prints a progress tree unless LITERT_TORCH_SHOW_PROGRESS=n; restore after."""
    key, old = "LITERT_TORCH_SHOW_PROGRESS", os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    os.environ[key] = "n"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def export(model: torch.nn.Module, example: torch.Tensor, out_dir: Path, precision: str,
           spec: dict, calib: np.ndarray | None = None) -> list[str]:
    if precision not in PRECISIONS:
        raise EdgeAgeError(f"tflite: precision {precision!r} is not supported by this exporter "
                           f"(supported: {', '.join(PRECISIONS)})")
    import litert_torch

    sample = (example[:1].float().contiguous(),)
    with _quiet_progress():
        try:
            edge_model = litert_torch.convert(model.eval(), sample)
        except Exception as e:  # noqa: BLE001 - any converter failure is reported with its op
            raise EdgeAgeError(f"tflite: litert_torch.convert failed ({type(e).__name__}: "
                               f"{str(e).strip()[:800]})") from e
        try:
            edge_model.export(str(Path(out_dir) / MODEL_FILE))
        except Exception as e:  # noqa: BLE001
            raise EdgeAgeError(f"tflite: writing {MODEL_FILE} failed ({type(e).__name__}: {e})") from e
    return [MODEL_FILE]
