"""Events out: the outbox written with each change, webhooks delivered signed and once (also with
two processes on one database), retries, dead letters, MQTT to a real mosquitto broker (with
TLS, a password, and a restart), secrets kept encrypted — on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import hmac
import ipaddress
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from openfrt.gallery import Gallery
from openfrt.integrations.destinations import DestinationService
from openfrt.integrations.dispatcher import EventDispatcher, RetryPolicy
from openfrt.live.alerts import AlertService
from openfrt.live.deployments import DeploymentService
from openfrt.live.retention import run_retention
from openfrt.net_policy import DestinationRefused
from openfrt.records import InvalidRecordError, RecordStore
from openfrt.records.models import AlertOutcome, AlertStatus, DeliveryStatus, EventDelivery, OutboxEvent
from openfrt.vision import FaceEngine
from test_deployments import START, audit, event, make_gallery, plan
from test_live_pipeline import wait_for
from test_records import database_url, home, raw_database_bytes, store  # noqa: F401 - the SQLite/PostgreSQL fixtures

SECRET = "receiver-shared-secret-0123456789"
ALL_TYPES = {"deployment.started", "alert.raised", "deployment.camera_gap", "alert.adjudicated", "alert.held",
             "alert.released", "deployment.ended"}
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
needs_mosquitto = pytest.mark.skipif(MOSQUITTO is None, reason="needs Debian's mosquitto broker (apt-get install mosquitto)")
#: For checks of a transport or a policy, which do not depend on the database backend.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture(autouse=True)
def loopback_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The receivers and brokers of these tests listen on loopback, which must be listed to be reached."""
    monkeypatch.setenv("OPENFRT_ALLOWED_NETWORKS", "10.0.0.0/8,127.0.0.0/8")


# -- a real HTTP receiver ----------------------------------------------------------------------


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver on a loopback port that records every POST. ``statuses`` are answered
    in turn (then 204); while ``gate`` is cleared, requests wait for it."""

    url: str = ""
    received: list[Delivery] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)
    waiting: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self, *, accepted_only: bool = True) -> list[dict[str, Any]]:
        with self.lock:
            return [delivery.event for delivery in self.received if delivery.headers.get("x-openfrt-status") == "accepted" or not accepted_only]


def serve_receiver() -> tuple[Receiver, ThreadingHTTPServer]:
    receiver = Receiver()
    receiver.gate.set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the standard library's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with receiver.lock:
                receiver.waiting += 1
            receiver.gate.wait(30)
            with receiver.lock:
                receiver.waiting -= 1
                status = receiver.statuses.pop(0) if receiver.statuses else 204
                headers = {key.lower(): value for key, value in self.headers.items()}
                headers["x-openfrt-status"] = "accepted" if status < 300 else "refused"
                receiver.received.append(Delivery(headers, body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/openfrt?token=url-token-zz9"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver, server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver, server = serve_receiver()
    yield receiver
    receiver.gate.set()
    server.shutdown()
    server.server_close()


def signed_by(delivery: Delivery, secret: str) -> bool:
    """The receiver's check, as the README shows it."""
    expected = "sha256=" + hmac.new(secret.encode(), delivery.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, delivery.headers["x-openfrt-signature"])


