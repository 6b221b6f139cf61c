"""Face embedders: the :class:`Embedder` interface, the registry, and the built-in plug-ins."""

from openfrt.vision.embedders import dlib_resnet, external, sface  # noqa: F401  (registers built-ins)
from openfrt.vision.embedders.base import EMBEDDERS, Embedder

__all__ = ["EMBEDDERS", "Embedder"]
