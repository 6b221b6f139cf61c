"""The records schema: subjects, reference images, templates, watchlists, users and the audit log.

Biometric columns (``image``, ``vector``) hold ciphertext only. Everything derived from a
subject hangs off it with ``ON DELETE CASCADE`` so deleting a subject cannot leave orphans;
watchlist membership cascades from both sides. The Alembic migrations under ``migrations/``
create exactly this schema (a test checks they agree).
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from openfrt.records.vocabulary import (  # noqa: F401 (re-exported: the schema's vocabularies live there)
    AlertOutcome,
    AlertStatus,
    Category,
    DeploymentStatus,
    FootageSearchStatus,
    MediaKind,
    PerceivedEthnicity,
    PerceivedSex,
    Role,
)

#: Longest subject id or watchlist name; ids come from other systems (custody numbers, ...).
ID_LENGTH = 128


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend.

    SQLite keeps no zone and hands back naive values; without this, times read from SQLite and
    PostgreSQL would not compare, and an expiry check could be off by the local UTC offset.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: give a time zone so the stored time is unambiguous")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime}


class Subject(Base):
    __tablename__ = "subjects"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    category: Mapped[Category] = mapped_column(Enum(Category, name="subject_category", native_enum=False, create_constraint=True, length=16))
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)

    images: Mapped[list[ReferenceImage]] = relationship(
        back_populates="subject", cascade="all, delete-orphan", passive_deletes=True, order_by="ReferenceImage.id"
    )


class ReferenceImage(Base):
    """One enrolled photograph: kept (encrypted) so officers can compare it with alert images."""

    __tablename__ = "reference_images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    image: Mapped[bytes] = mapped_column(LargeBinary)
    media_type: Mapped[str] = mapped_column(String(40))
    face_box: Mapped[list[float]] = mapped_column(JSON)
    legal_basis: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(Text)
    captured_at: Mapped[datetime | None] = mapped_column()
    enrolled_at: Mapped[datetime] = mapped_column(default=utc_now)

    subject: Mapped[Subject] = relationship(back_populates="images")
    templates: Mapped[list[ReferenceTemplate]] = relationship(
        back_populates="reference_image", cascade="all, delete-orphan", passive_deletes=True
    )


class ReferenceTemplate(Base):
    """A reference image's template for one model; its id is its id in the search index."""

    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("reference_image_id", "model_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    reference_image_id: Mapped[int] = mapped_column(ForeignKey("reference_images.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[str] = mapped_column(String(100), index=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)

    reference_image: Mapped[ReferenceImage] = relationship(back_populates="templates")


class Watchlist(Base):
    """A list of subjects compiled for one purpose, authorised by a named officer, until it expires."""

    __tablename__ = "watchlists"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    purpose: Mapped[str] = mapped_column(Text)
    criteria: Mapped[str | None] = mapped_column(Text)
    authorised_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    expires_at: Mapped[datetime | None] = mapped_column()
    threshold: Mapped[float] = mapped_column(Float)
    model_id: Mapped[str] = mapped_column(String(100))
    #: Bumped whenever the templates behind the watchlist change, so cached matrices go stale.
    revision: Mapped[int] = mapped_column(Integer, default=0)
    #: Why it is kept beyond one deployment. None: it was made for one deployment, and is
    #: destroyed when that deployment ends.
    standing_reason: Mapped[str | None] = mapped_column(Text)

    members: Mapped[list[WatchlistMember]] = relationship(
        back_populates="watchlist", cascade="all, delete-orphan", passive_deletes=True
    )


class WatchlistMember(Base):
    __tablename__ = "watchlist_members"

    watchlist_id: Mapped[int] = mapped_column(ForeignKey("watchlists.id", ondelete="CASCADE"), primary_key=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), primary_key=True, index=True)
    added_at: Mapped[datetime] = mapped_column(default=utc_now)
    #: Why this subject is on this list (e.g. "wanted on warrant 1234/26 for robbery"): shown on their alerts.
    reason: Mapped[str | None] = mapped_column(Text)

    watchlist: Mapped[Watchlist] = relationship(back_populates="members")


