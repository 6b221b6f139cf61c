"""The server's metrics, in the Prometheus text format (``GET /metrics``, ``prometheus-client``).

Two kinds: counters and histograms updated where things happen (requests, database errors and
retries, event deliveries), and figures read when scraped — each running camera's progress
from the live supervisor, and the events waiting in the outbox. Labels are deployments,
cameras, route templates (never raw paths, which carry ids), destinations and stages; never a
subject, a face or anything about people who were not matched.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, event, func, select

from openfrt.records.database import is_transient
from openfrt.records.models import EventDelivery, EventDestination

if TYPE_CHECKING:
    from openfrt.live.supervisor import LiveSupervisor
    from openfrt.records.store import RecordStore

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

HTTP_SECONDS = Histogram(
    "openfrt_http_request_duration_seconds", "Time from a request's arrival to its response starting, per route template.",
    ["method", "route", "status"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0),
)
DATABASE_ERRORS = Counter(
    "openfrt_database_errors", "Statements the database refused; transient ones (lock timeouts, lost connections) may be retried.",
    ["transient"], registry=REGISTRY,
)
DATABASE_RETRIES = Counter(
    "openfrt_database_retries", "Writes of a running deployment tried again after a transient database refusal.", registry=REGISTRY,
)
DELIVERIES = Counter(
    "openfrt_event_deliveries", "Event delivery attempts by outcome: delivered, failed (to be retried) or dead_lettered.",
    ["transport", "destination", "outcome"], registry=REGISTRY,
)
DELIVERY_SECONDS = Histogram(
    "openfrt_event_delivery_duration_seconds", "Time one delivery attempt took, until acknowledged or failed.",
    ["transport"], registry=REGISTRY, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def exposition() -> bytes:
    """Every metric, as ``GET /metrics`` answers."""
    return generate_latest(REGISTRY)


def watch_database(engine: Engine) -> None:
    """Count the statements ``engine``'s database refuses (SQLAlchemy's ``handle_error`` hook)."""
    event.listen(engine, "handle_error", _count_database_error)


def _count_database_error(context: Any) -> None:
    error = context.sqlalchemy_exception
    DATABASE_ERRORS.labels("true" if error is not None and is_transient(error) else "false").inc()


class _LiveCollector(Collector):
    """Each running camera's figures, read from the watched supervisors when scraped, and the
    outbox's waiting deliveries per destination, read from the watched stores."""

    def __init__(self) -> None:
        self._supervisors: list[LiveSupervisor] = []
        self._stores: list[RecordStore] = []
        self._lock = threading.Lock()

    def watch(self, supervisor: LiveSupervisor, store: RecordStore) -> None:
        with self._lock:
            self._supervisors.append(supervisor)
            self._stores.append(store)

    def unwatch(self, supervisor: LiveSupervisor, store: RecordStore) -> None:
        with self._lock:
            if supervisor in self._supervisors:
                self._supervisors.remove(supervisor)
                self._stores.remove(store)

    def describe(self) -> list[Metric]:
        return []  # collected on demand: nothing to check for clashes at registration

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            supervisors, stores = list(self._supervisors), list(self._stores)
        yield from _camera_metrics(supervisors)
        yield from _outbox_metrics(stores)


def _camera_metrics(supervisors: list[LiveSupervisor]) -> Iterator[Metric]:
    labels = ["deployment", "camera"]
    running = GaugeMetricFamily("openfrt_deployments_running", "Deployments running in this server.")
    fps = GaugeMetricFamily("openfrt_camera_fps", "Frames processed per second since the camera started.", labels=labels)
    frames = CounterMetricFamily("openfrt_camera_frames", "Frames taken from the camera.", labels=labels)
    dropped = CounterMetricFamily("openfrt_camera_frames_dropped", "Frames of a live source skipped because processing fell behind.", labels=labels)
    scanned = CounterMetricFamily("openfrt_camera_faces_scanned", "People (tracks) searched against the watchlist.", labels=labels)
    alerts = CounterMetricFamily("openfrt_camera_alerts", "Alerts raised.", labels=labels)
    reconnects = CounterMetricFamily("openfrt_camera_reconnects", "Times a lost stream came back (each is a recorded gap).", labels=labels)
    lag = GaugeMetricFamily("openfrt_camera_queue_lag_seconds", "How long the latest frame waited between decoding and processing.", labels=labels)
    stages = CounterMetricFamily(
        "openfrt_camera_stage_seconds", "Time spent per stage (decode: waiting for frames; detect, track, embed, match).",
        labels=[*labels, "stage"],
    )
    count = 0
    for supervisor in supervisors:
        for deployment, cameras in supervisor.camera_stats().items():
            count += 1
            for camera, stats in cameras.items():
                values = [deployment, camera]
                fps.add_metric(values, stats.fps)
                frames.add_metric(values, stats.frames)
                dropped.add_metric(values, stats.dropped)
                scanned.add_metric(values, stats.faces_scanned)
                alerts.add_metric(values, stats.alerts)
                reconnects.add_metric(values, stats.reconnects)
                lag.add_metric(values, stats.lag_seconds)
                for stage, seconds in list(stats.seconds.items()):
                    stages.add_metric([*values, stage], seconds)
    running.add_metric([], count)
    yield from (running, fps, frames, dropped, scanned, alerts, reconnects, lag, stages)


def _outbox_metrics(stores: list[RecordStore]) -> Iterator[Metric]:
    waiting = GaugeMetricFamily(
        "openfrt_event_deliveries_waiting", "Deliveries not yet made: pending (being retried) or dead (dead-lettered).",
        labels=["destination", "status"],
    )
    for store in stores:
        try:
            with store.transaction() as session:
                rows = session.execute(
                    select(EventDestination.name, EventDelivery.status, func.count())
                    .join(EventDestination, EventDestination.id == EventDelivery.destination_id)
                    .where(EventDelivery.status != "delivered")
                    .group_by(EventDestination.name, EventDelivery.status)
                ).all()
        except Exception as exc:  # noqa: BLE001 - a scrape still gets everything else while the database is down
            log.warning("metrics: the outbox could not be read: %s", exc)
            continue
        for name, status, number in rows:
            waiting.add_metric([name, status.value], number)
    yield waiting


LIVE = _LiveCollector()
REGISTRY.register(LIVE)
