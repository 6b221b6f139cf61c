"""The hash-chained audit log: intact after many and concurrent appends, every kind of tampering
reported (by verify_chain and by `openfrt audit verify`), and a log from before the chain
upgraded into a valid one — on SQLite and PostgreSQL."""

from __future__ import annotations

import getpass
import json
import sqlite3
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from cli_users import as_user
from test_gallery_cli import env, lines, openfrt  # noqa: F401 - the subprocess runner and its environment
from test_records import database_url, home, store  # noqa: F401 - the SQLite/PostgreSQL fixtures

from openfrt.records import (
    AuditAction,
    AuditChainError,
    AuditEvent,
    ChainAnchor,
    ChainReport,
    InvalidRecordError,
    RecordStore,
    Role,
    list_events,
    record_event,
    verify_chain,
)
from openfrt.records import audit as audit_module
from openfrt.records.audit import GENESIS_HASH, entry_hash
from openfrt.records.database import make_engine, upgrade
from openfrt.records.models import UTCDateTime

#: Values whose JSON or time representation could differ between backends or after a round trip.
AWKWARD_DETAILS = {
    "similarity": 0.1 + 0.2, "tiny": 1e-7, "big": 2**53 + 1, "negative": -0.0, "name": "Zoë Ōsaka — 東京 \"quoted\" \\",
    "nested": {"b": [1, 2.5, None, True], "a": {"z": 1, "y": "x"}}, "tuple": (1, 2), "empty": {}, 3: "int key",
}


def append(store: RecordStore, count: int, start: int = 0) -> None:  # noqa: F811
    for number in range(start, start + count):
        with store.transaction() as session:
            record_event(
                session, AuditAction.retrospective_search, actor=f"PC {number % 3}", target=f"subject-{number}",
                case_ref=f"C/{number}" if number % 2 else None, reason="check" if number % 4 else None,
                details={**AWKWARD_DETAILS, "number": number},
            )


@contextmanager
def guards_dropped(store: RecordStore) -> Iterator[None]:  # noqa: F811
    """What an attacker with database access does first: remove the append-only triggers."""
    statements = (
        ["DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events"] if store.engine.dialect.name == "postgresql"
        else ["DROP TRIGGER IF EXISTS audit_events_no_update", "DROP TRIGGER IF EXISTS audit_events_no_delete"]
    )
    with store.engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    yield


def tamper(store: RecordStore, *statements: str) -> None:  # noqa: F811
    with guards_dropped(store), store.engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))


def verify(store: RecordStore | Engine, anchors: Sequence[ChainAnchor] = ()) -> ChainReport:  # noqa: F811
    engine = store if isinstance(store, Engine) else store.engine
    with Session(engine) as session:
        return verify_chain(session, anchors)


# -- an intact chain -------------------------------------------------------------------------


