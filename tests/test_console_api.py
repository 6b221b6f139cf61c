"""The API the console calls for issue 16's pages, over HTTP: accounts managed by administrators,
officers named by rank in what is published, alert cards that say who was matched, and the
same account changes from the command line."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image
from cli_users import as_user
from test_api import PASSWORD, USERS, client, home, login  # noqa: F401 - the server fixtures
from test_deployments import make_gallery
from test_gallery_cli import env, lines  # noqa: F401 - the subprocess environment
from test_users import openfrt_with_input

from openfrt.api.routes.audit import action_name
from openfrt.live.deployments import DeploymentService
from openfrt.records import RecordStore
from openfrt.records.audit import list_events
from openfrt.records.users import Role, UserService
from openfrt.vision import FaceEngine


def test_an_administrator_renames_re_roles_resets_and_re_enables_accounts(client: TestClient, home: Path) -> None:  # noqa: F811
    admin = login(client, Role.admin)
    created = client.post("/api/users", json={"name": "jjones", "role": "operator", "password": PASSWORD,
                                              "display_name": "J. Jones", "rank": "PC 1234"}, headers=admin)
    assert created.status_code == 201 and created.json()["public_name"] == "PC 1234 J. Jones"
    renamed = client.patch("/api/users/jjones", json={"rank": "Sgt 45"}, headers=admin)
    assert renamed.json()["public_name"] == "Sgt 45 J. Jones"
    assert client.put("/api/users/jjones/role", json={"role": "engagement_officer"}, headers=admin).json()["role"] == "engagement_officer"
    assert client.post("/api/users/jjones/password", json={"password": "short"}, headers=admin).status_code == 422
    assert client.post("/api/users/jjones/password", json={"password": "a new long passphrase"}, headers=admin).status_code == 200
    assert client.post("/api/users/jjones/disable", headers=admin).json()["disabled"] is True
    assert client.post("/api/users/jjones/enable", headers=admin).json()["disabled"] is False
    last_admin = client.put(f"/api/users/{USERS[Role.admin]}/role", json={"role": "auditor"}, headers=admin)
    assert last_admin.status_code == 422 and "only enabled administrator" in last_admin.json()["detail"]

    client.cookies.clear()
    assert client.post("/api/session", json={"name": "jjones", "password": "a new long passphrase"}).status_code == 200
    operator = login(client, Role.operator)
    assert client.post("/api/users/jjones/enable", headers=operator).status_code == 403
    with RecordStore.open(home) as store, store.transaction() as session:
        actions = [entry.action for entry in list_events(session, target="jjones", limit=20)]
    assert actions[::-1] == ["user.create", "user.update", "user.role", "user.password", "user.disable", "user.enable", "user.login"]


def test_the_published_record_names_the_authorising_officer_by_rank_not_log_in_name(
    client: TestClient, home: Path, hog_engine: FaceEngine  # noqa: F811
) -> None:
    officer = USERS[Role.authorising_officer]
    with RecordStore.open(home) as store:
        UserService(store).update(officer, actor="test", display_name="A. Smith", rank="Supt")
        service = DeploymentService(store, make_gallery(store, hog_engine))
        service.create("dep", purpose="p", location="High St", watchlist="op", actor=USERS[Role.operator],
                       cameras={"gate": "rtsp://10.0.0.5/stream"})
        service.authorise("dep", actor=officer, reason="wanted offenders expected on the high street")
        service.start("dep", officer).end(officer)
    (row,) = client.get("/api/records").json()["deployments"]
    assert row["authorised_by"] == "Supt A. Smith"
    page = client.get("/transparency").text
    assert "Supt A. Smith" in page and officer not in page
    login(client, Role.auditor)
    assert "Supt A. Smith" in client.get("/deployments").text and "Supt A. Smith" in client.get("/deployments/dep").text


def test_a_deployment_page_names_planner_and_authoriser_and_offers_authority_only_to_another_officer(
    client: TestClient, home: Path  # noqa: F811
) -> None:
    with RecordStore.open(home) as store:
        UserService(store).create("supt-b", Role.authorising_officer, PASSWORD, actor="test", display_name="B. Brown", rank="Supt")
    officer = login(client, Role.authorising_officer)
    assert client.post("/api/watchlists", json={"name": "wanted", "purpose": "warrants"}, headers=officer).status_code == 201
    plan = {"name": "own", "purpose": "p", "location": "Gate St", "watchlist": "wanted", "cameras": {"gate": "0"}}
    assert client.post("/api/deployments", json=plan, headers=officer).status_code == 201
    for path in ("/deployments", "/deployments/own"):
        page = client.get(path).text
        assert 'data-testid="authorise"' not in page and "other than you, its planner" in page  # not their own plan
    client.cookies.clear()
    client.post("/api/session", json={"name": "supt-b", "password": PASSWORD}).raise_for_status()
    page = client.get("/deployments/own").text
    assert 'data-testid="authorise"' in page and "other than you" not in page
    assert 'data-testid="planned-by">' + USERS[Role.authorising_officer] in page
    listing = client.get("/deployments").text
    assert listing.count("<th scope=\"col\">Planned by</th>") == 1 and USERS[Role.authorising_officer] in listing


def test_users_commands_enable_re_role_rename_and_reset_passwords(env: dict[str, str]) -> None:  # noqa: F811
    with RecordStore.open(env["OPENFRT_HOME"]) as store:
        users = UserService(store)
        users.create("pc1", Role.operator, PASSWORD, actor="test")
        users.disable("pc1", actor="test")
    created = openfrt_with_input(env, PASSWORD + "\n", "users", "create", "asmith", "--role", "admin", "--display-name", "A. Smith",
                                 "--rank", "Supt", "--password-stdin", "--json")  # the first administrator: local administration
    assert created.returncode == 0, created.stderr
    assert lines(created)[0]["public_name"] == "Supt A. Smith"
    env = as_user(env, Role.admin)  # the rest as an administrator, with their own token
    renamed = openfrt_with_input(env, "", "users", "update", "pc1", "--display-name", "P. Cole", "--rank", "PC 77", "--json")
    assert lines(renamed)[0]["public_name"] == "PC 77 P. Cole"
    enabled = openfrt_with_input(env, "", "users", "enable", "pc1", "--json")
    assert enabled.returncode == 0 and lines(enabled)[0]["disabled"] is False
    roled = openfrt_with_input(env, "", "users", "role", "pc1", "auditor", "--json")
    assert roled.returncode == 0 and lines(roled)[0]["role"] == "auditor"
    reset = openfrt_with_input(env, "another long passphrase\n", "users", "reset-password", "pc1", "--password-stdin", "--json")
    assert reset.returncode == 0 and lines(reset)[0] == {"user": "pc1", "password_changed": True}
    with RecordStore.open(env["OPENFRT_HOME"]) as store:
        assert UserService(store).authenticate("pc1", "another long passphrase").role is Role.auditor


def test_the_audit_log_exports_every_matching_entry_as_csv_or_json_and_the_export_is_audited(client: TestClient) -> None:  # noqa: F811
    admin = login(client, Role.admin)
    for number in range(3):
        client.post("/api/users", json={"name": f"pc{number}", "role": "operator", "password": PASSWORD}, headers=admin)
    login(client, Role.auditor)
    exported = client.get("/api/audit/export", params={"action": "user.create", "since": "2000-01-01T00:00Z"})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert 'attachment; filename="openfrt-audit-' in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [row["target"] for row in rows][-3:] == ["pc0", "pc1", "pc2"]  # oldest first
    assert len(rows) == len(USERS) + 3 and {row["action_name"] for row in rows} == {"User created"}
    assert json.loads(rows[-1]["details"]) == {"display_name": "pc2", "rank": None, "role": "operator"}  # whole, not cut short
    as_json = client.get("/api/audit/export", params={"format": "json", "target": "pc1"}).json()
    assert [(entry["action"], entry["action_name"], entry["actor"]) for entry in as_json] == [("user.create", "User created", USERS[Role.admin])]
    (audited, *_) = client.get("/api/audit", params={"action": "audit.export"}).json()
    assert audited["details"] == {"format": "json", "target": "pc1", "entries": 1}
    assert client.get("/api/audit/export", params={"since": "2000-01-01T00:00"}).status_code == 422  # a time needs its zone, as in /api/audit
    login(client, Role.operator)
    assert client.get("/api/audit/export").status_code == 403


def test_audit_actions_read_as_words_even_those_this_version_does_not_know() -> None:
    assert action_name("subject.image_view") == "Reference image viewed"
    assert action_name("alert.adjudicate") == "Alert adjudicated"
    assert action_name("webhook.delivery_failed") == "webhook: delivery failed"


def test_an_enrolment_refuses_face_choices_that_name_no_face_before_looking_at_any_image(client: TestClient) -> None:  # noqa: F811
    officer = login(client, Role.authorising_officer)
    form = {"subject_id": "S1", "display_name": "S One", "category": "wanted", "legal_basis": "PACE s.64A"}
    image = [("images", ("a.jpg", b"not looked at", "image/jpeg"))]
    for faces, problem in ((["left"], "not a face index"), (["0", "1"], "2 face choices for 1 image")):
        refused = client.post("/api/subjects", data={**form, "faces": faces}, files=image, headers=officer)
        assert refused.status_code == 422 and problem in refused.json()["detail"]


def test_a_reference_image_is_shown_cut_to_the_face_enrolled_from_it(client: TestClient, samples: Path) -> None:  # noqa: F811
    officer = login(client, Role.authorising_officer)
    form = {"subject_id": "S1", "display_name": "S One", "category": "wanted", "legal_basis": "PACE s.64A", "faces": ["1"]}
    photo = samples / "two_people.jpg"
    enrolled = client.post("/api/subjects", data=form, files=[("images", (photo.name, photo.read_bytes(), "image/jpeg"))], headers=officer)
    assert enrolled.status_code == 201, enrolled.text
    (image,) = enrolled.json()["images"]
    viewed = {"reason": "checking enrolment quality"}
    whole = Image.open(io.BytesIO(client.get(f"/api/reference-images/{image['reference_image']}", params=viewed).content))
    face = Image.open(io.BytesIO(client.get(f"/api/reference-images/{image['reference_image']}", params={**viewed, "face": "true"}).content))
    _, _, w, h = image["face"]["box"]
    assert whole.size == Image.open(photo).size and max(face.size) < 2.5 * max(w, h) < whole.size[0]  # one face, with a margin


def test_the_console_installs_as_a_web_app_with_its_own_icons(client: TestClient) -> None:  # noqa: F811
    manifest = client.get("/static/manifest.webmanifest")
    assert manifest.status_code == 200 and manifest.headers["content-type"].startswith("application/manifest+json")
    assert manifest.json()["start_url"] == "/alerts" and manifest.json()["display"] == "standalone"
    for icon in manifest.json()["icons"]:
        answer = client.get(icon["src"])
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(icon["type"])
        if icon["type"] == "image/png":
            assert f"{Image.open(io.BytesIO(answer.content)).size[0]}x{Image.open(io.BytesIO(answer.content)).size[1]}" == icon["sizes"]
    assert 'rel="manifest"' in client.get("/login").text
