"""The REST API: nothing without credentials, nothing beyond a role, CSRF on cookie sessions,
machine tokens, first-run set-up — and the whole path from enrolment by upload to an
adjudicated alert in a published record, through HTTP only."""

from __future__ import annotations

import io
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from test_live_pipeline import LFW, UTK, walk_video

from openfrt.api import ServerSettings, create_app
from openfrt.records import RecordStore
from openfrt.records.audit import list_events
from openfrt.records.users import Role, UserService

PASSWORD = "correct horse battery"
PUBLIC = {("POST", "/api/session"), ("GET", "/api/setup"), ("POST", "/api/setup"), ("GET", "/api/records"), ("GET", "/api/records.csv")}
USERS = {role: f"{role.value}-1" for role in Role}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return with_users(tmp_path / "home")


def with_users(home: Path) -> Path:
    """A data directory with one user per role (``USERS``), all with ``PASSWORD``."""
    with RecordStore.open(home) as store:
        users = UserService(store)
        for role, name in USERS.items():
            users.create(name, role, PASSWORD, actor="test")
    return home


@pytest.fixture
def client(home: Path) -> Iterator[TestClient]:
    with serving(home) as client:
        yield client


@contextmanager
def serving(home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ServerSettings(home=home, realtime_files=False))) as client:
        yield client


