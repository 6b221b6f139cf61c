"""The face engine: find faces, turn them into templates, compare templates.

Module-level :func:`detect`, :func:`embed` and :func:`compare` use a default
:class:`FaceEngine` built from the environment on first use; build your own engine to choose
plug-ins explicitly.
"""

from __future__ import annotations

from functools import lru_cache

from openfrt.vision.engine import EngineConfig, FaceEngine
from openfrt.vision.image import ImageInput, load_image
from openfrt.vision.types import Face, Quality, Template, compare

__all__ = [
    "EngineConfig",
    "Face",
    "FaceEngine",
    "ImageInput",
    "Quality",
    "Template",
    "compare",
    "default_engine",
    "detect",
    "embed",
    "load_image",
]


@lru_cache(maxsize=1)
def default_engine() -> FaceEngine:
    return FaceEngine()


def detect(image: ImageInput) -> list[Face]:
    """Faces in ``image`` with the default engine."""
    return default_engine().detect(image)


def embed(image: ImageInput, face: Face) -> Template:
    """Template of ``face`` in ``image`` with the default engine."""
    return default_engine().embed(image, face)
