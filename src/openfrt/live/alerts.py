"""Alerts after they are raised: listing, adjudication, viewing their images, and holds.

An officer adjudicates each alert: ``pending`` becomes ``confirmed_match``, ``false_alert`` or
``no_further_action`` with an outcome (and whether the person was engaged). An adjudication can
be corrected later, for a stated reason and from a blank form — a correction is a new verdict,
not an edit of the old one, so nothing of the earlier note carries over into it; every verdict
is kept in the alert's history and the audit log — but an alert never returns to pending. When
the deployment has already ended, its published record is recomputed.

Several officers watch the same alerts, so a verdict is only ever replaced knowingly: an officer
adjudicates an alert they saw pending, or corrects a verdict they name. If another officer got
there first, nothing changes and :class:`AdjudicationConflictError` says who decided what.

Alert images are kept encrypted and only until retention deletes them
(:mod:`openfrt.live.retention`), unless a hold with a recorded reason keeps them. Every viewing
of an image is audited.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from openfrt.errors import OpenFRTError
from openfrt.integrations import events
from openfrt.integrations.outbox import emit
from openfrt.live.deployments import deployment_row, jsonable, refresh_record, require_text
from openfrt.records.audit import AuditAction, hold_audit_chain, record_event
from openfrt.records.errors import InvalidRecordError, RecordNotFoundError
from openfrt.records.models import (
    Alert,
    AlertMedia,
    AlertOutcome,
    AlertStatus,
    AlertVerdict,
    Deployment,
    DeploymentStatus,
    MediaKind,
    PerceivedEthnicity,
    PerceivedSex,
    utc_now,
)
from openfrt.records.store import RecordStore
from openfrt.records.text import SHORT_TEXT, check_text

#: Outcomes that mean officers spoke to the person, unless the adjudicator says otherwise.
ENGAGING_OUTCOMES = frozenset({AlertOutcome.engaged, AlertOutcome.words_of_advice, AlertOutcome.arrested})


class AdjudicationConflictError(OpenFRTError):
    """The alert's verdict is not the one the officer saw: another officer adjudicated or
    corrected it meanwhile, so acting on the stale view would overwrite a decision unseen."""


@dataclass(frozen=True)
class VerdictInfo:
    """One verdict of an alert's history; ``correction_reason`` is None for the first."""

    status: AlertStatus
    outcome: AlertOutcome
    engaged: bool
    note: str | None
    correction_reason: str | None
    adjudicated_by: str
    adjudicated_at: datetime


@dataclass(frozen=True)
class AlertInfo:
    """An alert without its images (which are fetched, audited, through :meth:`AlertService.media`).

    ``threshold`` and ``watchlist`` are the deployment's: only ``candidates`` at or above the
    threshold were alert-worthy.
    ``verdicts`` is the history of verdicts, oldest first; the last is the one in force."""

    id: int
    deployment: str
    camera: str
    track_id: int
    subject: str
    similarity: float
    candidates: tuple[tuple[str, float], ...]
    source_time: float
    wall_time: datetime
    status: AlertStatus
    adjudicated_by: str | None
    adjudicated_at: datetime | None
    outcome: AlertOutcome | None
    engaged: bool
    note: str | None
    perceived_ethnicity: PerceivedEthnicity | None
    perceived_sex: PerceivedSex | None
    held_by: str | None
    held_at: datetime | None
    hold_reason: str | None
    media: tuple[MediaKind, ...]
    media_deleted_at: datetime | None
    threshold: float | None = None
    verdicts: tuple[VerdictInfo, ...] = ()
    watchlist: str | None = None

    @property
    def others_above_threshold(self) -> tuple[tuple[str, float], ...]:
        """Candidates other than the alerted subject that also reached the deployment's threshold."""
        if self.threshold is None:
            return ()
        return tuple((subject, score) for subject, score in self.candidates if subject != self.subject and score >= self.threshold)

    def as_dict(self) -> dict[str, Any]:
        return {**jsonable(asdict(self)), "others_above_threshold": [list(pair) for pair in self.others_above_threshold]}