def test_many_events_form_an_intact_chain(store: RecordStore, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setattr(audit_module, "VERIFY_BATCH", 7)  # several pages, and a last page that is full
    append(store, 49)
    report = verify(store)
    assert report.ok and report.problems == [] and report.entries == 49
    with store.transaction() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
    assert [event.seq for event in events] == list(range(1, 50))
    assert events[0].prev_hash == GENESIS_HASH
    assert all(later.prev_hash == earlier.entry_hash for earlier, later in pairwise(events))
    assert report.head_hash == events[-1].entry_hash
    assert all(earlier.at <= later.at for earlier, later in pairwise(events))
    assert verify(store).as_dict() == {
        "entries": 49, "ok": True, "head_hash": events[-1].entry_hash, "problems": [], "anchor": f"49:{events[-1].entry_hash}",
        "published_anchors": 0,
    }


def test_an_entry_hashes_the_same_before_and_after_storage(store: RecordStore) -> None:  # noqa: F811
    with store.transaction() as session:
        written = record_event(session, AuditAction.subject_enrolled, actor="PC 1", target="S1", details=AWKWARD_DETAILS)
    built_hash = written.entry_hash
    with store.transaction() as session:
        stored = session.scalars(select(AuditEvent)).one()
        assert entry_hash({column: getattr(stored, column) for column in audit_module.HASHED_FIELDS}) == built_hash
    assert stored.details["3"] == "int key" and stored.details["tuple"] == [1, 2]  # stored as JSON reads back
    assert stored.at.tzinfo is not None and stored.at.microsecond == written.at.microsecond


def test_the_hash_covers_every_field() -> None:
    entry = {
        "seq": 1, "at": datetime(2026, 1, 1, tzinfo=UTC), "actor": "a", "action": "b", "target": None,
        "case_ref": None, "reason": None, "details": {}, "prev_hash": GENESIS_HASH,
    }
    changed = {"seq": 2, "at": entry["at"] + timedelta(microseconds=1), "actor": "A", "action": "c", "target": "",
               "case_ref": "", "reason": "", "details": {"x": 1}, "prev_hash": "1" * 64}
    assert set(changed) == set(audit_module.HASHED_FIELDS)
    hashes = {entry_hash({**entry, name: value}) for name, value in changed.items()}
    assert len(hashes) == len(changed) and entry_hash(entry) not in hashes
    # the same moment in another zone is the same entry
    assert entry_hash({**entry, "at": entry["at"].astimezone(timezone(timedelta(hours=5)))}) == entry_hash(entry)


def test_concurrent_writers_never_fork_the_chain(store: RecordStore) -> None:  # noqa: F811
    with ThreadPoolExecutor(6) as pool:
        for done in [pool.submit(append, store, 15, number * 100) for number in range(6)]:
            done.result()  # re-raises a writer's error
    report = verify(store)
    assert report.ok, report.problems
    assert report.entries == 90


def test_the_head_only_moves_forward(store: RecordStore) -> None:  # noqa: F811
    append(store, 3)
    for statement in ("UPDATE audit_chain_head SET seq = 1", "UPDATE audit_chain_head SET seq = 9", "DELETE FROM audit_chain_head"):
        with pytest.raises(DBAPIError, match="only moves forward"), store.engine.begin() as connection:
            connection.execute(text(statement))
    with pytest.raises(DBAPIError), store.engine.begin() as connection:
        connection.execute(text(f"INSERT INTO audit_chain_head (id, seq, entry_hash) VALUES (2, 0, '{GENESIS_HASH}')"))
    assert verify(store).ok


# -- tampering -------------------------------------------------------------------------------


def test_the_triggers_still_refuse_changes(store: RecordStore) -> None:  # noqa: F811
    append(store, 2)
    for statement in ("UPDATE audit_events SET reason = 'x'", "DELETE FROM audit_events WHERE seq = 2"):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as connection:
            connection.execute(text(statement))


def test_an_edited_entry_is_reported(store: RecordStore) -> None:  # noqa: F811
    append(store, 10)
    tamper(store, "UPDATE audit_events SET actor = 'someone else' WHERE seq = 4")
    report = verify(store)
    assert not report.ok and report.problems == ["entry seq 4 was edited"]


def test_an_edited_and_rehashed_entry_breaks_the_next_link(store: RecordStore) -> None:  # noqa: F811
    append(store, 10)
    with store.transaction() as session:
        row = session.scalars(select(AuditEvent).where(AuditEvent.seq == 4)).one()
        forged = {**{column: getattr(row, column) for column in audit_module.HASHED_FIELDS}, "reason": "forged"}
    tamper(store, f"UPDATE audit_events SET reason = 'forged', entry_hash = '{entry_hash(forged)}' WHERE seq = 4")
    problems = verify(store).problems
    assert len(problems) == 1 and problems[0].startswith("entry seq 5 does not follow entry seq 4")


def test_a_removed_middle_entry_is_reported(store: RecordStore) -> None:  # noqa: F811
    append(store, 10)
    tamper(store, "DELETE FROM audit_events WHERE seq = 5")
    assert verify(store).problems == ["entry seq 5 is missing (chain jumps 4 -> 6)"]
    tamper(store, "DELETE FROM audit_events WHERE seq IN (1, 7, 8)")
    assert verify(store).problems == [
        "entry seq 1 is missing (log starts at 2)",
        "entry seq 5 is missing (chain jumps 4 -> 6)",
        "entries seq 7-8 are missing (chain jumps 6 -> 9)",
    ]


def test_entries_removed_from_the_end_are_reported(store: RecordStore) -> None:  # noqa: F811
    append(store, 10)
    tamper(store, "DELETE FROM audit_events WHERE seq > 8")
    assert verify(store).problems == ["the last 2 entries were removed (head says seq 10, log ends at 8)"]
    tamper(store, "DELETE FROM audit_events")
    report = verify(store)
    assert report.entries == 0 and report.problems == ["the last 10 entries were removed (head says seq 10, log is empty)"]
    append(store, 1)  # appending afterwards does not hide the gap
    assert verify(store).problems == ["entries seq 1-10 are missing (log starts at 11)"]


def test_a_swapped_order_is_reported(store: RecordStore) -> None:  # noqa: F811
    append(store, 4)
    tamper(store, "UPDATE audit_events SET seq = -seq WHERE seq IN (2, 3)", "UPDATE audit_events SET seq = 5 + seq WHERE seq < 0")
    problems = verify(store).problems
    assert {"entry seq 2 was edited", "entry seq 3 was edited"} <= set(problems)
    assert any(problem.startswith("entry seq 4 does not follow entry seq 3") for problem in problems)


def rewrite_from(store: RecordStore, seq: int, reason: str) -> None:  # noqa: F811
    """What a careful forger with the database does: change entry ``seq``, then re-hash it, every
    later entry and the head, so that the chain on its own is consistent again."""
    with store.transaction() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.seq >= seq).order_by(AuditEvent.seq)).all()
        previous = session.scalar(select(AuditEvent.entry_hash).where(AuditEvent.seq == seq - 1)) or GENESIS_HASH
        forged = []
        for row in rows:
            fields = {**{column: getattr(row, column) for column in audit_module.HASHED_FIELDS}, "prev_hash": previous}
            if row.seq == seq:
                fields["reason"] = reason
            previous = entry_hash(fields)
            forged.append({"seq": row.seq, "reason": fields["reason"], "prev": fields["prev_hash"], "digest": previous})
    with guards_dropped(store), store.engine.begin() as connection:
        for row in forged:
            connection.execute(text("UPDATE audit_events SET reason = :reason, prev_hash = :prev, entry_hash = :digest WHERE seq = :seq"), row)
        connection.execute(text("UPDATE audit_chain_head SET entry_hash = :digest"), {"digest": previous})