#: Length of a SHA-256 digest in hex: audit chain hashes and the stored hashes of secrets.
SHA256_HEX_LENGTH = 64

#: Longest credential label in the audit log (``session:<id>``, ``token:<id>``, ...).
CREDENTIAL_LENGTH = 80


class AuditEvent(Base):
    """Who did what, to which records, why and when. Append-only: the database refuses changes.

    ``details`` holds counts, names and ids — never images, templates or similarity vectors.
    Entries form a hash chain: ``seq`` numbers them without gaps, ``prev_hash`` is the previous
    entry's ``entry_hash``, and ``entry_hash`` covers this entry's fields and ``prev_hash``, so
    an edit, a removal from the middle or a reordering shows when the chain is verified
    (:func:`openfrt.records.audit.verify_chain`). Rows are written by
    :func:`openfrt.records.audit.record_event` only.
    """

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True, index=True)
    at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(60), index=True)
    target: Mapped[str | None] = mapped_column(Text)
    case_ref: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH))
    entry_hash: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH))
    #: How the actor proved who they are (``session:12``, ``token:7``, ``password``, ``local``);
    #: None for the system's own entries and for entries written before it was recorded.
    credential: Mapped[str | None] = mapped_column(String(CREDENTIAL_LENGTH))


class AuditChainHead(Base):
    """The audit chain's newest entry, in its single row (``id`` 1).

    Every append updates this row in the appending transaction. The row lock that UPDATE takes
    queues concurrent writers (on SQLite the write lock does the same), so two entries can never
    claim the same predecessor. It also remembers how long the log is: entries removed from
    the end, which leave an intact but shorter chain, show as a head ahead of the log.
    """

    __tablename__ = "audit_chain_head"
    __table_args__ = (CheckConstraint("id = 1", name="audit_chain_head_single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    entry_hash: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH))


class StoreMeta(Base):
    """Small facts about the store itself, e.g. a value encrypted with its key to detect a wrong key."""

    __tablename__ = "store_meta"

    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


# -- live facial recognition: deployments, alerts and their media --------------------------------


class Deployment(Base):
    """One authorised use of live facial recognition at a place, against one watchlist.

    A user plans it (``planned_by``); another user, an authorising officer, authorises it
    (``authorised_by``, ``authorised_at``) before it can start.

    The watchlist is referenced by name, not foreign key: the watchlist is destroyed after use,
    the deployment's record must outlive it. ``threshold`` is None until start when the
    watchlist's is to be used; ``record`` is the published summary, stored at the end and
    refreshed when adjudications change afterwards.
    """

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    purpose: Mapped[str] = mapped_column(Text)
    location: Mapped[str] = mapped_column(Text)
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    planned_start: Mapped[datetime | None] = mapped_column()
    planned_end: Mapped[datetime | None] = mapped_column()
    #: None while planned and not yet authorised; a deployment cannot start without it.
    authorised_by: Mapped[str | None] = mapped_column(String(200))
    authorised_at: Mapped[datetime | None] = mapped_column()
    watchlist: Mapped[str] = mapped_column(String(ID_LENGTH))
    threshold: Mapped[float | None] = mapped_column(Float)
    model_id: Mapped[str | None] = mapped_column(String(100))
    watchlist_size: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[DeploymentStatus] = mapped_column(
        Enum(DeploymentStatus, name="deployment_status", native_enum=False, create_constraint=True, length=16)
    )
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    started_at: Mapped[datetime | None] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column()
    record: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: Why it ended before an officer stopped it or its sources ended (its process lost, its
    #: store failing); None for a deployment that ran its course. Its record says "interrupted".
    end_reason: Mapped[str | None] = mapped_column(Text)
    #: Why the last attempt to start failed (the deployment went back to planned, unpublished).
    start_failure: Mapped[str | None] = mapped_column(Text)
    start_failed_at: Mapped[datetime | None] = mapped_column()

    cameras: Mapped[list[DeploymentCamera]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="DeploymentCamera.name"
    )
    #: The user who planned it, who may not also authorise it; None for deployments planned
    #: before this was recorded.
    planned_by: Mapped[str | None] = mapped_column(String(200))
    #: A second authorising officer's approval of a threshold below the floor: who, when, why,
    #: and the threshold, model and watchlist size it covers (:mod:`openfrt.live.thresholds`).
    threshold_approval: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class DeploymentCamera(Base):
    """A camera of a deployment and its running counts; non-matches are kept only as a count."""

    __tablename__ = "deployment_cameras"

    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    #: Shown and published: a URL's credentials are removed.
    source: Mapped[str] = mapped_column(Text)
    #: The whole source, credentials included, encrypted; only while they are needed (until the end).
    sealed_source: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    faces_scanned: Mapped[int] = mapped_column(BigInteger, default=0)
    frames_dropped: Mapped[int] = mapped_column(BigInteger, default=0)


class DeploymentGap(Base):
    """A stream outage: the record says when a camera was not watching."""

    __tablename__ = "deployment_gaps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    camera: Mapped[str] = mapped_column(String(ID_LENGTH))
    started_at: Mapped[datetime] = mapped_column()
    ended_at: Mapped[datetime] = mapped_column()


class DeploymentLease(Base):
    """The process running a deployment, for as long as it renews this row (a heartbeat).

    A deployment is running somewhere only while its lease has not expired. Every write of the
    running process renews it conditionally on ``owner`` being itself, and recovery takes over a
    lapsed lease conditionally on it being unchanged, so of two processes only one can hold it.
    ``server_id`` names the data directory of the server that runs it (None for ``openfrt live``,
    which does not resume), and ``watchlist_revision`` the watchlist its snapshot was taken of:
    both decide whether a restarted server may resume it.
    """

    __tablename__ = "deployment_leases"

    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    server_id: Mapped[str | None] = mapped_column(String(64))
    watchlist_revision: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[datetime] = mapped_column()
    renewed_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()


class Alert(Base):
    """A watchlist match raised during a deployment, and its adjudication.

    ``subject`` is the subject id as text, not a foreign key: the alert is part of the
    deployment's record and outlives the subject's removal. The row stays after retention
    deletes its media (``media_deleted_at``), so published counts never change by expiry.
    """

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    camera: Mapped[str] = mapped_column(String(ID_LENGTH))
    track_id: Mapped[int] = mapped_column(BigInteger)
    subject: Mapped[str] = mapped_column(String(ID_LENGTH))
    similarity: Mapped[float] = mapped_column(Float)
    candidates: Mapped[list[list[Any]]] = mapped_column(JSON)
    source_time: Mapped[float] = mapped_column(Float)
    wall_time: Mapped[datetime] = mapped_column(index=True)
    status: Mapped[AlertStatus] = mapped_column(
        Enum(AlertStatus, name="alert_status", native_enum=False, create_constraint=True, length=24), index=True
    )
    adjudicated_by: Mapped[str | None] = mapped_column(String(200))
    adjudicated_at: Mapped[datetime | None] = mapped_column()
    outcome: Mapped[AlertOutcome | None] = mapped_column(
        Enum(AlertOutcome, name="alert_outcome", native_enum=False, create_constraint=True, length=24)
    )
    engaged: Mapped[bool] = mapped_column(default=False)
    note: Mapped[str | None] = mapped_column(Text)
    perceived_ethnicity: Mapped[PerceivedEthnicity | None] = mapped_column(
        Enum(PerceivedEthnicity, name="perceived_ethnicity", native_enum=False, create_constraint=True, length=16)
    )
    perceived_sex: Mapped[PerceivedSex | None] = mapped_column(
        Enum(PerceivedSex, name="perceived_sex", native_enum=False, create_constraint=True, length=16)
    )
    held_by: Mapped[str | None] = mapped_column(String(200))
    held_at: Mapped[datetime | None] = mapped_column()
    hold_reason: Mapped[str | None] = mapped_column(Text)
    media_deleted_at: Mapped[datetime | None] = mapped_column()

    media: Mapped[list[AlertMedia]] = relationship(cascade="all, delete-orphan", passive_deletes=True, order_by="AlertMedia.kind")
    verdicts: Mapped[list[AlertVerdict]] = relationship(cascade="all, delete-orphan", passive_deletes=True, order_by="AlertVerdict.id")


class AlertMedia(Base):
    """An alert's image, encrypted; deleted by retention unless the alert is on hold."""

    __tablename__ = "alert_media"

    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[MediaKind] = mapped_column(
        Enum(MediaKind, name="media_kind", native_enum=False, create_constraint=True, length=16), primary_key=True
    )
    #: Deferred: listing alerts asks which images exist, and must not read them all.
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)


class AlertVerdict(Base):
    """One verdict on an alert, oldest first: the adjudication, then each correction with its
    reason. The alert row holds the verdict in force; this is its history, shown on the card."""

    __tablename__ = "alert_verdicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    status: Mapped[AlertStatus] = mapped_column(
        Enum(AlertStatus, name="verdict_status", native_enum=False, create_constraint=True, length=24)
    )
    outcome: Mapped[AlertOutcome] = mapped_column(
        Enum(AlertOutcome, name="verdict_outcome", native_enum=False, create_constraint=True, length=24)
    )
    engaged: Mapped[bool] = mapped_column(default=False)
    note: Mapped[str | None] = mapped_column(Text)
    #: Why an earlier verdict was corrected; None for the first verdict.
    correction_reason: Mapped[str | None] = mapped_column(Text)
    adjudicated_by: Mapped[str] = mapped_column(String(200))
    adjudicated_at: Mapped[datetime] = mapped_column(default=utc_now)


# -- people who use the server: accounts, browser sessions, API tokens ---------------------------


class User(Base):
    """A person who signs in to the server. Never deleted (audit entries name them); disabled instead."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    #: Rank and number as the officer signs (e.g. "PC 1234", "Supt"): shown with the display name.
    rank: Mapped[str | None] = mapped_column(String(60))
    role: Mapped[Role] = mapped_column(Enum(Role, name="user_role", native_enum=False, create_constraint=True, length=24))
    #: An argon2id hash in PHC string format (it carries its own salt and parameters).
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    disabled: Mapped[bool] = mapped_column(default=False)


class UserSession(Base):
    """A signed-in browser. Only the SHA-256 of its token is stored, so a copy of the database
    cannot be used to take over sessions; the CSRF token is not a credential on its own."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    expires_at: Mapped[datetime] = mapped_column()
    last_seen_at: Mapped[datetime] = mapped_column(default=utc_now)


class ApiToken(Base):
    """A long-lived secret for scripts and other systems, acting as its user; stored as SHA-256."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


# -- events out: destinations (webhooks, an MQTT broker), the outbox and its deliveries ---------


class DestinationKind(str, enum.Enum):
    webhook = "webhook"
    mqtt = "mqtt"


class DeliveryStatus(str, enum.Enum):
    """A delivery is retried while ``pending``, and ends ``delivered`` or, after its retry
    window, ``dead`` (dead-lettered: shown to administrators, who may retry it)."""

    pending = "pending"
    delivered = "delivered"
    dead = "dead"


class EventDestination(Base):
    """Where events are sent: a webhook URL, or the MQTT broker (``settings``: host, port, TLS,
    user name, topic prefix). ``sealed_secrets`` holds, encrypted, what must not be shown: the
    webhook's signing secret and whole URL (which may carry a token), or the broker password.
    ``url`` is the URL as shown, without credentials or query string. ``events`` lists the event types sent (empty: all of them).
    ``include_media`` adds an alert's images to ``alert.raised`` (off unless an administrator
    turns it on, audited)."""

    __tablename__ = "event_destinations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    kind: Mapped[DestinationKind] = mapped_column(
        Enum(DestinationKind, name="destination_kind", native_enum=False, create_constraint=True, length=16)
    )
    url: Mapped[str | None] = mapped_column(Text)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    sealed_secrets: Mapped[bytes] = mapped_column(LargeBinary)
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    include_media: Mapped[bool] = mapped_column(default=False)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)


class OutboxEvent(Base):
    """An event written in the same transaction as the change it reports (the transactional
    outbox), so it exists exactly when the change does, whichever process made it."""

    __tablename__ = "outbox_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    type: Mapped[str] = mapped_column(String(40))
    deployment: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    occurred_at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)

    deliveries: Mapped[list[EventDelivery]] = relationship(cascade="all, delete-orphan", passive_deletes=True)


class EventDelivery(Base):
    """One event on its way to one destination, with its retry state. ``delivery_id`` is sent
    with every attempt, so a receiver can drop a repeat."""

    __tablename__ = "event_deliveries"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("outbox_events.id", ondelete="CASCADE"), index=True
    )
    destination_id: Mapped[int] = mapped_column(ForeignKey("event_destinations.id", ondelete="CASCADE"), index=True)
    delivery_id: Mapped[str] = mapped_column(String(36), unique=True)
    status: Mapped[DeliveryStatus] = mapped_column(
        Enum(DeliveryStatus, name="delivery_status", native_enum=False, create_constraint=True, length=16), index=True
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: When this round of attempts began (the event, or an administrator's retry): after the
    #: retry window from here, a failing delivery is dead-lettered.
    retrying_since: Mapped[datetime] = mapped_column(default=utc_now)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    #: Set by the dispatcher that is attempting it, so another process does not send it too.
    claimed_until: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column()
class SignInThrottle(Base):
    """Failed sign-ins counted under one key — an account name or a client address, each as a
    keyed fingerprint, never in the clear (see :mod:`openfrt.records.throttle`)."""

    __tablename__ = "sign_in_throttles"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime | None] = mapped_column()
    #: No attempt under this key is admitted before this time.
    blocked_until: Mapped[datetime | None] = mapped_column()
    #: Set when an account is locked; cleared only by an administrator.
    locked_at: Mapped[datetime | None] = mapped_column()


class FootageSearch(Base):
    """A retrospective search of a footage file (:mod:`openfrt.footage`): who searched which file
    for which case and why, how, and when; its leads until retention deletes them.

    The row stays after retention (``leads_deleted_at``): the audit log refers to it."""

    __tablename__ = "footage_searches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: The file, inside the footage directory, as the searcher named it.
    file: Mapped[str] = mapped_column(Text)
    case_ref: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))
    model_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    threshold: Mapped[float] = mapped_column(Float)
    top: Mapped[int] = mapped_column(Integer)
    status: Mapped[FootageSearchStatus] = mapped_column(
        Enum(FootageSearchStatus, name="footage_search_status", native_enum=False, create_constraint=True, length=16), index=True
    )
    started_at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    finished_at: Mapped[datetime | None] = mapped_column()
    #: Sampling, frames looked at, people searched, speed: what the search did, without faces.
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    held_by: Mapped[str | None] = mapped_column(String(200))
    held_at: Mapped[datetime | None] = mapped_column()
    hold_reason: Mapped[str | None] = mapped_column(Text)
    leads_deleted_at: Mapped[datetime | None] = mapped_column()
    #: ``host:pid`` of the process searching, so that a search whose process died (killed,
    #: crashed, its server stopped) is found and ended as failed instead of "running" for ever.
    runner: Mapped[str | None] = mapped_column(String(200))

    leads: Mapped[list[FootageLead]] = relationship(cascade="all, delete-orphan", passive_deletes=True, order_by="FootageLead.time")


class FootageLead(Base):
    """A person in searched footage with candidates at or above the review threshold; the face
    crop and the frame (others pixelated) are encrypted, as alert images are."""

    __tablename__ = "footage_leads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("footage_searches.id", ondelete="CASCADE"), index=True)
    time: Mapped[float] = mapped_column(Float)
    first_seen: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)
    similarity: Mapped[float] = mapped_column(Float)
    sightings: Mapped[int] = mapped_column(Integer)
    candidates: Mapped[list[list[Any]]] = mapped_column(JSON)
    probe_crop: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    frame: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
