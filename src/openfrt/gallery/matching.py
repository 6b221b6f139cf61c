"""Exact 1:N matching of a probe against a watchlist's templates.

Watchlists are small (hundreds to a few thousand subjects), so an exact matrix product is
both fast (well under a millisecond) and free of the recall loss of an approximate index.
A subject with several reference images is searched as the unit mean of their templates: on
../shared it raised TPIR at FPIR 1/6,000 from 3.2% to 8.0% for dlib (taking the best single
template: 7.2%), and keeps one comparison per subject, so false alerts still scale with the
watchlist's size as calibrated (docs/evaluation.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from openfrt.errors import ModelMismatchError
from openfrt.evaluation.scoring import subject_centres
from openfrt.vision import Template
from openfrt.vision.types import cosine_to_similarity


@dataclass(frozen=True)
class Candidate:
    """A subject proposed for a probe: similarity on openfrt's 0..1 scale, rank from 1, and (from
    a retrospective search) the reference image whose template scored it."""

    subject: str
    similarity: float
    rank: int
    reference_image: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {"subject": self.subject, "similarity": round(self.similarity, 6), "rank": self.rank}


@dataclass(frozen=True)
class Identification:
    """The ranked candidates for one probe against one watchlist, and whether that is an alert."""

    watchlist: str
    threshold: float
    candidates: tuple[Candidate, ...]
    alert: bool


class Matcher(Protocol):
    """What the live pipeline searches a probe against: a watchlist's :class:`TemplateMatrix`
    live, or the reference database's index in a footage search (:mod:`openfrt.footage`)."""

    def rank(self, probe: Template, top: int) -> list[Candidate]:
        """The ``top`` best-scoring subjects for ``probe``, best first."""


class TemplateMatrix:
    """One row per watchlist subject: the unit mean of that subject's templates."""

    def __init__(self, model_id: str, rows: Sequence[tuple[str, Template]]) -> None:
        self.model_id = model_id
        by_subject: dict[str, list[np.ndarray]] = {}
        for subject, template in sorted(rows, key=lambda row: row[0]):
            by_subject.setdefault(subject, []).append(template.vector)
        self.subjects = np.array(list(by_subject), dtype=object)
        #: The most reference templates any subject has: calibration depends on it.
        self.max_references = max((len(vectors) for vectors in by_subject.values()), default=1)
        self._centres = subject_centres([np.stack(v) for v in by_subject.values()]) if by_subject else None

    def __len__(self) -> int:
        """Number of subjects (not templates)."""
        return len(self.subjects)

    def rank(self, probe: Template, top: int) -> list[Candidate]:
        """The ``top`` best-scoring subjects for ``probe``, best first."""
        if probe.model_id != self.model_id:
            raise ModelMismatchError(
                f"probe made by {probe.model_id} cannot be searched against templates of {self.model_id}; "
                "embed the probe with the watchlist's model"
            )
        if self._centres is None or top <= 0:
            return []
        cosines = self._centres @ probe.vector
        order = np.argsort(-cosines, kind="stable")[:top]
        similarities = cosine_to_similarity(cosines[order])
        return [
            Candidate(str(self.subjects[index]), float(similarity), rank)
            for rank, (index, similarity) in enumerate(zip(order, similarities), start=1)
        ]
