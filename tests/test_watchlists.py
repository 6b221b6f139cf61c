"""Watchlists: identification with real faces, model separation, expiry, caching, fitness, and
the retrospective search's safeguards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import typer
from sqlalchemy import select, update
from typer.testing import CliRunner

from openfrt.cli import gallery_commands
from openfrt.errors import ModelMismatchError
from openfrt.gallery import Gallery, ImageToEnrol, SubjectInfo, TemplateMatrix
from openfrt.records import (
    AuditEvent,
    Category,
    InvalidRecordError,
    RecordStore,
    Watchlist,
    WatchlistExpiredError,
)
from openfrt.records.models import utc_now
from openfrt.vision import FaceEngine, Template

LFW = Path(__file__).resolve().parents[1].parent / "shared" / "faces" / "lfw"
#: Enrolled with their first two images; probed with a later one.
MEMBERS = ("Colin_Powell", "Serena_Williams", "Gerhard_Schroeder")
#: Not on the watchlist: probes from them must not alert.
STRANGER = "Jennifer_Capriati"


def lfw(name: str, number: int) -> Path:
    path = LFW / name / f"{name}_{number:04d}.jpg"
    if not path.exists():
        pytest.skip(f"needs {path} (LFW in the shared test data beside the project), which is absent")
    return path


@dataclass
class Setup:
    gallery: Gallery
    watchlist: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, hog_engine: FaceEngine) -> Iterator[Setup]:
    """One SQLite store with the members enrolled (two images each) into watchlist ``op``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("OPENFRT_DATABASE_URL", raising=False)
        patch.delenv("OPENFRT_KEY_FILE", raising=False)
        store = RecordStore.open(tmp_path_factory.mktemp("watchlists") / "home")
    gallery = Gallery(store, hog_engine)
    gallery.create_watchlist(
        "op", purpose="find missing people at the event", authorised_by="Supt A", actor="PC 1",
        criteria="missing, high risk", expires_at=utc_now() + timedelta(hours=8),
    )
    for name in MEMBERS:
        images = [ImageToEnrol(lfw(name, number), f"{name}_{number}") for number in (1, 2)]
        report = gallery.enrol(SubjectInfo(name, name.replace("_", " "), Category.missing), images, actor="PC 1", watchlist="op")
        assert report.enrolled, report.as_dict()
    yield Setup(gallery, "op")
    store.close()


def probe_of(gallery: Gallery, image: Path) -> Template:
    return gallery.engine.largest_face_template(image)[1]


def test_member_probe_alerts_with_its_subject_ranked_first(setup: Setup) -> None:
    result = setup.gallery.identify(probe_of(setup.gallery, lfw("Colin_Powell", 10)), setup.watchlist, top=5)
    assert result.alert
    assert [c.rank for c in result.candidates] == [1, 2, 3]
    assert result.candidates[0].subject == "Colin_Powell"
    assert result.candidates[0].similarity >= result.threshold > result.candidates[1].similarity
    assert all(0.0 <= c.similarity <= 1.0 for c in result.candidates)


def test_stranger_probe_does_not_alert(setup: Setup) -> None:
    result = setup.gallery.identify(probe_of(setup.gallery, lfw(STRANGER, 1)), setup.watchlist, top=2)
    assert not result.alert and len(result.candidates) == 2
    assert result.candidates[0].similarity < result.threshold


def test_subject_scores_as_the_mean_of_its_templates() -> None:
    rng = np.random.default_rng(7)
    a, b, c = (Template(rng.normal(size=16).astype(np.float32), "m", "1") for _ in range(3))
    matrix = TemplateMatrix("m@1", [("x", a), ("y", b), ("x", c)])
    ranked = matrix.rank(c, top=5)
    centre = (a.vector + c.vector) / np.linalg.norm(a.vector + c.vector)
    assert [(r.subject, r.rank) for r in ranked] == [("x", 1), ("y", 2)]
    assert ranked[0].similarity == pytest.approx((1 + float(centre @ c.vector)) / 2, abs=1e-6)
    assert ranked[1].similarity == pytest.approx((1 + float(b.vector @ c.vector)) / 2, abs=1e-6)
    assert matrix.max_references == 2


def test_matrix_is_cached_until_the_watchlist_changes(setup: Setup) -> None:
    info = setup.gallery.watchlist(setup.watchlist)
    first = setup.gallery._matrix(info)
    assert setup.gallery._matrix(info) is first
    with setup.gallery.store.transaction() as session:
        session.execute(update(Watchlist).where(Watchlist.id == info.id).values(revision=Watchlist.revision + 1))
    assert setup.gallery._matrix(info) is not first


