"""Writing artifact folders: ``writer`` (the target's exporter wrapped into model files +
manifest.json, atomically; ``export_model`` is ``edgeage export``), ``package`` (an ``edgeage
quantize`` result as an artifact of its target) and ``calibration`` (the images an int8 export
is calibrated on, and their provenance). ``cli``: ``edgeage export``. Imports the core and the
backends only."""
