"""Run the open-set protocol on embedded data and gather everything the report shows.

:func:`run` is the one place a protocol, a scoring choice and a target FPIR become per-search
outcomes, TPIR/FPIR, a threshold and per-group rates; the CLI, the calibration writer and the
experiments all call it, so they cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from openfrt.evaluation.calibration import Calibration, CalibrationTable
from openfrt.evaluation.dataset import (
    QUALITY_FIELDS,
    Embeddings,
    Sample,
    embed_cached,
    load_identity_folder,
    load_nonmated_folder,
)
from openfrt.evaluation.metrics import (
    GroupRate,
    SearchOutcomes,
    ThresholdChoice,
    choose_threshold,
    empirical_threshold,
    fpir_estimate,
    group_rates,
    search_outcomes,
)
from openfrt.evaluation.protocol import Protocol, Split, split
from openfrt.evaluation.choices import Fusion, Normalisation
from openfrt.evaluation.scoring import (
    QualityBar,
    candidate_znorm,
    cohort_stats,
    probe_tnorm,
    subject_centres,
    subject_scores,
)
from openfrt.vision import EngineConfig

#: Label columns broken down per group when present (``set`` says which folder a probe came from).
GROUP_COLUMNS = ("set", "gender", "race", "age_band")

#: Overall FPIR of the second operating point at which groups are compared. At the target FPIR
#: there are too few false alerts (often none) to compare groups; at 1 in 100 there are dozens.
DIAGNOSTIC_FPIR = 0.01

#: Groups smaller than this are left out of the breakdown: their intervals are too wide to mean much.
MIN_GROUP_SIZE = 30


@dataclass
class EvaluationData:
    """Samples of both folders (identity folder first) and their templates, row for row."""

    samples: list[Sample]
    identity_count: int
    embeddings: Embeddings
    excluded: int = 0

    @property
    def nonmated_rows(self) -> np.ndarray:
        rows = np.arange(self.identity_count, len(self.samples))
        return rows[self.embeddings.found[rows]]

    def no_face(self) -> dict[str, int]:
        """Images without a usable face, per folder: reported, never silently dropped."""
        missing = ~self.embeddings.found
        return {
            "identities": int(missing[: self.identity_count].sum()),
            "nonmated": int(missing[self.identity_count :].sum()),
        }

    def no_face_reasons(self) -> list[str]:
        """Why each image without a template has none (detector found no face, or the image is bad)."""
        return [error for error in self.embeddings.errors if error]

    def quality(self, name: str) -> np.ndarray:
        return self.embeddings.quality[:, QUALITY_FIELDS.index(name)]

    def labels(self, column: str, rows: np.ndarray) -> np.ndarray:
        if column == "set":
            return np.where(rows < self.identity_count, "identity folder", "non-mated folder")
        return np.array([self.samples[row].labels.get(column, "") for row in rows], dtype=object).astype(str)


def read_exclusions(path: Path) -> frozenset[str]:
    """Image paths (relative to their folder, as in labels.csv) listed one per line; ``#`` starts a comment."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return frozenset(line for line in lines if line)


def load_data(
    identities: Path,
    nonmated: Path,
    config: EngineConfig,
    workers: int = 2,
    cache_dir: Path | None = None,
    exclude: frozenset[str] = frozenset(),
) -> EvaluationData:
    """Load and embed both folders; with ``cache_dir``, templates are kept there between runs.

    ``exclude`` names images (relative to their folder) with known ground-truth errors, such as
    a "non-mated" image that in fact shows an enrolled person; they take no part and are counted.
    """
    parts, excluded = [], 0
    for name, root, loader in (("identities", identities, load_identity_folder), ("nonmated", nonmated, load_nonmated_folder)):
        samples = loader(root)
        cache = cache_dir / f"{name}-{root.name}-{config.detector}-{config.embedder}.npz" if cache_dir else None
        embeddings = embed_cached(samples, config, cache, workers, f"embedding {root.name}")
        keep = np.array([s.path.relative_to(root).as_posix() not in exclude for s in samples])
        excluded += int((~keep).sum())
        parts.append(([s for s, kept in zip(samples, keep) if kept], embeddings.subset(keep)))
    (id_samples, id_emb), (nm_samples, nm_emb) = parts
    combined = Embeddings(
        id_emb.model_id,
        id_emb.detector,
        np.concatenate([id_emb.vectors, nm_emb.vectors]),
        np.concatenate([id_emb.quality, nm_emb.quality]),
        id_emb.errors + nm_emb.errors,
    )
    return EvaluationData(id_samples + nm_samples, len(id_samples), combined, excluded)


