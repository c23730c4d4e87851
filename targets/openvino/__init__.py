"""The openvino target (OpenVINO (CPU plugin)): ``target.toml`` (precisions, runtime settings, thresholds),
``exporter.py`` (the ``edgeage.backend.Exporter`` and INT8 hooks), ``runner.py`` (``Runner``).
Nothing outside this folder names it: targets are discovered from their folders."""
