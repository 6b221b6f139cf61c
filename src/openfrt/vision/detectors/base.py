"""The detector plug-in interface and its registry.

A detector turns an RGB image into faces with five landmarks. New detectors subclass
:class:`Detector` and register themselves in :data:`DETECTORS`, so configuration and the CLI
can pick one by name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import cv2
import numpy as np

from openfrt.plugins import Registry
from openfrt.vision.quality import clip_box, make_face
from openfrt.vision.types import Face


@dataclass(frozen=True)
class Proposal:
    """A face-like box whose quality is not measured yet. A shrunk first look proposes many
    more boxes than are kept, and measuring each (sharpness, pose) cost more than the rest of
    handling them; only the ones kept become :class:`Face` objects."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray
    detector: str
    native_landmarks: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def of(cls, face: Face) -> Proposal:
        return cls(face.box, face.score, face.landmarks, face.detector, face.native_landmarks)

    def face(self, rgb: np.ndarray) -> Face:
        """This proposal as a face of ``rgb`` (the image its box is in), quality measured."""
        return make_face(rgb, self.box, self.score, self.landmarks, self.detector, self.native_landmarks)


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

    def keeps(self, face: Face | Proposal) -> bool:
        """Whether :meth:`detect` would have kept ``face``, one of :meth:`propose`'s."""
        return True

    def propose(self, rgb: np.ndarray) -> list[Proposal]:
        """Face-like boxes down to a lower score than :meth:`detect` keeps, for a cheap first look
        that a second, full-resolution look confirms or rejects. By default what ``detect`` finds."""
        return [Proposal.of(face) for face in self.detect(rgb)]

    def propose_at_scale(self, rgb: np.ndarray, scale: float) -> list[Proposal]:
        """:meth:`propose` on ``rgb`` shrunk by ``scale`` (below 1), as a camera's low-resolution
        sub-stream would show it: the cost falls with the pixels. Boxes and landmarks are in
        ``rgb``'s pixels."""
        small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        sx, sy = rgb.shape[1] / small.shape[1], rgb.shape[0] / small.shape[0]
        stretch = np.array([sx, sy], dtype=np.float32)
        proposals = []
        for proposal in self.propose(small):
            x, y, w, h = proposal.box
            box = clip_box((x * sx, y * sy, w * sx, h * sy), rgb.shape)
            if box is not None:
                native = {name: points * stretch for name, points in proposal.native_landmarks.items()}
                proposals.append(Proposal(box, proposal.score, proposal.landmarks * stretch, proposal.detector, native))
        return proposals


DETECTORS: Registry[Detector] = Registry("detector")
