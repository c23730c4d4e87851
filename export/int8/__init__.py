"""``edgeage quantize``: INT8 beyond the PTQ of ``edgeage export``: post-training quantization with
accuracy control (``accuracy``) or quantization-aware training (``quantize``), for one backend,
written as an artifact folder by ``edgeage.export.artifact``. ``cli``: the command."""
