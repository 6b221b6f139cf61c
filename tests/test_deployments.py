"""Live deployments: authority before start, the watchlist snapshot and its destruction, alerts
from many camera threads, adjudication, retention of alert images, the published record — on
SQLite and PostgreSQL — and the commands an officer runs, in a subprocess."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import stat
import asyncio
import base64
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from datetime import datetime, timedelta, timezone
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select, update

from openfrt.api.feed import AlertFeed
from openfrt.gallery import Gallery
from openfrt.live import deployments
from openfrt.live.alerts import AdjudicationConflictError, AlertService
from openfrt.live.deployments import DeploymentNotRunningError, DeploymentService
from openfrt.live.events import AlertEvent
from openfrt.live.retention import run_retention
from openfrt.live import supervisor as supervisor_module
from openfrt.live.supervisor import LiveSupervisor
from openfrt.records import (
    AuditEvent,
    Category,
    InvalidRecordError,
    RecordNotFoundError,
    RecordStore,
    ReferenceImage,
    ReferenceTemplate,
    Role,
    Subject,
    Watchlist,
    WatchlistExpiredError,
    database,
)
from openfrt.records.models import AlertOutcome, AlertStatus, Deployment, DeploymentCamera, DeploymentStatus, MediaKind, utc_now
from openfrt.vision import EngineConfig, FaceEngine, Template
from cli_users import as_user, user_name
from test_gallery_cli import env, openfrt  # noqa: F401 - the subprocess runner and its environment
from test_live_pipeline import wait_for
from test_records import database_url, home, raw_database_bytes, store  # noqa: F401 - the SQLite/PostgreSQL fixtures

SUBJECTS = ("alpha", "bravo", "charlie")
CAMERAS = {"north": "rtsp://admin:secret@10.0.0.5/stream", "south": "0"}
START = datetime(2026, 6, 1, 18, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def camera_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cameras planned here sit on 10.0.0.0/8, and the password-protected one is a local
    HTTP server: allowed as an administrator would (see openfrt.live.source_policy)."""
    monkeypatch.setenv("OPENFRT_ALLOWED_NETWORKS", "10.0.0.0/8,127.0.0.0/8")


@pytest.fixture
def gallery(store: RecordStore, hog_engine: FaceEngine) -> Gallery:  # noqa: F811
    return make_gallery(store, hog_engine)


def make_gallery(store: RecordStore, engine: FaceEngine) -> Gallery:  # noqa: F811
    """Watchlist ``op`` with alpha and bravo; charlie enrolled but not on it. Templates are random
    (the records side never looks at faces), so no image work is needed."""
    gallery = Gallery(store, engine)
    gallery.create_watchlist("op", purpose="find wanted people", authorised_by="Supt A", actor="PC 1",
                             standing_reason="searched by the tests' many deployments")
    rng = np.random.default_rng(3)
    with store.transaction() as session:
        for subject in SUBJECTS:
            template = Template(rng.normal(size=128), *gallery.model_id.split("@"))
            reference = ReferenceImage(
                image=store.cipher.encrypt(b"jpeg"), media_type="image/jpeg", face_box=[0, 0, 1, 1],
                templates=[ReferenceTemplate(model_id=gallery.model_id, vector=store.seal_template(template))],
            )
            session.add(Subject(id=subject, display_name=subject.title(), category=Category.wanted, images=[reference]))
    gallery.add_to_watchlist("op", ["alpha", "bravo"], actor="PC 1")
    return gallery


@pytest.fixture
def service(store: RecordStore, gallery: Gallery) -> DeploymentService:  # noqa: F811
    return DeploymentService(store, gallery)


def plan(service: DeploymentService, name: str = "dep", authorised_by: str | None = "Supt A", **overrides: object) -> None:
    """PC 1 plans ``name``; ``authorised_by`` (another user) authorises it, unless None."""
    arguments: dict[str, object] = {
        "purpose": "wanted offenders at the match", "location": "Stadium Way",
        "watchlist": "op", "actor": "PC 1", "cameras": CAMERAS, "latitude": 51.5, "longitude": -0.1,
        **overrides,
    }
    service.create(name, **arguments)  # type: ignore[arg-type]
    if authorised_by is not None:
        service.authorise(name, actor=authorised_by)


