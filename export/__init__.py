"""Export stage of edgeage, above the backends: the artifact folder (``artifact``: a target's
exporter wrapped into model files + manifest.json, written atomically, the failing step named),
INT8 (``quantize``, ``calibration``, ``accuracy``, ``package``), conformance (``check``,
``report``, ``latency``, ``localize``: an exported model against the float model) and the
Android bundle / device comparison (``android``); the ``*_cli`` modules hold the commands."""
