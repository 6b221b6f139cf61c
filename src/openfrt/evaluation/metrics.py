"""Open-set identification metrics in the NIST FRVT 1:N sense, and the statistics around them.

A search returns the watchlist's best-scoring candidate. For **mated** searches (the probe's
subject is enrolled) the outcome that matters is the score of the right subject *if* it is at
rank 1; for **non-mated** searches it is the top score. So each search reduces to one number:

- ``mated``: score of the true subject when it is ranked first, ``-inf`` when someone else is;
- ``nonmated``: the highest score over the whole watchlist.

Then ``TPIR(T) = mean(mated >= T)``, ``FNIR = 1 - TPIR`` and ``FPIR(T) = mean(nonmated >= T)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Two-sided 95% normal quantile, for Wilson intervals and z tests.
Z95 = 1.959963984540054


@dataclass(frozen=True)
class SearchOutcomes:
    """One number per search (module docstring) for mated and non-mated probes."""

    mated: np.ndarray
    nonmated: np.ndarray

    def tpir(self, threshold: float | np.ndarray) -> np.ndarray | float:
        return _share_at_or_above(self.mated, threshold)

    def fpir(self, threshold: float | np.ndarray) -> np.ndarray | float:
        return _share_at_or_above(self.nonmated, threshold)

    @property
    def rank1(self) -> float:
        """Rank-1 identification rate: TPIR with no threshold (closed-set accuracy)."""
        return float(np.mean(np.isfinite(self.mated))) if self.mated.size else float("nan")


def _share_at_or_above(scores: np.ndarray, threshold: float | np.ndarray) -> np.ndarray | float:
    """Share of ``scores`` >= each threshold, in O(log n) per threshold via a sorted copy."""
    if scores.size == 0:
        return np.full(np.shape(threshold), np.nan) if np.ndim(threshold) else float("nan")
    ordered = np.sort(scores)
    below = np.searchsorted(ordered, threshold, side="left")
    share = (ordered.size - below) / ordered.size
    return share if np.ndim(threshold) else float(share)


def search_outcomes(scores: np.ndarray, true_index: np.ndarray) -> np.ndarray:
    """Per-search outcome from a ``(probes, subjects)`` score matrix.

    ``true_index[i]`` is the column of probe ``i``'s subject, or -1 for a non-mated probe. Mated
    rows give the true subject's score when it ranks first (ties count against the probe, as
    an operator could not tell them apart) and ``-inf`` otherwise; non-mated rows give the top
    score.
    """
    top = scores.max(axis=1)
    mated = true_index >= 0
    outcome = top.astype(np.float64)
    if np.any(mated):
        rows = np.flatnonzero(mated)
        true_scores = scores[rows, true_index[rows]]
        ties = (scores[rows] >= true_scores[:, None]).sum(axis=1)
        outcome[rows] = np.where(ties == 1, true_scores, -np.inf)
    return outcome


@dataclass(frozen=True)
class ThresholdChoice:
    """A threshold picked for a target FPIR, how it was picked, and what it achieves."""

    threshold: float
    method: str
    target_fpir: float
    empirical_threshold: float
    tail_threshold: float | None
    fpir: float
    fpir_ci: tuple[float, float]
    false_alerts: int
    searches: int
    tpir: float
    tpir_ci: tuple[float, float]

    @property
    def resolution(self) -> float:
        """Smallest non-zero FPIR these searches can measure: one false alert in all of them."""
        return 1.0 / self.searches


def empirical_threshold(nonmated: np.ndarray, target_fpir: float) -> float:
    """Lowest threshold whose measured FPIR is at or below ``target_fpir``.

    With ``M`` non-mated searches at most ``floor(target * M)`` may alert; when that is 0 the
    threshold sits just above the highest non-mated top score.
    """
    ordered = np.sort(nonmated)[::-1]
    allowed = math.floor(target_fpir * ordered.size + 1e-9)
    if allowed >= ordered.size:
        return float(ordered[-1])
    return float(np.nextafter(ordered[allowed], np.inf))


@dataclass(frozen=True)
class ExponentialTail:
    """Exponential model of the top of the non-mated score distribution.

    Above ``start`` (the k-th highest of ``searches`` non-mated top scores),
    ``FPIR(T) = (k / searches) * exp(-(T - start) / mean_excess)``: the simplest
    peaks-over-threshold model, which lets FPIR be estimated below the 1/M a count can resolve.
    """

    start: float
    mean_excess: float
    k: int
    searches: int

    @classmethod
    def fit(cls, nonmated: np.ndarray, tail_share: float = 0.02, min_tail: int = 30) -> ExponentialTail | None:
        """Fit to the top ``max(min_tail, tail_share * M)`` scores; None when too few or degenerate."""
        finite = np.sort(nonmated[np.isfinite(nonmated)])[::-1]
        k = max(min_tail, int(tail_share * nonmated.size))
        if finite.size <= k:
            return None
        start = float(finite[k])
        mean_excess = float(np.mean(finite[:k] - start))
        return cls(start, mean_excess, k, int(nonmated.size)) if mean_excess > 0 else None

    def fpir(self, threshold: np.ndarray) -> np.ndarray:
        return (self.k / self.searches) * np.exp(-(np.asarray(threshold) - self.start) / self.mean_excess)

    def threshold(self, target_fpir: float) -> float:
        return self.start + self.mean_excess * math.log((self.k / self.searches) / target_fpir)


def fpir_estimate(nonmated: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """FPIR at ``thresholds``: counted where the data resolve it, the exponential tail beyond.

    Below the tail's start the measured share is used; above it, the fitted tail, so the
    estimate keeps falling smoothly instead of hitting 0 at the highest non-mated score.
    """
    measured = np.asarray(_share_at_or_above(nonmated, thresholds), dtype=np.float64)
    tail = ExponentialTail.fit(nonmated)
    if tail is None:
        return measured
    return np.where(np.asarray(thresholds) > tail.start, tail.fpir(thresholds), measured)


def choose_threshold(outcomes: SearchOutcomes, target_fpir: float, given: float | None = None) -> ThresholdChoice:
    """The threshold for ``target_fpir``: the higher (more cautious) of the empirical and the tail-fit one.

    The empirical threshold cannot see rates below 1/M and is decided by one or two searches;
    the tail fit uses the shape of the top few percent of non-mated scores to extrapolate. Taking
    the higher keeps the measured FPIR at or below the target *and* the modelled one. A
    ``given`` threshold (e.g. a shipped default under test) is used as it is, with both
    estimates still reported beside it.
    """
    empirical = empirical_threshold(outcomes.nonmated, target_fpir)
    fitted = ExponentialTail.fit(outcomes.nonmated)
    tail = fitted.threshold(target_fpir) if fitted else None
    if given is not None:
        threshold, method = given, "given"
    elif tail is not None and tail > empirical:
        threshold, method = tail, "exponential tail fit"
    else:
        threshold, method = empirical, "empirical"
    searches = int(outcomes.nonmated.size)
    alerts = int(np.sum(outcomes.nonmated >= threshold))
    hits = int(np.sum(outcomes.mated >= threshold))
    return ThresholdChoice(
        threshold=float(threshold),
        method=method,
        target_fpir=target_fpir,
        empirical_threshold=empirical,
        tail_threshold=tail,
        fpir=alerts / searches,
        fpir_ci=wilson_interval(alerts, searches),
        false_alerts=alerts,
        searches=searches,
        tpir=hits / outcomes.mated.size,
        tpir_ci=wilson_interval(hits, int(outcomes.mated.size)),
    )


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion: sound at 0 and near 0, unlike the normal one."""
    if trials == 0:
        return (float("nan"), float("nan"))
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the ends, not 1e-18 off
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return (low, high)


