"""Hostile input to the API and console answered with a 4xx that says what was wrong — never a
500, never a redirect off the site, never a record that cannot be reached or read safely."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from openfrt.api import ServerSettings, create_app
from openfrt.records import RecordStore
from openfrt.records.users import Role, UserService

PASSWORD = "correct horse battery staple"
USERS = {role: f"{role.value}-1" for role in Role}
HUGE = 2**64


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("hostile") / "home"
    with RecordStore.open(home) as store:
        users = UserService(store)
        for role, name in USERS.items():
            users.create(name, role, PASSWORD, actor="test")
    return home


@pytest.fixture(scope="module")
def app(home: Path) -> Iterator[Any]:
    app = create_app(ServerSettings(home=home, realtime_files=False))
    with TestClient(app):  # runs the lifespan once for every client below
        yield app


@pytest.fixture(scope="module")
def clients(app: Any) -> dict[Role, TestClient]:
    """One logged-in client per role (their CSRF header set), sharing the app."""
    clients = {}
    for role, name in USERS.items():
        client = TestClient(app, raise_server_exceptions=False)
        answer = client.post("/api/session", json={"name": name, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
        clients[role] = client
    return clients


def allowed(clients: dict[Role, TestClient], method: str, path: str, **kwargs: Any) -> Any:
    """The answer to the first role allowed to make the call (so the input is what is judged)."""
    for client in clients.values():
        answer = client.request(method, path, **kwargs)
        if answer.status_code != 403:
            return answer
    raise AssertionError(f"no role may {method} {path}")


def integer_parameters(client: TestClient) -> list[tuple[str, str, str, str]]:
    """(method, path, parameter, where) for every integer parameter the API documents."""
    found = []
    for path, operations in client.get("/openapi.json").json()["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                schema = parameter["schema"]
                if "integer" in {schema.get("type"), *(option.get("type") for option in schema.get("anyOf", []))}:
                    found.append((method.upper(), path, parameter["name"], parameter["in"]))
    return found


def test_ids_and_counts_past_64_bits_are_refused_not_a_server_error(clients: dict[Role, TestClient]) -> None:
    cases = integer_parameters(clients[Role.admin])
    assert len(cases) >= 12
    for method, path, name, where in cases:
        for value in (2**63, HUGE, -1):
            concrete = path.replace("{kind}", "frame").replace("{name}", "x")
            params = {}
            if where == "path":
                concrete = concrete.replace(f"{{{name}}}", str(value))
            else:
                params[name] = value
            concrete = concrete.replace("{alert_id}", "1").replace("{token_id}", "1").replace("{image_id}", "1")
            body = {"status": "false_alert", "outcome": "no_action", "reason": "r"} if method == "POST" else None
            answer = allowed(clients, method, concrete, params=params, json=body)
            assert 400 <= answer.status_code < 500, (method, path, name, value, answer.status_code, answer.text)


def test_console_pages_refuse_huge_page_numbers(clients: dict[Role, TestClient]) -> None:
    for path in (f"/subjects?page={HUGE}", f"/audit?before={HUGE}", f"/subjects?page={2**62}"):
        answer = allowed(clients, "GET", path)
        assert 400 <= answer.status_code < 500, (path, answer.status_code)


def test_times_without_a_zone_are_refused_not_a_server_error(clients: dict[Role, TestClient]) -> None:
    auditor = clients[Role.auditor]
    answer = auditor.get("/api/audit", params={"since": "2026-01-01T00:00"})
    assert answer.status_code == 422 and "timezone" in answer.text.lower()
    assert auditor.get("/api/audit", params={"since": "2026-01-01T00:00Z"}).status_code == 200
    officer = clients[Role.authorising_officer]
    naive = officer.post("/api/watchlists", json={"name": "naive", "purpose": "p", "expires_at": "2099-01-01T00:00"})
    assert naive.status_code == 422
    assert officer.post("/api/watchlists", json={"name": "zoned", "purpose": "p", "expires_at": "2099-01-01T00:00+01:00"}).status_code == 201
    mixed = {"name": "mixed", "purpose": "p", "location": "x", "watchlist": "zoned", "cameras": {"a": "0"},
             "planned_start": "2099-01-01T10:00", "planned_end": "2099-01-01T12:00Z"}
    assert officer.post("/api/deployments", json=mixed).status_code == 422


@pytest.mark.parametrize("target", ["/\t/evil.example/phish", "/\n/evil.example", "/\r\n/evil.example", "//evil.example",
                                    "/\\evil.example", "\\/evil.example", "https://evil.example/", "/ /evil.example",
                                    "/\x00/evil.example", "/\u3000/evil.example"])
def test_the_page_after_log_in_is_always_on_this_site(app: Any, clients: dict[Role, TestClient], target: str) -> None:
    anonymous = TestClient(app)
    page = anonymous.get("/login", params={"next": target})
    assert 'data-next="/"' in page.text
    answer = clients[Role.operator].get("/login", params={"next": target}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/alerts"
    kept = clients[Role.operator].get("/login", params={"next": "/deployments/op%201?x=1"}, follow_redirects=False)
    assert kept.headers["location"] == "/deployments/op%201?x=1"


def test_anonymous_csv_downloads_are_audited_in_aggregate_not_one_entry_each(tmp_path: Path, home: Path) -> None:
    from openfrt.records.audit import list_events

    def exports() -> list[Any]:
        with RecordStore.open(home) as store, store.transaction() as session:
            return list_events(session, action="records.export", limit=1000)

    before = len(exports())
    with TestClient(create_app(ServerSettings(home=home, realtime_files=False))) as client:
        for _ in range(30):
            assert client.get("/api/records.csv").status_code == 200
        assert len(exports()) - before <= 1  # a flood of downloads is not a flood of entries
        client.post("/api/session", json={"name": USERS[Role.auditor], "password": PASSWORD})
        assert client.get("/api/records.csv").status_code == 200
    entries = exports()[: len(exports()) - before]
    assert [entry.actor for entry in entries].count(USERS[Role.auditor]) == 1  # a person's download: their own entry
    public = [entry for entry in entries if entry.actor == "public"]
    assert sum(entry.details["downloads"] for entry in public) == 30 and len(public) <= 2


def test_long_free_text_is_refused_by_the_api_without_being_repeated(clients: dict[Role, TestClient]) -> None:
    long = "LONG-TEXT-" * 10_000  # 100 KB: within the JSON limit, over every field's
    officer = clients[Role.authorising_officer]
    for method, path, kwargs in (
        ("POST", "/api/watchlists", {"json": {"name": "w-long", "purpose": long}}),
        ("POST", "/api/deployments", {"json": {"name": "d-long", "purpose": "p", "location": long, "watchlist": "x", "cameras": {"a": "0"}}}),
        ("POST", "/api/alerts/1/hold", {"json": {"reason": long}}),
        ("DELETE", "/api/watchlists/x", {"params": {"reason": long[:6000]}}),
    ):
        answer = officer.request(method, path, **kwargs)
        assert answer.status_code == 422, (path, answer.status_code)
        assert "LONG-TEXT" not in answer.text
