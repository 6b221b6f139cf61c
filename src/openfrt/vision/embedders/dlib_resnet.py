"""dlib's ResNet face-recognition model (``dlib_face_recognition_resnet_model_v1.dat``) run by
dlib itself: the reference implementation that faster back-ends must reproduce."""

from __future__ import annotations

from typing import Sequence

import dlib
import numpy as np

from openfrt.vision import bundled
from openfrt.vision.embedders.base import EMBEDDERS, Embedder
from openfrt.vision.types import Face, Template

#: Identity of the dlib ResNet weights; every back-end running them shares it, so templates stay
#: comparable whichever back-end made them.
DLIB_RESNET_MODEL = "dlib-resnet"
DLIB_RESNET_VERSION = "v1"

#: Measured on ../shared/faces/lfw pairs (benchmarks/verification.py); see README.
DLIB_RESNET_THRESHOLD = 0.9626


def dlib_shape(rgb: np.ndarray, face: Face) -> dlib.full_object_detection:
    """dlib's own 5-point shape for ``face``: the detector's if it gave one, else predicted now."""
    rect = bundled.dlib_rectangle(face.box)
    points = face.native_landmarks.get("dlib5")
    if points is None:
        return bundled.shape_predictor_5()(rgb, rect)
    return dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in points])


@EMBEDDERS.register("dlib")
class DlibResnetEmbedder(Embedder):
    """Templates from ``dlib.face_recognition_model_v1.compute_face_descriptor`` (~100 ms/face)."""

    name = "dlib"
    model = DLIB_RESNET_MODEL
    model_version = DLIB_RESNET_VERSION
    default_threshold = DLIB_RESNET_THRESHOLD

    def embed(self, rgb: np.ndarray, faces: Sequence[Face]) -> list[Template]:
        if not faces:
            return []
        shapes = dlib.full_object_detections()
        shapes.extend([dlib_shape(rgb, face) for face in faces])
        descriptors = bundled.face_recognition_resnet().compute_face_descriptor(rgb, shapes)
        return [Template(np.asarray(d, dtype=np.float32), self.model, self.model_version) for d in descriptors]
