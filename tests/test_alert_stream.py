"""An open alert stream lives no longer than the credential that opened it: disabling the user,
revoking the token or logging out ends it within seconds, on a real server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from live_server import serve

from openfrt.api import ServerSettings, create_app
from openfrt.api.routes import alerts
from openfrt.records import RecordStore
from openfrt.records.users import Role, UserService

PASSWORD = "correct horse battery staple"


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, dict[str, str]]]:
    """A server with an administrator, two engagement officers and a token for the second."""
    monkeypatch.setattr(alerts, "CREDENTIAL_CHECK_SECONDS", 0.2, raising=False)
    home = tmp_path_factory.mktemp("stream") / "home"
    with RecordStore.open(home) as store:
        users = UserService(store)
        for name, role in (("admin-1", Role.admin), ("eo-1", Role.engagement_officer), ("eo-2", Role.engagement_officer)):
            users.create(name, role, PASSWORD, actor="test")
        _, token = users.create_token("eo-2", "console wall", actor="eo-2")
    with serve(create_app(ServerSettings(home=home, realtime_files=False))) as url:
        yield url, {"token": token}


def login(url: str, name: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=httpx.Timeout(10.0))
    answer = client.post("/api/session", json={"name": name, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
    return client


def stream_ends_after(client: httpx.Client, action: Callable[[], None]) -> float:
    """Open the stream, run ``action`` once it is connected, and return how long the stream took
    to end after it (ReadTimeout, failing the test, if it did not end within 10 s)."""
    connected, acted = threading.Event(), [0.0]

    def act() -> None:
        connected.wait(10)
        action()
        acted[0] = time.monotonic()

    actor = threading.Thread(target=act)
    actor.start()
    with client.stream("GET", "/api/alerts/stream") as events:
        assert events.status_code == 200
        for line in events.iter_lines():
            if line == ": connected":
                connected.set()
    actor.join()
    return time.monotonic() - acted[0]


def test_disabling_the_user_ends_their_open_stream(server: tuple[str, dict[str, str]]) -> None:
    url, _ = server
    officer, admin = login(url, "eo-1"), login(url, "admin-1")
    assert stream_ends_after(officer, lambda: admin.post("/api/users/eo-1/disable").raise_for_status()) < 5


def test_revoking_the_token_ends_its_open_stream(server: tuple[str, dict[str, str]]) -> None:
    url, secrets = server
    admin = login(url, "admin-1")
    (token,) = [t for t in admin.get("/api/tokens").json() if t["user"] == "eo-2"]
    machine = httpx.Client(base_url=url, timeout=httpx.Timeout(10.0), headers={"Authorization": f"Bearer {secrets['token']}"})
    assert stream_ends_after(machine, lambda: admin.delete(f"/api/tokens/{token['id']}").raise_for_status()) < 5


def test_logging_out_ends_the_sessions_open_stream(server: tuple[str, dict[str, str]]) -> None:
    url, _ = server
    officer = login(url, "eo-1")
    other_tab = httpx.Client(base_url=url, cookies=officer.cookies, headers=officer.headers, timeout=10)
    assert stream_ends_after(officer, lambda: other_tab.delete("/api/session").raise_for_status()) < 5
