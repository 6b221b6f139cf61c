"""The audit log: who did what to which records, why and when.

Only :func:`record_event` touches ``audit_events``, and it only inserts; the database itself
rejects updates and deletes (triggers from the first migration). Callers pass ids, names and
counts — never images, templates or similarity vectors.
"""

from __future__ import annotations

import enum
import getpass
import os
from typing import Any

from sqlalchemy.orm import Session

from openfrt.records.models import AuditEvent


class AuditAction(str, enum.Enum):
    subject_enrolled = "subject.enrol"
    subject_removed = "subject.remove"
    watchlist_created = "watchlist.create"
    watchlist_members_added = "watchlist.add"
    watchlist_deleted = "watchlist.delete"
    retrospective_search = "search.retrospective"
    deployment_created = "deployment.create"
    deployment_started = "deployment.start"
    deployment_ended = "deployment.end"
    snapshot_destroyed = "deployment.snapshot_destroy"
    alert_raised = "alert.raise"
    alert_adjudicated = "alert.adjudicate"
    alert_media_viewed = "alert.media_view"
    alert_held = "alert.hold"
    alert_released = "alert.release"
    alert_media_deleted = "retention.delete"


def current_actor(explicit: str | None = None) -> str:
    """Who is acting: the name given, else ``OPENFRT_USER``, else the operating-system user."""
    return explicit or os.environ.get("OPENFRT_USER") or getpass.getuser()


def record_event(
    session: Session,
    action: AuditAction,
    *,
    actor: str,
    target: str | None = None,
    case_ref: str | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction, so it is kept exactly when the change is."""
    event = AuditEvent(
        actor=actor, action=action.value, target=target, case_ref=case_ref, reason=reason, details=details or {}
    )
    session.add(event)
    return event
