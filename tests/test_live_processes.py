"""Cameras in processes of their own (openfrt.live.processes): the same alerts and counts as
threads; a camera's failure, a stop and Ctrl-C reach every camera; no camera process outlives
its deployment or its parent."""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from cli_users import authorised_deployment
from test_live_pipeline import IMAGE_SIGNATURES, LFW, LIVE_COMMAND, UTK, deployment_env, wait_for, walk_video  # noqa: F401 - fixture

from openfrt.gallery import Gallery, ImageToEnrol, SubjectInfo
from openfrt.gallery.matching import TemplateMatrix
from openfrt.live import processes as processes_module
from openfrt.live.deployments import DeploymentService
from openfrt.live.events import AlertEvent
from openfrt.live.pipeline import LiveRunner, PipelineConfig
from openfrt.live.processes import CameraProcesses, CameraProcessError
from openfrt.live.source_policy import SourcePolicy
from openfrt.live.sources import open_sources
from openfrt.live.supervisor import LiveSupervisor
from openfrt.observability.logs import JsonFormatter
from openfrt.records import Category, RecordStore
from openfrt.vision import EngineConfig, FaceEngine

pytestmark = pytest.mark.skipif(not (UTK.exists() and LFW.exists()), reason=f"needs {UTK} and {LFW} (the shared test data), which are absent")

REFERENCE = LFW / "Colin_Powell" / "Colin_Powell_0001.jpg"


class CameraSink:
    """A DeploymentSink that remembers what each camera told it, from any thread."""

    def __init__(self, matcher: TemplateMatrix, threshold: float, cameras: list[str]) -> None:
        self.deployment_id, self.name, self.cameras = 1, "test", cameras
        self.threshold, self.model_id, self.matcher = threshold, matcher.model_id, matcher
        self.scanned = dict.fromkeys(cameras, 0)
        self.alerts: list[AlertEvent] = []
        self._lock = threading.Lock()

    def add_faces_scanned(self, camera: str, count: int) -> None:
        with self._lock:
            self.scanned[camera] += count

    def add_frames_dropped(self, camera: str, count: int) -> None:
        pass

    def record_gap(self, camera: str, started: object, ended: object) -> None:
        pass

    def raise_alert(self, alert: AlertEvent) -> int:
        with self._lock:
            self.alerts.append(alert)
            return 100 + len(self.alerts)

    def end(self, actor: str) -> object:
        return {}

    def alert_summary(self) -> list[tuple[object, ...]]:
        return sorted((a.camera, a.subject, a.track_id, round(a.source_time, 3), round(a.similarity, 4)) for a in self.alerts)


@pytest.fixture(scope="module")
def engine() -> FaceEngine:
    return FaceEngine(EngineConfig.from_env())


def sink_for(engine: FaceEngine, cameras: list[str]) -> CameraSink:
    _, reference = engine.largest_face_template(REFERENCE)
    matcher = TemplateMatrix(engine.embedder.model_id, [("S1", reference)])
    return CameraSink(matcher, engine.embedder.default_threshold, cameras)


def processes(sink: CameraSink, engine: FaceEngine, targets: dict[str, Path], folder: Path, **options: object) -> CameraProcesses:
    return CameraProcesses(sink, {camera: str(path) for camera, path in targets.items()}, engine.config, PipelineConfig(),
                           SourcePolicy(folder), **{"realtime": False, **options})  # type: ignore[arg-type]


