"""The audit log: who did what to which records, why and when — append-only and hash-chained.

Only :func:`record_event` writes ``audit_events``, and it only inserts; the database itself
rejects updates and deletes (triggers from the migrations). Callers pass ids, names and
counts — never images, templates, similarity vectors, passwords or tokens.

The triggers stop the application and careless hands; they do not stop someone who can drop
them. For that each entry carries a sequence number and a SHA-256 hash over its own fields and
its predecessor's hash, and the one-row ``audit_chain_head`` table records the newest entry, so
:func:`verify_chain` can show an edited entry, a removed one (from the middle or the end) or a
reordering. Someone able to rewrite every later entry and the head can still forge a
consistent chain; comparing a published head hash with a later one exposes that.
"""

from __future__ import annotations

import enum
import getpass
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session

from openfrt.records.errors import AuditChainError, InvalidRecordError
from openfrt.records.models import AuditChainHead, AuditEvent, utc_now

#: ``prev_hash`` of the first entry, and the head's hash while the log is empty.
GENESIS_HASH = "0" * 64

#: The head is the single row with this id (a CHECK constraint allows no other).
HEAD_ID = 1

#: The columns an entry's hash covers: everything but its row id and the hash itself.
HASHED_FIELDS = ("seq", "at", "actor", "action", "target", "case_ref", "reason", "details", "prev_hash")

#: Rows read per query by :func:`verify_chain`, so memory stays flat however long the log is.
VERIFY_BATCH = 1000

#: Problems listed by :func:`verify_chain` before it only counts them: a log rewritten
#: wholesale would otherwise produce a report as long as the log.
MAX_LISTED_PROBLEMS = 1000