# -- a real MQTT broker --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Broker:
    port: int
    config: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert MOSQUITTO is not None
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.process.stderr.read().decode() if self.process.stderr else ''}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def start_broker(directory: Path, *lines: str) -> Broker:
    """mosquitto on a free loopback port with its own configuration (``lines`` added)."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = directory / "mosquitto.conf"
    # As root, mosquitto would switch to its own user, who cannot read this test's files.
    user = [f"user {getpass.getuser()}"]
    config.write_text("\n".join([f"listener {port} 127.0.0.1", "persistence false", "log_dest stderr", "log_type error",
                                  *user, *lines]) + "\n")
    broker = Broker(port, config)
    broker.start()
    return broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if MOSQUITTO is None:
        pytest.skip("needs Debian's mosquitto broker (apt-get install mosquitto)")
    broker = start_broker(tmp_path / "mosquitto", "allow_anonymous true")
    yield broker
    broker.stop()


class Subscriber:
    """A paho client subscribed (QoS 1) to ``topic`` that keeps what arrives."""

    def __init__(self, port: int, topic: str, ca: Path | None = None, password: str | None = None) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-subscriber-{port}")
        if password is not None:
            self.client.username_pw_set("openfrt", password)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca))
        self.client.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = lambda _client, _data, message: self.messages.append(message)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "the subscription was not acknowledged"

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        return [(message.topic, json.loads(message.payload)) for message in list(self.messages)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- the deployment whose events are followed -----------------------------------------------


@pytest.fixture
def gallery(store: RecordStore, hog_engine: FaceEngine) -> Gallery:  # noqa: F811
    return make_gallery(store, hog_engine)


@pytest.fixture
def service(store: RecordStore, gallery: Gallery) -> DeploymentService:  # noqa: F811
    return DeploymentService(store, gallery)


def fast_dispatcher(store: RecordStore, **policy: float) -> EventDispatcher:  # noqa: F811
    settings = {"first_delay": 0.05, "max_delay": 0.2, "window": 60.0, "timeout": 5.0, **policy}
    return EventDispatcher(store, policy=RetryPolicy(**settings), poll_seconds=0.02, sweep_seconds=0.1)


@pytest.fixture
def dispatcher(store: RecordStore) -> Iterator[EventDispatcher]:  # noqa: F811
    running = fast_dispatcher(store)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def mqtt_dispatcher(store: RecordStore) -> Iterator[EventDispatcher]:  # noqa: F811
    """Gives up on an unacknowledged or unconnected attempt sooner, so outages pass quickly."""
    running = fast_dispatcher(store, timeout=1.0)
    running.start()
    yield running
    running.stop()


def run_deployment(service: DeploymentService, store: RecordStore, name: str = "dep") -> int:  # noqa: F811
    """Every kind of event, once: started, an alert, a camera gap, a verdict, a hold and its
    release, ended. Returns the alert's id."""
    plan(service, name)
    running = service.start(name, "PC 1")
    alert_id = running.raise_alert(event("north", 1, "alpha"))
    running.record_gap("south", START, START + dt.timedelta(seconds=4))
    alerts = AlertService(store)
    alerts.adjudicate(alert_id, status=AlertStatus.confirmed_match, outcome=AlertOutcome.arrested, by="PC 2")
    alerts.hold(alert_id, reason="Evidence in case CR/1/26", by="DS 3")
    alerts.release(alert_id, by="DS 3")
    running.end("PC 1")
    return alert_id


def outbox(store: RecordStore) -> list[OutboxEvent]:  # noqa: F811
    with store.transaction() as session:
        return list(session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)))


# -- the outbox ------------------------------------------------------------------------------


