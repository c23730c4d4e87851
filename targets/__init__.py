"""Targets stage of edgeage: one runtime runner per target, conformance checks, latency profiling, one TOML spec per target."""
