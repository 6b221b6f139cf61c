"""Deployments: one authorised use of live facial recognition, from plan to published record.

A deployment is planned by one user with its purpose, place, watchlist and cameras, authorised
by another, an authorising officer (:meth:`DeploymentService.authorise`), then started once:
starting takes a snapshot of the watchlist's templates in memory (so edits to the watchlist
during the deployment change nothing) and hands the pipeline a :class:`RunningDeployment`.
Ending destroys the snapshot and stores the deployment's record (faces scanned, alerts and
their outcomes), which is refreshed when adjudications change later; a watchlist made for the
deployment (not a standing one) is destroyed with it.

About people who did not match, only a count is kept.
"""

from __future__ import annotations

import csv
import enum
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, fields, replace
from datetime import datetime
from typing import IO, Any, TypeVar

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session
from tenacity import RetryCallState, Retrying, before_sleep_log, retry, retry_if_exception, stop_after_delay, stop_never, wait_exponential

from openfrt.errors import OpenFRTError
from openfrt.gallery import Gallery, TemplateMatrix
from openfrt.gallery.fitness import ThresholdCheck
from openfrt.gallery.gallery import destroy_watchlist
from openfrt.integrations import events
from openfrt.integrations.outbox import emit
from openfrt.live.events import AlertEvent
from openfrt.live.leases import Heartbeat, Lease, LeaseLostError, lease_seconds
from openfrt.live.source_policy import SourcePolicy
from openfrt.live.sources import check_source
from openfrt.live.thresholds import approval_covers, approval_needed, planned_threshold_check
from openfrt.net_policy import without_credentials
from openfrt.observability.metrics import DATABASE_RETRIES
from openfrt.records.audit import AuditAction, ChainAnchor, hold_audit_chain, record_event
from openfrt.records.database import is_transient
from openfrt.records.errors import DuplicateRecordError, InvalidRecordError, NotPermittedError, RecordNotFoundError
from openfrt.records.models import (
    Alert,
    AlertMedia,
    AlertOutcome,
    AlertStatus,
    AuditEvent,
    Deployment,
    DeploymentCamera,
    DeploymentGap,
    DeploymentStatus,
    MediaKind,
    Watchlist,
    utc_now,
)
from openfrt.records.store import RecordStore
from openfrt.records.text import SHORT_TEXT, check_identifier, check_text

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a running deployment keeps retrying a write the database refused for a passing
#: reason (SQLite's write lock held beyond its busy timeout, a PostgreSQL connection lost)
#: before giving up, which ends the deployment: an alert must not be lost to a blip.
WRITE_RETRY_SECONDS = 60.0

#: Counters reach the database at most this many seconds late (and always at the end), so that
#: camera threads do not write once per frame; the heartbeat flushes them at least this often.
FLUSH_INTERVAL_SECONDS = 5.0

#: The columns forces publish for each deployment, in order (``export-csv``).
CSV_COLUMNS = (
    "deployment", "date", "location", "purpose", "watchlist_size", "faces_scanned",
    "alerts", "true_alerts", "false_alerts", "engagements", "arrests", "interrupted", "audit_anchor",
)


_log_retry = before_sleep_log(log, logging.WARNING)


def _retrying(state: RetryCallState) -> None:
    """Before a write is tried again: logged and counted (``openfrt_database_retries_total``)."""
    DATABASE_RETRIES.inc()
    _log_retry(state)


#: First characters that make a spreadsheet treat a cell as a formula (OWASP's list).
FORMULA_STARTS = frozenset("=+-@\t\r")


class DeploymentNotRunningError(OpenFRTError):
    """The deployment is not running (not started yet, or ended): nothing can be recorded for it."""


class StoreUnavailableError(OpenFRTError):
    """The records store refused a running deployment's write beyond :data:`WRITE_RETRY_SECONDS`
    (disk full, database down): the deployment must stop; the write waits for its end."""


@dataclass(frozen=True)
class CameraInfo:
    name: str
    source: str
    faces_scanned: int
    frames_dropped: int


@dataclass(frozen=True)
class DeploymentInfo:
    """A deployment as planned and, once started, as run; ``threshold`` None means the watchlist's,
    ``authorised_by`` None that it awaits an authorising officer."""

    id: int
    name: str
    purpose: str
    location: str
    latitude: float | None
    longitude: float | None
    planned_start: datetime | None
    planned_end: datetime | None
    authorised_by: str | None
    authorised_at: datetime | None
    watchlist: str
    threshold: float | None
    model_id: str | None
    watchlist_size: int | None
    status: DeploymentStatus
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    cameras: tuple[CameraInfo, ...]
    #: Why it ended early (see :attr:`Deployment.end_reason`); not published (it may name hosts).
    end_reason: str | None = None
    #: Why the last attempt to start failed (it went back to planned, unpublished).
    start_failure: str | None = None
    start_failed_at: datetime | None = None
    planned_by: str | None = None
    threshold_approval: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


