"""OpenVINO target: CPU plugin. ``[runtime.precision.<p>] inference_precision_hint`` sets
INFERENCE_PRECISION_HINT (f32 for fp32: CPUs with AMX/bf16 otherwise default to bf16),
``threads`` sets INFERENCE_NUM_THREADS, ``[runtime.properties]`` passes further CPU properties.
``[runtime] static_shapes = true``: the IR (saved with a dynamic batch) is reshaped to each
input's batch size before compiling, one compiled model per batch size seen (batch-1 latency
included). ``info`` records the hint requested, the one the plugin applied, the CPU's
OPTIMIZATION_CAPABILITIES and the runtime precisions of the compiled graph's ops.

The row's precision is the one that computes: fp32 -> f32, fp16 -> f16, bf16 -> bf16 (int8: its
float ops in the hint's precision, f32). The CPU plugin does not refuse a hint it cannot honour:
on a CPU without native f16 (x86 without AVX512-FP16 / AMX-FP16) ``f16`` silently runs bf16 (or
f32), and without AVX512-BF16 / AMX-BF16 ``bf16`` runs f32. The runner reads back the applied
precision and refuses (EdgeAgeError naming the row, the applied precision and the CPU's
capabilities) when it is not the row's, so no number is reported under another precision's
name; ``computes_natively`` tells ahead whether this CPU can run a row."""
from __future__ import annotations

import numpy as np

from edgeage.utils import EdgeAgeError, NotSupportedHere

from edgeage.targets.scopes import scope_outputs
from edgeage.targets.runner import BaseRunner

_PREFIX = "__module."  # friendly names of converted ops: "__module.<torch path>/aten::op/Op"

# The compute precision each row names (INFERENCE_PRECISION_HINT's spelling), the entry of the CPU
# plugin's OPTIMIZATION_CAPABILITIES that says the CPU computes it natively, and what provides it.
NAMED = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}
CAPABILITY = {"f32": "FP32", "f16": "FP16", "bf16": "BF16"}
HARDWARE = {"f16": "AVX512-FP16 or AMX-FP16 on x86, FP16 arithmetic on ARM",
            "bf16": "AVX512-BF16 or AMX-BF16 on x86"}
# Ops of the compiled graph that only hold or move data (not counted in runtime_op_precisions)
_DATA_OPS = {"Const", "Input", "Output", "Parameter", "Result", "Reorder", "Reshape"}
_COMPUTE_OPS = {"Convolution", "FullyConnected", "MatMul"}


def named_precision(precision: str, hint: str = "f32") -> str:
    """The compute precision a row names (int8 and others: the hint's)."""
    return NAMED.get(precision, hint)