def test_templates_of_another_model_are_never_mixed(setup: Setup) -> None:
    probe = probe_of(setup.gallery, lfw("Colin_Powell", 10))
    foreign = Template(probe.vector, "other-model", "v9")
    with pytest.raises(ModelMismatchError):
        setup.gallery.identify(foreign, setup.watchlist)
    with pytest.raises(ModelMismatchError):
        setup.gallery.search(foreign, case_ref="C1", reason="test", actor="PC 1")
    setup.gallery.create_watchlist("other-model-list", purpose="p", authorised_by="Supt A", actor="PC 1")
    with setup.gallery.store.transaction() as session:
        session.execute(update(Watchlist).where(Watchlist.name == "other-model-list").values(model_id="other-model@v9"))
    with pytest.raises(ModelMismatchError):  # enrolment into it, with this engine's model
        setup.gallery.enrol(SubjectInfo("x", "X", Category.other), [ImageToEnrol(lfw("Colin_Powell", 3), "x")], actor="PC 1", watchlist="other-model-list")
    with pytest.raises(ModelMismatchError):  # members need a template of the watchlist's model
        setup.gallery.add_to_watchlist("other-model-list", ["Colin_Powell"], actor="PC 1")


def test_expired_watchlist_cannot_be_searched_or_extended(setup: Setup) -> None:
    setup.gallery.create_watchlist("short", purpose="p", authorised_by="Supt A", actor="PC 1", expires_at=utc_now() + timedelta(minutes=5))
    setup.gallery.add_to_watchlist("short", ["Serena_Williams"], actor="PC 1")
    with setup.gallery.store.transaction() as session:
        session.execute(update(Watchlist).where(Watchlist.name == "short").values(expires_at=utc_now() - timedelta(seconds=1)))
    probe = probe_of(setup.gallery, lfw("Serena_Williams", 3))
    with pytest.raises(WatchlistExpiredError):
        setup.gallery.identify(probe, "short")
    with pytest.raises(WatchlistExpiredError):
        setup.gallery.add_to_watchlist("short", ["Colin_Powell"], actor="PC 1")
    with pytest.raises(InvalidRecordError, match="past"):
        setup.gallery.create_watchlist("late", purpose="p", authorised_by="A", actor="PC 1", expires_at=utc_now())


def test_watchlist_needs_an_authorising_officer_and_a_purpose(setup: Setup) -> None:
    for purpose, officer in (("p", " "), ("", "Supt A")):
        with pytest.raises(InvalidRecordError):
            setup.gallery.create_watchlist("invalid", purpose=purpose, authorised_by=officer, actor="PC 1")


def test_retrospective_search_needs_case_and_reason_and_is_audited(setup: Setup) -> None:
    probe = probe_of(setup.gallery, lfw("Gerhard_Schroeder", 3))
    for case_ref, reason in (("", "why"), ("C7", " ")):
        with pytest.raises(InvalidRecordError):
            setup.gallery.search(probe, case_ref=case_ref, reason=reason, actor="DC 9")
    candidates = setup.gallery.search(probe, case_ref="C7", reason="assault, CCTV still", actor="DC 9", top=2, image="still.jpg")
    assert [c.rank for c in candidates] == [1, 2] and candidates[0].subject == "Gerhard_Schroeder"
    with setup.gallery.store.transaction() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "search.retrospective")).all()[-1]
    assert (event.actor, event.case_ref, event.reason, event.target) == ("DC 9", "C7", "assault, CCTV still", "still.jpg")
    assert event.details["candidates"] == [c.subject for c in candidates]


def test_show_warns_when_expected_accuracy_misses_the_target(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    unfit = {"tpir": 0.4, "fpir": 0.01, "target_fpir": 1 / 6000, "meets_target": False, "message": "FPIR ABOVE target"}
    monkeypatch.setattr(Gallery, "fitness", staticmethod(lambda info: unfit))
    monkeypatch.setattr(gallery_commands, "open_gallery", lambda *args, **kwargs: nullcontext((setup.gallery, "PC 1")))
    app = typer.Typer()
    app.command()(gallery_commands.watchlist_show)
    result = CliRunner().invoke(app, [setup.watchlist, "--json"])
    assert result.exit_code == 0, result.output
    assert '"fitness":{"tpir":0.4' in result.stdout and "warning" in result.stderr and "FPIR ABOVE target" in result.stderr

