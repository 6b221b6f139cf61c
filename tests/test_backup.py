"""Backups and restores: a backup taken while a deployment writes alerts restores into an empty
data directory with everything in it and a verifying audit chain; it opens only with its key or
passphrase and refuses tampering; deleted data does not come back from a later backup, and an
older one loses its expired alert images again at restore — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from openfrt import config
from openfrt.gallery import Gallery
from openfrt.gallery.reference_index import ReferenceIndexes
from openfrt.live.alerts import AlertService
from openfrt.live.deployments import DeploymentService
from openfrt.live.recovery import settle_restored
from openfrt.records import ChainAnchor, RecordStore, list_events, verify_chain
from openfrt.records import backup
from openfrt.records.backup import BackupError, create_backup, read_header, restore_backup
from openfrt.records.crypto import read_key_file
from openfrt.records.models import Alert, AuditEvent, MediaKind, ReferenceImage, Subject, utc_now
from openfrt.records.users import Role, UserService
from openfrt.vision import FaceEngine
from test_deployments import audit, event, make_gallery, plan
from test_records import _drop_test_database, database_url, home, raw_database_bytes, store  # noqa: F401 - fixtures

PASSPHRASE = "correct horse battery staple"


@pytest.fixture(autouse=True)
def quick_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cheaper passphrase hash than the product's (2**17), to keep the tests quick; the cost
    travels in each backup's header, so restoring follows it."""
    monkeypatch.setattr(backup, "SCRYPT_N", 2**14)


