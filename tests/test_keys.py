"""Key rotation: every encrypted column and file ends up under a new key while another process
keeps reading and writing, an interrupted rotation resumes, and the old key opens nothing —
on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import select, update

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from openfrt import config
from openfrt.gallery import Gallery
from openfrt.gallery.reference_index import ReferenceIndexes
from openfrt.live.alerts import AlertService
from openfrt.live.deployments import DeploymentService
from openfrt.records import Cipher, KeyFileError, RecordStore, verify_chain
from openfrt.records import keys as key_rotation
from openfrt.records.crypto import FORMAT_VERSION, NONCE_BYTES, load_cipher, read_key_file
from openfrt.records.keys import ENCRYPTED_COLUMNS, rotate_keys
from openfrt.records.models import MediaKind, ReferenceImage
from openfrt.vision import FaceEngine
from test_deployments import CAMERAS, audit, event, make_gallery, plan
from test_gallery_cli import env, openfrt  # noqa: F401 - the subprocess runner and its environment
from test_records import database_url, home, store  # noqa: F401 - the SQLite/PostgreSQL fixtures


def sealed_values(store: RecordStore) -> dict[tuple[str, tuple[object, ...]], bytes]:  # noqa: F811
    """Every ciphertext in the database, by column and row."""
    found = {}
    with store.transaction() as session:
        for label, column, only in ENCRYPTED_COLUMNS:
            query = select(*column.table.primary_key.columns, column).where(column.is_not(None))
            for *identity, sealed in session.execute(query if only is None else query.where(only)):
                found[(label, tuple(identity))] = bytes(sealed)
    return found


def index_files(store: RecordStore) -> list[Path]:  # noqa: F811
    return sorted((store.home / "index").glob("*.index"))


def legacy_ciphertext(key: bytes, plaintext: bytes) -> bytes:
    """What openfrt wrote before ciphertexts named their key (format 1)."""
    nonce = os.urandom(NONCE_BYTES)
    return FORMAT_VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, FORMAT_VERSION)


@pytest.fixture
def populated(store: RecordStore, hog_engine: FaceEngine) -> RecordStore:  # noqa: F811
    """Reference images and templates (one image in the pre-rotation format), a search index
    file, alert images and a planned deployment's camera password: something in every column."""
    gallery = make_gallery(store, hog_engine)
    key = read_key_file(config.key_file(store.home))[0]
    with store.transaction() as session:
        session.execute(update(ReferenceImage).where(ReferenceImage.subject_id == "charlie")
                        .values(image=legacy_ciphertext(key, b"legacy jpeg")))
    ReferenceIndexes(store).index(gallery.model_id, 128)
    service = DeploymentService(store, gallery)
    plan(service)
    running = service.start("dep", "PC 1")
    for track in range(3):
        running.raise_alert(event(track=track, seed=track))
    running.end("PC 1")
    plan(service, "later", cameras=CAMERAS)
    return store