def test_a_log_rewritten_and_rehashed_to_its_head_is_caught_by_an_anchor_kept_elsewhere(store: RecordStore) -> None:  # noqa: F811
    append(store, 6)
    earlier = verify(store).anchor
    assert earlier is not None and earlier.seq == 6
    append(store, 4, start=6)
    assert verify(store, [earlier]).ok  # a log that only grew keeps its anchors

    rewrite_from(store, 4, "forged")
    assert verify(store).ok  # the chain alone cannot tell...
    report = verify(store, [earlier])  # ...but the anchor can
    assert not report.ok and report.anchor is None
    assert report.problems == [f"entry seq 6 is not the entry anchored as {earlier}: the log was rewritten from there on"]

    later = ChainAnchor(12, "a" * 64)  # from a log that was longer than this one is now
    assert verify(store, [later]).problems == [f"entry seq 12, anchored as {later}, is gone: the log was cut back or rewritten"]
    with pytest.raises(InvalidRecordError, match="SEQ:HASH"):
        ChainAnchor.parse("6:not-a-hash")


def test_a_missing_head_is_reported_and_stops_appends(store: RecordStore) -> None:  # noqa: F811
    append(store, 2)
    head_guards = (
        ["DROP TRIGGER audit_chain_head_forward ON audit_chain_head"] if store.engine.dialect.name == "postgresql"
        else ["DROP TRIGGER audit_chain_head_no_delete"]
    )
    tamper(store, *head_guards, "DELETE FROM audit_chain_head")
    report = verify(store)
    assert report.head_hash is None and report.problems == [
        "the audit chain head is missing, so entries removed from the end cannot be detected"
    ]
    with pytest.raises(AuditChainError, match="head is missing"):
        append(store, 1)


