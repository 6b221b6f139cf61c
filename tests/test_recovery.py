"""Deployments outlive their process: leases decide who runs a deployment, heartbeats flush its
counts, and a deployment whose process was lost is resumed by the server that ran it or ended as
interrupted with everything recorded — on SQLite and PostgreSQL. The end-to-end checks (a real
``openfrt serve`` and ``openfrt live`` killed with SIGKILL) are in test_crash_recovery.py."""

from __future__ import annotations

import csv
import io
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import delete, select, update

from openfrt.gallery import Gallery
from openfrt.live import deployments, leases
from openfrt.live.deployments import DeploymentService, RunningDeployment
from openfrt.live.leases import LeaseLostError
from openfrt.live.recovery import LapsedDeployment, Recovery, interrupt, lapsed_deployments, resume
from openfrt.records import ChainAnchor, RecordNotFoundError, RecordStore, verify_chain
from openfrt.records.models import (
    AuditEvent,
    Deployment,
    DeploymentCamera,
    DeploymentGap,
    DeploymentLease,
    DeploymentStatus,
    utc_now,
)
from test_deployments import audit, event, gallery, plan, service  # noqa: F401 - fixtures and helpers
from test_live_pipeline import wait_for
from test_records import database_url, home, store  # noqa: F401 - the SQLite/PostgreSQL fixtures

LEASE = 1.0


@pytest.fixture(autouse=True)
def short_leases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(leases.LEASE_SECONDS_ENV, str(LEASE))


def lose_process(running: RunningDeployment, monkeypatch: pytest.MonkeyPatch) -> None:
    """What SIGKILL does to the process running ``running``: its heartbeat stops. This process
    then continues as *another* process (a new instance id), as a restarted server would."""
    running._heartbeat.stop()
    monkeypatch.setattr(leases, "_INSTANCE", f"after-{leases._INSTANCE}")


def wait_lapsed(store: RecordStore, name: str) -> LapsedDeployment:  # noqa: F811
    found = wait_for(lambda: any(lapsed.name == name for lapsed in lapsed_deployments(store)), LEASE * 5)
    assert found, f"the lease of {name} did not lapse"
    return next(lapsed for lapsed in lapsed_deployments(store) if lapsed.name == name)