def test_each_change_writes_its_event_with_it_and_nothing_without_a_destination(service: DeploymentService, store: RecordStore) -> None:  # noqa: F811
    run_deployment(service, store, "unwatched")
    assert outbox(store) == []  # no destination: nothing is kept

    destinations = DestinationService(store)
    destinations.add_webhook("control-room", "http://127.0.0.1:9/hook", secret=SECRET, actor="admin")
    destinations.add_webhook("records", "http://127.0.0.1:9/other", secret=SECRET, events=["deployment.ended"], actor="admin")
    alert_id = run_deployment(service, store)

    events = outbox(store)
    assert [row.type for row in events] == ["deployment.started", "alert.raised", "deployment.camera_gap", "alert.adjudicated",
                                            "alert.held", "alert.released", "deployment.ended"]
    with store.transaction() as session:
        per_event = {row.type: len(session.scalars(select(EventDelivery).where(EventDelivery.event_id == row.id)).all()) for row in events}
    assert per_event == {**{kind: 1 for kind in ALL_TYPES}, "deployment.ended": 2}
    raised = next(row.payload for row in events if row.type == "alert.raised")
    assert raised["data"] == {"alert": alert_id, "subject": "alpha", "subject_name": "Alpha", "similarity": 0.95, "camera": "north",
                              "track": 1, "captured_at": START.isoformat(), "source_time": 12.5}
    held = next(row.payload["data"] for row in events if row.type == "alert.held")
    assert held == {"alert": alert_id, "subject": "alpha", "subject_name": "Alpha", "similarity": 0.95, "camera": "north",
                    "captured_at": START.isoformat(), "held_by": "DS 3", "held_at": held["held_at"], "reason": "Evidence in case CR/1/26"}
    assert raised["deployment"] == "dep" and raised["link"] == f"/alerts#alert-{alert_id}"
    started = next(row.payload["data"] for row in events if row.type == "deployment.started")
    assert (started["planned_by"], started["authorised_by"]) == ("PC 1", "Supt A")  # the two officers, never one
    published = next(row.payload["data"]["record"] for row in events if row.type == "deployment.ended")
    assert published["audit_anchor"] == service.record("dep").audit_anchor and published["interrupted"] is False
    assert "bravo" not in json.dumps([row.payload for row in events])  # the other candidate did not match: never sent
    verdict = next(row.payload["data"] for row in events if row.type == "alert.adjudicated")
    assert (verdict["status"], verdict["outcome"], verdict["correction"]) == ("confirmed_match", "arrested", False)
    ended = next(row.payload["data"] for row in events if row.type == "deployment.ended")
    assert ended["record"]["alerts"] == 1 and ended["record"]["true_alerts"] == 1

    plan(service, "refused")
    refused = service.start("refused", "PC 1")
    before = len(outbox(store))
    with pytest.raises(InvalidRecordError):
        refused.raise_alert(event("north", 2, "charlie"))  # not on the watchlist: refused, nothing written
    assert len(outbox(store)) == before


# -- webhooks --------------------------------------------------------------------------------


def test_a_receiver_gets_each_event_once_signed_with_its_delivery_id(
    service: DeploymentService, store: RecordStore, receiver: Receiver, dispatcher: EventDispatcher,  # noqa: F811
) -> None:
    DestinationService(store).add_webhook("control-room", receiver.url, secret=SECRET, actor="admin")
    alert_id = run_deployment(service, store)

    assert wait_for(lambda: len(receiver.received) >= len(ALL_TYPES), 20)
    time.sleep(0.3)  # anything sent twice would arrive by now
    assert sorted(event["type"] for event in receiver.events()) == sorted(ALL_TYPES)
    assert len({event["id"] for event in receiver.events()}) == len(ALL_TYPES)
    for delivery in receiver.received:
        assert signed_by(delivery, SECRET)
        assert not signed_by(delivery, SECRET + "x")
        assert delivery.headers["x-openfrt-delivery"] == delivery.event["delivery"]
        assert delivery.headers["x-openfrt-event"] == delivery.event["type"]
        assert delivery.headers["content-type"] == "application/json"
        assert "images" not in delivery.event["data"]
    raised = next(event for event in receiver.events() if event["type"] == "alert.raised")
    assert raised["data"]["alert"] == alert_id and raised["data"]["subject_name"] == "Alpha"
    assert wait_for(lambda: outbox(store) == [], 5)  # delivered everywhere: the outbox keeps nothing


def test_two_processes_on_one_database_deliver_each_event_once(
    service: DeploymentService, store: RecordStore, home: Path, receiver: Receiver,  # noqa: F811
) -> None:
    """The server and an ``openfrt live`` process both dispatch from one database."""
    DestinationService(store).add_webhook("control-room", receiver.url, secret=SECRET, actor="admin")
    plan(service)
    running = service.start("dep", "PC 1")
    with RecordStore.open(home) as second_store:
        dispatchers = [fast_dispatcher(store), fast_dispatcher(second_store)]
        for each in dispatchers:
            each.start()
        try:
            for track in range(40):
                running.raise_alert(event("north", track, "alpha", seed=track % 5))
            running.end("PC 1")
            assert wait_for(lambda: len(receiver.received) >= 42, 60)
            time.sleep(0.5)
        finally:
            for each in dispatchers:
                each.stop()
    kinds = [event["type"] for event in receiver.events(accepted_only=False)]
    assert len(kinds) == 42 and len({event["delivery"] for event in receiver.events()}) == 42
    assert kinds.count("alert.raised") == 40


