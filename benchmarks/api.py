"""Server load: alert polling latency while a deployment raises alerts, over real HTTP.

    python benchmarks/api.py [--clients 10] [--alerts 1000] [--pause 0.1] [--rate 0] [--repeat 1]
                             [--deployments 1] [--frame-size 320x180] [--database-url URL] [--keep] [--raw FILE]

Each run uses a fresh data directory (``OPENFRT_HOME``) and database: SQLite in that directory,
or, with ``--database-url``, a new database created on that PostgreSQL server (the URL's role
needs CREATEDB, e.g. ``OPENFRT_TEST_POSTGRES_URL`` from ``.ci/postgres.sh``) and dropped after.
In this process it creates an operator and an API token, a watchlist of ``--subjects``
subjects with random templates of the default engine's model (the records side never looks at
faces, so no image work is needed) and a started one-camera deployment. It then starts
``python -m openfrt serve`` as a separate process on a free localhost port, and:

* ``--clients`` HTTP clients (threads, one keep-alive ``httpx.Client`` each) poll
  ``GET /api/alerts?after=<last id seen>&limit=100`` with a bearer token, pausing ``--pause``
  seconds after a page that was not full, and time every request;
* one more client listens to ``GET /api/alerts/stream`` (server-sent events);
* meanwhile this process raises ``--alerts`` alerts through ``RunningDeployment.raise_alert``,
  as the live pipeline does, each with a real JPEG probe crop and frame, at ``--rate`` per
  second (0: as fast as the database takes them). With ``--deployments N`` that many running
  deployments share the alerts, each raising from its own thread, so their transactions overlap
  (as several deployments, or ``openfrt live`` processes beside the server, do).

The clients run in a child process so that their timing does not wait on this process's
interpreter lock while it raises alerts. Every client must see every alert, exactly once and in
order (checked). Reported per run, and as medians over ``--repeat`` runs:

* poll latency p50/p95/p99/max and polls per second, over all polls from the first alert until
  the client has seen the last one; errors (non-200 answers or failed requests);
* "poll seen": alert committed → first poll that returned it, per client (bounded below by the pause);
* SSE delivery: alert committed → event received on the stream. The server's feed reads the
  database every ``alert_poll_seconds`` (0.5 s by default), so this is about half that at p50;
* the rate alerts were raised at and the median time of one ``raise_alert`` call;
* the server's CPU use during the load, also per poll (less sensitive to other work on the
  machine than latency is), and the machine's 1-minute load average before and after: on a
  shared machine the latencies mean little without them.

``--raw FILE`` appends every poll and alert as JSON lines, to look at latency over time or by
page size.

Target (issue 7): poll p95 below 200 ms. Latency is only meaningful on an otherwise idle
machine: on 2 CPUs kept at load 5-9 by other work, identical runs gave p95 from 100 to 400 ms,
while the server's CPU per poll stayed within 6-11 ms. A poll costs more the more alerts it
returns, so any stall (a garbage collection, the machine) is followed by fuller, slower pages.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import httpx
import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from openfrt.live.deployments import RunningDeployment
    from openfrt.records import RecordStore
    from openfrt.vision import FaceEngine

#: The server, as its operators start it (options are added).
SERVE = [sys.executable, "-m", "openfrt", "serve"]
#: The issue's target for the 95th percentile of poll latency.
TARGET_P95_MS = 200.0
#: Alerts per poll, as the console asks for them.
PAGE = 100
OPERATOR = "bench-operator"
CAMERA = "gate"
DEPLOYMENT = "load-benchmark"
WATCHLIST = "load-benchmark"


# -- what one run measures ----------------------------------------------------------------------


class Poll(NamedTuple):
    """One request: when it started (wall time), how long it took, its HTTP status (0: the
    request failed) and how many alerts it returned."""

    started: float
    seconds: float
    status: int
    alerts: int


@dataclass
class ClientReport:
    """One polling client's requests, and the alert ids it received with the wall time of the
    poll that brought each."""

    polls: list[Poll] = field(default_factory=list)
    seen: list[tuple[int, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class LoadReport:
    """What the child process sends back: every client's report and the event stream's."""

    clients: list[ClientReport]
    stream_received: dict[int, float]
    stream_resyncs: int
    stream_errors: list[str]


@dataclass
class RunResult:
    """The numbers of one run, ready for the table (latencies in milliseconds)."""

    metrics: dict[str, float]
    #: Every client and the event stream saw every alert, and the deployment record counts them all.
    correct: bool
    problems: list[str]
    #: Failed requests, which count as errors but not against correctness when retried.
    notes: list[str]


# -- the clients (child process) ----------------------------------------------------------------


def run_clients(base_url: str, token: str, clients: int, expected: int, pause: float, settle: float,
                go: ProcessEvent, posted: ProcessEvent, reports: multiprocessing.Queue[Any]) -> None:
    """The child process: connect the event stream, start the pollers, say ready, and once the
    parent has raised every alert give the clients ``settle`` seconds to see them all."""
    headers = {"Authorization": f"Bearer {token}"}
    give_up = threading.Event()
    connected = threading.Event()
    stream: dict[str, Any] = {"received": {}, "resyncs": 0, "errors": []}
    listener = threading.Thread(target=_listen, args=(base_url, headers, expected, connected, give_up, stream), daemon=True)
    listener.start()
    if not connected.wait(30):
        stream["errors"].append("event stream did not connect within 30 s")
    results = [ClientReport() for _ in range(clients)]
    pollers = [threading.Thread(target=_poll, args=(base_url, headers, expected, pause, go, give_up, report), daemon=True)
               for report in results]
    for poller in pollers:
        poller.start()
    reports.put("ready")
    posted.wait()
    deadline = time.monotonic() + settle
    for thread in [*pollers, listener]:
        thread.join(max(0.0, deadline - time.monotonic()))
    give_up.set()
    for thread in [*pollers, listener]:
        thread.join(20)
    reports.put(LoadReport(results, dict(stream["received"]), stream["resyncs"], stream["errors"]))


def _poll(base_url: str, headers: dict[str, str], expected: int, pause: float, go: ProcessEvent,
          give_up: threading.Event, report: ClientReport) -> None:
    """Poll for new alerts as a console would, until all ``expected`` have been seen. A full page
    means more are waiting, so the next poll follows at once; otherwise the client pauses."""
    after = 0
    go.wait()
    with httpx.Client(base_url=base_url, headers=headers, timeout=30.0) as client:
        while len(report.seen) < expected and not give_up.is_set():
            started_wall, started = time.time(), time.perf_counter()
            try:
                response = client.get("/api/alerts", params={"after": after, "limit": PAGE})
                page = response.json() if response.status_code == 200 else None
            except (httpx.HTTPError, ValueError) as exc:
                report.polls.append(Poll(started_wall, time.perf_counter() - started, 0, 0))
                report.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(pause)
                continue
            report.polls.append(Poll(started_wall, time.perf_counter() - started, response.status_code, len(page or ())))
            if page is None:
                report.errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                time.sleep(pause)
                continue
            arrived = time.time()
            report.seen.extend((alert["id"], arrived) for alert in page)
            if page:
                after = page[-1]["id"]
            if len(page) < PAGE:
                time.sleep(pause)


def _listen(base_url: str, headers: dict[str, str], expected: int, connected: threading.Event,
            give_up: threading.Event, stream: dict[str, Any]) -> None:
    """Receive the alert stream, noting when each alert's event arrived. An idle stream only
    wakes for the server's keep-alive, so a stream missing alerts ends at the next one after
    ``give_up``."""
    received: dict[int, float] = stream["received"]
    try:
        with (httpx.Client(base_url=base_url, headers=headers, timeout=httpx.Timeout(30.0, read=None)) as client,
              client.stream("GET", "/api/alerts/stream") as response):
            if response.status_code != 200:
                stream["errors"].append(f"stream: HTTP {response.status_code}")
                connected.set()
                return
            kind = None
            for line in response.iter_lines():
                if line.startswith(":"):
                    connected.set()
                elif line.startswith("event:"):
                    kind = line.partition(":")[2].strip()
                elif line.startswith("data:"):
                    arrived = time.time()
                    if kind == "alert":
                        received.setdefault(json.loads(line.partition(":")[2])["id"], arrived)
                    elif kind == "resync":
                        stream["resyncs"] += 1
                if len(received) >= expected or give_up.is_set():
                    return
    except httpx.HTTPError as exc:
        stream["errors"].append(f"stream: {type(exc).__name__}: {exc}")
    finally:
        connected.set()


# -- the data directory, the deployment and the server (this process) ---------------------------


@dataclass
class Prepared:
    """A store holding the benchmark's operator, watchlist and running deployments."""

    store: RecordStore
    deployments: list[RunningDeployment]
    token: str
    subjects: list[str]


