"""Reference images are shown only for a recorded reason, and an engagement officer sees only
the reference image of an alert they handle — not the reference database page by page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from openfrt.api import ServerSettings, create_app
from openfrt.gallery import Gallery
from openfrt.live.alerts import AlertService
from openfrt.live.deployments import DeploymentService
from openfrt.records import InvalidRecordError, RecordStore
from openfrt.records.audit import list_events
from openfrt.records.models import AlertOutcome, AlertStatus, ReferenceImage
from openfrt.records.users import Role, UserService
from openfrt.vision import FaceEngine
from test_deployments import event, make_gallery

PASSWORD = "correct horse battery staple"
#: The alert's reference as stored (the fixture's "images" are placeholders, not pictures to cut a face from).
WHOLE = {"face": "false"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, hog_engine: FaceEngine) -> Path:
    """Subjects alpha, bravo and charlie (one reference image each); a deployment with a pending
    alert on alpha and one on bravo that eo-2 adjudicated."""
    home = tmp_path_factory.mktemp("references") / "home"
    with RecordStore.open(home) as store:
        users = UserService(store)
        for name, role in (("eo-1", Role.engagement_officer), ("eo-2", Role.engagement_officer), ("op-1", Role.operator)):
            users.create(name, role, PASSWORD, actor="test")
        service = DeploymentService(store, make_gallery(store, hog_engine))
        service.create("dep", purpose="p", location="x", watchlist="op", actor="op-1", cameras={"north": "0"})
        service.authorise("dep", actor="Supt A")
        running = service.start("dep", "op-1")
        running.raise_alert(event(subject="alpha", seed=1))
        handled = running.raise_alert(event(subject="bravo", track=2, seed=2))
        AlertService(store).adjudicate(handled, status=AlertStatus.false_alert, outcome=AlertOutcome.no_action, by="eo-2")
        running.end("op-1")
    return home


@pytest.fixture(scope="module")
def app(home: Path) -> Iterator[object]:
    app = create_app(ServerSettings(home=home, realtime_files=False))
    with TestClient(app):
        yield app


def as_user(app: object, name: str) -> TestClient:
    client = TestClient(app)  # type: ignore[arg-type]
    answer = client.post("/api/session", json={"name": name, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return client


def image_ids(home: Path) -> dict[str, int]:
    with RecordStore.open(home) as store, store.transaction() as session:
        return {subject: image for subject, image in session.execute(select(ReferenceImage.subject_id, ReferenceImage.id))}


def test_an_engagement_officer_sees_only_the_reference_of_an_alert_they_handle(app: object, home: Path) -> None:
    officer, other = as_user(app, "eo-1"), as_user(app, "eo-2")
    for image_id in image_ids(home).values():  # paging through the reference database
        assert officer.get(f"/api/reference-images/{image_id}", params={"reason": "curious"}).status_code == 403
    pending, handled = [alert["id"] for alert in officer.get("/api/alerts").json()]
    assert officer.get(f"/api/alerts/{pending}/reference", params=WHOLE).status_code == 200  # waiting for someone's verdict
    refused = officer.get(f"/api/alerts/{handled}/reference", params=WHOLE)  # another officer's alert, already decided
    assert refused.status_code == 403 and "handle" in refused.json()["detail"]
    assert other.get(f"/api/alerts/{handled}/reference", params=WHOLE).status_code == 200  # their own


def test_every_reference_image_view_has_a_recorded_reason(app: object, home: Path) -> None:
    operator = as_user(app, "op-1")
    image = image_ids(home)["charlie"]
    assert operator.get(f"/api/reference-images/{image}").status_code == 422  # no reason, no image
    assert operator.get(f"/api/reference-images/{image}", params={"reason": " "}).status_code == 422
    shown = operator.get(f"/api/reference-images/{image}", params={"reason": "checking enrolment quality"})
    assert shown.status_code == 200 and shown.content == b"jpeg"
    alert = operator.get("/api/alerts").json()[0]["id"]
    assert operator.get(f"/api/alerts/{alert}/reference", params=WHOLE).status_code == 200
    with RecordStore.open(home) as store, store.transaction() as session:
        views = list_events(session, action="subject.image_view", limit=100)
    assert views and all(view.reason and view.reason.strip() for view in views)
    assert {"checking enrolment quality", f"comparison with alert {alert}"} <= {view.reason for view in views}


def test_the_service_refuses_a_view_without_a_reason(home: Path, hog_engine: FaceEngine) -> None:
    with RecordStore.open(home) as store:
        gallery = Gallery(store, hog_engine)
        for reason in (None, "", "  "):
            with pytest.raises(InvalidRecordError, match="reason"):
                gallery.view_reference_image(image_ids(home)["alpha"], actor="op-1", reason=reason)  # type: ignore[arg-type]
