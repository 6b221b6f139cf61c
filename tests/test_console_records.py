"""What the console shows and changes, below the browser: alert cards that tell the truth (only
candidates above the threshold, the verdict history, corrections with a reason from a blank
form), why a subject is on a watchlist, planned deployments edited, cancelled and checked,
failed starts that publish nothing, officers' ranks, and user accounts re-enabled and re-roled."""

from __future__ import annotations

import multiprocessing
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select, text

from openfrt.gallery import Gallery
from openfrt.integrations.destinations import DestinationService
from openfrt.live import processes
from openfrt.live.alerts import AlertService
from openfrt.errors import ModelError
from openfrt.live.deployments import DeploymentService
from openfrt.live.sources import SourceError
from openfrt.live.supervisor import LiveSupervisor
from openfrt.net_policy import DestinationRefused
from openfrt.records import InvalidRecordError, NotPermittedError, RecordStore, database
from openfrt.records.errors import AuthenticationError
from openfrt.records.models import AlertOutcome, AlertStatus, AlertVerdict, DeploymentLease, DeploymentStatus, OutboxEvent, PerceivedSex
from openfrt.records.users import Role, UserService
from openfrt.vision import FaceEngine
from test_deployments import START, audit, event, gallery, jpeg, plan, service  # noqa: F401 - fixtures and helpers
from test_records import database_url, home, store  # noqa: F401 - the SQLite/PostgreSQL fixtures

PASSWORD = "correct horse battery staple"


# -- alert cards ---------------------------------------------------------------------------------


def test_an_alert_lists_as_also_above_the_threshold_only_candidates_that_reached_it(service: DeploymentService, store: RecordStore) -> None:  # noqa: F811
    plan(service, threshold=None)
    running = service.start("dep", "PC 1")
    threshold = running.threshold  # the watchlist's, whatever the model
    candidates = (("alpha", threshold + 0.02), ("bravo", threshold), ("charlie", threshold - 0.001))
    alert_id = running.raise_alert(replace(event(), similarity=threshold + 0.02, candidates=candidates))
    info = AlertService(store).get(alert_id)
    assert info.threshold == threshold
    assert info.others_above_threshold == (("bravo", threshold),)
    assert info.as_dict()["others_above_threshold"] == [["bravo", threshold]]
    (listed,) = AlertService(store).list("dep")
    assert listed.others_above_threshold == (("bravo", threshold),)
    running.end("PC 1")


def test_a_correction_needs_a_reason_starts_blank_and_the_history_keeps_every_verdict(service: DeploymentService, store: RecordStore) -> None:  # noqa: F811
    plan(service)
    running = service.start("dep", "PC 1")
    alert_id = running.raise_alert(event())
    alerts = AlertService(store)
    alerts.adjudicate(alert_id, status=AlertStatus.confirmed_match, outcome=AlertOutcome.arrested, by="PC 2",
                      note="she gave the subject's name", perceived_sex=PerceivedSex.female)
    with pytest.raises(InvalidRecordError, match="a correction needs its reason"):
        alerts.adjudicate(alert_id, correcting=AlertStatus.confirmed_match, status=AlertStatus.false_alert,
                          outcome=AlertOutcome.no_action, by="Sgt 3", reason=" ")
    corrected = alerts.adjudicate(alert_id, correcting=AlertStatus.confirmed_match, status=AlertStatus.false_alert,
                                  outcome=AlertOutcome.no_action, by="Sgt 3", reason="custody check: she is not the subject")
    # Nothing of PC 2's verdict is shown under Sgt 3's: no note, no perceived sex carried over.
    assert (corrected.status, corrected.outcome, corrected.note, corrected.perceived_sex) == (
        AlertStatus.false_alert, AlertOutcome.no_action, None, None)
    assert [(v.status, v.outcome, v.note, v.correction_reason, v.adjudicated_by) for v in corrected.verdicts] == [
        (AlertStatus.confirmed_match, AlertOutcome.arrested, "she gave the subject's name", None, "PC 2"),
        (AlertStatus.false_alert, AlertOutcome.no_action, None, "custody check: she is not the subject", "Sgt 3"),
    ]
    assert alerts.list("dep")[0].verdicts == corrected.verdicts
    entry = audit(store, "alert.adjudicate")[-1]
    assert entry.reason == "custody check: she is not the subject" and entry.details["previous"]["note"] == "she gave the subject's name"
    assert running.end("PC 1").false_alerts == 1


