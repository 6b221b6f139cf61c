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
from typing import TYPE_CHECKING

from openfrt.errors import OpenFRTError
from openfrt.live.deployments import (
    DeploymentRecord,
    DeploymentService,
    RunningDeployment,
)
from openfrt.live.events import CameraRunner
from openfrt.live.pipeline import CameraStats, PipelineConfig
from openfrt.live.processes import LocalCameras, local_runner
from openfrt.live.recovery import LapsedDeployment, resume
from openfrt.live.sources import open_sources
from openfrt.records.errors import InvalidRecordError
from openfrt.vision import FaceEngine

if TYPE_CHECKING:
    from openfrt.cluster.cameras import ClusterCameras

log = logging.getLogger(__name__)


@dataclass
class _Active:
    running: RunningDeployment
    runner: CameraRunner
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

    ``engine`` is called once per started deployment, and its cameras run on it or on engines of
    its configuration, as threads or a process per camera (see
    :func:`~openfrt.live.processes.local_runner`). ``realtime`` plays video files at their frame rate, as a camera
    would deliver them, so a file stands in for a camera in demonstrations and tests. With
    ``cluster``, each camera runs as a Ray actor instead (``openfrt serve --ray-address``).
    """

    def __init__(
        self,
        service: DeploymentService,
        engine: Callable[[], FaceEngine],
        config: PipelineConfig = PipelineConfig(),
        realtime: bool = True,
        cluster: ClusterCameras | None = None,
        server: str | None = None,
    ) -> None:
        self.service = service
        self._cluster = cluster
        self._engine = engine
        self._config = config
        self._realtime = realtime
        #: The server id its deployments' leases carry, so that this server resumes them after a crash.
        self.server = server
        self._active: dict[str, _Active] = {}
        self._lock = threading.Lock()

    def start(self, name: str, actor: str) -> None:
        """Open the deployment's camera sources, start it (snapshotting its watchlist) and run it.

        Its plan and authority are checked before any camera is opened (as ``openfrt live``
        does); then sources are opened, so a missing file or bad URL fails before anything is
        recorded."""
        self.service.ready_to_start(name)
        self._launch(name, actor, lambda: self.service.start(name, actor, server=self.server))

    def resume(self, lapsed: LapsedDeployment, actor: str = "system:recovery") -> None:
        """Run again a deployment this server ran before it was lost (see :mod:`openfrt.live.recovery`)."""
        if self.server is None:
            raise InvalidRecordError("this supervisor has no server id, so it resumes nothing")
        server = self.server
        self._launch(lapsed.name, actor, lambda: resume(self.service, lapsed, actor=actor, server=server))

    def _launch(self, name: str, actor: str, begin: Callable[[], RunningDeployment]) -> None:
        with self._lock:
            if name in self._active:
                raise InvalidRecordError(f"deployment {name!r} is already running")
            planned = self.service.get(name)
            if not planned.cameras:
                raise InvalidRecordError(f"deployment {name!r} has no cameras")
            launch = self._start_on_cluster if self._cluster is not None else self._start_here
            running, runner = launch(name, actor, begin)
            running.when_lease_lost(runner.stop)
            thread = threading.Thread(target=self._run, args=(name,), name=f"deployment {name}", daemon=True)
            self._active[name] = _Active(running, runner, thread, started_by=actor)
            thread.start()

    def _start_here(self, name: str, actor: str, begin: Callable[[], RunningDeployment]) -> tuple[RunningDeployment, CameraRunner]:
        """Open the sources in this process, then start (or resume) with ``begin``; the cameras run
        as threads here, or in processes of their own (:func:`~openfrt.live.processes.local_runner`)."""
        targets, policy = self.service.camera_sources(name), self.service.source_policy
        sources = open_sources(targets, policy=policy, realtime=self._realtime, decode_every=self._config.cadence)
        try:
            engine = self._engine()
            running = begin()
        except BaseException:
            for source in sources.values():
                source.stop()
            raise
        try:
            return running, local_runner(running, LocalCameras(sources, targets, policy, self._realtime), engine, self._config)
        except BaseException as exc:
            # Its cameras could not be set up (e.g. a model the pipeline cannot use): one that never
            # ran goes back to planned with the failure noted and publishes nothing; one that had
            # run (resumed after a crash) ends, saying why.
            if not running.abandon(actor, str(exc) or type(exc).__name__):
                running.end(actor, reason=f"its cameras could not run: {exc}")
            for source in sources.values():
                source.stop()
            raise

    def _start_on_cluster(self, name: str, actor: str, begin: Callable[[], RunningDeployment]) -> tuple[RunningDeployment, CameraRunner]:
        """Place the cameras' actors (each opens its source on its node), then start (or resume)."""
        from openfrt.cluster.cameras import ClusterRunner

        assert self._cluster is not None
        opened = self._cluster.open(self.service.camera_sources(name))
        try:
            running = begin()
        except BaseException:
            opened.close()
            raise
        return running, ClusterRunner(running, opened, self._config)

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

    @property
    def cluster(self) -> ClusterCameras | None:
        """Where cameras run when not in this process (None: here)."""
        return self._cluster

    def running(self) -> list[str]:
        return sorted(self._active)

    def camera_stats(self) -> dict[str, dict[str, CameraStats]]:
        """Each running deployment's cameras' live figures (for the metrics)."""
        return {name: active.runner.stats() for name, active in list(self._active.items())}

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
        failure: str | None = None
        try:
            active.runner.run()
        except BaseException as exc:  # noqa: BLE001 - a failed camera must still end the deployment
            log.error("deployment %s stopped on an error: %s", name, exc)
            failure = f"a camera failed: {exc}"
        finally:
            actor = active.stopped_by or active.started_by
            try:
                if active.running.lease_lost:
                    log.error("deployment %s was recovered by another process; it is that process's to end", name)
                else:
                    active.running.end(actor, reason=failure)
            except OpenFRTError as exc:
                log.error("deployment %s could not be ended: %s", name, exc)
            with self._lock:
                self._active.pop(name, None)
            active.done.set()
