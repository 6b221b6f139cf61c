"""The face engine façade: one object that composes a detector and an embedder.

Callers (CLI, gallery, live pipeline) talk to :class:`FaceEngine` and never to a plug-in
directly, so swapping models is a configuration change, not a code change.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
from pydantic import BaseModel, Field

from openfrt.config import home_dir
from openfrt.errors import NoFaceError
from openfrt.plugins import Registry
from openfrt.vision.detectors import DETECTORS, Detector
from openfrt.vision.embedders import EMBEDDERS, Embedder
from openfrt.vision.image import DEFAULT_MAX_PIXELS, ImageInput, describe_source, load_image
from openfrt.vision.model_check import verify_on_first_use
from openfrt.vision.types import Face, Template, compare
from openfrt.vision.zoo import DEFAULT_DETECTOR, DEFAULT_EMBEDDER, Kind, ModelZoo


class EngineConfig(BaseModel):
    """Which models to use and with what options; every field can come from the environment.

    ``detector`` and ``embedder`` name a model in the zoo (``openfrt models list``) or a plug-in.
    """

    detector: str = DEFAULT_DETECTOR
    detector_options: dict[str, Any] = Field(default_factory=dict)
    embedder: str = DEFAULT_EMBEDDER
    embedder_options: dict[str, Any] = Field(default_factory=dict)
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0)
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="1:1 match threshold; None = the model's")
    threads: int = Field(0, ge=0, description="inference threads for plug-ins that take them; 0 = runtime default")

    @classmethod
    def from_env(cls, **overrides: Any) -> "EngineConfig":
        """The zoo's chosen defaults, then ``OPENFRT_*`` environment variables, then overrides."""
        zoo = ModelZoo(home_dir())
        values: dict[str, Any] = {"detector": zoo.default("detector"), "embedder": zoo.default("embedder")}
        for field in ("detector", "embedder", "max_pixels", "threshold", "threads"):
            env = os.environ.get(f"OPENFRT_{field.upper()}")
            if env:
                values[field] = env
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)


class FaceEngine:
    """Detect, embed and compare faces with one configured detector and embedder."""

    def __init__(self, config: EngineConfig | None = None, zoo: ModelZoo | None = None) -> None:
        self.config = config or EngineConfig.from_env()
        zoo = zoo or ModelZoo(home_dir())
        self.detector: Detector = _create(DETECTORS, zoo, "detector", self.config.detector, self.config.detector_options, self.config.threads)
        self.embedder: Embedder = _create(EMBEDDERS, zoo, "embedder", self.config.embedder, self.config.embedder_options, self.config.threads)
        verify_on_first_use(self.embedder)

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


def _create(registry: Registry[Any], zoo: ModelZoo, kind: Kind, name: str, options: dict[str, Any], threads: int) -> Any:
    """Instantiate the model ``name`` (zoo entry or plug-in) with the config's extra options."""
    plugin, zoo_options = zoo.resolve(name, kind)
    merged = {**zoo_options, **options}
    if threads and registry.accepts(plugin, "threads"):
        merged.setdefault("threads", threads)
    return registry.create(plugin, **merged)