def prepare(engine: FaceEngine, subjects: int, deployments: int) -> Prepared:
    """Operator and token, a watchlist of random templates, and ``deployments`` one-camera
    deployments planned, authorised and started as the console does it, in the store that
    ``OPENFRT_HOME`` and ``OPENFRT_DATABASE_URL`` name (the server's)."""
    from openfrt.gallery import Gallery
    from openfrt.live.deployments import DeploymentService
    from openfrt.records import (
        Category,
        RecordStore,
        ReferenceImage,
        ReferenceTemplate,
        Subject,
    )
    from openfrt.records.users import Role, UserService
    from openfrt.vision import Template

    store = RecordStore.open()
    try:
        users = UserService(store)
        users.create(OPERATOR, Role.operator, uuid.uuid4().hex, actor="benchmark")
        _, token = users.create_token(OPERATOR, "load benchmark", actor=OPERATOR)
        gallery = Gallery(store, engine)
        gallery.create_watchlist(WATCHLIST, purpose="load benchmark", authorised_by="Supt Bench", actor=OPERATOR,
                                 standing_reason="searched by every deployment of the benchmark")
        model, version = gallery.model_id.split("@")
        rng = np.random.default_rng(0)
        names = [f"subject-{index:03d}" for index in range(subjects)]
        with store.transaction() as session:
            for name in names:
                template = Template(rng.normal(size=128), model, version)
                reference = ReferenceImage(
                    image=store.cipher.encrypt(b"jpeg"), media_type="image/jpeg", face_box=[0, 0, 1, 1],
                    templates=[ReferenceTemplate(model_id=gallery.model_id, vector=store.seal_template(template))],
                )
                session.add(Subject(id=name, display_name=name, category=Category.wanted, images=[reference]))
        gallery.add_to_watchlist(WATCHLIST, names, actor=OPERATOR)
        service = DeploymentService(store, gallery)
        running = []
        for index in range(deployments):
            name = DEPLOYMENT if deployments == 1 else f"{DEPLOYMENT}-{index + 1}"
            service.create(name, purpose="load benchmark", location="localhost",
                           watchlist=WATCHLIST, actor=OPERATOR, cameras={CAMERA: "rtsp://benchmark.invalid/never-opened"})
            service.authorise(name, actor="Supt Bench")
            running.append(service.start(name, OPERATOR))
    except BaseException:
        store.close()
        raise
    return Prepared(store, running, token, names)