@pytest.fixture
def target(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:  # noqa: F811
    """An empty data directory and an empty database of the same kind to restore into; the
    environment is pointed at them by :func:`restoring_into`."""
    if database_url.startswith("sqlite"):
        yield tmp_path / "restored", f"sqlite:///{tmp_path / 'restored' / 'openfrt.db'}"
        return
    admin_url = os.environ["OPENFRT_TEST_POSTGRES_URL"]
    name = f"openfrt_restore_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield tmp_path / "restored", make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        _drop_test_database(admin, name)
        admin.dispose()


def restoring_into(target: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> Path:
    restored_home, url = target
    monkeypatch.setenv("OPENFRT_DATABASE_URL", url)
    monkeypatch.delenv("OPENFRT_KEY_FILE", raising=False)
    return restored_home


def settle(actor: str = "Admin R"):  # noqa: ANN201 - what `openfrt restore` does after restoring
    return lambda restored: settle_restored(restored, actor=actor)


def test_a_backup_of_a_running_system_restores_everything_with_a_verifying_chain(
    store: RecordStore, target: tuple[Path, str], hog_engine: FaceEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    gallery = make_gallery(store, hog_engine)
    ReferenceIndexes(store).index(gallery.model_id, 128)
    UserService(store).create("officer-1", Role.authorising_officer, PASSPHRASE, actor="installer")
    service = DeploymentService(store, gallery)
    plan(service, "done")
    done = service.start("done", "PC 1")
    done.add_faces_scanned("north", 4)
    done.raise_alert(event(when=utc_now(), seed=1))
    done.end("Insp B")
    plan(service, "running")
    running = service.start("running", "PC 1")
    writing, written = threading.Event(), []
    writing.set()

    def camera() -> None:  # the deployment keeps raising alerts while the backup is taken
        while writing.is_set():
            written.append(running.raise_alert(event(track=len(written), when=utc_now(), seed=len(written))))

    writer = threading.Thread(target=camera)
    writer.start()
    try:
        report = create_backup(store, tmp_path / "system.ofb", actor="Admin A", passphrase=PASSPHRASE)
    finally:
        writing.clear()
        writer.join(60)
    assert written and report.with_key and report.counts["alerts"] >= 1
    assert os.stat(report.path).st_mode & 0o777 == 0o600
    header = read_header(report.path)
    assert header["key"]["kdf"] == "scrypt" and header["database"] == store.engine.dialect.name
    source_key = read_key_file(config.key_file(store.home))
    raw = report.path.read_bytes()
    assert b"officer-1" not in raw and b"Stadium Way" not in raw and source_key[0] not in raw  # all encrypted

    restored_home = restoring_into(target, monkeypatch)
    (restored_home.parent / "other").mkdir()
    (restored_home.parent / "other" / "something").write_text("x")
    with pytest.raises(BackupError, match="not empty"):
        restore_backup(report.path, restored_home.parent / "other", actor="Admin R", passphrase=PASSPHRASE)
    with pytest.raises(BackupError, match="wrong passphrase"):
        restore_backup(report.path, restored_home, actor="Admin R", passphrase="not the passphrase at all")
    assert not restored_home.exists() or not any(restored_home.iterdir())

    restored = restore_backup(report.path, restored_home, actor="Admin R", passphrase=PASSPHRASE, settle=settle())

    assert restored.counts == report.counts and restored.settled == {"interrupted": ["running"], "expired_images_deleted": 0}
    assert read_key_file(config.key_file(restored_home)) == source_key
    with RecordStore.open(restored_home) as copy:
        with copy.transaction() as session:
            assert verify_chain(session).ok
            restored_chain = {row.seq: row.entry_hash for row in session.execute(select(AuditEvent.seq, AuditEvent.entry_hash))}
            images = {row.id: copy.cipher.decrypt(row.image) for row in session.scalars(select(ReferenceImage))}
            alert_ids = session.scalars(select(Alert.id)).all()
        with store.transaction() as session:  # the source's log continued after the backup; the copy is its beginning
            source_chain = {row.seq: row.entry_hash for row in session.execute(
                select(AuditEvent.seq, AuditEvent.entry_hash).where(AuditEvent.seq <= report.audit_seq))}
            source_images = {row.id: store.cipher.decrypt(row.image) for row in session.scalars(select(ReferenceImage))}
        assert {seq: digest for seq, digest in restored_chain.items() if seq <= report.audit_seq} == source_chain
        assert images == source_images and len(images) == 3
        copy_alerts, source_alerts = AlertService(copy), AlertService(store)
        for alert in alert_ids:
            assert copy_alerts.media(alert, MediaKind.frame, actor="PC 9") == source_alerts.media(alert, MediaKind.frame, actor="PC 9")
        copies = DeploymentService(copy)
        assert copies.record("done") == service.record("done")
        assert copies.record("running").interrupted and "backup" in (copies.get("running").end_reason or "")
        assert [e.action for e in audit(copy, "backup.create")] == ["backup.create"]
        (restore_entry,) = audit(copy, "backup.restore")
        assert restore_entry.actor == "Admin R" and restore_entry.details["counts"] == report.counts
        assert UserService(copy).authenticate("officer-1", PASSPHRASE).role is Role.authorising_officer
        assert sorted(Gallery(copy, hog_engine).watchlist_snapshot("op")[1].subjects) == ["alpha", "bravo"]
    running.end("PC 1")

    tampered = tmp_path / "tampered.ofb"
    middle = len(raw) // 2
    tampered.write_bytes(raw[:middle] + bytes([raw[middle] ^ 1]) + raw[middle + 1 :])
    with pytest.raises(BackupError, match="damaged or was altered"):
        restore_backup(tampered, tmp_path / "again", actor="Admin R", passphrase=PASSPHRASE)
    assert not (tmp_path / "again").exists() or not any((tmp_path / "again").iterdir())


def test_a_backup_without_its_key_needs_the_key_file_of_its_store(
    store: RecordStore, target: tuple[Path, str], hog_engine: FaceEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    make_gallery(store, hog_engine)
    source_key_file = config.key_file(store.home)
    report = create_backup(store, tmp_path / "keyless.ofb", actor="Admin A")
    assert not report.with_key and read_header(report.path)["key"] is None
    with pytest.raises(BackupError, match="already exists"):
        create_backup(store, report.path, actor="Admin A")
    restored_home = restoring_into(target, monkeypatch)
    with pytest.raises(BackupError, match="does not carry its key"):
        restore_backup(report.path, restored_home, actor="Admin R")
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(b"jZ5aQlVnq0o1Sxw8dGm5iBv3ruZ5w3Ao7n7C5sYbQ7A=\n")
    wrong.chmod(0o600)
    monkeypatch.setenv("OPENFRT_KEY_FILE", str(wrong))
    with pytest.raises(BackupError, match="was taken under key"):
        restore_backup(report.path, restored_home, actor="Admin R")
    monkeypatch.setenv("OPENFRT_KEY_FILE", str(source_key_file))
    restored = restore_backup(report.path, restored_home, actor="Admin R", settle=settle())
    assert restored.counts["templates"] == 3 and not (restored_home / "secret.key").exists()  # the key stays where it is kept


def test_deleted_data_stays_deleted_in_later_backups_and_an_older_backup_loses_expired_images_again(
    store: RecordStore, target: tuple[Path, str], hog_engine: FaceEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    gallery = make_gallery(store, hog_engine)
    with store.transaction() as session:
        deleted_ciphertext = session.scalars(select(ReferenceImage.image).where(ReferenceImage.subject_id == "charlie")).one()
    service = DeploymentService(store, gallery)
    plan(service)
    running = service.start("dep", "PC 1")
    old_alert = running.raise_alert(event(when=utc_now() - timedelta(days=40), seed=1))
    running.raise_alert(event(track=2, when=utc_now(), seed=2))
    running.end("PC 1")
    older = create_backup(store, tmp_path / "older.ofb", actor="Admin A", passphrase=PASSPHRASE)
    gallery.remove_subject("charlie", actor="PC 1", reason="no longer wanted")
    with store.transaction() as session:
        anchor = verify_chain(session).anchor
    assert anchor is not None
    later = create_backup(store, tmp_path / "later.ofb", actor="Admin A", passphrase=PASSPHRASE)

    restored_home = restoring_into(target, monkeypatch)
    restore_backup(later.path, restored_home, actor="Admin R", passphrase=PASSPHRASE, anchor=anchor, settle=settle())
    with RecordStore.open(restored_home) as copy:
        with copy.transaction() as session:
            assert session.scalars(select(Subject.id).order_by(Subject.id)).all() == ["alpha", "bravo"]
        if copy.engine.dialect.name == "sqlite":  # not even the ciphertext is in the file
            assert deleted_ciphertext[20:84] not in raw_database_bytes(copy)
        assert [media for media in (a.media for a in AlertService(copy).list())] == [(), (MediaKind.frame, MediaKind.probe_crop)]

    for entry in restored_home.iterdir():  # an empty data directory again, for the older backup
        entry.unlink() if entry.is_file() else shutil.rmtree(entry)
    _empty_database(target[1])
    with pytest.raises(BackupError, match="predates later changes"):
        restore_backup(older.path, restored_home, actor="Admin R", passphrase=PASSPHRASE, anchor=anchor)
    restored = restore_backup(older.path, restored_home, actor="Admin R", passphrase=PASSPHRASE, settle=settle())
    assert restored.settled["expired_images_deleted"] == 2  # the 40-day-old alert's images go again at once
    with RecordStore.open(restored_home) as copy:
        with copy.transaction() as session:
            assert "charlie" in session.scalars(select(Subject.id)).all()  # as the README says: an older backup brings it back
        assert AlertService(copy).get(old_alert).media == ()
        assert [e.details["alert"] for e in audit(copy, "retention.delete")] == [old_alert, old_alert]


def _empty_database(url: str) -> None:
    if url.startswith("sqlite"):
        return
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """An ``openfrt`` command. Backup and restore are local administration: they need the data
    directory and key, not a user's token, and are audited as ``local:<os user>``."""
    return subprocess.run([sys.executable, "-m", "openfrt", *args], env=env, input=stdin, capture_output=True, text=True, timeout=300)


def test_backup_and_restore_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hog_engine: FaceEngine) -> None:
    monkeypatch.delenv("OPENFRT_DATABASE_URL", raising=False)
    monkeypatch.delenv("OPENFRT_KEY_FILE", raising=False)
    source, copy = tmp_path / "source", tmp_path / "copy"
    with RecordStore.open(source) as opened:
        make_gallery(opened, hog_engine)
    env = {key: value for key, value in os.environ.items() if key not in ("OPENFRT_DATABASE_URL", "OPENFRT_KEY_FILE")}
    backed_up = cli({**env, "OPENFRT_HOME": str(source)},
                    "backup", str(tmp_path / "b.ofb"), "--with-key", "--passphrase-stdin", "--json", stdin=PASSPHRASE + "\n")
    assert backed_up.returncode == 0, backed_up.stderr
    assert json.loads(backed_up.stdout)["counts"]["templates"] == 3
    assert read_header(tmp_path / "b.ofb")["key"]["n"] == 2**17  # the product's passphrase cost
    restored = cli({**env, "OPENFRT_HOME": str(copy)},
                   "restore", str(tmp_path / "b.ofb"), "--passphrase-stdin", "--json", stdin=PASSPHRASE + "\n")
    assert restored.returncode == 0, restored.stderr
    report = json.loads(restored.stdout)
    assert report["counts"]["templates"] == 3 and report["anchor"] and "openfrt.db" in report["files"]
    again = cli({**env, "OPENFRT_HOME": str(copy)}, "restore", str(tmp_path / "b.ofb"), "--passphrase-stdin", "--json",
                stdin=PASSPHRASE + "\n")
    assert again.returncode == 1 and "not empty" in json.loads(again.stdout)["error"]
    with RecordStore.open(copy) as restored_store, restored_store.transaction() as session:
        assert verify_chain(session, [ChainAnchor.parse(report["anchor"])]).ok
        entries = {entry.action: entry for entry in list_events(session, limit=1000) if entry.action in ("backup.create", "backup.restore")}
        assert set(entries) == {"backup.create", "backup.restore"}
        assert all(entry.actor.startswith("local:") and entry.credential == "local" for entry in entries.values())