def test_two_cameras_in_processes_raise_the_same_alerts_and_counts_as_in_threads(engine: FaceEngine, tmp_path: Path) -> None:
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(JsonFormatter())
    videos = {"gate": walk_video(tmp_path / "gate.avi", [REFERENCE, min(UTK.glob("*.jpg"))]),
              "van": walk_video(tmp_path / "van.avi", sorted(UTK.glob("*.jpg"))[1:3])}
    in_threads, in_processes = sink_for(engine, list(videos)), sink_for(engine, list(videos))
    alerted: list[tuple[str, int]] = []

    LiveRunner(in_threads, open_sources({c: str(p) for c, p in videos.items()}, policy=SourcePolicy(tmp_path)), engine).run()
    runner = processes(in_processes, engine, videos, tmp_path, on_alert=lambda alert, alert_id: alerted.append((alert.camera, alert_id)))
    root, level = logging.getLogger(), logging.getLogger().level
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # the camera processes log at the parent's level
    try:
        runner.run()
    finally:
        root.removeHandler(handler)
        root.setLevel(level)

    assert in_processes.alert_summary() == in_threads.alert_summary() and [a[:2] for a in in_threads.alert_summary()] == [("gate", "S1")]
    assert alerted == [("gate", 101)], "the parent stores each alert once and hands its stored id on"
    assert in_processes.scanned == in_threads.scanned == {"gate": 2, "van": 2}
    assert {camera: stats.frames for camera, stats in runner.stats().items()} == {"gate": 24, "van": 24}
    assert runner.stats()["gate"].alerts == 1 and set(runner.cpu_seconds) == {"gate", "van"}
    lines = [json.loads(line) for line in written.getvalue().splitlines()]
    (logged,) = [line for line in lines if line["logger"] == "openfrt.live.pipeline" and line["message"].startswith("alert ")]
    assert logged["message"].startswith("alert 101 on camera gate") and (logged["deployment"], logged["camera"]) == ("test", "gate")
    assert multiprocessing.active_children() == []