@dataclass(frozen=True)
class DeploymentRecord:
    """What is published about a deployment; computed from the stored alerts, counts and gaps."""

    deployment: str
    status: DeploymentStatus
    started_at: datetime
    ended_at: datetime | None
    location: str
    latitude: float | None
    longitude: float | None
    purpose: str
    authorised_by: str
    watchlist: str
    watchlist_size: int
    threshold: float
    model_id: str
    cameras: int
    faces_scanned: int
    alerts: int
    pending_alerts: int
    true_alerts: int
    false_alerts: int
    no_further_action: int
    engagements: int
    arrests: int
    frames_dropped: int
    gaps: int
    gap_seconds: float
    #: It ended before an officer stopped it or its sources ended: its process was lost, or its
    #: records store failed. Coverage stopped at its last gap.
    interrupted: bool = False
    #: The audit log's anchor (SEQ:HASH) when the deployment ended, published with the record so
    #: that anyone can later show the log was not cut back or rewritten before it (None while it
    #: runs, and for records published before anchors were).
    audit_anchor: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeploymentRecord:
        values = {field.name: data[field.name] if field.default is MISSING else data.get(field.name, field.default)
                  for field in fields(cls)}
        values["status"] = DeploymentStatus(values["status"])
        for name in ("started_at", "ended_at"):
            values[name] = datetime.fromisoformat(values[name]) if values[name] else None
        return cls(**values)

    def csv_row(self) -> dict[str, Any]:
        published = {**self.as_dict(), "date": self.started_at.date().isoformat()}
        return {column: spreadsheet_safe(published[column]) for column in CSV_COLUMNS}


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text: one starting with = + - @ or a tab or carriage
    return would be run as a formula (``=HYPERLINK(…)`` in a published purpose), so it gets a
    leading apostrophe, which spreadsheets hide. Numbers are left as they are."""
    if isinstance(value, str) and value[:1] in FORMULA_STARTS:
        return "'" + value
    return value


class RunningDeployment:
    """A started deployment as the live pipeline sees it (see :class:`openfrt.live.events.DeploymentSink`).

    Thread-safe: every camera thread calls it. One lock serialises its database writes, which
    are rare (alerts, gaps, and counter batches every :data:`FLUSH_INTERVAL_SECONDS`), so a
    write can never interleave with :meth:`end` and a record never misses an alert.

    It holds the deployment's :class:`~openfrt.live.leases.Lease`: every write renews it in
    the same transaction, and a heartbeat thread renews it (flushing the counts) in between. If
    another process has recovered the deployment meanwhile, writes raise
    :class:`~openfrt.live.leases.LeaseLostError` and the callbacks given to
    :meth:`when_lease_lost` are called, so the cameras stop.

    A write the store keeps refusing for a passing reason (disk full, database down) is retried
    for :data:`WRITE_RETRY_SECONDS`; then it is kept in memory, the call raises
    :class:`StoreUnavailableError`, and :meth:`end` writes it with the end — whenever the store
    is back — recording the failure as the reason the deployment ended.
    """

    def __init__(
        self,
        store: RecordStore,
        info: DeploymentInfo,
        threshold: float,
        model_id: str,
        matcher: TemplateMatrix,
        lease: Lease,
        on_watchlist_destroyed: Callable[[int], None] | None = None,
    ) -> None:
        """``on_watchlist_destroyed`` is told the id of a bespoke watchlist destroyed at the end
        (so a gallery drops its cached templates)."""
        self.store = store
        self._on_watchlist_destroyed = on_watchlist_destroyed
        self.deployment_id = info.id
        self.name = info.name
        self.threshold = threshold
        self.model_id = model_id
        self.matcher = matcher
        self.cameras = [camera.name for camera in info.cameras]
        self.lease = lease
        self._planned_threshold = info.threshold
        self._lock = threading.Lock()
        self._faces: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self._flushed_at = time.monotonic()
        self._running = True
        self._lease_lost = False
        self._lost_callbacks: list[Callable[[], None]] = []
        #: Writes the store refused for too long, replayed by :meth:`end`, and why they failed.
        self._unwritten: list[Callable[[Session], object]] = []
        self._failure: str | None = None
        self._heartbeat = Heartbeat(self.heartbeat, max(0.05, min(FLUSH_INTERVAL_SECONDS, lease.seconds / 3)),
                                    name=f"deployment {info.name} heartbeat")
        # A store closed under a deployment that never ended (a test, a crash path) stops its
        # heartbeat: the lease then lapses and recovery ends the deployment.
        self._forget_store = store.on_close(self._heartbeat.stop)
        self._heartbeat.start()

    @property
    def lease_lost(self) -> bool:
        return self._lease_lost

    def when_lease_lost(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (e.g. stop the cameras) if another process takes this deployment over."""
        self._lost_callbacks.append(callback)

    def add_faces_scanned(self, camera: str, count: int) -> None:
        self._count(self._faces, camera, count)

    def add_frames_dropped(self, camera: str, count: int) -> None:
        self._count(self._dropped, camera, count)

    def record_gap(self, camera: str, started: datetime, ended: datetime) -> None:
        """Store a stream outage at once: gaps are rare and explain missing coverage."""
        self._check_camera(camera)
        if ended < started:
            raise InvalidRecordError(f"gap on camera {camera!r} ends ({ended}) before it starts ({started})")
        gap = {"deployment_id": self.deployment_id, "camera": camera, "started_at": started, "ended_at": ended}
        with self._lock:
            self._check_running()
            self._store(lambda session: self._store_gap(session, gap))

    def _store_gap(self, session: Session, gap: dict[str, Any]) -> None:
        session.add(DeploymentGap(**gap))
        emit(session, events.camera_gap(self.name, gap["camera"], gap["started_at"], gap["ended_at"]))

    def raise_alert(self, alert: AlertEvent) -> int:
        """Store the alert, its images encrypted, for adjudication; the audit gets no images."""
        self._check_camera(alert.camera)
        with self._lock:
            self._check_running()
            if alert.subject not in set(self.matcher.subjects):
                raise InvalidRecordError(f"subject {alert.subject!r} is not on deployment {self.name!r}'s watchlist")
            return self._store(lambda session: self._insert_alert(session, alert))

    def _insert_alert(self, session: Session, alert: AlertEvent) -> int:
        hold_audit_chain(session)
        row = Alert(
            deployment_id=self.deployment_id, camera=alert.camera, track_id=alert.track_id,
            subject=alert.subject, similarity=alert.similarity,
            candidates=[[subject, similarity] for subject, similarity in alert.candidates],
            source_time=alert.source_time, wall_time=alert.wall_time,
            status=AlertStatus.pending, engaged=False,
            media=[
                AlertMedia(kind=MediaKind.probe_crop, data=self.store.cipher.encrypt(alert.probe_crop)),
                AlertMedia(kind=MediaKind.frame, data=self.store.cipher.encrypt(alert.frame)),
            ],
        )
        session.add(row)
        session.flush()
        record_event(
            session, AuditAction.alert_raised, actor=f"deployment:{self.name}", target=f"alert:{row.id}",
            details={"deployment": self.name, "camera": alert.camera, "track": alert.track_id,
                     "subject": alert.subject, "similarity": round(alert.similarity, 6)},
        )
        emit(session, events.alert_raised(session, row))
        return row.id

    def heartbeat(self) -> None:
        """Renew the lease and flush the counts (from the heartbeat thread, between writes)."""
        with self._lock:
            if not self._running:
                return
            try:
                self._flush()
            except LeaseLostError:
                pass  # marked lost; the callbacks run below, outside the lock
            except SQLAlchemyError as exc:
                log.warning("deployment %s: heartbeat refused by the records store: %s", self.name, exc)
        if self._lease_lost:
            self._lease_was_lost()

    def end(self, actor: str, reason: str | None = None) -> DeploymentRecord:
        """Flush the counts, store the record, and destroy the watchlist snapshot (audited with
        its size, never its templates). The pipeline should stop its cameras first: anything
        reported afterwards is refused.

        ``reason`` says why it ended early (a camera failed); a write the store refused is its
        own reason. Until the store takes the end (with every write it refused before), this
        waits for it — for ever: a deployment's end is never dropped while its process lives.
        """
        self._heartbeat.stop()
        with self._lock:
            self._check_running()
            reason = self._failure or reason
            record, destroyed = self._write_until_stored(lambda session: self._store_end(session, actor, reason))
            self._counts_written()
            self._stop_running()
        if destroyed is not None and self._on_watchlist_destroyed is not None:
            self._on_watchlist_destroyed(destroyed)
        return record

    def abandon(self, actor: str, failure: str) -> bool:
        """Undo a start that failed before the deployment ran: it goes back to planned, with the
        failure noted, its lease released, and publishes nothing (a deployment that never ran has
        no record). Only when nothing was seen — no alert, no face scanned, no frame dropped;
        otherwise False and nothing changes (end it instead). The snapshot is destroyed either
        way it is undone."""
        self._heartbeat.stop()
        with self._lock:
            self._check_running()
            undone = self._write(lambda session: self._store_abandon(session, actor, failure))
            if undone:
                self._counts_written()
                self._stop_running()
        return undone

    def _store_abandon(self, session: Session, actor: str, failure: str) -> bool:
        row = session.get_one(Deployment, self.deployment_id)
        seen = sum(self._faces.values()) + sum(self._dropped.values()) + sum(c.faces_scanned + c.frames_dropped for c in row.cameras)
        if seen or session.scalar(select(func.count()).select_from(Alert).where(Alert.deployment_id == row.id)):
            return False
        self.lease.release(session)
        session.execute(delete(DeploymentGap).where(DeploymentGap.deployment_id == row.id))
        row.status, row.started_at, row.threshold = DeploymentStatus.planned, None, self._planned_threshold
        row.model_id = row.watchlist_size = None
        row.start_failure, row.start_failed_at = failure, utc_now()
        record_event(session, AuditAction.deployment_start_failed, actor=actor, target=self.name, reason=failure,
                     details={"back_to": DeploymentStatus.planned.value})
        record_event(session, AuditAction.snapshot_destroyed, actor=actor, target=self.name,
                     details={"watchlist": row.watchlist, "templates": len(self.matcher)})
        emit(session, events.deployment_start_failed(self.name, failure=failure, failed_at=row.start_failed_at))
        return True

    def _store_end(self, session: Session, actor: str, reason: str | None) -> tuple[DeploymentRecord, int | None]:
        """The end in one transaction: the writes the store refused before, the counts, the
        lease's release, then everything :func:`close_deployment` does."""
        for write in self._unwritten:
            write(session)
        self._write_counts(session)
        self.lease.release(session)
        row = session.get_one(Deployment, self.deployment_id)
        row.status, row.ended_at, row.end_reason = DeploymentStatus.ended, utc_now(), reason
        return close_deployment(session, row, actor=actor, reason=reason, snapshot={"templates": len(self.matcher)})

    def _store(self, work: Callable[[Session], T]) -> T:
        """Write ``work`` with the lease held (lock held). A write refused beyond the retries is
        kept for :meth:`end` and raises :class:`StoreUnavailableError` — as does every write after
        it, at once, so the other cameras stop too."""
        if self._failure is not None:
            self._unwritten.append(work)
            raise StoreUnavailableError(f"deployment {self.name!r} stops: {self._failure}")
        try:
            return self._write(work)
        except OperationalError as exc:
            if not is_transient(exc):
                raise
            self._unwritten.append(work)
            self._failure = f"the records store refused writes for {WRITE_RETRY_SECONDS:.0f} s: {exc.orig}"
            raise StoreUnavailableError(f"deployment {self.name!r} stops: {self._failure}") from exc

    def _transact(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one transaction with the lease held (renewed in it); every write goes
        through here, so this is where a lost lease is noticed."""
        try:
            with self.store.transaction() as session:
                self.lease.hold(session)
                return work(session)
        except LeaseLostError:
            self._lease_lost = True
            raise

    @retry(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential(multiplier=0.1, max=5.0),
        stop=lambda attempt: stop_after_delay(WRITE_RETRY_SECONDS)(attempt),  # the setting when it runs
        before_sleep=_retrying,
        reraise=True,
    )
    def _write(self, work: Callable[[Session], T]) -> T:
        """:meth:`_transact`, again from the start if the database refused it for a passing
        reason (e.g. "database or disk is full", a lost connection); a refused transaction was
        rolled back, so nothing is written twice or half."""
        return self._transact(work)

    def _write_until_stored(self, work: Callable[[Session], T]) -> T:
        """:meth:`_transact`, retried for as long as the refusals are passing ones."""
        retrying = Retrying(
            retry=retry_if_exception(is_transient), wait=wait_exponential(multiplier=0.1, max=5.0), stop=stop_never,
            before_sleep=_retrying, reraise=True,
        )
        return retrying(self._transact, work)

    def _count(self, counter: Counter[str], camera: str, count: int) -> None:
        self._check_camera(camera)
        if count < 0:
            raise InvalidRecordError(f"count for camera {camera!r} is negative ({count})")
        with self._lock:
            self._check_running()
            counter[camera] += count
            if time.monotonic() - self._flushed_at >= FLUSH_INTERVAL_SECONDS:
                self._flush()

    def _flush(self) -> None:
        """Write the pending counts and renew the lease (lock held). Counts the database refused
        for a passing reason wait in memory for the next flush (or the end): cameras do not stall."""
        try:
            self._transact(self._write_counts)
        except OperationalError as exc:
            if not is_transient(exc):
                raise
            log.warning("deployment %s: counts kept for the next write, the database refused this one: %s", self.name, exc)
            self._flushed_at = time.monotonic()
            return
        self._counts_written()

    def _write_counts(self, session: Session) -> None:
        """Add the pending counts to the cameras' rows (with the lock held); they are cleared
        only once the transaction has committed, so a failed write loses nothing."""
        for camera in set(self._faces) | set(self._dropped):
            session.execute(
                update(DeploymentCamera)
                .where(DeploymentCamera.deployment_id == self.deployment_id, DeploymentCamera.name == camera)
                .values(faces_scanned=DeploymentCamera.faces_scanned + self._faces[camera],
                        frames_dropped=DeploymentCamera.frames_dropped + self._dropped[camera])
            )
        session.flush()

    def _counts_written(self) -> None:
        self._faces.clear()
        self._dropped.clear()
        self._flushed_at = time.monotonic()

    def _lease_was_lost(self) -> None:
        """Another process recovered the deployment: drop the snapshot, stop the cameras."""
        log.error("deployment %s was recovered by another process; this one stops running it", self.name)
        with self._lock:
            if not self._running:
                return
            self._stop_running()
        for callback in self._lost_callbacks:
            callback()

    def _stop_running(self) -> None:
        """No more writes; the snapshot and the heartbeat go (lock held)."""
        self._running = False
        self.matcher = TemplateMatrix(self.model_id, [])
        self._heartbeat.stop()
        self._forget_store()

    def _check_camera(self, camera: str) -> None:
        if camera not in self.cameras:
            raise InvalidRecordError(f"camera {camera!r} is not part of deployment {self.name!r} ({', '.join(self.cameras)})")

    def _check_running(self) -> None:
        if self._lease_lost:
            raise LeaseLostError(f"deployment {self.name!r} was recovered by another process; nothing more can be recorded here")
        if not self._running:
            raise DeploymentNotRunningError(f"deployment {self.name!r} has ended; nothing more can be recorded")


class DeploymentService:
    """Create, start, inspect and publish deployments. ``gallery`` is needed only to start one
    (it supplies the watchlist snapshot); everything else reads the store alone."""

    def __init__(self, store: RecordStore, gallery: Gallery | None = None) -> None:
        self.store = store
        self.gallery = gallery
        #: Which camera sources may be planned and opened (from the environment).
        self.source_policy = SourcePolicy.from_env(store.home)

    def create(
        self,
        name: str,
        *,
        purpose: str,
        location: str,
        watchlist: str,
        actor: str,
        cameras: Mapping[str, str] | None = None,
        threshold: float | None = None,
        latitude: float | None = None,
        longitude: float | None = None,
        planned_start: datetime | None = None,
        planned_end: datetime | None = None,
    ) -> DeploymentInfo:
        """Plan a deployment as ``actor``; ``cameras`` maps camera names to source descriptions
        (URL, device). It waits for another user's :meth:`authorise` before it can start.
        """
        check_identifier(name, "deployment name")
        for value, what in ((purpose, "purpose"), (location, "location"), (watchlist, "watchlist")):
            require_text(value, f"a deployment needs a {what}")
        check_text(purpose, "purpose")
        check_text(location, "location", limit=SHORT_TEXT)
        cameras = dict(cameras or {})
        _check_cameras(cameras, self.source_policy)
        _check_plan(threshold, latitude, longitude, planned_start, planned_end)
        with self.store.transaction() as session:
            list_row = session.scalar(select(Watchlist).where(Watchlist.name == watchlist))
            if list_row is None:
                raise RecordNotFoundError(f"no watchlist named {watchlist!r}")
            if session.scalar(select(Deployment.id).where(Deployment.name == name)) is not None:
                raise DuplicateRecordError(f"a deployment named {name!r} already exists")
            if list_row.standing_reason is None:
                _check_unclaimed(session, watchlist)
            row = Deployment(
                name=name, purpose=purpose, location=location, latitude=latitude, longitude=longitude,
                planned_start=planned_start, planned_end=planned_end, planned_by=str(actor),
                watchlist=watchlist, threshold=threshold, status=DeploymentStatus.planned,
                cameras=[self._camera_row(camera, source) for camera, source in cameras.items()],
            )
            session.add(row)
            session.flush()
            info = _deployment_info(row)
            record_event(session, AuditAction.deployment_created, actor=actor, target=name, reason=purpose, details=info.as_dict())
            return info

    def _camera_row(self, camera: str, source: str) -> DeploymentCamera:
        """A camera as stored: its source in the clear without credentials (for the record and
        the audit log), and, if it had any, the whole source encrypted, to open it when started."""
        shown = without_credentials(source)
        sealed = self.store.cipher.encrypt(source.encode()) if shown != source else None
        return DeploymentCamera(name=camera, source=shown, sealed_source=sealed, faces_scanned=0, frames_dropped=0)

    def camera_sources(self, name: str) -> dict[str, str]:
        """The sources to open for ``name``'s cameras, credentials included: for the process that
        starts it, never for display. Credentials are destroyed when the deployment ends."""
        with self.store.transaction() as session:
            row = deployment_row(session, name)
            return {
                camera.name: self.store.cipher.decrypt(camera.sealed_source).decode() if camera.sealed_source else camera.source
                for camera in row.cameras
            }

    def authorise(self, name: str, *, actor: str, reason: str | None = None) -> DeploymentInfo:
        """Record ``actor``'s authority, as authorising officer, for a planned deployment, which
        may then start. They may not authorise a deployment they planned themselves: planning
        and authorising are two people's decisions.

        A threshold below the floor for the watchlist's size (or of an uncalibrated model) needs
        a second authorising officer's approval first (:meth:`approve_threshold`); the audit
        entry records the threshold, watchlist size, model and floor either way.

        Only a planned deployment can be (re-)authorised: the authority of one that has run is
        part of its record. ``reason`` is the officer's justification (why it is necessary and
        proportionate), kept in the audit log.
        """
        require_text(actor, "name the authorising officer")
        check_text(reason, "reason for authorising", required=False)
        with self.store.transaction() as session:
            planned = deployment_row(session, name)  # RecordNotFoundError if there is none
            if planned.planned_by is not None and planned.planned_by == actor:
                raise NotPermittedError(
                    f"deployment {name!r} was planned by {actor}; another authorising officer must authorise it"
                )
            approval = planned.threshold_approval
            if approval is not None and approval["by"] == actor:
                raise NotPermittedError(
                    f"{actor} approved deployment {name!r}'s threshold; another authorising officer must authorise it, "
                    "so that a second authorising officer has approved it"
                )
            check = planned_threshold_check(session, planned)
            if check.needs_approval and not approval_covers(approval, check):
                raise NotPermittedError(approval_needed(name, check))
            authorised = session.execute(
                update(Deployment)
                .where(Deployment.name == name, Deployment.status == DeploymentStatus.planned)
                .values(authorised_by=str(actor), authorised_at=utc_now())
            )
            if authorised.rowcount != 1:
                raise InvalidRecordError(f"deployment {name!r} is {planned.status.value}; only a planned deployment can be authorised")
            session.refresh(planned)
            info = _deployment_info(planned)
            record_event(
                session, AuditAction.deployment_authorised, actor=actor, target=name, reason=reason,
                details={"authorised_by": str(actor), "planned_by": info.planned_by, "watchlist": info.watchlist,
                         "purpose": info.purpose, "threshold": check.threshold, "watchlist_size": check.watchlist_size,
                         "model_id": check.model_id, "threshold_floor": check.floor, "threshold_approval": approval},
            )
            return info

    def approve_threshold(self, name: str, *, justification: str, actor: str) -> DeploymentInfo:
        """Record ``actor``'s approval, as a second authorising officer, of a planned deployment's
        threshold below the floor (or of an uncalibrated model), with why. Neither its planner nor
        its authorising officer may give it, and it covers the threshold, model and watchlist
        size as they are now (:mod:`openfrt.live.thresholds`)."""
        require_text(justification, "approving a threshold below the floor needs a justification")
        check_text(justification, "justification")
        with self.store.transaction() as session:
            row = deployment_row(session, name)
            if row.status is not DeploymentStatus.planned:
                raise InvalidRecordError(f"deployment {name!r} is {row.status.value}; only a planned deployment's threshold can be approved")
            if actor in (row.planned_by, row.authorised_by):
                raise NotPermittedError(
                    f"{actor} planned or authorised deployment {name!r}: a threshold below the floor needs a second "
                    "authorising officer's approval"
                )
            check = planned_threshold_check(session, row)
            if not check.needs_approval:
                raise InvalidRecordError(f"deployment {name!r}: {check.describe()}; it needs no approval")
            row.threshold_approval = {"by": str(actor), "at": utc_now().isoformat(), "justification": justification,
                                      **check.as_dict()}
            record_event(session, AuditAction.threshold_approved, actor=actor, target=name, reason=justification,
                         details=check.as_dict())
            session.flush()
            return _deployment_info(row)

    def threshold_check(self, name: str) -> ThresholdCheck:
        """A planned deployment's threshold against the floor for its watchlist as it now is."""
        with self.store.transaction() as session:
            return planned_threshold_check(session, deployment_row(session, name))

    def start(self, name: str, actor: str, server: str | None = None) -> RunningDeployment:
        """Start a planned deployment: check its authority, snapshot its watchlist, mark it running
        and take its lease. ``server`` is the server id of a server running it (which may resume
        it after a crash; see :mod:`openfrt.live.recovery`), None for ``openfrt live``."""
        if self.gallery is None:
            raise InvalidRecordError("starting a deployment needs the gallery (for its watchlist)")
        planned = self.ready_to_start(name)
        self.gallery.require_engine_model(planned.watchlist)
        watchlist, matcher = self.gallery.watchlist_snapshot(planned.watchlist)
        if len(matcher) == 0:
            raise InvalidRecordError(f"watchlist {planned.watchlist!r} is empty; there is nothing to look for")
        threshold = planned.threshold if planned.threshold is not None else watchlist.threshold
        check = ThresholdCheck.of(watchlist.model_id, threshold, len(matcher), matcher.max_references)
        if check.needs_approval and not approval_covers(planned.threshold_approval, check):
            raise NotPermittedError(approval_needed(name, check))
        started_at = utc_now()
        with self.store.transaction() as session:
            started = session.execute(
                update(Deployment)
                .where(Deployment.id == planned.id, Deployment.status == DeploymentStatus.planned)
                .values(status=DeploymentStatus.running, started_at=started_at, threshold=threshold,
                        model_id=watchlist.model_id, watchlist_size=len(matcher), start_failure=None, start_failed_at=None)
            )
            if started.rowcount != 1:  # another process started it between the check and now
                raise InvalidRecordError(f"deployment {name!r} was started by someone else")
            lease = Lease.acquire(session, planned.id, server=server, watchlist_revision=watchlist.revision, seconds=lease_seconds())
            record_event(
                session, AuditAction.deployment_started, actor=actor, target=name,
                details={"watchlist": watchlist.name, "watchlist_size": len(matcher), "threshold": threshold,
                         "model_id": watchlist.model_id, "cameras": [camera.name for camera in planned.cameras],
                         "threshold_floor": check.floor},
            )
            emit(session, events.deployment_started(
                name, purpose=planned.purpose, location=planned.location, authorised_by=planned.authorised_by or "",
                planned_by=planned.planned_by, watchlist=watchlist.name, watchlist_size=len(matcher), threshold=threshold,
                model_id=watchlist.model_id, cameras=[camera.name for camera in planned.cameras], started_at=started_at,
            ))
        return RunningDeployment(
            self.store, planned, threshold, watchlist.model_id, matcher, lease, on_watchlist_destroyed=self.gallery.forget_watchlist
        )

    def ready_to_start(self, name: str) -> DeploymentInfo:
        """The deployment, if its plan lets it start: planned (not yet run), authorised, with a
        watchlist and cameras; raises saying what is missing. Checked before any camera opens."""
        planned = self.get(name)
        if planned.status is not DeploymentStatus.planned:
            raise InvalidRecordError(f"deployment {name!r} is {planned.status.value}; a deployment starts only once")
        require_text(
            planned.authorised_by, f"deployment {name!r} has no authorising officer; it cannot start until it is authorised"
        )
        require_text(planned.watchlist, f"deployment {name!r} has no watchlist; it cannot start")
        if not planned.cameras:
            raise InvalidRecordError(f"deployment {name!r} has no cameras; add one with --camera NAME=SOURCE")
        return planned


    def get(self, name: str) -> DeploymentInfo:
        with self.store.transaction() as session:
            return _deployment_info(deployment_row(session, name))

    def record(self, name: str) -> DeploymentRecord:
        """The published record: stored once ended, computed now while running (then its counts
        may lag the running process by up to :data:`FLUSH_INTERVAL_SECONDS`)."""
        with self.store.transaction() as session:
            row = deployment_row(session, name)
            if row.status is DeploymentStatus.planned:
                raise InvalidRecordError(f"deployment {name!r} has not started; it has no record yet")
            if row.record is not None:
                return DeploymentRecord.from_dict(row.record)
            return compute_record(session, row)

    def export_csv(self, stream: IO[str]) -> int:
        """Write the published columns of every ended deployment, oldest first; returns the row count."""
        with self.store.transaction() as session:
            stored = session.scalars(
                select(Deployment.record).where(Deployment.status == DeploymentStatus.ended).order_by(Deployment.started_at, Deployment.id)
            ).all()
        writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for data in stored:
            writer.writerow(DeploymentRecord.from_dict(data).csv_row())
        return len(stored)

    def list(self, status: DeploymentStatus | None = None) -> list[DeploymentInfo]:
        with self.store.transaction() as session:
            query = select(Deployment).order_by(Deployment.created_at, Deployment.id)
            if status is not None:
                query = query.where(Deployment.status == status)
            return [_deployment_info(row) for row in session.scalars(query)]


    # -- changing a plan before it starts ------------------------------------------------------

    def update(self, name: str, changes: Mapping[str, Any], *, actor: str) -> DeploymentInfo:
        """Change a planned deployment: any of :data:`EDITABLE` (``cameras`` replaces them all).
        An authorised plan loses its authority (and any threshold approval) when it changes — the
        officers approved the plan as it was — and must be authorised again, by someone other
        than ``actor``, who is now its planner. Audited with what changed."""
        unknown = set(changes) - set(EDITABLE)
        if unknown:
            raise InvalidRecordError(f"{', '.join(sorted(unknown))} cannot be changed; only {', '.join(EDITABLE)}")
        with self.store.transaction() as session:
            row = _planned_row(session, name, "changed")
            for field_name in ("purpose", "location", "watchlist"):
                if field_name in changes:
                    require_text(changes[field_name], f"a deployment needs a {field_name}")
            if "purpose" in changes:
                check_text(changes["purpose"], "purpose")
            if "location" in changes:
                check_text(changes["location"], "location", limit=SHORT_TEXT)
            if "watchlist" in changes and changes["watchlist"] != row.watchlist:
                list_row = session.scalar(select(Watchlist).where(Watchlist.name == changes["watchlist"]))
                if list_row is None:
                    raise RecordNotFoundError(f"no watchlist named {changes['watchlist']!r}")
                if list_row.standing_reason is None:
                    _check_unclaimed(session, changes["watchlist"])
            merged = {field_name: changes.get(field_name, getattr(row, field_name))
                      for field_name in ("threshold", "latitude", "longitude", "planned_start", "planned_end")}
            _check_plan(**merged)
            before = _deployment_info(row).as_dict()
            for field_name, value in changes.items():
                if field_name == "cameras":
                    _check_cameras(value, self.source_policy)
                    row.cameras.clear()
                    session.flush()  # the old rows go before new ones with the same names arrive
                    row.cameras.extend(self._camera_row(camera, source) for camera, source in value.items())
                else:
                    setattr(row, field_name, value)
            session.flush()
            after = _deployment_info(row).as_dict()
            changed = {key: {"before": before[key], "after": after[key]} for key in sorted(changes) if before[key] != after[key]}
            if changed:
                # Whoever changes a plan has planned it, so may not authorise it; the authority and
                # any threshold approval were given for the plan as it was.
                withdrawn, row.authorised_by, row.authorised_at = row.authorised_by, None, None
                approval, row.threshold_approval = row.threshold_approval, None
                planner, row.planned_by = row.planned_by, str(actor)
                record_event(session, AuditAction.deployment_updated, actor=actor, target=name,
                             details={"changed": changed, "authority_withdrawn": withdrawn,
                                      "threshold_approval_withdrawn": approval, "planned_by": {"before": planner, "after": str(actor)}})
            return _deployment_info(row)

    def cancel(self, name: str, *, actor: str, reason: str) -> None:
        """Withdraw a planned deployment: it never ran, so it has no record to publish; the audit
        log keeps the plan and why it was cancelled."""
        require_text(reason, "cancelling a deployment needs a reason")
        check_text(reason, "reason for cancelling")
        with self.store.transaction() as session:
            row = _planned_row(session, name, "cancelled")
            record_event(session, AuditAction.deployment_cancelled, actor=actor, target=name, reason=reason,
                         details=_deployment_info(row).as_dict())
            session.delete(row)

    def note_stop(self, name: str, *, actor: str, reason: str) -> None:
        """Record who asked a running deployment to stop, and why, before it is stopped."""
        require_text(reason, "stopping a deployment needs a reason")
        check_text(reason, "reason for stopping")
        with self.store.transaction() as session:
            row = deployment_row(session, name)
            if row.status is not DeploymentStatus.running:
                raise InvalidRecordError(f"deployment {name!r} is {row.status.value}, not running")
            record_event(session, AuditAction.deployment_stop_requested, actor=actor, target=name, reason=reason)


