"""A watchlist made for a deployment is destroyed (audited) when the deployment ends, unless it
was created as a standing list with a recorded reason (security finding 11)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, text
from test_deployments import CAMERAS, SUBJECTS, make_gallery  # noqa: F401 - records-side helpers
from test_gallery_cli import env, openfrt  # noqa: F401 - the subprocess runner and its environment
from test_records import database_url, home, store  # noqa: F401 - the SQLite/PostgreSQL fixtures

from openfrt.gallery import Gallery
from openfrt.live.deployments import DeploymentService
from openfrt.records import AuditEvent, InvalidRecordError, RecordNotFoundError, RecordStore, Role
from openfrt.records.database import make_engine, upgrade
from openfrt.records.models import WatchlistMember
from openfrt.vision import FaceEngine


def bespoke(gallery: Gallery, name: str = "tonight") -> None:
    """Watchlist ``name``, made for one deployment (no standing reason), holding the enrolled subjects."""
    gallery.create_watchlist(name, purpose="tonight's operation", authorised_by="Supt A", actor="Supt A")
    gallery.add_to_watchlist(name, list(SUBJECTS[:2]), actor="Supt A")


def run(service: DeploymentService, name: str, watchlist: str) -> None:
    service.create(name, purpose="p", location="l", watchlist=watchlist, actor="PC 1", cameras=CAMERAS)
    service.authorise(name, actor="Supt A")
    service.start(name, "PC 1").end("Insp B")


def test_a_watchlist_made_for_a_deployment_is_destroyed_when_it_ends(store: RecordStore, hog_engine: FaceEngine) -> None:  # noqa: F811
    gallery = make_gallery(store, hog_engine)  # its list 'op' is a standing one
    service = DeploymentService(store, gallery)
    bespoke(gallery)
    gallery.fitness(gallery.watchlist("tonight"))  # the console's page caches its decrypted templates
    tonight = gallery.watchlist("tonight")
    assert tonight.standing_reason is None and tonight.id in gallery._matrices

    run(service, "dep", "tonight")

    with pytest.raises(RecordNotFoundError):
        gallery.watchlist("tonight")
    assert tonight.id not in gallery._matrices  # nothing of it stays in memory either
    with store.transaction() as session:
        assert session.scalars(select(WatchlistMember).where(WatchlistMember.watchlist_id == tonight.id)).all() == []
        (deleted,) = session.scalars(select(AuditEvent).where(AuditEvent.action == "watchlist.delete")).all()
        last = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).one()
    assert (deleted.actor, deleted.target, deleted.details["deployment"], deleted.details["subjects"]) == ("Insp B", "tonight", "dep", 2)
    assert "deployment dep ended" in (deleted.reason or "") and last.seq == deleted.seq
    assert service.record("dep").watchlist == "tonight"  # the record still says what was searched

    run(service, "regular", "op")  # a standing list outlives its deployments
    assert gallery.watchlist("op").standing_reason


def test_a_bespoke_watchlist_serves_one_deployment(store: RecordStore, hog_engine: FaceEngine) -> None:  # noqa: F811
    gallery = make_gallery(store, hog_engine)
    service = DeploymentService(store, gallery)
    bespoke(gallery)
    service.create("first", purpose="p", location="l", watchlist="tonight", actor="PC 1", cameras=CAMERAS)
    with pytest.raises(InvalidRecordError, match="made for deployment 'first'"):
        service.create("second", purpose="p", location="l", watchlist="tonight", actor="PC 1", cameras=CAMERAS)
    with pytest.raises(InvalidRecordError, match="reason"):
        gallery.create_watchlist("blank", purpose="p", authorised_by="Supt A", actor="Supt A", standing_reason=" ")


def test_a_gallery_in_another_process_drops_the_templates_of_a_destroyed_watchlist(store: RecordStore, hog_engine: FaceEngine) -> None:  # noqa: F811
    server = make_gallery(store, hog_engine)
    bespoke(server)
    server.fitness(server.watchlist("tonight"))
    tonight = server.watchlist("tonight").id
    run(DeploymentService(store, Gallery(store, hog_engine)), "dep", "tonight")  # e.g. `openfrt live`
    assert tonight in server._matrices
    server.fitness(server.watchlist("op"))  # the next use of the server's gallery
    assert tonight not in server._matrices


def test_the_command_line_creates_a_standing_list_only_with_a_reason(env: dict[str, str]) -> None:  # noqa: F811
    from cli_users import as_user

    officer = as_user(env, Role.authorising_officer)
    made = openfrt(officer, "watchlist", "create", "tonight", "--purpose", "p", "--json")
    standing = openfrt(officer, "watchlist", "create", "regulars", "--purpose", "p", "--standing", "monthly football fixtures", "--json")
    assert made.returncode == standing.returncode == 0, (made.stderr, standing.stderr)
    assert json.loads(made.stdout)["standing_reason"] is None
    assert json.loads(standing.stdout)["standing_reason"] == "monthly football fixtures"
    shown = openfrt(officer, "watchlist", "show", "tonight")
    assert "destroyed when its deployment ends" in shown.stdout


def test_watchlists_made_before_the_upgrade_stay_as_standing_lists(database_url: str) -> None:  # noqa: F811
    engine = make_engine(database_url)
    upgrade(engine, "0005")
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO watchlists (name, purpose, authorised_by, created_at, threshold, model_id, revision) "
            "VALUES ('older', 'p', 'Supt A', CURRENT_TIMESTAMP, 0.99, 'dlib-resnet@v1', 0)"))
    upgrade(engine)
    with engine.connect() as connection:
        reason = connection.execute(text("SELECT standing_reason FROM watchlists WHERE name = 'older'")).scalar_one()
    engine.dispose()
    assert reason and "before watchlists could belong to one deployment" in reason
