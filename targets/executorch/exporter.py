"""ExecuTorch exporter: torch.export -> to_edge_transform_and_lower with the XNNPACK partitioner
-> .pte. Beside the model it writes ``lowering.json``: how many XNNPACK delegate segments the
graph has and which ops run as portable kernels between them (each boundary costs a copy out of
and into XNNPACK: a latency lever).

The batch is static (1; the runner loops). A dynamic batch was measured worse for the edge case:
XNNPACK does not take view_copy with a symbolic batch, so every reshape (channel shuffle,
SoftPool, ECA) splits the graph (3x the segments, slower at batch 1), and torch's fake conv
kernel guards the symbolic batch to [2, 15] when the example batch is below 16.

int8: PT2E with the XNNPACKQuantizer (symmetric, per-channel weights; conv / linear patterns
only, see ``quantizer``): prepare_pt2e on the
exported graph, calibration image by image, convert_pt2e, then the same lowering (XNNPACK runs
the quantized convs / linears; ``calib`` is an ``edgeage.backend.Int8Options``). QAT:
``qat_prepare`` / ``qat_convert`` (prepare_qat_pt2e on a dynamic-batch graph)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from edgeage.utils import EdgeAgeError, capture_native_output

from edgeage.backend import TargetSpec, step

PRECISIONS = ("fp32", "int8")
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


def quantizer(qat: bool = False):
    """XNNPACKQuantizer (symmetric, per-channel weights) restricted to its conv / linear patterns
    (conv+bn(+relu) for QAT): the elementwise int8 patterns (add, mul, cat, adaptive_avg_pool2d)
    lower to XNNPACK kernels that do not reproduce the quantized graph here. Measured on a tiny
    MGP-Net and 32 face crops: with them the .pte moved ages by 1.2-12.8 years at p50 while the
    same PT2E graph run in PyTorch moved them by 0.13; conv/linear only: 0.035."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)

    class ConvLinearQuantizer(XNNPACKQuantizer):
        SUPPORTED_PATTERNS = [p for p in XNNPACKQuantizer.SUPPORTED_PATTERNS if p.name.startswith(("conv", "linear"))]

    return ConvLinearQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=qat))


def simulate(model, example, opts, spec):
    """The PTQ result as a torch GraphModule (q/dq in float: for accuracy control)."""
    from edgeage.targets.int8_pt2e import pt2e_ptq

    return pt2e_ptq(model, example, quantizer(), opts)


def qat_prepare(model, example, opts, spec):
    from edgeage.targets.int8_pt2e import pt2e_qat_prepare

    return pt2e_qat_prepare(model, example, quantizer(qat=True), opts)


def qat_convert(prepared, example, spec):
    from edgeage.targets.int8_pt2e import pt2e_qat_convert

    return pt2e_qat_convert(prepared, example)


def export(model: torch.nn.Module, example: torch.Tensor, out_dir: Path, precision: str,
           spec: TargetSpec, calib=None) -> list[str]:
    if precision not in PRECISIONS:
        raise EdgeAgeError(f"executorch: precision {precision!r} is not supported by this "
                           f"exporter (supported: {', '.join(PRECISIONS)})")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    if precision == "int8" and not calib.quantized:
        with step("PT2E quantization (XNNPACKQuantizer: prepare_pt2e, calibrate, convert_pt2e)"):
            model = simulate(model, example, calib, spec)
    model.eval()  # (on an exported GraphModule eval() returns None)
    with step("torch.export.export"):
        ep = torch.export.export(model, (example[:1].float().contiguous(),))
    with step("to_edge_transform_and_lower (XnnpackPartitioner)"):
        edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])
    report = lowering_report(edge.exported_program().graph_module)
    with step("to_executorch"):
        program = edge.to_executorch()
    out_dir = Path(out_dir)
    (out_dir / MODEL_FILE).write_bytes(program.buffer)
    with step("load the program in the ExecuTorch runtime (XNNPACK builds its graph)"):
        check_loads(out_dir / MODEL_FILE, precision)
    (out_dir / LOWERING_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return [MODEL_FILE, LOWERING_FILE]


def check_loads(path: Path, precision: str) -> None:
    """Load the .pte as a device would (Runtime -> load_method, where XNNPACK builds its graph).
    The partitioner can hand XNNPACK a node its runtime then refuses (INT8: a StaticConstantPad of
    mivolo-face's quantized values, a convolution of swinface-age's), which otherwise surfaced
    only at check time as an unloadable file; the export fails here instead, naming the node
    XNNPACK refused (from the runtime's log on stderr) and the target."""
    import re

    from executorch.runtime import Runtime

    with capture_native_output() as log:  # the runtime logs from C++ (on fd 2; fd 1 too, to be sure)
        try:
            program = Runtime.get().load_program(path)
            program.load_method("forward")
            return
        except Exception as e:  # noqa: BLE001 - reported below with the runtime's reason
            err = e
    text = log.text
    nodes = re.findall(r"Failed to create (.+? node \d+) with code: (\w+)", text)
    what = ("; ".join(f"{n} ({code})" for n, code in nodes) or
            f"a node ({type(err).__name__}: {err}; the runtime's log on stderr names it)")
    raise EdgeAgeError(f"executorch {precision}: the ExecuTorch runtime cannot load the lowered program: "
                       f"XNNPACK refused {what}. The partitioner delegated an op its runtime does not "
                       "build at this precision; this model does not run on this target")
