"""Signing in cannot be guessed at: failed attempts are slowed per account and per client with
growing delays, ten in a row lock the account until an administrator lifts it (audited), and
common or low-entropy passwords are refused — the rule stated wherever a password is chosen."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from openfrt.api import ServerSettings, create_app
from openfrt.cli.main import app as cli_app
from openfrt.records import AuthenticationError, InvalidRecordError, RecordStore
from openfrt.records import passwords, throttle
from openfrt.records import users as users_module
from openfrt.records.audit import list_events
from openfrt.records.throttle import AccountLocked, SignInThrottled
from openfrt.records.users import Role, UserService

PASSWORD = "correct horse battery staple"
WEAK = ("aaaaaaaaaaaa", "            ", "password1234", "qwertyuiop123", "alice-alice-alice", "Password123!")


class Clock:
    """Time for the throttle, moved on by the test instead of waited for."""

    def __init__(self) -> None:
        self.now = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def wait(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(autouse=True)
def quick_hashes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Cheap argon2 parameters: these tests make hundreds of password checks, and what they
    test is how many are made, not how long each takes."""
    monkeypatch.setattr(users_module, "HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    users_module._dummy_hash.cache_clear()
    yield
    users_module._dummy_hash.cache_clear()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(throttle, "utc_now", clock)
    return clock


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RecordStore]:
    with RecordStore.open(tmp_path / "home") as opened:
        yield opened


@pytest.fixture
def users(store: RecordStore) -> UserService:
    users = UserService(store)
    users.create("alice", Role.operator, PASSWORD, actor="setup")
    users.create("admin-1", Role.admin, PASSWORD, actor="setup")
    return users


def outcomes(users: UserService, name: str, clock: Clock, attempts: int, client: str | None = None) -> list[str]:
    """What each wrong guess got, waiting out every delay as a patient attacker would."""
    got = []
    for _ in range(attempts):
        try:
            users.authenticate(name, "not the password", client=client)
        except SignInThrottled as refused:
            got.append(f"wait {refused.retry_after}")
            clock.wait(refused.retry_after)
            continue
        except AccountLocked:
            got.append("locked")
            continue
        except AuthenticationError:
            got.append("refused")
    return got


def test_weak_and_common_passwords_are_refused_with_the_rule(users: UserService) -> None:
    for weak in WEAK:
        with pytest.raises(InvalidRecordError, match="at least 12 characters") as refused:
            users.create("bob", Role.operator, weak, actor="setup")
        assert weak.strip() == "" or weak not in str(refused.value)  # the password is never repeated
    with pytest.raises(InvalidRecordError):
        users.set_password("alice", "password1234", actor="admin-1")
    users.create("bob", Role.operator, "orbit lantern quietly 42", actor="setup")


def test_guesses_are_slowed_then_the_account_locks_until_an_administrator_lifts_it(users: UserService, store: RecordStore,
                                                                                     clock: Clock) -> None:
    got = outcomes(users, "alice", clock, 24)
    assert got[:3] == ["refused"] * 3
    waits = [float(outcome.split()[1]) for outcome in got if outcome.startswith("wait")]
    assert waits == sorted(waits) and waits[-1] > waits[0]  # the delays grow
    assert got.count("refused") == throttle.ACCOUNT.lock_after and got[-1] == "locked"
    with pytest.raises(AccountLocked):
        users.authenticate("alice", PASSWORD)  # even the right password, until lifted
    assert users.get("alice").locked
    users.unlock("alice", actor="admin-1")
    assert users.authenticate("alice", PASSWORD).name == "alice" and not users.get("alice").locked
    with store.transaction() as session:
        locked, unlocked = list_events(session, action="user.lock"), list_events(session, action="user.unlock")
    assert [(e.target, e.details["failures"]) for e in locked] == [("alice", throttle.ACCOUNT.lock_after)]
    assert [(e.actor, e.target) for e in unlocked] == [("admin-1", "alice")]


def test_an_unknown_name_is_throttled_and_locked_exactly_like_a_known_one(users: UserService, clock: Clock) -> None:
    assert outcomes(users, "nobody", clock, 14) == outcomes(users, "alice", clock, 14)


def test_a_success_resets_the_account_count(users: UserService, clock: Clock) -> None:
    outcomes(users, "alice", clock, 3)
    clock.wait(throttle.ACCOUNT.delay(3).total_seconds())
    users.authenticate("alice", PASSWORD)
    assert outcomes(users, "alice", clock, 3) == ["refused"] * 3


