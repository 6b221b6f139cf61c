"""The live alert feed: new and changed alerts pushed to every connected console as server-sent events.

Alerts are written to the database by deployments running in this server *or* in other
processes (``openfrt live`` on a camera's edge machine sharing the database), so the feed
watches the database rather than in-process callbacks: one thread reads alerts newer than the
last it saw every ``poll_seconds`` and hands them to each subscriber's queue. A slow browser
cannot hold the others up: its queue is bounded and it is told to reload when it overflows.

Verdicts and holds made through this server are pushed as they are made (``alert_changed``),
so an officer does not act on a card another officer has already decided; ones made elsewhere
(the CLI) show on reload, and the service refuses a verdict on a stale view either way.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from openfrt.live.alerts import AlertInfo, AlertService

log = logging.getLogger(__name__)

#: Turns alerts into what consoles are sent (by default, each alert's own JSON).
Presenter = Callable[[Sequence[AlertInfo]], list[dict[str, Any]]]

#: Events a subscriber may fall behind by before it is told to resynchronise.
QUEUE_LIMIT = 500


@dataclass(eq=False)
class Subscriber:
    queue: asyncio.Queue[dict[str, Any]]
    loop: asyncio.AbstractEventLoop

    def offer(self, event: dict[str, Any]) -> None:
        """Called on the event loop's thread."""
        if self.queue.full():
            self.queue.get_nowait()
            event = {"event": "resync"}
        self.queue.put_nowait(event)


class AlertFeed:
    def __init__(self, alerts: AlertService, poll_seconds: float, present: Presenter | None = None) -> None:
        self.alerts = alerts
        self.poll_seconds = poll_seconds
        self.present: Presenter = present or (lambda found: [alert.as_dict() for alert in found])
        self._subscribers: set[Subscriber] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last_id = alerts.latest_id()
        self._thread = threading.Thread(target=self._watch, name="alert feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def subscribe(self) -> Subscriber:
        subscriber = Subscriber(asyncio.Queue(QUEUE_LIMIT), asyncio.get_running_loop())
        with self._lock:
            self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)

    def publish_change(self, alert: AlertInfo) -> dict[str, Any]:
        """Push an alert whose verdict or hold just changed; returns it as JSON for the response."""
        (data,) = self.present([alert])
        self._offer([{"event": "alert_changed", **data}])
        return data

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self._publish_new()
            except Exception as exc:  # noqa: BLE001 - a database hiccup must not end the feed
                log.warning("alert feed: %s", exc)

    def _publish_new(self) -> None:
        new = self.alerts.list(after_id=self._last_id, limit=QUEUE_LIMIT)
        if not new:
            return
        self._last_id = new[-1].id
        self._offer([{"event": "alert", **data} for data in self.present(new)])

    def _offer(self, events: list[dict[str, Any]]) -> None:
        """Hand events to every subscriber, on its own event loop (callable from any thread)."""
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                for event in events:
                    subscriber.loop.call_soon_threadsafe(subscriber.offer, event)
            except RuntimeError:  # its event loop has closed: the browser is gone, and a verdict must not fail for it
                self.unsubscribe(subscriber)