def test_the_audit_verify_command_reports_damage(env: dict[str, str]) -> None:  # noqa: F811
    with RecordStore.open(env["OPENFRT_HOME"]) as written:
        append(written, 3)
    intact = openfrt(env, "audit", "verify")
    assert intact.returncode == 0, intact.stderr
    summary, anchor_line = intact.stdout.splitlines()[:2]
    assert summary.startswith("audit log intact: 3 entries, head ") and len(summary.split("head ")[1]) == 64
    anchor = anchor_line.split()[1].rstrip(":")
    assert anchor == f"3:{summary.split('head ')[1]}"
    assert openfrt(env, "audit", "verify", "--anchor", anchor).returncode == 0
    refused = openfrt(env, "audit", "verify", "--anchor", "3:abc")
    assert refused.returncode == 2 and "SEQ:HASH" in refused.stderr

    database = Path(env["OPENFRT_HOME"]) / "openfrt.db"
    with sqlite3.connect(database) as db:
        db.execute("DROP TRIGGER audit_events_no_update")
        db.execute("DROP TRIGGER audit_events_no_delete")
        db.execute("UPDATE audit_events SET target = 'mallory' WHERE seq = 2")
        db.execute("DELETE FROM audit_events WHERE seq = 3")
    damaged = openfrt(env, "audit", "verify")
    assert damaged.returncode == 1
    assert "entry seq 2 was edited" in damaged.stderr and "entry seq 3 is missing (chain jumps 2 -> 4)" in damaged.stderr
    as_json = openfrt(env, "audit", "verify", "--json")
    assert as_json.returncode == 1
    report = lines(as_json)[0]
    assert report["ok"] is False and "entry seq 2 was edited" in report["problems"]  # type: ignore[operator]

    listed = openfrt(as_user(env, Role.auditor), "audit", "list", "--action", "audit.verify", "--json")
    assert listed.returncode == 0, listed.stderr
    verifications = lines(listed)
    assert [entry["details"]["ok"] for entry in verifications] == [False, False, True, True]  # type: ignore[index]
    assert verifications[2]["details"]["anchors"] == [anchor]  # newest first  # type: ignore[index]
    # without a token, verification is local administration (e.g. a cron job), audited as such
    assert all(entry["actor"] == f"local:{getpass.getuser()}" and entry["credential"] == "local" for entry in verifications)


# -- reading ---------------------------------------------------------------------------------


def test_list_events_filters_newest_first_and_pages(store: RecordStore) -> None:  # noqa: F811
    append(store, 12)
    with store.transaction() as session:
        newest = list_events(session, limit=5)
        assert [entry.seq for entry in newest] == [12, 11, 10, 9, 8]
        assert [entry.seq for entry in list_events(session, before_seq=8, limit=3)] == [7, 6, 5]
        assert {entry.actor for entry in list_events(session, actor="PC 1")} == {"PC 1"}
        assert len(list_events(session, actor="PC 1")) == 4
        assert [entry.seq for entry in list_events(session, target="subject-3")] == [4]
        assert list_events(session, action=AuditAction.subject_enrolled) == []
        assert len(list_events(session, action="search.retrospective", limit=1000)) == 12
        middle = newest[2].at
        assert all(entry.at >= middle for entry in list_events(session, since=middle))
        assert all(entry.at < middle for entry in list_events(session, until=middle))
        assert len(list_events(session, since=middle)) + len(list_events(session, until=middle)) == 12
        entry = list_events(session, limit=1)[0].as_dict()
        assert entry["seq"] == 12 and json.dumps(entry)  # JSON-ready
        with pytest.raises(InvalidRecordError):
            list_events(session, limit=0)


