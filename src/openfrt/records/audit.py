"""The audit log: who did what to which records, why and when — append-only and hash-chained.

Only :func:`record_event` writes ``audit_events``, and it only inserts; the database itself
rejects updates and deletes (triggers from the migrations). Callers pass ids, names and
counts — never images, templates, similarity vectors, passwords or tokens.

The triggers stop the application and careless hands; they do not stop someone who can drop
them. For that each entry carries a sequence number and a SHA-256 hash over its own fields and
its predecessor's hash, and the one-row ``audit_chain_head`` table records the newest entry, so
:func:`verify_chain` can show an edited entry, a removed one (from the middle or the end) or a
reordering. Someone able to rewrite every later entry and the head can still forge a
consistent chain, or cut the newest entries off and point the head back; anchors kept outside
the database expose that — those given to a verification, and those published with every
deployment record (:func:`published_anchors`), which every verification checks.

Each entry also names the credential its actor proved who they are with (``session:12``,
``token:7``, ``password``, ``local``), so an action is traced to the login or token that did
it, not only to a name (see :class:`Actor`).
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
from openfrt.records.models import AuditChainHead, AuditEvent, Deployment, utc_now

#: ``prev_hash`` of the first entry, and the head's hash while the log is empty.
GENESIS_HASH = "0" * 64

#: The head is the single row with this id (a CHECK constraint allows no other).
HEAD_ID = 1

#: The columns an entry's hash covers: everything but its row id and the hash itself.
HASHED_FIELDS = ("seq", "at", "actor", "action", "target", "case_ref", "reason", "details", "prev_hash")

#: Columns added later, covered by the hash whenever they hold a value: entries written before
#: they existed hold None and hash exactly as they did, so an upgraded log still verifies.
OPTIONAL_HASHED_FIELDS = ("credential",)

#: The credential of local administration: someone with the data directory, not a signed-in user.
LOCAL_CREDENTIAL = "local"

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
    event_destination_added = "events.destination_add"
    event_destination_changed = "events.destination_change"
    event_destination_removed = "events.destination_remove"
    event_deliveries_retried = "events.retry"
    event_media_sent = "events.media_send"
    user_locked = "user.lock"
    user_unlocked = "user.unlock"
    model_checked = "model.check"
    model_migration_started = "model.migrate_start"
    subject_reembedded = "subject.reembed"
    model_migration_completed = "model.migrate_complete"
    deployment_resumed = "deployment.resume"
    backup_created = "backup.create"
    backup_restored = "backup.restore"
    key_rotation_started = "keys.rotate_start"
    key_rotated = "keys.rotate"
    user_updated = "user.update"
    user_enabled = "user.enable"
    user_role_changed = "user.role"
    audit_exported = "audit.export"
    deployment_updated = "deployment.update"
    deployment_cancelled = "deployment.cancel"
    deployment_stop_requested = "deployment.stop"
    deployment_start_failed = "deployment.start_failed"
    threshold_approved = "deployment.threshold_approve"


class Actor(str):
    """Who acts, as the audit log's ``actor`` column shows them (a user name, ``local:<os user>``,
    ``deployment:<name>``), carrying the credential they proved it with into :func:`record_event`.

    It is a ``str`` so that every service keeps taking ``actor: str`` and storing it where it
    did (verdicts, holds, authorities), while the credential travels with the name — even into
    the thread that later ends a deployment — without each call in between handing it on.
    """

    credential: str | None

    def __new__(cls, name: str, credential: str | None = None) -> Actor:
        actor = super().__new__(cls, name)
        actor.credential = credential
        return actor


def local_actor() -> Actor:
    """Local administration (the first administrator, a check from cron): whoever runs openfrt
    with the data directory, audited as ``local:<os user>``, never as one of the users."""
    try:
        account = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        account = f"uid-{os.getuid()}"
    return Actor(f"local:{account}", LOCAL_CREDENTIAL)


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
    An :class:`Actor` adds the credential it acted by; a plain name records none (the system).

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
        "seq": seq, "at": utc_now(), "actor": str(actor), "action": action.value, "target": target, "case_ref": case_ref,
        "reason": reason, "details": _as_stored(details or {}), "prev_hash": prev_hash,
        "credential": getattr(actor, "credential", None),
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
    permanent: changing it would invalidate every existing log; :data:`OPTIONAL_HASHED_FIELDS`
    only extend it, for entries that hold them.
    """
    canonical = {name: entry[name] for name in HASHED_FIELDS}
    canonical.update({name: entry[name] for name in OPTIONAL_HASHED_FIELDS if entry.get(name) is not None})
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
    #: Where it was published (e.g. "deployment X's record"), for the problems it reveals.
    published: str | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, text: str, published: str | None = None) -> ChainAnchor:
        seq, _, digest = text.strip().partition(":")
        if not seq.isdigit() or int(seq) < 1 or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise InvalidRecordError(f"anchor {text!r} is not SEQ:HASH (an entry's number and its 64-hex-digit SHA-256, as a verification prints)")
        return cls(int(seq), digest, published)

    @classmethod
    def of(cls, event: AuditEvent) -> ChainAnchor:
        """The anchor of an entry just appended (e.g. the last of a deployment's ending)."""
        return cls(event.seq, event.entry_hash)

    def __str__(self) -> str:
        return f"{self.seq}:{self.entry_hash}"

    def described(self) -> str:
        return f"{self} (published with {self.published})" if self.published else str(self)


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
    #: How many anchors published with deployment records were checked.
    published_anchors: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"entries": self.entries, "ok": self.ok, "head_hash": self.head_hash, "problems": list(self.problems),
                "anchor": str(self.anchor) if self.anchor else None, "published_anchors": self.published_anchors}


