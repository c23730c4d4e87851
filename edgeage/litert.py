"""LiteRT (TFLite) interpreters, created quietly: the runtime's native INFO lines ("Created
TensorFlow Lite XNNPACK delegate for CPU.") are dropped unless ``edgeage -v``; anything else it
writes (warnings, errors) is passed on to stderr."""
from __future__ import annotations

from pathlib import Path

from .utils import capture_native_output, verbose


def interpreter(path: str | Path, threads: int = 1, allocate: bool = True, **kw):
    from ai_edge_litert.interpreter import Interpreter

    log = None
    try:
        with capture_native_output() as log:
            it = Interpreter(model_path=str(path), num_threads=int(threads), **kw)
            if allocate:
                it.allocate_tensors()
    finally:
        if log is not None:
            log.replay(drop=lambda ln: not verbose() and ln.startswith("INFO: "))
    return it
