"""Replay issue 14's attacks against a real ``openfrt serve`` on localhost and say which held.

    python benchmarks/attacks.py [--keep]

It makes a fresh data directory with one user per role, starts ``python -m openfrt serve`` on a
free port (``OPENFRT_ALLOWED_NETWORKS=10.0.0.0/8``), fires each finding the way the attacker
did — chunked bodies from a generator, a camera on the server's own loopback, a clip longer
than allowed, an open alert stream of a user then disabled, guessed passwords … — and prints
one row per attack: what a safe server answers, what this one answered. Exit status 1 if any
attack got through. The unit tests (see docs/security.md) check the same in more detail; this
is the end-to-end replay.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from openfrt.records import RecordStore
from openfrt.records.audit import list_events
from openfrt.records.users import Role, UserService

PASSWORD = "orbit lantern quietly 42"
USERS = {"admin-1": Role.admin, "op-1": Role.operator, "eo-1": Role.engagement_officer,
         "ao-1": Role.authorising_officer, "auditor-1": Role.auditor}
MB = 1024 * 1024


class Stream:
    """A chunked body made on demand; ``sent`` is how much the client got to send."""

    def __init__(self, size: int, head: bytes = b"", tail: bytes = b"") -> None:
        self.size, self.head, self.tail, self.sent = size, head, tail, 0

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        while self.sent < self.size:
            self.sent += MB
            yield b"x" * MB
        yield self.tail


def multipart(size: int) -> Stream:
    return Stream(size, b'--B\r\nContent-Disposition: form-data; name="image"; filename="f.jpg"\r\n\r\n', b"\r\n--B--\r\n")


class Replay:
    def __init__(self, url: str, home: Path) -> None:
        self.url, self.home = url, home
        self.rows: list[tuple[str, str, str, str, bool]] = []

    def client(self, name: str | None = None) -> httpx.Client:
        client = httpx.Client(base_url=self.url, timeout=60)
        if name is not None:
            answer = client.post("/api/session", json={"name": name, "password": PASSWORD})
            answer.raise_for_status()
            client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
        return client

    def check(self, finding: str, attack: str, expected: str, run: Callable[[], tuple[str, bool]]) -> None:
        try:
            got, held = run()
        except Exception as exc:  # noqa: BLE001 - an attack that breaks the replay is reported, not fatal
            got, held = f"{type(exc).__name__}: {exc}", False
        self.rows.append((finding, attack, expected, got, held))

    def all(self) -> None:
        multipart_type = {"Content-Type": "multipart/form-data; boundary=B"}
        json_type = {"Content-Type": "application/json"}

        def anonymous_upload() -> tuple[str, bool]:
            body = multipart(150 * MB)
            answer = httpx.post(f"{self.url}/api/search", content=body, headers=multipart_type, timeout=60)
            return f"{answer.status_code} after {body.sent // MB} MB", answer.status_code == 401 and body.sent < 32 * MB

        def oversize_upload() -> tuple[str, bool]:
            answer = self.client("op-1").post("/api/search", content=multipart(25 * MB), headers=multipart_type)
            return str(answer.status_code), answer.status_code == 413

        def huge_json() -> tuple[str, bool]:
            body = Stream(300 * MB, b'{"name": "op-1", "password": "', b'"}')
            answer = httpx.post(f"{self.url}/api/session", content=body, headers=json_type, timeout=60)
            return f"{answer.status_code} after {body.sent // MB} MB", answer.status_code == 413 and "xxxx" not in answer.text

        self.check("1", "anonymous chunked 150 MB upload", "401, body not read", anonymous_upload)
        self.check("1", "logged-in chunked 25 MB upload", "413", oversize_upload)
        self.check("1", "chunked 300 MB JSON log-in", "413, not echoed", huge_json)

        operator = self.client("op-1")
        plan = {"name": "x", "purpose": "p", "location": "l", "watchlist": "w"}
        for source in ("http://127.0.0.1:9/internal?secret=1", "tcp://10.0.0.5:554", "/etc/passwd", "http://169.254.169.254/"):
            self.check("4", f"camera {source}", "422", lambda source=source: self._status(
                operator.post("/api/deployments", json={**plan, "cameras": {"a": source}}), 422))

        long_clip = _clip(seconds=130)
        self.check("5", "130 s clip", "422 before decoding", lambda: self._status(operator.post(
            "/api/search", data={"case_ref": "C1", "reason": "r"}, files={"image": ("long.mp4", long_clip, "video/mp4")}), 422))

        officer = self.client("eo-1")
        self.check("7", "engagement officer pages reference images", "403", lambda: self._status(
            officer.get("/api/reference-images/1", params={"reason": "curious"}), 403))
        self.check("7", "reference image without a reason", "422", lambda: self._status(operator.get("/api/reference-images/1"), 422))

        camera = "http://10.0.0.9/axis-cgi/media.amp?user=root&password=hunter2"
        def query_password() -> tuple[str, bool]:
            self.client("ao-1").post("/api/watchlists", json={"name": "w", "purpose": "p"}).raise_for_status()
            operator.post("/api/deployments", json={**plan, "name": "axis", "cameras": {"a": camera}}).raise_for_status()
            shown = operator.get("/api/deployments").text
            return ("password shown" if "hunter2" in shown else "stripped"), "hunter2" not in shown
        self.check("8", "camera password in the query", "not shown", query_password)

        self.check("9", "password 'password1234'", "422", lambda: self._status(self.client("admin-1").post(
            "/api/users", json={"name": "weak", "role": "operator", "password": "password1234"}), 422))

        self.check("13", "alert id 2^64", "422", lambda: self._status(operator.get(f"/api/alerts/{2**64}"), 422))
        self.check("13", "audit since without a zone", "422", lambda: self._status(
            self.client("auditor-1").get("/api/audit", params={"since": "2026-01-01T00:00"}), 422))
        self.check("13", "lone surrogate before log-in", "422", lambda: self._status(httpx.post(
            f"{self.url}/api/session", content=b'{"name": "\\ud800", "password": "x"}', headers=json_type), 422))
        self.check("14", "/login?next=/%09/evil.example", "stays on site", lambda: (
            (location := operator.get("/login", params={"next": "/\t/evil.example/phish"}, follow_redirects=False).headers.get("location", "")),
            "evil" not in location))
        self.check("15", "5 MB purpose", "413 or 422", lambda: self._status(operator.post(
            "/api/deployments", json={**plan, "name": "big", "purpose": "x" * (5 * MB), "cameras": {"a": "0"}}), 413, 422))
        self.check("15", "20 anonymous CSV downloads", "at most 1 audit entry", self._csv_flood)
        self.check("16", "watchlist named night/ops", "422", lambda: self._status(self.client("ao-1").post(
            "/api/watchlists", json={"name": "night/ops", "purpose": "p"}), 422))
        self.check("16", "watchlist name with a right-to-left override", "422", lambda: self._status(self.client("ao-1").post(
            "/api/watchlists", json={"name": "ab\u202ecd", "purpose": "p"}), 422))
        self.check("2", "an administrator makes a token for op-1", "403", lambda: self._status(
            self.client("admin-1").post("/api/users/op-1/tokens", json={"label": "as op-1"}), 403))
        self.check("10", "the command line without a token", "exit 2, names openfrt login", self._cli_without_token)
        self._authority()
        # Last, as they change the server's state: a disabled officer, a client that guessed.
        self.check("6", "stream of a user then disabled", "ends within 10 s", self._stream_outlives_user)
        self.check("9", "80 parallel guesses, then the right password", "throttled, locked", self._guesses)

    def _cli_without_token(self) -> tuple[str, bool]:
        env = {key: value for key, value in os.environ.items() if key != "OPENFRT_TOKEN"}
        done = subprocess.run([sys.executable, "-m", "openfrt", "alerts", "list"], env={**env, "OPENFRT_HOME": str(self.home)},
                              capture_output=True, text=True, timeout=300)
        return f"exit {done.returncode}", done.returncode == 2 and "openfrt login" in done.stderr

    def _authority(self) -> None:
        """Findings 10 and 3: nobody authorises their own plan, and a threshold below the floor
        needs a second authorising officer's approval before anyone may authorise it."""
        officer, operator = self.client("ao-1"), self.client("op-1")
        officer.post("/api/watchlists", json={"name": "standing", "purpose": "p", "standing_reason": "fixtures"}).raise_for_status()
        plan = {"purpose": "p", "location": "l", "watchlist": "standing", "cameras": {"a": "0"}}
        officer.post("/api/deployments", json={"name": "own", **plan}).raise_for_status()
        self.check("10", "an authorising officer authorises their own plan", "403", lambda: self._status(
            officer.post("/api/deployments/own/authorise", json={"reason": "r"}), 403))
        planned = operator.post("/api/deployments", json={"name": "low", **plan, "threshold": 0.05})
        self.check("3", "threshold 0.05 authorised without a second officer", "refused (403 or 422)", lambda: self._status(
            planned if planned.status_code != 201 else officer.post("/api/deployments/low/authorise", json={"reason": "r"}), 403, 422))

    @staticmethod
    def _status(answer: httpx.Response, *expected: int) -> tuple[str, bool]:
        return str(answer.status_code), answer.status_code in expected

    def _stream_outlives_user(self) -> tuple[str, bool]:
        admin, officer = self.client("admin-1"), self.client("eo-1")
        ended = threading.Event()

        def listen() -> None:
            with officer.stream("GET", "/api/alerts/stream", timeout=httpx.Timeout(30)) as events:
                for _ in events.iter_lines():
                    pass
            ended.set()

        threading.Thread(target=listen, daemon=True).start()
        time.sleep(1)
        admin.post("/api/users/eo-1/disable").raise_for_status()
        started = time.monotonic()
        closed = ended.wait(10)
        return (f"ended after {time.monotonic() - started:.1f} s" if closed else "still open after 10 s"), closed

    def _guesses(self) -> tuple[str, bool]:
        statuses: list[int] = []
        threads = [threading.Thread(target=lambda: statuses.append(httpx.post(
            f"{self.url}/api/session", json={"name": "auditor-1", "password": "guess"}, timeout=60).status_code)) for _ in range(80)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        right = httpx.post(f"{self.url}/api/session", json={"name": "auditor-1", "password": PASSWORD}, timeout=60).status_code
        summary = f"{statuses.count(401)}×401 {statuses.count(429)}×429, then {right}"
        # Guesses wait in line for the growing delays: a few password checks get through as
        # earlier delays run out while the burst is served, never the 80 of an unthrottled server.
        return summary, statuses.count(401) < 10 and right in (423, 429)

    def _csv_flood(self) -> tuple[str, bool]:
        for _ in range(20):
            httpx.get(f"{self.url}/api/records.csv", timeout=60).raise_for_status()
        with RecordStore.open(self.home) as store, store.transaction() as session:
            entries = len(list_events(session, action="records.export", limit=1000))
        return f"{entries} entries", entries <= 1


def _clip(seconds: int) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for index in range(seconds * 10):
            output.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((64, 64, 3), index % 250, np.uint8), format="rgb24")))
        output.mux(stream.encode(None))
    return buffer.getvalue()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="Keep the data directory and the server's log.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="openfrt-attacks-"))
    home = work / "home"
    with RecordStore.open(home) as store:
        users = UserService(store)
        for name, role in USERS.items():
            users.create(name, role, PASSWORD, actor="attack replay")
    port = _free_port()
    env = {**os.environ, "OPENFRT_HOME": str(home), "OPENFRT_ALLOWED_NETWORKS": "10.0.0.0/8"}
    log = (work / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "openfrt", "serve", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/api/setup", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"openfrt serve did not start: see {work / 'server.log'}")
            time.sleep(0.3)
        replay = Replay(url, home)
        replay.all()
    finally:
        server.terminate()
        server.wait(30)
        log.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    table = Table(title=f"issue 14 attacks replayed against openfrt serve ({url})")
    for column in ("finding", "attack", "a safe server", "this server", "held"):
        table.add_column(column)
    for finding, attack, expected, got, held in replay.rows:
        table.add_row(finding, attack, expected, got, "[green]yes[/green]" if held else "[red]NO[/red]")
    Console().print(table)
    if args.keep:
        Console().print(f"data directory and server log kept in {work}")
    raise SystemExit(0 if all(row[4] for row in replay.rows) else 1)


if __name__ == "__main__":
    main()