#: What may change in a planned deployment.
EDITABLE = ("purpose", "location", "watchlist", "cameras", "threshold", "latitude", "longitude", "planned_start", "planned_end")


def _planned_row(session: Session, name: str, what: str) -> Deployment:
    row = deployment_row(session, name)
    if row.status is not DeploymentStatus.planned:
        raise InvalidRecordError(f"deployment {name!r} is {row.status.value}; only a planned deployment can be {what}")
    return row


def deployment_row(session: Session, name: str) -> Deployment:
    row = session.scalar(select(Deployment).where(Deployment.name == name))
    if row is None:
        raise RecordNotFoundError(f"no deployment named {name!r}")
    return row


def refresh_record(session: Session, row: Deployment) -> DeploymentRecord:
    """Recompute and store an ended deployment's record after a re-adjudication (its published
    audit anchor stays the one taken at the end)."""
    record = compute_record(session, row)
    row.record = record.as_dict()
    return record


def close_deployment(
    session: Session,
    row: Deployment,
    *,
    actor: str,
    reason: str | None,
    snapshot: Mapping[str, Any],
    ended: Mapping[str, Any] | None = None,
) -> tuple[DeploymentRecord, int | None]:
    """Everything a deployment's end does besides marking it ended, in that same transaction —
    whether its process ends it or recovery ends it as interrupted: its camera credentials are
    destroyed, its record is stored, the end (with ``ended`` added) and the destruction of its
    watchlist snapshot (``snapshot`` details) are audited, a watchlist made for it (not a
    standing one) is destroyed, the record publishes the audit anchor of this ending's last
    entry, and ``deployment.ended`` goes to the outbox with that record. Returns the record and
    the id of the watchlist destroyed, if one was."""
    for camera in row.cameras:
        camera.sealed_source = None  # its credentials are not needed again
    record = compute_record(session, row)
    record_event(session, AuditAction.deployment_ended, actor=actor, target=row.name, reason=reason,
                 details={**record.as_dict(), **(ended or {})})
    last = record_event(session, AuditAction.snapshot_destroyed, actor=actor, target=row.name,
                        details={"watchlist": row.watchlist, **snapshot})
    watchlist = session.scalar(select(Watchlist).where(Watchlist.name == row.watchlist))
    destroyed = None
    if watchlist is not None and watchlist.standing_reason is None:
        destroy_watchlist(
            session, watchlist, actor=actor, details={"deployment": row.name},
            reason=f"deployment {row.name} ended: a watchlist made for a deployment is destroyed with it",
        )
        destroyed = watchlist.id
        last = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).one()
    # Published with the record: the anchor of this ending's last entry (every verification checks it).
    record = replace(record, audit_anchor=str(ChainAnchor.of(last)))
    row.record = record.as_dict()
    emit(session, events.deployment_ended(row.name, record.as_dict()))
    return record, destroyed