@dataclass(frozen=True)
class GroupOutcomes:
    """Adjudicated alerts of one perceived group: ``dimension`` is "ethnicity" or "sex"."""

    dimension: str
    group: str
    adjudicated: int
    true_alerts: int
    false_alerts: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class AlertService:
    """Alerts of every deployment in one records store."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store

    def get(self, alert_id: int) -> AlertInfo:
        with self.store.transaction() as session:
            return _alert_info(session, alert_row(session, alert_id))

    def adjudicate(
        self,
        alert_id: int,
        *,
        outcome: AlertOutcome,
        by: str,
        status: AlertStatus | None = None,
        correcting: AlertStatus | None = None,
        engaged: bool | None = None,
        note: str | None = None,
        perceived_ethnicity: PerceivedEthnicity | None = None,
        perceived_sex: PerceivedSex | None = None,
        reason: str | None = None,
    ) -> AlertInfo:
        """Record (or correct) an officer's verdict. ``correcting`` is the verdict the officer
        saw and means to replace (None: they saw the alert pending); if the alert no longer
        stands as they saw it, :class:`AdjudicationConflictError` and nothing changes.
        ``status`` may be left out only when correcting, to change just the outcome; ``engaged``
        defaults from the outcome. A correction needs ``reason`` (why the verdict it replaces was
        wrong) and replaces the note and the perceived ethnic group and sex with what is given,
        so one officer's words are never shown under another's verdict; the history and the
        audit keep what was replaced."""
        require_text(by, "an adjudication needs the adjudicating officer")
        check_text(by, "adjudicating officer", limit=SHORT_TEXT)
        check_text(note, "note", required=False)
        check_text(reason, "reason for the correction", required=False)
        if status is AlertStatus.pending or (status is None and correcting in (None, AlertStatus.pending)):
            raise InvalidRecordError(
                f"alert {alert_id}: give the verdict (confirmed_match, false_alert or no_further_action); "
                "an alert never returns to pending"
            )
        with self.store.transaction() as session:
            # Taken before the alert is read, so two officers' verdicts on it go one after the
            # other and the second is checked against the first.
            hold_audit_chain(session)
            row = alert_row(session, alert_id)
            _require_seen_verdict(row, correcting)
            correction = row.status is not AlertStatus.pending
            if correction:
                require_text(reason, f"alert {alert_id}: a correction needs its reason (why the verdict "
                                     f"{row.status.value} was wrong)")
            new_status = status or row.status
            if outcome is AlertOutcome.arrested and new_status is not AlertStatus.confirmed_match:
                raise InvalidRecordError(
                    f"alert {alert_id}: an arrest is published as the outcome of a confirmed match, not of a "
                    f"{new_status.value}; record the verdict confirmed_match, or another outcome"
                )
            previous = {"status": row.status.value, "outcome": row.outcome.value if row.outcome else None,
                        "engaged": row.engaged, "by": row.adjudicated_by, "note": row.note}
            row.status, row.outcome, row.note = new_status, outcome, note
            row.perceived_ethnicity, row.perceived_sex = perceived_ethnicity, perceived_sex
            row.engaged = outcome in ENGAGING_OUTCOMES if engaged is None else engaged
            row.adjudicated_by, row.adjudicated_at = by, utc_now()
            row.verdicts.append(AlertVerdict(
                status=new_status, outcome=outcome, engaged=row.engaged, note=note,
                correction_reason=reason if correction else None, adjudicated_by=by, adjudicated_at=row.adjudicated_at,
            ))
            record_event(
                session, AuditAction.alert_adjudicated, actor=by, target=f"alert:{alert_id}", reason=reason if correction else note,
                details={"status": new_status.value, "outcome": outcome.value, "engaged": row.engaged, "note": note,
                         "perceived_ethnicity": _value(row.perceived_ethnicity), "perceived_sex": _value(row.perceived_sex),
                         "re_adjudication": correction, "previous": previous},
            )
            emit(session, events.alert_adjudicated(session, row, previous["status"]))
            _refresh_if_ended(session, row.deployment_id)
            return _alert_info(session, row)

    def media(self, alert_id: int, kind: MediaKind, *, actor: str, reason: str | None = None) -> bytes:
        """An alert image, decrypted in memory; each viewing is audited."""
        with self.store.transaction() as session:
            row = alert_row(session, alert_id)
            media = session.get(AlertMedia, (alert_id, kind))
            if media is None:
                deleted = f" (deleted by retention at {row.media_deleted_at.isoformat()})" if row.media_deleted_at else ""
                raise RecordNotFoundError(f"alert {alert_id} has no {kind.value} image{deleted}")
            record_event(session, AuditAction.alert_media_viewed, actor=actor, target=f"alert:{alert_id}", reason=reason,
                         details={"kind": kind.value})
            return self.store.cipher.decrypt(media.data)

    def hold(self, alert_id: int, *, reason: str, by: str) -> AlertInfo:
        """Keep an alert's images past retention (e.g. evidence in a prosecution or a complaint)."""
        require_text(reason, "a hold needs a reason")
        require_text(by, "a hold needs the officer placing it")
        check_text(reason, "reason for the hold")
        with self.store.transaction() as session:
            row = alert_row(session, alert_id)
            if row.held_by is not None:
                raise InvalidRecordError(f"alert {alert_id} is already on hold by {row.held_by} ({row.hold_reason}); release it first")
            if row.media_deleted_at is not None:
                raise RecordNotFoundError(f"alert {alert_id}'s images were deleted at {row.media_deleted_at.isoformat()}; nothing to hold")
            row.held_by, row.held_at, row.hold_reason = by, utc_now(), reason
            record_event(session, AuditAction.alert_held, actor=by, target=f"alert:{alert_id}", reason=reason)
            emit(session, events.alert_held(session, row))
            return _alert_info(session, row)

    def release(self, alert_id: int, *, by: str, reason: str | None = None) -> AlertInfo:
        """Lift a hold: the images become subject to retention again (and go at its next run if due)."""
        check_text(reason, "reason for lifting the hold", required=False)
        with self.store.transaction() as session:
            row = alert_row(session, alert_id)
            if row.held_by is None:
                raise InvalidRecordError(f"alert {alert_id} is not on hold")
            hold = {"held_by": row.held_by, "held_at": row.held_at.isoformat() if row.held_at else None, "hold_reason": row.hold_reason}
            row.held_by = row.held_at = row.hold_reason = None
            record_event(session, AuditAction.alert_released, actor=by, target=f"alert:{alert_id}", reason=reason, details=hold)
            emit(session, events.alert_released(session, row, by))
            return _alert_info(session, row)

    def list(
        self,
        deployment: str | None = None,
        status: AlertStatus | None = None,
        *,
        after_id: int | None = None,
        limit: int | None = None,
    ) -> list[AlertInfo]:
        """Alerts in the order they were raised; ``after_id`` and ``limit`` page through them, so
        a console polling for new alerts reads only those it has not seen."""
        with self.store.transaction() as session:
            query = select(Alert).options(selectinload(Alert.media), selectinload(Alert.verdicts)).order_by(Alert.id)
            if deployment is not None:
                query = query.where(Alert.deployment_id == deployment_row(session, deployment).id)
            if status is not None:
                query = query.where(Alert.status == status)
            if after_id is not None:
                query = query.where(Alert.id > after_id)
            if limit is not None:
                query = query.limit(limit)
            rows = session.scalars(query).all()
            deployments = {
                found.id: (found.name, found.threshold, found.watchlist) for found in session.execute(
                    select(Deployment.id, Deployment.name, Deployment.threshold, Deployment.watchlist)
                    .where(Deployment.id.in_({row.deployment_id for row in rows}))
                )
            }
            return [_alert_info(session, row, deployments.get(row.deployment_id)) for row in rows]

    def outcomes_by_perceived_group(self) -> list[GroupOutcomes]:
        """Adjudicated alerts per perceived ethnic group and per perceived sex, where the
        adjudicating officer recorded them: the published check that false alerts do not fall
        more on one group than another."""
        with self.store.transaction() as session:
            rows = session.execute(
                select(Alert.perceived_ethnicity, Alert.perceived_sex, Alert.status, func.count())
                .where(Alert.status != AlertStatus.pending)
                .group_by(Alert.perceived_ethnicity, Alert.perceived_sex, Alert.status)
            ).all()
        groups: dict[tuple[str, str], Counter[AlertStatus]] = defaultdict(Counter)
        for ethnicity, sex, status, count in rows:
            for dimension, value in (("ethnicity", ethnicity), ("sex", sex)):
                if value is not None:
                    groups[(dimension, value.value)][status] += count
        return [
            GroupOutcomes(dimension, group, sum(counts.values()), counts[AlertStatus.confirmed_match], counts[AlertStatus.false_alert])
            for (dimension, group), counts in sorted(groups.items())
        ]

    def latest_id(self) -> int:
        """The id of the newest alert (0 if none): where a live feed starts."""
        with self.store.transaction() as session:
            return session.scalar(select(func.max(Alert.id))) or 0


