"""The records store: schema from migrations, keys, encryption at rest, enrolment quality,
append-only audit, and deletion that leaves nothing — on SQLite and on PostgreSQL."""

from __future__ import annotations

import io
import logging
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from PIL import Image
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError

from openfrt.gallery import Gallery, ImageToEnrol, QualityPolicy, SubjectInfo
from openfrt.gallery.index import open_index
from openfrt.records import (
    AuditAction,
    AuditEvent,
    Category,
    Cipher,
    KeyFileError,
    RecordStore,
    ReferenceImage,
    ReferenceTemplate,
    record_event,
)
from openfrt.records.models import Base
from openfrt.vision import FaceEngine

#: Tables that legitimately outlive a deleted subject: the audit trail (ids, never biometrics),
#: the key check and Alembic's version.
KEPT_TABLES = {"audit_events", "store_meta", "alembic_version"}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database per test: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'records.db'}"
        return
    admin_url = os.environ.get("OPENFRT_TEST_POSTGRES_URL")
    if not admin_url:
        pytest.skip("PostgreSQL not configured: run .ci/postgres.sh and export OPENFRT_TEST_POSTGRES_URL")
    name = f"openfrt_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        _drop_test_database(admin, name)
        admin.dispose()


def _drop_test_database(admin: Engine, name: str) -> None:
    """Drop a test database that the code under test may still hold connections to.

    Not ``DROP DATABASE ... WITH (FORCE)``: that refuses when an autovacuum worker happens to be
    in the new database (the worker runs as no role, and the test role may only terminate its own
    sessions). So end this role's own sessions, waiting for each to exit, then drop plainly, which
    stops autovacuum workers by itself.
    """
    with admin.connect() as connection:
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                " WHERE datname = :name AND usename = current_user AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        )
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))


@pytest.fixture
def home(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPENFRT_DATABASE_URL", database_url)
    monkeypatch.delenv("OPENFRT_KEY_FILE", raising=False)
    return tmp_path / "home"


@pytest.fixture
def store(home: Path) -> Iterator[RecordStore]:
    with RecordStore.open(home) as opened:
        yield opened


@pytest.fixture
def sqlite_gallery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hog_engine: FaceEngine) -> Iterator[Gallery]:
    """For checks that do not depend on the database backend."""
    monkeypatch.delenv("OPENFRT_DATABASE_URL", raising=False)
    monkeypatch.delenv("OPENFRT_KEY_FILE", raising=False)
    with RecordStore.open(tmp_path / "home") as opened:
        yield Gallery(opened, hog_engine)


