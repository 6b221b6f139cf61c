"""Cameras as Ray actors: each runs the whole per-camera pipeline on the node Ray placed it on.

**What crosses Ray.** An actor (:class:`CameraWorker`) opens its own source and runs
:class:`~openfrt.live.pipeline.CameraPipeline` against an in-actor sink (:class:`_Outbox`), so
frames, chips and templates never leave the actor's process. It receives the watchlist snapshot
and sends back only what may be stored — alerts with their media, counts, gaps — and both travel
sealed under a key made for the deployment (``sealing.py``).

**Exactly once.** The driver (:class:`ClusterRunner`, in the ``openfrt live`` or ``openfrt
serve`` process) pulls each camera's outputs with long polls and stores them through the
deployment (:class:`~openfrt.live.deployments.RunningDeployment`). Alerts and gaps are numbered
per camera; the actor keeps each one until a later poll acknowledges it as stored, and the
driver stores a number only once, so a lost reply neither loses nor repeats an alert. Counts are
running totals, applied as their growth.

**A node that dies.** Ray restarts the actor (``max_restarts``) on another node that has the
resources the camera asks for; the driver notices (the call fails, or a poll finds the actor not
started), starts it again from a :class:`ResumePoint`, and records the outage as a gap. A
recorded file or folder resumes from the last moment with no face in view (every track ended, so
the pipeline held nothing but positions and counters) and is processed again from there with the
same numbering: the outputs already stored are recognised by number and skipped, the rest are
stored once — the same alerts and counts as a run without the failure. A live source cannot be
replayed: it resumes at the last stored poll, and what the camera saw while it was down is the
recorded gap (as when a stream drops). Its tracks that had already alerted go on with it (their
positions only: an alerted track holds no views), so a person still in view is not alerted again;
on a stream whose outage outlasts ``max_gap_seconds`` they end, as after any dropped stream.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import ray
from ray.exceptions import ActorDiedError, RayActorError, RayTaskError

from openfrt.cluster.sealing import Seal
from openfrt.cluster.settings import ClusterConfigError, ClusterSettings
from openfrt.errors import OpenFRTError
from openfrt.gallery.matching import TemplateMatrix
from openfrt.live.events import AlertEvent, CameraOrder, CameraSettings, DeploymentSink
from openfrt.live.pipeline import AlertCallback, CameraPipeline, CameraStats, PipelineConfig
from openfrt.live.source_policy import SourcePolicy
from openfrt.live.sources import Frame, GapCallback, ImageFolderSource, Source, VideoFileSource, open_source
from openfrt.live.tracking import Track
from openfrt.vision import EngineConfig, FaceEngine

log = logging.getLogger(__name__)

#: Longest an actor holds a poll open waiting for an alert (an alert ends the wait at once).
#: Counts and a stop request wait for the next poll; at 0.25 s the polling cost the driver 2.3 ms
#: of CPU per 1080p frame of one camera (benchmarks/cluster.py).
POLL_WAIT_SECONDS = 1.0

#: Pause before asking a restarting actor again.
RETRY_SECONDS = 0.5

#: How long opening a camera may wait for a node with the resources it asks for.
PLACEMENT_TIMEOUT_SECONDS = 120.0

PlacedCallback = Callable[[str, str, bool], None]


class CameraFailedError(OpenFRTError):
    """A camera failed on its node (bad source, model mismatch) or its actor is gone for good."""


@dataclass(frozen=True)
class AlertedTrack:
    """A track that has alerted, as carried across a restart: where it was, never what it saw."""

    id: int
    box: tuple[float, float, float, float]
    last_seen: float
    velocity: tuple[float, float]
    hits: int
    peak_score: float
    searched_score: float

    @classmethod
    def of(cls, track: Track) -> AlertedTrack:
        return cls(track.id, track.box, track.last_seen, (float(track.velocity[0]), float(track.velocity[1])),
                   track.hits, track.peak_score, track.searched_score)

    def restored(self) -> Track:
        return Track(self.id, self.box, self.last_seen, np.array(self.velocity), self.hits, self.peak_score,
                     searched_score=self.searched_score, alerted=True)


@dataclass(frozen=True)
class ResumePoint:
    """Where a restarted camera picks up: source time, counters, numbering and the positions of
    alerted tracks — nothing biometric.

    ``replay``: the source is a recorded file or folder, processed again from ``after``.
    """

    after: float | None = None
    frames: int = 0
    next_track: int = 1
    sequence: int = 0
    faces_scanned: int = 0
    frames_dropped: int = 0
    replay: bool = False
    alerted: tuple[AlertedTrack, ...] = ()


@dataclass(frozen=True)
class StartOrder(CameraOrder):
    """Everything a camera actor needs to (re)start, sent in the ``start`` call (never kept by
    Ray for restarts: a restarted actor is started again by the driver)."""

    resume: ResumePoint


@dataclass(frozen=True)
class Output:
    """One numbered thing to store: a sealed alert, or a gap of the camera's source."""

    sequence: int
    alert: bytes | None = None
    gap: tuple[datetime, datetime] | None = None


