"""The detector plug-in interface and its registry.

A detector turns an RGB image into faces with five landmarks. New detectors subclass
:class:`Detector` and register themselves in :data:`DETECTORS`, so configuration and the CLI
can pick one by name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from openfrt.plugins import Registry
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


DETECTORS: Registry[Detector] = Registry("detector")
