"""A deployment's threshold against the documented floor, and the second authorising officer's
approval that a threshold below it needs.

One threshold field decides how many passers-by alert and are kept for 31 days: at 0.0 every
face would. So a deployment whose threshold (its own, or its watchlist's) lets through more
than :data:`openfrt.evaluation.calibration.FLOOR_FPIR` false alerts at its watchlist's size —
or whose model is uncalibrated — is authorised only after an authorising officer other than
its planner and its authorising officer approves it with a recorded justification. The check
is made again at the start, on the snapshot actually searched: an approval covers its
threshold and model up to the watchlist size it was given for.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from openfrt.gallery.fitness import ThresholdCheck
from openfrt.records.errors import RecordNotFoundError
from openfrt.records.models import Deployment, ReferenceImage, ReferenceTemplate, Watchlist, WatchlistMember


def planned_threshold_check(session: Session, row: Deployment) -> ThresholdCheck:
    """The deployment's threshold against the floor for its watchlist as the watchlist now is."""
    watchlist = session.scalar(select(Watchlist).where(Watchlist.name == row.watchlist))
    if watchlist is None:
        raise RecordNotFoundError(f"deployment {row.name!r}'s watchlist {row.watchlist!r} no longer exists")
    per_subject = (
        select(func.count(ReferenceTemplate.id).label("templates"))
        .join(ReferenceImage)
        .join(WatchlistMember, WatchlistMember.subject_id == ReferenceImage.subject_id)
        .where(WatchlistMember.watchlist_id == watchlist.id, ReferenceTemplate.model_id == watchlist.model_id)
        .group_by(ReferenceImage.subject_id)
        .subquery()
    )
    size, references = session.execute(select(func.count(), func.max(per_subject.c.templates))).one()
    threshold = row.threshold if row.threshold is not None else watchlist.threshold
    return ThresholdCheck.of(watchlist.model_id, threshold, int(size), int(references or 1))


def approval_covers(approval: dict[str, Any] | None, check: ThresholdCheck) -> bool:
    """Whether a recorded approval is for this threshold and model, at this watchlist size or more."""
    return (
        approval is not None
        and approval["threshold"] == check.threshold
        and approval["model_id"] == check.model_id
        and approval["watchlist_size"] >= check.watchlist_size
    )


def approval_needed(name: str, check: ThresholdCheck) -> str:
    """What to tell the officer whose authorisation or start a missing approval stops."""
    return (
        f"deployment {name!r}: {check.describe()}; a second authorising officer (not its planner or its authorising "
        f"officer) must approve it with a justification: `openfrt deployments approve-threshold {name} --justification …`"
    )