class AuditAction(str, enum.Enum):
    subject_enrolled = "subject.enrol"
    subject_removed = "subject.remove"
    reference_image_viewed = "subject.image_view"
    reference_image_removed = "subject.image_remove"
    watchlist_created = "watchlist.create"
    watchlist_members_added = "watchlist.add"
    watchlist_members_removed = "watchlist.remove"
    watchlist_deleted = "watchlist.delete"
    retrospective_search = "search.retrospective"
    deployment_created = "deployment.create"
    deployment_authorised = "deployment.authorise"
    deployment_started = "deployment.start"
    deployment_ended = "deployment.end"
    snapshot_destroyed = "deployment.snapshot_destroy"
    alert_raised = "alert.raise"
    alert_adjudicated = "alert.adjudicate"
    alert_media_viewed = "alert.media_view"
    alert_held = "alert.hold"
    alert_released = "alert.release"
    alert_media_deleted = "retention.delete"
    records_exported = "records.export"
    user_created = "user.create"
    user_disabled = "user.disable"
    user_password_changed = "user.password"
    login = "user.login"
    login_failed = "user.login_failed"
    token_created = "token.create"
    token_revoked = "token.revoke"
    audit_viewed = "audit.view"
    audit_verified = "audit.verify"
    user_updated = "user.update"
    user_enabled = "user.enable"
    user_role_changed = "user.role"
    audit_exported = "audit.export"
    deployment_updated = "deployment.update"
    deployment_cancelled = "deployment.cancel"
    deployment_stop_requested = "deployment.stop"
    deployment_start_failed = "deployment.start_failed"


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
    """Append one event in the caller's transaction, so it is kept exactly when the change is.

    The head row is updated first: that UPDATE waits for any other transaction appending to
    the log (a row lock on PostgreSQL, the write lock on SQLite), so this entry's predecessor
    is final by the time it is read. ``at`` is taken after the wait, so times follow ``seq``.
    """
    head = session.execute(
        update(AuditChainHead)
        .where(AuditChainHead.id == HEAD_ID)
        .values(seq=AuditChainHead.seq + 1)
        .returning(AuditChainHead.seq, AuditChainHead.entry_hash)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if head is None:
        raise AuditChainError("the audit chain head is missing, so no event can be appended; run `openfrt audit verify`")
    seq, prev_hash = head
    fields = {
        "seq": seq, "at": utc_now(), "actor": actor, "action": action.value, "target": target, "case_ref": case_ref,
        "reason": reason, "details": _as_stored(details or {}), "prev_hash": prev_hash,
    }
    event = AuditEvent(**fields, entry_hash=entry_hash(fields))
    session.add(event)
    session.execute(
        update(AuditChainHead)
        .where(AuditChainHead.id == HEAD_ID)
        .values(entry_hash=event.entry_hash)
        .execution_options(synchronize_session=False)
    )
    return event


def hold_audit_chain(session: Session) -> None:
    """Wait for, and hold until commit, the right to append to the audit log — *before* rows
    whose ids readers page by (alerts) are inserted. Such rows then get their ids in commit
    order, so a reader who has seen id N can never later miss an id below N committed by a
    slower transaction (which happened on PostgreSQL with two deployments raising alerts).

    It is a write that changes nothing, not ``SELECT … FOR UPDATE``: on SQLite a read would
    leave the transaction holding a snapshot that its first real write may find stale, which
    fails at once with "database is locked" instead of waiting; a write takes SQLite's single
    write lock (waiting up to the busy timeout) and PostgreSQL's row lock alike."""
    session.execute(
        update(AuditChainHead)
        .where(AuditChainHead.id == HEAD_ID)
        .values(seq=AuditChainHead.seq)
        .execution_options(synchronize_session=False)
    )


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The SHA-256 (hex) of an entry's canonical JSON: its fields and its predecessor's hash.

    ``entry`` maps the column names to values (other keys are ignored). Canonical means sorted
    keys, fixed separators, ASCII only and ``at`` in UTC with microseconds, so an entry hashes
    the same whether it was just built or read back from SQLite or PostgreSQL. This format is
    permanent: changing it would invalidate every existing log.
    """
    canonical = {name: entry[name] for name in HASHED_FIELDS}
    canonical["at"] = entry["at"].astimezone(UTC).isoformat(timespec="microseconds")
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _as_stored(details: dict[str, Any]) -> dict[str, Any]:
    """``details`` as it will read back from the JSON column (tuples become lists, keys become
    strings), so the hash is computed over exactly what is stored. NaN and infinity are
    refused: PostgreSQL's JSON rejects them, and their JSON spelling is not standard."""
    return json.loads(json.dumps(details, allow_nan=False))


# -- verification ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainAnchor:
    """An entry's place and hash, ``SEQ:HASH``, kept outside the database (printed by a
    verification, e-mailed, published). Someone with the database can rewrite and re-hash every
    entry from some point on, the head included, and the chain alone would look intact; an
    anchor taken before proves it, because its entry no longer hashes the same."""

    seq: int
    entry_hash: str

    @classmethod
    def parse(cls, text: str) -> ChainAnchor:
        seq, _, digest = text.strip().partition(":")
        if not seq.isdigit() or int(seq) < 1 or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise InvalidRecordError(f"anchor {text!r} is not SEQ:HASH (an entry's number and its 64-hex-digit SHA-256, as a verification prints)")
        return cls(int(seq), digest)

    def __str__(self) -> str:
        return f"{self.seq}:{self.entry_hash}"


@dataclass(frozen=True)
class ChainReport:
    """The result of :func:`verify_chain`: ``ok`` exactly when ``problems`` is empty.

    ``anchor`` is the last entry's :class:`ChainAnchor` (None for an empty log or a damaged
    one): keep it elsewhere and give it to a later verification to prove the log up to it was
    not rewritten in between. ``head_hash`` is the head row's hash (None if the row is gone).
    """

    entries: int
    ok: bool
    head_hash: str | None
    problems: list[str] = field(default_factory=list)
    anchor: ChainAnchor | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"entries": self.entries, "ok": self.ok, "head_hash": self.head_hash, "problems": list(self.problems),
                "anchor": str(self.anchor) if self.anchor else None}


