"""The issue's check, end to end: a real ``openfrt serve`` killed with SIGKILL in the middle of a
deployment and started again resumes what it ran (and ends, as interrupted, what it may not
resume); a real ``openfrt live`` killed with SIGKILL is ended by ``openfrt deployments recover``.
The server on SQLite and PostgreSQL, with a video-file camera and a password-protected HTTP camera."""

from __future__ import annotations

import base64
import csv
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import cv2
import httpx
import numpy as np
import pytest
from sqlalchemy import select
from cli_users import as_user, authorised_deployment

from openfrt.gallery import Gallery, ImageToEnrol, SubjectInfo
from openfrt.live.deployments import DeploymentService
from openfrt.live.leases import LEASE_SECONDS_ENV
from openfrt.live.recovery import Recovery
from openfrt.records import Category, RecordNotFoundError, RecordStore, verify_chain
from openfrt.records.audit import list_events
from openfrt.records.models import Alert, DeploymentCamera, DeploymentLease, utc_now
from openfrt.records.users import Role, UserService
from openfrt.vision import EngineConfig, FaceEngine
from test_keys import sealed_values
from test_live_pipeline import LFW, UTK
from test_records import database_url, home  # noqa: F401 - the SQLite/PostgreSQL fixtures

LEASE = 3.0
PASSWORD = "correct horse battery"
CAMERA_CREDENTIALS = ("officer", "s3cret-pw")
REFERENCE = LFW / "Colin_Powell" / "Colin_Powell_0001.jpg"
FPS = 10.0


@pytest.fixture
def faces() -> tuple[Path, Path]:
    if not (LFW.exists() and UTK.exists()):
        pytest.skip(f"needs {LFW} and {UTK} (the shared test data beside the project), which are absent")
    return REFERENCE, min(UTK.glob("*.jpg"))


def comings_and_goings(faces: tuple[Path, Path], seconds: float) -> list[np.ndarray]:
    """RGB frames at :data:`FPS`: both faces in view for 1 s, then nobody for 1.5 s, repeated, so
    tracks keep ending (faces scanned) and the watchlisted one keeps alerting."""
    crops = [cv2.cvtColor(cv2.resize(cv2.imread(str(face)), (160, 160)), cv2.COLOR_BGR2RGB) for face in faces]
    frames = []
    for index in range(int(seconds * FPS)):
        rgb = np.full((360, 640, 3), 90, np.uint8)
        if (index / FPS) % 2.5 < 1.0:
            for column, crop in enumerate(crops):
                x = 60 + 300 * column + index % 10
                rgb[100:260, x : x + 160] = crop
        frames.append(rgb)
    return frames


def write_video(path: Path, frames: list[np.ndarray], container_format: str | None = None) -> Path:
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream("mpeg4", rate=int(FPS))
        stream.width, stream.height, stream.pix_fmt, stream.bit_rate = 640, 360, "yuv420p", 4_000_000
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))
    return path