def test_the_upgrade_gives_adjudicated_alerts_their_verdict_as_the_first_of_their_history(database_url: str) -> None:  # noqa: F811
    engine = database.make_engine(database_url)
    database.upgrade(engine, "0005")
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO deployments (id, name, purpose, location, authorised_by, watchlist, status, created_at) "
            "VALUES (1, 'dep', 'p', 'l', 'Supt A', 'op', 'ended', :at)"), {"at": START})
        for number, (status, outcome, by) in enumerate((("pending", None, None), ("false_alert", "no_action", "PC 2")), start=1):
            connection.execute(text(
                "INSERT INTO alerts (id, deployment_id, camera, track_id, subject, similarity, candidates, source_time, wall_time, "
                "status, engaged, outcome, note, adjudicated_by, adjudicated_at) VALUES (:id, 1, 'north', :id, 'alpha', 0.95, '[]', "
                "1.0, :at, :status, false, :outcome, 'a note', :by, :when)"),
                {"id": number, "at": START, "status": status, "outcome": outcome, "by": by, "when": START if by else None})
    database.upgrade(engine)
    with engine.connect() as connection:
        rows = connection.execute(select(AlertVerdict.alert_id, AlertVerdict.status, AlertVerdict.note, AlertVerdict.adjudicated_by)).all()
    assert [tuple(row) for row in rows] == [(2, AlertStatus.false_alert, "a note", "PC 2")]
    engine.dispose()


# -- officers' names, and accounts re-enabled and re-roled -----------------------------------------


def test_an_officer_is_named_by_rank_and_display_name_and_changes_are_audited(store: RecordStore) -> None:  # noqa: F811
    users = UserService(store)
    created = users.create("asmith", Role.authorising_officer, PASSWORD, actor="admin", display_name="A. Smith", rank=" Supt ")
    assert (created.rank, created.public_name) == ("Supt", "Supt A. Smith")
    assert users.update("asmith", actor="admin", rank="Ch Supt").public_name == "Ch Supt A. Smith"
    assert users.update("asmith", actor="admin", rank="").public_name == "A. Smith"  # an empty rank removes it
    with pytest.raises(InvalidRecordError, match="display name"):
        users.update("asmith", actor="admin", display_name=" ")
    with pytest.raises(InvalidRecordError, match="at most 60"):
        users.update("asmith", actor="admin", rank="x" * 61)
    changes = [entry.details for entry in audit(store, "user.update")]
    assert changes == [{"before": {"display_name": "A. Smith", "rank": "Supt"}, "after": {"display_name": "A. Smith", "rank": "Ch Supt"}},
                       {"before": {"display_name": "A. Smith", "rank": "Ch Supt"}, "after": {"display_name": "A. Smith", "rank": None}}]


def test_a_disabled_user_is_enabled_again_and_a_new_role_ends_their_sessions(store: RecordStore) -> None:  # noqa: F811
    users = UserService(store)
    admin = users.create("admin-1", Role.admin, PASSWORD, actor="setup")
    user = users.create("pc1", Role.operator, PASSWORD, actor="admin-1")
    users.disable("pc1", actor="admin-1")
    with pytest.raises(AuthenticationError):
        users.authenticate("pc1", PASSWORD)
    assert users.enable("pc1", actor="admin-1").disabled is False
    assert users.authenticate("pc1", PASSWORD).name == "pc1"

    session, _ = users.create_session(user)
    assert users.set_role("pc1", Role.engagement_officer, actor="admin-1").role is Role.engagement_officer
    with pytest.raises(AuthenticationError):
        users.session_user(session)  # the old session had the old role's rights
    with pytest.raises(InvalidRecordError, match="only enabled administrator"):
        users.set_role(admin.name, Role.auditor, actor="admin-1")
    assert [(e.action, e.details) for e in audit(store, "user.enable") + audit(store, "user.role")] == [
        ("user.enable", {}), ("user.role", {"before": "operator", "after": "engagement_officer", "sessions_ended": 1})]