def alert_row(session: Session, alert_id: int) -> Alert:
    row = session.get(Alert, alert_id)
    if row is None:
        raise RecordNotFoundError(f"no alert {alert_id}")
    return row


def _require_seen_verdict(row: Alert, correcting: AlertStatus | None) -> None:
    """Refuse to replace a verdict the officer has not seen (see :class:`AdjudicationConflictError`)."""
    seen = correcting or AlertStatus.pending
    if row.status is seen:
        return
    if row.status is AlertStatus.pending:
        raise AdjudicationConflictError(f"alert {row.id} has no verdict to correct: it is still pending; adjudicate it")
    at = row.adjudicated_at.isoformat(timespec="seconds") if row.adjudicated_at else "an unknown time"
    outcome = row.outcome.value if row.outcome else "no outcome"
    raise AdjudicationConflictError(
        f"alert {row.id} is already {row.status.value} ({outcome}), decided by {row.adjudicated_by} at {at}, "
        f"not {seen.value} as you saw it; nothing was changed. Review it, and to replace that verdict correct it "
        f"(correcting {row.status.value})"
    )


def _refresh_if_ended(session: Session, deployment_id: int) -> None:
    """An ended deployment's published record follows later adjudications."""
    deployment = session.get_one(Deployment, deployment_id)
    if deployment.status is DeploymentStatus.ended:
        refresh_record(session, deployment)


