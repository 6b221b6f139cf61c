"""A full disk or a database that goes away leaves the records honest: a running deployment's
writes are retried, and if the store stays away the deployment stops and its end — with the
reason and every write it was refused — is recorded once the store is back; nothing is ever
half-written. On a real small filesystem (tmpfs, for SQLite) and a real PostgreSQL server
stopped mid-run (a throwaway cluster: the shared one on port 5432 serves other work)."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from openfrt.gallery import Gallery, ImageToEnrol, SubjectInfo
from openfrt.live import deployments
from openfrt.live.deployments import DeploymentService, StoreUnavailableError
from openfrt.live.supervisor import LiveSupervisor
from openfrt.records import Category, RecordStore, verify_chain
from openfrt.records.models import Alert, AlertMedia, DeploymentStatus
from openfrt.vision import EngineConfig, FaceEngine
from test_crash_recovery import comings_and_goings, faces, write_video  # noqa: F401 - the shared faces fixture
from test_deployments import event, make_gallery, plan
from test_live_pipeline import wait_for

POSTGRES_BINARIES = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))


# -- a small filesystem ----------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MB tmpfs, mounted for this test (root only; skipped where mounting is not permitted)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m,mode=0700", "tmpfs", str(mount)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk`` with a file; deleting the file frees them again."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as handle:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while handle.write(b"\0" * size):
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    return filler


def in_thread(work: object) -> tuple[threading.Thread, list[object]]:
    """Run ``work()`` in a thread; the list receives its result or the exception it raised."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(work())  # type: ignore[operator]
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def check_whole(store: RecordStore) -> None:
    """No half-written alert, an intact database and audit chain."""
    with store.transaction() as session:
        alerts = session.scalars(select(Alert.id)).all()
        media = session.execute(select(AlertMedia.alert_id, AlertMedia.kind)).all()
        assert sorted(media) == sorted((alert, kind) for alert in alerts for kind in ("frame", "probe_crop"))
        assert verify_chain(session).ok
    if store.engine.dialect.name == "sqlite":
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"


def test_a_full_disk_delays_an_alert_and_a_lasting_one_stops_the_deployment_with_its_reason_recorded_once_freed(
    small_disk: Path, monkeypatch: pytest.MonkeyPatch, hog_engine: FaceEngine
) -> None:
    monkeypatch.delenv("OPENFRT_DATABASE_URL", raising=False)
    monkeypatch.delenv("OPENFRT_KEY_FILE", raising=False)
    with RecordStore.open(small_disk / "home") as store:
        service = DeploymentService(store, make_gallery(store, hog_engine))
        plan(service)
        running = service.start("dep", "PC 1")

        filler = fill(small_disk)
        thread, outcome = in_thread(lambda: running.raise_alert(event(seed=1)))
        time.sleep(1.5)
        assert thread.is_alive()  # retrying: the disk is full
        filler.unlink()
        thread.join(30)
        assert isinstance(outcome[0], int)
        check_whole(store)

        monkeypatch.setattr(deployments, "WRITE_RETRY_SECONDS", 1.0)
        running.add_faces_scanned("north", 5)
        filler = fill(small_disk)
        with pytest.raises(StoreUnavailableError, match="database or disk is full"):
            running.raise_alert(event(track=2, seed=2))
        refused_at = time.monotonic()
        with pytest.raises(StoreUnavailableError):  # another camera's alert: kept at once, no minute of retries
            running.raise_alert(event(camera="south", track=3, seed=3))
        assert time.monotonic() - refused_at < 0.5
        thread, outcome = in_thread(lambda: running.end("PC 1"))
        time.sleep(1.5)
        assert thread.is_alive(), outcome
        assert service.get("dep").status is DeploymentStatus.running  # waiting for the store
        filler.unlink()
        thread.join(60)
        record = outcome[0]
        assert not isinstance(record, BaseException), record
        assert record.interrupted and record.alerts == 3 and record.faces_scanned == 5  # the refused alerts were kept
        assert "database or disk is full" in (service.get("dep").end_reason or "")
        check_whole(store)


# -- a PostgreSQL server that goes away ---------------------------------------------------------


@dataclass
class ThrowawayPostgres:
    """A PostgreSQL cluster of its own, to stop and start without disturbing anyone."""

    bin: Path
    data: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://openfrt@127.0.0.1:{self.port}/openfrt"

    def run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.data / "cluster"), "-l", str(self.data / "log"), "-w", "-o",
                 f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self) -> None:
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.data / "cluster"), "-m", "fast", "-w", "stop")


