"""``openfrt live``: run a planned, authorised deployment on its cameras, files or image folders.

Only a deployment one user planned and another, an authorising officer, authorised can run:
this command plans nothing. As the user in ``OPENFRT_TOKEN`` it opens the deployment's cameras
(if the source policy allows them), starts it (which snapshots the watchlist), runs one
pipeline thread per camera, and ends it when every source has ended or on Ctrl-C / SIGTERM —
always, so the watchlist snapshot is destroyed and the record published even after a failure.
With ``--events-json`` each alert is one JSON line and the record is the last; otherwise a live
table shows progress.

With ``--ray-address`` (or ``OPENFRT_RAY_ADDRESS``) each camera runs as a Ray actor on the
cluster (see ``openfrt.cluster``); Ray is imported only then.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from openfrt.cli.cluster_options import CameraCpusOption, CameraResourceOption, RayAddressOption, cluster_settings
from openfrt.cli.common import (
    DetectorModelOption,
    DetectorOption,
    EmbedderOption,
    HomeOption,
    LogFormatOption,
    console,
    err_console,
    open_store,
    print_json,
    usage_error,
)
from openfrt.cli.identity import signed_in
from openfrt.errors import OpenFRTError
from openfrt.live.defaults import DEFAULT_CADENCE, DEFAULT_COARSE_WIDTH, DEFAULT_FULL_PASS_SECONDS
from openfrt.observability.logs import LogFormat

if TYPE_CHECKING:
    from openfrt.live.deployments import RunningDeployment
    from openfrt.live.events import AlertEvent, CameraRunner
    from openfrt.live.pipeline import AlertCallback, CameraStats, PipelineConfig
    from openfrt.live.processes import LocalCameras
    from openfrt.live.source_policy import SourcePolicy
    from openfrt.live.sources import Source
    from openfrt.vision import EngineConfig, FaceEngine
    from openfrt.cluster.cameras import OpenedCameras
    from openfrt.cluster.settings import ClusterSettings

#: How long ``openfrt live`` waits, once its deployment has ended, for its last events to go out;
#: those still undelivered wait in the outbox for the server (or the next run) to send them.
EVENT_DRAIN_SECONDS = 10.0

log = logging.getLogger(__name__)


def live(
    deployment: Annotated[str, typer.Option(
        "--deployment", help="The planned, authorised deployment to run (`openfrt deployments create` and `authorise`).")],
    events_json: Annotated[bool, typer.Option("--events-json", help="Print each alert, then the record, as JSON lines.")] = False,
    detector: DetectorOption = None,
    detector_model: DetectorModelOption = None,
    embedder: EmbedderOption = None,
    detect_width: Annotated[
        int | None, typer.Option("--detect-width", min=0, help="Detector input width in px (default 1920 where supported: full 1080p frames; 0: full frames).")
    ] = None,
    cadence: Annotated[int, typer.Option("--cadence", min=1, help="Detect on every Nth frame.")] = DEFAULT_CADENCE,
    full_pass: Annotated[float, typer.Option(
        "--full-pass", min=0.0,
        help="Seconds between detections over the whole frame; in between, only where there is motion and around tracked faces "
             "(0: the whole frame every time).")] = DEFAULT_FULL_PASS_SECONDS,
    motion_every: Annotated[float, typer.Option(
        "--motion-every", min=0.0,
        help="Seconds between looks for motion (0: every detection); in between, only around tracked faces. "
             "Faster in crowds; new faces are found up to this much later.")] = 0.0,
    coarse_width: Annotated[int, typer.Option(
        "--coarse-width", min=0,
        help="Width in px motion is detected at (frames wider are shrunk to it; 0: full resolution). Full passes, and faces "
             "too small for it, stay at full resolution.")] = DEFAULT_COARSE_WIDTH,
    realtime: Annotated[bool, typer.Option("--realtime", help="Play video files at their frame rate, dropping frames when behind.")] = False,
    home: HomeOption = None,
    log_format: LogFormatOption = LogFormat.text,
    ray_address: RayAddressOption = None,
    camera_cpus: CameraCpusOption = 1.0,
    camera_resource: CameraResourceOption = None,
) -> None:
    """Run a planned, authorised deployment: every face is searched against the watchlist; only
    matches are kept. Its events go to the configured webhooks and broker from this process too
    (see README)."""
    from openfrt.gallery import Gallery
    from openfrt.integrations.dispatcher import EventDispatcher
    from openfrt.live.deployments import DeploymentService
    from openfrt.live.pipeline import PipelineConfig
    from openfrt.live.processes import LocalCameras
    from openfrt.live.regions import RegionConfig
    from openfrt.observability.logs import configure_logging, log_context

    if log_format is LogFormat.json:  # text leaves logging as it was: warnings only, under the live table
        configure_logging(LogFormat.json)
    cluster = cluster_settings(ray_address, camera_cpus, camera_resource, home)
    pipeline_config = PipelineConfig(cadence=cadence, regions=RegionConfig(
        full_pass_seconds=full_pass, motion_seconds=motion_every, coarse_width=coarse_width))
    opened: OpenedCameras | None = None
    try:
        with open_store(home) as store:
            actor = signed_in(store, "run_deployments")
            engine = _live_engine(detector, detector_model, embedder, detect_width)
            gallery = Gallery(store, engine)
            service = DeploymentService(store, gallery)
            try:  # before any camera is opened: the plan, its authority and the engine's model
                planned = service.ready_to_start(deployment)
                gallery.require_engine_model(planned.watchlist)
                targets = service.camera_sources(deployment)
            except OpenFRTError as exc:
                usage_error(str(exc))
            if cluster is None:
                cameras = _open_sources(targets, service.source_policy, realtime, cadence)
            else:
                cameras = {}
                opened = _open_on_cluster(cluster, engine.config, targets, service.source_policy, realtime)
            try:
                running = service.start(deployment, actor)
            except OpenFRTError as exc:
                for source in cameras.values():
                    source.stop()
                usage_error(str(exc))
            _report_fitness(running, logged=log_format is LogFormat.json)
            dispatcher = EventDispatcher(store)
            dispatcher.start()
            try:
                with log_context(deployment=deployment):
                    local = LocalCameras(cameras, targets, service.source_policy, realtime)
                    _run_cameras(running, local, engine, opened, pipeline_config, events_json, actor)
            finally:
                dispatcher.stop(drain_seconds=EVENT_DRAIN_SECONDS)
    finally:
        if opened is not None:
            opened.close()


def _run_cameras(
    running: RunningDeployment, local: LocalCameras, engine: FaceEngine, opened: OpenedCameras | None,
    config: PipelineConfig, events_json: bool, actor: str,
) -> None:
    """Run the cameras on the cluster when they were opened there; else here, each in a process
    of its own when there are several and cores for more than one (see
    :mod:`openfrt.live.processes`), or as threads of this process."""
    if opened is None:
        _run(running, _local_runner(running, local, engine, config), events_json, actor, print_json)
        return
    from openfrt.cluster.settings import disconnect

    with _stdout_kept_for_json() if events_json else nullcontext(sys.stdout) as out:
        emit = lambda payload: print_json(payload, file=out)  # noqa: E731
        try:
            _run(running, _cluster_runner(running, opened, config, events_json, emit), events_json, actor, emit)
        finally:  # Ray's late messages (the actors' end) still go to stderr
            opened.close()
            disconnect()


def _local_runner(
    running: RunningDeployment, local: LocalCameras, engine: FaceEngine, config: PipelineConfig
) -> Callable[[AlertCallback], CameraRunner]:
    from openfrt.live.processes import local_runner

    return lambda on_alert: local_runner(running, local, engine, config, on_alert)


def _open_sources(targets: dict[str, str], policy: SourcePolicy, realtime: bool, cadence: int) -> dict[str, Source]:
    """Each camera's source, all or none, if the source policy allows it (the same rule as the server's)."""
    from openfrt.live.sources import open_sources

    try:
        return open_sources(targets, policy=policy, realtime=realtime, decode_every=cadence)
    except OpenFRTError as exc:
        usage_error(str(exc))


def _open_on_cluster(
    cluster: ClusterSettings, engine: EngineConfig, targets: dict[str, str], policy: SourcePolicy, realtime: bool
) -> OpenedCameras:
    """Join the cluster and place one actor per camera, each opening its source where it runs."""
    from openfrt.cluster.cameras import ClusterCameras
    from openfrt.cluster.settings import connect

    try:
        connect(cluster.address)
        return ClusterCameras(cluster, engine, policy, realtime).open(targets)
    except OpenFRTError as exc:
        usage_error(str(exc))


@contextmanager
def _stdout_kept_for_json() -> Iterator[IO[str]]:
    """Ray's driver prints cluster events (a node marked dead...) to ``sys.stdout`` from its own
    thread; with ``--events-json`` in cluster mode ``sys.stdout`` points at stderr meanwhile, and
    the JSON lines go to the real stdout."""
    real, sys.stdout = sys.stdout, sys.stderr
    try:
        yield real
    finally:
        sys.stdout = real


def _cluster_runner(
    running: RunningDeployment, opened: OpenedCameras, config: PipelineConfig, events_json: bool, emit: Callable[[dict[str, Any]], None]
) -> Callable[[AlertCallback], CameraRunner]:
    """Runners of the cameras' actors; with ``--events-json`` each (re)start is a ``camera`` line."""
    from openfrt.cluster.cameras import ClusterRunner

    def on_placed(camera: str, node: str, restarted: bool) -> None:
        if events_json:
            emit({"event": "camera", "deployment": running.name, "camera": camera, "node": node, "restarted": restarted})
        elif restarted:
            err_console.print(f"camera {camera} restarted on node {node}")

    return lambda on_alert: ClusterRunner(running, opened, config, on_alert=on_alert, on_placed=on_placed)