def jpeg(seed: int) -> bytes:
    """A small JPEG of noise: distinctive bytes to look for in the database."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(48, 48, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def event(camera: str = "north", track: int = 1, subject: str = "alpha", when: datetime = START, seed: int = 0) -> AlertEvent:
    return AlertEvent(
        camera=camera, track_id=track, subject=subject, similarity=0.95, source_time=12.5, wall_time=when,
        probe_crop=jpeg(seed), frame=jpeg(seed + 1000), candidates=((subject, 0.95), ("bravo", 0.7)),
    )


def audit(store: RecordStore, action: str) -> list[AuditEvent]:  # noqa: F811
    with store.transaction() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


# -- authority and the snapshot --------------------------------------------------------------


def test_a_deployment_needs_authority_and_a_usable_watchlist(service: DeploymentService, store: RecordStore, gallery: Gallery) -> None:  # noqa: F811
    for missing in ({"watchlist": ""}, {"purpose": ""}, {"location": ""}, {"latitude": None}):
        with pytest.raises(InvalidRecordError):
            plan(service, **missing)
    with pytest.raises(RecordNotFoundError, match="no watchlist"):
        plan(service, watchlist="nope")
    assert service.list() == []

    plan(service, "no-officer")
    with store.transaction() as session:  # e.g. an authority withdrawn in the database
        session.execute(update(Deployment).where(Deployment.name == "no-officer").values(authorised_by=""))
    with pytest.raises(InvalidRecordError, match="authorising officer"):
        service.start("no-officer", "PC 1")
    plan(service, "no-cameras", cameras={})
    with pytest.raises(InvalidRecordError, match="no cameras"):
        service.start("no-cameras", "PC 1")

    plan(service, "expired")
    with store.transaction() as session:
        session.execute(update(Watchlist).where(Watchlist.name == "op").values(expires_at=utc_now() - timedelta(seconds=1)))
    with pytest.raises(WatchlistExpiredError):
        service.start("expired", "PC 1")
    gallery.create_watchlist("empty", purpose="p", authorised_by="Supt A", actor="PC 1")
    plan(service, "empty-list", watchlist="empty")
    with pytest.raises(InvalidRecordError, match="empty"):
        service.start("empty-list", "PC 1")
    assert {info.status for info in service.list()} == {DeploymentStatus.planned}


def test_snapshot_ignores_watchlist_edits_and_is_destroyed_at_the_end(service: DeploymentService, store: RecordStore, gallery: Gallery) -> None:  # noqa: F811
    plan(service)
    running = service.start("dep", "PC 1")
    assert (running.threshold, running.model_id, running.cameras) == (gallery.watchlist("op").threshold, gallery.model_id, ["north", "south"])
    probe = gallery.store.open_template(_sealed(store, "alpha"), gallery.model_id)
    before = running.matcher.rank(probe, 5)
    with pytest.raises(InvalidRecordError, match="starts only once"):
        service.start("dep", "PC 1")

    gallery.add_to_watchlist("op", ["charlie"], actor="PC 1")
    gallery.remove_subject("alpha", actor="PC 1")
    assert sorted(running.matcher.subjects) == ["alpha", "bravo"] and running.matcher.rank(probe, 5) == before
    assert all(matrix is not running.matcher for _, matrix in gallery._matrices.values())
    info = service.get("dep")
    assert info.watchlist_size == 2 and [c.source for c in info.cameras] == ["rtsp://10.0.0.5/stream", "0"]

    snapshot = running.matcher
    record = running.end("Insp B")
    assert len(running.matcher) == 0 and running.matcher is not snapshot
    (destroyed,) = audit(store, "deployment.snapshot_destroy")
    assert (destroyed.actor, destroyed.target, destroyed.details) == ("Insp B", "dep", {"watchlist": "op", "templates": 2})
    assert record.status is DeploymentStatus.ended and record.watchlist_size == 2 and record.authorised_by == "Supt A"
    with pytest.raises(DeploymentNotRunningError):
        running.add_faces_scanned("north", 1)
    with pytest.raises(DeploymentNotRunningError):
        running.end("Insp B")


def _sealed(store: RecordStore, subject: str) -> bytes:  # noqa: F811
    with store.transaction() as session:
        return session.scalars(select(ReferenceTemplate.vector).join(ReferenceImage).where(ReferenceImage.subject_id == subject)).one()


# -- alerts ----------------------------------------------------------------------------------


def test_a_reader_paging_by_alert_id_misses_no_alert_of_concurrent_deployments(service: DeploymentService, store: RecordStore) -> None:  # noqa: F811
    """Consoles follow alerts with ``after_id``; ids must become visible in order even when two
    deployments commit alerts at once (PostgreSQL assigns ids before commit)."""
    runnings = []
    for name in ("dep", "dep2"):
        plan(service, name)
        runnings.append(service.start(name, "PC 1"))
    raised: list[int] = []
    writing = threading.Event()

    def deployment(running: object, base: int) -> None:
        for number in range(60):
            raised.append(running.raise_alert(event("north", base + number, "alpha", seed=number % 7)))  # type: ignore[attr-defined]

    writers = [threading.Thread(target=deployment, args=(running, 1000 * index)) for index, running in enumerate(runnings * 2)]
    seen: list[int] = []
    alerts = AlertService(store)

    def follow() -> None:
        last = 0
        while writing.is_set() or last < max(raised, default=0):
            new = alerts.list(after_id=last, limit=50)
            seen.extend(alert.id for alert in new)
            last = new[-1].id if new else last
            # Consoles poll every 0.2 s. A loop that never pauses keeps the GIL from the thread
            # holding SQLite's write lock for 5 ms per statement, which starved writers for 10 s.
            time.sleep(0.001)

    writing.set()
    reader = threading.Thread(target=follow)
    reader.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    writing.clear()
    reader.join(60)
    assert len(raised) == 240 and sorted(seen) == sorted(raised)


def test_an_alert_waits_out_a_write_lock_held_beyond_the_busy_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hog_engine: FaceEngine) -> None:
    """Another process (the server, a retention run) holding SQLite's write lock for longer
    than the busy timeout must delay an alert, not lose it and end the deployment."""
    monkeypatch.delenv("OPENFRT_DATABASE_URL", raising=False)
    monkeypatch.delenv("OPENFRT_KEY_FILE", raising=False)
    monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", 50)
    with RecordStore.open(tmp_path / "home") as opened:
        service = DeploymentService(opened, make_gallery(opened, hog_engine))
        plan(service)
        running = service.start("dep", "PC 1")
        other = sqlite3.connect(str(opened.engine.url.database), isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.6, other.execute, ("COMMIT",))
        release.start()
        started = time.monotonic()
        alert_id = running.raise_alert(event())
        waited = time.monotonic() - started
        release.join()
        other.close()
        assert waited >= 0.5 and [alert.id for alert in AlertService(opened).list()] == [alert_id]
        assert running.end("PC 1").alerts == 1


def mpegts_clip(path: Path, frames: int = 50) -> bytes:
    """A short MPEG-TS video (streamable over plain HTTP, no seeking), written with PyAV."""
    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for index in range(frames):
            image = np.full((240, 320, 3), index * 4, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path.read_bytes()


def test_a_camera_password_is_kept_only_encrypted_opens_the_stream_when_started_and_is_destroyed_at_the_end(
    service: DeploymentService, store: RecordStore, tmp_path: Path  # noqa: F811
) -> None:
    """A deployment planned in the console starts later, in the server: it must still be able
    to log in to a password-protected camera, without the password being shown or published."""
    clip = mpegts_clip(tmp_path / "camera.ts")
    answered: list[int] = []

    class Camera(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server interface
            if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"officer:s3cret-pw").decode():
                answered.append(401)
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            answered.append(200)
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.send_header("Content-Length", str(len(clip)))
            self.end_headers()
            self.wfile.write(clip)

        def log_message(self, *_: object) -> None:
            pass

    camera = ThreadingHTTPServer(("127.0.0.1", 0), Camera)
    threading.Thread(target=camera.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{camera.server_address[1]}/live.ts"
    try:
        plan(service, cameras={"gate": url.replace("://", "://officer:s3cret-pw@")})
        (shown,) = service.get("dep").cameras
        assert shown.source == url
        with store.transaction() as session:
            (sealed,) = session.scalars(select(DeploymentCamera.sealed_source)).all()
        assert sealed is not None and b"s3cret-pw" not in sealed
        assert not any("s3cret-pw" in json.dumps(event.details) for event in audit(store, "deployment.create"))

        supervisor = LiveSupervisor(service, lambda: FaceEngine(EngineConfig(detector="hog", embedder="dlib-onnx")))
        supervisor.start("dep", "PC 1")
        assert wait_for(lambda: any(status.frames for status in supervisor.status("dep") or []), 30)
        supervisor.stop("dep", "PC 1")
    finally:
        camera.shutdown()
        camera.server_close()
    assert 200 in answered
    with store.transaction() as session:
        assert session.scalars(select(DeploymentCamera.sealed_source)).all() == [None]
    assert service.camera_sources("dep") == {"gate": url}


def test_the_server_opens_no_camera_of_a_deployment_nobody_authorised(
    service: DeploymentService, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    """Like ``openfrt live``, the server's supervisor checks the plan's authority before it
    opens any camera (a stream's reader connects at once): an unauthorised start must not reach
    a camera (security finding 10)."""
    opened: list[object] = []
    monkeypatch.setattr(supervisor_module, "open_sources", lambda cameras, **_: opened.append(cameras) or {})
    plan(service, authorised_by=None)
    supervisor = LiveSupervisor(service, lambda: FaceEngine(EngineConfig(detector="hog", embedder="dlib-onnx")))

    with pytest.raises(InvalidRecordError, match="no authorising officer"):
        supervisor.start("dep", "PC 1")

    assert opened == [] and supervisor.running() == []


def test_camera_threads_report_concurrently_and_the_record_counts_them(service: DeploymentService, store: RecordStore) -> None:  # noqa: F811
    plan(service)
    running = service.start("dep", "PC 1")
    ids: list[int] = []
    failures: list[BaseException] = []

    def camera(name: str, base: int) -> None:
        try:
            for number in range(10):
                running.add_faces_scanned(name, 3)
                running.add_frames_dropped(name, 1)
                ids.append(running.raise_alert(event(name, base + number, "bravo" if number % 2 else "alpha", seed=base + number)))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=camera, args=(name, 100 * index)) for index, name in enumerate(["north", "south"] * 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == [] and len(set(ids)) == 40
    running.record_gap("south", START, START + timedelta(seconds=90))
    with pytest.raises(InvalidRecordError, match="not part of"):
        running.add_faces_scanned("west", 1)
    with pytest.raises(InvalidRecordError, match="watchlist"):
        running.raise_alert(event(subject="charlie"))

    record = running.end("Insp B")
    assert (record.alerts, record.pending_alerts, record.faces_scanned, record.frames_dropped) == (40, 40, 120, 40)
    assert (record.gaps, record.gap_seconds, record.cameras) == (1, 90.0, 2)
    assert service.record("dep") == record
    assert {camera.name: camera.faces_scanned for camera in service.get("dep").cameras} == {"north": 60, "south": 60}
    raised = audit(store, "alert.raise")
    assert len(raised) == 40 and set(raised[0].details) == {"deployment", "camera", "track", "subject", "similarity"}


def test_a_verdict_is_never_replaced_unseen_by_an_officer_acting_on_a_stale_view(
    service: DeploymentService, store: RecordStore  # noqa: F811
) -> None:
    plan(service)
    running = service.start("dep", "PC 1")
    first = running.raise_alert(event(seed=1))
    alerts = AlertService(store)
    alerts.adjudicate(first, status=AlertStatus.confirmed_match, outcome=AlertOutcome.engaged, by="PC 2")
    # PC 3 saw the alert pending, and PC 4 thinks they are correcting a false alert: neither lands.
    with pytest.raises(AdjudicationConflictError, match=r"already confirmed_match \(engaged\), decided by PC 2 .*nothing was changed"):
        alerts.adjudicate(first, status=AlertStatus.false_alert, outcome=AlertOutcome.no_action, by="PC 3")
    with pytest.raises(AdjudicationConflictError, match="not false_alert as you saw it"):
        alerts.adjudicate(first, status=AlertStatus.no_further_action, correcting=AlertStatus.false_alert,
                          outcome=AlertOutcome.no_action, by="PC 4")
    second = running.raise_alert(event(track=2, seed=2))
    with pytest.raises(AdjudicationConflictError, match="no verdict to correct"):
        alerts.adjudicate(second, status=AlertStatus.false_alert, correcting=AlertStatus.confirmed_match,
                          outcome=AlertOutcome.no_action, by="PC 3")
    info = alerts.get(first)
    assert (info.status, info.outcome, info.adjudicated_by) == (AlertStatus.confirmed_match, AlertOutcome.engaged, "PC 2")
    assert alerts.get(second).status is AlertStatus.pending
    assert len(audit(store, "alert.adjudicate")) == 1

    # Officers at several consoles adjudicate the same pending alert at once: exactly one verdict
    # lands and the others are told who decided, on SQLite and PostgreSQL alike.
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def adjudicate(officer: str) -> None:
        barrier.wait()
        try:
            alerts.adjudicate(second, status=AlertStatus.false_alert, outcome=AlertOutcome.no_action, by=officer)
            outcomes.append("kept")
        except AdjudicationConflictError:
            outcomes.append("refused")

    threads = [threading.Thread(target=adjudicate, args=(f"PC {n}",)) for n in range(10, 16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["kept"] + ["refused"] * 5
    assert [e.details["re_adjudication"] for e in audit(store, "alert.adjudicate")] == [False, False]
    running.end("Insp B")


def test_a_changed_verdict_reaches_listening_consoles_and_one_whose_loop_has_closed_is_dropped(
    service: DeploymentService, store: RecordStore  # noqa: F811
) -> None:
    plan(service)
    running = service.start("dep", "PC 1")
    alerts = AlertService(store)
    feed = AlertFeed(alerts, poll_seconds=60)

    async def subscribe() -> object:
        return feed.subscribe()

    closed, open_loop = asyncio.new_event_loop(), asyncio.new_event_loop()
    gone = closed.run_until_complete(subscribe())
    closed.close()  # a console whose connection's loop has ended without unsubscribing
    listening = open_loop.run_until_complete(subscribe())
    first = running.raise_alert(event(seed=1))
    data = feed.publish_change(alerts.adjudicate(first, status=AlertStatus.false_alert, outcome=AlertOutcome.no_action, by="PC 2"))
    open_loop.run_until_complete(asyncio.sleep(0))  # the loop runs the hand-over it was given
    assert data["status"] == "false_alert" and listening.queue.get_nowait() == {"event": "alert_changed", **data}
    assert gone not in feed._subscribers and listening in feed._subscribers
    open_loop.close()
    running.end("Insp B")


def test_adjudication_moves_forward_only_and_corrections_are_audited(service: DeploymentService, store: RecordStore) -> None:  # noqa: F811
    plan(service)
    running = service.start("dep", "PC 1")
    first, second = running.raise_alert(event(seed=1)), running.raise_alert(event(track=2, seed=2))
    alerts = AlertService(store)
    with pytest.raises(InvalidRecordError, match="verdict"):
        alerts.adjudicate(first, outcome=AlertOutcome.engaged, by="PC 2")  # no status for a pending alert
    confirmed = alerts.adjudicate(first, status=AlertStatus.confirmed_match, outcome=AlertOutcome.engaged, by="PC 2", note="stopped")
    assert (confirmed.status, confirmed.engaged, confirmed.adjudicated_by) == (AlertStatus.confirmed_match, True, "PC 2")
    with pytest.raises(InvalidRecordError, match="never returns to pending"):
        alerts.adjudicate(first, status=AlertStatus.pending, outcome=AlertOutcome.no_action, by="PC 2")
    alerts.adjudicate(second, status=AlertStatus.false_alert, outcome=AlertOutcome.no_action, by="PC 3", engaged=True)
    assert running.end("Insp B").engagements == 2

    with pytest.raises(InvalidRecordError, match="a correction needs its reason"):
        alerts.adjudicate(first, correcting=AlertStatus.confirmed_match, outcome=AlertOutcome.arrested, by="Sgt C")
    arrested = alerts.adjudicate(first, correcting=AlertStatus.confirmed_match, outcome=AlertOutcome.arrested, by="Sgt C",
                                 note="warrant executed", reason="the arrest came after the first verdict")
    assert arrested.status is AlertStatus.confirmed_match and arrested.outcome is AlertOutcome.arrested
    record = service.record("dep")  # the published record follows the correction
    assert (record.true_alerts, record.false_alerts, record.arrests, record.engagements) == (1, 1, 1, 2)
    events = audit(store, "alert.adjudicate")
    assert [e.details["re_adjudication"] for e in events] == [False, False, True]
    assert events[-1].details["previous"] == {"status": "confirmed_match", "outcome": "engaged", "engaged": True, "by": "PC 2", "note": "stopped"}
    assert [a.id for a in alerts.list("dep", AlertStatus.false_alert)] == [second]


# -- retention -------------------------------------------------------------------------------


def test_retention_deletes_due_images_keeps_held_ones_and_audits_without_data(service: DeploymentService, store: RecordStore) -> None:  # noqa: F811
    plan(service)
    running = service.start("dep", "PC 1")
    old, held, _recent = (running.raise_alert(event(track=days, when=START + timedelta(days=days), seed=days)) for days in (0, 5, 40))
    alerts = AlertService(store)
    assert alerts.media(old, MediaKind.probe_crop, actor="PC 2", reason="review") == jpeg(0)
    assert jpeg(0)[200:264] not in raw_alert_bytes(store)  # encrypted at rest
    sealed = _media_ciphertext(store, old)
    alerts.adjudicate(old, status=AlertStatus.confirmed_match, outcome=AlertOutcome.arrested, by="PC 2")
    alerts.hold(held, reason="complaint IOPC/123", by="Sgt C")
    running.end("Insp B")

    report = run_retention(store, actor="retention-job", now=START + timedelta(days=45))
    assert report.deleted == ((old, "frame"), (old, "probe_crop")) and report.held == (held,)
    both = (MediaKind.frame, MediaKind.probe_crop)
    assert [a.media for a in alerts.list()] == [(), both, both]
    with pytest.raises(RecordNotFoundError, match="deleted by retention"):
        alerts.media(old, MediaKind.frame, actor="PC 2")
    if store.engine.dialect.name == "sqlite":  # secure_delete: not even the ciphertext remains
        assert sealed[20:84] not in raw_database_bytes(store)
    deletions = audit(store, "retention.delete")
    assert [(e.target, e.details["kind"]) for e in deletions] == [(f"alert:{old}", "frame"), (f"alert:{old}", "probe_crop")]
    assert all(len(json.dumps(e.details)) < 400 for e in deletions)
    assert service.record("dep").arrests == 1 and service.record("dep").alerts == 3  # the record is unchanged

    alerts.release(held, by="Sgt C", reason="complaint closed")
    assert run_retention(store, actor="retention-job", days=31, now=START + timedelta(days=45)).deleted == ((held, "frame"), (held, "probe_crop"))
    assert [bool(a.media) for a in alerts.list()] == [False, False, True]
    assert [e.action for e in audit(store, "alert.media_view")] == ["alert.media_view"]


def raw_alert_bytes(store: RecordStore) -> bytes:  # noqa: F811
    """The database as an attacker would read it: the SQLite file, or PostgreSQL's media column."""
    if store.engine.dialect.name == "sqlite":
        return raw_database_bytes(store)
    with store.engine.connect() as connection:
        return b"".join(bytes(row[0]) for row in connection.exec_driver_sql("SELECT data FROM alert_media"))


def _media_ciphertext(store: RecordStore, alert_id: int) -> bytes:  # noqa: F811
    with store.engine.connect() as connection:
        return bytes(connection.exec_driver_sql(f"SELECT data FROM alert_media WHERE alert_id = {alert_id} AND kind = 'frame'").scalar_one())


def test_record_and_csv_publish_the_counts(service: DeploymentService, store: RecordStore, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setattr(deployments, "FLUSH_INTERVAL_SECONDS", 0.0)  # counters reach the database at once
    plan(service)
    running = service.start("dep", "PC 1")
    plan(service, "later")
    with pytest.raises(InvalidRecordError, match="not started"):
        service.record("later")
    running.add_faces_scanned("north", 500)
    first, second = running.raise_alert(event(seed=1)), running.raise_alert(event(seed=2))
    provisional = service.record("dep")
    assert (provisional.status, provisional.faces_scanned, provisional.alerts) == (DeploymentStatus.running, 500, 2)
    running.end("Insp B")
    AlertService(store).adjudicate(first, status=AlertStatus.confirmed_match, outcome=AlertOutcome.words_of_advice, by="PC 2")
    AlertService(store).adjudicate(second, status=AlertStatus.false_alert, outcome=AlertOutcome.no_action, by="PC 2")
    stream = io.StringIO()
    assert service.export_csv(stream) == 1
    (row,) = csv.DictReader(io.StringIO(stream.getvalue()))
    assert row == {
        "deployment": "dep", "date": service.get("dep").started_at.date().isoformat(),  # type: ignore[union-attr]
        "location": "Stadium Way", "purpose": "wanted offenders at the match", "watchlist_size": "2",
        "faces_scanned": "500", "alerts": "2", "true_alerts": "1", "false_alerts": "1", "engagements": "1", "arrests": "0",
        "interrupted": "False",
        "audit_anchor": service.record("dep").audit_anchor,
    }


# -- the commands ----------------------------------------------------------------------------


@pytest.fixture
def old_alert(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, hog_engine: FaceEngine) -> int:  # noqa: F811
    """In ``env``'s SQLite data directory: an ended deployment with an old and a recent alert;
    returns the old one's id."""
    monkeypatch.delenv("OPENFRT_DATABASE_URL", raising=False)
    monkeypatch.delenv("OPENFRT_KEY_FILE", raising=False)
    with RecordStore.open(env["OPENFRT_HOME"]) as opened:
        service = DeploymentService(opened, make_gallery(opened, hog_engine))
        plan(service)
        running = service.start("dep", "PC 1")
        running.add_faces_scanned("north", 7)
        old = running.raise_alert(event(when=START))
        running.raise_alert(event(track=2, when=utc_now(), seed=5))
        running.end("Insp B")
    return old


def test_officer_commands(env: dict[str, str], old_alert: int, tmp_path: Path) -> None:  # noqa: F811
    old = old_alert
    operator, second = as_user(env, Role.operator), as_user(env, Role.engagement_officer)
    admin, officer = as_user(env, Role.admin), as_user(env, Role.authorising_officer)
    listed = openfrt(operator, "alerts", "list", "--deployment", "dep", "--status", "pending", "--json")
    assert listed.returncode == 0, listed.stderr
    alerts = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [a["id"] for a in alerts] == [old, old + 1] and alerts[0]["media"] == ["frame", "probe_crop"]

    refused = openfrt(operator, "alerts", "adjudicate", str(old), "--outcome", "arrested", "--json")
    assert refused.returncode == 1 and "verdict" in json.loads(refused.stdout)["error"]
    done = openfrt(operator, "alerts", "adjudicate", str(old), "--status", "confirmed_match", "--outcome", "arrested", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "confirmed_match"
    stale = openfrt(second, "alerts", "adjudicate", str(old), "--status", "false_alert", "--outcome", "no_action", "--json")
    assert stale.returncode == 1
    assert f"already confirmed_match (arrested), decided by {user_name(Role.operator)}" in json.loads(stale.stdout)["error"]
    unexplained = openfrt(second, "alerts", "adjudicate", str(old), "--correcting", "confirmed_match", "--outcome", "arrested", "--json")
    assert unexplained.returncode == 1 and "a correction needs its reason" in json.loads(unexplained.stdout)["error"]
    corrected = openfrt(second, "alerts", "adjudicate", str(old), "--correcting", "confirmed_match", "--outcome", "arrested",
                        "--note", "warrant executed", "--reason", "the outcome was recorded before the arrest", "--json")
    assert corrected.returncode == 0, corrected.stderr
    assert {key: json.loads(corrected.stdout)[key] for key in ("status", "note", "adjudicated_by")} == {
        "status": "confirmed_match", "note": "warrant executed", "adjudicated_by": user_name(Role.engagement_officer)}

    swept = openfrt(admin, "retention", "run", "--now", (START + timedelta(days=40)).isoformat(), "--days", "31", "--json")
    assert swept.returncode == 0, swept.stderr
    assert json.loads(swept.stdout)["deleted"] == [{"alert": old, "kind": "frame"}, {"alert": old, "kind": "probe_crop"}]

    viewed = openfrt(operator, "alerts", "media", str(old + 1), "--kind", "frame", "-o", str(tmp_path / "frame.jpg"), "--json")
    assert viewed.returncode == 0, viewed.stderr
    assert (tmp_path / "frame.jpg").read_bytes() == jpeg(1005) and stat.S_IMODE((tmp_path / "frame.jpg").stat().st_mode) == 0o600
    record = openfrt(operator, "deployments", "record", "dep", "--json")
    assert record.returncode == 0, record.stderr
    published = json.loads(record.stdout)
    assert (published["alerts"], published["true_alerts"], published["arrests"], published["faces_scanned"]) == (2, 1, 1, 7)
    exported = openfrt(operator, "deployments", "export-csv", str(tmp_path / "records.csv"))
    assert exported.returncode == 0, exported.stderr
    (row,) = csv.DictReader((tmp_path / "records.csv").open())
    assert (row["deployment"], row["alerts"], row["arrests"]) == ("dep", "2", "1")

    created = openfrt(
        operator, "deployments", "create", "later", "--watchlist", "op", "--location", "High St", "--purpose", "p",
        "--camera", "gate=rtsp://10.0.0.9/s", "--lat", "51.5", "--lon", "-0.1", "--planned-start", "2026-07-01T10:00+00:00", "--json",
    )
    assert created.returncode == 0, created.stderr
    info = json.loads(created.stdout)
    assert info["cameras"] == [{"name": "gate", "source": "rtsp://10.0.0.9/s", "faces_scanned": 0, "frames_dropped": 0}]
    assert (info["status"], info["threshold"], info["planned_start"]) == ("planned", None, "2026-07-01T10:00:00+00:00")
    assert (info["planned_by"], info["authorised_by"]) == (user_name(Role.operator), None)

    authorised = openfrt(officer, "deployments", "authorise", "later", "--json")
    assert authorised.returncode == 0, authorised.stderr
    assert json.loads(authorised.stdout)["authorised_by"] == user_name(Role.authorising_officer)
    assert json.loads(authorised.stdout)["authorised_at"]
    again = openfrt(officer, "deployments", "authorise", "later", "--json")
    assert again.returncode == 0  # a planned deployment may be re-authorised before it starts