@dataclass(frozen=True)
class Scoring:
    """A scoring choice: reference fusion, score normalisation against a cohort, probe quality bar.

    ``cohort`` says which faces normalisation uses: ``"split"`` the protocol's reserved cohort
    (needs ``Protocol.cohort_size``), ``"watchlist"`` the watchlist's own references (available
    at search time with no extra data).
    """

    fusion: Fusion = "max"
    normalisation: Normalisation = "none"
    cohort: Literal["split", "watchlist"] = "watchlist"
    quality_bar: QualityBar | None = None

    def describe(self) -> str:
        parts = [f"fusion={self.fusion}"] if self.fusion != "max" else []
        if self.normalisation != "none":
            parts.append(f"{self.normalisation} vs {self.cohort} cohort")
        if self.quality_bar:
            parts.append(f"quality bar {self.quality_bar}")
        return ", ".join(parts) or "raw similarity"


@dataclass(frozen=True)
class GroupBreakdown:
    """Per-group TPIR and FPIR at one threshold."""

    label: str
    threshold: float
    tpir: list[GroupRate]
    fpir: list[GroupRate]


@dataclass
class OpenSetResult:
    """Outcome of one protocol run: per-search outcomes and everything derived from them."""

    protocol: Protocol
    scoring: Scoring
    split: Split
    outcomes: SearchOutcomes
    choice: ThresholdChoice
    gated: dict[str, int]
    groups: list[GroupBreakdown] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        c = self.choice
        return {
            "protocol": vars(self.protocol),
            "scoring": self.scoring.describe(),
            "watchlist_size": len(self.split.subjects),
            "mated_subjects": self.split.mated_subjects,
            "mated_searches": int(self.outcomes.mated.size),
            "nonmated_searches": int(self.outcomes.nonmated.size),
            "cohort_size": int(self.split.cohort.size),
            "gated": self.gated,
            "rank1": round(self.outcomes.rank1, 5),
            "threshold": {
                "value": round(c.threshold, 6),
                "method": c.method,
                "empirical": round(c.empirical_threshold, 6),
                "tail_fit": None if c.tail_threshold is None else round(c.tail_threshold, 6),
                "target_fpir": c.target_fpir,
                "fpir_resolution": c.resolution,
            },
            "tpir": round(c.tpir, 5),
            "tpir_ci95": [round(v, 5) for v in c.tpir_ci],
            "fnir": round(1 - c.tpir, 5),
            "fpir": c.fpir,
            "fpir_ci95": [round(v, 6) for v in c.fpir_ci],
            "false_alerts": c.false_alerts,
            "groups": [
                {"operating_point": b.label, "threshold": round(b.threshold, 6), "tpir": _rates_json(b.tpir), "fpir": _rates_json(b.fpir)}
                for b in self.groups
            ],
        }


def _rates_json(rates: list[GroupRate]) -> list[dict[str, Any]]:
    return [
        {
            "column": g.column, "group": g.group, "count": g.trials, "events": g.successes,
            "rate": round(g.rate, 6), "ci95": [round(v, 6) for v in g.ci],
            "p_value": None if np.isnan(g.p_value) else float(f"{g.p_value:.3g}"),
            "significant": g.significant,
        }
        for g in rates
    ]


def scores_for(data: EvaluationData, split_: Split, probe_rows: np.ndarray, scoring: Scoring) -> np.ndarray:
    """``(probes, subjects)`` scores of ``probe_rows`` under ``scoring`` (before quality gating)."""
    vectors = data.embeddings.vectors
    references = [vectors[rows] for rows in split_.references]
    scores = subject_scores(vectors[probe_rows], references, scoring.fusion)
    if scoring.normalisation == "none":
        return scores
    cohort = _cohort(vectors, split_, scoring)
    if scoring.normalisation == "tnorm":
        return probe_tnorm(scores, cohort_stats(vectors[probe_rows], cohort))
    return candidate_znorm(scores, cohort_stats(subject_centres(references), cohort))


