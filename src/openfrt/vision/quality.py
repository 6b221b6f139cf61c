"""Face quality measures, computed once per detection so every consumer sees the same numbers.

Quality gates enrolment (refuse blurred or tiny reference images) and lets the live pipeline
pick the best views of a track; the measures are deliberately cheap (a few hundred microseconds).
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from openfrt.vision.types import Face, Quality

#: Faces are resized to this height before measuring sharpness so the figure does not depend
#: on how large the face is in the image.
SHARPNESS_HEIGHT = 64

#: Depth of the nose tip in front of the eye line, as a share of the distance between the eyes;
#: used to turn the nose's sideways offset into an approximate yaw angle.
NOSE_DEPTH_RATIO = 0.6


def measure_quality(rgb: np.ndarray, box: tuple[float, float, float, float], landmarks: np.ndarray) -> Quality:
    """Measure size, sharpness, pose and brightness of the face at ``box`` in ``rgb``."""
    grey_face = _face_crop_grey(rgb, box)
    yaw, roll = _pose_from_landmarks(landmarks)
    return Quality(
        face_height_px=float(box[3]),
        sharpness=_sharpness(grey_face),
        frontalness=max(0.0, math.cos(math.radians(yaw))) * max(0.0, math.cos(math.radians(roll))),
        yaw_deg=yaw,
        roll_deg=roll,
        brightness=float(grey_face.mean() / 255.0) if grey_face.size else 0.0,
    )


def make_face(
    rgb: np.ndarray,
    box: tuple[float, float, float, float],
    score: float,
    landmarks: np.ndarray,
    detector: str,
    native_landmarks: dict[str, np.ndarray] | None = None,
) -> Face:
    """Build a :class:`Face` with its quality measured: the one place detectors create faces."""
    landmarks = np.asarray(landmarks, dtype=np.float32).reshape(5, 2)
    box = tuple(float(v) for v in box)  # type: ignore[assignment]
    return Face(
        box=box,
        score=float(score),
        landmarks=landmarks,
        quality=measure_quality(rgb, box, landmarks),
        detector=detector,
        native_landmarks=native_landmarks or {},
    )


def clip_box(xywh: Sequence[float], shape: tuple[int, ...]) -> tuple[float, float, float, float] | None:
    """Clip an ``(x, y, w, h)`` box to an image of ``shape``; None when nothing of it is inside."""
    x0, y0 = max(0.0, float(xywh[0])), max(0.0, float(xywh[1]))
    x1 = min(float(shape[1]), float(xywh[0]) + float(xywh[2]))
    y1 = min(float(shape[0]), float(xywh[1]) + float(xywh[3]))
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def _face_crop_grey(rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    x, y, w, h = box
    height, width = rgb.shape[:2]
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    x1, y1 = min(width, int(round(x + w))), min(height, int(round(y + h)))
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0), dtype=np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)


def _sharpness(grey_face: np.ndarray) -> float:
    if grey_face.size == 0:
        return 0.0
    scale = SHARPNESS_HEIGHT / grey_face.shape[0]
    resized = cv2.resize(
        grey_face,
        (max(1, round(grey_face.shape[1] * scale)), SHARPNESS_HEIGHT),
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
    )
    return float(cv2.Laplacian(resized, cv2.CV_64F).var())


def _pose_from_landmarks(landmarks: np.ndarray) -> tuple[float, float]:
    """Approximate (yaw, roll) in degrees from the eye line and the nose's offset from it."""
    left_eye, right_eye, nose = landmarks[0], landmarks[1], landmarks[2]
    eye_vector = right_eye - left_eye
    interocular = float(np.hypot(*eye_vector))
    if interocular < 1e-6:
        return 90.0, 0.0
    roll = math.degrees(math.atan2(float(eye_vector[1]), float(eye_vector[0])))
    along_eyes = float(np.dot(nose - (left_eye + right_eye) / 2.0, eye_vector / interocular))
    yaw = math.degrees(math.atan2(along_eyes, NOSE_DEPTH_RATIO * interocular))
    return yaw, roll
