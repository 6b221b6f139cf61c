"""Recovery of deployments whose process was lost: resumed by the server that ran them, or ended.

A deployment whose lease (:mod:`openfrt.live.leases`) has lapsed has no process any more: it
was killed, the machine lost power, or it has hung beyond the lease. Recovery takes the lease
over — conditionally, so that two recovering processes cannot both act — and then either

* **resumes** it, when this is the server that ran it (the same data directory's server id), it
  is still authorised, its planned window has not ended and its watchlist is as it was when it
  started (a resumed deployment must search exactly what was authorised): its cameras are
  reopened, the time it was not watching is recorded as a gap on every camera, and the resumption
  is audited; or
* **ends it as interrupted**: its counts stay as last flushed, the time since its last heartbeat
  is recorded as a gap on every camera, and the rest is what any end does
  (:func:`~openfrt.live.deployments.close_deployment`): its camera credentials are destroyed, its
  record is published with ``interrupted`` set and its audit anchor (and reaches records.csv),
  the end and the destruction of its (lost) watchlist snapshot are audited with the reason, and
  a watchlist made for it is destroyed.

A server runs recovery when it starts and then periodically (:class:`RecoveryWatch`);
``openfrt deployments recover`` runs it from the command line (ending, never resuming: the
command has no cameras to run); a restore ends every deployment the backup had running.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from openfrt.errors import OpenFRTError
from openfrt.integrations import events
from openfrt.integrations.outbox import emit
from openfrt.live.deployments import DeploymentRecord, DeploymentService, RunningDeployment, close_deployment
from openfrt.live.leases import Lease, LeaseLostError, lease_seconds, process_owner
from openfrt.live.retention import run_retention
from openfrt.records.audit import AuditAction, record_event
from openfrt.records.errors import InvalidRecordError
from openfrt.records.models import (
    Alert,
    Deployment,
    DeploymentCamera,
    DeploymentGap,
    DeploymentLease,
    DeploymentStatus,
    utc_now,
)
from openfrt.records.store import RecordStore

log = logging.getLogger(__name__)

#: Who the audit log names for recovery done by a server on its own.
RECOVERY_ACTOR = "system:recovery"


@dataclass(frozen=True)
class LapsedDeployment:
    """A running deployment with no live process: its lease expired (or it never had one).

    ``last_seen`` is its last heartbeat — the last moment it is known to have been watching;
    for a deployment started before leases existed, its latest alert or its start.
    """

    name: str
    deployment_id: int
    owner: str | None
    server: str | None
    watchlist_revision: int | None
    last_seen: datetime


@dataclass(frozen=True)
class RecoveryReport:
    """What one recovery run did: deployments resumed here, and those ended with their reasons."""

    resumed: tuple[str, ...] = ()
    interrupted: tuple[tuple[str, str], ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {"resumed": list(self.resumed),
                "interrupted": [{"deployment": name, "reason": reason} for name, reason in self.interrupted]}


def lapsed_deployments(store: RecordStore, *, everything: bool = False) -> list[LapsedDeployment]:
    """Running deployments whose lease has expired, oldest first; ``everything``: every running
    one, leases or not (a restored backup's deployments were run by processes of another system).
    Leases held by this process are never lapsed here: its own heartbeat renews them."""
    now = utc_now()
    with store.transaction() as session:
        rows = session.execute(
            select(Deployment, DeploymentLease)
            .outerjoin(DeploymentLease, DeploymentLease.deployment_id == Deployment.id)
            .where(Deployment.status == DeploymentStatus.running)
            .order_by(Deployment.started_at, Deployment.id)
        ).all()
        lapsed = []
        for deployment, lease in rows:
            if lease is not None and not everything and (lease.expires_at >= now or lease.owner == process_owner()):
                continue
            lapsed.append(LapsedDeployment(
                deployment.name, deployment.id, lease.owner if lease else None, lease.server_id if lease else None,
                lease.watchlist_revision if lease else None,
                lease.renewed_at if lease else _last_activity(session, deployment),
            ))
        return lapsed


def resume(service: DeploymentService, lapsed: LapsedDeployment, *, actor: str, server: str) -> RunningDeployment:
    """Take a lapsed deployment over in this process and run it again with a new snapshot of
    the very watchlist revision it started with; raises if that is no longer possible, or
    :class:`LeaseLostError` if another process took it first."""
    if service.gallery is None:
        raise InvalidRecordError("resuming a deployment needs the gallery (for its watchlist)")
    if lapsed.owner is None:
        raise InvalidRecordError("it holds no lease (started before leases were kept)")
    info = service.get(lapsed.name)
    watchlist, matcher = service.gallery.watchlist_snapshot(info.watchlist)  # refuses an expired or deleted one
    if (watchlist.revision, watchlist.model_id, len(matcher)) != (lapsed.watchlist_revision, info.model_id, info.watchlist_size):
        raise InvalidRecordError(f"watchlist {info.watchlist!r} has changed since the deployment started")
    assert info.threshold is not None and info.model_id is not None  # set when it started
    now = utc_now()
    with service.store.transaction() as session:
        lease = Lease.take_over(session, info.id, previous_owner=lapsed.owner, server=server, seconds=lease_seconds(), now=now)
        if lease is None:
            raise LeaseLostError(f"deployment {info.name!r} was recovered by another process first")
        gap_seconds = _record_interruption(session, info.id, lapsed.last_seen, now)
        record_event(
            session, AuditAction.deployment_resumed, actor=actor, target=info.name,
            reason="its process was lost; resumed by the server that ran it",
            details={"previous_owner": lapsed.owner, "last_seen": lapsed.last_seen.isoformat(), "gap_seconds": gap_seconds,
                     "watchlist": watchlist.name, "watchlist_size": len(matcher), "watchlist_revision": watchlist.revision},
        )
    return RunningDeployment(
        service.store, info, info.threshold, info.model_id, matcher, lease, on_watchlist_destroyed=service.gallery.forget_watchlist
    )


def interrupt(store: RecordStore, lapsed: LapsedDeployment, *, actor: str, reason: str, force: bool = False) -> DeploymentRecord | None:
    """End a lapsed deployment as interrupted, all in one transaction; None if another process
    renewed or recovered it first. ``force`` ends it even if its lease has not lapsed (restore)."""
    now = utc_now()
    with store.transaction() as session:
        if lapsed.owner is not None:
            released = delete(DeploymentLease).where(
                DeploymentLease.deployment_id == lapsed.deployment_id, DeploymentLease.owner == lapsed.owner
            )
            if not force:
                released = released.where(DeploymentLease.expires_at < now)
            if session.execute(released.execution_options(synchronize_session=False)).rowcount != 1:
                return None
        ended = session.execute(
            update(Deployment)
            .where(Deployment.id == lapsed.deployment_id, Deployment.status == DeploymentStatus.running)
            .values(status=DeploymentStatus.ended, ended_at=now, end_reason=reason)
            .execution_options(synchronize_session=False)
        )
        if ended.rowcount != 1:
            return None
        gap_seconds = _record_interruption(session, lapsed.deployment_id, lapsed.last_seen, now)
        row = session.get_one(Deployment, lapsed.deployment_id)
        record, _ = close_deployment(
            session, row, actor=actor, reason=reason,
            snapshot={"templates": row.watchlist_size, "lost_with": lapsed.owner or "unknown process"},
            ended={"last_seen": lapsed.last_seen.isoformat(), "gap_seconds": gap_seconds},
        )
    return record


class Recovery:
    """Resumes or ends every lapsed deployment. ``resume`` (a server's: reopen the cameras and
    run it) is called for those this server may resume; without it, or for the others, they end."""

    def __init__(
        self,
        service: DeploymentService,
        *,
        actor: str = RECOVERY_ACTOR,
        server: str | None = None,
        resume: Callable[[LapsedDeployment], None] | None = None,
    ) -> None:
        self.service = service
        self.actor = actor
        self.server = server
        self._resume = resume

    def run(self, *, everything: bool = False) -> RecoveryReport:
        """One pass; ``everything`` ends every running deployment, lapsed or not (restore)."""
        resumed: list[str] = []
        interrupted: list[tuple[str, str]] = []
        for lapsed in lapsed_deployments(self.service.store, everything=everything):
            refusal = "the backup it was restored from was taken while it ran" if everything else self._refusal(lapsed)
            if refusal is None and self._resume is not None:
                try:
                    self._resume(lapsed)
                    log.warning("deployment %s resumed after its process was lost (last seen %s)", lapsed.name, lapsed.last_seen)
                    resumed.append(lapsed.name)
                    continue
                except LeaseLostError:
                    continue
                except OpenFRTError as exc:
                    refusal = f"it could not be resumed: {exc}"
            reason = f"interrupted: its process stopped renewing its lease (last seen {lapsed.last_seen.isoformat(timespec='seconds')})"
            if refusal:
                reason += f"; not resumed: {refusal}"
            if interrupt(self.service.store, lapsed, actor=self.actor, reason=reason, force=everything) is not None:
                log.warning("deployment %s ended as %s", lapsed.name, reason)
                interrupted.append((lapsed.name, reason))
        return RecoveryReport(tuple(resumed), tuple(interrupted))

    def _refusal(self, lapsed: LapsedDeployment) -> str | None:
        """Why this process may not resume ``lapsed``; None if it may."""
        if lapsed.owner is None:
            return "it was started before leases were kept"
        if lapsed.server is None:
            return "it was run by `openfrt live`, which does not resume"
        if self._resume is None:
            return "no server is resuming it (recovered from the command line)"
        if lapsed.server != self.server:
            return "it was run by another server"
        info = self.service.get(lapsed.name)
        if not (info.authorised_by or "").strip():
            return "it is no longer authorised"
        if info.planned_end is not None and utc_now() >= info.planned_end:
            return f"its planned window ended at {info.planned_end.isoformat(timespec='minutes')}"
        return None


def settle_restored(store: RecordStore, *, actor: str) -> dict[str, Any]:
    """After a restore: end every deployment the backup had running (their processes belonged
    to the system it was taken from) and apply retention now, so that alert images that expired
    since the backup was taken are deleted again (both audited)."""
    recovered = Recovery(DeploymentService(store), actor=actor).run(everything=True)
    retention = run_retention(store, actor=actor)
    return {"interrupted": [name for name, _ in recovered.interrupted], "expired_images_deleted": len(retention.deleted)}


class RecoveryWatch:
    """Runs :class:`Recovery` in a daemon thread at once and then every ``seconds`` (a server)."""

    def __init__(self, recovery: Recovery, seconds: float) -> None:
        self.recovery = recovery
        self.seconds = seconds
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deployment recovery", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def _run(self) -> None:
        while True:
            try:
                self.recovery.run()
            except Exception as exc:  # noqa: BLE001 - e.g. the database is down: try again next time
                log.warning("deployment recovery: %s", exc)
            if self._stopped.wait(self.seconds):
                return


def _record_interruption(session: Session, deployment_id: int, since: datetime, until: datetime) -> float:
    """A gap on every camera from ``since`` (last seen) to ``until``; returns its length in seconds."""
    if until <= since:
        return 0.0
    name = session.get_one(Deployment, deployment_id).name
    cameras = session.scalars(select(DeploymentCamera.name).where(DeploymentCamera.deployment_id == deployment_id)).all()
    for camera in cameras:
        session.add(DeploymentGap(deployment_id=deployment_id, camera=camera, started_at=since, ended_at=until))
        emit(session, events.camera_gap(name, camera, since, until))
    session.flush()
    return round((until - since).total_seconds(), 3)


def _last_activity(session: Session, deployment: Deployment) -> datetime:
    """The latest moment a deployment without a lease is known to have run: its start, its
    latest alert or the end of its latest gap."""
    assert deployment.started_at is not None  # it is running
    latest_alert = session.scalar(select(func.max(Alert.wall_time)).where(Alert.deployment_id == deployment.id))
    latest_gap = session.scalar(select(func.max(DeploymentGap.ended_at)).where(DeploymentGap.deployment_id == deployment.id))
    return max(moment for moment in (deployment.started_at, latest_alert, latest_gap) if moment is not None)