# -- planned deployments: checked, changed, cancelled; failed starts publish nothing ---------------


def test_planning_refuses_a_camera_file_that_is_not_there(service: DeploymentService, tmp_path: Path) -> None:  # noqa: F811
    missing = tmp_path / "nowhere" / "gate.mp4"  # inside the footage directory the session allows
    with pytest.raises(SourceError, match=f"source not found: {missing}"):
        plan(service, cameras={"gate": str(missing)})
    with pytest.raises(DestinationRefused, match="not inside the footage directory"):  # the source policy comes first
        plan(service, cameras={"gate": "/nowhere/gate.mp4"})
    video = tmp_path / "gate.mp4"
    video.write_bytes(b"checked only for being there")
    plan(service, cameras={"gate": str(video), "street": "rtsp://10.0.0.5/stream", "desk": "0"})  # streams are tried at the start
    with pytest.raises(SourceError, match="source not found"):
        service.update("dep", {"cameras": {"gate": str(tmp_path / "typo.mp4")}}, actor="PC 1")
    assert {camera.name: camera.source for camera in service.list()[0].cameras}["gate"] == str(video)


def test_a_planned_deployment_is_changed_losing_its_authority_or_cancelled_and_never_published(
    service: DeploymentService, store: RecordStore  # noqa: F811
) -> None:
    plan(service)  # authorised by Supt A as planned
    assert service.update("dep", {"purpose": "wanted offenders at the match"}, actor="PC 1").authorised_by == "Supt A"  # no change
    changed = service.update("dep", {"location": "Stadium Way, gate C", "threshold": 0.95,
                                     "cameras": {"north": "rtsp://officer:s3cret@10.0.0.6/stream"}}, actor="PC 1")
    assert (changed.location, changed.threshold, changed.authorised_by) == ("Stadium Way, gate C", 0.95, None)
    assert [camera.source for camera in changed.cameras] == ["rtsp://10.0.0.6/stream"]
    assert service.camera_sources("dep") == {"north": "rtsp://officer:s3cret@10.0.0.6/stream"}
    (entry,) = audit(store, "deployment.update")
    assert entry.details["authority_withdrawn"] == "Supt A" and set(entry.details["changed"]) == {"cameras", "location", "threshold"}
    assert "s3cret" not in str(entry.details)
    with pytest.raises(InvalidRecordError, match="cannot be changed"):
        service.update("dep", {"status": "running"}, actor="PC 1")
    with pytest.raises(InvalidRecordError, match="authorising officer"):
        service.start("dep", "PC 1")  # the changed plan needs authority again

    service.cancel("dep", actor="PC 1", reason="the match was postponed")
    assert service.list() == []
    (cancelled,) = audit(store, "deployment.cancel")
    assert cancelled.reason == "the match was postponed" and cancelled.details["location"] == "Stadium Way, gate C"
    plan(service, "ran")
    running = service.start("ran", "PC 1")
    for attempt in (lambda: service.update("ran", {"location": "x"}, actor="PC 1"), lambda: service.cancel("ran", actor="PC 1", reason="r")):
        with pytest.raises(InvalidRecordError, match="only a planned deployment"):
            attempt()
    running.end("PC 1")


