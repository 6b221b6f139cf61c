"""Suspected label errors: "non-mated" searches that score like the same person.

An evaluation set built from real records has people filed twice, under two names or in both
folders (UTKFace holds celebrities who are also in LFW; a custody system holds aliases). Such a
"non-mated" search finds its own person, scores like a mated pair, and decides the threshold for
a low FPIR — so the system looks far worse than it is, and the cure looks like a higher
threshold. Nobody can fix that without seeing the cases, so :func:`suspected_label_errors` lists
them for review by eye; the report gives its figures with and without them.

A non-mated search is suspected when its top score is both

* **as high as a typical mated pair**: at least the median score of mated searches that found
  their subject; and
* **beyond chance for honest searches**: the exponential tail fitted to the non-mated top scores
  (the model that sets the threshold, :class:`~openfrt.evaluation.metrics.ExponentialTail`)
  expects fewer than :data:`MAX_EXPECTED_BY_CHANCE` of all ``M`` searches to score that high.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from openfrt.evaluation.metrics import ExponentialTail, SearchOutcomes, ThresholdChoice, choose_threshold
from openfrt.evaluation.report import EvaluationData, OpenSetResult, scores_for

#: A top score that honest non-mated searches would reach this many times in all ``M`` (expected
#: count under the fitted tail) or fewer is beyond chance.
MAX_EXPECTED_BY_CHANCE = 0.05


@dataclass(frozen=True)
class SuspectedLabelError:
    """One non-mated search that found someone as if it were them."""

    probe: str
    candidate: str
    candidate_reference: str
    score: float
    expected_by_chance: float

    def as_dict(self) -> dict[str, object]:
        return {"probe": self.probe, "candidate": self.candidate, "candidate_reference": self.candidate_reference,
                "score": round(self.score, 6), "expected_by_chance": float(f"{self.expected_by_chance:.3g}")}


def suspected_label_errors(data: EvaluationData, result: OpenSetResult) -> list[SuspectedLabelError]:
    """The suspected label errors of one protocol run, highest score first (module docstring)."""
    nonmated = result.outcomes.nonmated
    found = result.outcomes.mated[np.isfinite(result.outcomes.mated)]
    tail = ExponentialTail.fit(nonmated)
    if tail is None or found.size == 0:
        return []
    expected = nonmated.size * tail.fpir(nonmated)
    suspect = (nonmated >= np.median(found)) & (expected < MAX_EXPECTED_BY_CHANCE)
    rows = result.split.nonmated[suspect]
    if rows.size == 0:
        return []
    best = scores_for(data, result.split, rows, result.scoring).argmax(axis=1)
    suspects = [
        SuspectedLabelError(
            probe=_relative(data, row),
            candidate=result.split.subjects[column],
            candidate_reference=_relative(data, int(result.split.references[column][0])),
            score=float(score),
            expected_by_chance=float(chance),
        )
        for row, column, score, chance in zip(rows, best, nonmated[suspect], expected[suspect])
    ]
    return sorted(suspects, key=lambda s: -s.score)


def exclusion_lines(suspects: list[SuspectedLabelError]) -> str:
    """The suspects as an ``--exclude`` file to review: each line commented out until a person confirms it."""
    lines = ["# Suspected label errors: non-mated searches scoring like the same person (openfrt evaluate).",
             "# Look at each probe beside its candidate's reference image; uncomment the line if it is the same",
             "# person, then pass this file to --exclude. Leave doubtful cases commented: they count as false alerts."]
    lines += [f"# {s.probe}    # score {s.score:.4f}, looks like {s.candidate} ({s.candidate_reference})" for s in suspects]
    return "\n".join(lines) + "\n"


def _relative(data: EvaluationData, row: int) -> str:
    """The image's path relative to its folder (the form --exclude reads)."""
    sample = data.samples[row]
    depth = 2 if row < data.identity_count else 1
    return "/".join(sample.path.parts[-depth:])


def without_suspects(result: OpenSetResult, suspects: list[SuspectedLabelError], data: EvaluationData) -> ThresholdChoice:
    """The threshold choice for the run's target FPIR on the same watchlist, the suspects' searches left out."""
    flagged = {suspect.probe for suspect in suspects}
    keep = np.array([_relative(data, int(row)) not in flagged for row in result.split.nonmated])
    outcomes = SearchOutcomes(result.outcomes.mated, result.outcomes.nonmated[keep])
    return choose_threshold(outcomes, result.choice.target_fpir)
