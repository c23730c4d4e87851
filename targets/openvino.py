"""OpenVINO target: CPU plugin. ``[runtime.precision.<p>] inference_precision_hint`` sets
INFERENCE_PRECISION_HINT (f32 for fp32: CPUs with AMX/bf16 otherwise default to bf16),
``threads`` sets INFERENCE_NUM_THREADS, ``[runtime.properties]`` passes further CPU properties.
``[runtime] static_shapes = true``: the IR (saved with a dynamic batch) is reshaped to each
input's batch size before compiling, one compiled model per batch size seen (batch-1 latency
included). ``info`` records the hint requested and the one the plugin applied."""
from __future__ import annotations

import numpy as np

from .localize import scope_outputs
from .runner import BaseRunner

_PREFIX = "__module."  # friendly names of converted ops: "__module.<torch path>/aten::op/Op"


class Runner(BaseRunner):
    def __init__(self, artifact_dir, manifest, spec, threads):
        super().__init__(artifact_dir, manifest, spec, threads)
        import openvino as ov

        self.core = ov.Core()
        self.xml = self.path(".xml")
        hint = spec["runtime"].get("precision", {}).get(self.precision, {}).get("inference_precision_hint", "f32")
        self.config = {**spec["runtime"].get("properties", {}), "INFERENCE_PRECISION_HINT": hint,
                       "INFERENCE_NUM_THREADS": threads}
        self.static = bool(spec["runtime"].get("static_shapes", False))
        self._requests: dict[int | None, object] = {}
        compiled = self._compile(1 if self.static else None)
        self.info.update(inference_precision_hint=hint,
                         inference_precision_applied=compiled.get_property("INFERENCE_PRECISION_HINT").to_string(),
                         properties={k: str(v) for k, v in self.config.items()},
                         static_shapes=self.static)

    def _model(self, batch: int | None):
        """The IR, reshaped to a static batch size when ``batch`` is given."""
        model = self.core.read_model(self.xml)
        if batch is not None:
            shape = model.input(0).get_partial_shape()
            shape[0] = batch
            model.reshape({model.input(0): shape})
        return model

    def _compile(self, batch: int | None, extra: dict | None = None):
        compiled = self.core.compile_model(self._model(batch), "CPU", {**self.config, **(extra or {})})
        if extra is None:
            self._requests[batch] = compiled.create_infer_request()
        return compiled

    def _request(self, batch: int):
        key = batch if self.static else None
        if key not in self._requests:
            self._compile(key)
        return self._requests[key]

    def run(self, x: np.ndarray) -> np.ndarray:
        return np.array(self._request(len(x)).infer({0: x})[0], np.float32, copy=True)

    def intermediates(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs of the converted model's ops (named after torch modules) added as model
        outputs, compiled with the same settings."""
        model = self._model(len(x) if self.static else None)
        items = []
        for op in model.get_ordered_ops():
            name = op.get_friendly_name()
            if (name.startswith(_PREFIX) and op.get_output_size() and op.get_output_element_type(0).is_real()
                    and not all(i.get_source_output().get_node().get_type_name() == "Constant" for i in op.inputs())):
                items.append((name[len(_PREFIX):].split("/")[0], op))
        mapping = scope_outputs(items)
        ops = list({op.get_friendly_name(): op for op in mapping.values()}.values())
        names = {op.get_friendly_name(): out.get_any_name()
                 for op, out in zip(ops, model.add_outputs([op.output(0) for op in ops]))}
        compiled = self.core.compile_model(model, "CPU", self.config)
        res = compiled({0: x})
        return {mod: np.asarray(res[compiled.output(names[op.get_friendly_name()])], np.float32)
                for mod, op in mapping.items()}

    def op_profile(self, x1: np.ndarray, runs: int) -> dict[str, float]:
        """CPU plugin performance counters (PERF_COUNT), by "layer type / kernel" (e.g.
        "Convolution / brgconv_avx512_I8"), same settings as the timed model."""
        req = self._compile(1 if self.static else None, {"PERF_COUNT": True}).create_infer_request()
        for _ in range(10):
            req.infer({0: x1})
        total: dict[str, float] = {}
        for _ in range(runs):
            req.infer({0: x1})
            for p in req.get_profiling_info():
                if p.status == p.Status.EXECUTED:
                    k = f"{p.node_type} / {p.exec_type}"
                    total[k] = total.get(k, 0.0) + p.real_time.total_seconds() * 1e3
        return {k: v / runs for k, v in total.items()}
