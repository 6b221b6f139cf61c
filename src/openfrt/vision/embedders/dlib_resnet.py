"""dlib's ResNet face-recognition model (``dlib_face_recognition_resnet_model_v1.dat``).

Two back-ends share one model identity, so their templates are interchangeable: ``dlib-onnx``
(the default: our own conversion of the weights to ONNX, run by onnxruntime, ~20x faster) and
``dlib`` (dlib's own ``compute_face_descriptor``, kept as the reference the conversion is tested
against: cosine >= 0.9999 on every face, see ``benchmarks/dlib_onnx_parity.py``)."""

from __future__ import annotations

from typing import Sequence

import dlib
import numpy as np

from openfrt.vision import bundled
from openfrt.vision.convert.dlib_resnet import CHIP_SIZE, build_dlib_resnet_onnx
from openfrt.vision.dlib_chip import DLIB_CHIP_REFERENCE_5PT, dlib_chip_from_standard_5pt, dlib_face_chip
from openfrt.vision.embedders.base import EMBEDDERS, Embedder
from openfrt.vision.embedders.chip import ChipEmbedder, ChipSpec, OnnxRuntimeBackend
from openfrt.vision.model_cache import ConvertedModel
from openfrt.vision.types import Face, Template

#: Identity of the dlib ResNet weights; every back-end running them shares it, so templates stay
#: comparable whichever back-end made them.
DLIB_RESNET_MODEL = "dlib-resnet"
DLIB_RESNET_VERSION = "v1"

#: 1:1 threshold for a false-match rate of 0.1%, measured on ../shared/faces/lfw pairs
#: (benchmarks/verification.py); see README.
DLIB_RESNET_THRESHOLD = 0.963

#: Bump when the converter's output changes, so cached conversions are rebuilt.
CONVERTER_VERSION = "1"


def converted_resnet() -> ConvertedModel:
    """The ONNX conversion of the bundled weights, built once into the model cache."""
    source = bundled.bundled_path("dlib_face_recognition_resnet_model_v1.dat")
    return ConvertedModel(
        "dlib-resnet-v1", (source,), lambda: build_dlib_resnet_onnx(source).SerializeToString(), CONVERTER_VERSION
    )


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


@EMBEDDERS.register("dlib-onnx")
class DlibOnnxEmbedder(ChipEmbedder):
    """dlib's ResNet on onnxruntime, on chips cut exactly as dlib cuts them.

    Faces from dlib's detectors carry dlib's 5-point shape and get dlib's own chip; faces from
    other detectors are aligned from the standard five landmarks to the same chip geometry.
    """

    name = "dlib-onnx"

    def __init__(self, threads: int = 0, batch_size: int = 32) -> None:
        backend = OnnxRuntimeBackend(converted_resnet().ensure(), threads)
        spec = ChipSpec(CHIP_SIZE, DLIB_CHIP_REFERENCE_5PT)
        super().__init__(backend, spec, DLIB_RESNET_MODEL, DLIB_RESNET_VERSION, DLIB_RESNET_THRESHOLD, batch_size)

    def chip(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        dlib5 = face.native_landmarks.get("dlib5")
        if dlib5 is not None:
            return dlib_face_chip(rgb, dlib5)
        return dlib_chip_from_standard_5pt(rgb, face.landmarks)
