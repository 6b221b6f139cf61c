"""The face engine: find faces, turn them into templates, compare templates.

Module-level :func:`detect`, :func:`embed` and :func:`compare` use a default
:class:`FaceEngine` built from the environment on first use; build your own engine to choose
plug-ins explicitly.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from openfrt.vision.engine import FaceEngine
    from openfrt.vision.image import ImageInput
    from openfrt.vision.types import Face, Template

# Loaded on first use, like :mod:`openfrt.records`: the records store needs only the template
# type, not the detectors and runtimes that the engine loads.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "engine": ["EngineConfig", "FaceEngine"],
        "image": ["ImageInput", "load_image"],
        "types": ["Face", "Quality", "Template", "compare"],
    },
)
__all__ += ["default_engine", "detect", "embed"]


@lru_cache(maxsize=1)
def default_engine() -> FaceEngine:
    from openfrt.vision.engine import FaceEngine

    return FaceEngine()


def detect(image: ImageInput) -> list[Face]:
    """Faces in ``image`` with the default engine."""
    return default_engine().detect(image)


def embed(image: ImageInput, face: Face) -> Template:
    """Template of ``face`` in ``image`` with the default engine."""
    return default_engine().embed(image, face)