@dataclass(frozen=True)
class CameraReport:
    """A poll's answer: unacknowledged outputs, running totals, and where a restart would resume."""

    outputs: tuple[Output, ...]
    resume: ResumePoint
    frames: int
    frames_dropped: int
    faces_scanned: int
    seconds: dict[str, float]
    #: CPU time of the actor's process since this start (the pipeline and the actor's own work).
    cpu_seconds: float
    finished: bool
    error: str | None


@dataclass(frozen=True)
class Placement:
    node_id: str
    #: False when the actor was already running (the driver lost touch, the process lived on).
    started: bool


class CameraWorker:
    """The body of one camera's actor (wrapped by ``ray.remote``; a plain class for tests)."""

    def __init__(self, camera: str) -> None:
        self.camera = camera
        self._run: _CameraRun | None = None

    def check_source(self, spec: str, policy: SourcePolicy, realtime: bool) -> str:
        """Open the source here, where the camera will run; returns its name (no credentials)."""
        source = open_source(spec, policy=policy, realtime=realtime)
        source.stop()
        return source.name

    def start(self, order: StartOrder, snapshot: bytes, key: bytes) -> Placement:
        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"
        if self._run is not None:
            return Placement(node, started=False)
        seal = Seal(key)
        matcher: TemplateMatrix = seal.open(snapshot)
        source = open_source(order.source, policy=order.policy, realtime=order.realtime, after=order.resume.after,
                             decode_every=order.pipeline.cadence)
        self._run = _CameraRun(order, source, FaceEngine(order.engine), matcher, seal)
        self._run.start()
        return Placement(node, started=True)

    def poll(self, acknowledged: int, stop: bool, wait: float = POLL_WAIT_SECONDS) -> CameraReport | None:
        """Outputs after ``acknowledged`` (dropping the acknowledged ones), waiting up to ``wait``
        seconds for one; ``stop`` ends the source. None: this actor was restarted, start it."""
        if self._run is None:
            return None
        return self._run.report(acknowledged, stop, wait)


