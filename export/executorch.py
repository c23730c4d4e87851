"""ExecuTorch exporter: torch.export -> to_edge_transform_and_lower with the XNNPACK partitioner
-> .pte. Beside the model it writes ``lowering.json``: how many XNNPACK delegate segments the
graph has and which ops run as portable kernels between them (each boundary costs a copy out of
and into XNNPACK: a latency lever).

The batch is static (1; the runner loops). A dynamic batch was measured worse for the edge case:
XNNPACK does not take view_copy with a symbolic batch, so every reshape (channel shuffle,
SoftPool, ECA) splits the graph (3x the segments, slower at batch 1), and torch's fake conv
kernel guards the symbolic batch to [2, 15] when the example batch is below 16."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from edgeage.utils import EdgeAgeError

from .artifact import step

PRECISIONS = ("fp32",)
MODEL_FILE = "model.pte"
LOWERING_FILE = "lowering.json"


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

    with step("torch.export.export"):
        ep = torch.export.export(model.eval(), (example[:1].float().contiguous(),))
    with step("to_edge_transform_and_lower (XnnpackPartitioner)"):
        edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])
    report = lowering_report(edge.exported_program().graph_module)
    with step("to_executorch"):
        program = edge.to_executorch()
    out_dir = Path(out_dir)
    (out_dir / MODEL_FILE).write_bytes(program.buffer)
    (out_dir / LOWERING_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return [MODEL_FILE, LOWERING_FILE]
