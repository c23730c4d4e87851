"""The age estimator: one object for detector -> canonical crop -> tensor -> model -> readout,
used by ``predict``, ``eval``, ``check``, ``quantize`` and training validation alike.

The model is any callable ``float32 [N,3,S,S] -> raw outputs [N,K]`` (numpy in, numpy out): the
PyTorch model (``AgeEstimator.from_checkpoint``, through ``edgeage.checkpoint.TorchModel``) or an
exported artifact's runner (``edgeage.targets.runner.artifact_estimator``: no torch at all). The
preprocessing and the readout come from the model's manifest. Imports no torch."""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from .manifest import Manifest
from .preprocess import CropParams, canonical_crop, model_input_np
from .readout import apply_readout

ModelFn = Callable[[np.ndarray], np.ndarray]


class AgeEstimator:
    def __init__(self, model: ModelFn, manifest: Manifest, crop: CropParams | None = None, batch: int = 256,
                 detector=None, tta_flip: bool = False):
        """``detector``: an ``edgeage.face.FaceDetector`` (e.g. on an exported detector,
        ``edgeage.targets.runner.artifact_face_detector``); None: the shipped .tflite by LiteRT,
        made when first needed. ``tta_flip``: every face is read twice, as it is and mirrored, in
        one model call, and its age is the mean of the two readouts (twice the model's work; see
        ``outputs``)."""
        self.model, self.manifest, self.batch = model, manifest, int(batch)
        self.crop = crop or manifest.crop
        self.normalize = manifest.normalize
        self.readout = manifest.readout
        self._detector = detector
        self.tta_flip = bool(tta_flip)

    @classmethod
    def from_checkpoint(cls, path=None, device: str = "cpu", **kw) -> "AgeEstimator":
        """The float PyTorch model of a checkpoint (None: the shipped default model)."""
        from .checkpoint import TorchModel, load_model

        model, manifest = load_model(path)
        return cls(TorchModel(model, device), manifest, **kw)

    def with_crop_policy(self, policy: str | None) -> "AgeEstimator":
        """The same estimator with another crop policy (``detect`` / ``none``); None: unchanged."""
        if not policy or policy == self.crop.policy:
            return self
        return AgeEstimator(self.model, self.manifest, dataclasses.replace(self.crop, policy=policy), self.batch,
                            self._detector, self.tta_flip)

    def with_detector(self, detector) -> "AgeEstimator":
        """The same estimator (model, crop, readout) with another face detector."""
        return AgeEstimator(self.model, self.manifest, self.crop, self.batch, detector, self.tta_flip)

    def with_tta_flip(self, on: bool = True) -> "AgeEstimator":
        """The same estimator reading every face also mirrored (``on``) or once (not ``on``)."""
        if bool(on) == self.tta_flip:
            return self
        return AgeEstimator(self.model, self.manifest, self.crop, self.batch, self._detector, on)

    # ---- stages -----------------------------------------------------------------------------

    @property
    def detector(self):
        if self._detector is None:
            from .face import FaceDetector

            self._detector = FaceDetector()
        return self._detector

    def faces(self, img: np.ndarray) -> list:
        """Every face BlazeFace finds in an HxWx3 uint8 RGB image (none with crop policy none)."""
        return self.detector.detect(img) if self.crop.policy == "detect" else []

    def crop_faces(self, img: np.ndarray, faces: list) -> np.ndarray:
        """Canonical crops [F,S,S,3] of the faces, or of the centre square / whole image when none."""
        boxes = [f.box for f in faces] or [None]
        return np.stack([canonical_crop(img, b, self.crop) for b in boxes])

    def inputs(self, crops: np.ndarray) -> np.ndarray:
        """uint8 canonical crops [N,S,S,3] -> float32 model inputs [N,3,s,s]."""
        crops = np.asarray(crops)
        if not len(crops):
            s = self.normalize.input_size
            return np.zeros((0, 3, s, s), np.float32)
        return np.concatenate([model_input_np(crops[i:i + self.batch], self.normalize)
                               for i in range(0, len(crops), self.batch)])

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """Raw model outputs [N,K] of model inputs [N,3,s,s], batch by batch. With ``tta_flip``,
        [N,2,K]: each face's outputs as it is and mirrored (the faces and their mirrors go through
        the model together, so a single face is one call of batch 2)."""
        if self.tta_flip:
            n = len(x)
            both = self._run(np.concatenate([x, x[..., ::-1]]))
            return np.stack([both[:n], both[n:]], 1) if n else both.reshape(0, 2, both.shape[-1])
        return self._run(x)

    def _run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        outs = [np.asarray(self.model(x[i:i + self.batch]), np.float32) for i in range(0, len(x), self.batch)]
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)

    def ages_of(self, out: np.ndarray) -> np.ndarray:
        """Ages [N] of raw outputs: [N,K] read out, or [N,V,K] (views of each face, ``outputs``
        with ``tta_flip``) read out view by view and averaged."""
        out = np.asarray(out)
        if out.ndim == 3:
            return np.mean([self.ages_of(out[:, v]) for v in range(out.shape[1])], 0) if len(out) \
                else np.zeros(0, np.float64)
        return np.asarray(apply_readout(self.readout, out), np.float64)

    def ages(self, crops: np.ndarray, tta_flip: bool | None = None) -> np.ndarray:
        """Ages of canonical crops; ``tta_flip`` (None: the estimator's own setting) averages each
        face with its mirror."""
        est = self if tta_flip is None else self.with_tta_flip(tta_flip)
        return est.ages_of(est.outputs(est.inputs(crops)))

    # ---- whole images ---------------------------------------------------------------------

    def predict(self, img: np.ndarray) -> dict:
        """Every face of an image with its box and age; without a face, the age of the centre
        square (crop policy detect) or of the whole image (policy none) as ``fallback_age``."""
        faces = self.faces(img)
        ages = self.ages(self.crop_faces(img, faces))
        rec = {"width": int(img.shape[1]), "height": int(img.shape[0]), "faces": []}
        if faces:
            rec["faces"] = [{**f.to_dict(), "age": round(float(a), 4)} for f, a in zip(faces, ages)]
        else:
            rec["fallback_age"] = round(float(ages[0]), 4)
            rec["note"] = ("no face found; age of the centre square" if self.crop.policy == "detect"
                           else "crop=none; age of the whole image")
        return rec