class _Outbox(CameraSettings):
    """The deployment as the pipeline inside an actor sees it: matches against the snapshot;
    alerts and gaps become numbered outputs; counts become running totals."""

    def __init__(self, order: StartOrder, matcher: TemplateMatrix, seal: Seal) -> None:
        super().__init__(order, matcher)
        self.condition = threading.Condition()
        self.outputs: list[Output] = []
        self.sequence = order.resume.sequence
        self.faces_scanned = order.resume.faces_scanned
        self.frames_dropped = order.resume.frames_dropped
        self._seal = seal

    def add_faces_scanned(self, camera: str, count: int) -> None:
        with self.condition:
            self.faces_scanned += count

    def add_frames_dropped(self, camera: str, count: int) -> None:
        with self.condition:
            self.frames_dropped += count

    def record_gap(self, camera: str, started: datetime, ended: datetime) -> None:
        self._emit(gap=(started, ended))

    def raise_alert(self, alert: AlertEvent) -> int:
        """Queue the alert, sealed, for the driver to store; returns its number on this camera."""
        return self._emit(alert=self._seal.seal(alert))

    def end(self, actor: str) -> object:
        raise CameraFailedError("a camera actor cannot end its deployment; the driver does")

    def _emit(self, **payload: Any) -> int:
        with self.condition:
            self.sequence += 1
            self.outputs.append(Output(self.sequence, **payload))
            self.condition.notify_all()
            return self.sequence


class _CameraRun:
    """One start of a camera inside its actor: the pipeline in a thread, and its outbox."""

    def __init__(self, order: StartOrder, source: Source, engine: FaceEngine, matcher: TemplateMatrix, seal: Seal) -> None:
        self.outbox = _Outbox(order, matcher, seal)
        self.replay = isinstance(source, (VideoFileSource, ImageFolderSource))
        self.source = _Watched(source, self._between_frames)
        self.pipeline = CameraPipeline(order.camera, self.source, engine, self.outbox, order.pipeline)
        self.pipeline.stats.frames = order.resume.frames  # the cadence counts on from here
        self.pipeline.tracker.next_id = order.resume.next_track
        self.pipeline.tracker.tracks = [track.restored() for track in order.resume.alerted]
        self.resume = replace(order.resume, replay=self.replay)
        self.finished = False
        self.error: str | None = None
        self._cpu_started = time.process_time()

    def start(self) -> None:
        threading.Thread(target=self._run, name=f"camera {self.pipeline.camera}", daemon=True).start()

    def report(self, acknowledged: int, stop: bool, wait: float) -> CameraReport:
        if stop:
            self.source.stop()
        with self.outbox.condition:
            self.outbox.outputs = [output for output in self.outbox.outputs if output.sequence > acknowledged]
            self.outbox.condition.wait_for(lambda: self._ready() or self.finished, timeout=wait)
            stats = self.pipeline.stats
            return CameraReport(
                self._ready(), self.resume, stats.frames, self.outbox.frames_dropped,
                self.outbox.faces_scanned, dict(stats.seconds), time.process_time() - self._cpu_started, self.finished, self.error,
            )

    def _ready(self) -> tuple[Output, ...]:
        """The outputs a report may hand over (with the outbox's lock held). A live source's
        alert raised in the frame being processed waits for that frame's resume point, which
        carries its track: a camera restarted from an older point would alert on them again."""
        if self.replay or self.finished:
            return tuple(self.outbox.outputs)
        return tuple(output for output in self.outbox.outputs if output.sequence <= self.resume.sequence)

    def _run(self) -> None:
        try:
            self.pipeline.run()
        except BaseException as exc:  # noqa: BLE001 - reported to the driver, which ends the deployment
            log.error("camera %s failed: %s", self.pipeline.camera, exc)
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            with self.outbox.condition:
                self.finished = True
                self.outbox.condition.notify_all()

    def _between_frames(self, last_time: float) -> None:
        """After each frame (in the pipeline's thread): a live source may resume from here; a
        recorded one only when no track is open, so that processing it again from here
        rebuilds exactly the same tracks."""
        if self.replay and self.pipeline.tracker.tracks:
            return
        with self.outbox.condition:
            self.resume = ResumePoint(
                after=last_time, frames=self.pipeline.stats.frames, next_track=self.pipeline.tracker.next_id,
                sequence=self.outbox.sequence, faces_scanned=self.outbox.faces_scanned,
                frames_dropped=self.outbox.frames_dropped, replay=self.replay,
                alerted=tuple(AlertedTrack.of(track) for track in self.pipeline.tracker.tracks if track.alerted),
            )
            self.outbox.condition.notify_all()  # the frame's outputs are ready now


