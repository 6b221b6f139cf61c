"""The reference index's change journal: replay, torn appends, tampering, compaction, two processes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete

from openfrt.gallery import sealed
from openfrt.gallery.index import TemplateIndex
from openfrt.gallery.reference_index import IdDigest, ReferenceIndexes
from openfrt.records import RecordStore
from openfrt.records.models import ReferenceImage, ReferenceTemplate, Subject
from openfrt.records.vocabulary import Category

MODEL = "synthetic@1"
DIM = 16


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RecordStore]:
    with RecordStore.open(tmp_path / "records") as opened:
        yield opened


def enrol(store: RecordStore, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Commit ``n`` templates (one subject each) straight to the database: (ids, vectors)."""
    vectors = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with store.transaction() as session:
        templates = []
        for number, vector in enumerate(vectors):
            subject = Subject(id=f"s{seed}-{number}", display_name="x", category=Category("wanted"))
            image = ReferenceImage(subject=subject, image=b"jpeg", media_type="image/jpeg", face_box=[0, 0, 1, 1])
            templates.append(ReferenceTemplate(reference_image=image, model_id=MODEL, vector=store.cipher.encrypt(vector.tobytes())))
            session.add(subject)
        session.flush()
        ids = np.array([t.id for t in templates], dtype=np.int64)
    return ids, vectors


def erase(store: RecordStore, ids: np.ndarray) -> None:
    with store.transaction() as session:
        session.execute(delete(ReferenceTemplate).where(ReferenceTemplate.id.in_(ids.tolist())))


def manifest(indexes: ReferenceIndexes) -> dict[str, object]:
    return json.loads(indexes.path(MODEL).with_suffix(".manifest.json").read_text())


def held(indexes: ReferenceIndexes) -> np.ndarray:
    """The ids the index of MODEL holds (found by asking for every entry)."""
    index = indexes.index(MODEL, DIM)
    found = index.search(np.eye(DIM, dtype=np.float32)[:1], max(len(index), 1))[1][0]
    return np.sort(found[found >= 0])


def database_ids(store: RecordStore) -> np.ndarray:
    return ReferenceIndexes(store)._database_ids(MODEL)


@pytest.fixture
def journaled(store: RecordStore) -> tuple[ReferenceIndexes, np.ndarray, np.ndarray]:
    """200 templates in a snapshot, then 20 added and 5 removed through the journal."""
    ids, vectors = enrol(store, 200, seed=1)
    indexes = ReferenceIndexes(store, compact_share=0.5)
    assert len(indexes.index(MODEL, DIM)) == 200 and not indexes.journal_path(MODEL).exists()
    added, added_vectors = enrol(store, 20, seed=2)
    indexes.add(MODEL, added, added_vectors)
    indexes.remove(MODEL, ids[:5])
    erase(store, ids[:5])
    return indexes, np.concatenate([ids, added]), np.concatenate([vectors, added_vectors])


def test_changes_are_appended_not_saved_and_replayed_on_load(store: RecordStore, journaled: tuple) -> None:
    indexes, ids, vectors = journaled
    snapshot = indexes.path(MODEL).read_bytes()
    assert manifest(indexes)["journal_entries"] == 2 and manifest(indexes)["count"] == 215
    assert manifest(indexes)["ids_digest"] == IdDigest.of(database_ids(store)).hex()

    reloaded = ReferenceIndexes(store, compact_share=0.5)
    np.testing.assert_array_equal(held(reloaded), database_ids(store))
    assert indexes.path(MODEL).read_bytes() == snapshot  # replayed, not rebuilt
    similarities, found = reloaded.index(MODEL, DIM).search(vectors[[0, 210]], 1)
    assert found[0, 0] != ids[0] and found[1, 0] == ids[210] and similarities[1, 0] == pytest.approx(1.0, abs=1e-6)


def test_a_removal_whose_commit_never_happened_is_rebuilt_and_one_that_did_is_never_served(store: RecordStore, journaled: tuple) -> None:
    indexes, ids, _ = journaled
    indexes.remove(MODEL, ids[5:7])  # journaled, then the process dies before the deletion commits
    reloaded = ReferenceIndexes(store, compact_share=0.5)
    np.testing.assert_array_equal(held(reloaded), database_ids(store))  # the database still has them
    assert np.isin(ids[5:7], held(reloaded)).all() and not np.isin(ids[:5], held(reloaded)).any()


def test_a_torn_final_append_is_cut_off_and_the_journal_goes_on(store: RecordStore, journaled: tuple) -> None:
    indexes, _, _ = journaled
    journal = indexes.journal_path(MODEL)
    whole = journal.stat().st_size
    with journal.open("ab") as file:  # a crash mid-append of a removal that never committed
        file.write((1_000).to_bytes(8, "little") + b"partial")
    snapshot = indexes.path(MODEL).read_bytes()

    reloaded = ReferenceIndexes(store, compact_share=0.5)
    np.testing.assert_array_equal(held(reloaded), database_ids(store))
    assert indexes.path(MODEL).read_bytes() == snapshot and journal.stat().st_size == whole
    more, more_vectors = enrol(store, 3, seed=3)
    reloaded.add(MODEL, more, more_vectors)
    np.testing.assert_array_equal(held(ReferenceIndexes(store, compact_share=0.5)), database_ids(store))


