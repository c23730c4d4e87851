"""Export stage of edgeage: one module per format, quantizers.

Each format module has ``export(model, example, out_dir, precision, spec, calib=None) -> files``;
``artifact`` wraps it into an artifact folder (model files + manifest.json with sha256s, written
atomically) and names the failing step; ``cli`` holds ``edgeage export``."""