class _Watched(Source):
    """``inner``'s frames; ``between(time)`` is called once the pipeline has finished a frame."""

    def __init__(self, inner: Source, between: Callable[[float], None]) -> None:
        super().__init__(inner.name)
        self.inner = inner
        self._between = between

    def stop(self) -> None:
        super().stop()
        self.inner.stop()

    def frames(self, on_gap: GapCallback | None = None) -> Iterator[Frame]:
        for frame in self.inner.frames(on_gap):
            yield frame  # the pipeline processes it before asking for the next
            self._between(frame.time)


@dataclass
class OpenedCameras:
    """Camera actors placed by Ray, each of which has opened its source where it runs."""

    handles: dict[str, Any]
    sources: dict[str, str]
    labels: dict[str, str]
    engine: EngineConfig
    policy: SourcePolicy
    realtime: bool

    def close(self) -> None:
        """Kill every camera actor (no restart): what it held in memory is gone with it."""
        handles, self.handles = self.handles, {}
        if not ray.is_initialized():
            return
        for handle in handles.values():
            try:
                ray.kill(handle, no_restart=True)
            except (RayActorError, ValueError) as exc:
                log.debug("camera actor already gone: %s", exc)


class ClusterCameras:
    """Places camera actors on a Ray cluster (``connect`` first) as ``settings`` ask."""

    def __init__(self, settings: ClusterSettings, engine: EngineConfig, policy: SourcePolicy, realtime: bool = False) -> None:
        self.settings = settings
        self.policy = policy
        self.use_engine(engine)
        self.realtime = realtime

    def use_engine(self, engine: EngineConfig) -> None:
        """The engine cameras placed from now on run (after a model migration, the new one)."""
        #: onnxruntime would otherwise start one thread per core of the node for every camera.
        self.engine = engine if engine.threads else engine.model_copy(update={"threads": max(1, math.floor(self.settings.camera_cpus))})

    def open(self, sources: dict[str, str]) -> OpenedCameras:
        """An actor per camera, placed on a node with the camera's CPU and custom resources;
        each opens its source there (a missing file or bad URL fails here, before anything is
        recorded). ``sources`` maps camera names to sources, credentials included."""
        self._check_resources(sources)
        handles = {camera: self._actor(camera) for camera in sources}
        opened = OpenedCameras(handles, dict(sources), {}, self.engine, self.policy, self.realtime)
        try:
            checks = {camera: handles[camera].check_source.remote(spec, self.policy, self.realtime) for camera, spec in sources.items()}
            for camera, check in checks.items():
                opened.labels[camera] = ray.get(check, timeout=PLACEMENT_TIMEOUT_SECONDS)
        except RayTaskError as exc:
            opened.close()
            raise CameraFailedError(f"camera {camera!r}: {_cause(exc)}") from None
        except (RayActorError, ray.exceptions.GetTimeoutError) as exc:
            opened.close()
            raise CameraFailedError(f"camera {camera!r} could not be placed on the cluster: {exc}") from None
        return opened

    def _actor(self, camera: str) -> Any:
        resources = self.settings.resources_for(camera)
        return ray.remote(CameraWorker).options(
            num_cpus=self.settings.camera_cpus, resources=resources or None, max_restarts=self.settings.max_restarts,
            max_task_retries=0, scheduling_strategy="SPREAD",
        ).remote(camera)

    def _check_resources(self, sources: dict[str, str]) -> None:
        """Refuse a camera no node of the cluster could ever hold, rather than wait for one."""
        available = ray.cluster_resources()
        for camera in sources:
            wanted = {"CPU": self.settings.camera_cpus, **self.settings.resources_for(camera)}
            missing = [f"{name} {amount:g}" for name, amount in wanted.items() if available.get(name, 0) < amount]
            if missing:
                raise ClusterConfigError(f"camera {camera!r} needs {', '.join(missing)}, which no node of the cluster offers")
        unknown = sorted(set(self.settings.camera_resources) - set(sources))
        if unknown:
            log.info("resources given for cameras not in this deployment: %s", ", ".join(unknown))