@pytest.mark.parametrize("damage", ["flipped byte", "record of another snapshot", "append never acknowledged"])
def test_a_damaged_journal_is_refused_and_the_index_rebuilt(store: RecordStore, journaled: tuple, damage: str) -> None:
    indexes, _, _ = journaled
    journal = indexes.journal_path(MODEL)
    data = bytearray(journal.read_bytes())
    if damage == "flipped byte":
        data[len(data) // 2] ^= 0x01
        journal.write_bytes(bytes(data))
    elif damage == "record of another snapshot":
        entry = indexes._open[MODEL]
        sealed.append_record(journal, store.cipher, b"\x00" * sealed.STREAM_ID_BYTES, entry.journal_entries, b"R", entry.journal_bytes)
        document = manifest(indexes)
        document["journal_entries"] = 3
        indexes.path(MODEL).with_suffix(".manifest.json").write_text(json.dumps(document))
    else:  # a whole record the manifest does not count: the change's commit is the database's to say
        entry = indexes._open[MODEL]
        sealed.append_record(journal, store.cipher, entry.index.snapshot_id, entry.journal_entries, b"R\x00\x00\x00\x00\x00\x00\x00\x00", entry.journal_bytes)
    snapshot = manifest(indexes)["snapshot"]

    reloaded = ReferenceIndexes(store, compact_share=0.5)
    np.testing.assert_array_equal(held(reloaded), database_ids(store))
    assert manifest(reloaded)["snapshot"] != snapshot and not journal.exists()  # rebuilt from the database


def _plaintext_of_every_file(directory: Path, store: RecordStore) -> bytes:
    """Everything the index directory holds, decrypted (sealed files and journals record by record)."""
    plaintext = b""
    for path in directory.iterdir():
        if path.suffix == ".journal":
            stream = TemplateIndex.load(path.with_suffix(".index"), store.cipher).snapshot_id
            plaintext += b"".join(sealed.read_log(path, store.cipher, stream)[0])
        elif path.suffix == ".index":
            plaintext += b"".join(sealed.read_sealed(path, store.cipher)[1])
        else:
            plaintext += path.read_bytes()
    return plaintext


def test_compaction_writes_a_new_snapshot_and_removed_templates_are_then_in_no_file(store: RecordStore) -> None:
    ids, vectors = enrol(store, 100, seed=4)
    indexes = ReferenceIndexes(store, compact_share=0.05)
    indexes.index(MODEL, DIM)
    first = manifest(indexes)["snapshot"]
    indexes.remove(MODEL, ids[:2])
    erase(store, ids[:2])
    assert manifest(indexes)["snapshot"] == first and manifest(indexes)["journal_entries"] == 1
    assert vectors[0].tobytes() in _plaintext_of_every_file(indexes.directory, store)  # not yet compacted

    indexes.remove(MODEL, ids[2:5])  # 5 changed > 5% of 98: compact
    erase(store, ids[2:5])
    assert manifest(indexes)["snapshot"] != first and manifest(indexes)["journal_entries"] == 0
    assert not indexes.journal_path(MODEL).exists()
    everything = _plaintext_of_every_file(indexes.directory, store)
    assert not any(vector.tobytes() in everything for vector in vectors[:5]) and vectors[5].tobytes() in everything
    np.testing.assert_array_equal(held(ReferenceIndexes(store)), database_ids(store))


def test_another_process_appending_first_makes_this_one_reload_and_retry(store: RecordStore) -> None:
    enrol(store, 100, seed=5)
    first, second = ReferenceIndexes(store, compact_share=0.5), ReferenceIndexes(store, compact_share=0.5)
    first.index(MODEL, DIM), second.index(MODEL, DIM)
    a, a_vectors = enrol(store, 2, seed=6)
    first.add(MODEL, a, a_vectors)
    b, b_vectors = enrol(store, 2, seed=7)
    second.add(MODEL, b, b_vectors)  # its journal position is stale: it reloads (replaying a) and appends b
    assert np.isin(np.concatenate([a, b]), held(second)).all()
    np.testing.assert_array_equal(held(ReferenceIndexes(store, compact_share=0.5)), database_ids(store))


def test_the_digest_changes_with_any_id_and_not_with_order() -> None:
    ids = np.arange(1, 1_000, dtype=np.int64) * 7
    digest = IdDigest.of(ids)
    assert digest.hex() == IdDigest.of(ids[::-1]).hex() == IdDigest.parse(digest.hex()).hex()
    assert IdDigest.of(ids).remove(ids[:1]).hex() == IdDigest.of(ids[1:]).hex()
    assert IdDigest.of(ids[1:]).hex() != digest.hex() != IdDigest.of(np.append(ids, 0)).hex()
