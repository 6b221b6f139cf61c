"""Where events go: webhooks (any number) and one MQTT broker, managed by administrators.

A destination's secrets — a webhook's signing secret and whole URL (which may carry a token),
the broker password — are stored encrypted with the store's cipher and never shown again; the
URL is shown without credentials or query string. Hosts must be inside the allowed networks
(:mod:`openfrt.net_policy`). Every change is audited; turning on an alert's images for a
destination (``include_media``) is audited by name, because it sends biometric data out.

Deliveries that failed for the whole retry window are dead-lettered; administrators list them
here and retry them once the receiver is fixed.
"""

from __future__ import annotations

import builtins
import json
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from openfrt.records.text import check_identifier
from openfrt.integrations.events import EventType
from openfrt.live.deployments import jsonable
from openfrt.net_policy import WEBHOOK_SCHEMES, NetworkPolicy, shown_url
from openfrt.records.audit import AuditAction, record_event
from openfrt.records.errors import DuplicateRecordError, InvalidRecordError, RecordNotFoundError
from openfrt.records.models import (
    DeliveryStatus,
    DestinationKind,
    EventDelivery,
    EventDestination,
    OutboxEvent,
    utc_now,
)
from openfrt.records.store import RecordStore

#: The MQTT broker is one destination with this name (``openfrt mqtt set`` replaces it).
MQTT_NAME = "mqtt"

#: A webhook's signing secret must be at least this long: it is all that proves a delivery is ours.
MIN_SECRET_LENGTH = 16

#: An MQTT topic level may not hold these (wildcards and the level separator).
TOPIC_FORBIDDEN = re.compile(r"[+#\x00]")


@dataclass(frozen=True)
class DestinationInfo:
    """A destination as administrators see it: never its secrets."""

    id: int
    name: str
    kind: DestinationKind
    url: str | None
    settings: dict[str, Any]
    events: tuple[str, ...]
    include_media: bool
    created_by: str
    created_at: datetime
    updated_at: datetime
    pending: int
    dead: int

    def as_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


@dataclass(frozen=True)
class DeliveryInfo:
    """One event's delivery to one destination; without the event's contents."""

    id: int
    delivery_id: str
    destination: str
    event_id: str
    event_type: str
    deployment: str | None
    occurred_at: datetime
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None

    def as_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


