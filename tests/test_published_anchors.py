"""The audit anchor (SEQ:HASH) is published with every deployment record, and every
verification checks the published anchors: cutting the newest entries off and pointing the
chain's head back no longer passes (security finding 12)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from sqlalchemy import select
from test_api import login, serving, with_users
from test_audit_chain import append, tamper, verify
from test_deployments import make_gallery, plan
from test_gallery_cli import env, lines, openfrt  # noqa: F401 - the subprocess runner and its environment
from test_records import database_url, home, store  # noqa: F401 - the SQLite/PostgreSQL fixtures

from openfrt.live.deployments import DeploymentService
from openfrt.records import AuditEvent, RecordStore, Role
from openfrt.records.models import Deployment
from openfrt.vision import FaceEngine


def ended_deployment(store: RecordStore, engine: FaceEngine, name: str = "dep") -> str:  # noqa: F811
    """Run and end deployment ``name``; its published record's audit anchor."""
    service = DeploymentService(store, make_gallery(store, engine))
    plan(service, name)
    service.start(name, "PC 1").end("Insp B")
    anchor = service.record(name).audit_anchor
    assert anchor is not None
    return anchor


def cut_back(store: RecordStore, to_seq: int) -> None:  # noqa: F811
    """What someone with the database does to hide the newest entries: delete them and point
    the head back at the last one kept, so that the chain on its own is intact."""
    head_guard = ("DROP TRIGGER IF EXISTS audit_chain_head_forward ON audit_chain_head" if store.engine.dialect.name == "postgresql"
                  else "DROP TRIGGER IF EXISTS audit_chain_head_forward")
    with store.transaction() as session:
        kept = session.scalars(select(AuditEvent).where(AuditEvent.seq == to_seq)).one()
    tamper(store, head_guard, f"DELETE FROM audit_events WHERE seq > {to_seq}",
           f"UPDATE audit_chain_head SET seq = {to_seq}, entry_hash = '{kept.entry_hash}'")


def test_every_deployment_record_publishes_the_anchor_of_its_ending(store: RecordStore, hog_engine: FaceEngine) -> None:  # noqa: F811
    anchor = ended_deployment(store, hog_engine)
    with store.transaction() as session:
        last = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).one()
        stored = session.scalars(select(Deployment.record).where(Deployment.name == "dep")).one()
    assert anchor == f"{last.seq}:{last.entry_hash}" and last.action == "deployment.snapshot_destroy"
    assert stored["audit_anchor"] == anchor
    stream = io.StringIO()
    DeploymentService(store).export_csv(stream)
    assert next(csv.DictReader(io.StringIO(stream.getvalue())))["audit_anchor"] == anchor
    report = verify(store)
    assert report.ok and report.published_anchors == 1


def test_cutting_the_newest_entries_off_is_caught_by_a_published_anchor(store: RecordStore, hog_engine: FaceEngine) -> None:  # noqa: F811
    anchor = ended_deployment(store, hog_engine)
    append(store, 3)  # searches after the deployment ended
    seq = int(anchor.partition(":")[0])

    cut_back(store, seq + 1)  # only what came after the anchor: not detectable (see docs/security.md)
    assert verify(store).ok
    cut_back(store, seq - 2)  # the deployment's ending, and what followed
    report = verify(store)
    assert not report.ok and report.problems == [
        f"entry seq {seq}, anchored as {anchor} (published with deployment dep's record), is gone: the log was cut back or rewritten"
    ]


def test_an_edited_published_anchor_is_reported(store: RecordStore, hog_engine: FaceEngine) -> None:  # noqa: F811
    ended_deployment(store, hog_engine)
    with store.transaction() as session:
        row = session.scalars(select(Deployment).where(Deployment.name == "dep")).one()
        row.record = {**row.record, "audit_anchor": "12:forged"}
    assert verify(store).problems == [
        "the audit anchor published with deployment dep's record, '12:forged', is not SEQ:HASH: the record was edited"
    ]


def test_the_anchor_is_on_the_transparency_page_and_checked_by_the_api_and_the_command_line(
    tmp_path: Path, env: dict[str, str], hog_engine: FaceEngine  # noqa: F811
) -> None:
    from cli_users import as_user, records

    with records(env) as opened:
        anchor = ended_deployment(opened, hog_engine)
        append(opened, 2)
        cut_back(opened, int(anchor.partition(":")[0]) - 1)
    checked = openfrt(as_user(env, Role.auditor), "audit", "verify", "--json")
    assert checked.returncode == 1 and "published with deployment dep's record" in " ".join(lines(checked)[0]["problems"])

    server = with_users(tmp_path / "server")
    with records({**env, "OPENFRT_HOME": str(server)}) as opened:
        anchor = ended_deployment(opened, hog_engine)
    with serving(server) as client:
        published = client.get("/api/records").json()["deployments"]
        assert [row["audit_anchor"] for row in published] == [anchor]
        assert anchor in client.get("/transparency").text
        login(client, Role.auditor)
        assert client.get("/api/audit/verify").json()["published_anchors"] == 1