@contextmanager
def protected_camera(clip: bytes, seconds: float) -> Iterator[str]:
    """An HTTP camera needing a password: each connection gets ``clip`` (``seconds`` long) at
    about real time, then ends (the source reconnects). Yields its URL with the credentials."""
    expected = "Basic " + base64.b64encode(":".join(CAMERA_CREDENTIALS).encode()).decode()

    class Camera(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server interface
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.end_headers()
            chunk = max(1, len(clip) // 50)
            try:
                for start in range(0, len(clip), chunk):
                    self.wfile.write(clip[start : start + chunk])
                    time.sleep(seconds / 50)
            except OSError:
                pass  # the server reading it was killed

        def log_message(self, *_: object) -> None:
            pass

    camera = ThreadingHTTPServer(("127.0.0.1", 0), Camera)
    threading.Thread(target=camera.serve_forever, daemon=True).start()
    try:
        yield f"http://{':'.join(CAMERA_CREDENTIALS)}@127.0.0.1:{camera.server_address[1]}/live.ts"
    finally:
        camera.shutdown()
        camera.server_close()


def prepare(home: Path, cameras: dict[str, str]) -> str:  # noqa: F811
    """Users, a standing watchlist holding the reference face, and two deployments officer-1
    planned and officer-2 authorised: 'killme' (planned for hours) and 'closing' (its window
    ends in 25 s). Returns officer-1's API token."""
    with RecordStore.open(home) as store:
        users = UserService(store)
        for officer in ("officer-1", "officer-2"):
            users.create(officer, Role.authorising_officer, PASSWORD, actor="installer")
        _, token = users.create_token("officer-1", "crash test", actor="officer-1")
        gallery = Gallery(store, FaceEngine(EngineConfig.from_env()))
        gallery.create_watchlist("wanted", purpose="arrest warrants", authorised_by="officer-2", actor="officer-2",
                                 standing_reason="searched by several deployments of this test")
        enrolled = gallery.enrol(SubjectInfo("S1", "Colin Powell", Category.wanted), [ImageToEnrol(REFERENCE, "ref")],
                                 actor="officer-1", watchlist="wanted")
        assert enrolled.enrolled
        service = DeploymentService(store)
        for name, window in (("killme", timedelta(hours=4)), ("closing", timedelta(seconds=25))):
            service.create(name, purpose="find wanted people", location="Gate St", watchlist="wanted", actor="officer-1",
                           cameras=cameras, planned_end=utc_now() + window)
            service.authorise(name, actor="officer-2")
    return token


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``openfrt serve`` as its operators start it; yields the process and its URL once it answers."""
    port = free_port()
    with log.open("ab") as output:
        process = subprocess.Popen([sys.executable, "-m", "openfrt", "serve", "--port", str(port)], env=env,
                                   stdout=output, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait(lambda: process.poll() is None and answers(base), 120, lambda: f"openfrt serve did not answer: {log.read_text()}")
        yield process, base
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/api/records", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def wait(condition: Any, seconds: float, message: Any = "timed out") -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    raise AssertionError(message() if callable(message) else message)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """An ``openfrt`` command, as the user whose token ``env`` holds (or local administration)."""
    return subprocess.run([sys.executable, "-m", "openfrt", *args], env=env, capture_output=True, text=True, timeout=300)


def state(home: Path, name: str) -> dict[str, Any]:  # noqa: F811
    """What the database holds about a deployment, read as an auditor would."""
    with RecordStore.open(home) as store:
        service = DeploymentService(store)
        info = service.get(name)
        with store.transaction() as session:
            lease = session.scalar(select(DeploymentLease).where(DeploymentLease.deployment_id == info.id))
            sealed = session.scalars(select(DeploymentCamera.sealed_source).where(DeploymentCamera.deployment_id == info.id)).all()
            alerts = session.scalar(select(Alert.id).where(Alert.deployment_id == info.id).limit(1))
            chain = verify_chain(session)
            actions = [(event.action, event.reason) for event in reversed(list_events(session, target=name, limit=100))]
        return {"info": info, "lease": lease, "sealed": sealed, "alerted": alerts is not None, "chain": chain,
                "faces": sum(camera.faces_scanned for camera in info.cameras), "actions": actions,
                "record": service.record(name) if info.started_at else None}


def state_once_created(home: Path, name: str) -> dict[str, Any] | None:  # noqa: F811
    try:
        return state(home, name)
    except RecordNotFoundError:
        return None


def test_a_server_killed_mid_deployment_resumes_it_when_restarted_and_ends_what_it_may_not_resume(
    home: Path, database_url: str, faces: tuple[Path, Path], tmp_path: Path  # noqa: F811
) -> None:
    frames = comings_and_goings(faces, 90)
    video = write_video(tmp_path / "gate.avi", frames)
    clip = write_video(tmp_path / "street.ts", frames[:100], "mpegts").read_bytes()
    env = {**os.environ, "OPENFRT_HOME": str(home), "OPENFRT_DATABASE_URL": database_url, LEASE_SECONDS_ENV: str(LEASE)}
    env.pop("OPENFRT_KEY_FILE", None)
    with protected_camera(clip, 10.0) as street:
        token = prepare(home, {"gate": str(video), "street": street})
        bearer = {"Authorization": f"Bearer {token}"}
        with serving(env, tmp_path / "server.log") as (server, base):
            for name in ("killme", "closing"):
                started = httpx.post(f"{base}/api/deployments/{name}/start", headers=bearer, timeout=60)
                assert started.status_code == 200, started.text
            wait(lambda: (s := state(home, "killme"))["alerted"] and s["faces"] > 0 and state(home, "closing")["faces"] > 0, 60,
                 "no alert and no faces flushed")
            before = state(home, "killme")
            server.send_signal(signal.SIGKILL)
            server.wait(30)
        killed = state(home, "killme")
        assert killed["info"].status.value == "running" and killed["lease"] is not None  # stranded, for now
        assert killed["faces"] >= before["faces"] > 0 and killed["record"].alerts >= 1
        wait(lambda: utc_now() > state(home, "closing")["info"].planned_end, 30)  # the other one's window closes

        with serving(env, tmp_path / "server.log") as (server, base):
            resumed = wait(lambda: (d := httpx.get(f"{base}/api/deployments/killme", headers=bearer).json())["live"] and d, 60,
                           lambda: f"killme was not resumed: {(tmp_path / 'server.log').read_text()[-3000:]}")
            assert resumed["status"] == "running"
            wait(lambda: any(camera["frames"] > 10 for camera in
                             httpx.get(f"{base}/api/deployments/killme", headers=bearer).json()["live"]), 60)
            # The key is rotated while the server runs the resumed deployment: it keeps serving.
            rotated = cli(env, "keys", "rotate", "--settle", "1", "--json")  # local administration
            assert rotated.returncode == 0, rotated.stderr
            alerts_before = len(httpx.get(f"{base}/api/alerts", params={"deployment": "killme"}, headers=bearer).json())
            newest = wait(lambda: (listed := httpx.get(f"{base}/api/alerts", params={"deployment": "killme"}, headers=bearer).json())
                          and len(listed) > alerts_before and listed[-1], 60, "no alert after the key rotation")
            for alert in (1, newest["id"]):  # one from before the rotation, one raised after it
                image = httpx.get(f"{base}/api/alerts/{alert}/media/probe_crop", headers=bearer)
                assert image.status_code == 200 and image.content[:2] == b"\xff\xd8"
            stopped = httpx.post(f"{base}/api/deployments/killme/stop", json={"reason": "the test is over"}, headers=bearer, timeout=60)
            assert stopped.status_code == 200, stopped.text
            closing = wait(lambda: (s := state(home, "closing"))["info"].status.value == "ended" and s, 30)
            csv_rows = httpx.get(f"{base}/api/records.csv").text.splitlines()
            report = httpx.get(f"{base}/transparency").text
            refused = httpx.post(f"{base}/api/deployments/closing/stop", json={"reason": "the test is over"}, headers=bearer)

    after = state(home, "killme")
    with RecordStore.open(home) as store:  # the rotation and the writes after it: nothing under the old key
        assert all(store.cipher.is_current(sealed) for sealed in sealed_values(store).values())
    record = after["record"]
    assert not record.interrupted and record.status.value == "ended"
    assert record.alerts >= killed["record"].alerts and record.faces_scanned >= killed["faces"]
    assert record.gaps >= 2 and record.gap_seconds >= 2 * (LEASE - 1)  # each camera's time without a process
    assert after["sealed"] == [None, None] and after["lease"] is None and after["chain"].ok
    actions = [action for action, _ in after["actions"]]
    assert actions.count("deployment.start") == 1 and actions.count("deployment.resume") == 1
    assert actions[-2:] == ["deployment.end", "deployment.snapshot_destroy"]

    assert closing["record"].interrupted and closing["sealed"] == [None, None] and closing["chain"].ok
    assert "planned window ended" in (closing["info"].end_reason or "")
    assert [action for action, _ in closing["actions"]][-2:] == ["deployment.end", "deployment.snapshot_destroy"]
    assert closing["record"].faces_scanned > 0 and closing["record"].gaps >= 2
    rows = list(csv.DictReader(csv_rows))
    assert {row["deployment"]: row["interrupted"] for row in rows} == {"closing": "True", "killme": "False"}
    assert all(row["audit_anchor"] for row in rows)
    assert refused.status_code == 422 and "not running" in refused.json()["detail"]
    rows = {name: row for name, row in re.findall(r'data-deployment="([^"]+)">(.*?)</tr>', report, re.S)}
    assert 'data-status="interrupted"' in rows["closing"] and 'data-status="interrupted"' not in rows["killme"]
    assert CAMERA_CREDENTIALS[1] not in (tmp_path / "server.log").read_text()


def test_a_killed_openfrt_live_is_ended_by_deployments_recover(
    faces: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite only: the recovery it runs is the server's, tested on both databases above and in test_recovery.py."""
    live_home = tmp_path / "home"
    monkeypatch.delenv("OPENFRT_DATABASE_URL", raising=False)
    monkeypatch.delenv("OPENFRT_KEY_FILE", raising=False)
    video = write_video(tmp_path / "gate.avi", comings_and_goings(faces, 60))
    env = {**os.environ, "OPENFRT_HOME": str(live_home), LEASE_SECONDS_ENV: str(LEASE)}
    prepare(live_home, {})
    env = as_user(env, Role.operator)
    authorised_deployment(env, "op-live", "wanted", {"gate": str(video)})
    command = [sys.executable, "-m", "openfrt", "live", "--deployment", "op-live", "--realtime", "--events-json"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait(lambda: (s := state_once_created(live_home, "op-live")) and s["alerted"] and s["faces"] > 0, 120, "openfrt live raised nothing")
    except BaseException:
        process.kill()
        raise
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)

    with RecordStore.open(live_home) as store:  # at once: its lease has not lapsed yet, it might be alive
        assert Recovery(DeploymentService(store)).run().interrupted == ()
    time.sleep(LEASE + 0.5)
    recovered = cli(env, "deployments", "recover", "--json")
    assert recovered.returncode == 0, recovered.stderr
    assert '"deployment":"op-live"' in recovered.stdout and "openfrt live" in recovered.stdout

    after = state(live_home, "op-live")
    assert after["record"].interrupted and after["record"].faces_scanned > 0 and after["record"].alerts >= 1
    assert after["record"].gaps == 1 and after["lease"] is None and after["chain"].ok
    assert [action for action, _ in after["actions"]][-2:] == ["deployment.end", "deployment.snapshot_destroy"]
    exported = cli(env, "deployments", "export-csv")
    assert exported.returncode == 0, exported.stderr
    (exported_row,) = [row for row in csv.DictReader(exported.stdout.splitlines()) if row["deployment"] == "op-live"]
    assert exported_row["interrupted"] == "True" and exported_row["audit_anchor"] == after["record"].audit_anchor