def test_events_outlive_a_process_that_died_holding_them(
    service: DeploymentService, store: RecordStore, receiver: Receiver,  # noqa: F811
) -> None:
    """Written while no dispatcher ran, or claimed by one that died mid-attempt: sent once its
    lease lapses; one whose lease another process still holds is left to it."""
    DestinationService(store).add_webhook("control-room", receiver.url, secret=SECRET, actor="admin")
    plan(service)
    running = service.start("dep", "PC 1")
    running.raise_alert(event("north", 1, "alpha"))
    now = dt.datetime.now(dt.UTC)
    with store.transaction() as session:
        started, raised = session.scalars(select(EventDelivery).order_by(EventDelivery.id)).all()
        started.claimed_until, started.attempts = now - dt.timedelta(seconds=1), 1  # its process died
        raised.claimed_until, raised.attempts = now + dt.timedelta(seconds=3), 1  # its process is still at it
        held = raised.delivery_id
    dispatcher = fast_dispatcher(store)
    dispatcher.start()
    try:
        assert wait_for(lambda: len(receiver.events()) == 1, 10)
        assert receiver.events()[0]["type"] == "deployment.started"
        time.sleep(1.0)
        assert len(receiver.events()) == 1  # the held one waits for its lease
        assert wait_for(lambda: len(receiver.events()) == 2, 10)  # and goes when it lapses
        assert receiver.events()[1]["delivery"] == held
    finally:
        dispatcher.stop()


def test_a_failing_receiver_is_retried_with_back_off_then_dead_lettered_and_retried_by_an_administrator(
    service: DeploymentService, store: RecordStore, receiver: Receiver,  # noqa: F811
) -> None:
    other, other_server = serve_receiver()
    destinations = DestinationService(store)
    destinations.add_webhook("flaky", receiver.url, secret=SECRET, events=["deployment.started"], actor="admin")
    destinations.add_webhook("healthy", other.url, secret=SECRET, events=["deployment.started"], actor="admin")
    receiver.statuses = [500] * 1000
    dispatcher = fast_dispatcher(store, first_delay=0.1, max_delay=0.4, window=1.5)
    dispatcher.start()
    try:
        plan(service)
        service.start("dep", "PC 1")
        assert wait_for(lambda: len(other.events()) == 1, 10)  # the failing one holds nobody else up
        assert wait_for(lambda: destinations.deliveries(DeliveryStatus.dead) != [], 20)
        attempts = list(receiver.received)
        (dead,) = destinations.deliveries(DeliveryStatus.dead)
        assert dead.destination == "flaky" and dead.event_type == "deployment.started" and "HTTP 500" in (dead.last_error or "")
        assert 3 <= dead.attempts == len(attempts) <= 12  # back-off: far fewer than one attempt per poll
        assert len({delivery.event["delivery"] for delivery in attempts}) == 1  # every attempt repeats the delivery id
        assert destinations.get("flaky").dead == 1

        receiver.statuses.clear()
        assert destinations.retry([dead.id], actor="admin") == 1
        assert wait_for(lambda: len(receiver.events()) == 1, 10)
        assert destinations.deliveries(DeliveryStatus.dead) == []
        (retried,) = audit(store, "events.retry")
        assert retried.actor == "admin" and retried.details == {"deliveries": [dead.id], "retried": 1}
    finally:
        dispatcher.stop()
        other_server.shutdown()
        other_server.server_close()