def _report_fitness(running: RunningDeployment, logged: bool = False) -> None:
    """Tell the operator, before the first face, what this model, threshold and watchlist size
    are expected to achieve — and warn when the false-alert target cannot be met (on stderr, so
    ``--events-json`` output stays machine-readable)."""
    from openfrt.gallery.fitness import expected_fitness

    matcher = running.matcher
    fitness = expected_fitness(running.model_id, running.threshold, len(matcher), matcher.max_references)
    if fitness is None:
        message, warning = f"{running.model_id} has no calibration: its accuracy is unmeasured", True
    else:
        message, warning = fitness["message"], not fitness["meets_target"]
    if logged:  # --log-format json: standard error holds log lines only
        log.log(logging.WARNING if warning else logging.INFO, "%s", message)
    elif warning:
        err_console.print(f"[yellow]warning:[/yellow] {message}")
    else:
        err_console.print(message)


def _live_engine(detector: str | None, detector_model: Path | None, embedder: str | None, detect_width: int | None) -> FaceEngine:
    """The live engine (cameras run on it or on copies of it: :class:`LiveRunner`); configuration errors exit 2."""
    from openfrt.live.pipeline import live_engine_config
    from openfrt.vision import EngineConfig, FaceEngine

    try:
        config = EngineConfig.from_env(detector=detector, embedder=embedder)
        if detector_model:
            config = config.model_copy(update={"detector_options": {"model_path": detector_model}})
        return FaceEngine(live_engine_config(config, detect_width))
    except (OpenFRTError, ValueError) as exc:
        usage_error(str(exc))