def _cohort(vectors: np.ndarray, split_: Split, scoring: Scoring) -> np.ndarray:
    if scoring.cohort == "split":
        if split_.cohort.size == 0:
            raise ValueError("split cohort normalisation needs Protocol.cohort_size > 0")
        return vectors[split_.cohort]
    return np.stack([vectors[rows[0]] for rows in split_.references])


def run(
    data: EvaluationData,
    protocol: Protocol,
    scoring: Scoring = Scoring(),
    target_fpir: float = 1 / 6000,
    with_groups: bool = True,
    chunk: int = 2048,
    threshold: float | None = None,
) -> OpenSetResult:
    """Split, score, gate and measure one protocol run (see :mod:`openfrt.evaluation.protocol`).

    The operating threshold is chosen for ``target_fpir`` unless ``threshold`` is given.

    Gated probes (refused by the quality bar) count as searches that return nobody: a miss
    for a mated probe, no alert for a non-mated one, so gating cannot flatter TPIR.
    """
    identities = [s.identity for s in data.samples[: data.identity_count]]
    split_ = split(identities, data.embeddings.found[: data.identity_count], data.nonmated_rows, protocol)
    probe_rows = np.concatenate([split_.mated, split_.nonmated])
    truth = np.concatenate([split_.mated_truth, np.full(split_.nonmated.size, -1)])
    outcome = np.concatenate(
        [
            search_outcomes(scores_for(data, split_, probe_rows[i : i + chunk], scoring), truth[i : i + chunk])
            for i in range(0, probe_rows.size, chunk)
        ]
    )
    accepted = _accepted(data, probe_rows, scoring.quality_bar)
    outcome[~accepted] = -np.inf
    mated = truth >= 0
    outcomes = SearchOutcomes(outcome[mated], outcome[~mated])
    choice = choose_threshold(outcomes, target_fpir, threshold)
    gated = {"mated": int((~accepted[mated]).sum()), "nonmated": int((~accepted[~mated]).sum())}
    result = OpenSetResult(protocol, scoring, split_, outcomes, choice, gated)
    if with_groups:
        diagnostic = empirical_threshold(outcomes.nonmated, DIAGNOSTIC_FPIR)
        points = ((f"target FPIR {target_fpir:.2g}", choice.threshold), (f"diagnostic FPIR {DIAGNOSTIC_FPIR:g}", diagnostic))
        result.groups = [
            GroupBreakdown(
                label,
                threshold,
                _groups(data, split_.mated, outcomes.mated >= threshold),
                _groups(data, split_.nonmated, outcomes.nonmated >= threshold),
            )
            for label, threshold in points
        ]
    return result


def _accepted(data: EvaluationData, rows: np.ndarray, bar: QualityBar | None) -> np.ndarray:
    if bar is None:
        return np.ones(rows.size, dtype=bool)
    return bar.accepts(data.quality("face_height_px")[rows], data.quality("sharpness")[rows], data.quality("frontalness")[rows])


def _groups(data: EvaluationData, rows: np.ndarray, hits: np.ndarray) -> list[GroupRate]:
    """Per-group rates for every label column with at least two groups among ``rows``."""
    rates = []
    for column in GROUP_COLUMNS:
        values = data.labels(column, rows)
        big = {v for v in set(values.tolist()) - {""} if np.sum(values == v) >= MIN_GROUP_SIZE}
        if len(big) >= 2:
            rates.extend(group_rates(hits, np.where(np.isin(values, list(big)), values, ""), column))
    return rates


#: Watchlist sizes tabulated in a calibration file (plus the requested size).
CALIBRATION_SIZES = (100, 300, 1000, 2000)

#: Reference images per subject calibrated: one, and up to three enrolled as a mean template
#: (the multi-image enrolment that measured best, docs/evaluation.md).
CALIBRATION_REFERENCES = (1, 3)

#: Random watchlist draws pooled per size for a calibration: one draw's extreme tail hinges on
#: which few lookalikes happen to be enrolled, so a single draw moves the threshold by ~0.005.
CALIBRATION_DRAWS = 10


def enrolment(reference_images: int) -> tuple[dict[str, int], Scoring]:
    """Protocol options and scoring for ``reference_images`` per subject (mean template when > 1)."""
    options = {"enrol_images": reference_images, "reference_pool": reference_images}
    return options, Scoring(fusion="mean-template") if reference_images > 1 else Scoring()