def login(client: TestClient, role: Role) -> dict[str, str]:
    """Log ``client`` in as the user with ``role``; returns the headers its changes must carry."""
    response = client.post("/api/session", json={"name": USERS[role], "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"X-CSRF-Token": response.json()["csrf_token"]}


def api_routes(client: TestClient) -> list[tuple[str, str]]:
    """Every API operation, from the OpenAPI document (what the server says it offers)."""
    paths = client.get("/openapi.json").json()["paths"]
    return sorted((method.upper(), path) for path, operations in paths.items() if path.startswith("/api/") for method in operations)


def concrete(path: str) -> str:
    return path.replace("{alert_id}", "1").replace("{token_id}", "1").replace("{image_id}", "1").replace("{kind}", "frame") \
        .replace("{name}", "x").replace("{subject_id}", "x")


def test_every_api_endpoint_but_the_public_records_refuses_anonymous_requests(client: TestClient) -> None:
    protected = [(method, path) for method, path in api_routes(client) if (method, path) not in PUBLIC]
    assert len(protected) >= 30
    for method, path in protected:
        response = client.request(method, concrete(path))
        assert response.status_code == 401, (method, path, response.status_code)
    assert client.get("/api/records").status_code == 200
    assert client.get("/api/alerts", headers={"Authorization": "Bearer ofrt_not-a-token"}).status_code == 401


@pytest.mark.parametrize(
    ("role", "method", "path", "body"),
    [
        (Role.engagement_officer, "POST", "/api/search", None),
        (Role.engagement_officer, "GET", "/api/subjects", None),
        (Role.auditor, "GET", "/api/alerts", None),
        (Role.auditor, "GET", "/api/reference-images/1", None),
        (Role.operator, "GET", "/api/audit", None),
        (Role.operator, "POST", "/api/watchlists", {"name": "w", "purpose": "p"}),
        (Role.operator, "POST", "/api/deployments/x/authorise", None),
        (Role.operator, "POST", "/api/users", {"name": "n", "role": "admin", "password": PASSWORD}),
        (Role.admin, "GET", "/api/subjects", None),
        (Role.admin, "GET", "/api/alerts", None),
        (Role.authorising_officer, "POST", "/api/search", None),
    ],
)
def test_a_role_is_refused_what_it_may_not_do(client: TestClient, role: Role, method: str, path: str, body: Any) -> None:
    headers = login(client, role)
    response = client.request(method, path, json=body, headers=headers)
    assert response.status_code == 403, response.text
    assert role.value in response.json()["detail"]


def test_changes_over_a_session_need_its_csrf_token(client: TestClient) -> None:
    headers = login(client, Role.authorising_officer)
    body = {"name": "csrf-test", "purpose": "testing"}
    assert client.post("/api/watchlists", json=body).status_code == 403
    assert client.post("/api/watchlists", json=body, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert client.post("/api/watchlists", json=body, headers=headers).status_code == 201
    assert client.delete("/api/session", headers=headers).status_code == 200
    assert client.get("/api/watchlists").status_code == 401


def test_the_api_documentation_works_offline(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in page.text
    assert "http://" not in page.text.replace("http://www.w3.org", "") and "https://" not in page.text
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert "/api/alerts" in client.get("/openapi.json").json()["paths"]


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(client: TestClient) -> None:
    wrong = client.post("/api/session", json={"name": USERS[Role.operator], "password": "not the password"})
    unknown = client.post("/api/session", json={"name": "nobody", "password": "not the password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]
    assert "openfrt_session" not in wrong.cookies


def test_a_machine_token_acts_with_its_users_role_until_revoked(client: TestClient) -> None:
    headers = login(client, Role.operator)  # a token is created by the user it acts as
    created = client.post(f"/api/users/{USERS[Role.operator]}/tokens", json={"label": "gateway"}, headers=headers)
    assert created.status_code == 201
    bearer = {"Authorization": f"Bearer {created.json()['token']}"}
    client.cookies.clear()
    assert client.get("/api/alerts", headers=bearer).status_code == 200
    assert client.get("/api/audit", headers=bearer).status_code == 403  # an operator's token, an operator's rights
    headers = login(client, Role.admin)
    assert client.delete(f"/api/tokens/{created.json()['id']}", headers=headers).status_code == 200
    client.cookies.clear()
    assert client.get("/api/alerts", headers=bearer).status_code == 401


def test_first_run_set_up_needs_the_code_from_the_data_directory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    home = tmp_path / "fresh"
    with TestClient(create_app(ServerSettings(home=home))) as client:
        code_file = home / "setup-code"
        assert stat.S_IMODE(code_file.stat().st_mode) == 0o600
        code = code_file.read_text().strip()
        assert code not in caplog.text and str(code_file) in caplog.text
        assert client.get("/api/setup").json() == {"needed": True}
        body = {"name": "first-admin", "password": PASSWORD}
        assert client.post("/api/setup", json={**body, "code": "guess"}).status_code == 403
        created = client.post("/api/setup", json={**body, "code": code})
        assert created.status_code == 201 and created.json()["role"] == "admin"
        assert not code_file.exists()
        assert client.post("/api/setup", json={**body, "code": code}).status_code == 409
        assert client.get("/api/me").json()["name"] == "first-admin"
    assert PASSWORD not in caplog.text


# -- the whole path, over HTTP -----------------------------------------------------------------


def upload(path: Path) -> tuple[str, bytes, str]:
    return (path.name, path.read_bytes(), "image/jpeg")


def wait_for(condition: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_enrol_watch_alert_adjudicate_and_publish_over_http(client: TestClient, home: Path) -> None:
    if not (LFW.exists() and UTK.exists()):
        pytest.skip(f"needs {LFW} and {UTK} (the shared test data beside the project), which are absent")
    reference = LFW / "Colin_Powell" / "Colin_Powell_0001.jpg"
    (home / "footage").mkdir()  # the default footage directory: camera files are read only from there
    video = walk_video(home / "footage" / "gate.avi", [reference, min(UTK.glob("*.jpg"))])

    officer = login(client, Role.authorising_officer)
    assert client.post("/api/watchlists", json={"name": "wanted", "purpose": "arrest warrants"}, headers=officer).status_code == 201
    form = {"subject_id": "S1", "display_name": "Colin Powell", "category": "wanted", "legal_basis": "PACE s.64A", "watchlist": "wanted"}
    enrolled = client.post("/api/subjects", data=form, files=[("images", upload(reference))], headers=officer)
    assert enrolled.status_code == 201, enrolled.text
    assert enrolled.json()["images"][0]["face"]["quality"]["face_height_px"] > 40
    refused = client.post("/api/subjects", data={**form, "subject_id": "S2"}, files=[("images", ("blank.png", _blank_png(), "image/png"))], headers=officer)
    assert refused.status_code == 422 and refused.json()["images"][0]["refused"] == "no_face"

    operator = login(client, Role.operator)
    plan = {"name": "op-gate", "purpose": "find wanted people", "location": "Gate St", "watchlist": "wanted", "cameras": {"gate": str(video)}}
    assert client.post("/api/deployments", json=plan, headers=operator).status_code == 201
    refused_start = client.post("/api/deployments/op-gate/start", headers=operator)
    assert refused_start.status_code == 422 and "authoris" in refused_start.json()["detail"]
    officer = login(client, Role.authorising_officer)
    unexplained = client.post("/api/deployments/op-gate/authorise", headers=officer)
    assert unexplained.status_code == 422  # an authorisation says why
    justified = client.post("/api/deployments/op-gate/authorise", json={"reason": "wanted offenders seen at the gate"}, headers=officer)
    assert justified.json()["authorised_by"] == USERS[Role.authorising_officer]
    started = client.post("/api/deployments/op-gate/start", headers=officer)
    assert started.status_code == 200, started.text

    operator = login(client, Role.operator)
    alert = wait_for(lambda: client.get("/api/alerts?deployment=op-gate").json())[0]
    assert alert["subject"] == "S1" and alert["status"] == "pending" and alert["camera"] == "gate"
    assert client.get(f"/api/alerts/{alert['id']}/media/probe_crop").headers["content-type"] == "image/jpeg"
    assert client.get(f"/api/alerts/{alert['id']}/reference", params={"face": "false"}).content == reference.read_bytes()
    face = Image.open(io.BytesIO(client.get(f"/api/alerts/{alert['id']}/reference").content))  # the enrolled face, to compare
    assert face.format == "JPEG" and face.size[0] < Image.open(reference).size[0]
    verdict = {"status": "confirmed_match", "outcome": "engaged", "note": "spoke to him", "perceived_ethnicity": "black", "perceived_sex": "male"}
    assert client.post(f"/api/alerts/{alert['id']}/adjudication", json=verdict, headers=operator).json()["adjudicated_by"] == USERS[Role.operator]
    stale = client.post(f"/api/alerts/{alert['id']}/adjudication", json={**verdict, "status": "false_alert"}, headers=operator)
    assert stale.status_code == 409 and "already confirmed_match (engaged)" in stale.json()["detail"]
    assert client.get(f"/api/alerts/{alert['id']}").json()["status"] == "confirmed_match"

    record = wait_for(lambda: (r := client.get("/api/deployments/op-gate/record").json())["status"] == "ended" and r)
    assert record["alerts"] == record["true_alerts"] == record["engagements"] == 1 and record["faces_scanned"] == 2
    assert client.get("/api/watchlists/wanted").status_code == 404  # made for this deployment, destroyed with it
    published = client.get("/api/records").json()
    assert published["deployments"][0]["deployment"] == "op-gate" and published["months"][0]["alerts"] == 1
    assert {(g["dimension"], g["group"], g["true_alerts"], g["false_alerts"]) for g in published["groups"]} == {("ethnicity", "black", 1, 0), ("sex", "male", 1, 0)}

    found = client.post("/api/search", data={"case_ref": "CR/1", "reason": "robbery suspect"}, files={"image": upload(reference)}, headers=operator)
    assert found.status_code == 200 and found.json()["candidates"][0]["subject"] == "S1"
    clip = client.post("/api/search", data={"case_ref": "CR/2", "reason": "footage", "kind": "operator_initiated"},
                       files={"image": (video.name, video.read_bytes(), "video/x-msvideo")}, headers=operator)
    assert clip.status_code == 200, clip.text
    assert clip.json()["candidates"][0]["subject"] == "S1" and clip.json()["clip_time"] is not None
    assert client.post("/api/search", data={"case_ref": "CR/1", "reason": " "}, files={"image": upload(reference)}, headers=operator).status_code == 422

    login(client, Role.auditor)
    verified = client.get("/api/audit/verify").json()
    assert verified["ok"] and verified["problems"] == []
    assert client.get("/api/audit/verify", params={"anchor": verified["anchor"]}).json()["ok"]
    wrong = f"{verified['anchor'].split(':')[0]}:{'0' * 64}"
    assert client.get("/api/audit/verify", params={"anchor": wrong}).json()["problems"][0].startswith("entry seq")
    assert client.get("/api/audit/verify", params={"anchor": "1:xyz"}).status_code == 422
    actions = {event["action"] for event in client.get("/api/audit?limit=1000").json()}
    assert {"subject.enrol", "deployment.authorise", "deployment.start", "alert.adjudicate", "alert.media_view",
            "subject.image_view", "search.retrospective", "deployment.snapshot_destroy"} <= actions
    assert [e["case_ref"] for e in client.get("/api/audit?action=search.retrospective").json()] == ["CR/2", "CR/1"]
    viewed = client.get("/api/audit?action=audit.view").json()
    assert [(v["actor"], v["details"]) for v in viewed[:2]] == [(USERS[Role.auditor], {"action": "search.retrospective"}), (USERS[Role.auditor], {})]


def _blank_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (200, 200), (128, 128, 128)).save(buffer, "PNG")
    return buffer.getvalue()


def test_an_image_uploaded_twice_is_stored_once_and_removals_are_audited(client: TestClient, home: Path) -> None:
    if not LFW.exists():
        pytest.skip(f"needs {LFW} (the shared test data beside the project), which is absent")
    photos = [LFW / "Colin_Powell" / f"Colin_Powell_000{number}.jpg" for number in (1, 2)]
    officer = login(client, Role.authorising_officer)
    assert client.post("/api/watchlists", json={"name": "wanted", "purpose": "arrest warrants"}, headers=officer).status_code == 201
    form = {"subject_id": "S1", "display_name": "Colin Powell", "category": "wanted", "legal_basis": "PACE s.64A", "watchlist": "wanted"}
    first = client.post("/api/subjects", data=form, files=[("images", upload(photo)) for photo in photos], headers=officer)
    assert first.status_code == 201, first.text
    stored = [image["reference_image"] for image in first.json()["images"]]
    again = client.post("/api/subjects", data=form, files=[("images", upload(photos[0]))], headers=officer)
    assert again.status_code == 200, again.text  # nothing new
    assert again.json()["images"][0]["duplicate_of"] == {"reference_image": stored[0], "match": "same_file"}
    assert len(client.get("/api/subjects/S1").json()["images"]) == 2

    assert client.delete(f"/api/reference-images/{stored[0]}", headers=officer).status_code == 422  # no reason given
    removed = client.delete(f"/api/reference-images/{stored[0]}", params={"reason": "wrong person"}, headers=officer)
    assert removed.status_code == 200 and removed.json()["watchlists"] == ["wanted"]
    last = client.delete(f"/api/reference-images/{stored[1]}", params={"reason": "r"}, headers=officer)
    assert last.status_code == 422 and "remove the subject instead" in last.json()["detail"]
    taken = client.delete("/api/watchlists/wanted/members/S1", params={"reason": "arrested"}, headers=officer)
    assert taken.status_code == 200 and taken.json()["subjects"] == []
    assert client.delete("/api/watchlists/wanted/members/S1", params={"reason": "r"}, headers=officer).status_code == 404

    operator = login(client, Role.operator)  # may enrol, but not delete reference images or change watchlists
    assert client.delete(f"/api/reference-images/{stored[1]}", params={"reason": "r"}, headers=operator).status_code == 403
    assert client.delete("/api/watchlists/wanted/members/S1", params={"reason": "r"}, headers=operator).status_code == 403
    with RecordStore.open(home) as store, store.transaction() as session:
        actions = [(entry.action, entry.reason) for entry in list_events(session, limit=20)]
    assert ("subject.image_remove", "wrong person") in actions and ("watchlist.remove", "arrested") in actions


def test_a_searched_still_leaves_no_copy_in_the_data_directory_or_temporary_files(
    client: TestClient, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not UTK.exists():
        pytest.skip(f"needs {UTK} (the shared test data beside the project), which is absent")
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    rolled_over: list[object] = []  # Linux temporary files may be unnamed (O_TMPFILE): watch them being made
    real_temporary_file = tempfile.TemporaryFile
    monkeypatch.setattr(tempfile, "TemporaryFile", lambda *a, **k: rolled_over.append(a) or real_temporary_file(*a, **k))
    still = min(UTK.glob("*.jpg")).read_bytes()
    still = still + b"\0" * (2 * 1024 * 1024)  # over Starlette's default 1 MB spool: must still stay in memory
    operator = login(client, Role.operator)
    found = client.post("/api/search", data={"case_ref": "CR/9", "reason": "burglary"}, files={"image": ("p.jpg", still, "image/jpeg")}, headers=operator)
    assert found.status_code == 200, found.text
    assert list(private_tmp.iterdir()) == [] and rolled_over == []
    for path in home.rglob("*"):
        if path.is_file():
            assert still[:4096] not in path.read_bytes(), path


def test_a_running_deployment_shows_camera_progress_and_stops_on_request(home: Path) -> None:
    if not (LFW.exists() and UTK.exists()):
        pytest.skip(f"needs {LFW} and {UTK} (the shared test data beside the project), which are absent")
    (home / "footage").mkdir()  # the default footage directory: camera files are read only from there
    video = walk_video(home / "footage" / "long.avi", [min(UTK.glob("*.jpg"))], frames=600)  # a minute when played in real time
    with TestClient(create_app(ServerSettings(home=home, realtime_files=True))) as client:
        officer = login(client, Role.authorising_officer)
        client.post("/api/watchlists", json={"name": "wanted", "purpose": "arrest warrants"}, headers=officer)
        form = {"subject_id": "S1", "display_name": "Colin Powell", "category": "wanted", "legal_basis": "PACE s.64A", "watchlist": "wanted"}
        reference = LFW / "Colin_Powell" / "Colin_Powell_0001.jpg"
        assert client.post("/api/subjects", data=form, files=[("images", upload(reference))], headers=officer).status_code == 201
        plan = {"name": "op-long", "purpose": "p", "location": "Gate St", "watchlist": "wanted", "cameras": {"gate": str(video)}}
        operator = login(client, Role.operator)
        assert client.post("/api/deployments", json=plan, headers=operator).status_code == 201
        officer = login(client, Role.authorising_officer)
        assert client.post("/api/deployments/op-long/authorise", json={"reason": "r"}, headers=officer).status_code == 200
        assert client.post("/api/deployments/op-long/start", headers=officer).status_code == 200
        assert client.post("/api/deployments/op-long/start", headers=officer).status_code == 422  # only once

        live = wait_for(lambda: (cameras := client.get("/api/deployments/op-long").json()["live"]) and cameras[0]["frames"] > 5 and cameras)
        assert live[0]["camera"] == "gate" and live[0]["fps"] > 0 and not live[0]["finished"]
        record = client.post("/api/deployments/op-long/stop", json={"reason": "operation over"}, headers=officer)
        assert record.status_code == 200, record.text
        assert record.json()["status"] == "ended" and record.json()["alerts"] == 0
        deployment = client.get("/api/deployments/op-long").json()
        assert deployment["status"] == "ended" and deployment["live"] is None
    with RecordStore.open(home) as store, store.transaction() as session:
        ended = list_events(session, action="deployment.end")
    assert [event.actor for event in ended] == [USERS[Role.authorising_officer]]
