"""Cameras in processes of their own on this machine, one interpreter each.

Two cameras' pipelines in threads of one process share one interpreter lock: their Python
between model calls (region planning, decoding YuNet's outputs, tracking) waits for each other,
a core idles meanwhile, and when both are always busy the hand-overs cost CPU too. As threads,
two 1080p cameras played in real time on 2 cores dropped frames in nearly every run, however
many they kept; as processes keeping 2 s of frames, none in 4 runs of ``openfrt live`` (README,
*Live deployments*).

**What crosses.** Each camera's process opens its own source and builds its own engine, so
frames, chips and templates never leave it (as in a cluster's camera actor). It gets the
watchlist's matcher when started and sends back only what the deployment stores: alerts with
their media, counts, gaps, its running figures and its log lines (written here, in this
process's format, naming the deployment and camera). They are applied here, in the order sent,
to the same :class:`~openfrt.live.events.DeploymentSink` that threads would use; an alert waits
for its stored id, so the camera's log names the alert the record holds.

**Stopping.** :meth:`CameraProcesses.stop` asks each process to end its source; its pipeline
then finishes its tracks and reports. Ctrl-C reaches the processes too (one process group):
they ignore it and wait for the parent's word. A parent that dies closes their pipes, and
they end as if asked. Processes are started with "spawn" (a fresh interpreter: forking a
process that runs threads and OpenVINO is unsafe).
"""

from __future__ import annotations

import copy
import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

from openfrt.errors import OpenFRTError
from openfrt.gallery.matching import Matcher
from openfrt.live.events import AlertEvent, CameraOrder, CameraRunner, CameraSettings, DeploymentSink
from openfrt.live.pipeline import (
    AlertCallback, CameraPipeline, CameraStats, LiveRunner, PipelineConfig, available_cores, join_all, require_live_engine,
)
from openfrt.live.source_policy import SourcePolicy
from openfrt.live.sources import Source, open_source
from openfrt.observability.logs import log_context
from openfrt.vision import EngineConfig, FaceEngine

log = logging.getLogger(__name__)

#: Frames a camera's process keeps for its pipeline when playing live (a stream, or a file in
#: real time): 2 s at 25 fps, so a camera may fall that far behind in a burst (many new faces at
#: once) and catches up after it, having a core to itself. Two 1080p cameras through
#: ``openfrt live`` on 2 cores dropped none in 4 runs keeping 50, and up to 20 of 1,050 per
#: camera keeping 25 (README).
PROCESS_BACKLOG_FRAMES = 50

#: How long a camera's process may take to exit once it has reported its end.
EXIT_SECONDS = 10.0

#: How often a camera's process sends its running figures (for the live display and status).
STATS_SECONDS = 0.5


class CameraProcessError(OpenFRTError):
    """A camera's process failed (its source, its engine) or ended without saying why."""


@dataclass(frozen=True)
class LocalCameras:
    """A deployment's cameras as opened on this machine (``sources``, checked against ``policy``,
    so that a missing file or a refused address fails before the deployment starts), and what
    they were opened from, for running them in processes of their own."""

    sources: dict[str, Source]
    targets: dict[str, str]
    policy: SourcePolicy
    realtime: bool


def local_runner(
    sink: DeploymentSink, cameras: LocalCameras, engine: FaceEngine, config: PipelineConfig, on_alert: AlertCallback | None = None,
) -> CameraRunner:
    """What runs ``cameras`` here, for ``openfrt live`` and the server alike: threads on ``engine``
    for one camera (or one core); else a process per camera, each opening its own source and
    building an engine of ``engine``'s configuration — once ``engine`` is known to suit every
    camera, so that a deployment that cannot run fails here, before any process starts."""
    if len(cameras.sources) < 2 or available_cores() < 2:
        return LiveRunner(sink, cameras.sources, engine, config, on_alert=on_alert)
    for camera in cameras.sources:
        require_live_engine(camera, engine, sink.model_id)
    for source in cameras.sources.values():  # each process opens its own
        source.stop()
    return CameraProcesses(sink, cameras.targets, engine.config, config, cameras.policy, cameras.realtime, on_alert)


