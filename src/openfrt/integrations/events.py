"""The events openfrt tells other systems about, and what each one says.

One model for every event: an id, its type, when it happened, the deployment, a link to the
console and ``data``. Data carries ids, the matched subject's id and name, similarity, camera
and times — never an image or a template (a destination may be given an alert's images at
delivery time, :mod:`openfrt.integrations.dispatcher`), never the other candidates (people who
did not match), and never officers' free-text notes or perceived ethnicity and sex.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy.orm import Session

from openfrt.records.models import Alert, Deployment, Subject, utc_now


class EventType(str, enum.Enum):
    alert_raised = "alert.raised"
    alert_adjudicated = "alert.adjudicated"
    alert_held = "alert.held"
    alert_released = "alert.released"
    deployment_started = "deployment.started"
    deployment_start_failed = "deployment.start_failed"
    deployment_ended = "deployment.ended"
    deployment_camera_gap = "deployment.camera_gap"


@dataclass(frozen=True)
class Event:
    """``link`` is a path on the console; it is made absolute at delivery when the server's
    public address is known (``OPENFRT_PUBLIC_URL``)."""

    type: EventType
    deployment: str
    data: dict[str, Any]
    link: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    occurred_at: datetime = field(default_factory=utc_now)

    def payload(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type.value, "occurred_at": self.occurred_at.isoformat(),
                "deployment": self.deployment, "link": self.link, "data": self.data}


def alert_raised(session: Session, alert: Alert) -> Event:
    return Event(EventType.alert_raised, _deployment(session, alert), {
        **_alert(session, alert), "track": alert.track_id, "source_time": alert.source_time,
    }, _alert_link(alert))


def alert_adjudicated(session: Session, alert: Alert, previous: str) -> Event:
    """``previous`` is the status replaced: ``pending`` for a first verdict, else a correction."""
    assert alert.adjudicated_at is not None and alert.outcome is not None
    return Event(EventType.alert_adjudicated, _deployment(session, alert), {
        **_alert(session, alert),
        "status": alert.status.value, "outcome": alert.outcome.value, "engaged": alert.engaged,
        "adjudicated_by": alert.adjudicated_by, "adjudicated_at": alert.adjudicated_at.isoformat(),
        "correction": previous != "pending", "previous_status": previous,
    }, _alert_link(alert))


def alert_held(session: Session, alert: Alert) -> Event:
    assert alert.held_at is not None
    return Event(EventType.alert_held, _deployment(session, alert), {
        **_alert(session, alert), "held_by": alert.held_by, "held_at": alert.held_at.isoformat(), "reason": alert.hold_reason,
    }, _alert_link(alert))


def alert_released(session: Session, alert: Alert, by: str) -> Event:
    return Event(EventType.alert_released, _deployment(session, alert), {**_alert(session, alert), "released_by": by}, _alert_link(alert))


def deployment_started(
    deployment: str, *, purpose: str, location: str, authorised_by: str, planned_by: str | None, watchlist: str,
    watchlist_size: int, threshold: float, model_id: str, cameras: list[str], started_at: datetime,
) -> Event:
    return Event(EventType.deployment_started, deployment, {
        "purpose": purpose, "location": location, "planned_by": planned_by, "authorised_by": authorised_by, "watchlist": watchlist,
        "watchlist_size": watchlist_size, "threshold": threshold, "model_id": model_id, "cameras": cameras,
        "started_at": started_at.isoformat(),
    }, _deployment_link(deployment))


def deployment_start_failed(deployment: str, *, failure: str, failed_at: datetime) -> Event:
    """A start undone before anything was seen: the deployment is planned again and publishes no
    record, so subscribers told it started learn it did not run."""
    return Event(EventType.deployment_start_failed, deployment, {
        "failure": failure, "failed_at": failed_at.isoformat(), "status": "planned",
    }, _deployment_link(deployment))


def deployment_ended(deployment: str, record: dict[str, Any]) -> Event:
    """``record`` is the published record (:class:`~openfrt.live.deployments.DeploymentRecord`)."""
    return Event(EventType.deployment_ended, deployment, {"record": record}, _deployment_link(deployment))


def camera_gap(deployment: str, camera: str, started: datetime, ended: datetime) -> Event:
    return Event(EventType.deployment_camera_gap, deployment, {
        "camera": camera, "started_at": started.isoformat(), "ended_at": ended.isoformat(),
        "seconds": round((ended - started).total_seconds(), 3),
    }, _deployment_link(deployment))


def _deployment(session: Session, alert: Alert) -> str:
    return session.get_one(Deployment, alert.deployment_id).name


def _alert(session: Session, alert: Alert) -> dict[str, Any]:
    """What every alert event says about its alert: which, who matched, how closely, where, when."""
    subject = session.get(Subject, alert.subject)
    return {"alert": alert.id, "subject": alert.subject, "subject_name": subject.display_name if subject else None,
            "similarity": round(alert.similarity, 6), "camera": alert.camera, "captured_at": alert.wall_time.isoformat()}


def _alert_link(alert: Alert) -> str:
    return f"/alerts#alert-{alert.id}"


def _deployment_link(deployment: str) -> str:
    return f"/deployments/{quote(deployment, safe='')}"