def cpu_capabilities(core=None) -> list[str]:
    """The CPU plugin's OPTIMIZATION_CAPABILITIES (e.g. ['BF16', 'WINOGRAD', 'FP32', 'INT8', ...])."""
    import openvino as ov

    return [str(c) for c in (core or ov.Core()).get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


def computes_natively(precision: str, core=None) -> bool:
    """Whether this CPU computes the row's precision (its capability is listed)."""
    return CAPABILITY.get(named_precision(precision), "FP32") in cpu_capabilities(core)


def runtime_op_precisions(compiled) -> dict[str, dict[str, int]]:
    """Ops of the compiled (runtime) graph by runtime precision and layer type, data movement
    (constants, reorders, reshapes) left out: {"bf16": {"Convolution": 58, ...}, ...}."""
    out: dict[str, dict[str, int]] = {}
    for op in compiled.get_runtime_model().get_ops():
        rt = op.get_rt_info()
        if "runtimePrecision" not in rt or "layerType" not in rt:
            continue
        kind = rt["layerType"].astype(str)
        if kind in _DATA_OPS:
            continue
        by_kind = out.setdefault(rt["runtimePrecision"].astype(str), {})
        by_kind[kind] = by_kind.get(kind, 0) + 1
    return out


class Runner(BaseRunner):
    def __init__(self, artifact_dir, manifest, spec, threads):
        super().__init__(artifact_dir, manifest, spec, threads)
        import openvino as ov

        self.core = ov.Core()
        self.xml = self.path(".xml")
        hint = spec.runtime.get("precision", {}).get(self.precision, {}).get("inference_precision_hint", "f32")
        self.config = {**spec.runtime.get("properties", {}), "INFERENCE_PRECISION_HINT": hint,
                       "INFERENCE_NUM_THREADS": threads}
        self.static = bool(spec.runtime.get("static_shapes", False))
        self._requests: dict[int | None, object] = {}
        compiled = self._compile(1 if self.static else None)
        named = named_precision(self.precision, hint)
        applied = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        ops = runtime_op_precisions(compiled)
        self.info.update(inference_precision_named=named, inference_precision_hint=hint,
                         inference_precision_applied=applied,
                         properties={k: str(v) for k, v in self.config.items()},
                         static_shapes=self.static, cpu=str(self.core.get_property("CPU", "FULL_DEVICE_NAME")),
                         cpu_capabilities=cpu_capabilities(self.core), runtime_op_precisions=ops)
        self._refuse_other_precision(named, hint, applied, ops)

    def _refuse_other_precision(self, named: str, hint: str, applied: str, ops: dict) -> None:
        """EdgeAgeError unless the plugin computes in the row's precision: the applied
        INFERENCE_PRECISION_HINT is it, and for a reduced row its convolutions / matmuls run in it."""
        where = f"{self.xml}: the {self.precision} row computes in {named}, but "
        if hint != named:
            raise EdgeAgeError(where + f"[runtime.precision.{self.precision}] inference_precision_hint is "
                               f"{hint!r} in {self.spec.file}; set it to {named!r}")
        caps = self.info["cpu_capabilities"]
        cap = CAPABILITY.get(named, named.upper())
        if applied != named:
            import openvino as ov

            lacks = (f"has no native {named} compute (OPTIMIZATION_CAPABILITIES: {', '.join(caps)}; no {cap}"
                     + (f": {named} needs {HARDWARE[named]}" if named in HARDWARE else "") + ")"
                     if cap not in caps else f"lists {cap} in OPTIMIZATION_CAPABILITIES ({', '.join(caps)})")
            here = [p for p in ("bf16", "fp32") if p != self.precision and CAPABILITY[NAMED[p]] in caps]
            raise NotSupportedHere(
                where + f"OpenVINO {ov.get_version().split('-')[0]}'s CPU plugin applied {applied} "
                f"(INFERENCE_PRECISION_HINT {hint} requested): this CPU ({self.info['cpu']}) {lacks}. "
                f"Refusing to report {applied} numbers as {self.precision}: check the {self.precision} "
                f"artifact on a CPU with {cap}" + (f", or --precision {' / '.join(here)} here" if here else ""))
        if named != "f32" and ops:
            convs = {p for p, kinds in ops.items() if _COMPUTE_OPS & set(kinds)}
            if named not in convs:
                raise NotSupportedHere(where + f"the CPU plugin applied {applied} yet runs no convolution / matmul "
                                   f"in it (runtime precisions: {ops}); this CPU ({self.info['cpu']}) cannot "
                                   f"run the {self.precision} row")

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
        import openvino as ov

        req = self._request(len(x))  # the input shared, not copied (the request keeps no reference after infer)
        req.set_input_tensor(ov.Tensor(np.ascontiguousarray(x, np.float32), shared_memory=True))
        req.infer()
        return np.array(req.get_output_tensor(0).data, np.float32, copy=True)

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

    def coverage(self) -> dict:
        """Ops of the compiled model by the precision the CPU plugin runs them in (for INT8:
        what stays outside the integer kernels)."""
        return {"runtime_precisions": self.info.get("runtime_op_precisions", {}),
                "applied_precision": self.info.get("inference_precision_applied")}

    @staticmethod
    def integer_kernel(op_type: str) -> bool:
        """An op_profile key ("Convolution / brgconv_avx512_I8") that is an INT8 convolution or
        matmul kernel (the plugin names the kernel's precision in its exec type)."""
        node, _, kernel = op_type.partition(" / ")
        return (node.startswith(("Convolution", "GroupConvolution", "MatMul", "FullyConnected"))
                and ("I8" in kernel.upper() or "U8" in kernel.upper()))

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
