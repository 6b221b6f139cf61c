"""The face engine façade: one object that composes a detector and an embedder.

Callers (CLI, gallery, live pipeline) talk to :class:`FaceEngine` and never to a plug-in
directly, so swapping models is a configuration change, not a code change.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
from pydantic import BaseModel, Field

from openfrt.errors import NoFaceError
from openfrt.vision.detectors import DETECTORS, Detector
from openfrt.vision.embedders import EMBEDDERS, Embedder
from openfrt.vision.image import DEFAULT_MAX_PIXELS, ImageInput, describe_source, load_image
from openfrt.vision.types import Face, Template, compare


class EngineConfig(BaseModel):
    """Which plug-ins to use and with what options; every field can come from the environment."""

    detector: str = "hog"
    detector_options: dict[str, Any] = Field(default_factory=dict)
    embedder: str = "dlib"
    embedder_options: dict[str, Any] = Field(default_factory=dict)
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0)
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="1:1 match threshold; None = the model's")

    @classmethod
    def from_env(cls, **overrides: Any) -> "EngineConfig":
        """Defaults, then ``OPENFRT_*`` environment variables, then explicit overrides."""
        values: dict[str, Any] = {}
        for field in ("detector", "embedder", "max_pixels", "threshold"):
            env = os.environ.get(f"OPENFRT_{field.upper()}")
            if env:
                values[field] = env
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)


class FaceEngine:
    """Detect, embed and compare faces with one configured detector and embedder."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig.from_env()
        self.detector: Detector = DETECTORS.create(self.config.detector, **self.config.detector_options)
        self.embedder: Embedder = EMBEDDERS.create(self.config.embedder, **self.config.embedder_options)

    @property
    def threshold(self) -> float:
        """The 1:1 match threshold in force: the configured one, else the embedder's measured one."""
        return self.config.threshold if self.config.threshold is not None else self.embedder.default_threshold

    def load(self, image: ImageInput, name: str | None = None) -> np.ndarray:
        return load_image(image, self.config.max_pixels, name)

    def detect(self, image: ImageInput | np.ndarray) -> list[Face]:
        """All faces in ``image`` (path, bytes or array), best score first."""
        return self.detector.detect(self.load(image))

    def embed(self, image: ImageInput, face: Face) -> Template:
        return self.embed_many(image, [face])[0]

    def embed_many(self, image: ImageInput, faces: Sequence[Face]) -> list[Template]:
        return self.embedder.embed(self.load(image), faces)

    def largest_face_template(self, image: ImageInput, name: str | None = None) -> tuple[Face, Template]:
        """Template of the largest face in ``image``; raises :class:`NoFaceError` if there is none."""
        rgb = self.load(image, name)
        faces = self.detector.detect(rgb)
        if not faces:
            raise NoFaceError(name or describe_source(image), f"no face found (detector {self.detector.name})")
        face = max(faces, key=lambda candidate: candidate.area)
        return face, self.embedder.embed(rgb, [face])[0]

    def compare(self, a: Template, b: Template) -> float:
        return compare(a, b)

    def is_match(self, similarity: float) -> bool:
        return similarity >= self.threshold
