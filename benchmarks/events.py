"""Events out: what the outbox costs a camera, and how soon events reach a webhook and a broker.

    python benchmarks/events.py [--alerts 100] [--rate 5] [--rounds 3] [--database-url URL]

In a fresh data directory (and, with ``--database-url``, a fresh PostgreSQL database, as
``benchmarks/api.py`` makes them) a started deployment raises ``--alerts`` alerts through
``RunningDeployment.raise_alert``, as the live pipeline does, at ``--rate`` per second (a very
busy deployment; 0: back to back, to see the dispatcher's throughput), each with a real JPEG
probe crop and frame. Each round does this twice in turn:

* **without** destinations: no event is written (the cost of looking for destinations only);
* **with** a webhook (a local HTTP receiver) and an MQTT broker (a local ``mosquitto`` on a free
  port; skipped if it is not installed), while an ``EventDispatcher`` in this process — as in
  the server — delivers: every alert's event is written in its transaction and sent.

Reported per round and as medians over the rounds: the median ``raise_alert`` call without and
with destinations and their ratio (measured in the same round, so machine load affects both),
and for each destination the time from an alert's commit to its event's arrival (p50/p95) and
the events delivered per second. Every event must arrive exactly once (checked).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from statistics import median

import numpy as np
from api import fresh_database, post_alerts, prepare, sample_jpegs
from rich.console import Console
from rich.table import Table

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
SECRET = "benchmark-signing-secret-0123456789"


@dataclass
class Arrivals:
    """When each alert's event arrived (wall time), and how many copies came."""

    times: dict[int, float]
    copies: int = 0

    def add(self, body: bytes) -> None:
        event = json.loads(body)
        if event["type"] == "alert.raised":
            self.copies += 1
            self.times.setdefault(event["data"]["alert"], time.time())


@contextmanager
def receiver() -> Iterator[tuple[str, Arrivals]]:
    arrivals = Arrivals({})
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the standard library's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                arrivals.add(body)
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/openfrt", arrivals
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def broker(directory: Path) -> Iterator[tuple[int, Arrivals] | None]:
    """mosquitto on a free port, and a subscriber to every topic; None without mosquitto."""
    if MOSQUITTO is None:
        yield None
        return
    import getpass

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = directory / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_type none\nuser {getpass.getuser()}\n")
    process = subprocess.Popen([MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    arrivals = Arrivals({})
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="benchmark-subscriber")
    client.on_connect = lambda c, *_: c.subscribe("openfrt/#", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda _c, _d, message: arrivals.add(message.payload)
    try:
        for _ in range(100):
            try:
                client.connect("127.0.0.1", port)
                break
            except OSError:
                time.sleep(0.05)
        client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the benchmark's subscriber could not subscribe")
        yield port, arrivals
    finally:
        client.disconnect()
        client.loop_stop()
        process.terminate()
        process.wait(10)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run(args: argparse.Namespace, console: Console) -> list[dict[str, float]]:
    from openfrt.integrations.destinations import DestinationService
    from openfrt.integrations.dispatcher import EventDispatcher
    from openfrt.vision import EngineConfig, FaceEngine

    work = Path(tempfile.mkdtemp(prefix="openfrt-events-bench-"))
    os.environ.update({"OPENFRT_HOME": str(work / "home"), "OPENFRT_ALLOWED_NETWORKS": "127.0.0.0/8"})
    rows = []
    try:
        with fresh_database(args.database_url) as url:
            if url:
                os.environ["OPENFRT_DATABASE_URL"] = url
            prepared = prepare(FaceEngine(EngineConfig.from_env()), subjects=50, deployments=1)
            (running,) = prepared.deployments
            crops, frames = sample_jpegs(16, (160, 160), 1), sample_jpegs(16, (1280, 720), 2)
            destinations = DestinationService(prepared.store)
            dispatcher = EventDispatcher(prepared.store)
            dispatcher.start()
            try:
                for number in range(1, args.rounds + 1):
                    without = post_alerts(running, prepared.subjects, args.alerts, args.rate, crops, frames)
                    with receiver() as (url_, webhook), broker(work) as mqtt_broker:
                        destinations.add_webhook("bench-webhook", url_, secret=SECRET, events=["alert.raised"], actor="benchmark")
                        if mqtt_broker is not None:
                            destinations.set_mqtt(host="127.0.0.1", port=mqtt_broker[0], events=["alert.raised"], actor="benchmark")
                        posted = post_alerts(running, prepared.subjects, args.alerts, args.rate, crops, frames)
                        targets = [("webhook", webhook)] + ([("MQTT", mqtt_broker[1])] if mqtt_broker else [])
                        deadline = time.monotonic() + 300
                        while time.monotonic() < deadline and any(len(arrived.times) < args.alerts for _, arrived in targets):
                            time.sleep(0.05)
                        for name in ("bench-webhook", "mqtt"):
                            if name == "bench-webhook" or mqtt_broker is not None:
                                destinations.remove(name, actor="benchmark")
                        time.sleep(dispatcher.poll_seconds * 4)  # it lets the broker go before the broker stops
                    row = {"round": number, "raise without": median(without.call_seconds) * 1000,
                           "raise with": median(posted.call_seconds) * 1000}
                    for name, arrived in targets:
                        latencies = [arrived.times[alert] - posted.committed[alert] for alert in posted.ids if alert in arrived.times]
                        if len(arrived.times) != args.alerts or arrived.copies != args.alerts:
                            console.print(f"[red]{name}: {len(arrived.times)} of {args.alerts} events, {arrived.copies} copies[/red]")
                        row[f"{name} p50"] = percentile(latencies, 50) * 1000
                        row[f"{name} p95"] = percentile(latencies, 95) * 1000
                        row[f"{name} per s"] = args.alerts / (max(arrived.times.values()) - min(posted.committed.values()))
                    rows.append(row)
                    console.print(f"round {number}: " + ", ".join(f"{key} {value:.2f}" for key, value in row.items() if key != "round"))
            finally:
                dispatcher.stop()
                prepared.store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def print_table(rows: list[dict[str, float]], args: argparse.Namespace, console: Console) -> None:
    pace = f"{args.rate:g} per second" if args.rate else "back to back"
    table = Table(title=f"events out: {args.alerts} alerts raised {pace}, {args.rounds} rounds "
                        f"({'PostgreSQL' if args.database_url else 'SQLite'}; load average {os.getloadavg()[0]:.1f})")
    keys = [key for key in rows[0] if key != "round"]
    table.add_column("")
    for key in keys:
        table.add_column(key, justify="right")
    table.add_column("with / without", justify="right")
    medians = {key: median(row[key] for row in rows) for key in keys}
    medians["ratio"] = median(row["raise with"] / row["raise without"] for row in rows)
    for label, row in [*((f"round {row['round']:.0f}", row) for row in rows), ("median", medians)]:
        ratio = row.get("ratio", row["raise with"] / row["raise without"])
        table.add_row(label, *(f"{row[key]:.1f}" for key in keys), f"{ratio:.2f}x")
    console.print(table)
    console.print("raise_alert in ms (without: no destination, nothing written; with: webhook + MQTT, event written and "
                  "delivered meanwhile); latency in ms from the alert's commit to its event's arrival.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=100)
    parser.add_argument("--rate", type=float, default=5.0, help="alerts per second (0: back to back)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", help="a PostgreSQL server whose role may create databases")
    args = parser.parse_args()
    console = Console(width=200)
    print_table(run(args, console), args, console)


if __name__ == "__main__":
    main()
