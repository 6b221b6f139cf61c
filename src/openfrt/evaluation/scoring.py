"""How a probe is scored against watchlist subjects: reference fusion, normalisation, quality gate.

These are the scoring choices ``openfrt evaluate`` compares; the ones that raise TPIR at the
target FPIR are what the identify path should use, with the same functions, so the evaluated
and the deployed scores are the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import numpy as np

from openfrt.evaluation.choices import Fusion
from openfrt.vision.types import cosine_to_similarity


def subject_scores(probes: np.ndarray, references: Sequence[np.ndarray], fusion: Fusion = "max") -> np.ndarray:
    """Similarity (0..1) of each probe template to each subject, ``(probes, subjects)``.

    ``references[j]`` is a ``(k_j, d)`` array of subject ``j``'s unit templates. With several
    references per subject: ``max`` takes the best-matching reference (robust to one poor
    image), ``mean`` averages the similarities, ``mean-template`` compares with the normalised
    mean of the references (one comparison per subject, so searches cost the same as with one
    image).
    """
    if fusion == "mean-template":
        return cosine_to_similarity(probes @ subject_centres(references).T)
    counts = np.array([len(refs) for refs in references])
    similarities = cosine_to_similarity(probes @ np.concatenate(references).T)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    if fusion == "max":
        return np.maximum.reduceat(similarities, starts, axis=1)
    if fusion == "mean":
        return np.add.reduceat(similarities, starts, axis=1) / counts
    raise ValueError(f"unknown fusion {fusion!r}: use max, mean or mean-template")


def subject_centres(references: Sequence[np.ndarray]) -> np.ndarray:
    """``(subjects, d)`` unit mean template of each subject's references: what a watchlist
    enrolled with several images per subject should store and search against."""
    centres = np.stack([refs.mean(axis=0) for refs in references])
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


@dataclass(frozen=True)
class CohortStats:
    """Mean and spread of a set of templates' similarities to a cohort of non-mated faces."""

    mean: np.ndarray
    std: np.ndarray


def cohort_stats(templates: np.ndarray, cohort: np.ndarray) -> CohortStats:
    """Per-template similarity statistics against ``cohort`` (faces known to be other people).

    A face that scores high against everyone in the cohort (a "wolf" in the biometrics
    literature, often from a group the model separates poorly) gets a high mean; normalising
    by it stops such faces from raising false alerts merely by being typical of that group.
    """
    similarities = cosine_to_similarity(templates @ cohort.T)
    return CohortStats(similarities.mean(axis=1), np.maximum(similarities.std(axis=1), 1e-6))


def probe_tnorm(scores: np.ndarray, probe: CohortStats) -> np.ndarray:
    """T-norm: each probe's scores in standard deviations above its own cohort mean."""
    return (scores - probe.mean[:, None]) / probe.std[:, None]


def candidate_znorm(scores: np.ndarray, candidates: CohortStats) -> np.ndarray:
    """Z-norm: each subject's scores in standard deviations above that subject's cohort mean."""
    return (scores - candidates.mean[None, :]) / candidates.std[None, :]


@dataclass(frozen=True)
class QualityBar:
    """Minimum probe quality to search with; probes below it are refused, not searched."""

    min_face_height_px: float = 0.0
    min_sharpness: float = 0.0
    min_frontalness: float = 0.0

    def accepts(self, face_height_px: np.ndarray, sharpness: np.ndarray, frontalness: np.ndarray) -> np.ndarray:
        """Boolean mask of probes meeting every part of the bar."""
        return (
            (face_height_px >= self.min_face_height_px)
            & (sharpness >= self.min_sharpness)
            & (frontalness >= self.min_frontalness)
        )
