"""edgeage: facial age estimation from GPU training to INT8 models on edge devices.

Core package: models (registry), data + canonical face crop, degradation model, metrics,
the model manifest and the CLI. The stage packages ``edgeage.train``, ``edgeage.export`` and
``edgeage.targets`` build on it; the core imports none of them (the CLI loads them lazily).
"""

__version__ = "0.1.0"
