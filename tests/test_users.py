"""Server accounts: argon2id passwords, one refusal message for every failed sign-in, sessions
and API tokens stored only as hashes, ending and revoking them, the `openfrt users` commands,
and deployments that wait for an authorising officer — on SQLite and PostgreSQL."""

from __future__ import annotations

import getpass
import hashlib
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, text, update
from test_deployments import make_gallery, plan
from test_gallery_cli import env, lines  # noqa: F401 - the subprocess environment
from test_records import database_url, home, store  # noqa: F401 - the SQLite/PostgreSQL fixtures

from openfrt.gallery import Gallery
from openfrt.live.deployments import DeploymentService
from openfrt.records import (
    AuditEvent,
    AuthenticationError,
    DuplicateRecordError,
    InvalidRecordError,
    RecordNotFoundError,
    RecordStore,
    Role,
    UserService,
)
from openfrt.records import users as users_module
from openfrt.records.models import DeploymentStatus, User, UserSession, utc_now
from openfrt.vision import FaceEngine

PASSWORD = "correct horse battery staple"


@pytest.fixture
def users(store: RecordStore) -> UserService:  # noqa: F811
    return UserService(store)


def audit_rows(store: RecordStore) -> list[AuditEvent]:  # noqa: F811
    with store.transaction() as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))


def everything_stored(store: RecordStore) -> str:  # noqa: F811
    """Every value in the account tables and the audit log, as text, to search for secrets."""
    with store.engine.connect() as connection:
        return " ".join(
            str(value)
            for table in ("users", "user_sessions", "api_tokens", "audit_events")
            for row in connection.execute(text(f"SELECT * FROM {table}"))
            for value in row
        )


def sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# -- accounts and passwords ------------------------------------------------------------------


def test_passwords_are_stored_as_argon2id_and_checked(users: UserService, store: RecordStore) -> None:  # noqa: F811
    created = users.create("alice", Role.admin, PASSWORD, actor="setup", display_name="Alice A")
    assert (created.name, created.role, created.display_name, created.disabled) == ("alice", Role.admin, "Alice A", False)
    with store.transaction() as session:
        stored = session.scalars(select(User.password_hash)).one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored

    assert users.authenticate("alice", PASSWORD) == created
    with pytest.raises(AuthenticationError) as wrong:
        users.authenticate("alice", PASSWORD + "!")
    with pytest.raises(AuthenticationError) as unknown:
        users.authenticate("mallory", PASSWORD)
    users.create("bob", Role.operator, PASSWORD, actor="alice")
    users.disable("bob", actor="alice")
    with pytest.raises(AuthenticationError) as disabled:
        users.authenticate("bob", PASSWORD)
    assert str(wrong.value) == str(unknown.value) == str(disabled.value)

    logins = [(row.action, row.actor, row.details) for row in audit_rows(store) if row.action.startswith("user.login")]
    assert logins == [
        ("user.login", "alice", {}),
        ("user.login_failed", "alice", {"refused": "wrong password"}),
        ("user.login_failed", f"unknown:{store.cipher.fingerprint(b'mallory')}", {"refused": "unknown user"}),
        ("user.login_failed", "bob", {"refused": "disabled"}),
    ]
    assert PASSWORD not in everything_stored(store)

    # A password typed as the name is not kept; the same mistake twice is recognisably the same.
    for _ in range(2):
        with pytest.raises(AuthenticationError):
            users.authenticate(PASSWORD, PASSWORD)
    unknown = [row.actor for row in audit_rows(store) if row.action == "user.login_failed"][-2:]
    assert unknown[0] == unknown[1] and unknown[0].startswith("unknown:") and PASSWORD not in unknown[0]
    assert PASSWORD not in everything_stored(store)