def compute_record(session: Session, row: Deployment) -> DeploymentRecord:
    """The record from what is stored: camera counts, gaps, and alerts by status and outcome."""
    session.flush()
    cameras = session.execute(
        select(func.count(), func.coalesce(func.sum(DeploymentCamera.faces_scanned), 0), func.coalesce(func.sum(DeploymentCamera.frames_dropped), 0))
        .where(DeploymentCamera.deployment_id == row.id)
    ).one()
    gaps = session.execute(select(DeploymentGap.started_at, DeploymentGap.ended_at).where(DeploymentGap.deployment_id == row.id)).all()
    published_anchor = (row.record or {}).get("audit_anchor")
    alerts = session.execute(select(Alert.status, Alert.outcome, Alert.engaged).where(Alert.deployment_id == row.id)).all()
    statuses = Counter(alert.status for alert in alerts)
    assert row.started_at is not None and row.threshold is not None and row.model_id is not None and row.watchlist_size is not None
    assert row.authorised_by is not None  # start refuses an unauthorised deployment
    return DeploymentRecord(
        deployment=row.name, status=row.status, started_at=row.started_at, ended_at=row.ended_at,
        location=row.location, latitude=row.latitude, longitude=row.longitude, purpose=row.purpose,
        authorised_by=row.authorised_by, watchlist=row.watchlist, watchlist_size=row.watchlist_size,
        threshold=row.threshold, model_id=row.model_id, cameras=int(cameras[0]),
        faces_scanned=int(cameras[1]), alerts=len(alerts), pending_alerts=statuses[AlertStatus.pending],
        true_alerts=statuses[AlertStatus.confirmed_match], false_alerts=statuses[AlertStatus.false_alert],
        no_further_action=statuses[AlertStatus.no_further_action],
        engagements=sum(1 for alert in alerts if alert.engaged),
        arrests=sum(1 for alert in alerts if alert.outcome is AlertOutcome.arrested),
        frames_dropped=int(cameras[2]), gaps=len(gaps),
        gap_seconds=round(sum((gap.ended_at - gap.started_at).total_seconds() for gap in gaps), 3),
        interrupted=row.end_reason is not None,
        audit_anchor=published_anchor,
    )