@pytest.fixture(scope="module")
def postgres() -> Iterator[ThrowawayPostgres]:
    if not POSTGRES_BINARIES:
        pytest.skip("needs the PostgreSQL server binaries (/usr/lib/postgresql/*/bin; apt-get install postgresql)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running PostgreSQL as root needs runuser to become the postgres user")
    data = Path(tempfile.mkdtemp(prefix="openfrt-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cluster = ThrowawayPostgres(POSTGRES_BINARIES[-1].parent, data, port)
    try:
        cluster.run(str(cluster.bin / "initdb"), "-D", str(data / "cluster"), "-A", "trust", "-U", "openfrt", "--no-sync")
        cluster.start()
        cluster.run(str(cluster.bin / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "openfrt", "openfrt")
        yield cluster
    finally:
        try:
            cluster.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def outage_store(postgres: ThrowawayPostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordStore]:
    """A store on the throwaway server, emptied first (each test starts from a fresh schema)."""
    postgres.run(str(postgres.bin / "dropdb"), "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "openfrt", "--force", "openfrt")
    postgres.run(str(postgres.bin / "createdb"), "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "openfrt", "openfrt")
    monkeypatch.setenv("OPENFRT_DATABASE_URL", postgres.url)
    monkeypatch.delenv("OPENFRT_KEY_FILE", raising=False)
    with RecordStore.open(tmp_path / "home") as store:
        yield store


def test_a_postgresql_restart_mid_run_loses_and_doubles_nothing(
    postgres: ThrowawayPostgres, outage_store: RecordStore, hog_engine: FaceEngine
) -> None:
    service = DeploymentService(outage_store, make_gallery(outage_store, hog_engine))
    plan(service)
    running = service.start("dep", "PC 1")

    def camera() -> list[int]:
        ids = []
        for number in range(20):
            running.add_faces_scanned("north", 1)
            ids.append(running.raise_alert(event(track=number, seed=number)))
            time.sleep(0.1)
        return ids

    thread, outcome = in_thread(camera)
    time.sleep(0.5)
    postgres.stop()
    time.sleep(2.0)
    postgres.start()
    thread.join(120)
    ids = outcome[0]
    assert isinstance(ids, list) and len(set(ids)) == 20, ids
    record = running.end("PC 1")
    assert (record.alerts, record.faces_scanned, record.interrupted) == (20, 20, False)
    check_whole(outage_store)


def test_a_server_deployment_whose_database_stays_away_stops_and_records_why_once_it_is_back(
    postgres: ThrowawayPostgres, outage_store: RecordStore, faces: tuple[Path, Path], tmp_path: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Through the server's supervisor with a real camera: the outage outlasts the retries, the
    camera stops, and the end waits for the database."""
    monkeypatch.setattr(deployments, "WRITE_RETRY_SECONDS", 2.0)
    engine = FaceEngine(EngineConfig.from_env())
    gallery = Gallery(outage_store, engine)
    gallery.create_watchlist("wanted", purpose="warrants", authorised_by="Supt A", actor="PC 1")
    reference, _ = faces
    assert gallery.enrol(SubjectInfo("S1", "Colin Powell", Category.wanted), [ImageToEnrol(reference, "ref")],
                         actor="PC 1", watchlist="wanted").enrolled
    video = write_video(tmp_path / "gate.avi", comings_and_goings(faces, 60))
    service = DeploymentService(outage_store, gallery)
    service.create("dep", purpose="p", location="Gate St", watchlist="wanted", actor="PC 1", cameras={"gate": str(video)})
    service.authorise("dep", actor="Supt A")
    supervisor = LiveSupervisor(service, lambda: engine, realtime=True)
    supervisor.start("dep", "PC 1")
    assert wait_for(lambda: (supervisor.status("dep") or [None])[0] is not None and supervisor.status("dep")[0].alerts >= 1, 60)
    postgres.stop()
    try:  # the camera gives up once an alert could not be stored for WRITE_RETRY_SECONDS
        assert wait_for(lambda: any("stopped on an error" in record.getMessage() for record in caplog.records), 60)
        assert stalled(supervisor) and supervisor.running() == ["dep"]  # the end waits for the database
    finally:
        postgres.start()
    assert wait_for(lambda: supervisor.running() == [], 60)
    info = service.get("dep")
    record = service.record("dep")
    assert info.status is DeploymentStatus.ended and record.interrupted and record.alerts >= 1
    assert (info.end_reason or "").startswith("the records store refused writes for 2 s: connection failed")
    check_whole(outage_store)


def stalled(supervisor: LiveSupervisor) -> bool:
    """Whether the deployment's cameras have stopped taking frames (over one second)."""
    def frames() -> int:
        return sum(camera.frames for camera in supervisor.status("dep") or [])
    before = frames()
    time.sleep(1.0)
    return frames() == before
