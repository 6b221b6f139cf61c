"""Loaders for the weights bundled in the ``face_recognition_models`` package.

Each model is loaded once per process and shared: loading the 68-point predictor alone takes
about half a second, and detectors and embedders both need landmark predictors.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import dlib
import face_recognition_models as bundled
import numpy as np

from openfrt.errors import ModelError

#: 68-point indices of the standard five landmarks (eye centres are means of six points each).
_LEFT_EYE, _RIGHT_EYE = slice(36, 42), slice(42, 48)
_NOSE_TIP, _MOUTH_LEFT, _MOUTH_RIGHT = 30, 48, 54


def bundled_path(filename: str) -> Path:
    """Path of one bundled weights file, with a clear error if the package is incomplete."""
    path = Path(bundled.__file__).parent / "models" / filename
    if not path.is_file():
        raise ModelError(f"bundled model file {filename} is missing from face_recognition_models ({path})")
    return path


@lru_cache(maxsize=None)
def shape_predictor_5() -> dlib.shape_predictor:
    return dlib.shape_predictor(str(bundled_path("shape_predictor_5_face_landmarks.dat")))


@lru_cache(maxsize=None)
def shape_predictor_68() -> dlib.shape_predictor:
    return dlib.shape_predictor(str(bundled_path("shape_predictor_68_face_landmarks.dat")))


@lru_cache(maxsize=None)
def face_recognition_resnet() -> dlib.face_recognition_model_v1:
    return dlib.face_recognition_model_v1(str(bundled_path("dlib_face_recognition_resnet_model_v1.dat")))


@lru_cache(maxsize=None)
def mmod_detector() -> dlib.cnn_face_detection_model_v1:
    return dlib.cnn_face_detection_model_v1(str(bundled_path("mmod_human_face_detector.dat")))


def shape_points(shape: dlib.full_object_detection) -> np.ndarray:
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def dlib_rectangle(box: tuple[float, float, float, float]) -> dlib.rectangle:
    x, y, w, h = box
    return dlib.rectangle(int(round(x)), int(round(y)), int(round(x + w - 1)), int(round(y + h - 1)))


def dlib_landmarks(rgb: np.ndarray, box: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(standard five landmarks, dlib's own 5-point shape) for the face in ``box``.

    The standard points come from the 68-point predictor so that any embedder can align a face
    found by a dlib detector; the 5-point shape lets dlib's embedder reproduce dlib exactly.
    """
    rect = dlib_rectangle(box)
    points68 = shape_points(shape_predictor_68()(rgb, rect))
    standard = np.stack(
        [
            points68[_LEFT_EYE].mean(axis=0),
            points68[_RIGHT_EYE].mean(axis=0),
            points68[_NOSE_TIP],
            points68[_MOUTH_LEFT],
            points68[_MOUTH_RIGHT],
        ]
    )
    return standard, shape_points(shape_predictor_5()(rgb, rect))