class CameraProcesses:
    """Runs each camera of ``sink``'s deployment in a process of its own; the same role as
    :class:`~openfrt.live.pipeline.LiveRunner`. ``targets``: camera name -> source description,
    already allowed by ``policy`` (checked again where each process opens it). Each process's
    engine has ``engine``'s configuration with an equal share of the cores as inference threads,
    unless it fixes them."""

    def __init__(
        self,
        sink: DeploymentSink,
        targets: Mapping[str, str],
        engine: EngineConfig,
        config: PipelineConfig,
        policy: SourcePolicy,
        realtime: bool,
        on_alert: AlertCallback | None = None,
        cores: int | None = None,
        backlog: int = PROCESS_BACKLOG_FRAMES,
    ) -> None:
        threads = engine.threads or max(1, (cores or available_cores()) // max(1, len(targets)))
        camera_engine = engine.model_copy(update={"threads": threads})
        self.sink = sink
        self._orders = [
            CameraOrder(sink.name, camera, spec, policy, realtime, camera_engine, config, sink.threshold, sink.model_id)
            for camera, spec in targets.items()
        ]
        self._backlog = backlog
        #: CPU seconds of each camera's process while its pipeline ran (not its start-up), once it has finished.
        self.cpu_seconds: dict[str, float] = {}
        self._on_alert = on_alert
        self._stats = {order.camera: CameraStats() for order in self._orders}
        self._controls: list[Connection] = []
        self._errors: list[BaseException] = []
        self._stopping = threading.Event()
        self._ready: set[str] = set()
        self._lock = threading.Lock()  # the control pipes: one sender at a time

    def run(self) -> None:
        """Start every camera's process, apply what they send until each has finished, and
        re-raise the first failure (the other cameras are stopped then)."""
        context = multiprocessing.get_context("spawn")
        readers = [self._start(context, order) for order in self._orders]
        if self._stopping.is_set():
            self.stop()  # stopped while the processes were being started
        join_all(readers)
        if self._errors:
            raise self._errors[0]

    def _start(self, context: Any, order: CameraOrder) -> threading.Thread:
        """Start ``order``'s camera process, and the thread that applies what it sends."""
        events, child_events = context.Pipe()
        child_control, control = context.Pipe(duplex=False)
        level = logging.getLogger().getEffectiveLevel()  # the camera logs what this process would
        arguments = (order, self.sink.matcher, self._backlog, level, child_events, child_control)
        process = context.Process(target=_run_camera, args=arguments, name=f"openfrt camera {order.camera}", daemon=True)
        process.start()
        child_events.close()  # the child's ends are its own now
        child_control.close()
        with self._lock:
            self._controls.append(control)
        reader = threading.Thread(target=self._serve, args=(order.camera, events, process), name=f"camera {order.camera} reports", daemon=True)
        reader.start()
        return reader

    def stop(self) -> None:
        """Ask every camera's process to end its source; :meth:`run` returns once they have."""
        with self._lock:
            self._stopping.set()
            for control in self._controls:
                try:
                    control.send("stop")
                except OSError:  # the process has ended already
                    pass

    def stats(self) -> dict[str, CameraStats]:
        return dict(self._stats)

    def _started(self, camera: str) -> None:
        """Once every camera's engine is built, start them all: a camera that played while
        another was still loading its models would drop frames for want of a core."""
        with self._lock:
            self._ready.add(camera)
            if len(self._ready) < len(self._orders) or self._stopping.is_set():
                return
            for control in self._controls:
                control.send("start")

    def _serve(self, camera: str, events: Connection, process: Any) -> None:
        """Apply one camera's reports to the deployment until it has finished or failed."""
        try:
            while not self._apply(camera, _received(camera, events, process), events):
                pass
        except BaseException as exc:  # noqa: BLE001 - handed to run() in the main thread, which re-raises it
            log.error("camera %s failed: %s", camera, exc)
            self._errors.append(exc)
            self.stop()
        finally:
            events.close()
            process.join(EXIT_SECONDS)
            if process.is_alive():  # it reported its end but does not exit
                process.terminate()

    def _apply(self, camera: str, message: tuple[Any, ...], events: Connection) -> bool:
        """Apply one report of ``camera``'s; True once it has finished."""
        kind, *body = message
        if kind == "alert":
            self._store_alert(body[0], events)
        elif kind == "scanned":
            self.sink.add_faces_scanned(camera, body[0])
        elif kind == "dropped":
            self.sink.add_frames_dropped(camera, body[0])
        elif kind == "gap":
            self.sink.record_gap(camera, body[0], body[1])
        elif kind == "ready":
            self._started(camera)
        elif kind == "log":
            with log_context(deployment=self.sink.name, camera=camera):
                logging.getLogger(body[0].name).handle(body[0])
        elif kind == "stats":
            self._stats[camera] = body[0]
        elif kind == "finished":
            self._stats[camera], self.cpu_seconds[camera] = body
            return True
        else:  # "failed"
            raise CameraProcessError(f"camera {camera} failed: {body[0]}")
        return False

    def _store_alert(self, alert: AlertEvent, events: Connection) -> None:
        alert_id = self.sink.raise_alert(alert)
        events.send(alert_id)
        if self._on_alert is not None:
            self._on_alert(alert, alert_id)


def _received(camera: str, events: Connection, process: Any) -> tuple[Any, ...]:
    """The next report of ``camera``'s process; its end without one is a failure."""
    try:
        message: tuple[Any, ...] = events.recv()
    except EOFError:
        process.join(5)
        raise CameraProcessError(f"camera {camera}'s process ended unexpectedly (exit code {process.exitcode})") from None
    return message


class _ReportingSink(CameraSettings):
    """The deployment as a camera's process sees it: everything to store is sent to the parent
    (one sender at a time)."""

    def __init__(self, order: CameraOrder, matcher: Matcher, events: Connection) -> None:
        super().__init__(order, matcher)
        self._events = events
        self._sending = threading.Lock()

    def send(self, *message: object) -> None:
        with self._sending:
            self._events.send(message)

    def add_faces_scanned(self, camera: str, count: int) -> None:
        self.send("scanned", count)

    def add_frames_dropped(self, camera: str, count: int) -> None:
        self.send("dropped", count)

    def record_gap(self, camera: str, started: datetime, ended: datetime) -> None:
        self.send("gap", started, ended)

    def raise_alert(self, alert: AlertEvent) -> int:
        """Send the alert and wait for its id: only the pipeline's thread receives."""
        self.send("alert", alert)
        alert_id: int = self._events.recv()
        return alert_id

    def end(self, actor: str) -> object:
        raise CameraProcessError("a camera's process cannot end its deployment; the parent does")


def _run_camera(order: CameraOrder, matcher: Matcher, backlog: int, log_level: int, events: Connection, control: Connection) -> None:
    """A camera's process: open the source, build the engine, run the pipeline, report."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent stops us in order
    sink = _ReportingSink(order, matcher, events)
    logging.getLogger().handlers[:] = [_ToParent(sink)]
    logging.getLogger().setLevel(log_level)
    try:
        source = open_source(order.source, policy=order.policy, realtime=order.realtime, decode_every=order.pipeline.cadence,
                             backlog=backlog)
        pipeline = CameraPipeline(order.camera, source, FaceEngine(order.engine), sink, order.pipeline)
        sink.send("ready")
        if _told(control) == "stop":
            sink.send("finished", _copied(pipeline.stats), 0.0)
            return
        threading.Thread(target=_stop_when_told, args=(control, source), daemon=True).start()
        finished = threading.Event()
        threading.Thread(target=_report_stats, args=(sink, pipeline, finished), daemon=True).start()
        cpu = time.process_time()
        stats = pipeline.run()
        finished.set()
        sink.send("finished", _copied(stats), time.process_time() - cpu)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which ends the deployment
        try:
            sink.send("failed", f"{type(exc).__name__}: {exc}")
        except OSError:
            pass  # the parent is gone


class _ToParent(logging.Handler):
    """Hands a camera's log records to the parent, which writes them as it writes its own (its
    format, with the deployment and camera named): the message is made here, as
    ``logging.handlers.QueueHandler`` makes it, since arguments and tracebacks may not pickle."""

    def __init__(self, sink: _ReportingSink) -> None:
        super().__init__()
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            record = copy.copy(record)
            record.msg, record.args, record.exc_info, record.exc_text, record.stack_info = message, None, None, None, None
            self._sink.send("log", record)
        except OSError:
            pass  # the parent is gone: nobody to write it
        except Exception:  # noqa: BLE001 - a log line must never stop the camera
            self.handleError(record)


def _told(control: Connection) -> str:
    """The parent's next word: "start" or "stop" ("stop" too when the parent is gone)."""
    try:
        word: str = control.recv()
    except (EOFError, OSError):
        return "stop"
    return word


def _stop_when_told(control: Connection, source: Source) -> None:
    _told(control)
    source.stop()


def _report_stats(sink: _ReportingSink, pipeline: CameraPipeline, finished: threading.Event) -> None:
    while not finished.wait(STATS_SECONDS):
        try:
            sink.send("stats", _copied(pipeline.stats))
        except OSError:
            return


def _copied(stats: CameraStats) -> CameraStats:
    """A snapshot of ``stats`` that the pipeline's thread cannot change while it is pickled."""
    return replace(stats, seconds=dict(stats.seconds))