def two_proportion_p_value(successes_a: int, trials_a: int, successes_b: int, trials_b: int) -> float:
    """Two-sided p-value of a pooled two-proportion z test (equivalent to a 2x2 chi-square test)."""
    if trials_a == 0 or trials_b == 0:
        return float("nan")
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    variance = pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b)
    if variance == 0:
        return 1.0
    z = (successes_a / trials_a - successes_b / trials_b) / math.sqrt(variance)
    return math.erfc(abs(z) / math.sqrt(2))


@dataclass(frozen=True)
class GroupRate:
    """A rate for one demographic group, its 95% interval, and how it compares with everyone else."""

    column: str
    group: str
    successes: int
    trials: int
    rate: float
    ci: tuple[float, float]
    p_value: float
    significant: bool


def group_rates(hits: np.ndarray, groups: np.ndarray, column: str, alpha: float = 0.05) -> list[GroupRate]:
    """Rate of ``hits`` per value of ``groups`` (empty = unknown, skipped), each tested against the rest.

    ``significant`` uses a Bonferroni correction over the groups of this column (``alpha /
    number of groups``), because testing every group against the rest makes several
    comparisons and one of five would pass at 0.05 by chance alone now and then.
    """
    known = groups != ""
    names = sorted(set(groups[known].tolist()))
    corrected = alpha / max(1, len(names))
    rates = []
    for name in names:
        inside = groups == name
        rest = known & ~inside
        s, n = int(hits[inside].sum()), int(inside.sum())
        p = two_proportion_p_value(s, n, int(hits[rest].sum()), int(rest.sum()))
        rates.append(GroupRate(column, name, s, n, s / n, wilson_interval(s, n), p, bool(p < corrected)))
    return rates


def det_points(outcomes: SearchOutcomes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, FPIR, FNIR) at every distinct observed score, so the DET curve is exact."""
    scores = np.concatenate([outcomes.mated, outcomes.nonmated])
    thresholds = np.unique(scores[np.isfinite(scores)])
    fpir = np.asarray(outcomes.fpir(thresholds))
    return thresholds, fpir, 1.0 - np.asarray(outcomes.tpir(thresholds))