def test_back_off_grows_with_jitter_and_is_bounded() -> None:
    policy = RetryPolicy(first_delay=2.0, max_delay=300.0)
    for attempts, ceiling in ((1, 2.0), (2, 4.0), (3, 8.0), (9, 300.0), (30, 300.0)):
        delays = {policy.delay(attempts) for _ in range(50)}
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays) and len(delays) > 1


@sqlite_only
def test_deliveries_never_block_a_camera_or_a_request(
    service: DeploymentService, store: RecordStore, receiver: Receiver, dispatcher: EventDispatcher,  # noqa: F811
) -> None:
    DestinationService(store).add_webhook("slow", receiver.url, secret=SECRET, events=["alert.raised"], actor="admin")
    receiver.gate.clear()  # the receiver holds every request until released
    plan(service)
    running = service.start("dep", "PC 1")
    first = running.raise_alert(event("north", 1, "alpha"))
    assert wait_for(lambda: receiver.waiting == 1, 10)  # the dispatcher is stuck in the first delivery...
    second = running.raise_alert(event("north", 2, "alpha"))  # ...and the camera's next alert is stored anyway
    AlertService(store).adjudicate(first, status=AlertStatus.false_alert, outcome=AlertOutcome.no_action, by="PC 2")
    assert receiver.received == [] and second > first
    receiver.gate.set()
    assert wait_for(lambda: len(receiver.events()) == 2, 10)


@sqlite_only
def test_images_go_only_where_an_administrator_turned_them_on_and_each_sending_is_audited(
    service: DeploymentService, store: RecordStore, receiver: Receiver, dispatcher: EventDispatcher,  # noqa: F811
) -> None:
    destinations = DestinationService(store)
    destinations.add_webhook("evidence", receiver.url, secret=SECRET, events=["alert.raised"], actor="admin")
    plan(service)
    running = service.start("dep", "PC 1")
    running.raise_alert(event("north", 1, "alpha"))
    assert wait_for(lambda: len(receiver.events()) == 1, 10)
    assert "images" not in receiver.events()[0]["data"]

    destinations.set_include_media("evidence", True, actor="admin-2")
    (changed,) = audit(store, "events.destination_change")
    assert changed.actor == "admin-2" and changed.details["include_media"] is True
    alert_id = running.raise_alert(event("north", 2, "alpha", seed=5))
    assert wait_for(lambda: len(receiver.events()) == 2, 10)
    images = receiver.events()[1]["data"]["images"]
    assert set(images) == {"probe_crop", "frame"}
    import base64

    from test_deployments import jpeg
    assert base64.b64decode(images["probe_crop"]) == jpeg(5)
    (sent,) = audit(store, "events.media_send")
    assert (sent.actor, sent.target) == ("destination:evidence", f"alert:{alert_id}")


@sqlite_only
def test_secrets_and_the_url_token_are_stored_encrypted_and_never_shown(
    store: RecordStore, receiver: Receiver, tmp_path: Path,  # noqa: F811
) -> None:
    destinations = DestinationService(store)
    shown = destinations.add_webhook("control-room", receiver.url, secret=SECRET, actor="admin")
    destinations.set_mqtt(host="127.0.0.1", port=1883, username="openfrt", password="broker-password-77", actor="admin")
    assert shown.url is not None and "url-token-zz9" not in shown.url and shown.url.endswith("/hooks/openfrt?…")
    listed = json.dumps([info.as_dict() for info in destinations.list()])
    for secret in (SECRET, "url-token-zz9", "broker-password-77"):
        assert secret not in listed
        assert secret.encode() not in raw_database_bytes(store)
        assert all(secret not in json.dumps(entry.details) for entry in audit(store, "events.destination_add"))
    assert destinations.secrets_of(shown.id) == {"url": receiver.url, "secret": SECRET}


