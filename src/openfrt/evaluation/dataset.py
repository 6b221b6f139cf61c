"""Evaluation data: which images belong to whom, and their templates.

Two folder layouts are read, matching ``../shared/faces``:

- an **identity folder** (LFW style): one sub-folder per person, ``<root>/<identity>/*.jpg``;
- a **non-mated folder** (UTKFace style): flat ``<root>/*.jpg``, every image a different person
  who is never enrolled.

Either may hold a ``labels.csv`` whose ``file`` column is the image path relative to the root;
every other column becomes a demographic label (empty cells mean "unknown", not a group). An
``age`` column also yields ``age_band`` so false alerts can be broken down by age.

Embedding runs in worker processes because dlib's CPU embedder takes ~100 ms per face; images
in which no face is found are kept with a NaN template and an error message, so the report can
count them instead of silently shrinking the test set.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from openfrt.errors import OpenFRTError
from openfrt.vision import EngineConfig, Face, FaceEngine

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})

#: Age bands for per-group reporting: children, then roughly 15-year adult bands.
AGE_BANDS: tuple[tuple[int, int, str], ...] = (
    (0, 17, "0-17"),
    (18, 29, "18-29"),
    (30, 44, "30-44"),
    (45, 59, "45-59"),
    (60, 200, "60+"),
)

#: Quality measures kept per image (columns of :attr:`Embeddings.quality`), as in ``Face.quality``.
QUALITY_FIELDS = ("face_height_px", "sharpness", "frontalness", "yaw_deg", "roll_deg", "brightness")


@dataclass(frozen=True)
class Sample:
    """One image: where it is, whose face it shows, and its demographic labels."""

    path: Path
    identity: str
    labels: dict[str, str] = field(default_factory=dict)


def age_band(age: str) -> str:
    """The :data:`AGE_BANDS` name for an age in years; empty when the age is not a number."""
    try:
        years = int(float(age))
    except ValueError:
        return ""
    return next((name for low, high, name in AGE_BANDS if low <= years <= high), "")


def read_labels(root: Path) -> dict[str, dict[str, str]]:
    """``labels.csv`` of ``root`` as ``{relative file: {column: value}}``; empty if there is none."""
    path = root / "labels.csv"
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    labels = {}
    for row in rows:
        file = row.pop("file", None)
        if file is None:
            raise OpenFRTError(f"{path}: labels.csv needs a 'file' column")
        values = {key: (value or "").strip() for key, value in row.items() if key and key != "identity"}
        if values.get("age"):
            values["age_band"] = age_band(values["age"])
        labels[file] = values
    return labels


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_identity_folder(root: Path) -> list[Sample]:
    """Samples of ``<root>/<identity>/<image>``, the sub-folder name being the identity."""
    labels = read_labels(root)
    samples = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for image in _images(folder):
            relative = image.relative_to(root).as_posix()
            samples.append(Sample(image, folder.name, labels.get(relative, {})))
    if not samples:
        raise OpenFRTError(f"{root}: no <identity>/<image> files found")
    return samples


def load_nonmated_folder(root: Path) -> list[Sample]:
    """Samples of ``<root>/<image>``, each image its own never-enrolled person."""
    labels = read_labels(root)
    samples = [Sample(image, f"nonmated:{image.name}", labels.get(image.name, {})) for image in _images(root)]
    if not samples:
        raise OpenFRTError(f"{root}: no images found")
    return samples


@dataclass
class Embeddings:
    """Templates of a list of samples, row for row.

    ``vectors`` is ``(n, d)`` float32 with NaN rows where no template could be made (reason in
    ``errors``); ``quality`` is ``(n, len(QUALITY_FIELDS))`` with NaN rows likewise.
    """

    model_id: str
    detector: str
    vectors: np.ndarray
    quality: np.ndarray
    errors: list[str | None]

    def subset(self, keep: np.ndarray) -> Embeddings:
        """The rows where ``keep`` is true."""
        errors = [error for error, kept in zip(self.errors, keep) if kept]
        return Embeddings(self.model_id, self.detector, self.vectors[keep], self.quality[keep], errors)

    @property
    def found(self) -> np.ndarray:
        """Boolean mask of rows that have a template."""
        return ~np.isnan(self.vectors[:, 0])

    def save(self, path: Path, samples: Iterable[Sample]) -> None:
        """Cache to ``path`` (.npz) together with the sample paths, so a stale cache is detected."""
        np.savez_compressed(
            path,
            model_id=self.model_id,
            detector=self.detector,
            vectors=self.vectors,
            quality=self.quality,
            errors=np.array([e or "" for e in self.errors]),
            paths=np.array([str(s.path) for s in samples]),
        )

    @classmethod
    def load(cls, path: Path, samples: list[Sample], model_id: str, detector: str) -> Embeddings | None:
        """The cache at ``path`` if ``detector`` and ``model_id`` made it for exactly these samples."""
        if not path.is_file():
            return None
        with np.load(path) as data:
            same_engine = (str(data["model_id"]), str(data["detector"])) == (model_id, detector)
            if not same_engine or list(data["paths"]) != [str(s.path) for s in samples]:
                return None
            errors = [str(e) or None for e in data["errors"]]
            return cls(model_id, detector, data["vectors"], data["quality"], errors)


_worker_engine: FaceEngine | None = None


def _init_worker(config: EngineConfig) -> None:
    global _worker_engine
    _worker_engine = FaceEngine(config)


def subject_face(faces: list[Face], shape: tuple[int, ...]) -> Face:
    """The face an evaluation image is labelled with: the most central of the larger faces.

    Labelled face sets (LFW, UTKFace) centre the labelled person; taking simply the largest
    face picks a bystander in some LFW images (e.g. a politician behind the subject) and turns
    one photo into a false "non-mated" match. Faces under a quarter of the largest one's area
    are ignored so a small background face at the centre cannot win.
    """
    largest = max(face.area for face in faces)
    centre_x, centre_y = shape[1] / 2, shape[0] / 2

    def off_centre(face: Face) -> float:
        x, y, width, height = face.box
        return float(np.hypot(x + width / 2 - centre_x, y + height / 2 - centre_y))

    return min((face for face in faces if face.area >= largest / 4), key=off_centre)


def _embed_one(path: str) -> tuple[np.ndarray | None, tuple[float, ...] | None, str | None]:
    """Template and quality of the labelled face in one image, or the reason there is none."""
    assert _worker_engine is not None
    try:
        rgb = _worker_engine.load(path, path)
        faces = _worker_engine.detector.detect(rgb)
        if not faces:
            return None, None, f"{path}: no face found (detector {_worker_engine.detector.name})"
        face = subject_face(faces, rgb.shape)
        template = _worker_engine.embedder.embed(rgb, [face])[0]
    except OpenFRTError as exc:
        return None, None, str(exc)
    return template.vector, tuple(getattr(face.quality, name) for name in QUALITY_FIELDS), None


def embed_samples(
    samples: list[Sample], config: EngineConfig, workers: int = 2, description: str = "embedding"
) -> Embeddings:
    """Template of the labelled face (:func:`subject_face`) of every sample, made in ``workers`` processes with a progress bar.

    Each worker runs single-threaded inference unless ``config.threads`` says otherwise, so the
    processes do not fight over the cores.
    """
    if config.threads == 0:
        config = config.model_copy(update={"threads": 1})
    model_id = FaceEngine(config).embedder.model_id
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as progress, ProcessPoolExecutor(
        workers, initializer=_init_worker, initargs=(config,)
    ) as pool:
        task = progress.add_task(description, total=len(samples))
        results = []
        for result in pool.map(_embed_one, [str(s.path) for s in samples], chunksize=8):
            results.append(result)
            progress.advance(task)
    dim = next((r[0].shape[0] for r in results if r[0] is not None), 128)
    vectors = np.stack([r[0] if r[0] is not None else np.full(dim, np.nan, np.float32) for r in results])
    quality = np.array([r[1] if r[1] is not None else (np.nan,) * len(QUALITY_FIELDS) for r in results])
    return Embeddings(model_id, config.detector, vectors.astype(np.float32), quality.reshape(len(samples), -1), [r[2] for r in results])


def embed_cached(
    samples: list[Sample], config: EngineConfig, cache: Path | None, workers: int = 2, description: str = "embedding"
) -> Embeddings:
    """:func:`embed_samples`, reusing ``cache`` when it matches the model and the sample list."""
    if cache is not None:
        cached = Embeddings.load(cache, samples, FaceEngine(config).embedder.model_id, config.detector)
        if cached is not None:
            return cached
    embeddings = embed_samples(samples, config, workers, description)
    if cache is not None:
        embeddings.save(cache, samples)
    return embeddings
