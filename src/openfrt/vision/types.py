"""The values that flow between detectors, embedders and matchers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from openfrt.errors import ModelMismatchError

#: Names of the five landmarks every detector reports, in this order. "Left" and "right" are as
#: seen in the image (the eye on the image's left comes first), so no detector has to guess.
LANDMARK_NAMES = ("left_eye", "right_eye", "nose_tip", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class Quality:
    """Measures that tell whether a face is fit to search with.

    ``face_height_px`` is the detected box height; ``sharpness`` is the variance of the
    Laplacian of the face resized to 64 px high (so it does not grow with face size; under
    about 30 is visibly blurred); ``frontalness`` is 1 for a face looking straight at the
    camera, falling towards 0 as it turns or tilts; ``yaw_deg``/``roll_deg`` are rough angles
    from the landmarks; ``brightness`` is the mean grey level of the face, 0..1.
    """

    face_height_px: float
    sharpness: float
    frontalness: float
    yaw_deg: float
    roll_deg: float
    brightness: float

    def as_dict(self) -> dict[str, float]:
        return {name: round(float(getattr(self, name)), 4) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class Face:
    """One detected face.

    ``box`` is ``(x, y, width, height)`` in image pixels; ``landmarks`` is a ``5x2`` array in
    :data:`LANDMARK_NAMES` order. ``native_landmarks`` carries a detector's own landmark scheme
    when an embedder can use it for exact alignment (dlib's 5-point shape, for dlib's embedder).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray
    quality: Quality
    detector: str
    native_landmarks: dict[str, np.ndarray] = field(default_factory=dict, compare=False)

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]

    def as_dict(self) -> dict[str, object]:
        """The JSON form used by the CLI and API."""
        return {
            "box": [round(float(v), 1) for v in self.box],
            "score": round(float(self.score), 4),
            "quality": self.quality.as_dict(),
        }


@dataclass(frozen=True)
class Template:
    """A face template: a unit-length float32 vector and the model that made it.

    Templates are only comparable with templates of the same model name and version, because
    each model places faces in its own space.
    """

    vector: np.ndarray
    model: str
    model_version: str

    def __post_init__(self) -> None:
        vector = np.asarray(self.vector, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(vector))
        if not np.isfinite(norm) or norm == 0.0:
            raise ValueError("a template vector must be finite and non-zero")
        object.__setattr__(self, "vector", vector / norm)

    @property
    def model_id(self) -> str:
        return f"{self.model}@{self.model_version}"

    def check_comparable(self, other: "Template") -> None:
        if self.model_id != other.model_id or self.vector.shape != other.vector.shape:
            raise ModelMismatchError(
                f"cannot compare a template of {self.model_id} with one of {other.model_id}: "
                "templates from different models live in different spaces; re-embed both with one model"
            )


def cosine_to_similarity(cosine: np.ndarray | float) -> np.ndarray | float:
    """Map cosine similarity (-1..1) onto openfrt's documented 0..1 similarity scale.

    ``similarity = (1 + cosine) / 2``: 1 means identical templates, 0.5 unrelated
    (orthogonal), 0 opposite. Monotonic, so thresholds keep their order across the two scales.
    """
    return (1.0 + np.clip(cosine, -1.0, 1.0)) / 2.0


def compare(a: Template, b: Template) -> float:
    """Similarity of two templates on the 0..1 scale; raises if their models differ."""
    a.check_comparable(b)
    return float(cosine_to_similarity(float(np.dot(a.vector, b.vector))))