@contextmanager
def fresh_database(server_url: str | None) -> Iterator[str | None]:
    """A new, empty PostgreSQL database on ``server_url``'s server, dropped afterwards; None for SQLite."""
    if server_url is None:
        yield None
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"openfrt_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@dataclass
class Server:
    """The server process, where it listens, and its log (shown when it fails)."""

    process: subprocess.Popen[bytes]
    base_url: str
    log: Path


@contextmanager
def serve(env: dict[str, str], log: Path) -> Iterator[Server]:
    """``openfrt serve`` on a free port, ready when ``GET /api/setup`` answers; stopped with
    SIGTERM at the end, which must be a clean shutdown (uvicorn re-raises the signal after
    shutting down, so the exit status is -SIGTERM rather than 0)."""
    port = _free_port()
    with open(log, "wb") as output:
        process = subprocess.Popen([*SERVE, "--host", "127.0.0.1", "--port", str(port)],
                                   env=env, stdout=output, stderr=subprocess.STDOUT)
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        _wait_ready(server)
        yield server
    finally:
        _stop(server)


def _stop(server: Server) -> None:
    """SIGTERM, then check the shutdown was clean; a server that had already died was reported
    by whoever noticed, so it is not reported twice."""
    process = server.process
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise RuntimeError(f"the server did not stop within 60 s of SIGTERM; log: {server.log}") from None
    text = server.log.read_text(errors="replace")
    if process.returncode not in (0, -signal.SIGTERM) or "Application shutdown complete" not in text:
        raise RuntimeError(f"the server did not shut down cleanly (exit {process.returncode}):\n{_tail(text)}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_ready(server: Server, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited ({server.process.returncode}):\n{_tail(server.log.read_text(errors='replace'))}")
        try:
            if httpx.get(f"{server.base_url}/api/setup", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer within {timeout:.0f} s:\n{_tail(server.log.read_text(errors='replace'))}")


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _server_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a process, from /proc (None where there is no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- raising alerts -----------------------------------------------------------------------------


def sample_jpegs(count: int, size: tuple[int, int], seed: int) -> list[bytes]:
    """Small real JPEGs: a blurred scene with a few shapes and sensor noise, so they compress
    like camera images rather than like flat colour or pure noise."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(40, 200, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x, y = int(rng.integers(0, size[0])), int(rng.integers(0, size[1]))
            radius = int(rng.integers(size[1] // 10, size[1] // 3))
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(2)), dtype=np.int16)
        pixels = np.clip(pixels + rng.normal(0, 6, pixels.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
        images.append(buffer.getvalue())
    return images


@dataclass
class Posted:
    """Alert ids in id order (the order pollers must see them in), when each was committed
    (wall time), and each ``raise_alert`` call's duration."""

    ids: list[int]
    committed: dict[int, float]
    call_seconds: list[float]
    started: float
    ended: float


def post_alerts(running: RunningDeployment, subjects: Sequence[str], count: int, rate: float,
                crops: Sequence[bytes], frames: Sequence[bytes]) -> Posted:
    """Raise ``count`` alerts as the live pipeline does, one track each, at ``rate`` per second
    (0: back to back). Commit time is taken when ``raise_alert`` returns: the alert is then visible."""
    from openfrt.live.events import AlertEvent

    ids: list[int] = []
    committed: dict[int, float] = {}
    calls: list[float] = []
    started = time.perf_counter()
    started_wall = time.time()
    for index in range(count):
        if rate > 0:
            time.sleep(max(0.0, started + index / rate - time.perf_counter()))
        subject = subjects[index % len(subjects)]
        runner_up = subjects[(index + 1) % len(subjects)]
        event = AlertEvent(
            camera=CAMERA, track_id=index + 1, subject=subject, similarity=0.97, source_time=float(index),
            wall_time=datetime.now(UTC), probe_crop=crops[index % len(crops)], frame=frames[index % len(frames)],
            candidates=((subject, 0.97), (runner_up, 0.81)),
        )
        call = time.perf_counter()
        alert_id = running.raise_alert(event)
        calls.append(time.perf_counter() - call)
        committed[alert_id] = time.time()
        ids.append(alert_id)
    return Posted(ids, committed, calls, started_wall, time.time())


def post_concurrently(deployments: Sequence[RunningDeployment], subjects: Sequence[str], count: int, rate: float,
                      crops: Sequence[bytes], frames: Sequence[bytes]) -> Posted:
    """Share ``count`` alerts and ``rate`` between the deployments, each raising from its own
    thread as separate deployments do: their transactions then overlap, which is what can make
    alert ids become visible out of order."""
    if len(deployments) == 1:
        return post_alerts(deployments[0], subjects, count, rate, crops, frames)
    shares = [count // len(deployments) + (index < count % len(deployments)) for index in range(len(deployments))]
    results: list[Posted | BaseException | None] = [None] * len(deployments)

    def work(index: int) -> None:
        try:
            results[index] = post_alerts(deployments[index], subjects, shares[index], rate / len(deployments), crops, frames)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the caller's thread
            results[index] = exc

    threads = [threading.Thread(target=work, args=(index,), name=f"deployment {index + 1}") for index in range(len(deployments))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    posted = [result for result in results if isinstance(result, Posted)]
    return Posted(
        sorted(alert_id for part in posted for alert_id in part.ids),
        {alert_id: when for part in posted for alert_id, when in part.committed.items()},
        [seconds for part in posted for seconds in part.call_seconds],
        min(part.started for part in posted), max(part.ended for part in posted),
    )


# -- one run ------------------------------------------------------------------------------------


def run_once(args: argparse.Namespace, engine: FaceEngine, number: int, console: Console) -> RunResult:
    """One fresh data directory, server and deployment; the load; the checks."""
    work = Path(tempfile.mkdtemp(prefix="openfrt-api-bench-"))
    problems: list[str] = []
    try:
        with fresh_database(args.database_url) as database_url:
            env = _environment(work / "home", database_url)
            os.environ.clear()
            os.environ.update(env)  # this process's store opens the same data as the server
            load_before = os.getloadavg()[0]
            prepared = prepare(engine, args.subjects, args.deployments)
            try:
                with serve(env, work / "server.log") as server:
                    crops = sample_jpegs(8, (112, 112), seed=number)
                    frames = sample_jpegs(8, args.frame_size, seed=1000 + number)
                    report, posted, cpu = _load(args, server, prepared, crops, frames)
                    recorded = sum(running.end(OPERATOR).alerts for running in prepared.deployments)
                    load_after = os.getloadavg()[0]
                if recorded != args.alerts:
                    problems.append(f"the deployment records count {recorded} alerts, not {args.alerts}")
            finally:
                prepared.store.close()
    finally:
        if args.keep:
            console.print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    problems.extend(_check(report, posted, args.alerts))
    if args.raw is not None:
        _write_raw(args.raw, number, report, posted)
    metrics = _metrics(report, posted, cpu)
    metrics.update(load_before=load_before, load_after=load_after,
                   crop_kb=float(np.mean([len(c) for c in crops])) / 1024, frame_kb=float(np.mean([len(f) for f in frames])) / 1024)
    notes = [f"client {index}: {error}" for index, client in enumerate(report.clients) for error in client.errors[:3]]
    return RunResult(metrics, not problems, problems, notes + report.stream_errors)


def _environment(home: Path, database_url: str | None) -> dict[str, str]:
    """The environment of both processes: the fresh data directory and database, nothing inherited
    that could point elsewhere (another database or key file)."""
    env = {key: value for key, value in os.environ.items() if key not in ("OPENFRT_DATABASE_URL", "OPENFRT_KEY_FILE")}
    env["OPENFRT_HOME"] = str(home)
    if database_url is not None:
        env["OPENFRT_DATABASE_URL"] = database_url
    return env


def _load(args: argparse.Namespace, server: Server, prepared: Prepared, crops: list[bytes],
          frames: list[bytes]) -> tuple[LoadReport, Posted, float | None]:
    """Start the clients in a child process, raise the alerts once they are ready, collect their
    reports; also the server's CPU seconds spent meanwhile."""
    context = multiprocessing.get_context("spawn")
    go, posted_event = context.Event(), context.Event()
    reports: multiprocessing.Queue[Any] = context.Queue()
    child = context.Process(
        target=run_clients, name="api-bench-clients", daemon=True,
        args=(server.base_url, prepared.token, args.clients, args.alerts, args.pause, args.settle, go, posted_event, reports),
    )
    child.start()
    try:
        if reports.get(timeout=60) != "ready":
            raise RuntimeError("the client process did not start")
        cpu_before = _server_cpu_seconds(server.process.pid)
        go.set()
        try:
            posted = post_concurrently(prepared.deployments, prepared.subjects, args.alerts, args.rate, crops, frames)
        finally:
            posted_event.set()
        report: LoadReport = reports.get(timeout=args.settle + 60)
        cpu_after = _server_cpu_seconds(server.process.pid)
        child.join(30)
    finally:
        go.set()
        posted_event.set()
        if child.is_alive():
            child.terminate()
            child.join()
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    if child.exitcode != 0:
        raise RuntimeError(f"the client process failed (exit {child.exitcode})")
    return report, posted, cpu


def _write_raw(path: Path, number: int, report: LoadReport, posted: Posted) -> None:
    """Append one JSON line per poll (and one per alert) for looking at latency over time or by
    page size; times are seconds since the first alert was raised."""
    rows: list[dict[str, Any]] = [{"run": number + 1, "first_alert_unix_time": posted.started}]
    rows += [
        {"run": number + 1, "client": client, "t": round(poll.started - posted.started, 4), "ms": round(poll.seconds * 1000, 2),
         "status": poll.status, "alerts": poll.alerts}
        for client, result in enumerate(report.clients) for poll in result.polls
    ]
    for alert_id in posted.ids:
        received = report.stream_received.get(alert_id)
        rows.append({"run": number + 1, "alert": alert_id, "t": round(posted.committed[alert_id] - posted.started, 4),
                     "sse_ms": None if received is None else round((received - posted.committed[alert_id]) * 1000, 1)})
    with open(path, "a") as stream:
        stream.writelines(json.dumps(row) + "\n" for row in rows)


def _check(report: LoadReport, posted: Posted, expected: int) -> list[str]:
    """Every client and the stream saw every alert raised, each once, and the pollers in order."""
    problems = []
    if len(posted.ids) != expected or len(set(posted.ids)) != expected:
        problems.append(f"raised {len(set(posted.ids))} distinct alerts, not {expected}")
    for index, client in enumerate(report.clients):
        ids = [alert_id for alert_id, _ in client.seen]
        if ids != posted.ids:
            missing = len(set(posted.ids) - set(ids))
            problems.append(f"client {index}: saw {len(ids)} alerts ({len(set(ids))} distinct, {missing} missing, "
                            f"{'in' if ids == sorted(ids) else 'out of'} order)")
    missing = set(posted.ids) - set(report.stream_received)
    if missing:
        problems.append(f"event stream: {len(missing)} of {expected} alerts never arrived ({report.stream_resyncs} resyncs)")
    return problems


def _metrics(report: LoadReport, posted: Posted, server_cpu: float | None) -> dict[str, float]:
    polls = [poll for client in report.clients for poll in client.polls]
    latencies_ms = np.array([poll.seconds for poll in polls]) * 1000
    ok = [poll for poll in polls if poll.status == 200]
    last_answer = max((poll.started + poll.seconds for poll in polls), default=posted.ended)
    window = max(last_answer, posted.ended) - posted.started
    seen_ms = [(arrived - posted.committed[alert_id]) * 1000 for client in report.clients
               for alert_id, arrived in client.seen if alert_id in posted.committed]
    delivery_ms = [(arrived - posted.committed[alert_id]) * 1000 for alert_id, arrived in report.stream_received.items()
                   if alert_id in posted.committed]
    post_seconds = posted.ended - posted.started

    def percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
        return float(np.percentile(values, q)) if len(values) else float("nan")

    return {
        "requests": float(len(polls)),
        "errors": float(len(polls) - len(ok) + len(report.stream_errors)),
        "p50": percentile(latencies_ms, 50), "p95": percentile(latencies_ms, 95),
        "p99": percentile(latencies_ms, 99), "max": float(latencies_ms.max()) if len(latencies_ms) else float("nan"),
        "polls_per_s": len(polls) / window if window > 0 else float("nan"),
        "post_rate": len(posted.ids) / post_seconds if post_seconds > 0 else float("nan"),
        "post_seconds": post_seconds,
        "raise_ms": percentile(np.array(posted.call_seconds) * 1000, 50),
        "seen_p50": percentile(seen_ms, 50), "seen_p95": percentile(seen_ms, 95),
        "sse_p50": percentile(delivery_ms, 50), "sse_p95": percentile(delivery_ms, 95),
        "sse_max": max(delivery_ms, default=float("nan")),
        "server_cpu_pct": 100 * server_cpu / window if server_cpu is not None and window > 0 else float("nan"),
        "server_cpu_per_poll": 1000 * server_cpu / len(polls) if server_cpu is not None and polls else float("nan"),
        "window_s": window,
    }


# -- the table ----------------------------------------------------------------------------------


#: (metric key, label, format) in table order.
ROWS: tuple[tuple[str, str, str], ...] = (
    ("requests", "poll requests", "{:.0f}"),
    ("p50", "poll latency p50 (ms)", "{:.1f}"),
    ("p95", "poll latency p95 (ms)", "{:.1f}"),
    ("p99", "poll latency p99 (ms)", "{:.1f}"),
    ("max", "poll latency max (ms)", "{:.1f}"),
    ("polls_per_s", "polls/s (all clients)", "{:.0f}"),
    ("errors", "errors", "{:.0f}"),
    ("post_rate", "alerts raised/s", "{:.0f}"),
    ("raise_ms", "raise_alert p50 (ms)", "{:.1f}"),
    ("seen_p50", "alert → poll p50 (ms)", "{:.0f}"),
    ("seen_p95", "alert → poll p95 (ms)", "{:.0f}"),
    ("sse_p50", "alert → SSE event p50 (ms)", "{:.0f}"),
    ("sse_p95", "alert → SSE event p95 (ms)", "{:.0f}"),
    ("sse_max", "alert → SSE event max (ms)", "{:.0f}"),
    ("server_cpu_pct", "server CPU (% of one core)", "{:.0f}"),
    ("server_cpu_per_poll", "server CPU per poll (ms)", "{:.1f}"),
    ("window_s", "load window (s)", "{:.1f}"),
    ("load_before", "load average before (1 min)", "{:.2f}"),
    ("load_after", "load average after (1 min)", "{:.2f}"),
)


def print_table(results: list[RunResult], args: argparse.Namespace, console: Console) -> bool:
    """One column per run and, with several runs, their medians; returns whether p95 met the target."""
    backend = "PostgreSQL" if args.database_url else "SQLite"
    first = results[0].metrics
    console.print(f"[bold]openfrt serve under load[/bold]: {args.clients} polling clients + 1 SSE client, {args.alerts} alerts, "
                  f"{backend}; poll pause {args.pause:g} s, alert rate {'unlimited' if args.rate <= 0 else f'{args.rate:g}/s'}, "
                  f"probe {first['crop_kb']:.1f} KB + frame {first['frame_kb']:.1f} KB ({args.frame_size[0]}x{args.frame_size[1]}) "
                  f"per alert; {os.cpu_count()} CPUs, Python {platform.python_version()}")
    table = Table()
    table.add_column("")
    for index in range(len(results)):
        table.add_column(f"run {index + 1}", justify="right")
    if len(results) > 1:
        table.add_column("median", justify="right", style="bold")
    medians = {key: float(np.median([r.metrics[key] for r in results])) for key, _, _ in ROWS}
    for key, label, form in ROWS:
        cells = [form.format(r.metrics[key]) for r in results]
        table.add_row(label, *cells, *([form.format(medians[key])] if len(results) > 1 else []))
    table.add_row("every client saw every alert", *("yes" if r.correct else "NO" for r in results),
                  *(["yes" if all(r.correct for r in results) else "NO"] if len(results) > 1 else []))
    met = medians["p95"] < TARGET_P95_MS
    table.add_row(f"p95 < {TARGET_P95_MS:.0f} ms", *("yes" if r.metrics["p95"] < TARGET_P95_MS else "NO" for r in results),
                  *(["yes" if met else "NO"] if len(results) > 1 else []))
    console.print(table)
    for index, result in enumerate(results):
        for note in result.notes:
            console.print(f"[yellow]run {index + 1}: {note}[/yellow]")
        for problem in result.problems:
            console.print(f"[red]run {index + 1}: {problem}[/red]")
    return met and all(r.correct for r in results)


def main() -> None:
    args = _arguments()
    console = Console(width=200)
    from openfrt.vision import EngineConfig, FaceEngine

    engine = FaceEngine(EngineConfig.from_env())  # only its model id is used: templates are random
    original = dict(os.environ)
    results = []
    try:
        for number in range(args.repeat):
            results.append(run_once(args, engine, number, console))
            console.print(f"run {number + 1}/{args.repeat}: p95 {results[-1].metrics['p95']:.1f} ms", style="dim")
    finally:
        os.environ.clear()
        os.environ.update(original)
    ok = print_table(results, args, console)
    sys.exit(0 if ok else 1)


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--clients", type=int, default=10, help="Polling clients (default 10).")
    parser.add_argument("--alerts", type=int, default=1000, help="Alerts the deployment raises (default 1000).")
    parser.add_argument("--pause", type=float, default=0.1, help="Seconds a client waits after a page that was not full (default 0.1).")
    parser.add_argument("--rate", type=float, default=0.0, help="Alerts per second to raise (default 0: as fast as the database takes them).")
    parser.add_argument("--subjects", type=int, default=20, help="Watchlist size (default 20).")
    parser.add_argument("--deployments", type=int, default=1,
                        help="Deployments raising the alerts between them, each from its own thread (default 1).")
    parser.add_argument("--frame-size", type=_size, default=(320, 180), help="Alert frame JPEG size WxH (default 320x180; a camera's is 1920x1080).")
    parser.add_argument("--repeat", type=int, default=1, help="Runs, each on a fresh data directory and server; the table adds their medians.")
    parser.add_argument("--settle", type=float, default=60.0, help="Seconds clients get, after the last alert, to see every alert (default 60).")
    parser.add_argument("--database-url", help="A PostgreSQL server URL (e.g. $OPENFRT_TEST_POSTGRES_URL); each run creates and drops "
                                               "its own database there. Default: SQLite in the fresh data directory.")
    parser.add_argument("--keep", action="store_true", help="Keep each run's data directory and server log.")
    parser.add_argument("--raw", type=Path, help="Append every poll and alert, as JSON lines, to this file (for analysis).")
    args = parser.parse_args()
    if min(args.clients, args.alerts, args.repeat, args.deployments) < 1:
        parser.error("--clients, --alerts, --repeat and --deployments must be at least 1")
    return args


if __name__ == "__main__":
    main()
