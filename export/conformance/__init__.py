"""Conformance: an exported model against the float model it came from, on the same tensors
(``check``: drift, accuracy, the target TOML's thresholds; ``bench``: every target x
precision), with latency and memory in fresh processes (``latency``), layer-by-layer drift
(``localize``), peer models as reference rows (``peer``), the whole pipeline's rate
(``pipeline_bench``) and the reports (``report``). ``cli``: ``edgeage check``, ``bench`` and
``pipeline-bench``."""
