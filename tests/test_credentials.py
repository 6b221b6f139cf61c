"""Who really acted: an API token is created only by the user it acts as, and every audit entry
names the session or token behind it, under the entry's hash (security finding 2)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from test_api import PASSWORD, USERS, client, home, login  # noqa: F401 - the server and its users

from openfrt.records import Actor, AuditEvent, RecordStore, Role, UserService, record_event, verify_chain
from openfrt.records.audit import HASHED_FIELDS, AuditAction
from openfrt.records.errors import NotPermittedError


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RecordStore]:
    with RecordStore.open(tmp_path / "records") as opened:
        yield opened


def audit_rows(store: RecordStore) -> list[AuditEvent]:
    with store.transaction() as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))


def test_an_administrator_cannot_mint_a_token_for_an_officer(client: TestClient) -> None:  # noqa: F811
    admin = login(client, Role.admin)
    minted = client.post(f"/api/users/{USERS[Role.operator]}/tokens", json={"label": "as op1"}, headers=admin)
    assert minted.status_code == 403, minted.text
    assert "created only by the user it acts as" in minted.json()["detail"]
    assert client.get("/api/tokens", headers=admin).json() == []  # nothing was created

    operator = login(client, Role.operator)
    own = client.post(f"/api/users/{USERS[Role.operator]}/tokens", json={"label": "camera gateway"}, headers=operator)
    assert own.status_code == 201, own.text
    bearer = {"Authorization": f"Bearer {own.json()['token']}"}
    client.cookies.clear()
    again = client.post(f"/api/users/{USERS[Role.operator]}/tokens", json={"label": "spare"}, headers=bearer)
    assert again.status_code == 403 and "password" in again.json()["detail"]  # a token cannot mint a token

    admin = login(client, Role.admin)
    listed = client.get("/api/tokens", headers=admin).json()
    assert [(token["user"], token["label"]) for token in listed] == [(USERS[Role.operator], "camera gateway")]
    assert client.delete(f"/api/tokens/{own.json()['id']}", headers=admin).status_code == 200


def test_every_audit_entry_names_the_session_or_token_it_came_with(client: TestClient) -> None:  # noqa: F811
    auditor = USERS[Role.auditor]
    headers = login(client, Role.auditor)
    created = client.post(f"/api/users/{auditor}/tokens", json={"label": "monitoring"}, headers=headers)
    assert created.status_code == 201
    assert client.get("/api/audit", params={"limit": 1}).status_code == 200  # over the session
    client.cookies.clear()
    bearer = {"Authorization": f"Bearer {created.json()['token']}"}
    assert client.get("/api/audit/verify", headers=bearer).json()["ok"] is True  # over the token

    token = f"token:{created.json()['id']}"
    entries = client.get("/api/audit", params={"actor": auditor}, headers=bearer).json()
    by_action = {(entry["action"], entry["credential"]) for entry in entries}
    assert ("user.login", "password") in by_action
    assert ("audit.verify", token) in by_action
    sessions = {credential for action, credential in by_action if action in ("token.create", "audit.view")}
    assert len(sessions) == 1 and sessions.pop().startswith("session:")
    only_token = client.get("/api/audit", params={"credential": token}, headers=bearer).json()
    assert {entry["action"] for entry in only_token} == {"audit.verify", "audit.view"}


def test_the_service_refuses_tokens_made_for_someone_else(store: RecordStore) -> None:
    users = UserService(store)
    users.create("admin-1", Role.admin, PASSWORD, actor="setup")
    users.create("op-1", Role.operator, PASSWORD, actor="admin-1")
    with pytest.raises(NotPermittedError, match="created only by the user it acts as"):
        users.create_token("op-1", "as op-1", actor=Actor("admin-1", "session:1"))
    info, secret = users.log_in_for_token("op-1", PASSWORD, "command line")
    credential = users.token_credential(secret)
    assert (credential.user.name, credential.label) == ("op-1", f"token:{info.id}")
    with pytest.raises(NotPermittedError, match="cannot create another"):
        users.create_token("op-1", "spare", actor=credential.actor)
    rows = [(row.action, row.actor, row.credential) for row in audit_rows(store)][-2:]
    assert rows == [("user.login", "op-1", "password"), ("token.create", "op-1", "password")]


def test_the_credential_is_under_the_hash_and_entries_without_one_hash_as_before(store: RecordStore) -> None:
    with store.transaction() as session:
        record_event(session, AuditAction.audit_viewed, actor="system")
        record_event(session, AuditAction.audit_viewed, actor=Actor("aud-1", "token:7"))
    legacy, credentialed = audit_rows(store)
    assert (legacy.credential, credentialed.credential) == (None, "token:7")
    # An entry without a credential hashes exactly as every entry did before credentials were recorded.
    canonical = {name: getattr(legacy, name) for name in HASHED_FIELDS}
    canonical["at"] = legacy.at.astimezone(UTC).isoformat(timespec="microseconds")
    old_format = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert legacy.entry_hash == hashlib.sha256(old_format.encode("ascii")).hexdigest()
    with store.transaction() as session:
        assert verify_chain(session).ok

    with store.engine.begin() as connection:  # someone with the database drops the guard and edits
        connection.execute(text("DROP TRIGGER audit_events_no_update"))
        connection.execute(text("UPDATE audit_events SET credential = 'token:8' WHERE seq = 2"))
    with store.transaction() as session:
        report = verify_chain(session)
    assert report.problems == ["entry seq 2 was edited"]
