"""The detector plug-in interface and its registry.

A detector turns an RGB image into faces with five landmarks. New detectors subclass
:class:`Detector` and register themselves in :data:`DETECTORS`, so configuration and the CLI
can pick one by name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import cv2
import numpy as np

from openfrt.plugins import Registry
from openfrt.vision.quality import clip_box, make_face
from openfrt.vision.types import Face


class Detector(ABC):
    """Finds faces. ``name`` is the registry name; ``detect`` must be safe to call repeatedly."""

    name: str = "detector"
    #: Score at or above which a detection is confidently a face. Scores are on each detector's
    #: own scale; a detector tuned for recall keeps weaker boxes, which callers that need
    #: certainty (enrolment) ignore below this.
    confident_score: float = 0.0

    @abstractmethod
    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Return every face in an ``HxWx3`` RGB ``uint8`` image, best score first."""

    def keeps(self, face: Face) -> bool:
        """Whether :meth:`detect` would have kept ``face``, one of :meth:`propose`'s."""
        return True

    def propose(self, rgb: np.ndarray) -> list[Face]:
        """Face-like boxes down to a lower score than :meth:`detect` keeps, for a cheap first look
        that a second, full-resolution look confirms or rejects. By default what ``detect`` finds."""
        return self.detect(rgb)

    def propose_at_scale(self, rgb: np.ndarray, scale: float) -> list[Face]:
        """:meth:`propose` on ``rgb`` shrunk by ``scale`` (below 1), as a camera's low-resolution
        sub-stream would show it: the cost falls with the pixels. Boxes and landmarks are in
        ``rgb``'s pixels and quality is measured on them."""
        small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        sx, sy = rgb.shape[1] / small.shape[1], rgb.shape[0] / small.shape[0]
        stretch = np.array([sx, sy], dtype=np.float32)
        faces = []
        for face in self.propose(small):
            x, y, w, h = face.box
            box = clip_box((x * sx, y * sy, w * sx, h * sy), rgb.shape)
            if box is not None:
                native = {name: points * stretch for name, points in face.native_landmarks.items()}
                faces.append(make_face(rgb, box, face.score, face.landmarks * stretch, face.detector, native))
        return faces


DETECTORS: Registry[Detector] = Registry("detector")
