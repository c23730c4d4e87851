"""ExecuTorch target: executorch.runtime (portable kernels + the XNNPACK delegate) on the .pte.
NCHW float32 in, raw outputs [N, K] out, in chunks of the program's planned batch (1 for what
the exporter writes). The XNNPACK thread pool is process-wide: a Runner resets it to ``threads``."""
from __future__ import annotations

import json

import numpy as np

from edgeage.utils import EdgeAgeError

from edgeage.targets.runner import BaseRunner


def set_threads(threads: int) -> None:
    import executorch.extension.pybindings.portable_lib as lib

    if lib._threadpool_get_thread_count() != int(threads):  # noqa: SLF001 - no public API
        lib._unsafe_reset_threadpool(int(threads))  # noqa: SLF001


class Runner(BaseRunner):
    def __init__(self, artifact_dir, manifest, spec, threads):
        super().__init__(artifact_dir, manifest, spec, threads)
        from executorch.runtime import Runtime

        self.model_path = self.path(".pte")
        set_threads(threads)
        try:  # keep the Program: its Method points into the program's data
            self.program = Runtime.get().load_program(self.model_path)
            self.method = self.program.load_method("forward")
        except Exception as e:  # noqa: BLE001 - any load failure means a bad file
            raise EdgeAgeError(f"{self.model_path}: not a loadable ExecuTorch program ({type(e).__name__}: "
                               f"{e}); the file may be truncated or corrupted: re-export it with "
                               "`edgeage export`") from None
        meta = self.method.metadata
        if meta.num_inputs() != 1 or meta.num_outputs() != 1:
            raise EdgeAgeError(f"{self.model_path}: expected one input and one output, got "
                               f"{meta.num_inputs()} and {meta.num_outputs()}")
        self.batch = int(meta.input_tensor_meta(0).sizes()[0])
        lowering = self.artifact_dir / "lowering.json"
        if lowering.is_file():
            rep = json.loads(lowering.read_text())
            self.info.update(xnnpack_segments=rep["segments"], ops_outside_delegate=rep["ops_outside_delegate"])

    def coverage(self) -> dict:
        """XNNPACK segments and the ops left outside them (the exporter's lowering.json)."""
        if "xnnpack_segments" not in self.info:
            return {"note": "the artifact has no lowering.json (exported before edgeage recorded it)"}
        return {"delegate": "XnnpackBackend", "segments": self.info["xnnpack_segments"],
                "ops_outside_delegate": self.info["ops_outside_delegate"]}

    def op_profile(self, x1: np.ndarray, runs: int) -> dict[str, float]:
        """ExecuTorch's own event tracer (ETDump, read by ``executorch.devtools.Inspector``): the
        XNNPACK delegate's per-kernel events ("Convolution (NHWC, F32) IGEMM", ...) of ``runs``
        batch-1 inferences after 10 warm-up runs, ms per inference summed by kernel type."""
        import re
        import tempfile

        import torch
        from executorch.devtools import Inspector
        from executorch.runtime import Runtime

        program = Runtime.get().load_program(self.model_path, enable_etdump=True)
        method = program.load_method("forward")
        x = torch.from_numpy(np.ascontiguousarray(x1[:self.batch], np.float32))
        warmup = 10
        for _ in range(warmup + runs):
            method.execute([x])
        with tempfile.TemporaryDirectory(prefix="edgeage-etdump-") as tmp:
            path = f"{tmp}/model.etdp"
            program.write_etdump_result_to_file(path, f"{tmp}/debug.bin")
            inspector = Inspector(etdump_path=path)
            totals: dict[str, float] = {}
            skip = ("Program::", "Method::", "DELEGATE_CALL")
            for block in inspector.event_blocks:
                for ev in block.events:
                    if ev.perf_data is None or ev.name.startswith(skip):
                        continue
                    kind = re.sub(r"\s*#\d+$", "", ev.name)
                    totals[kind] = totals.get(kind, 0.0) + float(sum(ev.perf_data.raw[-runs:]))
        return {k: v / runs for k, v in totals.items()}

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        outs = [self.method.execute([x[i:i + self.batch]])[0].numpy().copy()
                for i in range(0, len(x), self.batch)]
        return np.concatenate(outs).astype(np.float32, copy=False)
