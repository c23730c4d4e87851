"""Export stage of edgeage, above the backends, in four sub-packages by concern. Each may import
only those before it in this list (``tests/unit/test_architecture.py`` checks it):

- ``artifact``: writing artifact folders (``writer``: a target's exporter wrapped into model
  files + manifest.json, written atomically, the failing step named; ``export_model`` is
  ``edgeage export``), packaging a quantize result (``package``) and the INT8 calibration data an
  int8 export is calibrated on (``calibration``);
- ``int8``: ``edgeage quantize``: PTQ with accuracy control (``accuracy``) or QAT (``quantize``);
- ``conformance``: an exported model against the float model (``check``, ``report``,
  ``latency``, ``localize``, ``peer``, ``pipeline_bench``);
- ``devices``: the same check on a device: the bundle and the comparison of a device's result
  (``bundle``), the ``Device`` protocol and its registry (``device``), one file per device kind
  (``kinds/``).

Each sub-package's ``cli`` module holds its commands; they share their options through
``edgeage.cli_options`` and never import each other."""
