"""OpenVINO export: ``openvino.convert_model`` from the nn.Module (dynamic batch) and
``openvino.save_model`` (.xml + .bin). Weights are stored as fp16 only where the TOML's
``[runtime.precision.<p>] compress_to_fp16`` says so; the compute precision is chosen when the
runner compiles the model (INFERENCE_PRECISION_HINT)."""
from __future__ import annotations

from pathlib import Path

import torch

from .artifact import step

FILES = ["model.xml", "model.bin"]


def export(model: torch.nn.Module, example: torch.Tensor, out_dir: Path, precision: str, spec: dict,
           calib=None) -> list[str]:
    import openvino as ov

    cfg = spec["runtime"].get("precision", {}).get(precision, {})
    with step("openvino.convert_model"):
        om = ov.convert_model(model, example_input=example,
                              input=[ov.PartialShape([-1, *example.shape[1:]])])
    with step("openvino.save_model"):
        ov.save_model(om, Path(out_dir) / FILES[0], compress_to_fp16=bool(cfg.get("compress_to_fp16", False)))
    return FILES
