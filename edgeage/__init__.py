"""edgeage: facial age estimation from GPU training to INT8 models on edge devices.

Core package: models (registry), data + canonical face crop, degradation model, metrics,
the model manifest and the CLI. The stage packages ``edgeage.train``, ``edgeage.export`` and
``edgeage.targets`` build on it; the core imports none of them (the CLI loads them lazily).

The public Python API is this package's top level: what the CLI does, as functions. Each name is
loaded on first use, so ``import edgeage`` stays torch-free (the device side needs numpy and one
runtime only)::

    from edgeage import AgeEstimator, bench, check, export_model, load_artifact, load_image

    est = AgeEstimator.from_checkpoint()                  # the shipped default model (PyTorch)
    print(est.predict(load_image("photo.jpg")))           # every face: box, age
    art, manifest = export_model("onnx", out="art-onnx")  # edgeage export --target onnx
    report = check(artifact=art)                          # edgeage check --artifact art-onnx
    device = load_artifact(art)                           # the artifact with its runtime alone
    print(device.predict(load_image("photo.jpg")))
    results = bench(targets=["onnx", "openvino"], precisions=["fp32"])   # edgeage bench
    det, _ = export_detector("onnx", out="det-onnx")       # edgeage detector export --target onnx
    device = load_artifact(art, detector=det)             # both models on one runtime
"""

__version__ = "0.1.0"

# public name -> the module that holds it (edgeage/api.py: imported on first use)
_API = {name: "edgeage.api" for name in ("AgeEstimator", "EdgeAgeError", "bench", "check", "check_detector",
                                         "export_detector", "export_model", "load_artifact", "load_detector",
                                         "load_image", "load_model")}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'edgeage' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_API))
