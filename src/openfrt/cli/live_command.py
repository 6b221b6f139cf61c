"""``openfrt live``: run a planned, authorised deployment on its cameras, files or image folders.

Only a deployment another user planned and an authorising officer authorised can run: this
command plans nothing. As the user in ``OPENFRT_TOKEN`` it opens the deployment's cameras,
starts it (which snapshots the watchlist), runs one pipeline thread per camera, and ends it
when every source has ended or on Ctrl-C / SIGTERM — always, so the watchlist snapshot is
destroyed and the record published even after a failure. With ``--events-json`` each alert is
one JSON line and the record is the last; otherwise a live table shows progress.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.live import Live
from rich.table import Table

from openfrt.cli.common import (
    DetectorModelOption,
    DetectorOption,
    EmbedderOption,
    HomeOption,
    console,
    err_console,
    open_store,
    print_json,
    usage_error,
)
from openfrt.cli.identity import signed_in
from openfrt.errors import OpenFRTError
from openfrt.gallery import Gallery
from openfrt.gallery.fitness import expected_fitness
from openfrt.live.deployments import DeploymentService, RunningDeployment
from openfrt.live.events import AlertEvent
from openfrt.live.pipeline import (
    DEFAULT_CADENCE,
    CameraStats,
    LiveRunner,
    PipelineConfig,
    live_engine_config,
)
from openfrt.live.sources import Source, open_sources
from openfrt.vision import EngineConfig, FaceEngine


def live(
    deployment: Annotated[str, typer.Option(
        "--deployment", help="The planned, authorised deployment to run (`openfrt deployments create` and `authorise`).")],
    events_json: Annotated[bool, typer.Option("--events-json", help="Print each alert, then the record, as JSON lines.")] = False,
    detector: DetectorOption = None,
    detector_model: DetectorModelOption = None,
    embedder: EmbedderOption = None,
    detect_width: Annotated[
        int | None, typer.Option("--detect-width", min=0, help="Detector input width in px (default 960 where supported; 0: full frames).")
    ] = None,
    cadence: Annotated[int, typer.Option("--cadence", min=1, help="Detect on every Nth frame.")] = DEFAULT_CADENCE,
    realtime: Annotated[bool, typer.Option("--realtime", help="Play video files at their frame rate, dropping frames when behind.")] = False,
    home: HomeOption = None,
) -> None:
    """Run a planned, authorised deployment: every face is searched against the watchlist; only
    matches are kept."""
    with open_store(home) as store:
        actor = signed_in(store, "run_deployments")
        engine = _live_engine(detector, detector_model, embedder, detect_width)
        service = DeploymentService(store, Gallery(store, engine))
        try:
            service.ready_to_start(deployment)  # before any camera is opened
            cameras = open_sources(service.camera_sources(deployment), realtime)
        except OpenFRTError as exc:
            usage_error(str(exc))
        try:
            running = service.start(deployment, actor)
        except OpenFRTError as exc:
            for source in cameras.values():
                source.stop()
            usage_error(str(exc))
        _report_fitness(running)
        _run(running, cameras, engine, PipelineConfig(cadence=cadence), events_json, actor)


def _report_fitness(running: RunningDeployment) -> None:
    """Tell the operator, before the first face, what this model, threshold and watchlist size
    are expected to achieve — and warn when the false-alert target cannot be met (on stderr, so
    ``--events-json`` output stays machine-readable)."""
    matcher = running.matcher
    fitness = expected_fitness(running.model_id, running.threshold, len(matcher), matcher.max_references)
    if fitness is None:
        err_console.print(f"[yellow]warning:[/yellow] {running.model_id} has no calibration: its accuracy is unmeasured")
    elif not fitness["meets_target"]:
        err_console.print(f"[yellow]warning:[/yellow] {fitness['message']}")
    else:
        err_console.print(fitness["message"])


def _live_engine(detector: str | None, detector_model: Path | None, embedder: str | None, detect_width: int | None) -> FaceEngine:
    """The engine all cameras share (see :class:`LiveRunner`); configuration errors exit 2."""
    try:
        config = EngineConfig.from_env(detector=detector, embedder=embedder)
        if detector_model:
            config = config.model_copy(update={"detector_options": {"model_path": detector_model}})
        return FaceEngine(live_engine_config(config, detect_width))
    except (OpenFRTError, ValueError) as exc:
        usage_error(str(exc))


def _run(
    running: RunningDeployment,
    cameras: dict[str, Source],
    engine: FaceEngine,
    config: PipelineConfig,
    events_json: bool,
    actor: str,
) -> None:
    """Run all cameras until they end or are interrupted, then end the deployment and print its record."""
    display: Live | None = None

    def on_alert(alert: AlertEvent, alert_id: int) -> None:
        line = {"event": "alert", "deployment": running.name, "camera": alert.camera, "subject": alert.subject,
                "similarity": round(alert.similarity, 6), "time": round(alert.source_time, 3), "track": alert.track_id}
        if events_json:
            print_json(line)
        elif display is not None:
            display.console.print(f"[bold red]ALERT {alert_id}[/bold red] {alert.camera}: {alert.subject} ({alert.similarity:.3f})")

    failure: OpenFRTError | None = None
    try:
        runner = LiveRunner(running, cameras, lambda: engine, config, on_alert=on_alert)
        with _stop_on_signals(runner.stop):
            if events_json:
                runner.run()
            else:
                with Live(get_renderable=lambda: _table(runner.stats()), console=console, refresh_per_second=2) as display:
                    runner.run()
    except OpenFRTError as exc:  # e.g. the watchlist was built with another model than the engine's
        failure = exc
    finally:
        record = running.end(actor)
    if events_json:
        print_json({"event": "record", **record.as_dict()})
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