def test_whoever_changes_a_plan_becomes_its_planner_and_the_approvals_given_for_it_lapse(
    service: DeploymentService, store: RecordStore  # noqa: F811
) -> None:
    plan(service, authorised_by=None, threshold=0.0)  # below any floor: it needs a second officer's approval
    service.approve_threshold("dep", justification="a test of the floor", actor="Supt B")
    service.authorise("dep", actor="Supt A", reason="as planned")
    changed = service.update("dep", {"location": "Stadium Way, gate D"}, actor="Supt A")  # an authorising officer changes it
    assert (changed.planned_by, changed.authorised_by, changed.threshold_approval) == ("Supt A", None, None)
    with pytest.raises(NotPermittedError, match="planned by Supt A"):
        service.authorise("dep", actor="Supt A", reason="my own change")  # one person may not both shape and authorise it
    with pytest.raises(NotPermittedError, match="below the floor"):
        service.authorise("dep", actor="Supt C", reason="as changed")  # the approval was for the plan as it was
    service.approve_threshold("dep", justification="still needed at gate D", actor="Supt B")
    assert service.authorise("dep", actor="Supt C", reason="as changed").authorised_by == "Supt C"
    (entry,) = audit(store, "deployment.update")
    assert entry.details["planned_by"] == {"before": "PC 1", "after": "Supt A"} and entry.details["authority_withdrawn"] == "Supt A"
    assert entry.details["threshold_approval_withdrawn"]["by"] == "Supt B"


def test_a_plan_cannot_be_changed_onto_a_watchlist_made_for_another_deployment(
    service: DeploymentService, gallery: Gallery  # noqa: F811
) -> None:
    gallery.create_watchlist("tonight", purpose="tonight's operation", authorised_by="Supt A", actor="Supt A")  # not standing
    plan(service, "first", watchlist="tonight", authorised_by=None)
    plan(service, "second", authorised_by=None)
    with pytest.raises(InvalidRecordError, match="made for deployment 'first'"):
        service.update("second", {"watchlist": "tonight"}, actor="PC 1")
    assert service.get("second").watchlist == "op"


@pytest.mark.parametrize("cameras", [["gate"], ["gate", "van"]], ids=["threads", "a-process-per-camera"])
def test_a_start_that_fails_before_anything_ran_goes_back_to_planned_and_publishes_nothing(
    service: DeploymentService, store: RecordStore, hog_engine: FaceEngine, tmp_path: Path,  # noqa: F811
    cameras: list[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(processes, "available_cores", lambda: 2)  # two cameras would run a process each
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "frame.jpg").write_bytes(jpeg(1))
    plan(service, cameras=dict.fromkeys(cameras, str(folder)))
    DestinationService(store).add_webhook("control-room", "http://127.0.0.1:9/hook", secret="receiver-shared-secret-0123456789", actor="admin")
    # dlib's own embedder cannot embed the pipeline's aligned chips: the cameras cannot be set up.
    with pytest.raises(ModelError, match="chip"):
        LiveSupervisor(service, lambda: hog_engine, realtime=False).start("dep", "PC 1")
    assert multiprocessing.active_children() == [], "no camera's process was started"
    failed = service.get("dep")
    assert (failed.status, failed.started_at, failed.threshold, failed.model_id) == (DeploymentStatus.planned, None, None, None)
    assert "chip" in (failed.start_failure or "") and failed.start_failed_at is not None
    assert published_records_of(store) == []
    with store.transaction() as session:  # its lease went with it: recovery has nothing to take over
        assert session.scalars(select(DeploymentLease)).all() == []
    assert [e.action for e in audit(store, "deployment.start_failed") + audit(store, "deployment.snapshot_destroy")] == [
        "deployment.start_failed", "deployment.snapshot_destroy"]
    with store.transaction() as session:  # subscribers told it started are told it did not run
        told = [(row.type, row.payload["data"].get("failure")) for row in session.scalars(select(OutboxEvent).order_by(OutboxEvent.id))]
    assert [kind for kind, _ in told] == ["deployment.started", "deployment.start_failed"] and "chip" in told[1][1]

    service.authorise("dep", actor="Supt A", reason="the cameras are fixed")
    # One that ran, even briefly, is published as it ran.
    running = service.start("dep", "PC 1")
    running.add_faces_scanned("gate", 1)
    assert running.abandon("PC 1", "lost the camera") is False
    assert running.end("PC 1").faces_scanned == 1 and service.get("dep").start_failure is None


def published_records_of(store: RecordStore) -> list[str]:  # noqa: F811
    return [info.name for info in DeploymentService(store).list() if info.status is not DeploymentStatus.planned]