def pooled_outcomes(data: EvaluationData, protocol: Protocol, scoring: Scoring, draws: int) -> tuple[SearchOutcomes, int]:
    """Outcomes of ``draws`` watchlists (seeds ``protocol.seed`` onwards) pooled, and the watchlist size.

    Pooled searches are not independent (the same probes search each draw), so rates read from
    them are steadier but their intervals should use one draw's count, not the pooled one.
    """
    runs = [run(data, replace(protocol, seed=protocol.seed + i), scoring, with_groups=False) for i in range(draws)]
    pooled = SearchOutcomes(
        np.concatenate([r.outcomes.mated for r in runs]), np.concatenate([r.outcomes.nonmated for r in runs])
    )
    return pooled, len(runs[0].split.subjects)


#: Spacing of a calibration table's thresholds, and where the table starts at the latest.
GRID_STEP, GRID_HIGHEST_START = 0.0025, 0.90


def calibration_grid(nonmated: np.ndarray) -> np.ndarray:
    """Thresholds of a calibration table: from the median non-mated top score (where about half of
    all searches alert; 0.90 at the latest, as for dlib) up to 1, every 0.0025. Models place their
    scores very differently (dlib's impostors score 0.9, SFace's 0.55), so a fixed grid would miss
    one model's operating point entirely."""
    start = min(GRID_HIGHEST_START, math.floor(float(np.median(nonmated)) / GRID_STEP) * GRID_STEP)
    return np.round(np.arange(start, 1.0, GRID_STEP), 4)


def calibration_table(outcomes: SearchOutcomes, watchlist_size: int, thresholds: np.ndarray) -> CalibrationTable:
    """Threshold -> (TPIR, estimated FPIR) rows, for shipping in a calibration file."""
    return CalibrationTable(
        watchlist_size=watchlist_size,
        thresholds=tuple(float(t) for t in thresholds),
        tpir=tuple(float(v) for v in outcomes.tpir(thresholds)),
        fpir=tuple(float(v) for v in fpir_estimate(outcomes.nonmated, thresholds)),
    )


def build_calibration(
    data: EvaluationData,
    watchlist_sizes: tuple[int, ...],
    default_size: int,
    target_fpir: float,
    seed: int = 0,
    draws: int = CALIBRATION_DRAWS,
    reference_images: int = 1,
) -> Calibration:
    """Calibration for ``data``'s model: one table per watchlist size, default threshold at ``default_size``.

    ``reference_images > 1`` enrols up to that many images per subject as a mean template
    (:func:`enrolment`); subjects with fewer images keep what they have. Each size pools ``draws`` random watchlists; the default threshold is chosen on the pooled
    outcomes at ``default_size`` by :func:`choose_threshold`, rounded up to 4 decimals.
    """
    options, scoring = enrolment(reference_images)
    pooled: dict[int, SearchOutcomes] = {}
    for size in sorted(set(watchlist_sizes) | {default_size}):
        outcomes, actual = pooled_outcomes(data, Protocol(watchlist_size=size, seed=seed, **options), scoring, draws)
        pooled.setdefault(actual, outcomes)  # sizes beyond the data's capacity collapse into one
        if size == default_size:
            default = outcomes
    grid = calibration_grid(default.nonmated)
    choice = choose_threshold(default, target_fpir)
    source = {
        "detector": data.embeddings.detector,
        "protocol": f"openfrt evaluate, up to {reference_images} reference image(s) per subject, {scoring.describe()} (docs/evaluation.md)",
        "watchlist_draws": draws,
        "excluded_label_errors": data.excluded,
        "mated_searches_per_draw": {str(n): int(o.mated.size) // draws for n, o in pooled.items()},
        "nonmated_searches_per_draw": {str(n): int(o.nonmated.size) // draws for n, o in pooled.items()},
        "default_threshold_method": choice.method,
        "default_threshold_tpir": round(choice.tpir, 4),
    }
    return Calibration(
        model_id=data.embeddings.model_id,
        reference_images=reference_images,
        default_threshold=math.ceil(choice.threshold * 1e4) / 1e4,  # round up: stay within target
        target_fpir=target_fpir,
        tables=tuple(calibration_table(o, n, grid) for n, o in sorted(pooled.items())),
        source=source,
    )
