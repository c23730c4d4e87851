"""The check on a device: the bundle a device runs and the comparison of its result with the
float model (``bundle``), the kinds of device that run it (``device``: the ``Device`` protocol
and the registry; ``kinds/``: one file per kind), and the Python device side's check command
(``python_side``). ``cli``: ``edgeage android bundle``, ``edgeage device-check`` and
``edgeage device setup``."""