@sqlite_only
def test_destinations_obey_the_allowed_networks_and_are_checked_again_before_sending(
    service: DeploymentService, store: RecordStore, receiver: Receiver, dispatcher: EventDispatcher,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    destinations = DestinationService(store)
    monkeypatch.delenv("OPENFRT_ALLOWED_NETWORKS")
    with pytest.raises(DestinationRefused):
        destinations.add_webhook("inside", receiver.url, secret=SECRET, actor="admin")
    with pytest.raises(DestinationRefused):
        destinations.set_mqtt(host="127.0.0.1", actor="admin")
    monkeypatch.setenv("OPENFRT_ALLOWED_NETWORKS", "192.0.2.0/24")
    with pytest.raises(InvalidRecordError, match="at least 16"):
        destinations.add_webhook("weak", "http://192.0.2.1/", secret="short", actor="admin")
    with pytest.raises(InvalidRecordError, match="unknown event type"):
        destinations.add_webhook("typo", "http://192.0.2.1/", secret=SECRET, events=["alert.raise"], actor="admin")
    monkeypatch.setenv("OPENFRT_ALLOWED_NETWORKS", "10.0.0.0/8,127.0.0.0/8")
    destinations.add_webhook("inside", receiver.url, secret=SECRET, actor="admin")
    monkeypatch.setenv("OPENFRT_ALLOWED_NETWORKS", "10.0.0.0/8")  # the rule changed after the webhook was added
    plan(service)
    service.start("dep", "PC 1")
    assert wait_for(lambda: destinations.deliveries(DeliveryStatus.pending) != [] and destinations.deliveries(DeliveryStatus.pending)[0].last_error is not None, 10)
    assert "OPENFRT_ALLOWED_NETWORKS" in (destinations.deliveries(DeliveryStatus.pending)[0].last_error or "")
    assert receiver.received == []


@sqlite_only
def test_retention_deletes_events_as_old_as_the_alert_data_it_deletes(service: DeploymentService, store: RecordStore) -> None:  # noqa: F811
    DestinationService(store).add_webhook("down", "http://127.0.0.1:9/hook", secret=SECRET, actor="admin")
    run_deployment(service, store)
    assert len(outbox(store)) == len(ALL_TYPES)
    report = run_retention(store, actor="admin", now=dt.datetime.now(dt.UTC) + dt.timedelta(days=32))
    assert report.events_deleted == len(ALL_TYPES) and outbox(store) == []


@sqlite_only
def test_removing_a_destination_drops_its_queue(service: DeploymentService, store: RecordStore) -> None:  # noqa: F811
    destinations = DestinationService(store)
    destinations.add_webhook("down", "http://127.0.0.1:9/hook", secret=SECRET, actor="admin")
    run_deployment(service, store)
    destinations.remove("down", actor="admin")
    assert outbox(store) == [] and destinations.list() == []
    (removed,) = audit(store, "events.destination_remove")
    assert removed.details == {"undelivered_dropped": len(ALL_TYPES)}


# -- MQTT --------------------------------------------------------------------------------------


@sqlite_only
@needs_mosquitto
def test_a_subscriber_gets_each_event_once_on_its_deployment_topic(
    service: DeploymentService, store: RecordStore, broker: Broker, mqtt_dispatcher: EventDispatcher,  # noqa: F811
) -> None:
    subscriber = Subscriber(broker.port, "force/openfrt/#")
    try:
        DestinationService(store).set_mqtt(host="127.0.0.1", port=broker.port, topic_prefix="force/openfrt", actor="admin")
        alert_id = run_deployment(service, store, "town+centre#1")
        assert wait_for(lambda: len(subscriber.messages) >= len(ALL_TYPES), 20)
        time.sleep(0.3)
    finally:
        subscriber.close()
    received = subscriber.events()
    assert sorted(payload["type"] for _, payload in received) == sorted(ALL_TYPES)
    assert all(topic == f"force/openfrt/town_centre_1/{payload['type']}" for topic, payload in received)
    assert all(message.qos == 1 for message in subscriber.messages)
    raised = next(payload for _, payload in received if payload["type"] == "alert.raised")
    assert raised["deployment"] == "town+centre#1" and raised["data"]["alert"] == alert_id


@sqlite_only
@needs_mosquitto
def test_events_wait_while_the_broker_is_down_and_go_once_it_is_back(
    service: DeploymentService, store: RecordStore, broker: Broker, mqtt_dispatcher: EventDispatcher,  # noqa: F811
) -> None:
    destinations = DestinationService(store)
    destinations.set_mqtt(host="127.0.0.1", port=broker.port, events=["deployment.started", "deployment.ended"], actor="admin")
    plan(service)
    running = service.start("dep", "PC 1")
    assert wait_for(lambda: outbox(store) == [], 10)
    broker.stop()
    running.end("PC 1")
    assert wait_for(lambda: (destinations.deliveries(DeliveryStatus.pending) or [None])[0] is not None
                    and destinations.deliveries(DeliveryStatus.pending)[0].last_error is not None, 15)
    broker.start()  # same port: paho reconnects with back-off
    subscriber = Subscriber(broker.port, "openfrt/#")
    try:
        assert wait_for(lambda: len(subscriber.messages) >= 1, 40)
        time.sleep(0.5)
        assert [payload["type"] for _, payload in subscriber.events()] == ["deployment.ended"]
    finally:
        subscriber.close()


@sqlite_only
@needs_mosquitto
def test_a_broker_no_longer_configured_is_let_go(
    service: DeploymentService, store: RecordStore, broker: Broker, mqtt_dispatcher: EventDispatcher,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    destinations = DestinationService(store)
    destinations.set_mqtt(host="127.0.0.1", port=broker.port, events=["deployment.started"], actor="admin")
    plan(service)
    service.start("dep", "PC 1")
    assert wait_for(lambda: outbox(store) == [], 10)  # delivered: the dispatcher holds a connection
    destinations.remove("mqtt", actor="admin")
    time.sleep(0.5)  # the dispatcher notices
    with caplog.at_level("WARNING", logger="openfrt.integrations.transports"):
        broker.stop()
        time.sleep(1.5)
    assert "reconnecting" not in caplog.text


def tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a broker certificate for 127.0.0.1, made for this test."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "openfrt test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1)).add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
                   .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                   .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "broker.pem", directory / "broker.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


