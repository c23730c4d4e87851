"""ExecuTorch exporter: torch.export (dynamic batch) -> to_edge_transform_and_lower with the
XNNPACK partitioner -> .pte. Beside the model it writes ``lowering.json``: how many XNNPACK
delegate segments the graph has and which ops run as portable kernels between them (each
boundary costs a copy out of and into XNNPACK: a latency lever).

The batch is dynamic but memory-planned to an upper bound. torch's fake conv kernel guards on
batch < 16 when the example batch is below 16, so the bound the .pte ends up with can be lower
than the one asked for; the runner reads it from the program and runs in chunks."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from edgeage.utils import EdgeAgeError

PRECISIONS = ("fp32",)
MODEL_FILE = "model.pte"
LOWERING_FILE = "lowering.json"
DEFAULT_MAX_BATCH = 16


def _step(name: str, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - reported with the step and the op in the message
        raise EdgeAgeError(f"executorch: {name} failed ({type(e).__name__}: "
                           f"{str(e).strip()[:800]})") from e


def lowering_report(graph_module: torch.fx.GraphModule) -> dict:
    """XNNPACK segments and the ops left outside them, from the lowered edge graph."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(graph_module)
    outside = {op: b.non_delegated for op, b in info.delegation_by_operator.items()
               if b.non_delegated and op not in ("getitem", "sym_size")}
    return {"delegate": "XnnpackBackend",
            "segments": info.num_delegated_subgraphs,
            "delegated_nodes": info.num_delegated_nodes,
            "non_delegated_nodes": info.num_non_delegated_nodes,
            "ops_outside_delegate": dict(sorted(outside.items(), key=lambda kv: -kv[1]))}


def export(model: torch.nn.Module, example: torch.Tensor, out_dir: Path, precision: str,
           spec: dict, calib: np.ndarray | None = None) -> list[str]:
    if precision not in PRECISIONS:
        raise EdgeAgeError(f"executorch: precision {precision!r} is not supported by this "
                           f"exporter (supported: {', '.join(PRECISIONS)})")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    max_batch = int(spec.get("export", {}).get("max_batch", DEFAULT_MAX_BATCH))
    example = example.float().contiguous()
    dyn = ({0: torch.export.Dim("batch", min=1, max=max(max_batch, example.shape[0]))},)
    ep = _step("torch.export.export", torch.export.export, model.eval(), (example,),
               dynamic_shapes=dyn)
    edge = _step("to_edge_transform_and_lower (XNNPACK)", to_edge_transform_and_lower, ep,
                 partitioner=[XnnpackPartitioner()])
    report = lowering_report(edge.exported_program().graph_module)
    program = _step("to_executorch", edge.to_executorch)
    out_dir = Path(out_dir)
    (out_dir / MODEL_FILE).write_bytes(program.buffer)
    meta = Runtime.get().load_program(program.buffer).metadata("forward")
    report["planned_batch"] = int(meta.input_tensor_meta(0).sizes()[0])
    (out_dir / LOWERING_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return [MODEL_FILE, LOWERING_FILE]
