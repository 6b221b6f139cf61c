"""dlib's two bundled detectors: HOG (fast, frontal faces from ~80 px) and MMOD CNN (slow on
CPU without BLAS, but finds turned faces). Kept mainly as references for newer detectors."""

from __future__ import annotations

from abc import abstractmethod

import dlib
import numpy as np

from openfrt.vision import bundled
from openfrt.vision.detectors.base import DETECTORS, Detector
from openfrt.vision.quality import clip_box, make_face
from openfrt.vision.types import Face


class _DlibDetector(Detector):
    """Shared landmarking and face building; subclasses only find boxes."""

    def __init__(self, upsample: int = 1, min_score: float = 0.0) -> None:
        if upsample < 0:
            raise ValueError("upsample must be 0 or more")
        self.upsample = upsample
        self.min_score = min_score

    @abstractmethod
    def _boxes(self, rgb: np.ndarray) -> list[tuple[dlib.rectangle, float]]:
        """(rectangle, score) pairs in image coordinates."""

    def detect(self, rgb: np.ndarray) -> list[Face]:
        faces = []
        for rect, score in self._boxes(rgb):
            box = clip_box((rect.left(), rect.top(), rect.width(), rect.height()), rgb.shape)
            if score < self.min_score or box is None:
                continue
            standard, dlib5 = bundled.dlib_landmarks(rgb, box)
            faces.append(make_face(rgb, box, score, standard, self.name, {"dlib5": dlib5}))
        return sorted(faces, key=lambda face: face.score, reverse=True)


@DETECTORS.register("hog")
class HogDetector(_DlibDetector):
    """dlib's HOG + linear SVM frontal face detector."""

    name = "hog"

    def __init__(self, upsample: int = 1, min_score: float = 0.0) -> None:
        super().__init__(upsample, min_score)
        self._detector = dlib.get_frontal_face_detector()

    def _boxes(self, rgb: np.ndarray) -> list[tuple[dlib.rectangle, float]]:
        rects, scores, _ = self._detector.run(rgb, self.upsample, self.min_score)
        return list(zip(rects, scores))


@DETECTORS.register("mmod")
class MmodDetector(_DlibDetector):
    """dlib's MMOD CNN detector (``mmod_human_face_detector.dat``)."""

    name = "mmod"

    def __init__(self, upsample: int = 0, min_score: float = 0.0) -> None:
        super().__init__(upsample, min_score)
        self._detector = bundled.mmod_detector()

    def _boxes(self, rgb: np.ndarray) -> list[tuple[dlib.rectangle, float]]:
        return [(found.rect, float(found.confidence)) for found in self._detector(rgb, self.upsample)]