def verify_chain(session: Session, anchors: Sequence[ChainAnchor] = ()) -> ChainReport:
    """Check every entry's hash, that each links to the one before, that ``seq`` has no gaps,
    that the log ends where the head says, and that each of ``anchors`` (taken earlier, kept
    elsewhere) is still in it. Reads the log in seq order, in batches."""
    problems = _Problems()
    entries = 0
    last_seq, last_hash = 0, GENESIS_HASH
    anchored = {anchor.seq: anchor for anchor in anchors}
    for row in _rows_in_seq_order(session):
        entries += 1
        anchor = anchored.pop(row.seq, None)
        if anchor is not None and anchor.entry_hash != row.entry_hash:
            problems.add(f"entry seq {row.seq} is not the entry anchored as {anchor}: the log was rewritten from there on")
        if entry_hash(row._mapping) != row.entry_hash:
            problems.add(f"entry seq {row.seq} was edited")
        if row.seq <= last_seq:
            problems.add(f"entry seq {row.seq} appears more than once")
            continue
        if row.seq > last_seq + 1:
            problems.add(_gap(last_seq, row.seq))
        elif row.prev_hash != last_hash:
            before = f"entry seq {last_seq}" if last_seq else "the start of the log"
            problems.add(f"entry seq {row.seq} does not follow {before}: an entry was edited and re-hashed, or replaced")
        last_seq, last_hash = row.seq, row.entry_hash

    head = session.get(AuditChainHead, HEAD_ID)
    if head is None:
        problems.add("the audit chain head is missing, so entries removed from the end cannot be detected")
    else:
        ends = f"log ends at {last_seq}" if entries else "log is empty"
        if head.seq > last_seq:
            removed = head.seq - last_seq
            what = "entry was" if removed == 1 else f"{removed} entries were"
            problems.add(f"the last {what} removed (head says seq {head.seq}, {ends})")
        elif head.seq < last_seq:
            problems.add(f"entries after seq {head.seq} are not in the chain head (head says seq {head.seq}, {ends})")
        elif head.entry_hash != last_hash:
            problems.add(f"the chain head's hash does not match entry seq {last_seq}")
    for anchor in anchored.values():
        problems.add(f"entry seq {anchor.seq}, anchored as {anchor}, is gone: the log was cut back or rewritten")
    listed = problems.listed()
    return ChainReport(
        entries=entries, ok=not listed, head_hash=head.entry_hash if head else None, problems=listed,
        anchor=ChainAnchor(last_seq, last_hash) if entries and not listed else None,
    )


def _rows_in_seq_order(session: Session) -> Iterator[Row[Any]]:
    """Every entry, oldest first, fetched by keyset pages (no long-lived cursor, flat memory)."""
    columns = (
        AuditEvent.seq, AuditEvent.at, AuditEvent.actor, AuditEvent.action, AuditEvent.target,
        AuditEvent.case_ref, AuditEvent.reason, AuditEvent.details, AuditEvent.prev_hash, AuditEvent.entry_hash,
    )
    after: int | None = None
    while True:
        query = select(*columns).order_by(AuditEvent.seq).limit(VERIFY_BATCH)
        if after is not None:
            query = query.where(AuditEvent.seq > after)
        rows = session.execute(query).all()
        yield from rows
        if len(rows) < VERIFY_BATCH:
            return
        after = rows[-1].seq


def _gap(last_seq: int, seq: int) -> str:
    first, last = last_seq + 1, seq - 1
    if last_seq == 0:
        where = f"log starts at {seq}"
    else:
        where = f"chain jumps {last_seq} -> {seq}"
    if first == last:
        return f"entry seq {first} is missing ({where})"
    return f"entries seq {first}-{last} are missing ({where})"


class _Problems:
    """Problems in the order found, listing at most :data:`MAX_LISTED_PROBLEMS`."""

    def __init__(self) -> None:
        self._listed: list[str] = []
        self._unlisted = 0

    def add(self, problem: str) -> None:
        if len(self._listed) < MAX_LISTED_PROBLEMS:
            self._listed.append(problem)
        else:
            self._unlisted += 1

    def listed(self) -> list[str]:
        if self._unlisted:
            return [*self._listed, f"... and {self._unlisted} more problems"]
        return list(self._listed)


# -- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditEntry:
    """One audit entry as read back for display (the API's audit page, ``openfrt audit list``)."""

    seq: int
    at: datetime
    actor: str
    action: str
    target: str | None
    case_ref: str | None
    reason: str | None
    details: dict[str, Any]
    entry_hash: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "at": self.at.isoformat(), "actor": self.actor, "action": self.action,
            "target": self.target, "case_ref": self.case_ref, "reason": self.reason, "details": self.details,
            "entry_hash": self.entry_hash,
        }


def list_events(
    session: Session,
    *,
    actor: str | None = None,
    action: AuditAction | str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_seq: int | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Entries matching every filter given, newest first, at most ``limit``.

    ``since`` is inclusive and ``until`` exclusive; for the next page pass the last entry's
    ``seq`` as ``before_seq`` (stable while new entries arrive, unlike an offset).
    """
    if limit < 1:
        raise InvalidRecordError(f"limit must be at least 1, not {limit}")
    query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if action is not None:
        query = query.where(AuditEvent.action == (action.value if isinstance(action, AuditAction) else action))
    if target is not None:
        query = query.where(AuditEvent.target == target)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    if before_seq is not None:
        query = query.where(AuditEvent.seq < before_seq)
    return [
        AuditEntry(row.seq, row.at, row.actor, row.action, row.target, row.case_ref, row.reason, row.details, row.entry_hash)
        for row in session.scalars(query)
    ]