def test_the_server_runs_a_deployment_of_two_cameras_a_process_each_and_publishes_its_record(
    engine: FaceEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(processes_module, "available_cores", lambda: 2)  # the 2-core machine this is for, whatever runs the test
    videos = {"gate": walk_video(tmp_path / "gate.avi", [REFERENCE, min(UTK.glob("*.jpg"))]),
              "van": walk_video(tmp_path / "van.avi", sorted(UTK.glob("*.jpg"))[1:3])}
    caplog.set_level(logging.INFO)  # the camera processes log at the parent's level
    with RecordStore.open(tmp_path / "home") as store:
        gallery = Gallery(store, engine)
        gallery.create_watchlist("wanted", purpose="warrants", authorised_by="Supt A", actor="PC 1")
        assert gallery.enrol(SubjectInfo("S1", "Colin Powell", Category.wanted), [ImageToEnrol(REFERENCE, "ref")],
                             actor="PC 1", watchlist="wanted").enrolled
        service = DeploymentService(store, gallery)
        service.create("op-two", purpose="p", location="Gate St", watchlist="wanted", actor="PC 1",
                       cameras={camera: str(path) for camera, path in videos.items()})
        service.authorise("op-two", actor="Supt A")
        supervisor = LiveSupervisor(service, lambda: engine, realtime=False)

        supervisor.start("op-two", "PC 1")
        assert wait_for(lambda: supervisor.running() == [], 120)
        record = service.record("op-two")

    assert (record.status.value, record.cameras, record.faces_scanned, record.alerts) == ("ended", 2, 4, 1)
    (logged,) = [entry for entry in caplog.records if entry.getMessage().startswith("alert ")]
    assert "on camera gate" in logged.getMessage() and logged.process != os.getpid(), "the camera ran in a process of its own"
    assert multiprocessing.active_children() == []


def test_a_camera_that_fails_in_its_process_fails_the_run_and_stops_the_other_camera(engine: FaceEngine, tmp_path: Path) -> None:
    long = walk_video(tmp_path / "long.avi", sorted(UTK.glob("*.jpg"))[:1], frames=600)  # a minute in real time
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    runner = processes(sink_for(engine, ["gate", "van"]), engine, {"gate": long, "van": broken}, tmp_path, realtime=True)

    started = time.monotonic()
    with pytest.raises(CameraProcessError, match="camera van failed: .*broken.mp4"):
        runner.run()

    assert time.monotonic() - started < 45, "the other camera was not stopped"
    assert runner.stats()["gate"].frames < 600
    assert multiprocessing.active_children() == []


def test_stop_ends_every_camera_process_and_their_tracks_are_counted(engine: FaceEngine, tmp_path: Path) -> None:
    videos = {camera: walk_video(tmp_path / f"{camera}.avi", sorted(UTK.glob("*.jpg"))[index : index + 1], frames=600)
              for index, camera in enumerate(("gate", "van"))}
    sink = sink_for(engine, list(videos))
    runner = processes(sink, engine, videos, tmp_path, realtime=True)
    thread = threading.Thread(target=runner.run)
    thread.start()
    deadline = time.monotonic() + 60
    while not all(stats.frames > 20 for stats in runner.stats().values()) and time.monotonic() < deadline:
        time.sleep(0.1)

    runner.stop()
    thread.join(30)

    assert not thread.is_alive(), "a camera process did not end when stopped"
    assert all(20 < stats.frames < 600 for stats in runner.stats().values())
    assert sink.scanned == {"gate": 1, "van": 1}, "each camera's open track was ended and counted"
    assert multiprocessing.active_children() == []


def test_a_camera_process_ends_when_its_parent_is_killed(tmp_path: Path) -> None:
    long = walk_video(tmp_path / "empty.avi", [], frames=600)  # nobody: the camera would never report anything
    script = textwrap.dedent(f"""
        import multiprocessing, sys, threading, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_live_processes import processes, sink_for
        from openfrt.vision import EngineConfig, FaceEngine
        from pathlib import Path

        if __name__ == "__main__":
            engine = FaceEngine(EngineConfig.from_env())
            video = Path({str(long)!r})
            runner = processes(sink_for(engine, ["gate", "van"]), engine, {{"gate": video, "van": video}}, video.parent, realtime=True)
            threading.Thread(target=runner.run, daemon=True).start()
            while not all(stats.frames > 5 for stats in runner.stats().values()):
                time.sleep(0.1)
            print(" ".join(str(child.pid) for child in multiprocessing.active_children()), flush=True)
            time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    children = [int(pid) for pid in parent.stdout.readline().split()]
    assert len(children) == 2

    parent.kill()
    parent.wait()

    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in children), "a camera process (holding the watchlist) outlived its parent"


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended and waiting for its reaper, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_ctrl_c_at_a_terminal_ends_a_deployment_whose_cameras_run_in_processes(
    deployment_env: dict[str, str], tmp_path: Path  # noqa: F811 - the fixture
) -> None:
    videos = {camera: str(walk_video(tmp_path / f"{camera}.avi", sorted(UTK.glob("*.jpg"))[:1], frames=600)) for camera in ("gate", "van")}
    authorised_deployment(deployment_env, "op-two", "wanted", videos)
    command = [*LIVE_COMMAND, "--deployment", "op-two", "--events-json", "--realtime", "--log-format", "json"]
    # A session of its own: Ctrl-C at a terminal signals the whole foreground process group.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=deployment_env, start_new_session=True)
    wait_for_camera_processes(process.pid, 2)
    time.sleep(10)  # their engines built, and some frames

    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 0, stderr
    (record,) = [json.loads(line) for line in stdout.splitlines()]
    assert record["event"] == "record" and record["status"] == "ended" and record["cameras"] == 2
    assert record["faces_scanned"] >= 2, "each camera's walker was counted when the cameras stopped"
    assert "Traceback" not in stderr
    # Nobody matched: the camera processes left nothing about the walkers anywhere.
    assert list(Path(deployment_env["TMPDIR"]).iterdir()) == []
    for path in Path(deployment_env["OPENFRT_HOME"]).rglob("*"):
        assert not path.is_file() or not any(signature in path.read_bytes() for signature in IMAGE_SIGNATURES), path


def wait_for_camera_processes(parent: int, count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        if len(children) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"{count} camera processes did not start within {timeout} s")
