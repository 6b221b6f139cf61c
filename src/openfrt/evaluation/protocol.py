"""The open-set protocol: who is enrolled, which images search, and against whom.

Rows index one combined list: the identity folder's samples first, then the non-mated folder's.
Only images in which a face was found take part (the rest are counted by the report).

1. Each identity's usable images are shuffled with a seeded generator; identities are taken in
   sorted order, so the split depends only on the data and the seed.
2. **Mated subjects** are identities with two or more usable images. If there are more than
   ``watchlist_size``, a seeded random subset of that size is enrolled and the others become
   non-mated.
3. Each enrolled mated subject reserves its first ``min(reference_pool, images - 1)`` images as
   reference images and enrols the first ``enrol_images`` of those; all later images are
   **mated probes**. A reference pool larger than the enrolment lets one-image and
   several-image enrolment be compared on exactly the same probes.
4. The watchlist is **padded** to ``watchlist_size`` with seeded single-image identities (one
   reference image each, never searched for), as a real watchlist holds many people who do not
   walk past. If too few exist, the watchlist is smaller and the report says so.
5. ``cohort_size`` further single-image identities are set aside as a **cohort** of known
   non-mated faces for score normalisation; they are never probes.
6. **Non-mated probes** are every usable image of the non-mated folder plus every usable image
   of identities that were neither enrolled nor put in the cohort.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Protocol:
    """Parameters of the split; defaults are the headline protocol of ``openfrt evaluate``."""

    watchlist_size: int = 1000
    enrol_images: int = 1
    reference_pool: int = 1
    cohort_size: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.watchlist_size < 1 or self.enrol_images < 1 or self.cohort_size < 0:
            raise ValueError("watchlist_size and enrol_images must be >= 1 and cohort_size >= 0")
        if self.reference_pool < self.enrol_images:
            raise ValueError("reference_pool must be at least enrol_images")


@dataclass(frozen=True)
class Split:
    """Row indices of one protocol run.

    ``references[j]`` holds the enrolled rows of watchlist subject ``j`` (named ``subjects[j]``);
    ``mated_truth[i]`` is the subject column of mated probe row ``mated[i]``.
    """

    subjects: tuple[str, ...]
    references: tuple[np.ndarray, ...]
    mated: np.ndarray
    mated_truth: np.ndarray
    nonmated: np.ndarray
    cohort: np.ndarray

    @property
    def mated_subjects(self) -> int:
        return len(set(self.mated_truth.tolist()))


def split(identities: list[str], usable: np.ndarray, nonmated_rows: np.ndarray, protocol: Protocol) -> Split:
    """Apply :class:`Protocol` to samples with identity ``identities[row]`` (module docstring).

    ``usable`` marks identity-folder rows that have a template; ``nonmated_rows`` are the usable
    rows of the non-mated folder (numbered after the identity folder's rows).
    """
    rng = np.random.default_rng(protocol.seed)
    rows_by_identity = _shuffled_rows(identities, usable, rng)
    multi = [name for name, rows in rows_by_identity.items() if len(rows) >= 2]
    single = [name for name, rows in rows_by_identity.items() if len(rows) == 1]
    enrolled = _take(multi, protocol.watchlist_size, rng)
    singles = list(rng.permutation(single)) if single else []
    padding = singles[: max(0, protocol.watchlist_size - len(enrolled))]
    cohort = singles[len(padding) : len(padding) + protocol.cohort_size]

    subjects, references, mated, truth = [], [], [], []
    for column, name in enumerate(sorted(enrolled) + sorted(padding)):
        rows = rows_by_identity[name]
        pool = max(1, min(protocol.reference_pool, len(rows) - 1))
        subjects.append(name)
        references.append(rows[: min(protocol.enrol_images, pool)])
        mated.extend(rows[pool:])
        truth.extend([column] * (len(rows) - pool))
    taken = set(enrolled) | set(padding) | set(cohort)
    unenrolled = [row for name, rows in rows_by_identity.items() if name not in taken for row in rows]
    return Split(
        subjects=tuple(subjects),
        references=tuple(references),
        mated=np.array(mated, dtype=np.int64),
        mated_truth=np.array(truth, dtype=np.int64),
        nonmated=np.concatenate([np.array(unenrolled, dtype=np.int64), np.asarray(nonmated_rows, dtype=np.int64)]),
        cohort=np.array([rows_by_identity[name][0] for name in cohort], dtype=np.int64),
    )


def _shuffled_rows(identities: list[str], usable: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    grouped: dict[str, list[int]] = {}
    for row, name in enumerate(identities):
        if usable[row]:
            grouped.setdefault(name, []).append(row)
    return {name: rng.permutation(np.array(grouped[name])) for name in sorted(grouped)}


def _take(names: list[str], count: int, rng: np.random.Generator) -> list[str]:
    """``count`` of ``names`` chosen at random (all of them if there are no more)."""
    if len(names) <= count:
        return list(names)
    return [names[i] for i in sorted(rng.choice(len(names), count, replace=False))]
