"""A threshold below the documented floor — more than 1 false alert in 1,000 searches at the
watchlist's size, from the model's calibration — needs a second authorising officer's recorded
approval; at 0.0 every passer-by would alert and be kept (security finding 3)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_api import login, serving, with_users
from test_deployments import CAMERAS, gallery, make_gallery, service  # noqa: F401 - records-side fixtures
from test_gallery_cli import env, openfrt  # noqa: F401 - the subprocess runner and its environment
from test_records import database_url, home, store  # noqa: F401 - the SQLite/PostgreSQL fixtures

from openfrt.evaluation.calibration import FLOOR_FPIR, calibration_for, floor_threshold
from openfrt.gallery import Gallery
from openfrt.live.deployments import DeploymentService
from openfrt.records import AuditEvent, InvalidRecordError, NotPermittedError, RecordStore, Role
from openfrt.vision import FaceEngine

MODEL = "dlib-resnet@v1"  # the bundled model's shipped calibration; thresholds come from it, not from here


def test_the_floor_comes_from_the_calibration_and_rises_with_the_watchlist() -> None:
    calibration = calibration_for(MODEL)
    assert calibration is not None
    floors = [floor_threshold(MODEL, size) for size in (1, 10, 100, 1000)]
    assert floors == sorted(floors) and len(set(floors)) == 4  # more subjects, more chances of a false alert
    for size, floor in zip((1, 10, 100, 1000), floors):
        assert floor is not None
        assert calibration.expected(floor, size)[1] <= FLOOR_FPIR * 1.0001  # the floor keeps to 1 in 1,000...
        assert calibration.expected(floor - 0.002, size)[1] > FLOOR_FPIR  # ...and just below it does not
    # the calibrated default (1 in 6,000 at 1,000 subjects) is never below the floor at that size
    assert floor_threshold(MODEL, 1000) <= calibration.default_threshold  # type: ignore[operator]
    assert floor_threshold("unmeasured-model@1", 10) is None


def plan(service: DeploymentService, name: str, threshold: float | None) -> None:  # noqa: F811
    service.create(name, purpose="p", location="l", watchlist="op", actor="PC 1", cameras=CAMERAS, threshold=threshold)


def test_a_threshold_below_the_floor_needs_a_second_authorising_officers_justified_approval(
    service: DeploymentService, store: RecordStore, gallery: Gallery  # noqa: F811
) -> None:
    size = len(gallery.watchlist("op").subjects)
    floor = floor_threshold(gallery.model_id, size)
    assert floor is not None
    plan(service, "zero", 0.0)
    with pytest.raises(NotPermittedError, match="below the floor") as refused:
        service.authorise("zero", actor="Supt A")
    assert "approve-threshold zero" in str(refused.value)
    assert service.get("zero").authorised_by is None
    with pytest.raises(NotPermittedError, match="second authorising officer"):
        service.approve_threshold("zero", justification="testing", actor="PC 1")  # its planner
    with pytest.raises(InvalidRecordError, match="justification"):
        service.approve_threshold("zero", justification=" ", actor="Supt B")
    approved = service.approve_threshold("zero", justification="crowd of 40, all known to the team", actor="Supt B")
    assert approved.threshold_approval is not None and approved.threshold_approval["by"] == "Supt B"
    with pytest.raises(NotPermittedError, match="second authorising officer"):
        service.authorise("zero", actor="Supt B")  # the approver cannot be the authorising officer too
    service.authorise("zero", actor="Supt A")

    plan(service, "at-floor", floor)
    with pytest.raises(InvalidRecordError, match="needs no approval"):
        service.approve_threshold("at-floor", justification="j", actor="Supt B")
    service.authorise("at-floor", actor="Supt A")  # the watchlist's own, calibrated threshold needs none either
    plan(service, "default", None)
    service.authorise("default", actor="Supt A")

    with store.transaction() as session:
        entries = {(entry.action, entry.target): entry for entry in session.scalars(select(AuditEvent))}
    authorisation = entries["deployment.authorise", "zero"].details
    assert {key: authorisation[key] for key in ("threshold", "watchlist_size", "model_id")} == {
        "threshold": 0.0, "watchlist_size": size, "model_id": gallery.model_id}
    assert authorisation["threshold_floor"] == floor and authorisation["threshold_approval"]["by"] == "Supt B"
    approval = entries["deployment.threshold_approve", "zero"]
    assert approval.actor == "Supt B" and approval.reason == "crowd of 40, all known to the team"
    assert approval.details == {"threshold": 0.0, "model_id": gallery.model_id, "watchlist_size": size, "floor": floor,
                                "needs_approval": True}


def test_an_approval_covers_only_the_watchlist_size_it_was_given_for(
    service: DeploymentService, store: RecordStore, gallery: Gallery  # noqa: F811
) -> None:
    plan(service, "low", 0.5)
    service.approve_threshold("low", justification="j", actor="Supt B")
    service.authorise("low", actor="Supt A")
    gallery.add_to_watchlist("op", ["charlie"], actor="PC 1")  # the floor rises with the list
    with pytest.raises(NotPermittedError, match="below the floor"):
        service.start("low", "PC 1")
    service.approve_threshold("low", justification="j, for three", actor="Supt C")
    running = service.start("low", "PC 1")
    assert running.threshold == 0.5
    running.end("PC 1")


def test_a_watchlist_threshold_below_the_floor_for_one_subject_is_refused(store: RecordStore, hog_engine: FaceEngine) -> None:  # noqa: F811
    gallery = Gallery(store, hog_engine)  # noqa: F811
    floor = floor_threshold(gallery.model_id, 1)
    assert floor is not None
    with pytest.raises(InvalidRecordError, match="floor"):
        gallery.create_watchlist("zero", purpose="p", authorised_by="Supt A", actor="Supt A", threshold=0.0)
    gallery.create_watchlist("at-floor", purpose="p", authorised_by="Supt A", actor="Supt A", threshold=floor)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with serving(with_users(tmp_path / "server")) as client:
        yield client


def test_a_zero_threshold_is_refused_over_http_until_approved(client: TestClient) -> None:
    officer = login(client, Role.authorising_officer)
    assert client.post("/api/watchlists", json={"name": "w0", "purpose": "p", "threshold": 0.0}, headers=officer).status_code == 422
    assert client.post("/api/watchlists", json={"name": "w", "purpose": "p"}, headers=officer).status_code == 201
    operator = login(client, Role.operator)
    plan = {"name": "d0", "purpose": "p", "location": "l", "watchlist": "w", "cameras": {"gate": "0"}, "threshold": 0.0}
    planned = client.post("/api/deployments", json=plan, headers=operator)
    assert planned.status_code == 201 and planned.json()["threshold_check"]["needs_approval"] is True
    officer = login(client, Role.authorising_officer)
    refused = client.post("/api/deployments/d0/authorise", json={"reason": "every face alerts"}, headers=officer)
    assert refused.status_code == 403 and "below the floor" in refused.json()["detail"]
    own = client.post("/api/deployments/d0/approve-threshold", json={"justification": "j"}, headers=officer)
    assert own.status_code == 200  # approving is allowed to any authorising officer but the planner...
    again = client.post("/api/deployments/d0/authorise", json={"reason": "every face alerts"}, headers=officer)
    assert again.status_code == 403 and "second authorising officer" in again.json()["detail"]  # ...who then cannot authorise


def test_the_command_line_approves_with_a_justification(env: dict[str, str], hog_engine: FaceEngine) -> None:  # noqa: F811
    from cli_users import as_user, records

    officer, second = as_user(env, Role.authorising_officer), as_user(env, Role.authorising_officer, "authorising-officer-2")
    with records(env) as opened:
        make_gallery(opened, hog_engine)
        DeploymentService(opened).create("low", purpose="p", location="l", watchlist="op", actor="PC 1", cameras=CAMERAS,
                                         threshold=0.0)
    refused = openfrt(officer, "deployments", "authorise", "low", "--json")
    assert refused.returncode == 1 and "below the floor" in json.loads(refused.stdout)["error"]
    approved = openfrt(second, "deployments", "approve-threshold", "low", "--justification", "known crowd", "--json")
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["threshold_approval"]["justification"] == "known crowd"
    authorised = openfrt(officer, "deployments", "authorise", "low", "--json")
    assert authorised.returncode == 0, authorised.stderr
