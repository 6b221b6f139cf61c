"""The embedder plug-in interface and its registry.

An embedder aligns each face from its landmarks and turns it into a :class:`Template`. It
declares the model name and version its templates carry, and the similarity threshold measured
for it, because a threshold only means something for the model it was measured on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np

from openfrt.plugins import Registry
from openfrt.vision.types import Face, Template


class Embedder(ABC):
    """Makes templates. ``embed`` takes a batch so that backends can run faces together."""

    name: str = "embedder"
    model: str = "unknown"
    model_version: str = "0"
    #: Default 1:1 match threshold on the 0..1 similarity scale, measured for this model.
    default_threshold: float = 0.5

    @property
    def model_id(self) -> str:
        return f"{self.model}@{self.model_version}"

    @abstractmethod
    def embed(self, rgb: np.ndarray, faces: Sequence[Face]) -> list[Template]:
        """One template per face of ``rgb``, in the same order."""


EMBEDDERS: Registry[Embedder] = Registry("embedder")