def jpeg(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def enrol_one(gallery: Gallery, subject: str, image: Path, **kwargs: object) -> int:
    report = gallery.enrol(
        SubjectInfo(subject, subject.title(), Category.wanted),
        [ImageToEnrol(image, image.name, legal_basis="PACE s.64A", source_ref="custody 01/234")],
        actor="PC 1", **kwargs,  # type: ignore[arg-type]
    )
    assert report.enrolled, report.as_dict()
    reference_image_id = report.images[0].reference_image_id
    assert reference_image_id is not None
    return reference_image_id


# -- schema, keys, audit ---------------------------------------------------------------------


def test_migrations_create_exactly_the_models_schema(store: RecordStore) -> None:
    with store.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_reopening_upgrades_idempotently(home: Path) -> None:
    RecordStore.open(home).close()
    with RecordStore.open(home) as again:
        assert "subjects" in inspect(again.engine).get_table_names()


def test_default_key_is_created_0600_with_a_warning(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="openfrt.records.crypto"):
        RecordStore.open(home).close()
    key = home / "secret.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "production" in caplog.text and str(key) in caplog.text
    caplog.clear()
    RecordStore.open(home).close()  # the second run uses the key quietly
    assert "created encryption key" not in caplog.text


def test_configured_key_file_must_exist_and_match(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENFRT_KEY_FILE", str(tmp_path / "absent.key"))
    with pytest.raises(KeyFileError, match="does not exist"):
        RecordStore.open(home)
    monkeypatch.delenv("OPENFRT_KEY_FILE")
    RecordStore.open(home).close()  # writes the key check with the default key
    other = tmp_path / "other.key"
    other.write_bytes(__import__("base64").urlsafe_b64encode(os.urandom(32)))
    other.chmod(0o600)
    monkeypatch.setenv("OPENFRT_KEY_FILE", str(other))
    with pytest.raises(KeyFileError, match="not the key"):
        RecordStore.open(home)


def test_cipher_round_trips_and_detects_tampering() -> None:
    cipher = Cipher(os.urandom(32))
    sealed = cipher.encrypt(b"reference image")
    assert b"reference image" not in sealed and cipher.decrypt(sealed) == b"reference image"
    with pytest.raises(KeyFileError):
        cipher.decrypt(sealed[:-1] + bytes([sealed[-1] ^ 1]))
    with pytest.raises(KeyFileError):
        Cipher(os.urandom(32)).decrypt(sealed)


def test_audit_log_is_append_only_in_the_database(store: RecordStore) -> None:
    with store.transaction() as session:
        record_event(session, AuditAction.subject_enrolled, actor="PC 1")
    for statement in ("UPDATE audit_events SET actor = 'someone else'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"):
            with store.engine.begin() as connection:
                connection.execute(text(statement))
    with store.transaction() as session:
        assert session.scalars(select(AuditEvent.actor)).all() == ["PC 1"]


# -- enrolment quality -----------------------------------------------------------------------


def refusal(gallery: Gallery, image: Path | bytes, **kwargs: object) -> str | None:
    report = gallery.enrol(SubjectInfo("S1", "S One", Category.suspect), [ImageToEnrol(image, "probe.jpg", **kwargs)], actor="PC 1")  # type: ignore[arg-type]
    return report.images[0].reason


def test_enrolment_refuses_unusable_images_with_a_reason(sqlite_gallery: Gallery, samples: Path) -> None:
    blurred = cv2.GaussianBlur(np.asarray(Image.open(samples / "obama_small.jpg").convert("RGB")), (21, 21), 0)
    assert refusal(sqlite_gallery, jpeg(np.full((200, 200, 3), 127, np.uint8))) == "no_face"
    assert refusal(sqlite_gallery, samples / "two_people.jpg") == "several_faces"
    assert refusal(sqlite_gallery, samples / "two_people.jpg", face=5) == "no_such_face"
    assert refusal(sqlite_gallery, jpeg(blurred)) == "too_blurred"
    assert refusal(sqlite_gallery, b"not an image") == "bad_image"
    sqlite_gallery.policy = QualityPolicy(min_face_height_px=150)
    assert refusal(sqlite_gallery, samples / "obama_small.jpg") == "face_too_small"
    with sqlite_gallery.store.transaction() as session:
        assert session.scalars(select(ReferenceImage)).all() == []


def test_caller_can_choose_among_several_faces(sqlite_gallery: Gallery, samples: Path) -> None:
    assert refusal(sqlite_gallery, samples / "two_people.jpg", face="largest") is None


def test_batch_is_all_or_nothing_and_reports_each_image(sqlite_gallery: Gallery, samples: Path) -> None:
    report = sqlite_gallery.enrol(
        SubjectInfo("S2", "S Two", Category.missing),
        [ImageToEnrol(samples / "obama_small.jpg", "good.jpg"), ImageToEnrol(samples / "two_people.jpg", "two.jpg")],
        actor="PC 1",
    )
    assert not report.enrolled
    assert [(image.image, image.reason) for image in report.images] == [("good.jpg", None), ("two.jpg", "several_faces")]
    with sqlite_gallery.store.transaction() as session:
        assert session.scalars(select(ReferenceImage)).all() == []


# -- encryption at rest and deletion ---------------------------------------------------------


def raw_database_bytes(store: RecordStore) -> bytes:
    """What an attacker with the database (file, or a dump of its biometric columns) would see."""
    if store.engine.dialect.name == "sqlite":  # the database and its write-ahead log
        database = Path(store.engine.url.database or "")
        return b"".join(path.read_bytes() for path in (database, database.with_name(database.name + "-wal")) if path.exists())
    with store.engine.connect() as connection:
        rows = connection.execute(text("SELECT image FROM reference_images UNION ALL SELECT vector FROM templates"))
        return b"".join(bytes(row[0]) for row in rows)


def test_images_and_templates_are_encrypted_at_rest(store: RecordStore, hog_engine: FaceEngine, samples: Path) -> None:
    gallery = Gallery(store, hog_engine)
    original = (samples / "obama_small.jpg").read_bytes()
    image_id = enrol_one(gallery, "obama", samples / "obama_small.jpg")
    _, template = hog_engine.largest_face_template(original)
    stored = raw_database_bytes(store)
    assert original[1000:1064] not in stored and original[-64:] not in stored
    assert template.vector.astype("<f4").tobytes()[:32] not in stored
    index_bytes = gallery.indexes.path(template.model_id).read_bytes()
    assert template.vector.astype("<f4").tobytes()[:32] not in index_bytes
    assert gallery.reference_image(image_id) == original  # decrypted in memory only


def test_deleting_a_subject_or_watchlist_leaves_nothing(store: RecordStore, hog_engine: FaceEngine, samples: Path) -> None:
    gallery = Gallery(store, hog_engine)
    gallery.create_watchlist("op-delete", purpose="test", authorised_by="Supt A", actor="PC 1")
    enrol_one(gallery, "keep", samples / "obama2.jpg")
    enrol_one(gallery, "gone", samples / "obama_small.jpg", watchlist="op-delete")
    _, probe = hog_engine.largest_face_template(samples / "obama_small.jpg")
    assert gallery.identify(probe, "op-delete").alert
    with store.transaction() as session:
        sealed = session.scalars(select(ReferenceImage.image).where(ReferenceImage.subject_id == "gone")).one()
        doomed_templates = set(session.scalars(select(ReferenceTemplate.id).join(ReferenceImage).where(ReferenceImage.subject_id == "gone")))

    gallery.remove_subject("gone", actor="PC 1", reason="no longer wanted")

    assert rows_mentioning(store, "gone") == []
    assert not doomed_templates & table_column(store, "templates", "id")
    assert gallery._matrices == {}  # no decrypted templates left in memory
    if store.engine.dialect.name == "sqlite":  # secure_delete: not even the ciphertext remains
        assert sealed[100:164] not in raw_database_bytes(store)
    index = open_index(gallery.indexes.path(probe.model_id), probe.vector.size, store.cipher)
    _, ids = index.search(probe.vector[None, :], len(index))
    assert len(index) == 1 and not doomed_templates & set(ids[0].tolist())
    assert [c.subject for c in gallery.search(probe, case_ref="C1", reason="check", actor="PC 1")] == ["keep"]

    gallery.delete_watchlist("op-delete", actor="PC 1", reason="deployment over")
    assert rows_mentioning(store, "op-delete") == []
    assert table_column(store, "watchlists", "id") == set() and table_column(store, "watchlist_members", "watchlist_id") == set()
    files = {path.relative_to(store.home).as_posix() for path in store.home.rglob("*") if path.is_file()}
    index_file = gallery.indexes.path(probe.model_id).relative_to(store.home).as_posix()
    expected = {"secret.key", index_file, index_file.replace(".index", ".manifest.json")}
    assert files - {"openfrt.db"} == expected
    with store.transaction() as session:
        actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions[-3:] == ["subject.remove", "search.retrospective", "watchlist.delete"]


def rows_mentioning(store: RecordStore, needle: str) -> list[tuple[str, tuple[object, ...]]]:
    """Every row of every data table with a column equal to ``needle``, scanning the live schema
    so that a table added later cannot be forgotten."""
    found = []
    with store.engine.connect() as connection:
        for table in set(inspect(connection).get_table_names()) - KEPT_TABLES:
            for row in connection.execute(text(f"SELECT * FROM {table}")):
                if needle in {str(value) for value in row}:
                    found.append((table, tuple(row)))
    return found


def table_column(store: RecordStore, table: str, column: str) -> set[object]:
    with store.engine.connect() as connection:
        return set(connection.execute(text(f"SELECT {column} FROM {table}")).scalars())
