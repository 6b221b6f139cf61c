"""Retention: alert images are deleted once they are older than the retention period.

The period is 31 days unless ``OPENFRT_ALERT_RETENTION_DAYS`` or the caller says otherwise,
counted from the moment the alert was captured. Images of an alert on hold are kept until the
hold is released. Each deletion is audited — which alert, which image, when and why — without
any of the image. The alert row itself stays, with ``media_deleted_at`` set: it is part of the
deployment's published record, whose counts must not change because images expired.

Footage searches' leads (face crops and frames of people with candidates) follow the same rule,
counted from when the search finished, unless the search is on hold (:mod:`openfrt.footage.records`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from openfrt.footage.records import purge_leads
from openfrt.integrations.destinations import purge_events
from openfrt.records.audit import AuditAction, record_event
from openfrt.records.errors import InvalidRecordError
from openfrt.records.models import Alert, Deployment, utc_now
from openfrt.records.store import RecordStore

DEFAULT_RETENTION_DAYS = 31
RETENTION_ENV = "OPENFRT_ALERT_RETENTION_DAYS"


@dataclass(frozen=True)
class RetentionReport:
    """What one run did: ``deleted`` as (alert id, image kind); ``held`` the due alerts kept;
    ``events_deleted`` the events (carrying alert data) still waiting to go out, past the period."""

    cutoff: datetime
    days: int
    deleted: tuple[tuple[int, str], ...] = field(default=())
    held: tuple[int, ...] = field(default=())
    events_deleted: int = 0
    #: Footage searches whose leads were deleted, and those due but on hold.
    footage_searches: tuple[int, ...] = field(default=())
    footage_held: tuple[int, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {"cutoff": self.cutoff.isoformat(), "days": self.days,
                "deleted": [{"alert": alert, "kind": kind} for alert, kind in self.deleted], "held": list(self.held),
                "events_deleted": self.events_deleted, "footage_searches": list(self.footage_searches),
                "footage_held": list(self.footage_held)}


def retention_days(explicit: int | None = None) -> int:
    """The period in days: ``explicit``, else ``OPENFRT_ALERT_RETENTION_DAYS``, else 31."""
    configured = explicit if explicit is not None else os.environ.get(RETENTION_ENV, DEFAULT_RETENTION_DAYS)
    try:
        days = int(configured)
    except ValueError:
        raise InvalidRecordError(f"{RETENTION_ENV}={configured!r} is not a whole number of days") from None
    if days < 0:
        raise InvalidRecordError(f"a retention period of {days} days is negative")
    return days


def run_retention(store: RecordStore, *, actor: str, days: int | None = None, now: datetime | None = None) -> RetentionReport:
    """Delete every alert image captured ``days`` or more before ``now`` unless its alert is on
    hold, all in one transaction with one audit event per image deleted."""
    period = retention_days(days)
    moment = now or utc_now()
    cutoff = moment - timedelta(days=period)
    deleted: list[tuple[int, str]] = []
    held: list[int] = []
    with store.transaction() as session:
        due = session.execute(
            select(Alert, Deployment.name)
            .join(Deployment, Deployment.id == Alert.deployment_id)
            .where(Alert.wall_time <= cutoff, Alert.media.any())
            .order_by(Alert.id)
        ).all()
        for alert, deployment in due:
            if alert.held_by is not None:
                held.append(alert.id)
                continue
            for media in list(alert.media):
                record_event(
                    session, AuditAction.alert_media_deleted, actor=actor, target=f"alert:{alert.id}",
                    reason=f"alert image older than the {period}-day retention period",
                    details={"alert": alert.id, "kind": media.kind.value, "deployment": deployment,
                             "captured_at": alert.wall_time.isoformat(), "as_of": moment.isoformat()},
                )
                deleted.append((alert.id, media.kind.value))
                session.delete(media)
            alert.media_deleted_at = utc_now()
        footage, footage_held = purge_leads(session, cutoff, period, actor, moment)
        events = purge_events(session, cutoff)
        if events:
            record_event(session, AuditAction.alert_media_deleted, actor=actor, target="event outbox",
                         reason=f"undelivered events older than the {period}-day retention period",
                         details={"events": events, "as_of": moment.isoformat()})
    return RetentionReport(cutoff, period, tuple(deleted), tuple(held), events, tuple(footage), tuple(footage_held))