def _run(
    running: RunningDeployment,
    make_runner: Callable[[AlertCallback], CameraRunner],
    events_json: bool,
    actor: str,
    emit: Callable[[dict[str, Any]], None],
) -> None:
    """Run all cameras until they end or are interrupted, then end the deployment and print its record."""
    from rich.live import Live

    display: Live | None = None

    def on_alert(alert: AlertEvent, alert_id: int) -> None:
        line = {"event": "alert", "deployment": running.name, "camera": alert.camera, "subject": alert.subject,
                "similarity": round(alert.similarity, 6), "time": round(alert.source_time, 3), "track": alert.track_id}
        if events_json:
            emit(line)
        elif display is not None:
            display.console.print(f"[bold red]ALERT {alert_id}[/bold red] {alert.camera}: {alert.subject} ({alert.similarity:.3f})")

    failure: OpenFRTError | None = None
    try:
        runner = make_runner(on_alert)
        running.when_lease_lost(runner.stop)
        with _stop_on_signals(runner.stop):
            if events_json:
                runner.run()
            else:
                with Live(get_renderable=lambda: _table(runner.stats()), console=console, refresh_per_second=2) as display:
                    runner.run()
    except OpenFRTError as exc:  # e.g. the watchlist was built with another model than the engine's
        failure = exc
    finally:
        if running.lease_lost:  # recovered by another process, which ended or runs it now
            usage_error(f"deployment {running.name} was recovered by another process after this one stopped renewing its lease")
        record = running.end(actor, reason=None if failure is None else f"a camera failed: {failure}")
    if events_json:
        emit({"event": "record", **record.as_dict()})
    else:
        console.print(f"deployment {running.name} ended: {record.faces_scanned} faces scanned, {record.alerts} alerts")
    if failure is not None:
        usage_error(str(failure))


@contextmanager
def _stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """While active, SIGINT (Ctrl-C) and SIGTERM call ``stop`` instead of killing the process,
    so the pipelines finish their tracks and the deployment is ended properly."""
    saved = {number: signal.signal(number, lambda *_: stop()) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


def _table(stats: dict[str, CameraStats]) -> Table:
    table = Table("camera", "fps", "frames", "dropped", "faces scanned", "alerts", title="openfrt live")
    for camera, figures in stats.items():
        table.add_row(camera, f"{figures.fps:.1f}", str(figures.frames), str(figures.dropped),
                      str(figures.faces_scanned), str(figures.alerts))
    return table