def test_rotation_reencrypts_everything_while_another_process_works_and_the_old_key_opens_nothing(
    populated: RecordStore, hog_engine: FaceEngine, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    source = populated
    monkeypatch.setattr(key_rotation, "BATCH", 2)  # many small transactions, interleaved with the other process
    old_key = read_key_file(config.key_file(source.home))[0]
    before = {place: source.cipher.decrypt(sealed) for place, sealed in sealed_values(source).items()}
    assert {label for label, _ in before} == {label for label, _, _ in ENCRYPTED_COLUMNS} and index_files(source)

    # The server: its own store and cipher on the same files, reading and writing throughout.
    server = RecordStore.open(source.home)
    service = DeploymentService(server, make_gallery_view(server, hog_engine))
    plan(service, "during")
    running = service.start("during", "PC 1")
    alerts = AlertService(server)
    failures: list[BaseException] = []
    rotating = threading.Event()
    rotating.set()
    served = []

    def serve() -> None:
        try:
            while rotating.is_set():
                alert = running.raise_alert(event(track=100 + len(served), seed=len(served)))
                served.append(alert)
                for listed in alerts.list():
                    if listed.media:
                        alerts.media(listed.id, MediaKind.probe_crop, actor="PC 2", reason="review")
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    worker = threading.Thread(target=serve)
    worker.start()
    try:
        report = rotate_keys(source, actor="Admin A", settle_seconds=0.5)
    finally:
        rotating.clear()
        worker.join(60)
    assert failures == [] and len(served) >= 1

    new_keys = read_key_file(config.key_file(source.home))
    assert len(new_keys) == 1 and new_keys[0] != old_key and report.key_id == source.cipher.key_id
    assert report.rows["reference images"] == 3 and report.rows["camera credentials"] == 2 and report.index_files == 1
    after = sealed_values(source)
    assert all(source.cipher.is_current(sealed) for sealed in after.values())
    assert {place: source.cipher.decrypt(after[place]) for place in before} == before
    old = Cipher(old_key)
    for sealed in after.values():
        with pytest.raises(KeyFileError):
            old.decrypt(sealed)
    assert index_files(source) == []  # rebuilt from the database under the new key on next use
    ReferenceIndexes(source).index(make_gallery_view(source, hog_engine).model_id, 128)
    (rebuilt,) = index_files(source)
    with pytest.raises(KeyFileError):
        old.decrypt(rebuilt.read_bytes())

    # The server noticed the new key by itself: it reads everything and writes under the new key.
    assert all(alerts.media(alert, MediaKind.frame, actor="PC 2") for alert in served)
    running.raise_alert(event(track=999, seed=9))
    assert all(server.cipher.is_current(sealed) for sealed in sealed_values(server).values())
    running.end("PC 1")
    server.close()
    started, done = audit(source, "keys.rotate_start"), audit(source, "keys.rotate")
    assert [e.details["key_id"] for e in started + done] == [report.key_id] * 2 and done[0].actor == "Admin A"
    assert started[0].details["retiring"] == list(report.retired) and str(old_key) not in json.dumps(done[0].details)
    with source.transaction() as session:
        assert verify_chain(session).ok


def make_gallery_view(store: RecordStore, engine: FaceEngine) -> Gallery:  # noqa: F811
    """The gallery of an already populated store (make_gallery would enrol again)."""
    return Gallery(store, engine)


def test_an_interrupted_rotation_leaves_everything_readable_and_resumes_with_the_same_new_key(
    populated: RecordStore, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    source = populated
    monkeypatch.setattr(key_rotation, "BATCH", 1)
    old_key = read_key_file(config.key_file(source.home))[0]
    before = {place: source.cipher.decrypt(sealed) for place, sealed in sealed_values(source).items()}
    calls = []

    def crash_after_a_few(label: str, done: int, total: int) -> None:
        calls.append(label)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C, or the machine going down

    with pytest.raises(KeyboardInterrupt):
        rotate_keys(source, actor="Admin A", progress=crash_after_a_few, settle_seconds=0)
    halfway = read_key_file(config.key_file(source.home))
    assert len(halfway) == 2 and halfway[1] == old_key
    mixed = sealed_values(source)
    assert 0 < sum(source.cipher.is_current(sealed) for sealed in mixed.values()) < len(mixed)
    with RecordStore.open(source.home) as reopened:  # a process starting now reads both
        assert {place: reopened.cipher.decrypt(sealed) for place, sealed in mixed.items()} == before

    report = rotate_keys(source, actor="Admin A", settle_seconds=0)

    assert report.resumed and report.key_id == Cipher(halfway[0]).key_id
    assert read_key_file(config.key_file(source.home)) == halfway[:1]
    assert all(source.cipher.is_current(sealed) for sealed in sealed_values(source).values())
    assert [e.details["resumed"] for e in audit(source, "keys.rotate")] == [True]


def test_keys_rotate_command(env: dict[str, str], hog_engine: FaceEngine, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.delenv("OPENFRT_DATABASE_URL", raising=False)
    monkeypatch.delenv("OPENFRT_KEY_FILE", raising=False)
    with RecordStore.open(env["OPENFRT_HOME"]) as opened:
        make_gallery(opened, hog_engine)
        old_key = read_key_file(config.key_file(opened.home))[0]
    rotated = openfrt(env, "keys", "rotate", "--settle", "0", "--json")
    assert rotated.returncode == 0, rotated.stderr
    report = json.loads(rotated.stdout)
    assert report["rows"]["templates"] == 3 and report["retired"] == [Cipher(old_key).key_id]
    with RecordStore.open(env["OPENFRT_HOME"]) as reopened:
        assert all(reopened.cipher.is_current(sealed) for sealed in sealed_values(reopened).values())


def test_a_key_file_briefly_unreadable_does_not_stop_encryption(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    cipher = load_cipher(path, create=True)
    sealed = cipher.encrypt(b"alert image")
    path.rename(tmp_path / "away.key")  # the key's volume is remounting
    assert cipher.decrypt(cipher.encrypt(b"alert image")) == cipher.decrypt(sealed) == b"alert image"