@sqlite_only
@needs_mosquitto
def test_mqtt_over_tls_with_a_password_and_a_refusal_that_says_why(
    service: DeploymentService, store: RecordStore, mqtt_dispatcher: EventDispatcher, tmp_path: Path,  # noqa: F811
) -> None:
    ca, certificate, key = tls_files(tmp_path / "tls")
    passwords = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "openfrt", "broker-password-77"], check=True, capture_output=True)
    passwords.chmod(0o600)
    broker = start_broker(tmp_path / "tls-broker", "allow_anonymous false", f"password_file {passwords}",
                          f"cafile {ca}", f"certfile {certificate}", f"keyfile {key}")
    destinations = DestinationService(store)
    try:
        destinations.set_mqtt(host="127.0.0.1", port=broker.port, tls=True, ca_file=ca, username="openfrt",
                              password="wrong-password", events=["deployment.started"], actor="admin")
        plan(service)
        service.start("dep", "PC 1")
        assert wait_for(lambda: destinations.deliveries(DeliveryStatus.pending) != []
                        and "Not authorized" in (destinations.deliveries(DeliveryStatus.pending)[0].last_error or ""), 20)

        subscriber = Subscriber(broker.port, "openfrt/#", ca=ca, password="broker-password-77")
        destinations.set_mqtt(host="127.0.0.1", port=broker.port, tls=True, ca_file=ca, username="openfrt",
                              password="broker-password-77", events=["deployment.started"], actor="admin")
        try:
            assert wait_for(lambda: len(subscriber.messages) == 1, 40)
            assert subscriber.events()[0][1]["type"] == "deployment.started"
        finally:
            subscriber.close()
    finally:
        broker.stop()

