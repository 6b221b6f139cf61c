"""The records schema: subjects, reference images, templates, watchlists and the audit log.

Biometric columns (``image``, ``vector``) hold ciphertext only. Everything derived from a
subject hangs off it with ``ON DELETE CASCADE`` so deleting a subject cannot leave orphans;
watchlist membership cascades from both sides. The Alembic migrations under ``migrations/``
create exactly this schema (a test checks they agree).
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Enum, Float, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

#: Longest subject id or watchlist name; ids come from other systems (custody numbers, ...).
ID_LENGTH = 128


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Category(str, enum.Enum):
    """Why a subject is in the reference database; watchlist criteria are usually built on it."""

    wanted = "wanted"
    suspect = "suspect"
    missing = "missing"
    at_risk = "at_risk"
    victim = "victim"
    witness = "witness"
    other = "other"


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

    members: Mapped[list[WatchlistMember]] = relationship(
        back_populates="watchlist", cascade="all, delete-orphan", passive_deletes=True
    )


class WatchlistMember(Base):
    __tablename__ = "watchlist_members"

    watchlist_id: Mapped[int] = mapped_column(ForeignKey("watchlists.id", ondelete="CASCADE"), primary_key=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), primary_key=True, index=True)
    added_at: Mapped[datetime] = mapped_column(default=utc_now)

    watchlist: Mapped[Watchlist] = relationship(back_populates="members")


class AuditEvent(Base):
    """Who did what, to which records, why and when. Append-only: the database refuses changes.

    ``details`` holds counts, names and ids — never images, templates or similarity vectors.
    """

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(60), index=True)
    target: Mapped[str | None] = mapped_column(Text)
    case_ref: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class StoreMeta(Base):
    """Small facts about the store itself, e.g. a value encrypted with its key to detect a wrong key."""

    __tablename__ = "store_meta"

    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)
