"""Exact 1:N matching of a probe against a watchlist's templates.

Watchlists are small (hundreds to a few thousand subjects), so an exact matrix product is
both fast (well under a millisecond) and free of the recall loss of an approximate index.
A subject with several reference images scores as its best template.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from openfrt.errors import ModelMismatchError
from openfrt.vision import Template
from openfrt.vision.types import cosine_to_similarity


@dataclass(frozen=True)
class Candidate:
    """A subject proposed for a probe: similarity on openfrt's 0..1 scale, rank from 1."""

    subject: str
    similarity: float
    rank: int

    def as_dict(self) -> dict[str, object]:
        return {"subject": self.subject, "similarity": round(self.similarity, 6), "rank": self.rank}


@dataclass(frozen=True)
class Identification:
    """The ranked candidates for one probe against one watchlist, and whether that is an alert."""

    watchlist: str
    threshold: float
    candidates: tuple[Candidate, ...]
    alert: bool


class TemplateMatrix:
    """All templates of one watchlist as one matrix, with the subject each row belongs to."""

    def __init__(self, model_id: str, rows: Sequence[tuple[str, Template]]) -> None:
        ordered = sorted(rows, key=lambda row: row[0])
        self.model_id = model_id
        # Rows are grouped by subject; _starts holds the row where each subject's templates begin.
        owners = np.array([subject for subject, _ in ordered], dtype=object)
        self.subjects, self._starts = np.unique(owners, return_index=True)
        self._vectors = np.stack([template.vector for _, template in ordered]) if ordered else np.zeros((0, 0), np.float32)

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
        if not len(self) or top <= 0:
            return []
        best = np.maximum.reduceat(self._vectors @ probe.vector, self._starts)
        order = np.argsort(-best, kind="stable")[:top]
        similarities = cosine_to_similarity(best[order])
        return [
            Candidate(str(self.subjects[index]), float(similarity), rank)
            for rank, (index, similarity) in enumerate(zip(order, similarities), start=1)
        ]