def test_failures_are_forgotten_after_a_quiet_day_but_a_lock_is_not(users: UserService, store: RecordStore, clock: Clock) -> None:
    from openfrt.records.models import SignInThrottle

    outcomes(users, "alice", clock, 30)
    outcomes(users, "nobody", clock, 2, client="203.0.113.9")
    clock.wait(throttle.FORGET_AFTER.total_seconds() + 1)
    assert outcomes(users, "bob", clock, 1) == ["refused"]
    with store.transaction() as session:
        kept = session.scalars(select(SignInThrottle)).all()
    assert sorted(row.locked_at is not None for row in kept) == [False, True]  # alice's lock, and bob's new failure
    with pytest.raises(AccountLocked):
        users.authenticate("alice", PASSWORD)


def test_parallel_guesses_get_no_more_password_checks_than_serial_ones(users: UserService, monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []
    real = users_module._verify
    monkeypatch.setattr(users_module, "_verify", lambda stored, password: checked.append(password) or real(stored, password))
    results: list[str] = []

    def guess() -> None:
        try:
            users.authenticate("alice", "not the password")
        except SignInThrottled:
            results.append("throttled")
        except AuthenticationError:
            results.append("refused")

    threads = [threading.Thread(target=guess) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(checked) <= throttle.ACCOUNT.free_attempts + 1 and results.count("throttled") >= 40 - len(checked)


def test_one_client_guessing_many_names_is_slowed_too(users: UserService, clock: Clock) -> None:
    names = [f"guess-{number}" for number in range(throttle.CLIENT.free_attempts + 2)]
    got = [outcomes(users, name, clock, 1, client="203.0.113.9")[0] for name in names]
    assert got[: throttle.CLIENT.free_attempts] == ["refused"] * throttle.CLIENT.free_attempts
    assert got[throttle.CLIENT.free_attempts].startswith("wait")
    assert outcomes(users, "guess-x", clock, 1, client="198.51.100.4") == ["refused"]  # another client is not slowed


# -- over HTTP, and from the command line ------------------------------------------------------


def test_the_api_answers_429_then_423_and_an_administrator_unlocks(users: UserService, store: RecordStore, clock: Clock) -> None:
    home = store.home
    with TestClient(create_app(ServerSettings(home=home, realtime_files=False))) as client:
        answers = []
        for _ in range(30):
            answer = client.post("/api/session", json={"name": "alice", "password": "not the password"})
            answers.append(answer.status_code)
            if answer.status_code == 429:
                assert int(answer.headers["Retry-After"]) >= 1
                clock.wait(float(answer.headers["Retry-After"]))
        assert answers[:3] == [401] * 3 and 429 in answers and answers[-1] == 423
        assert "administrator" in client.post("/api/session", json={"name": "alice", "password": PASSWORD}).json()["detail"]
        clock.wait(3600)  # this client guessed too: it has to wait as well
        admin = client.post("/api/session", json={"name": "admin-1", "password": PASSWORD}).json()
        headers = {"X-CSRF-Token": admin["csrf_token"]}
        assert [u["locked"] for u in client.get("/api/users").json() if u["name"] == "alice"] == [True]
        assert client.post("/api/users/alice/unlock", headers=headers).status_code == 200
        client.cookies.clear()
        assert client.post("/api/session", json={"name": "alice", "password": PASSWORD}).status_code == 200


def cli(home: Path, *args: str, input: str | None = None, token: str | None = None) -> tuple[int, str]:
    """Run an ``openfrt`` command in-process, with ``token`` as OPENFRT_TOKEN (else none); (exit
    code, what it printed)."""
    result = CliRunner().invoke(cli_app, [*args, "--home", str(home)], input=input, env={"OPENFRT_TOKEN": token})
    return result.exit_code, result.output


def test_the_cli_states_the_rule_before_the_first_prompt_and_checks_before_the_second(tmp_path: Path) -> None:
    home = tmp_path / "home"
    code, output = cli(home, "users", "create", "carol", "--role", "admin", input="password1234\n")  # the first, locally
    assert code != 0
    assert output.index(passwords.PASSWORD_RULE) < output.index("Password")  # the rule comes first
    assert "Repeat" not in output  # refused before the confirmation prompt
    code, output = cli(home, "users", "create", "carol", "--role", "admin", input="orbit lantern quietly 42\norbit lantern quietly 42\n")
    assert code == 0, output


def test_the_cli_lifts_a_lockout(users: UserService, store: RecordStore, clock: Clock) -> None:
    outcomes(users, "alice", clock, 30)
    assert users.get("alice").locked
    assert cli(store.home, "users", "unlock", "alice")[0] == 2  # an administrator's act: not without their token
    _, token = users.create_token("admin-1", "unlocking", actor="admin-1")
    code, output = cli(store.home, "users", "unlock", "alice", token=token)
    assert code == 0, output
    assert not users.get("alice").locked
