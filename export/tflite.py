"""TFLite (LiteRT) export: litert-torch converts the nn.Module straight to a .tflite flatbuffer
(no TensorFlow). The graph keeps the NCHW input (a TRANSPOSE to NHWC is its first op) and ends
at the logits.

litert-torch 0.10 cannot lower this network with a dynamic batch (its JAX bridge needs concrete
shapes), so the file has a static batch of 1 and the runner loops over the batch."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from edgeage.utils import EdgeAgeError

from .artifact import step

PRECISIONS = ("fp32",)
MODEL_FILE = "model.tflite"


def export(model: torch.nn.Module, example: torch.Tensor, out_dir: Path, precision: str,
           spec: dict, calib: np.ndarray | None = None) -> list[str]:
    if precision not in PRECISIONS:
        raise EdgeAgeError(f"tflite: precision {precision!r} is not supported by this exporter "
                           f"(supported: {', '.join(PRECISIONS)})")
    import litert_torch

    # litert-torch prints a progress tree on stdout unless told not to
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    with step("litert_torch.convert"):
        edge_model = litert_torch.convert(model.eval(), (example[:1].float().contiguous(),))
    with step(f"write {MODEL_FILE}"):
        edge_model.export(str(Path(out_dir) / MODEL_FILE))
    return [MODEL_FILE]