@dataclass
class _Camera:
    """The driver's view of one camera actor."""

    name: str
    handle: Any
    source: str
    stats: CameraStats = field(default_factory=CameraStats)
    acknowledged: int = 0
    faces_scanned: int = 0
    frames_dropped: int = 0
    alerts: int = 0
    resume: ResumePoint = ResumePoint()
    cpu_seconds: float = 0.0
    call: Any = None
    starting: bool = True
    retry_at: float = 0.0
    last_contact: datetime | None = None
    down_since: datetime | None = None
    done: bool = False


class ClusterRunner:
    """Runs a started deployment's cameras as actors and stores what they send back, exactly once.

    The same role as :class:`~openfrt.live.pipeline.LiveRunner` (``run``, ``stop``, ``stats``);
    ``on_placed(camera, node_id, restarted)`` hears where each camera (re)started.
    """

    def __init__(
        self,
        running: DeploymentSink,
        cameras: OpenedCameras,
        config: PipelineConfig = PipelineConfig(),
        on_alert: AlertCallback | None = None,
        on_placed: PlacedCallback | None = None,
    ) -> None:
        self.running = running
        self.opened = cameras
        self.config = config
        self._on_alert = on_alert
        self._on_placed = on_placed
        self._cameras = [_Camera(name, handle, cameras.sources[name]) for name, handle in cameras.handles.items()]
        self._stop = threading.Event()

    def run(self) -> None:
        """Start every camera, store their outputs until all have ended, then kill the actors;
        re-raises a camera's failure (after asking the others to stop)."""
        seal = Seal()
        snapshot = ray.put(seal.seal(self.running.matcher))
        try:
            while not all(camera.done for camera in self._cameras):
                self._call(seal, snapshot)
                calls = {camera.call: camera for camera in self._cameras if camera.call is not None}
                ready = ray.wait(list(calls), num_returns=1, timeout=POLL_WAIT_SECONDS)[0] if calls else []
                if ready:  # and every other answer already in
                    ready = ray.wait(list(calls), num_returns=len(calls), timeout=0)[0]
                for call in ready:
                    self._receive(calls[call], seal)
                if not calls:
                    time.sleep(RETRY_SECONDS / 5)
                self._give_up_on_down_cameras()
        except BaseException:
            self._stop.set()
            raise
        finally:
            self.opened.close()
            del snapshot  # the sealed snapshot's last reference: Ray frees it

    def stop(self) -> None:
        self._stop.set()

    def stats(self) -> dict[str, CameraStats]:
        return {camera.name: camera.stats for camera in self._cameras}

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time each camera's actor process has used since it (last) started."""
        return {camera.name: camera.cpu_seconds for camera in self._cameras}

    def _call(self, seal: Seal, snapshot: Any) -> None:
        """Send each idle camera its next call: a (re)start, or a long poll."""
        now = time.monotonic()
        for camera in self._cameras:
            if camera.done or camera.call is not None or camera.retry_at > now:
                continue
            if camera.starting:
                camera.call = camera.handle.start.remote(self._order(camera), snapshot, seal.key)
            else:
                camera.call = camera.handle.poll.remote(camera.acknowledged, self._stop.is_set())

    def _order(self, camera: _Camera) -> StartOrder:
        resume = camera.resume
        if not resume.replay:  # a live source goes on from what is stored, numbering after it
            resume = replace(resume, sequence=camera.acknowledged, faces_scanned=camera.faces_scanned,
                             frames_dropped=camera.frames_dropped)
        return StartOrder(
            self.running.name, camera.name, camera.source, self.opened.policy, self.opened.realtime, self.opened.engine, self.config,
            self.running.threshold, self.running.model_id, resume,
        )

    def _receive(self, camera: _Camera, seal: Seal) -> None:
        call, camera.call = camera.call, None
        try:
            result = ray.get(call)
        except ActorDiedError as exc:
            raise CameraFailedError(f"camera {camera.name} is lost: its actor died and will not be restarted ({exc})") from None
        except RayActorError:
            self._lost(camera)
            return
        except RayTaskError as exc:
            raise CameraFailedError(f"camera {camera.name} failed on its node: {_cause(exc)}") from None
        if camera.starting:
            self._placed(camera, result)
        elif result is None:
            self._lost(camera)  # restarted by Ray between two polls
        else:
            self._apply(camera, result, seal)

    def _placed(self, camera: _Camera, placement: Placement) -> None:
        camera.starting = False
        restarted = camera.down_since is not None
        if restarted and placement.started:
            assert camera.down_since is not None
            self.running.record_gap(camera.name, camera.down_since, datetime.now(UTC))
            log.warning("camera %s restarted on node %s", camera.name, placement.node_id)
        camera.down_since = None
        camera.last_contact = datetime.now(UTC)
        if self._on_placed is not None:
            self._on_placed(camera.name, placement.node_id, restarted)

    def _lost(self, camera: _Camera) -> None:
        """The actor died or was restarted: start it again (Ray places it) and time the outage."""
        if camera.down_since is None:
            camera.down_since = camera.last_contact or datetime.now(UTC)
            log.warning("camera %s lost its actor (node down?); waiting for Ray to restart it", camera.name)
        camera.starting = True
        camera.retry_at = time.monotonic() + RETRY_SECONDS

    def _apply(self, camera: _Camera, report: CameraReport, seal: Seal) -> None:
        """Store each output not stored yet, in order, then acknowledge it with the next poll."""
        camera.last_contact = datetime.now(UTC)
        for output in report.outputs:
            if output.sequence <= camera.acknowledged:
                continue
            if output.alert is not None:
                alert: AlertEvent = seal.open(output.alert)
                alert_id = self.running.raise_alert(alert)
                camera.alerts += 1
                if self._on_alert is not None:
                    self._on_alert(alert, alert_id)
            elif output.gap is not None:
                self.running.record_gap(camera.name, *output.gap)
            camera.acknowledged = output.sequence
        if report.faces_scanned > camera.faces_scanned:
            self.running.add_faces_scanned(camera.name, report.faces_scanned - camera.faces_scanned)
            camera.faces_scanned = report.faces_scanned
        if report.frames_dropped > camera.frames_dropped:
            self.running.add_frames_dropped(camera.name, report.frames_dropped - camera.frames_dropped)
            camera.frames_dropped = report.frames_dropped
        camera.resume = report.resume
        camera.cpu_seconds = report.cpu_seconds
        stats = camera.stats
        stats.frames, stats.dropped, stats.faces_scanned, stats.alerts = report.frames, camera.frames_dropped, camera.faces_scanned, camera.alerts
        stats.seconds.update(report.seconds)
        if report.error is not None:
            raise CameraFailedError(f"camera {camera.name} failed: {report.error}")
        if report.finished:
            camera.done = True
            stats.finished = time.monotonic()

    def _give_up_on_down_cameras(self) -> None:
        """Once stopping, a camera still waiting for a node is ended; its outage is a gap."""
        if not self._stop.is_set():
            return
        for camera in self._cameras:
            if camera.starting and camera.down_since is not None and not camera.done:
                self.running.record_gap(camera.name, camera.down_since, datetime.now(UTC))
                camera.done = True
                camera.stats.finished = time.monotonic()


def _cause(error: RayTaskError) -> str:
    """The exception a remote call raised, without Ray's traceback framing."""
    cause = getattr(error, "cause", None)
    return str(cause) if cause is not None else str(error).splitlines()[-1]
