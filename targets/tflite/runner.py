"""TFLite target: the LiteRT interpreter (ai-edge-litert, XNNPACK delegate on by default),
``threads`` from the TOML. NCHW float32 in, raw outputs [N, K] out; a file with a static batch of
1 (what the exporter writes) runs one image at a time; an NHWC input is fed transposed. An int8
file whose input / output tensors are quantized (litert-torch's PT2E files) gets its input
quantized and its output dequantized with the tensors' own scale and zero point."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeage.utils import EdgeAgeError

from edgeage.targets.scopes import scope_outputs
from edgeage.targets.runner import BaseRunner

_PERM_LAYOUT = {(0, 2, 3, 1): "NHWC", (0, 3, 1, 2): "NCHW"}


def load_interpreter(path: Path, threads: int, preserve_all: bool = False):
    from edgeage.litert import interpreter

    try:
        it = interpreter(path, threads, experimental_preserve_all_tensors=preserve_all)
    except (ValueError, RuntimeError) as e:
        raise EdgeAgeError(f"{path}: not a loadable TFLite model ({str(e).strip()}); the file may "
                           "be truncated or corrupted: re-export it with `edgeage export`") from None
    return it


class Runner(BaseRunner):
    def __init__(self, artifact_dir, manifest, spec, threads):
        super().__init__(artifact_dir, manifest, spec, threads)
        self.model_path = self.path(".tflite")
        self.interp = load_interpreter(self.model_path, threads)
        self._debug = self._scopes = None
        inp, out = self.interp.get_input_details(), self.interp.get_output_details()
        if len(inp) != 1 or len(out) != 1:
            raise EdgeAgeError(f"{self.model_path}: expected one input and one output, got "
                               f"{len(inp)} and {len(out)}")
        shape = [int(d) for d in inp[0]["shape"]]
        self.nhwc = shape[1] != 3 and shape[-1] == 3
        self.batch = shape[0]
        self.info.update(input_shape=shape, input_layout="NHWC" if self.nhwc else "NCHW")

    def _chunks(self, x: np.ndarray):
        for i in range(0, len(x), self.batch):
            c = x[i:i + self.batch]
            yield np.ascontiguousarray(c.transpose(0, 2, 3, 1) if self.nhwc else c, np.float32)

    @staticmethod
    def _invoke(it, x: np.ndarray) -> None:
        d = it.get_input_details()[0]
        if d["dtype"] != np.float32:  # an int8 file with a quantized input: quantize with its params
            scale, zp = d["quantization"]
            info = np.iinfo(d["dtype"])
            x = np.clip(np.round(x / scale) + zp, info.min, info.max).astype(d["dtype"])
        it.set_tensor(d["index"], x)
        it.invoke()

    def run(self, x: np.ndarray) -> np.ndarray:
        d = self.interp.get_output_details()[0]
        outs = []
        for chunk in self._chunks(np.asarray(x, np.float32)):
            self._invoke(self.interp, chunk)
            outs.append(self.interp.get_tensor(d["index"]).copy())
        out = np.concatenate(outs)
        if d["dtype"] != np.float32:  # quantized output: dequantize with its params
            scale, zp = d["quantization"]
            out = (out.astype(np.float32) - zp) * scale
        return out.astype(np.float32, copy=False)

    def intermediates(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """torch module name -> its output (NCHW), from the interpreter's preserved tensors.

        litert-torch names each tensor after the module path it came from; a module's output is
        the last op inside its scope (``scope_outputs``). The graph runs NHWC inside: layouts are
        followed from the NCHW input through the TRANSPOSE ops, and NHWC tensors transposed back.
        Modules fused away (conv+BN+ReLU) and ModuleList members are not found."""
        if self._debug is None:
            self._debug = load_interpreter(self.model_path, self.threads, preserve_all=True)
            self._scopes = graph_scopes(self.model_path)
        it, per_chunk = self._debug, []
        for chunk in self._chunks(np.asarray(x, np.float32)):
            self._invoke(it, chunk)
            per_chunk.append({idx: it.get_tensor(idx).copy() for _, idx, _ in self._scopes})
        items = []
        for scope, idx, nhwc in self._scopes:
            v = np.concatenate([c[idx] for c in per_chunk])
            items.append((scope, v.transpose(0, 3, 1, 2) if nhwc else v))
        return scope_outputs(items)


def module_path(tensor_name: str) -> str:
    """'pkg.AgeModel/pkg.MGPNetBackbone_backbone/torch...Sequential_stem/...Conv2d_0;2' (fused
    ops list several such locations, joined by ';;', the op's own first) -> 'backbone.stem.0'."""
    loc = tensor_name.split(";;")[0].split(";")[0]
    return ".".join(p.rsplit(".", 1)[-1].lstrip("_").partition("_")[2] for p in loc.split("/")[1:])


def graph_scopes(path: Path) -> list[tuple[str, int, bool]]:
    """(torch module path, output tensor index, is NHWC) of every float op output but the
    layout transposes, in execution order, from the graph before delegation."""
    from edgeage.litert import interpreter

    it = interpreter(path, allocate=False)
    details = {t["index"]: t for t in it.get_tensor_details()}
    layout = {d["index"]: "NCHW" for d in it.get_input_details()}
    items = []
    for op in it._get_ops_details():  # noqa: SLF001 - the public API has no op list
        ins = [int(i) for i in op["inputs"] if i >= 0]
        if op["op_name"] == "TRANSPOSE":
            lay = _PERM_LAYOUT.get(tuple(int(v) for v in it.get_tensor(ins[1])))
        elif op["op_name"] == "RESHAPE":  # reshapes keep torch's (NCHW) semantics
            lay = "NCHW"
        else:
            lay = next((layout[i] for i in ins if i in layout), None)
        for o in map(int, op["outputs"]):
            if len(details[o]["shape"]) == 4:
                layout[o] = lay
            if op["op_name"] != "TRANSPOSE" and details[o]["dtype"] == np.float32 \
                    and "/" in details[o]["name"]:
                items.append((module_path(details[o]["name"]), o, layout.get(o) == "NHWC"))
    return items
