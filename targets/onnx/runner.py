"""ONNX target: onnxruntime, CPU execution provider, intra-op threads from the TOML."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from edgeage.targets.scopes import scope_outputs
from edgeage.targets.runner import BaseRunner

_FLOATS = {1, 10, 11, 16}  # onnx.TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


class Runner(BaseRunner):
    def __init__(self, artifact_dir, manifest, spec, threads):
        super().__init__(artifact_dir, manifest, spec, threads)
        self.model_path = self.path(".onnx")
        self.optimization = spec.runtime.get("graph_optimization", "ORT_ENABLE_ALL")
        # from the verified bytes: an external-data file beside the model (which no sha256 covers)
        # is never read; a model that needs one fails to load here
        self.session = self._session(self.verified_bytes(".onnx"))
        self.input = self.session.get_inputs()[0].name
        self.info.update(provider=self.session.get_providers()[0], graph_optimization=self.optimization)

    def _session(self, model, profile_prefix: str | None = None):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = self.threads, 1
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, self.optimization)
        so.log_severity_level = 3
        if profile_prefix:
            so.enable_profiling, so.profile_file_prefix = True, profile_prefix
        return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: x})[0]

    def coverage(self) -> dict:
        """The execution providers the session runs on and the graph's op types (ONNX Runtime does
        not say per node which kernels are its fast ones; on CPU every node runs on the CPU EP)."""
        out = {"execution_providers": self.session.get_providers()}
        try:
            import onnx
        except ImportError:  # the device side may not have the onnx package
            return out
        counts: dict[str, int] = {}
        for node in onnx.load(str(self.model_path), load_external_data=False).graph.node:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
        out["op_types"] = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
        return out

    def intermediates(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every node's output exposed as an extra graph output, mapped to torch module names
        through the ``edgeage.module`` node metadata (the exporter's name scopes, slimmed)."""
        import onnx

        m = onnx.load(str(self.model_path))
        g = onnx.shape_inference.infer_shapes(m).graph
        types = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.output]}
        items = []
        for node in m.graph.node:
            meta = {p.key: p.value for p in node.metadata_props}
            module = meta.get("edgeage.module")  # written by edgeage.targets.onnx.exporter.slim
            if module is None and "pkg.torch.onnx.name_scopes" in meta:  # an unslimmed export
                scopes = ast.literal_eval(meta["pkg.torch.onnx.name_scopes"])  # [..., module, fx node]
                module = scopes[-2] if len(scopes) >= 2 else None
            if node.op_type != "Constant" and module and types.get(node.output[0]) in _FLOATS:
                items.append((module, node.output[0]))
        mapping = scope_outputs(items)
        present = {o.name for o in m.graph.output}
        names = sorted(set(mapping.values()))
        m.graph.output.extend(onnx.helper.make_tensor_value_info(n, types[n], None) for n in names if n not in present)
        outs = dict(zip(names, self._session(m.SerializeToString()).run(names, {self.input: x})))
        return {mod: outs[n].astype(np.float32) for mod, n in mapping.items()}

    def op_profile(self, x1: np.ndarray, runs: int) -> dict[str, float]:
        """onnxruntime's profiler (SessionOptions.enable_profiling): node kernel times by op type."""
        import json
        import tempfile

        with tempfile.TemporaryDirectory(prefix="edgeage-ortprof-") as tmp:
            sess = self._session(str(self.model_path), profile_prefix=str(Path(tmp) / "ort"))
            for _ in range(10 + runs):
                sess.run(None, {self.input: x1})
            events = json.loads(Path(sess.end_profiling()).read_text())
        # the timed runs are the last ``runs`` "model_run" spans; node kernels inside them count
        spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[-runs:]
        start = spans[0][0] if spans else 0
        total: dict[str, float] = {}
        for e in events:
            if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time") and e["ts"] >= start:
                k = e.get("args", {}).get("op_name", "?")
                total[k] = total.get(k, 0.0) + e["dur"] / 1e3
        return {k: v / max(1, len(spans)) for k, v in total.items()}
