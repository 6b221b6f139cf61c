"""The dispatcher: sends the outbox's events to their destinations, in background threads.

Every openfrt process that changes things runs one (the server, and ``openfrt live``), so an
event is sent soon whichever process wrote it, and events written while no process could send
them go when one can. Several dispatchers may share a database: each *claims* a delivery (a
conditional update that only one of them wins, with a lease that lapses if its process dies)
before sending it, so a delivery is sent by one process at a time, and a delivered one never
again. Receivers de-duplicate on the delivery id, which every attempt repeats, for the rare
attempt that was received but could not be recorded.

Each destination is drained by its own worker (up to ``workers`` at once), so a slow or
unreachable receiver holds up only itself. A failed attempt is retried after an exponential back-off with jitter (the
destination waits as a whole, rather than every queued event hammering a receiver that is
down); after :attr:`RetryPolicy.window` seconds of failures the delivery is dead-lettered for
administrators to see and retry (:mod:`openfrt.integrations.destinations`).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import or_, select, update

from openfrt.integrations.destinations import DestinationService, delete_finished_events
from openfrt.integrations.events import EventType
from openfrt.integrations.transports import DeliveryError, MqttTransport, Outgoing, Transport, WebhookTransport
from openfrt.observability import metrics
from openfrt.observability.logs import log_context
from openfrt.records.audit import AuditAction, record_event
from openfrt.records.models import (
    AlertMedia,
    DeliveryStatus,
    DestinationKind,
    EventDelivery,
    EventDestination,
    OutboxEvent,
    utc_now,
)
from openfrt.records.store import RecordStore

log = logging.getLogger(__name__)

RETRY_WINDOW_ENV = "OPENFRT_EVENT_RETRY_SECONDS"
PUBLIC_URL_ENV = "OPENFRT_PUBLIC_URL"


@dataclass(frozen=True)
class RetryPolicy:
    """``first_delay`` after the first failure, doubling up to ``max_delay``, each with up to
    half of it as random jitter (so many deliveries failing together do not retry together);
    dead-lettered once failing for ``window`` seconds. ``timeout`` bounds one attempt."""

    first_delay: float = 2.0
    max_delay: float = 300.0
    window: float = 3600.0
    timeout: float = 10.0

    @classmethod
    def from_env(cls) -> RetryPolicy:
        window = os.environ.get(RETRY_WINDOW_ENV)
        return cls(window=float(window)) if window else cls()

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt."""
        ceiling = min(self.max_delay, self.first_delay * 2 ** max(attempts - 1, 0))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass(frozen=True)
class _Destination:
    """A destination as this process sends to it; made again when its row changes."""

    updated: datetime
    name: str
    include_media: bool
    transport: Transport


@dataclass(frozen=True)
class _Claimed:
    id: int
    delivery_id: str
    event_type: str
    deployment: str | None
    payload: dict[str, Any]
    attempts: int
    retrying_since: datetime