def test_an_unknown_name_costs_a_password_check(users: UserService, monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []
    real = users_module._verify
    monkeypatch.setattr(users_module, "_verify", lambda stored, password: checked.append(stored) or real(stored, password))
    with pytest.raises(AuthenticationError):
        users.authenticate("nobody", PASSWORD)
    assert checked == [users_module._dummy_hash()] and checked[0].startswith("$argon2id$")


def test_weak_passwords_bad_names_and_duplicates_are_refused(users: UserService) -> None:
    with pytest.raises(InvalidRecordError, match="12 characters"):
        users.create("carol", Role.auditor, "short pass", actor="setup")
    for bad in ("", " carol", "carol smith", "x" * 129, "-carol", "carol\n"):
        with pytest.raises(InvalidRecordError):
            users.create(bad, Role.auditor, PASSWORD, actor="setup")
    with pytest.raises(InvalidRecordError, match="role"):
        users.create("carol", "superuser", PASSWORD, actor="setup")  # type: ignore[arg-type]
    users.create("carol", Role.auditor, PASSWORD, actor="setup")
    for duplicate in ("carol", "Carol"):
        with pytest.raises(DuplicateRecordError):
            users.create(duplicate, Role.operator, PASSWORD, actor="setup")
    with pytest.raises(RecordNotFoundError):
        users.get("dave")
    with pytest.raises(InvalidRecordError, match="12 characters"):
        users.set_password("carol", "too short", actor="setup")
    assert users.count() == 1 and [user.name for user in users.list()] == ["carol"]
    assert users.get("carol").as_dict()["role"] == "auditor"


def test_old_hash_parameters_are_upgraded_at_sign_in(users: UserService, store: RecordStore) -> None:  # noqa: F811
    users.create("alice", Role.operator, PASSWORD, actor="setup")
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    with store.transaction() as session:
        session.execute(update(User).values(password_hash=weak))
    users.authenticate("alice", PASSWORD)
    with store.transaction() as session:
        upgraded = session.scalars(select(User.password_hash)).one()
    assert upgraded != weak and not users_module.HASHER.check_needs_rehash(upgraded)
    users.authenticate("alice", PASSWORD)


def test_a_new_password_works_and_ends_sessions(users: UserService, store: RecordStore) -> None:  # noqa: F811
    alice = users.create("alice", Role.operator, PASSWORD, actor="setup")
    token, _ = users.create_session(alice)
    users.set_password("alice", "a different long password", actor="admin")
    with pytest.raises(AuthenticationError):
        users.session_user(token)
    with pytest.raises(AuthenticationError):
        users.authenticate("alice", PASSWORD)
    assert users.authenticate("alice", "a different long password").name == "alice"
    changed = [row for row in audit_rows(store) if row.action == "user.password"]
    assert [(row.actor, row.target, row.details) for row in changed] == [("admin", "alice", {"sessions_ended": 1})]
    assert "a different long password" not in everything_stored(store)


# -- sessions --------------------------------------------------------------------------------


def test_sessions_store_only_a_hash_and_carry_a_csrf_token(users: UserService, store: RecordStore) -> None:  # noqa: F811
    alice = users.create("alice", Role.engagement_officer, PASSWORD, actor="setup")
    token, csrf = users.create_session(alice)
    assert len(token) >= 43 and len(csrf) >= 43 and token != csrf
    assert users.session_user(token) == (alice, csrf)
    stored = everything_stored(store)
    assert token not in stored and sha256(token) in stored

    other, other_csrf = users.create_session(alice)
    assert other != token and other_csrf != csrf
    users.end_session(token)
    with pytest.raises(AuthenticationError):
        users.session_user(token)
    users.end_session(token)  # again: nothing to do
    assert users.session_user(other)[1] == other_csrf
    with pytest.raises(AuthenticationError):
        users.session_user("not a session")


def test_sessions_expire_and_end_with_the_account(users: UserService, store: RecordStore) -> None:  # noqa: F811
    alice = users.create("alice", Role.operator, PASSWORD, actor="setup")
    token, _ = users.create_session(alice, lifetime=timedelta(minutes=5))
    with store.transaction() as session:
        session.execute(update(UserSession).values(expires_at=utc_now() - timedelta(seconds=1)))
    with pytest.raises(AuthenticationError):
        users.session_user(token)
    with store.transaction() as session:
        assert session.scalars(select(UserSession)).all() == []  # the expired session was removed
    with pytest.raises(InvalidRecordError):
        users.create_session(alice, lifetime=timedelta(0))

    token, _ = users.create_session(alice)
    users.disable("alice", actor="admin")
    with pytest.raises(AuthenticationError):
        users.session_user(token)
    with pytest.raises(AuthenticationError):
        users.create_session(alice)
    assert users.get("alice").disabled


def test_session_use_is_written_at_most_once_a_minute(users: UserService, store: RecordStore) -> None:  # noqa: F811
    alice = users.create("alice", Role.operator, PASSWORD, actor="setup")
    token, _ = users.create_session(alice)
    earlier = utc_now() - timedelta(minutes=2)
    with store.transaction() as session:
        session.execute(update(UserSession).values(last_seen_at=earlier))
    users.session_user(token)
    with store.transaction() as session:
        touched = session.scalars(select(UserSession.last_seen_at)).one()
    assert touched > earlier + timedelta(minutes=1)
    users.session_user(token)
    with store.transaction() as session:
        assert session.scalars(select(UserSession.last_seen_at)).one() == touched


# -- API tokens ------------------------------------------------------------------------------


def test_api_tokens_are_shown_once_and_revocable(users: UserService, store: RecordStore) -> None:  # noqa: F811
    users.create("alice", Role.admin, PASSWORD, actor="setup")
    bob = users.create("bob", Role.operator, PASSWORD, actor="alice")
    info, secret = users.create_token("bob", "nightly export", actor="bob")
    assert secret.startswith("ofrt_") and len(secret) > 40
    assert (info.user, info.label, info.last_used_at, info.revoked_at) == ("bob", "nightly export", None, None)
    stored = everything_stored(store)
    assert secret not in stored and secret[5:] not in stored and sha256(secret) in stored
    assert "secret" not in json.dumps(info.as_dict())

    assert users.token_user(secret) == bob
    assert users.list_tokens("bob")[0].last_used_at is not None
    for wrong in ("", secret[5:], secret + "x", "ofrt_" + "A" * 43):
        with pytest.raises(AuthenticationError):
            users.token_user(wrong)

    users.revoke_token(info.id, actor="alice")
    with pytest.raises(AuthenticationError):
        users.token_user(secret)
    users.revoke_token(info.id, actor="alice")  # already revoked: no change, no second entry
    with pytest.raises(RecordNotFoundError):
        users.revoke_token(999, actor="alice")
    revocations = [(row.actor, row.target, row.details) for row in audit_rows(store) if row.action == "token.revoke"]
    assert revocations == [("alice", "bob", {"token": info.id, "label": "nightly export"})]
    created = [row.details for row in audit_rows(store) if row.action == "token.create"]
    assert created == [{"token": info.id, "label": "nightly export"}]


def test_disabling_a_user_revokes_their_tokens(users: UserService, store: RecordStore) -> None:  # noqa: F811
    users.create("bob", Role.operator, PASSWORD, actor="setup")
    users.create("carol", Role.operator, PASSWORD, actor="setup")
    _, bobs = users.create_token("bob", "script", actor="bob")
    _, carols = users.create_token("carol", "script", actor="carol")
    users.disable("bob", actor="admin")
    with pytest.raises(AuthenticationError):
        users.token_user(bobs)
    assert users.token_user(carols).name == "carol"
    assert [token.revoked_at is not None for token in users.list_tokens()] == [True, False]
    with pytest.raises(InvalidRecordError, match="disabled"):
        users.create_token("bob", "another", actor="bob")
    with pytest.raises(InvalidRecordError, match="label"):
        users.create_token("carol", "  ", actor="carol")
    with pytest.raises(RecordNotFoundError):
        users.list_tokens("nobody")
    # a token whose user was disabled behind the service's back is refused as well
    with store.transaction() as session:
        session.execute(update(User).where(User.name == "carol").values(disabled=True))
    with pytest.raises(AuthenticationError):
        users.token_user(carols)
    disabled = [row.details for row in audit_rows(store) if row.action == "user.disable"]
    assert disabled == [{"sessions_ended": 0, "tokens_revoked": 1}]


# -- the commands ----------------------------------------------------------------------------


def openfrt_with_input(env: dict[str, str], stdin: str, *args: str) -> subprocess.CompletedProcess[str]:  # noqa: F811
    script = Path(sys.executable).with_name("openfrt")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "openfrt"]
    return subprocess.run([*command, *args], input=stdin, capture_output=True, text=True, timeout=300, env=env, check=False)


