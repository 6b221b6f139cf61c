"""Camera sources: only streams on networks an administrator allowed, webcams, and files in the
footage directory — refused when the deployment is planned, through the API and the CLI — and
a camera's credentials, wherever they sit in its URL, kept only encrypted."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from cli_users import as_user, authorised_deployment

from openfrt.api import ServerSettings, create_app
from openfrt.live.deployments import DeploymentService
from openfrt.live.source_policy import SourcePolicy
from openfrt.live.sources import open_source
from openfrt.net_policy import DestinationRefused, NetworkPolicy, resolve, without_credentials
from openfrt.records import RecordStore
from openfrt.records.audit import list_events
from openfrt.records.models import DeploymentCamera
from openfrt.records.users import Role, UserService
from test_deployments import gallery, plan, service  # noqa: F401 - fixtures and helpers
from test_gallery_cli import env, openfrt  # noqa: F401 - the subprocess runner and its environment
from test_records import database_url, home, store  # noqa: F401 - the SQLite/PostgreSQL fixtures

PASSWORD = "correct horse battery staple"
INTERNAL = ("http://127.0.0.1:8080/internal?secret=1", "http://localhost/", "http://[::1]:9000/", "http://0.0.0.0/",
            "http://[::ffff:127.0.0.1]/", "http://169.254.169.254/latest/meta-data/", "rtsp://127.1/stream",
            "http://2130706433/", "http://[fe80::1]/")
SCHEMES = ("tcp://10.0.0.5:554", "udp://10.0.0.5:1234", "file:///etc/passwd", "file:/etc/passwd", "ftp://10.0.0.5/x.mp4",
           "concat:/etc/passwd|/etc/hosts", "subfile,,start,0,end,100,,:/etc/passwd", "rtmp://10.0.0.5/live", "rtsp:/10.0.0.5")


def policy(footage: Path, *networks: str, resolver: dict[str, list[str]] | None = None) -> SourcePolicy:
    names = resolver or {"localhost": ["127.0.0.1", "::1"], "camera.example": ["10.0.0.8"], "split.example": ["10.0.0.9", "127.0.0.1"]}
    network = NetworkPolicy(tuple(ipaddress.ip_network(n) for n in networks), lambda host, port: names.get(host) or resolve(host, port))
    return SourcePolicy(footage, network)


def test_streams_must_be_on_an_allowed_network_and_the_servers_own_addresses_must_be_listed(tmp_path: Path) -> None:
    with pytest.raises(DestinationRefused, match="OPENFRT_ALLOWED_NETWORKS"):
        policy(tmp_path).check("rtsp://10.0.0.5/stream")  # nothing is allowed until an administrator says so
    everywhere = policy(tmp_path, "0.0.0.0/0", "::/0")
    assert everywhere.check("rtsp://10.0.0.5/stream") == "rtsp://10.0.0.5/stream"
    assert everywhere.check("http://camera.example:8080/video") == "http://camera.example:8080/video"
    for url in INTERNAL:
        with pytest.raises(DestinationRefused):
            everywhere.check(url)
    with pytest.raises(DestinationRefused, match="127.0.0.1"):
        everywhere.check("rtsp://split.example/stream")  # every address a name resolves to must be allowed
    assert policy(tmp_path, "127.0.0.0/8").check("http://127.0.0.1:8080/live.ts") == "http://127.0.0.1:8080/live.ts"
    with pytest.raises(DestinationRefused):
        policy(tmp_path, "10.0.0.0/24").check("rtsp://10.0.1.5/stream")


def test_other_schemes_are_refused_and_files_are_read_only_from_the_footage_directory(tmp_path: Path) -> None:
    footage = tmp_path / "footage"
    (footage / "day1").mkdir(parents=True)
    (footage / "day1" / "gate.mp4").write_bytes(b"")
    (footage / "escape").symlink_to("/etc")
    rule = policy(footage, "0.0.0.0/0")
    for source in SCHEMES:
        with pytest.raises(DestinationRefused):
            rule.check(source)
    for source in ("/etc/passwd", str(footage / ".." / "secret.mp4"), str(footage / "escape" / "passwd"), str(tmp_path)):
        with pytest.raises(DestinationRefused, match="footage directory"):
            rule.check(source)
    assert rule.check(str(footage / "day1" / "gate.mp4")) == str((footage / "day1" / "gate.mp4").resolve())
    assert rule.check(str(footage / "day1")) == str((footage / "day1").resolve())  # a folder of images
    assert rule.check("0") == "0" and rule.check("/dev/video2") == "2"  # webcams


def test_opening_a_source_checks_it_again(tmp_path: Path) -> None:
    with pytest.raises(DestinationRefused):
        open_source("/etc/passwd", policy=policy(tmp_path))
    with pytest.raises(DestinationRefused):
        open_source("tcp://10.0.0.5:554", policy=policy(tmp_path, "0.0.0.0/0"))


@pytest.fixture
def allowed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("OPENFRT_ALLOWED_NETWORKS", "10.0.0.0/8")
    monkeypatch.setenv("OPENFRT_FOOTAGE_DIR", str(tmp_path / "footage"))
    return tmp_path / "footage"


def test_a_deployment_naming_a_refused_source_is_not_planned(service: DeploymentService, allowed: Path) -> None:  # noqa: F811
    service = DeploymentService(service.store, service.gallery)  # reads the environment set above
    for source in (*INTERNAL[:3], *SCHEMES[:3], "/etc/passwd"):
        with pytest.raises(DestinationRefused):
            plan(service, "refused", cameras={"gate": source})
    assert service.list() == []
    allowed.mkdir()
    (allowed / "a.mp4").write_bytes(b"checked only for being there")
    plan(service, "fine", cameras={"north": "rtsp://10.0.0.5/stream", "south": "/dev/video0", "file": str(allowed / "a.mp4")})


def test_the_api_refuses_to_plan_a_camera_on_the_servers_own_network(tmp_path: Path, allowed: Path) -> None:
    data = tmp_path / "home"
    with RecordStore.open(data) as opened:
        UserService(opened).create("op-1", Role.operator, PASSWORD, actor="test")
    with TestClient(create_app(ServerSettings(home=data, realtime_files=False))) as client:
        csrf = client.post("/api/session", json={"name": "op-1", "password": PASSWORD}).json()["csrf_token"]
        body = {"name": "ssrf", "purpose": "p", "location": "x", "watchlist": "none", "cameras": {"a": "http://127.0.0.1:8080/internal?secret=1"}}
        refused = client.post("/api/deployments", json=body, headers={"X-CSRF-Token": csrf})
    assert refused.status_code == 422 and "OPENFRT_ALLOWED_NETWORKS" in refused.json()["detail"]


def test_openfrt_live_obeys_the_same_rule(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A deployment planned while its cameras were allowed does not open one that no longer is."""
    officer = as_user(env, Role.authorising_officer)
    assert openfrt(officer, "watchlist", "create", "w", "--purpose", "p", "--json").returncode == 0
    monkeypatch.setenv("OPENFRT_ALLOWED_NETWORKS", "10.0.0.0/8,127.0.0.0/8")
    authorised_deployment(env, "dep", "w", {"cam1": "rtsp://10.0.0.5/stream", "cam2": "http://127.0.0.1:9/internal"})

    result = openfrt({**as_user(env, Role.operator), "OPENFRT_ALLOWED_NETWORKS": "10.0.0.0/8"}, "live", "--deployment", "dep")

    assert result.returncode == 2 and "outside the networks allowed" in result.stderr, result.stderr


