"""Backends of edgeage: one folder per target (``<name>/target.toml``, ``exporter.py``,
``runner.py``: the protocols of ``edgeage.backend``), discovered by ``spec``; ``runner`` loads an
artifact with its target's runner; ``int8_nncf`` / ``int8_pt2e`` / ``int8_scope`` are the INT8
code the backends share. Imports the core only (no conformance, no training)."""
