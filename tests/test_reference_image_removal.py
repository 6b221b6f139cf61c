"""A subject's reference images: enrolment skips an image the subject already has (the same file,
or the same picture saved again) and keeps the rest of the batch; single reference images and
watchlist members can be removed, audited, without leaving a watchlist member it cannot search."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import delete, func, select

from openfrt.gallery import Gallery, ImageToEnrol, SubjectInfo
from openfrt.records import AuditEvent, Category, InvalidRecordError, RecordNotFoundError, RecordStore, ReferenceTemplate
from openfrt.vision import EngineConfig, FaceEngine

LFW = Path(__file__).resolve().parents[1].parent / "shared" / "faces" / "lfw"


def lfw(name: str, number: int) -> Path:
    path = LFW / name / f"{name}_{number:04d}.jpg"
    if not path.exists():
        pytest.skip(f"needs {path} (LFW in the shared test data beside the project), which is absent")
    return path


def resaved(path: Path, scale: float = 0.8, quality: int = 70) -> bytes:
    """``path`` saved again as another program might: resized and recompressed."""
    image = Image.open(path).convert("RGB")
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


@pytest.fixture(scope="module")
def engine(isolated_environment: None) -> FaceEngine:
    return FaceEngine(EngineConfig())


@pytest.fixture
def gallery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: FaceEngine) -> Iterator[Gallery]:
    monkeypatch.delenv("OPENFRT_DATABASE_URL", raising=False)
    monkeypatch.delenv("OPENFRT_KEY_FILE", raising=False)
    with RecordStore.open(tmp_path / "home") as store:
        yield Gallery(store, engine)


POWELL = SubjectInfo("CR-7", "Colin Powell", Category.wanted)


def enrol(gallery: Gallery, *sources: Path | bytes, watchlist: str | None = None):  # type: ignore[no-untyped-def]
    images = [ImageToEnrol(source, f"image {number}", legal_basis="PACE s.64A") for number, source in enumerate(sources)]
    return gallery.enrol(POWELL, images, actor="PC 1", watchlist=watchlist)


def count(gallery: Gallery, query) -> int:  # type: ignore[no-untyped-def]
    with gallery.store.transaction() as session:
        return int(session.scalar(query))


def audit_actions(gallery: Gallery) -> list[str]:
    with gallery.store.transaction() as session:
        return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def test_enrolling_the_same_files_again_stores_nothing_new(gallery: Gallery) -> None:
    first = enrol(gallery, lfw("Colin_Powell", 1), lfw("Colin_Powell", 2))
    stored = [image.reference_image_id for image in first.images]
    assert first.enrolled and None not in stored

    again = enrol(gallery, lfw("Colin_Powell", 1), lfw("Colin_Powell", 2))
    assert again.enrolled and not again.created
    assert [(i.reference_image_id, i.duplicate_of, i.match) for i in again.images] == [(None, n, "same_file") for n in stored]
    assert again.as_dict()["images"][0]["duplicate_of"] == {"reference_image": stored[0], "match": "same_file"}
    assert gallery.subject("CR-7").subject.reference_images == 2
    assert count(gallery, select(func.count()).select_from(ReferenceTemplate)) == 2
    assert audit_actions(gallery) == ["subject.enrol"]  # nothing changed, nothing to audit


def test_a_resaved_copy_is_skipped_and_the_rest_of_the_batch_kept(gallery: Gallery) -> None:
    (original,) = enrol(gallery, lfw("Colin_Powell", 1)).images
    new_photo = lfw("Colin_Powell", 3).read_bytes()
    report = enrol(gallery, resaved(lfw("Colin_Powell", 1)), new_photo, new_photo)
    copy, kept, twice = report.images
    assert report.enrolled
    assert (copy.reference_image_id, copy.duplicate_of, copy.match) == (None, original.reference_image_id, "same_picture")
    assert kept.reference_image_id is not None and kept.duplicate_of is None
    assert (twice.reference_image_id, twice.duplicate_of, twice.match) == (None, kept.reference_image_id, "same_file")
    assert [image.id for image in gallery.subject("CR-7").images] == [original.reference_image_id, kept.reference_image_id]
    with gallery.store.transaction() as session:
        event = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
        assert event is not None and event.action == "subject.enrol"
        assert event.details["reference_images"] == [kept.reference_image_id]
        assert event.details["skipped"] == [{"duplicate_of": original.reference_image_id, "match": "same_picture"},
                                            {"duplicate_of": kept.reference_image_id, "match": "same_file"}]


def test_another_photo_of_the_person_is_not_a_duplicate(gallery: Gallery) -> None:
    report = enrol(gallery, *(lfw("Colin_Powell", number) for number in range(1, 7)))
    assert report.enrolled and all(image.reference_image_id and image.duplicate_of is None for image in report.images)


def test_a_batch_with_a_refused_image_stores_nothing_even_beside_duplicates(gallery: Gallery, samples: Path) -> None:
    enrol(gallery, lfw("Colin_Powell", 1))
    report = enrol(gallery, lfw("Colin_Powell", 1), lfw("Colin_Powell", 2), samples / "two_people.jpg")
    assert not report.enrolled and report.images[2].reason == "several_faces"
    assert gallery.subject("CR-7").subject.reference_images == 1


def test_a_batch_of_duplicates_still_joins_the_watchlist(gallery: Gallery) -> None:
    enrol(gallery, lfw("Colin_Powell", 1))
    gallery.create_watchlist("op", purpose="p", authorised_by="Supt A", actor="Supt A")
    report = enrol(gallery, lfw("Colin_Powell", 1), watchlist="op")
    assert report.enrolled and report.images[0].duplicate_of is not None
    assert gallery.watchlist("op").subjects == ("CR-7",)
    assert audit_actions(gallery) == ["subject.enrol", "watchlist.create", "subject.enrol"]


def test_a_single_reference_image_is_removed_audited_and_searched_no_more(gallery: Gallery) -> None:
    gallery.create_watchlist("op", purpose="p", authorised_by="Supt A", actor="Supt A")
    first, second = (image.reference_image_id for image in enrol(gallery, lfw("Colin_Powell", 1), lfw("Colin_Powell", 2), watchlist="op").images)
    info = gallery.watchlist("op")
    probe = gallery.engine.largest_face_template(lfw("Colin_Powell", 1))[1]
    before = gallery.identify(probe, info).candidates[0].similarity

    removed = gallery.remove_reference_image(first, actor="Supt A", reason="wrong person in the photo")
    assert removed == {"subject": "CR-7", "reference_image": first, "templates": 1, "watchlists": ["op"]}
    assert [image.id for image in gallery.subject("CR-7").images] == [second]
    assert gallery.identify(probe, "op").candidates[0].similarity < before  # the watchlist no longer holds its template
    with gallery.store.transaction() as session:
        event = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
        assert event is not None and (event.action, event.actor, event.target, event.reason) == (
            "subject.image_remove", "Supt A", "CR-7", "wrong person in the photo")

    with pytest.raises(InvalidRecordError, match="only one of subject 'CR-7'; remove the subject instead"):
        gallery.remove_reference_image(second, actor="Supt A")
    with pytest.raises(RecordNotFoundError):
        gallery.remove_reference_image(first, actor="Supt A")


def test_the_last_image_a_watchlist_can_search_with_is_not_removed(gallery: Gallery) -> None:
    gallery.create_watchlist("op", purpose="p", authorised_by="Supt A", actor="Supt A")
    first, second = (image.reference_image_id for image in enrol(gallery, lfw("Colin_Powell", 1), lfw("Colin_Powell", 2), watchlist="op").images)
    with gallery.store.transaction() as session:  # as if the second had been enrolled with another model only
        session.execute(delete(ReferenceTemplate).where(ReferenceTemplate.reference_image_id == second))
    with pytest.raises(InvalidRecordError, match="on watchlist\\(s\\) 'op'.*take them off first"):
        gallery.remove_reference_image(first, actor="Supt A")
    assert len(gallery.subject("CR-7").images) == 2


def test_subjects_are_taken_off_a_watchlist_all_or_none_audited(gallery: Gallery) -> None:
    gallery.create_watchlist("op", purpose="p", authorised_by="Supt A", actor="Supt A")
    enrol(gallery, lfw("Colin_Powell", 1), watchlist="op")
    serena = SubjectInfo("CR-8", "Serena Williams", Category.missing)
    gallery.enrol(serena, [ImageToEnrol(lfw("Serena_Williams", 1), "s1")], actor="PC 1", watchlist="op")
    probe = gallery.engine.largest_face_template(lfw("Colin_Powell", 2))[1]
    assert gallery.identify(probe, "op").candidates[0].subject == "CR-7"

    with pytest.raises(RecordNotFoundError, match="'nobody' are not on watchlist 'op'; nothing was removed"):
        gallery.remove_from_watchlist("op", ["CR-7", "nobody"], actor="Supt A", reason="r")
    assert gallery.watchlist("op").subjects == ("CR-7", "CR-8")

    info = gallery.remove_from_watchlist("op", ["CR-7"], actor="Supt A", reason="arrested on 2 June")
    assert info.subjects == ("CR-8",)
    assert [c.subject for c in gallery.identify(probe, "op").candidates] == ["CR-8"]  # the cached matrix was dropped
    assert gallery.subject("CR-7").watchlists == ()  # still in the reference database
    with gallery.store.transaction() as session:
        event = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
        assert event is not None and (event.action, event.target, event.reason, event.details) == (
            "watchlist.remove", "op", "arrested on 2 June", {"removed": ["CR-7"]})
