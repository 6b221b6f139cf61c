"""Face detectors: the :class:`Detector` interface, the registry, and the built-in plug-ins."""

from openfrt.vision.detectors import dlib_detectors, mtcnn, scrfd, yunet  # noqa: F401  (registers built-ins)
from openfrt.vision.detectors.base import DETECTORS, Detector

__all__ = ["DETECTORS", "Detector"]
