"""Face alignment: warp a face so its five landmarks land on a model's reference points.

Every chip-based embedder was trained on faces aligned this way, so the reference points and
the chip size are part of the model, not of the detector.
"""

from __future__ import annotations

import cv2
import numpy as np

#: ArcFace/InsightFace reference points in a 112x112 chip (left eye, right eye, nose tip, left
#: and right mouth corners, as seen in the image); SFace uses the same.
ARCFACE_REFERENCE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)

#: Intel Open Model Zoo face-reidentification-retail-0095 reference points in a 128x128 chip.
INTEL_REID_REFERENCE_128 = np.array(
    [[40.39, 59.08], [87.38, 59.08], [64.03, 81.98], [44.73, 105.56], [83.64, 105.56]], dtype=np.float32
)


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation mapping ``source`` onto ``target``.

    Umeyama's closed form; returns a 2x3 matrix for ``cv2.warpAffine``. Written out rather than
    taken from OpenCV because ``estimateAffinePartial2D`` is a robust (RANSAC/LMedS) estimator,
    which with five exact correspondences can discard good points.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centred, target_centred = source - source_mean, target - target_mean
    covariance = target_centred.T @ source_centred / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    reflection = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ reflection @ vt
    variance = (source_centred**2).sum() / len(source)
    scale = float(np.trace(np.diag(singular) @ reflection) / variance) if variance > 0 else 1.0
    translation = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, translation[:, None]])


def warp_to_reference(rgb: np.ndarray, landmarks: np.ndarray, reference: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` chip of ``rgb`` in which ``landmarks`` sit on ``reference``."""
    matrix = similarity_transform(landmarks, reference)
    return cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