def test_users_commands_never_show_the_password(env: dict[str, str]) -> None:  # noqa: F811
    created = openfrt_with_input(env, PASSWORD + "\n", "users", "create", "alice", "--role", "admin", "--password-stdin", "--json")
    assert created.returncode == 0, created.stderr
    assert lines(created)[0] == {**lines(created)[0], "name": "alice", "role": "admin", "disabled": False}
    login = openfrt_with_input(env, PASSWORD + "\n", "login", "alice", "--password-stdin", "--label", "monitoring", "--json")
    assert login.returncode == 0, login.stderr
    secret = lines(login)[0]["token"]
    assert isinstance(secret, str) and secret.startswith("ofrt_")
    admin = {**env, "OPENFRT_TOKEN": secret}
    short = openfrt_with_input(admin, "too short\n", "users", "create", "bob", "--role", "operator", "--password-stdin")
    assert short.returncode == 1 and "12 characters" in short.stderr
    wrong = openfrt_with_input(env, "not the password\n", "login", "alice", "--password-stdin")
    assert wrong.returncode == 1 and "sign-in refused" in wrong.stderr and wrong.stdout == ""

    listed = openfrt_with_input(admin, "", "users", "tokens", "--json")
    assert secret not in listed.stdout and lines(listed)[0]["label"] == "monitoring"
    revoked = openfrt_with_input(admin, "", "users", "revoke-token", str(lines(listed)[0]["id"]))
    assert revoked.returncode == 0, revoked.stderr
    after = openfrt_with_input(admin, "", "users", "disable", "alice", "--json")
    assert after.returncode == 2 and "was refused" in after.stderr  # the token revoked itself
    audit = openfrt_with_input(env, "", "audit", "verify", "--json")  # local administration needs no token
    assert audit.returncode == 0, audit.stderr
    with RecordStore.open(env["OPENFRT_HOME"]) as opened:
        entries = [(row.action, row.actor, row.credential) for row in audit_rows(opened)]
        stored = everything_stored(opened)
    local = f"local:{getpass.getuser()}"
    assert entries[:3] == [("user.create", local, "local"), ("user.login", "alice", "password"), ("token.create", "alice", "password")]
    token = f"token:{lines(listed)[0]['id']}"
    assert entries[3:] == [("user.login_failed", "alice", None), ("token.revoke", "alice", token), ("audit.verify", local, "local")]

    outputs = [result.stdout + result.stderr for result in (created, login, short, wrong, listed, revoked, after, audit)]
    assert not any(PASSWORD in output or "too short" in output or "not the password" in output for output in outputs)
    assert PASSWORD not in stored and secret not in stored


