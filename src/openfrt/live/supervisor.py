"""Deployments running inside a long-lived process (the server), each in a background thread.

``openfrt live`` runs one deployment in the foreground and ends it on exit. A server must
instead start and stop deployments on request, report each camera's progress while they run,
and end every deployment properly — watchlist snapshot destroyed, record published — when its
sources end, when an officer stops it, or when the server shuts down. The supervisor owns that
life cycle; the pipeline and the deployment records are the same code the CLI uses.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from openfrt.errors import OpenFRTError
from openfrt.live.deployments import (
    DeploymentRecord,
    DeploymentService,
    RunningDeployment,
)
from openfrt.live.pipeline import CameraStats, LiveRunner, PipelineConfig
from openfrt.live.sources import open_sources
from openfrt.records.errors import InvalidRecordError
from openfrt.vision import FaceEngine

log = logging.getLogger(__name__)


@dataclass
class _Active:
    running: RunningDeployment
    runner: LiveRunner
    thread: threading.Thread
    started_by: str
    stopped_by: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class CameraStatus:
    """One camera's progress, as the console shows it."""

    camera: str
    fps: float
    frames: int
    dropped: int
    faces_scanned: int
    alerts: int
    finished: bool

    @classmethod
    def of(cls, camera: str, stats: CameraStats) -> CameraStatus:
        return cls(camera, round(stats.fps, 1), stats.frames, stats.dropped, stats.faces_scanned, stats.alerts, stats.finished is not None)


class LiveSupervisor:
    """Starts deployments in background threads and ends each exactly once.

    ``engine`` is called once per started deployment; cameras of one deployment share it (see
    :class:`LiveRunner`). ``realtime`` plays video files at their frame rate, as a camera
    would deliver them, so a file stands in for a camera in demonstrations and tests.
    """

    def __init__(
        self,
        service: DeploymentService,
        engine: Callable[[], FaceEngine],
        config: PipelineConfig = PipelineConfig(),
        realtime: bool = True,
    ) -> None:
        self.service = service
        self._engine = engine
        self._config = config
        self._realtime = realtime
        self._active: dict[str, _Active] = {}
        self._lock = threading.Lock()

    def start(self, name: str, actor: str) -> None:
        """Open the deployment's camera sources, start it (snapshotting its watchlist) and run it.

        Sources are opened first, so a missing file or bad URL fails before anything is recorded."""
        with self._lock:
            if name in self._active:
                raise InvalidRecordError(f"deployment {name!r} is already running")
            planned = self.service.get(name)
            if not planned.cameras:
                raise InvalidRecordError(f"deployment {name!r} has no cameras")
            sources = open_sources(self.service.camera_sources(name), realtime=self._realtime)
            try:
                engine = self._engine()
                running = self.service.start(name, actor)
            except BaseException:
                for source in sources.values():
                    source.stop()
                raise
            try:
                runner = LiveRunner(running, sources, lambda: engine, self._config)
            except BaseException as exc:
                # Its cameras could not be set up (e.g. a model the pipeline cannot use): it never
                # ran, so it goes back to planned with the failure noted and publishes nothing.
                running.abandon(actor, str(exc) or type(exc).__name__)
                for source in sources.values():
                    source.stop()
                raise
            thread = threading.Thread(target=self._run, args=(name,), name=f"deployment {name}", daemon=True)
            self._active[name] = _Active(running, runner, thread, started_by=actor)
            thread.start()

    def stop(self, name: str, actor: str, timeout: float = 30.0) -> DeploymentRecord:
        """Stop a running deployment's cameras and end it; returns its published record."""
        with self._lock:
            active = self._active.get(name)
            if active is None:
                raise InvalidRecordError(f"deployment {name!r} is not running in this server")
            active.stopped_by = actor
        active.runner.stop()
        if not active.done.wait(timeout):
            raise InvalidRecordError(f"deployment {name!r} did not stop within {timeout:.0f} s")
        return self.service.record(name)

    def status(self, name: str) -> list[CameraStatus] | None:
        """Per-camera progress while ``name`` runs here; None when it is not running here."""
        active = self._active.get(name)
        if active is None:
            return None
        return [CameraStatus.of(camera, stats) for camera, stats in active.runner.stats().items()]

    def running(self) -> list[str]:
        return sorted(self._active)

    def shutdown(self, actor: str = "system:shutdown", timeout: float = 30.0) -> None:
        """Stop and end every deployment (server exit): none is left running without a process."""
        for name in self.running():
            try:
                self.stop(name, actor, timeout)
            except OpenFRTError as exc:
                log.error("deployment %s did not end cleanly at shutdown: %s", name, exc)

    def _run(self, name: str) -> None:
        """Run the cameras to their end (or a stop), then end the deployment — always."""
        active = self._active[name]
        try:
            active.runner.run()
        except BaseException as exc:  # noqa: BLE001 - a failed camera must still end the deployment
            log.error("deployment %s stopped on an error: %s", name, exc)
        finally:
            actor = active.stopped_by or active.started_by
            try:
                active.running.end(actor)
            except OpenFRTError as exc:
                log.error("deployment %s could not be ended: %s", name, exc)
            with self._lock:
                self._active.pop(name, None)
            active.done.set()
