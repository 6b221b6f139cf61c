"""The request gate, attacked over a real socket: no body is read before the caller is known,
bodies stop at their limit however they are sent, uploads never touch the disk, and error
answers never echo what was sent."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from live_server import serve

from openfrt.api import ServerSettings, create_app
from openfrt.records import RecordStore
from openfrt.records.users import Role, UserService

PASSWORD = "correct horse battery staple"
MB = 1024 * 1024
BOUNDARY = "gate-test-boundary"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


class Body:
    """A chunked request body of ``size`` bytes made on demand; ``sent`` counts what the client
    actually produced, which shows how much the server let it send before answering."""

    def __init__(self, size: int, prefix: bytes = b"", suffix: bytes = b"", filler: bytes = b"x") -> None:
        self.size, self.prefix, self.suffix, self.filler = size, prefix, suffix, filler
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        yield self.prefix
        chunk = self.filler * (MB // len(self.filler))
        while self.sent < self.size:
            self.sent += len(chunk)
            yield chunk
        yield self.suffix


def image_upload(size: int) -> Body:
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"face.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode()
    return Body(size, head, f"\r\n--{BOUNDARY}--\r\n".encode())


@pytest.fixture
def temporary_files(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every temporary file the process makes from now on (Starlette spools uploads to one)."""
    made: list[str] = []
    for name in ("TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        real = getattr(tempfile, name)
        monkeypatch.setattr(tempfile, name, lambda *a, _real=real, _name=name, **k: made.append(_name) or _real(*a, **k))
    return made


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("gate") / "home"
    with RecordStore.open(home) as store:
        UserService(store).create("op-1", Role.operator, PASSWORD, actor="test")
    with serve(create_app(ServerSettings(home=home, realtime_files=False))) as url:
        yield url


@contextmanager
def logged_in(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=60) as client:
        answer = client.post("/api/session", json={"name": "op-1", "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
        yield client


def test_an_anonymous_chunked_upload_is_refused_before_its_body_is_read(server: str, temporary_files: list[str]) -> None:
    body = image_upload(150 * MB)
    answer = httpx.post(f"{server}/api/search", content=body, headers=MULTIPART, timeout=60)
    assert answer.status_code == 401
    assert body.sent < 32 * MB  # what the sockets' buffers took before the answer, not the upload
    assert temporary_files == []


def test_a_logged_in_chunked_upload_stops_at_the_limit_in_memory(server: str, temporary_files: list[str]) -> None:
    with logged_in(server) as client:
        body = image_upload(25 * MB)  # over the 20 MB default, declared nowhere
        answer = client.post("/api/search", content=body, headers=MULTIPART)
    assert answer.status_code == 413
    assert temporary_files == []


def test_a_chunked_json_body_is_cut_off_at_its_limit(server: str) -> None:
    body = Body(300 * MB, b'{"name": "op-1", "password": "', b'"}')
    answer = httpx.post(f"{server}/api/session", content=body, headers={"Content-Type": "application/json"}, timeout=60)
    assert answer.status_code == 413
    assert body.sent < 32 * MB
    assert "xxxx" not in answer.text


def test_a_session_change_without_its_csrf_token_is_refused_before_its_body(server: str) -> None:
    with logged_in(server) as client:
        del client.headers["X-CSRF-Token"]
        body = image_upload(150 * MB)
        answer = client.post("/api/search", content=body, headers=MULTIPART)
    assert answer.status_code == 403 and "X-CSRF-Token" in answer.json()["detail"]
    assert body.sent < 32 * MB


def test_validation_errors_do_not_echo_what_was_sent(server: str) -> None:
    marker = "ECHO-ME-" * 40  # too long for a user name
    answer = httpx.post(f"{server}/api/session", json={"name": marker, "password": PASSWORD}, timeout=60)
    assert answer.status_code == 422
    assert "ECHO-ME" not in answer.text and answer.json()["detail"][0]["loc"] == ["body", "name"]
    with logged_in(server) as client:
        answer = client.get("/api/alerts", params={"limit": marker})
    assert answer.status_code == 422 and "ECHO-ME" not in answer.text



def test_json_with_a_lone_surrogate_is_refused_not_a_server_error(server: str) -> None:
    lone = b'{"name": "\\ud800", "password": "x"}'  # valid JSON text, but not valid Unicode
    answer = httpx.post(f"{server}/api/session", content=lone, headers={"Content-Type": "application/json"}, timeout=60)
    assert answer.status_code == 422 and "surrogate" in answer.json()["detail"]
    with logged_in(server) as client:
        answer = client.post("/api/deployments", content=b'{"name": "a", "purpose": "\\udfff"}', headers={"Content-Type": "application/json"})
    assert answer.status_code == 422
    paired = b'{"name": "op-1 \\ud83d\\ude00", "password": "x"}'  # an escaped emoji is fine
    assert httpx.post(f"{server}/api/session", content=paired, headers={"Content-Type": "application/json"}, timeout=60).status_code == 401
