"""What the records accept, whichever way it arrives (API, console or CLI): names that can be
typed, shown and reached again; free text of bounded length that any database stores and any
reader sees as it is; published CSV that a spreadsheet cannot run; verdicts that make sense."""

from __future__ import annotations

import csv
import io

import pytest

from openfrt.gallery import Gallery, ImageToEnrol, SubjectInfo
from openfrt.live.alerts import AlertService
from openfrt.live.deployments import DeploymentService
from openfrt.records import Category, InvalidRecordError, RecordStore
from openfrt.records.models import AlertOutcome, AlertStatus
from test_deployments import camera_networks, event, gallery, plan, service  # noqa: F401 - fixtures and helpers
from test_records import database_url, home, store  # noqa: F401 - the SQLite/PostgreSQL fixtures

UNREACHABLE = ("night/ops", "dep/1", ".", "..", "back\\slash")
INVISIBLE = (
    "ab\u202ecd",  # right-to-left override: shows as "abdc"
    "ab\u2066cd",  # left-to-right isolate
    "ab\u200bcd",  # zero-width space
    "ab\u200dcd",  # zero-width joiner
    "\ufeffabcd",  # byte-order mark
    "ab\u00a0cd",  # no-break space, which looks like a space
    "ab\x7fcd",  # delete
    "ab\x85cd",  # next line (C1 control)
    "ab\u2028cd",  # line separator
    "e\u0301",  # é decomposed: looks the same as, but is not, the composed "é"
)
FIVE_MB = "x" * (5 * 1024 * 1024)


def test_names_that_a_url_cannot_reach_are_refused(service: DeploymentService, gallery: Gallery) -> None:  # noqa: F811
    for name in UNREACHABLE:
        with pytest.raises(InvalidRecordError, match="name"):
            gallery.create_watchlist(name, purpose="p", authorised_by="Supt A", actor="PC 1")
        with pytest.raises(InvalidRecordError, match="name"):
            plan(service, name)
        with pytest.raises(InvalidRecordError, match="camera name"):
            plan(service, "ok", cameras={name: "/dev/video0"})
    for subject_id in ("a//b", "/a", "a/", "a/../b", "a/./b", ".", ".."):
        with pytest.raises(InvalidRecordError, match="subject id"):
            gallery.enrol(SubjectInfo(subject_id, "X", Category.wanted), [ImageToEnrol(b"x", "x.jpg")], actor="PC 1")
    gallery.create_watchlist("José's list", purpose="p", authorised_by="Supt A", actor="PC 1")  # accents are fine


def test_identifiers_with_invisible_or_direction_characters_are_refused(service: DeploymentService, gallery: Gallery) -> None:  # noqa: F811
    for name in INVISIBLE:
        with pytest.raises(InvalidRecordError):
            gallery.enrol(SubjectInfo(name, "X", Category.wanted), [ImageToEnrol(b"x", "x.jpg")], actor="PC 1")
        with pytest.raises(InvalidRecordError):
            gallery.create_watchlist(name, purpose="p", authorised_by="Supt A", actor="PC 1")
        with pytest.raises(InvalidRecordError):
            plan(service, name)
    assert [subject.id for subject in gallery.subjects()] == ["alpha", "bravo", "charlie"]


