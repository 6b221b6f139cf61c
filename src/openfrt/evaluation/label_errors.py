"""Suspected label errors: "non-mated" searches that score like the same person.

An evaluation set built from real records has people filed twice, under two names or in both
folders (UTKFace holds celebrities who are also in LFW; a custody system holds aliases). Such a
"non-mated" search finds its own person, scores like a mated pair, and decides the threshold for
a low FPIR — so the system looks far worse than it is, and the cure looks like a higher
threshold. Nobody can fix that without seeing the cases, so :func:`suspected_label_errors` lists
them for review by eye; the report gives its figures with and without them.

A non-mated search is suspected when its top score is **as high as a typical mated pair**: at
least the median score of the mated searches that found their subject. Half of all genuine
pairs score that high; honest strangers almost never do with a model fit for the purpose. On
../shared, without the reviewed exclusion list, this flagged only listed label errors for SFace
and the Intel model (docs/evaluation.md). A tail-based test ("more than chance would give") was
tried first and flagged none: the label errors themselves inflate the fitted tail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from openfrt.evaluation.metrics import SearchOutcomes, ThresholdChoice, choose_threshold
from openfrt.evaluation.report import EvaluationData, OpenSetResult, scores_for


@dataclass(frozen=True)
class SuspectedLabelError:
    """One non-mated search that found someone as if it were them."""

    probe: str
    candidate: str
    candidate_reference: str
    score: float
    #: The median mated score it reached: how high a typical genuine pair scores.
    mated_median: float

    def as_dict(self) -> dict[str, object]:
        return {"probe": self.probe, "candidate": self.candidate, "candidate_reference": self.candidate_reference,
                "score": round(self.score, 6), "mated_median": round(self.mated_median, 6)}


def suspected_label_errors(data: EvaluationData, result: OpenSetResult) -> list[SuspectedLabelError]:
    """The suspected label errors of one protocol run, highest score first (module docstring)."""
    nonmated = result.outcomes.nonmated
    found = result.outcomes.mated[np.isfinite(result.outcomes.mated)]
    if found.size == 0:
        return []
    median = float(np.median(found))
    suspect = nonmated >= median
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
            mated_median=median,
        )
        for row, column, score in zip(rows, best, nonmated[suspect])
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