def _deployment_info(row: Deployment) -> DeploymentInfo:
    cameras = tuple(CameraInfo(c.name, c.source, c.faces_scanned, c.frames_dropped) for c in row.cameras)
    return DeploymentInfo(
        row.id, row.name, row.purpose, row.location, row.latitude, row.longitude, row.planned_start, row.planned_end,
        row.authorised_by, row.authorised_at, row.watchlist, row.threshold, row.model_id, row.watchlist_size, row.status,
        row.created_at, row.started_at, row.ended_at, cameras, row.end_reason, row.start_failure, row.start_failed_at,
        row.planned_by, row.threshold_approval,
    )


def _check_cameras(cameras: Mapping[str, str], policy: SourcePolicy) -> None:
    """Each camera's name, and its source: allowed by ``policy`` and, for a file or folder, there."""
    for camera, source in cameras.items():
        check_identifier(camera, "camera name")
        require_text(source, f"camera {camera!r} needs a source description")
        check_text(source, f"source of camera {camera}")
        check_source(source, policy)


def _check_unclaimed(session: Session, watchlist: str) -> None:
    """A watchlist made for a deployment serves that one only: it is destroyed when it ends."""
    other = session.scalar(
        select(Deployment.name).where(Deployment.watchlist == watchlist, Deployment.status != DeploymentStatus.ended).limit(1)
    )
    if other is not None:
        raise InvalidRecordError(
            f"watchlist {watchlist!r} was made for deployment {other!r} and is destroyed when it ends; "
            "to use one list for several deployments, create a standing watchlist with the reason (--standing REASON)"
        )


def _check_plan(
    threshold: float | None,
    latitude: float | None,
    longitude: float | None,
    planned_start: datetime | None,
    planned_end: datetime | None,
) -> None:
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise InvalidRecordError(f"threshold {threshold} is outside 0..1")
    if (latitude is None) != (longitude is None):
        raise InvalidRecordError("give both latitude and longitude, or neither")
    if latitude is not None and longitude is not None and not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise InvalidRecordError(f"({latitude}, {longitude}) is not a latitude/longitude")
    if planned_start and planned_end and planned_end <= planned_start:
        raise InvalidRecordError("the planned end is not after the planned start")


def require_text(value: str | None, message: str) -> None:
    """Refuse a missing or blank required value (officer, reason, purpose, ...)."""
    if not value or not value.strip():
        raise InvalidRecordError(message)


def jsonable(values: dict[str, Any]) -> dict[str, Any]:
    """Times as ISO 8601 and enums as their values, recursively, for JSON output and storage."""
    def convert(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, dict):
            return {key: convert(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [convert(item) for item in value]
        return value
    return convert(values)
