"""What the console shows and changes, below the browser: alert cards that tell the truth (only
candidates above the threshold, the verdict history, corrections with a reason from a blank
form), why a subject is on a watchlist, planned deployments edited, cancelled and checked,
failed starts that publish nothing, officers' ranks, and user accounts re-enabled and re-roled."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import select, text

from openfrt.gallery import Gallery
from openfrt.live.alerts import AlertService
from openfrt.live.deployments import DeploymentService
from openfrt.records import InvalidRecordError, RecordStore, database
from openfrt.records.models import AlertOutcome, AlertStatus, AlertVerdict, PerceivedSex
from test_deployments import START, audit, event, gallery, plan, service  # noqa: F401 - fixtures and helpers
from test_records import database_url, home, store  # noqa: F401 - the SQLite/PostgreSQL fixtures


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
