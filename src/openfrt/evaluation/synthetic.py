"""Synthetic template galleries shaped like a real model's, for benchmarks and tests of search.

Uniform random vectors are a poor stand-in for face templates: in high dimensions all their
pairwise similarities are nearly equal, so "the nearest neighbour" is noise and no index's
agreement figure means anything. A gallery here is built like a real one instead: each identity
has a centre, each enrolled image is that centre plus within-person variation, and queries are
fresh images of enrolled people (mated) or of people never enrolled (non-mated). The ``dlib``
profile is calibrated on 357 dlib templates of 120 LFW identities (mean impostor cosine 0.84,
mean genuine cosine 0.95, decaying PCA spectra); ``sface`` is fitted by benchmarks/fit_profile.py
to SFace templates of 2,451 LFW images of 842 identities (mean and covariance traces measured,
one shared spectral decay chosen so impostor cosines match: 0.088 ± 0.089 synthetic against
0.087 ± 0.088 real, mated 0.657 against 0.659 — with less spread, 0.05 against 0.11, as image
quality is not modelled); ``arcface`` is an uncalibrated 512-d profile with impostor cosine
near 0, as margin-loss models give.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
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
    # Fitted to SFace templates of 842 LFW identities (see module docstring).
    "sface": Profile(128, mean_sq=0.088, between_var=0.574, within_var=0.340, between_decay=0.15, within_decay=0.15),
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

    def gaussian(self, n: int, sd: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """``n`` draws of the profile's variation with spectrum ``sd`` (from ``rng``, default the generator's)."""
        return ((rng or self.rng).standard_normal((n, self.profile.dim), dtype=np.float32) * sd) @ self.rotation

    def centres(self, n: int) -> np.ndarray:
        """Identity centres (unnormalised: mean plus between-identity variation)."""
        return self.mean + self.gaussian(n, self.between_sd)

    def images(self, centres: np.ndarray, chunk: int = 200_000, rng: np.random.Generator | None = None) -> np.ndarray:
        """One unit-length template per row of ``centres``: the centre plus within-person variation."""
        out = np.empty_like(centres)
        for start in range(0, len(centres), chunk):
            block = centres[start : start + chunk] + self.gaussian(len(centres[start : start + chunk]), self.within_sd, rng)
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


class StreamedGallery:
    """A gallery of ``size`` templates produced in chunks, reproducibly, so that galleries of tens
    of millions can be indexed — and scanned again for exact answers — without ever holding a
    copy: chunk ``c`` draws its identities and images from its own seeded generators.

    People never span chunks (1-5+ images each, mean 2, as :func:`make_dataset`); ids are
    arbitrary non-contiguous database keys, distinct across chunks.
    """

    def __init__(self, generator: Generator, size: int, seed: int, chunk: int = 500_000) -> None:
        self.generator, self.size, self.seed, self.chunk = generator, size, seed, chunk

    def __len__(self) -> int:
        return self.size

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(ids, unit vectors)`` of each chunk in turn (the same ones on every pass)."""
        for number in range(math.ceil(self.size / self.chunk)):
            yield self._chunk(number, images=True)

    def queries(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` probes and whether each is mated: the first half fresh images of enrolled people
        (spread over the chunks), the rest images of people never enrolled."""
        n_mated = n // 2
        chunks = math.ceil(self.size / self.chunk)
        rng = np.random.default_rng([self.seed, chunks, 1])
        per_chunk = np.bincount(rng.integers(0, chunks, n_mated), minlength=chunks)
        mated = [self._chunk(number, images=False)[1] for number in range(chunks) if per_chunk[number]]
        centres = np.concatenate([c[rng.integers(0, len(c), count)] for c, count in zip(mated, per_chunk[per_chunk > 0])])
        probes = np.concatenate([centres, self._centres(rng, n - n_mated)])
        return self.generator.images(probes, rng=rng), np.arange(n) < n_mated

    def people(self, ids: np.ndarray) -> np.ndarray:
        """The person each template id (-1: none) is an image of, as a number unique in the
        gallery (-1 for -1): two images of one person are one candidate to an investigator."""
        people = np.full(len(ids), -1, dtype=np.int64)
        chunk_of = np.where(ids >= 0, (ids - 1) // 3 // self.chunk, -1)  # ids are (chunk * size + slot) * 3 + 1
        for number in np.unique(chunk_of[chunk_of >= 0]):
            ids_in_chunk, owner, _ = self._layout(int(number))
            position = np.argsort(ids_in_chunk)
            wanted = chunk_of == number
            people[wanted] = number * self.chunk + owner[position[np.searchsorted(ids_in_chunk, ids[wanted], sorter=position)]]
        return people

    def _layout(self, number: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Chunk ``number``'s template ids, the person (in the chunk) each is of, and its people's centres."""
        size = min(self.chunk, self.size - number * self.chunk)
        rng = np.random.default_rng([self.seed, number])
        owner = np.repeat(np.arange(size), rng.geometric(0.5, size=size))[:size]
        centres = self._centres(rng, int(owner[-1]) + 1)
        ids = (number * self.chunk + rng.permutation(size)).astype(np.int64) * 3 + 1
        return ids, owner, centres

    def _chunk(self, number: int, *, images: bool) -> tuple[np.ndarray, np.ndarray]:
        """Chunk ``number``: ``(ids, vectors)``, or with ``images`` false ``(ids, its people's centres)``."""
        ids, owner, centres = self._layout(number)
        if not images:
            return ids, centres
        return ids, self.generator.images(centres[owner], rng=np.random.default_rng([self.seed, number, 2]))

    def _centres(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.generator.mean + self.generator.gaussian(n, self.generator.between_sd, rng)
