"""Mapping a runtime graph's nodes to torch module names (for ``Runner.intermediates``).

Given the graph's nodes in topological order with the torch module path each came from, a
module's output is the output of the last node inside its scope (true for the sequential blocks
of these models; ``edgeage.export.conformance.localize.compare`` drops any shape mismatch)."""
from __future__ import annotations


def scope_outputs(items) -> dict:
    """{module path and each of its ancestors: output of the last node in that scope} from
    (module_path, output) pairs in topological order."""
    out = {}
    for scope, output in items:
        parts = scope.split(".") if scope else []
        for i in range(1, len(parts) + 1):
            out[".".join(parts[:i])] = output
    return out