class EventDispatcher:
    """Looks for due deliveries every ``poll_seconds`` until :meth:`stop` and sends them with up
    to ``workers`` destinations at once, claiming ``batch`` deliveries at a time; delivered events
    are deleted every ``sweep_seconds``. ``public_url`` (default ``OPENFRT_PUBLIC_URL``) makes the
    events' console links absolute."""

    def __init__(
        self,
        store: RecordStore,
        *,
        policy: RetryPolicy | None = None,
        poll_seconds: float = 0.25,
        public_url: str | None = None,
        workers: int = 4,
        batch: int = 20,
        sweep_seconds: float = 30.0,
    ) -> None:
        self.store = store
        self.policy = policy or RetryPolicy.from_env()
        self.poll_seconds = poll_seconds
        self.public_url = (public_url or os.environ.get(PUBLIC_URL_ENV) or "").rstrip("/")
        self.batch = batch
        self.sweep_seconds = sweep_seconds
        self._swept = time.monotonic()
        self._destinations = DestinationService(store)
        self._http = httpx.Client(timeout=self.policy.timeout, follow_redirects=False, trust_env=False)
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="event delivery")
        self._destinations_seen: dict[int, _Destination] = {}
        self._busy: set[int] = set()
        self._resume_at: dict[int, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="event dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, drain_seconds: float = 0.0) -> None:
        """Stop sending; with ``drain_seconds``, first wait that long at most for what is due now
        (``openfrt live`` ending: its last events go before it exits, if the receivers are up)."""
        deadline = time.monotonic() + drain_seconds
        try:
            while drain_seconds and time.monotonic() < deadline and self._waiting():
                time.sleep(self.poll_seconds)
        except Exception as exc:  # noqa: BLE001 - stopping must not fail: what is undelivered waits in the outbox
            log.warning("event dispatcher: stopped without waiting for due events: %s", exc)
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.policy.timeout + 5)
        self._executor.shutdown(wait=True)
        self._sweep()
        for destination in self._destinations_seen.values():
            destination.transport.close()
        self._http.close()

    def _waiting(self) -> bool:
        """Whether anything is being sent, or is due at a destination not waiting out a failure."""
        with self._lock:
            if self._busy:
                return True
            pausing = {destination for destination, at in self._resume_at.items() if at > time.monotonic()}
        return bool(set(self._due_destinations()) - pausing)

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self._schedule()
                if time.monotonic() - self._swept >= self.sweep_seconds:
                    self._sweep()
            except Exception as exc:  # noqa: BLE001 - a database hiccup must not end event delivery
                log.warning("event dispatcher: %s", exc)

    def _sweep(self) -> None:
        """Delete delivered events now and then, in one statement, rather than each as it is
        delivered: on SQLite every deleting transaction also checkpoints the write-ahead log,
        and those checkpoints held up the cameras' alert writes (``benchmarks/events.py``)."""
        self._swept = time.monotonic()
        try:
            with self.store.transaction() as session:
                delete_finished_events(session)
        except Exception as exc:  # noqa: BLE001 - swept again next time
            log.warning("event dispatcher: delivered events not deleted yet: %s", exc)

    def _schedule(self) -> None:
        """Start a worker for each destination with something due and no worker yet."""
        self._forget_changed()
        due = self._due_destinations()
        now = time.monotonic()
        with self._lock:
            for destination in due:
                if destination in self._busy or self._resume_at.get(destination, 0.0) > now:
                    continue
                self._busy.add(destination)
                self._executor.submit(self._drain, destination)

    def _due_destinations(self) -> list[int]:
        now = utc_now()
        with self.store.transaction() as session:
            return list(session.scalars(select(EventDelivery.destination_id).where(_due(now)).distinct()))

    def _drain(self, destination: int) -> None:
        """Send the destination's due deliveries, oldest first, until none is due or one fails."""
        try:
            target = self._destination(destination)
            while not self._stop.is_set():
                claimed = self._claim(destination)
                if not claimed:
                    return
                for index, delivery in enumerate(claimed):
                    if not self._attempt(destination, target, delivery):
                        self._release(claimed[index + 1:])
                        return
        except Exception as exc:  # noqa: BLE001 - logged; the deliveries' leases lapse and they are retried
            log.error("event delivery to destination %d failed: %s", destination, exc)
        finally:
            with self._lock:
                self._busy.discard(destination)

    def _forget_changed(self) -> None:
        """Close the transports of destinations removed or changed since (not while in use): a
        broker no longer configured must not be reconnected to for ever."""
        if not self._destinations_seen:
            return
        with self.store.transaction() as session:
            current = dict(session.execute(select(EventDestination.id, EventDestination.updated_at)).all())
        with self._lock:
            stale = [destination for destination, seen in self._destinations_seen.items()
                     if destination not in self._busy and current.get(destination) != seen.updated]
            closing = [self._destinations_seen.pop(destination) for destination in stale]
        for seen in closing:
            seen.transport.close()

    def _destination(self, destination: int) -> _Destination:
        """The destination's transport and settings, made again when its row changed."""
        with self.store.transaction() as session:
            row = session.get_one(EventDestination, destination)
            kind, name, settings, updated, media = row.kind, row.name, dict(row.settings), row.updated_at, row.include_media
        with self._lock:
            seen = self._destinations_seen.get(destination)
        if seen is not None and seen.updated == updated:
            return seen
        if seen is not None:
            seen.transport.close()
        sealed = self._destinations.secrets_of(destination)
        transport: Transport
        if kind is DestinationKind.webhook:
            transport = WebhookTransport(sealed["url"], sealed["secret"], self._http)
        else:
            transport = MqttTransport(settings, sealed.get("password"), self.policy.timeout)
        seen = _Destination(updated, name, media, transport)
        with self._lock:
            self._destinations_seen[destination] = seen
        return seen

    def _claim(self, destination: int) -> list[_Claimed]:
        """Take up to :attr:`batch` due deliveries for this process. The update's condition is
        checked again on each row as it is locked, so of two processes only one wins a row."""
        now = utc_now()
        lease = now + timedelta(seconds=self.policy.timeout * self.batch + 30)
        with self.store.transaction() as session:
            candidates = (
                select(EventDelivery.id).where(EventDelivery.destination_id == destination, _due(now))
                .order_by(EventDelivery.id).limit(self.batch).scalar_subquery()
            )
            won = session.scalars(
                update(EventDelivery)
                .where(EventDelivery.id.in_(candidates), _due(now))
                .values(claimed_until=lease, attempts=EventDelivery.attempts + 1)
                .returning(EventDelivery.id)
                .execution_options(synchronize_session=False)
            ).all()
            if not won:
                return []
            rows = session.execute(
                select(EventDelivery, OutboxEvent).join(OutboxEvent, OutboxEvent.id == EventDelivery.event_id)
                .where(EventDelivery.id.in_(won)).order_by(EventDelivery.id)
            ).all()
            return [
                _Claimed(delivery.id, delivery.delivery_id, event.type, event.deployment, dict(event.payload),
                         delivery.attempts, delivery.retrying_since)
                for delivery, event in rows
            ]

    def _attempt(self, destination: int, target: _Destination, delivery: _Claimed) -> bool:
        """One attempt, its outcome recorded; True when delivered."""
        kind = target.transport.kind
        started = time.perf_counter()
        try:
            with log_context(deployment=delivery.deployment):
                target.transport.send(Outgoing(delivery.delivery_id, delivery.event_type, delivery.deployment, self._body(target, delivery)))
        except DeliveryError as exc:
            metrics.DELIVERY_SECONDS.labels(kind).observe(time.perf_counter() - started)
            self._failed(destination, target, delivery, str(exc))
            return False
        metrics.DELIVERY_SECONDS.labels(kind).observe(time.perf_counter() - started)
        metrics.DELIVERIES.labels(kind, target.name, "delivered").inc()
        with self.store.transaction() as session:
            session.execute(
                update(EventDelivery).where(EventDelivery.id == delivery.id)
                .values(status=DeliveryStatus.delivered, delivered_at=utc_now(), claimed_until=None, last_error=None)
            )
        return True

    def _failed(self, destination: int, target: _Destination, delivery: _Claimed, reason: str) -> None:
        now = utc_now()
        dead = (now - delivery.retrying_since).total_seconds() >= self.policy.window
        delay = self.policy.delay(delivery.attempts)
        values: dict[str, Any] = {"claimed_until": None, "last_error": reason[:500]}
        with log_context(deployment=delivery.deployment):
            if dead:
                values["status"] = DeliveryStatus.dead
                log.error("event %s to %s dead-lettered after %d attempts: %s", delivery.event_type, target.name, delivery.attempts, reason)
            else:
                values["next_attempt_at"] = now + timedelta(seconds=delay)
                log.warning("event %s to %s failed (attempt %d), retrying in %.0f s: %s",
                            delivery.event_type, target.name, delivery.attempts, delay, reason)
        metrics.DELIVERIES.labels(target.transport.kind, target.name, "dead_lettered" if dead else "failed").inc()
        with self.store.transaction() as session:
            session.execute(update(EventDelivery).where(EventDelivery.id == delivery.id).values(**values))
        with self._lock:
            self._resume_at[destination] = time.monotonic() + delay

    def _release(self, deliveries: list[_Claimed]) -> None:
        """Give back claimed deliveries not attempted (their destination just failed), uncounted."""
        if not deliveries:
            return
        with self.store.transaction() as session:
            session.execute(
                update(EventDelivery).where(EventDelivery.id.in_([delivery.id for delivery in deliveries]))
                .values(claimed_until=None, attempts=EventDelivery.attempts - 1)
            )

    def _body(self, target: _Destination, delivery: _Claimed) -> bytes:
        """The event as sent: its payload with the delivery id, an absolute console link when the
        public address is known, and an alert's images where the destination was given them."""
        payload = {**delivery.payload, "delivery": delivery.delivery_id}
        if self.public_url:
            payload["link"] = self.public_url + payload["link"]
        if delivery.event_type == EventType.alert_raised.value and target.include_media:
            payload["data"] = {**payload["data"], "images": self._images(target, payload["data"]["alert"])}
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()

    def _images(self, target: _Destination, alert: int) -> dict[str, str]:
        """The alert's images as base64 JPEGs (none once retention deleted them); each sending is audited."""
        with self.store.transaction() as session:
            media = session.scalars(select(AlertMedia).where(AlertMedia.alert_id == alert)).all()
            if media:
                record_event(session, AuditAction.event_media_sent, actor=f"destination:{target.name}",
                             target=f"alert:{alert}", details={"kinds": [item.kind.value for item in media]})
            return {item.kind.value: base64.b64encode(self.store.cipher.decrypt(item.data)).decode() for item in media}


def _due(now: datetime) -> Any:
    return (
        (EventDelivery.status == DeliveryStatus.pending)
        & (EventDelivery.next_attempt_at <= now)
        & or_(EventDelivery.claimed_until.is_(None), EventDelivery.claimed_until < now)
    )