def event_types(names: Iterable[str]) -> list[str]:
    """The event type names given (comma-separated or not), checked; empty means every type."""
    chosen = [name.strip() for item in names for name in item.split(",") if name.strip()]
    known = {event.value for event in EventType}
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise InvalidRecordError(f"unknown event type {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    return list(dict.fromkeys(chosen))


def new_secret() -> str:
    """A signing secret for a webhook whose administrator did not bring one."""
    return secrets.token_urlsafe(32)


class DestinationService:
    def __init__(self, store: RecordStore) -> None:
        self.store = store

    def add_webhook(
        self, name: str, url: str, *, secret: str, events: Sequence[str] = (), include_media: bool = False, actor: str,
    ) -> DestinationInfo:
        """Add a webhook: each event is POSTed to ``url``, signed with ``secret``."""
        check_identifier(name, "webhook name")
        if name == MQTT_NAME:
            raise InvalidRecordError(f"{MQTT_NAME!r} names the MQTT broker; choose another webhook name")
        NetworkPolicy.from_env().check_url(url, WEBHOOK_SCHEMES, shown_url(url))
        if len(secret) < MIN_SECRET_LENGTH:
            raise InvalidRecordError(f"a webhook secret needs at least {MIN_SECRET_LENGTH} characters")
        chosen = event_types(events)
        with self.store.transaction() as session:
            if session.scalar(select(EventDestination.id).where(EventDestination.name == name)) is not None:
                raise DuplicateRecordError(f"a destination named {name!r} already exists")
            row = EventDestination(
                name=name, kind=DestinationKind.webhook, url=shown_url(url), settings={}, events=chosen,
                sealed_secrets=self._seal({"url": url, "secret": secret}), include_media=include_media, created_by=actor,
            )
            session.add(row)
            session.flush()
            info = self._info(session, row)
            record_event(session, AuditAction.event_destination_added, actor=actor, target=f"webhook:{name}",
                         details=_audited(info))
            return info

    def set_mqtt(
        self, *, host: str, port: int = 1883, tls: bool = False, ca_file: Path | None = None, username: str | None = None,
        password: str | None = None, topic_prefix: str = "openfrt", events: Sequence[str] = (), include_media: bool = False,
        actor: str,
    ) -> DestinationInfo:
        """Send events to the MQTT broker at ``host``:``port`` (replacing any earlier broker)."""
        if not host.strip() or not 1 <= port <= 65535:
            raise InvalidRecordError(f"give the broker's host and a port from 1 to 65535 (not {host!r}:{port})")
        NetworkPolicy.from_env().check_host(host, port)
        prefix = topic_prefix.strip("/")
        if not prefix or TOPIC_FORBIDDEN.search(prefix):
            raise InvalidRecordError(f"topic prefix {topic_prefix!r} is empty or holds an MQTT wildcard (+ or #)")
        if password is not None and not username:
            raise InvalidRecordError("a broker password needs a user name (--username)")
        if ca_file is not None and not ca_file.is_file():
            raise InvalidRecordError(f"CA file {ca_file} does not exist")
        settings = {"host": host, "port": port, "tls": tls or ca_file is not None, "ca_file": str(ca_file) if ca_file else None,
                    "username": username, "topic_prefix": prefix}
        chosen = event_types(events)
        with self.store.transaction() as session:
            row = session.scalar(select(EventDestination).where(EventDestination.name == MQTT_NAME))
            action = AuditAction.event_destination_changed
            if row is None:
                row = EventDestination(name=MQTT_NAME, kind=DestinationKind.mqtt, created_by=actor)
                session.add(row)
                action = AuditAction.event_destination_added
            row.settings, row.events, row.include_media = settings, chosen, include_media
            row.sealed_secrets, row.updated_at = self._seal({"password": password}), utc_now()
            session.flush()
            info = self._info(session, row)
            record_event(session, action, actor=actor, target=f"mqtt:{MQTT_NAME}", details=_audited(info))
            return info

    def set_include_media(self, name: str, include: bool, *, actor: str) -> DestinationInfo:
        """Turn sending an alert's images to ``name`` on or off (audited: it sends biometric data out)."""
        with self.store.transaction() as session:
            row = _destination_row(session, name)
            row.include_media, row.updated_at = include, utc_now()
            session.flush()
            info = self._info(session, row)
            record_event(session, AuditAction.event_destination_changed, actor=actor, target=f"{row.kind.value}:{name}",
                         details=_audited(info))
            return info

    def remove(self, name: str, *, actor: str) -> None:
        """Remove a destination; its undelivered events are dropped (audited with their count)."""
        with self.store.transaction() as session:
            row = _destination_row(session, name)
            undelivered = session.scalar(
                select(func.count()).select_from(EventDelivery)
                .where(EventDelivery.destination_id == row.id, EventDelivery.status != DeliveryStatus.delivered)
            )
            session.delete(row)
            session.flush()
            delete_finished_events(session)
            record_event(session, AuditAction.event_destination_removed, actor=actor, target=f"{row.kind.value}:{name}",
                         details={"undelivered_dropped": undelivered})

    def get(self, name: str) -> DestinationInfo:
        with self.store.transaction() as session:
            return self._info(session, _destination_row(session, name))

    def list(self) -> builtins.list[DestinationInfo]:
        with self.store.transaction() as session:
            return [self._info(session, row) for row in session.scalars(select(EventDestination).order_by(EventDestination.name))]

    def secrets_of(self, destination_id: int) -> dict[str, Any]:
        """A destination's decrypted secrets, for the dispatcher that delivers to it."""
        with self.store.transaction() as session:
            row = session.get_one(EventDestination, destination_id)
            return json.loads(self.store.cipher.decrypt(row.sealed_secrets))

    def deliveries(
        self, status: DeliveryStatus | None = DeliveryStatus.dead, destination: str | None = None, limit: int = 100,
    ) -> builtins.list[DeliveryInfo]:
        """Deliveries not yet delivered (dead-lettered by default), oldest first."""
        with self.store.transaction() as session:
            query = (
                select(EventDelivery, EventDestination.name, OutboxEvent)
                .join(EventDestination, EventDestination.id == EventDelivery.destination_id)
                .join(OutboxEvent, OutboxEvent.id == EventDelivery.event_id)
                .order_by(EventDelivery.id).limit(limit)
            )
            if status is not None:
                query = query.where(EventDelivery.status == status)
            if destination is not None:
                query = query.where(EventDestination.id == _destination_row(session, destination).id)
            return [
                DeliveryInfo(delivery.id, delivery.delivery_id, name, event.event_id, event.type, event.deployment,
                             event.occurred_at, delivery.status, delivery.attempts, delivery.next_attempt_at, delivery.last_error)
                for delivery, name, event in session.execute(query)
            ]

    def retry(self, ids: Sequence[int] = (), *, all_dead: bool = False, actor: str) -> int:
        """Put dead-lettered deliveries (``ids``, or all of them) back in the queue for a new retry window."""
        if not ids and not all_dead:
            raise InvalidRecordError("name the deliveries to retry, or retry all dead-lettered ones")
        now = utc_now()
        with self.store.transaction() as session:
            query = update(EventDelivery).where(EventDelivery.status == DeliveryStatus.dead)
            if not all_dead:
                query = query.where(EventDelivery.id.in_(ids))
            retried = session.execute(query.values(
                status=DeliveryStatus.pending, attempts=0, retrying_since=now, next_attempt_at=now, claimed_until=None,
            )).rowcount
            if ids and retried != len(set(ids)):
                raise InvalidRecordError(f"only dead-lettered deliveries can be retried; {len(set(ids)) - retried} of those named are not")
            record_event(session, AuditAction.event_deliveries_retried, actor=actor,
                         details={"deliveries": sorted(ids) if ids else "all dead-lettered", "retried": retried})
            return retried

    def _seal(self, values: dict[str, Any]) -> bytes:
        return self.store.cipher.encrypt(json.dumps(values).encode())

    def _info(self, session: Session, row: EventDestination) -> DestinationInfo:
        counts = dict(session.execute(
            select(EventDelivery.status, func.count()).where(EventDelivery.destination_id == row.id).group_by(EventDelivery.status)
        ).all())
        return DestinationInfo(
            row.id, row.name, row.kind, row.url, dict(row.settings), tuple(row.events), row.include_media, row.created_by,
            row.created_at, row.updated_at, counts.get(DeliveryStatus.pending, 0), counts.get(DeliveryStatus.dead, 0),
        )


def delete_finished_events(session: Session) -> int:
    """Drop the events every destination has (or whose destinations were removed): the outbox
    keeps alert data no longer than it is needed."""
    outstanding = select(EventDelivery.event_id).where(EventDelivery.status != DeliveryStatus.delivered)
    return session.execute(delete(OutboxEvent).where(OutboxEvent.id.not_in(outstanding))).rowcount


def purge_events(session: Session, cutoff: datetime) -> int:
    """Delete events (dead-lettered or still queued) that happened before ``cutoff``: they carry
    alert data, which retention keeps no longer than the alert's images."""
    return session.execute(delete(OutboxEvent).where(OutboxEvent.occurred_at < cutoff)).rowcount


def _destination_row(session: Session, name: str) -> EventDestination:
    row = session.scalar(select(EventDestination).where(EventDestination.name == name))
    if row is None:
        raise RecordNotFoundError(f"no event destination named {name!r}")
    return row


def _audited(info: DestinationInfo) -> dict[str, Any]:
    return {"kind": info.kind.value, "url": info.url, "settings": info.settings, "events": list(info.events) or "all",
            "include_media": info.include_media}
