"""Synthetic template galleries shaped like a real model's, for benchmarks and tests of search.

Uniform random vectors are a poor stand-in for face templates: in high dimensions all their
pairwise similarities are nearly equal, so "the nearest neighbour" is noise and no index's
agreement figure means anything. A gallery here is built like a real one instead: each identity
has a centre, each enrolled image is that centre plus within-person variation, and queries are
fresh images of enrolled people (mated) or of people never enrolled (non-mated). The ``dlib``
profile is calibrated on 357 dlib templates of 120 LFW identities (mean impostor cosine 0.84,
mean genuine cosine 0.95, decaying PCA spectra); ``arcface`` is an uncalibrated 512-d profile
with impostor cosine near 0, as margin-loss models give.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Profile:
    """How a model's templates spread: squared length of the mean template, variance between
    identity centres and within one identity, and the power-law decay of each spectrum."""

    dim: int
    mean_sq: float
    between_var: float
    within_var: float
    between_decay: float
    within_decay: float


PROFILES = {
    # Fitted to dlib templates of 120 LFW identities x 3 images (see module docstring).
    "dlib": Profile(128, mean_sq=0.838, between_var=0.115, within_var=0.047, between_decay=0.65, within_decay=0.4),
    "arcface": Profile(512, mean_sq=0.0, between_var=0.6, within_var=0.4, between_decay=0.5, within_decay=0.3),
}


class Generator:
    """Synthetic templates of one profile: a fixed random basis, mean and pair of spectra."""

    def __init__(self, profile: Profile, seed: int) -> None:
        self.profile = profile
        self.rng = np.random.default_rng(seed)
        dim = profile.dim
        self.rotation = np.linalg.qr(self.rng.standard_normal((dim, dim)))[0].astype(np.float32)
        mean = self.rng.standard_normal(dim)
        self.mean = (mean / np.linalg.norm(mean) * np.sqrt(profile.mean_sq)).astype(np.float32)
        self.between_sd = self._spectrum(profile.between_var, profile.between_decay)
        self.within_sd = self._spectrum(profile.within_var, profile.within_decay)

    def _spectrum(self, total: float, decay: float) -> np.ndarray:
        weights = np.arange(1, self.profile.dim + 1, dtype=np.float64) ** -decay
        return np.sqrt(weights / weights.sum() * total).astype(np.float32)

    def _gaussian(self, n: int, sd: np.ndarray) -> np.ndarray:
        return (self.rng.standard_normal((n, self.profile.dim), dtype=np.float32) * sd) @ self.rotation

    def centres(self, n: int) -> np.ndarray:
        """Identity centres (unnormalised: mean plus between-identity variation)."""
        return self.mean + self._gaussian(n, self.between_sd)

    def images(self, centres: np.ndarray, chunk: int = 200_000) -> np.ndarray:
        """One unit-length template per row of ``centres``: the centre plus within-person variation."""
        out = np.empty_like(centres)
        for start in range(0, len(centres), chunk):
            block = centres[start : start + chunk] + self._gaussian(len(centres[start : start + chunk]), self.within_sd)
            out[start : start + chunk] = block / np.linalg.norm(block, axis=1, keepdims=True)
        return out


@dataclass
class Dataset:
    gallery: np.ndarray
    ids: np.ndarray
    queries: np.ndarray
    mated: np.ndarray


def make_dataset(generator: Generator, size: int, n_queries: int) -> Dataset:
    """A gallery of ``size`` templates (1-5+ images per person, mean 2, like repeat arrests) and
    ``n_queries`` probes, half of enrolled people, half of people never enrolled."""
    rng = generator.rng
    per_person = rng.geometric(0.5, size=size)  # over-long; cut to ``size`` templates below
    owner = np.repeat(np.arange(size), per_person)[:size]
    centres = generator.centres(int(owner[-1]) + 1)
    gallery = generator.images(centres[owner])
    n_mated = n_queries // 2
    probes = np.concatenate([centres[rng.integers(0, len(centres), n_mated)], generator.centres(n_queries - n_mated)])
    mated = np.arange(n_queries) < n_mated
    ids = rng.permutation(size).astype(np.int64) * 3 + 1  # arbitrary, non-contiguous database ids
    return Dataset(gallery, ids, generator.images(probes), mated)