def published_anchors(session: Session, problems: list[str]) -> list[ChainAnchor]:
    """The anchors published with deployment records (each taken as the deployment ended), to
    be checked by every verification; a published anchor that no longer reads as one is added
    to ``problems`` (its record was edited)."""
    anchors = []
    rows = session.execute(select(Deployment.name, Deployment.record).where(Deployment.record.is_not(None)).order_by(Deployment.id))
    for name, record in rows:
        text = (record or {}).get("audit_anchor")
        if text is None:
            continue  # ended before anchors were published
        try:
            anchors.append(ChainAnchor.parse(str(text), f"deployment {name}'s record"))
        except InvalidRecordError:
            problems.append(f"the audit anchor published with deployment {name}'s record, {text!r}, is not SEQ:HASH: the record was edited")
    return anchors


def verify_chain(session: Session, anchors: Sequence[ChainAnchor] = ()) -> ChainReport:
    """Check every entry's hash, that each links to the one before, that ``seq`` has no gaps,
    that the log ends where the head says, and that each of ``anchors`` (taken earlier, kept
    elsewhere) and of the anchors published with deployment records is still in it. Reads the
    log in seq order, in batches."""
    problems = _Problems()
    unreadable: list[str] = []
    published = published_anchors(session, unreadable)
    for problem in unreadable:
        problems.add(problem)
    entries = 0
    last_seq, last_hash = 0, GENESIS_HASH
    anchored: dict[int, list[ChainAnchor]] = {}
    for given in (*anchors, *published):
        anchored.setdefault(given.seq, []).append(given)
    for row in _rows_in_seq_order(session):
        entries += 1
        for anchor in anchored.pop(row.seq, []):
            if anchor.entry_hash != row.entry_hash:
                problems.add(f"entry seq {row.seq} is not the entry anchored as {anchor.described()}: the log was rewritten from there on")
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
    for missing in anchored.values():
        for anchor in missing:
            problems.add(f"entry seq {anchor.seq}, anchored as {anchor.described()}, is gone: the log was cut back or rewritten")
    listed = problems.listed()
    return ChainReport(
        entries=entries, ok=not listed, head_hash=head.entry_hash if head else None, problems=listed,
        anchor=ChainAnchor(last_seq, last_hash) if entries and not listed else None, published_anchors=len(published),
    )


def _rows_in_seq_order(session: Session) -> Iterator[Row[Any]]:
    """Every entry, oldest first, fetched by keyset pages (no long-lived cursor, flat memory)."""
    columns = (
        AuditEvent.seq, AuditEvent.at, AuditEvent.actor, AuditEvent.action, AuditEvent.target,
        AuditEvent.case_ref, AuditEvent.reason, AuditEvent.details, AuditEvent.prev_hash, AuditEvent.entry_hash,
        AuditEvent.credential,
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
    credential: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "at": self.at.isoformat(), "actor": self.actor, "action": self.action,
            "target": self.target, "case_ref": self.case_ref, "reason": self.reason, "details": self.details,
            "entry_hash": self.entry_hash, "credential": self.credential,
        }


def list_events(
    session: Session,
    *,
    actor: str | None = None,
    action: AuditAction | str | None = None,
    target: str | None = None,
    credential: str | None = None,
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
    if credential is not None:
        query = query.where(AuditEvent.credential == credential)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    if before_seq is not None:
        query = query.where(AuditEvent.seq < before_seq)
    return [
        AuditEntry(row.seq, row.at, row.actor, row.action, row.target, row.case_ref, row.reason, row.details, row.entry_hash,
                   row.credential)
        for row in session.scalars(query)
    ]