# -- upgrading a log from before the chain ---------------------------------------------------


def test_upgrade_from_0002_backfills_a_valid_chain_and_keeps_everything(database_url: str) -> None:  # noqa: F811
    engine = make_engine(database_url)
    upgrade(engine, "0002")
    seed_0002(engine)

    upgrade(engine)

    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id, seq, actor FROM audit_events ORDER BY id")).all()
        assert [(row.seq, row.actor) for row in rows] == [(number + 1, f"PC {number}") for number in range(25)]
        deployment = connection.execute(text("SELECT authorised_by, authorised_at, created_at FROM deployments")).one()
        assert deployment.authorised_by == "Supt A" and deployment.authorised_at is not None
        assert connection.execute(text("SELECT count(*) FROM deployment_cameras")).scalar() == 2  # no cascade on rebuild
        assert connection.execute(text("SELECT count(*) FROM alerts")).scalar() == 1
    report = verify(engine)
    assert report.ok and report.entries == 25, report.problems
    with Session(engine) as session, session.begin():
        record_event(session, AuditAction.login, actor="PC 1")
    assert verify(engine).entries == 26 and verify(engine).ok
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:  # the triggers came back
        connection.execute(text("DELETE FROM audit_events"))
    engine.dispose()


def seed_0002(engine: Engine) -> None:
    """Audit entries, a deployment with cameras and an alert, written as 0.1 (schema 0002) did."""
    when = sa.column("at", UTCDateTime())
    events = sa.table("audit_events", sa.column("actor"), sa.column("action"), sa.column("target"), when,
                      sa.column("case_ref"), sa.column("reason"), sa.column("details", sa.JSON()))
    start = datetime(2026, 3, 1, 12, tzinfo=UTC)
    created = sa.column("created_at", UTCDateTime())
    deployments = sa.table("deployments", sa.column("id"), sa.column("name"), sa.column("purpose"), sa.column("location"),
                           sa.column("authorised_by"), sa.column("watchlist"), sa.column("status"), created)
    alert_time = sa.column("wall_time", UTCDateTime())
    alerts = sa.table("alerts", sa.column("deployment_id"), sa.column("camera"), sa.column("track_id"), sa.column("subject"),
                      sa.column("similarity"), sa.column("candidates", sa.JSON()), sa.column("source_time"), alert_time,
                      sa.column("status"), sa.column("engaged"))
    with engine.begin() as connection:
        connection.execute(events.insert(), [
            {"actor": f"PC {number}", "action": "subject.enrol", "target": f"S{number}", "at": start + timedelta(seconds=number, microseconds=number),
             "case_ref": None, "reason": "r" if number % 2 else None, "details": {**AWKWARD_DETAILS, "n": number}}
            for number in range(25)
        ])
        connection.execute(deployments.insert(), [{"id": 1, "name": "dep", "purpose": "p", "location": "l", "authorised_by": "Supt A",
                                                   "watchlist": "op", "status": "ended", "created_at": start}])
        connection.execute(text("INSERT INTO deployment_cameras VALUES (1, 'north', 'rtsp://x', 5, 0), (1, 'south', '/dev/video0', 3, 1)"))
        connection.execute(alerts.insert(), [{"deployment_id": 1, "camera": "north", "track_id": 1, "subject": "S1", "similarity": 0.95,
                                              "candidates": [["S1", 0.95]], "source_time": 1.5, "wall_time": start,
                                              "status": "pending", "engaged": False}])