# -- deployments wait for an authorising officer ---------------------------------------------


def test_a_deployment_cannot_start_before_it_is_authorised(store: RecordStore, hog_engine: FaceEngine) -> None:  # noqa: F811
    gallery: Gallery = make_gallery(store, hog_engine)
    service = DeploymentService(store, gallery)
    plan(service, "later", authorised_by=None)
    planned = service.get("later")
    assert planned.authorised_by is None and planned.authorised_at is None and planned.planned_by == "PC 1"
    with pytest.raises(InvalidRecordError, match="authorising officer"):
        service.start("later", "PC 1")
    with pytest.raises(InvalidRecordError, match="authorising officer"):
        service.authorise("later", actor=" ")

    authorised = service.authorise("later", actor="Supt B")
    assert authorised.authorised_by == "Supt B" and authorised.authorised_at is not None
    assert service.get("later") == authorised
    running = service.start("later", "PC 1")
    with pytest.raises(InvalidRecordError, match="running"):
        service.authorise("later", actor="Supt C")
    record = running.end("PC 1")
    assert record.authorised_by == "Supt B" and record.status is DeploymentStatus.ended
    with pytest.raises(RecordNotFoundError):
        service.authorise("nope", actor="Supt B")
    with store.transaction() as session:
        entries = session.scalars(select(AuditEvent).where(AuditEvent.action == "deployment.authorise")).all()
    assert [(entry.actor, entry.target, entry.details["authorised_by"], entry.details["planned_by"]) for entry in entries] == [
        ("Supt B", "later", "Supt B", "PC 1")]