def _alert_info(session: Session, row: Alert, deployment: tuple[str, float | None, str] | None = None) -> AlertInfo:
    """``deployment``: the alert's deployment name, threshold and watchlist, when the caller has them already."""
    if deployment is None:
        found = session.execute(
            select(Deployment.name, Deployment.threshold, Deployment.watchlist).where(Deployment.id == row.deployment_id)
        ).one_or_none()
        deployment = (found.name, found.threshold, found.watchlist) if found else ("", None, "")
    name, threshold, watchlist = deployment
    verdicts = tuple(
        VerdictInfo(v.status, v.outcome, v.engaged, v.note, v.correction_reason, v.adjudicated_by, v.adjudicated_at)
        for v in row.verdicts
    )
    return AlertInfo(
        row.id, name, row.camera, row.track_id, row.subject, row.similarity,
        tuple((subject, similarity) for subject, similarity in row.candidates), row.source_time, row.wall_time,
        row.status, row.adjudicated_by, row.adjudicated_at, row.outcome, row.engaged, row.note,
        row.perceived_ethnicity, row.perceived_sex,
        row.held_by, row.held_at, row.hold_reason, tuple(media.kind for media in row.media), row.media_deleted_at,
        threshold, verdicts, watchlist or None,
    )


def _value(member: PerceivedEthnicity | PerceivedSex | None) -> str | None:
    return member.value if member is not None else None