def test_counts_reach_the_database_within_the_flush_interval_without_further_reports(
    service: DeploymentService, store: RecordStore, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    monkeypatch.setattr(deployments, "FLUSH_INTERVAL_SECONDS", 0.2)
    plan(service)
    running = service.start("dep", "PC 1")
    running.add_faces_scanned("north", 7)  # just after the start: no flush is due yet
    running.add_frames_dropped("south", 2)

    def stored() -> dict[str, tuple[int, int]]:
        with store.transaction() as session:
            return {c.name: (c.faces_scanned, c.frames_dropped) for c in session.scalars(select(DeploymentCamera))}

    assert wait_for(lambda: stored() == {"north": (7, 0), "south": (0, 2)}, 5), stored()  # the heartbeat wrote them
    with store.transaction() as session:
        lease = session.scalars(select(DeploymentLease)).one()
    assert lease.expires_at > utc_now() and lease.owner == leases.process_owner()
    running.end("PC 1")
    with store.transaction() as session:
        assert session.scalars(select(DeploymentLease)).all() == []  # released at the end


def test_a_lapsed_deployment_ends_as_interrupted_with_its_counts_gap_record_and_audit(
    service: DeploymentService, store: RecordStore, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    monkeypatch.setattr(deployments, "FLUSH_INTERVAL_SECONDS", 0.0)
    plan(service)
    running = service.start("dep", "PC 1")
    stopped: list[bool] = []
    running.when_lease_lost(lambda: stopped.append(True))
    running.add_faces_scanned("north", 12)
    alert = running.raise_alert(event())
    assert Recovery(service).run().interrupted == ()  # alive: its heartbeat renews the lease
    lose_process(running, monkeypatch)
    assert Recovery(service).run().interrupted == ()  # not yet lapsed
    lapsed = wait_lapsed(store, "dep")

    report = Recovery(service, actor="Insp R").run()

    ((name, reason),) = report.interrupted
    assert name == "dep" and reason.startswith("interrupted: its process stopped renewing its lease")
    record = service.record("dep")
    assert record.status is DeploymentStatus.ended and record.interrupted
    assert (record.faces_scanned, record.alerts, record.gaps) == (12, 1, 2)
    with store.transaction() as session:
        row = session.scalars(select(Deployment)).one()
        gaps = session.scalars(select(DeploymentGap)).all()
        assert row.end_reason == reason and row.ended_at is not None
        assert [camera.sealed_source for camera in row.cameras] == [None, None]  # the camera password is destroyed
        assert session.scalars(select(DeploymentLease)).all() == []
    assert {gap.camera for gap in gaps} == {"north", "south"}
    assert all(gap.started_at == lapsed.last_seen and gap.ended_at == row.ended_at for gap in gaps)
    (ended,) = audit(store, "deployment.end")
    (destroyed,) = audit(store, "deployment.snapshot_destroy")
    assert (ended.actor, ended.reason, ended.details["interrupted"]) == ("Insp R", reason, True)
    assert destroyed.details == {"watchlist": "op", "templates": 2, "lost_with": lapsed.owner}
    stream = io.StringIO()
    assert service.export_csv(stream) == 1
    (published,) = csv.DictReader(io.StringIO(stream.getvalue()))
    assert (published["deployment"], published["interrupted"], published["alerts"]) == ("dep", "True", "1")

    # The lost process comes back (it had only hung): it may write nothing more, and stops.
    with pytest.raises(LeaseLostError):
        running.raise_alert(event(track=2, seed=3))
    running.heartbeat()
    assert stopped == [True] and running.lease_lost
    with pytest.raises(LeaseLostError):
        running.end("PC 1")
    assert service.record("dep").alerts == 1 and alert > 0
    assert Recovery(service).run() == type(report)()  # nothing left to recover


def test_of_processes_recovering_at_once_exactly_one_ends_the_deployment(
    service: DeploymentService, store: RecordStore, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    plan(service)
    running = service.start("dep", "PC 1")
    lose_process(running, monkeypatch)
    lapsed = wait_lapsed(store, "dep")
    results: list[object] = []
    barrier = threading.Barrier(4)

    def recover() -> None:
        with RecordStore.open(store.home) as other:  # each its own connections, as another process
            barrier.wait()
            results.append(interrupt(other, lapsed, actor="recovery", reason="interrupted: test"))

    threads = [threading.Thread(target=recover) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(result is not None for result in results) == 1
    assert len(audit(store, "deployment.end")) == 1 and len(audit(store, "deployment.snapshot_destroy")) == 1


def test_a_renewal_and_a_recovery_racing_never_both_win(
    service: DeploymentService, store: RecordStore, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    """The process was only slow: its next write comes just as another process recovers it.
    Either the write renews the lease first (and recovery finds nothing lapsed) or recovery ends
    it first (and the write is refused) — never both, whatever the order."""
    for attempt in range(4):
        name = f"dep{attempt}"
        plan(service, name)
        running = service.start(name, "PC 1")
        running._heartbeat.stop()
        owner_instance = leases._INSTANCE
        time.sleep(LEASE * 1.2)
        monkeypatch.setattr(leases, "_INSTANCE", f"recoverer-{attempt}")
        (lapsed,) = [item for item in lapsed_deployments(store) if item.name == name]
        outcome: dict[str, object] = {}
        barrier = threading.Barrier(2)

        def write() -> None:
            barrier.wait()
            try:
                outcome["alert"] = running.raise_alert(event(seed=attempt))
            except LeaseLostError:
                outcome["alert"] = None

        def recover() -> None:
            barrier.wait()
            outcome["record"] = interrupt(store, lapsed, actor="recovery", reason="interrupted: race")

        threads = [threading.Thread(target=write), threading.Thread(target=recover)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert (outcome["alert"] is None) != (outcome["record"] is None), outcome
        if outcome["record"] is None:
            running.end("PC 1")
        monkeypatch.setattr(leases, "_INSTANCE", owner_instance)


def test_the_server_that_ran_a_deployment_resumes_it_only_as_authorised(
    service: DeploymentService, store: RecordStore, gallery: Gallery, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    later = utc_now() + timedelta(hours=2)
    plan(service, "resumable", planned_end=later)
    plan(service, "window-over", planned_end=later)
    plan(service, "other-server")
    plan(service, "cli")
    first = {name: service.start(name, "PC 1", server="server-A") for name in ("resumable", "window-over")}
    first["other-server"] = service.start("other-server", "PC 1", server="server-B")
    first["cli"] = service.start("cli", "PC 1")  # openfrt live: no server
    for running in first.values():
        running.add_faces_scanned("north", 3)
        running._heartbeat.stop()
    with store.transaction() as session:  # the window closes while the server is down
        session.execute(update(Deployment).where(Deployment.name == "window-over").values(planned_end=utc_now()))
    monkeypatch.setattr(leases, "_INSTANCE", "restarted")
    time.sleep(LEASE * 1.2)
    resumed: dict[str, RunningDeployment] = {}

    def resume_here(lapsed: LapsedDeployment) -> None:
        resumed[lapsed.name] = resume(service, lapsed, actor="system:recovery", server="server-A")

    report = Recovery(service, server="server-A", resume=resume_here).run()

    assert report.resumed == ("resumable",)
    reasons = dict(report.interrupted)
    assert reasons.keys() == {"window-over", "other-server", "cli"}
    assert "planned window ended" in reasons["window-over"] and "another server" in reasons["other-server"]
    assert "openfrt live" in reasons["cli"]
    again = resumed["resumable"]
    assert sorted(again.matcher.subjects) == ["alpha", "bravo"] and again.threshold == first["resumable"].threshold
    (entry,) = audit(store, "deployment.resume")
    assert entry.target == "resumable" and entry.details["gap_seconds"] >= LEASE
    again.raise_alert(event())
    record = again.end("PC 1")
    assert not record.interrupted and record.gaps == 2 and record.alerts == 1
    with pytest.raises(LeaseLostError):
        first["resumable"].raise_alert(event(seed=4))

    # A watchlist changed while its deployment was down is not what was authorised: not resumed.
    plan(service, "changed", planned_end=later)
    running = service.start("changed", "PC 1", server="server-A")
    lose_process(running, monkeypatch)
    gallery.add_to_watchlist("op", ["charlie"], actor="PC 1")
    wait_lapsed(store, "changed")
    report = Recovery(service, server="server-A", resume=resume_here).run()
    assert report.resumed == () and "watchlist 'op' has changed" in dict(report.interrupted)["changed"]


def test_a_deployment_stranded_before_leases_existed_is_ended_from_its_last_alert(
    service: DeploymentService, store: RecordStore, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    """The issue's 'killme': a server killed before this version left a deployment running with
    no lease at all; recovery ends it, its gap starting at its latest alert."""
    plan(service)
    running = service.start("dep", "PC 1")
    last_alert = utc_now() - timedelta(minutes=5)
    running.raise_alert(event(when=last_alert))
    lose_process(running, monkeypatch)
    with store.transaction() as session:
        session.execute(delete(DeploymentLease))
        session.execute(update(Deployment).values(started_at=utc_now() - timedelta(hours=1)))

    ((name, reason),) = Recovery(service, server="server-A", resume=lambda lapsed: None).run().interrupted

    assert name == "dep" and "started before leases were kept" in reason
    record = service.record("dep")
    assert record.interrupted and record.alerts == 1 and record.gaps == 2
    with store.transaction() as session:
        assert {gap.started_at for gap in session.scalars(select(DeploymentGap))} == {last_alert}


def test_an_interrupted_deployment_destroys_its_bespoke_watchlist_and_publishes_its_anchor(
    service: DeploymentService, gallery: Gallery, store: RecordStore, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    """Ended by recovery, a deployment still ends as any other does (security findings 11, 12)."""
    gallery.create_watchlist("tonight", purpose="tonight's operation", authorised_by="Supt A", actor="Supt A")
    gallery.add_to_watchlist("tonight", ["alpha"], actor="Supt A")
    plan(service, "tonight-dep", watchlist="tonight")
    running = service.start("tonight-dep", "PC 1")
    lose_process(running, monkeypatch)
    wait_lapsed(store, "tonight-dep")

    ((name, _),) = Recovery(service, actor="Insp R").run().interrupted

    assert name == "tonight-dep"
    with pytest.raises(RecordNotFoundError):
        gallery.watchlist("tonight")
    (deleted,) = audit(store, "watchlist.delete")
    assert (deleted.actor, deleted.target, deleted.details["deployment"]) == ("Insp R", "tonight", "tonight-dep")
    record = service.record("tonight-dep")
    with store.transaction() as session:
        last = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).one()
        assert verify_chain(session).ok
    assert record.interrupted and record.audit_anchor == str(ChainAnchor.of(last)) and last.seq == deleted.seq
