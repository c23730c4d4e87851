"""Targets stage of edgeage: one runtime runner per target, conformance checks, latency profiling,
one TOML spec per target.

A target = ``targets/<name>.toml`` (``spec``) + an exporter module (``edgeage.export``) + a
runner module with ``class Runner`` (``runner``). ``check`` compares an exported artifact with
the float PyTorch model on the same tensors (``check``, ``localize``), measures latency and
memory in fresh processes (``latency``) and writes reports (``report``); ``cli`` holds
``edgeage check`` and ``edgeage bench``."""
