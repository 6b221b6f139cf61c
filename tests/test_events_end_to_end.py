"""The issue's check, with every part real: ``openfrt serve --log-format json`` runs a deployment of
two cameras while Prometheus-style scrapes read ``/metrics``; officers adjudicate and hold its
alert over the API; meanwhile ``openfrt live`` runs another deployment in its own process on the
same database. A webhook receiver and a mosquitto subscriber each get every event of both
deployments exactly once, the receiver with a valid signature; every log line is JSON with its
request id, deployment and camera."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from openfrt.gallery import Gallery, ImageToEnrol, SubjectInfo
from openfrt.integrations.destinations import DestinationService
from openfrt.records import Category, RecordStore
from openfrt.records.users import Role, UserService
from openfrt.vision import EngineConfig, FaceEngine
from test_events_out import SECRET, Broker, Receiver, Subscriber, broker, free_port, receiver, signed_by  # noqa: F401 - fixtures
from test_live_pipeline import LFW, UTK, wait_for, walk_video

PUBLIC_URL = "https://frt.force.example"
LOG_KEYS = {"time", "level", "logger", "message", "request_id", "deployment", "camera"}
SERVER_EVENTS = ["deployment.started", "alert.raised", "alert.adjudicated", "alert.held", "deployment.ended"]
LIVE_EVENTS = ["deployment.started", "alert.raised", "deployment.ended"]
OPENFRT = [sys.executable, "-m", "openfrt"]


@pytest.fixture
def prepared(
    tmp_path: Path, receiver: Receiver, broker: Broker, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> Iterator[tuple[Path, dict[str, str], dict[str, dict[str, str]]]]:
    """A data directory with officers' tokens, watchlist 'wanted' holding Colin Powell, a webhook
    and the broker; and the environment both processes run in."""
    if not (LFW.exists() and UTK.exists()):
        pytest.skip(f"needs {LFW} and {UTK} (the shared test data beside the project), which are absent")
    home = tmp_path / "home"
    environment = {key: value for key, value in os.environ.items() if key not in ("OPENFRT_DATABASE_URL", "OPENFRT_KEY_FILE")}
    footage = {"OPENFRT_ALLOWED_NETWORKS": "127.0.0.0/8", "OPENFRT_FOOTAGE_DIR": str(tmp_path)}  # the test videos are made there
    environment.update({"OPENFRT_HOME": str(home), "OPENFRT_PUBLIC_URL": PUBLIC_URL, **footage})
    for name, value in footage.items():  # restored afterwards: the session's own settings stay (conftest)
        monkeypatch.setenv(name, value)
    tokens: dict[str, dict[str, str]] = {}
    with RecordStore.open(home) as store:
        users = UserService(store)
        for name, role in (("op-1", Role.operator), ("ao-1", Role.authorising_officer), ("prometheus", Role.monitoring)):
            users.create(name, role, "correct horse battery", actor="test")
            tokens[name] = {"Authorization": f"Bearer {users.create_token(name, 'end to end', actor=name)[1]}"}
        gallery = Gallery(store, FaceEngine(EngineConfig.from_env()))
        gallery.create_watchlist("wanted", purpose="arrest warrants", authorised_by="ao-1", actor="ao-1",
                                 standing_reason="the server's and the edge's deployments search it")
        reference = ImageToEnrol(LFW / "Colin_Powell" / "Colin_Powell_0001.jpg", "ref")
        assert gallery.enrol(SubjectInfo("S1", "Colin Powell", Category.wanted), [reference], actor="ao-1", watchlist="wanted").enrolled
        destinations = DestinationService(store)
        destinations.add_webhook("control-room", receiver.url, secret=SECRET, actor="admin")
        destinations.set_mqtt(host="127.0.0.1", port=broker.port, topic_prefix="force", actor="admin")
    yield home, environment, tokens


def scrape(base: str, headers: dict[str, str]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` as {(sample name, sorted labels): value}."""
    answer = httpx.get(f"{base}/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer.text) for sample in family.samples}


def camera_value(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, camera: str, **extra: str) -> float:
    labels = tuple(sorted({"deployment": "op-two", "camera": camera, **extra}.items()))
    return metrics.get((name, labels), -1.0)


def json_log(text: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(set(line) >= LOG_KEYS for line in lines)
    return lines


def test_every_event_of_two_deployments_reaches_a_receiver_and_a_broker_exactly_once_while_metrics_and_logs_report(
    prepared: tuple[Path, dict[str, str], dict[str, dict[str, str]]], tmp_path: Path, receiver: Receiver, broker: Broker,  # noqa: F811
) -> None:
    home, environment, tokens = prepared
    faces = sorted(UTK.glob("*.jpg"))
    colin = LFW / "Colin_Powell" / "Colin_Powell_0001.jpg"
    north = walk_video(tmp_path / "north.avi", [colin, faces[0]], frames=60)  # 6 s at 10 fps, played in real time
    south = walk_video(tmp_path / "south.avi", [faces[1]], frames=60)
    subscriber = Subscriber(broker.port, "force/#")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server_log = tmp_path / "server.log"
    with server_log.open("w") as log_file:
        server = subprocess.Popen([*OPENFRT, "serve", "--port", str(port), "--log-format", "json"], env=environment,
                                  stdout=subprocess.DEVNULL, stderr=log_file)
    try:
        assert wait_for(lambda: _answers(f"{base}/healthz"), 120), server_log.read_text()[-2000:]
        assert httpx.get(f"{base}/readyz").json() == {"status": "ready"}
        assert httpx.get(f"{base}/metrics").status_code == 401

        plan = {"name": "op-two", "purpose": "arrest warrants", "location": "High St", "watchlist": "wanted",
                "cameras": {"north": str(north), "south": str(south)}}
        assert httpx.post(f"{base}/api/deployments", json=plan, headers=tokens["op-1"]).status_code == 201
        assert httpx.post(f"{base}/api/deployments/op-two/authorise", json={"reason": "a test of events"}, headers=tokens["ao-1"]).status_code == 200
        started = httpx.post(f"{base}/api/deployments/op-two/start", headers=tokens["op-1"], timeout=60)
        assert started.status_code == 200, started.text

        # Scraped while both cameras run:
        assert wait_for(lambda: all(camera_value(scrape(base, tokens["prometheus"]), "openfrt_camera_frames_total", camera) >= 5
                                    for camera in ("north", "south")), 30)
        metrics = scrape(base, tokens["prometheus"])
        assert metrics[("openfrt_deployments_running", ())] == 1
        for camera in ("north", "south"):
            assert camera_value(metrics, "openfrt_camera_fps", camera) > 0
            assert camera_value(metrics, "openfrt_camera_stage_seconds_total", camera, stage="detect") > 0
            assert camera_value(metrics, "openfrt_camera_stage_seconds_total", camera, stage="decode") >= 0
            assert camera_value(metrics, "openfrt_camera_queue_lag_seconds", camera) >= 0
            assert camera_value(metrics, "openfrt_camera_frames_dropped_total", camera) >= 0
            assert camera_value(metrics, "openfrt_camera_reconnects_total", camera) == 0
        assert not any("S1" in str(labels) or "Colin" in str(labels) for _, labels in metrics)

        assert wait_for(lambda: httpx.get(f"{base}/api/deployments/op-two", headers=tokens["op-1"]).json()["status"] == "ended", 60)
        (alert,) = httpx.get(f"{base}/api/alerts", params={"deployment": "op-two"}, headers=tokens["op-1"]).json()
        verdict = {"status": "confirmed_match", "outcome": "engaged"}
        assert httpx.post(f"{base}/api/alerts/{alert['id']}/adjudication", json=verdict, headers=tokens["op-1"]).status_code == 200
        held = httpx.post(f"{base}/api/alerts/{alert['id']}/hold", json={"reason": "Evidence in case CR/7/26"}, headers=tokens["ao-1"])
        assert held.status_code == 200

        # Another process, on the same database, while the server's dispatcher runs too:
        gate = walk_video(tmp_path / "gate.avi", [colin], frames=24)
        edge = {"name": "op-edge", "purpose": "arrest warrants", "location": "Gate St", "watchlist": "wanted", "cameras": {"gate": str(gate)}}
        assert httpx.post(f"{base}/api/deployments", json=edge, headers=tokens["op-1"]).status_code == 201
        assert httpx.post(f"{base}/api/deployments/op-edge/authorise", json={"reason": "a test of events"}, headers=tokens["ao-1"]).status_code == 200
        operator = {**environment, "OPENFRT_TOKEN": tokens["op-1"]["Authorization"].removeprefix("Bearer ")}
        live = subprocess.run([*OPENFRT, "live", "--deployment", "op-edge", "--events-json", "--log-format", "json"],
                              env=operator, capture_output=True, text=True, timeout=600)
        assert live.returncode == 0, live.stderr
        edge_log = json_log(live.stderr)
        assert any(line["camera"] == "gate" and line["deployment"] == "op-edge" and "matched S1" in line["message"] for line in edge_log)

        expected = len(SERVER_EVENTS) + len(LIVE_EVENTS)
        assert wait_for(lambda: len(receiver.received) >= expected and len(subscriber.messages) >= expected, 60)
        time.sleep(1.0)  # a second copy of anything would arrive by now
        assert httpx.get(f"{base}/readyz").status_code == 200
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)
        subscriber.close()

    received = receiver.events()
    assert sorted((event["deployment"], event["type"]) for event in received) == sorted(
        [("op-two", kind) for kind in SERVER_EVENTS] + [("op-edge", kind) for kind in LIVE_EVENTS])
    assert len({event["id"] for event in received}) == len(received) == len(receiver.received)
    assert all(signed_by(delivery, SECRET) for delivery in receiver.received)
    assert all(event["link"].startswith(PUBLIC_URL + "/") for event in received)
    raised = next(event for event in received if event["type"] == "alert.raised" and event["deployment"] == "op-two")
    assert raised["data"]["subject_name"] == "Colin Powell" and raised["data"]["camera"] == "north" and "images" not in raised["data"]

    published = subscriber.events()
    assert sorted((topic, payload["id"]) for topic, payload in published) == sorted(
        (f"force/{event['deployment']}/{event['type']}", event["id"]) for event in received)

    server_text = server_log.read_text()
    assert "url-token-zz9" not in server_text + live.stderr  # the webhook URL's token is never logged
    server_lines = json_log(server_text)
    access = [line for line in server_lines if line["logger"] == "uvicorn.access"]
    assert access and all(line["request_id"] for line in access)
    assert any(line["deployment"] == "op-two" and line["camera"] == "north" and "matched S1" in line["message"] for line in server_lines)
    # Nothing about the people who did not match: the only lines about a track are the alerts'.
    assert all("matched S1" in line["message"] for line in server_lines + edge_log if "track" in line["message"])


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