def test_free_text_is_bounded_and_refused_whole_without_being_repeated(service: DeploymentService, gallery: Gallery) -> None:  # noqa: F811
    refusals = []
    for attempt in (
        lambda: plan(service, "long-purpose", purpose=FIVE_MB),
        lambda: plan(service, "long-place", location=FIVE_MB),
        lambda: gallery.create_watchlist("long", purpose=FIVE_MB, authorised_by="Supt A", actor="PC 1"),
        lambda: gallery.create_watchlist("long", purpose="p", criteria=FIVE_MB, authorised_by="Supt A", actor="PC 1"),
        lambda: gallery.enrol(SubjectInfo("s1", FIVE_MB, Category.wanted), [ImageToEnrol(b"x", "x.jpg")], actor="PC 1"),
        lambda: gallery.enrol(SubjectInfo("s1", "X", Category.wanted, notes=FIVE_MB), [ImageToEnrol(b"x", "x.jpg")], actor="PC 1"),
        lambda: gallery.enrol(SubjectInfo("s1", "X", Category.wanted), [ImageToEnrol(b"x", "x.jpg", legal_basis=FIVE_MB)], actor="PC 1"),
        lambda: gallery.remove_subject("alpha", actor="PC 1", reason=FIVE_MB),
        lambda: gallery.delete_watchlist("op", actor="PC 1", reason=FIVE_MB),
    ):
        with pytest.raises(InvalidRecordError) as refused:
            attempt()
        refusals.append(str(refused.value))
    assert all(len(message) < 500 for message in refusals), refusals
    assert service.list() == [] and [w.name for w in gallery.watchlists()] == ["op"]


def test_free_text_that_a_database_cannot_store_or_that_hides_its_direction_is_refused(service: DeploymentService) -> None:  # noqa: F811
    for text in ("nul\x00byte", "bell\x07", "over\u202eride"):
        with pytest.raises(InvalidRecordError, match="purpose"):
            plan(service, "odd", purpose=text)
    plan(service, "fine", purpose="Line one\nline two\twith a tab — and an accent: café")


def test_alert_text_is_bounded(service: DeploymentService, store: RecordStore) -> None:  # noqa: F811
    plan(service)
    running = service.start("dep", "PC 1")
    alert = running.raise_alert(event())
    alerts = AlertService(store)
    with pytest.raises(InvalidRecordError):
        alerts.adjudicate(alert, status=AlertStatus.false_alert, outcome=AlertOutcome.no_action, by="PC 2", note=FIVE_MB)
    with pytest.raises(InvalidRecordError):
        alerts.hold(alert, reason=FIVE_MB, by="Insp B")
    running.end("PC 1")


def test_the_published_csv_cannot_carry_a_spreadsheet_formula(service: DeploymentService) -> None:  # noqa: F811
    formulas = {"=HYPERLINK(\"http://evil.example\",\"report\")", "+1+1", "-2+3", "@SUM(A1)", "\tindented", "\rreturn"}
    for number, text in enumerate(sorted(formulas)):
        plan(service, f"dep-{number}", purpose=text, location=text)
        service.start(f"dep-{number}", "PC 1").end("PC 1")
    stream = io.StringIO()
    service.export_csv(stream)
    rows = list(csv.DictReader(io.StringIO(stream.getvalue())))
    assert len(rows) == len(formulas)
    for row in rows:
        for column in ("purpose", "location"):
            assert row[column][0] == "'" and row[column][1:] in formulas, row[column]
    assert rows[0]["faces_scanned"] == "0"  # numbers stay numbers


def test_a_false_alert_or_no_further_action_cannot_end_in_an_arrest(service: DeploymentService, store: RecordStore) -> None:  # noqa: F811
    plan(service)
    running = service.start("dep", "PC 1")
    first, second = running.raise_alert(event(seed=1)), running.raise_alert(event(track=2, seed=2))
    alerts = AlertService(store)
    for status in (AlertStatus.false_alert, AlertStatus.no_further_action):
        with pytest.raises(InvalidRecordError, match="arrest"):
            alerts.adjudicate(first, status=status, outcome=AlertOutcome.arrested, by="PC 2")
    alerts.adjudicate(first, status=AlertStatus.false_alert, outcome=AlertOutcome.engaged, by="PC 2")  # spoke to them: fine
    with pytest.raises(InvalidRecordError, match="arrest"):  # nor by correcting the outcome alone
        alerts.adjudicate(first, correcting=AlertStatus.false_alert, outcome=AlertOutcome.arrested, by="PC 2",
                          reason="arrested after all")
    alerts.adjudicate(second, status=AlertStatus.confirmed_match, outcome=AlertOutcome.arrested, by="PC 2")
    record = running.end("PC 1")
    assert (record.arrests, record.false_alerts) == (1, 1)
