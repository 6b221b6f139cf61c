"""Fitting into a force's systems, over HTTP and the command line: health and readiness (also with
the database really stopped), metrics only for monitoring, route templates as labels, request
ids, and the administrators' API, console page and commands for webhooks, the broker and dead
letters."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from click.testing import Result
from cli_users import as_user
from sqlalchemy import create_engine, text, update
from typer.testing import CliRunner

from openfrt.api import ServerSettings, create_app
from openfrt.cli.main import app
from openfrt.config import database_url
from openfrt.integrations.destinations import DestinationService
from openfrt.integrations.events import Event, EventType
from openfrt.integrations.outbox import emit
from openfrt.observability.health import models_ready
from openfrt.records import RecordStore
from openfrt.records.database import make_engine
from openfrt.records.models import DeliveryStatus, EventDelivery
from openfrt.records.users import Role, UserService
from openfrt.vision import EngineConfig
from test_api import USERS, client, home, login  # noqa: F401 - the server fixtures
from test_events_out import free_port
from test_live_pipeline import wait_for


@pytest.fixture(autouse=True)
def loopback_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENFRT_ALLOWED_NETWORKS", "10.0.0.0/8,127.0.0.0/8")


def token(home: Path, role: Role) -> dict[str, str]:  # noqa: F811
    with RecordStore.open(home) as store:
        _, secret = UserService(store).create_token(USERS[role], "monitoring test", actor=USERS[role])
    return {"Authorization": f"Bearer {secret}"}


# -- health --------------------------------------------------------------------------------------


def test_health_and_readiness_answer_anyone_tersely(client: TestClient, home: Path) -> None:  # noqa: F811
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"} and ready.headers["cache-control"] == "no-store"

    database = make_engine(database_url(home))  # without upgrading, as RecordStore.open would
    with database.begin() as connection:
        head = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        connection.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    try:
        stale = client.get("/readyz")
        assert stale.status_code == 503 and stale.json() == {"status": "unavailable", "reason": "database schema is not current"}
    finally:
        with database.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": head})
        database.dispose()
    assert client.get("/readyz").status_code == 200


def test_missing_face_models_are_not_ready(isolated_environment: None) -> None:
    assert models_ready(EngineConfig.from_env())
    assert not models_ready(EngineConfig(detector="no-such-detector"))


@dataclass
class Cluster:
    """A PostgreSQL cluster of this test's own, which it may stop (never the shared one)."""

    bin: Path
    data: Path
    port: int
    as_postgres: list[str]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://openfrt@127.0.0.1:{self.port}/openfrt"

    def run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_postgres, str(self.bin / tool), *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        self.run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.data / "log"), "-w", "start")

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.skip("needs PostgreSQL's server programs (initdb, pg_ctl) to run a cluster that can be stopped")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # initdb refuses to run as root
    data = Path(tempfile.mkdtemp(prefix="openfrt-readyz-"))
    if as_postgres:
        shutil.chown(data, "postgres", "postgres")
    cluster = Cluster(found[-1].parent, data / "cluster", free_port(), as_postgres)
    cluster.run("initdb", "-D", str(cluster.data), "-U", "openfrt", "--auth=trust", "--no-sync")
    cluster.start()
    try:
        engine = create_engine(f"postgresql+psycopg://openfrt@127.0.0.1:{cluster.port}/postgres", isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text("CREATE DATABASE openfrt"))
        engine.dispose()
        yield cluster
    finally:
        subprocess.run([*as_postgres, str(cluster.bin / "pg_ctl"), "-D", str(cluster.data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def test_readiness_with_the_database_stopped_and_started_again(cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENFRT_DATABASE_URL", cluster.url)
    with TestClient(create_app(ServerSettings(home=tmp_path / "home", realtime_files=False))) as client:  # noqa: F811
        assert client.get("/readyz").json() == {"status": "ready"}
        cluster.stop()
        down = client.get("/readyz")
        assert down.status_code == 503 and down.json() == {"status": "unavailable", "reason": "database unreachable"}
        assert str(cluster.port) not in down.text and "psycopg" not in down.text.lower()
        assert client.get("/healthz").status_code == 200  # the process still answers
        cluster.start()
        assert wait_for(lambda: client.get("/readyz").status_code == 200, 20)


# -- metrics ---------------------------------------------------------------------------------------


def test_metrics_need_the_monitoring_permission(client: TestClient, home: Path) -> None:  # noqa: F811
    assert client.get("/metrics").status_code == 401
    login(client, Role.operator)
    assert client.get("/metrics").status_code == 403
    client.cookies.clear()
    monitoring = token(home, Role.monitoring)
    scraped = client.get("/metrics", headers=monitoring)
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    assert "openfrt_http_request_duration_seconds" in scraped.text and "openfrt_deployments_running" in scraped.text
    assert client.get("/api/alerts", headers=monitoring).status_code == 403  # metrics, and nothing else
    assert client.get("/metrics", headers=token(home, Role.admin)).status_code == 200


def test_requests_are_labelled_by_route_template_and_carry_a_request_id(client: TestClient, home: Path) -> None:  # noqa: F811
    operator = token(home, Role.operator)
    answer = client.get("/api/alerts/987654", headers=operator)
    assert answer.status_code == 404 and len(answer.headers["x-request-id"]) == 32
    assert client.get("/api/alerts", headers={**operator, "X-Request-ID": "proxy-42"}).headers["x-request-id"] == "proxy-42"
    assert client.get("/api/alerts", headers={**operator, "X-Request-ID": "bad id\x7f"}).headers["x-request-id"] != "bad id"
    client.get("/no-such-page-s3cret")
    scraped = client.get("/metrics", headers=token(home, Role.monitoring)).text
    assert 'route="/api/alerts/{alert_id}",status="404"' in scraped
    assert 'route="unmatched"' in scraped
    # The alert id must not become a label; it may turn up by chance in a sample's timestamp.
    labels = [line[line.index("{"):line.rindex("}") + 1] for line in scraped.splitlines() if "{" in line and not line.startswith("#")]
    assert labels and not any("987654" in label for label in labels) and "s3cret" not in scraped


# -- administrators: API, console page, commands ---------------------------------------------------


def dead_letter(home: Path, destination: str = "down") -> int:  # noqa: F811
    """A ``deployment.ended`` that never reached ``destination`` (added if need be), dead-lettered
    as the dispatcher leaves one; returns its delivery's number."""
    with RecordStore.open(home) as store:
        destinations = DestinationService(store)
        if destination not in {info.name for info in destinations.list()}:
            destinations.add_webhook(destination, "http://127.0.0.1:9/hook", secret="s" * 20, actor="admin-1")
        target = destinations.get(destination).id
        with store.transaction() as session:
            row = emit(session, Event(EventType.deployment_ended, "dep-1", {}, "/deployments/dep-1"))
            assert row is not None
            session.flush()
            session.execute(update(EventDelivery).where(EventDelivery.event_id == row.id, EventDelivery.destination_id == target)
                            .values(status=DeliveryStatus.dead, attempts=7, last_error="HTTP 503"))
            return next(delivery.id for delivery in row.deliveries if delivery.destination_id == target)


def test_administrators_manage_destinations_and_dead_letters_over_the_api(client: TestClient, home: Path) -> None:  # noqa: F811
    operator = login(client, Role.operator)
    assert client.get("/api/events/destinations").status_code == 403
    assert client.post("/api/events/webhooks", json={"name": "x", "url": "http://127.0.0.1:9/"}, headers=operator).status_code == 403
    admin = login(client, Role.admin)
    made = client.post("/api/events/webhooks", json={"name": "control-room", "url": "http://127.0.0.1:9/h?token=abc123",
                                                     "events": ["alert.raised"]}, headers=admin)
    assert made.status_code == 201, made.text
    generated = made.json()["secret"]
    assert len(generated) >= 32 and made.json()["url"] == "http://127.0.0.1:9/h?…"
    own = client.post("/api/events/webhooks", json={"name": "own", "url": "http://127.0.0.1:9/", "secret": "given-secret-123456"}, headers=admin)
    assert own.status_code == 201 and "secret" not in own.json()
    outside = client.post("/api/events/webhooks", json={"name": "meta", "url": "http://169.254.169.254/", "secret": "s" * 20}, headers=admin)
    assert outside.status_code == 422 and "OPENFRT_ALLOWED_NETWORKS" in outside.json()["detail"]
    broker = client.put("/api/events/mqtt", json={"host": "127.0.0.1", "port": 1883, "username": "u", "password": "broker-pw-99"}, headers=admin)
    assert broker.status_code == 200 and broker.json()["settings"]["username"] == "u"
    listed = client.get("/api/events/destinations").text
    assert generated not in listed and "abc123" not in listed and "broker-pw-99" not in listed and "given-secret" not in listed
    media = client.patch("/api/events/destinations/control-room", json={"include_media": True}, headers=admin)
    assert media.json()["include_media"] is True

    delivery = dead_letter(home)
    (dead,) = client.get("/api/events/deliveries").json()
    assert (dead["id"], dead["destination"], dead["event_type"], dead["last_error"]) == (delivery, "down", "deployment.ended", "HTTP 503")
    assert client.post("/api/events/deliveries/retry", json={"deliveries": [delivery]}, headers=admin).json() == {"retried": 1}
    assert client.get("/api/events/deliveries").json() == []
    assert client.delete("/api/events/destinations/mqtt", headers=admin).json() == {"status": "removed"}


def test_the_console_shows_administrators_their_destinations_and_dead_letters(client: TestClient, home: Path) -> None:  # noqa: F811
    delivery = dead_letter(home)
    login(client, Role.operator)
    assert "/integrations" not in client.get("/alerts").text
    assert client.get("/integrations").status_code == 403
    login(client, Role.admin)
    page = client.get("/integrations")
    assert page.status_code == 200 and 'data-testid="nav-integrations"' in page.text
    assert f'data-delivery="{delivery}"' in page.text and "HTTP 503" in page.text and "deployment.ended" in page.text
    assert "http://127.0.0.1:9/hook" in page.text and "s" * 20 not in page.text
    assert client.get("/static/integrations.js").status_code == 200


def cli(home: Path, *args: str, stdin: str | None = None) -> Result:  # noqa: F811
    """One place that runs an administrator's command (as admin-1, with their token), in this process."""
    token = as_user({"OPENFRT_HOME": str(home)}, Role.admin, "admin-1")["OPENFRT_TOKEN"]
    environment = {"OPENFRT_HOME": str(home), "OPENFRT_TOKEN": token, "OPENFRT_ALLOWED_NETWORKS": "127.0.0.1/32",
                   "OPENFRT_DATABASE_URL": None, "OPENFRT_KEY_FILE": None}
    return CliRunner().invoke(app, list(args), input=stdin, env=environment)


def json_lines(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_the_commands_add_webhooks_set_the_broker_and_retry_dead_letters(tmp_path: Path) -> None:
    home = tmp_path / "home"  # noqa: F811
    added = cli(home, "webhooks", "add", "control-room", "http://127.0.0.1:9/hook", "--events", "alert.raised,deployment.ended",
                "--secret-stdin", "--json", stdin="a-secret-from-the-receiver\n")
    assert added.exit_code == 0, added.output
    (info,) = json_lines(added)
    assert info["events"] == ["alert.raised", "deployment.ended"] and "secret" not in info
    assert "a-secret-from-the-receiver" not in added.stdout + added.stderr
    generated = cli(home, "webhooks", "add", "records", "http://127.0.0.1:9/other")
    assert generated.exit_code == 0 and "not shown again" in generated.stdout
    refused = cli(home, "webhooks", "add", "meta", "http://169.254.169.254/latest", "--secret-stdin", stdin="s" * 20)
    assert refused.exit_code == 1 and "OPENFRT_ALLOWED_NETWORKS" in refused.stderr
    broker = cli(home, "mqtt", "set", "--host", "127.0.0.1", "--port", "1884", "--username", "openfrt", "--password-stdin",
                 "--topic-prefix", "force/openfrt", "--json", stdin="broker-password-77\n")
    assert broker.exit_code == 0, broker.output
    shown = json_lines(cli(home, "mqtt", "show", "--json"))[0]
    assert shown["settings"]["topic_prefix"] == "force/openfrt" and "broker-password-77" not in json.dumps(shown)
    assert [entry["name"] for entry in json_lines(cli(home, "webhooks", "list", "--json"))] == ["control-room", "mqtt", "records"]

    delivery = dead_letter(home, "control-room")
    (dead,) = json_lines(cli(home, "events", "deliveries", "--json"))
    assert dead["id"] == delivery and dead["destination"] == "control-room" and dead["attempts"] == 7
    assert json_lines(cli(home, "events", "deliveries", "--destination", "records", "--json")) == []
    assert json_lines(cli(home, "events", "retry", str(delivery), "--json")) == [{"retried": 1}]
    assert delivery in [entry["id"] for entry in json_lines(cli(home, "events", "deliveries", "--pending", "--json"))]
    assert json_lines(cli(home, "events", "retry", "--all-dead", "--json")) == [{"retried": 0}]
    assert cli(home, "events", "retry").exit_code == 1  # nothing named
    assert cli(home, "webhooks", "remove", "records").exit_code == 0
    with RecordStore.open(home) as store, store.transaction() as session:
        actors = {row[0] for row in session.execute(text("SELECT actor FROM audit_events WHERE action LIKE 'events.%'"))}
    assert actors == {"admin-1"}