# -- credentials in a camera's URL (finding 8) -------------------------------------------------

WITH_CREDENTIALS = {
    "axis": "http://10.0.0.9/axis-cgi/media.amp?user=root&password=hunter2&resolution=640x480",
    "token": "rtsp://10.0.0.9/stream?channel=1&token=abc123tok&subtype=0",
    "xmeye": "rtsp://10.0.0.9:554/user=admin&password=xm-pass-77&channel=1&stream=0.sdp",
    "userinfo": "rtsp://officer:s3cret-pw@10.0.0.9/stream",
    "apikey": "https://10.0.0.9/snapshot?API_KEY=k-998877&Auth=a-665544",
}
SECRETS = ("hunter2", "abc123tok", "xm-pass-77", "s3cret-pw", "k-998877", "a-665544")


def test_credentials_are_stripped_wherever_they_sit_in_a_url() -> None:
    assert without_credentials(WITH_CREDENTIALS["axis"]) == "http://10.0.0.9/axis-cgi/media.amp?resolution=640x480"
    assert without_credentials(WITH_CREDENTIALS["token"]) == "rtsp://10.0.0.9/stream?channel=1&subtype=0"
    assert without_credentials(WITH_CREDENTIALS["xmeye"]) == "rtsp://10.0.0.9:554/channel=1&stream=0.sdp"
    assert without_credentials(WITH_CREDENTIALS["userinfo"]) == "rtsp://10.0.0.9/stream"
    assert without_credentials("/srv/footage/user=alice/gate.mp4") == "/srv/footage/user=alice/gate.mp4"  # not a URL


def test_camera_credentials_in_a_query_are_kept_only_encrypted(service: DeploymentService, store: RecordStore,  # noqa: F811
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENFRT_ALLOWED_NETWORKS", "10.0.0.0/8")
    service = DeploymentService(store, service.gallery)
    plan(service, cameras=WITH_CREDENTIALS)
    shown = json.dumps(service.get("dep").as_dict())
    assert not any(secret in shown for secret in SECRETS) and "resolution=640x480" in shown
    with store.transaction() as session:
        logged = json.dumps([entry.as_dict() for entry in list_events(session, limit=100)], default=str)
        stored = session.execute(select(DeploymentCamera.source, DeploymentCamera.sealed_source)).all()
    assert not any(secret in logged for secret in SECRETS)
    assert all(sealed is not None and not any(secret in source for secret in SECRETS) for source, sealed in stored)
    assert len(stored) == len(WITH_CREDENTIALS)
    assert service.camera_sources("dep") == WITH_CREDENTIALS  # what the server opens when it starts the deployment
