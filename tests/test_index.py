"""Template indexes: add/search/remove/persist, exact-vs-approximate agreement, refusals."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from cryptography.fernet import Fernet

from openfrt.errors import OpenFRTError
from openfrt.gallery import sealed
from openfrt.gallery.index import (
    ApproximateIndex,
    DuplicateIdError,
    ExactIndex,
    IndexFileError,
    InvalidIdError,
    InvalidTemplateError,
    TemplateIndex,
    open_index,
)

DIM = 32
#: Within-person variation per component: genuine cosine about 0.85, like real templates.
NOISE = 0.4 / np.sqrt(DIM)


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, seed: int = 0, people: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face-like synthetic templates: ``n`` noisy images of ``people`` identities (random unit
    centres), returned with the identity of each image and the identity centres."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((people or n // 2, DIM)))
    owner = rng.integers(0, len(centres), n)
    return unit(centres[owner] + NOISE * rng.standard_normal((n, DIM))), owner, centres


def probes(centres: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Fresh images of enrolled identities (mated) and of new ones (non-mated), half each."""
    rng = np.random.default_rng(seed)
    people = np.concatenate([centres[rng.integers(0, len(centres), n // 2)], unit(rng.standard_normal((n - n // 2, DIM)))])
    return unit(people + NOISE * rng.standard_normal(people.shape))


@pytest.fixture
def cipher() -> Fernet:
    return Fernet(Fernet.generate_key())


def make(kind: type[TemplateIndex]) -> TemplateIndex:
    """A small-gallery instance: the approximate one trains at 1,000 so 5k templates exercise IVF."""
    return ApproximateIndex(DIM, train_size=1_000) if kind is ApproximateIndex else ExactIndex(DIM)


@pytest.mark.parametrize("kind", [ExactIndex, ApproximateIndex])
def test_add_search_remove_persist_round_trip(kind: type[TemplateIndex], tmp_path: Path, cipher: Fernet) -> None:
    vectors, _, _ = clustered(5_000)
    ids = np.arange(5_000, dtype=np.int64) * 10 + 7
    index = make(kind)
    index.add(ids[:2_500], vectors[:2_500])
    index.add(ids[2_500:], vectors[2_500:])
    assert len(index) == 5_000 and index.dim == DIM

    similarities, found = index.search(vectors[:200], 5)
    assert similarities.shape == found.shape == (200, 5)
    np.testing.assert_array_equal(found[:, 0], ids[:200])
    np.testing.assert_allclose(similarities[:, 0], 1.0, atol=1e-5)
    assert np.all((similarities >= 0) & (similarities <= 1)) and np.all(np.diff(similarities, axis=1) <= 1e-6)

    assert index.remove(ids[:100]) == 100
    assert len(index) == 4_900

    path = tmp_path / "gallery.idx"
    index.save(path, cipher)
    loaded = kind.load(path, cipher)
    assert type(loaded) is kind and len(loaded) == 4_900 and loaded.dim == DIM
    before, after = index.search(vectors[100:300], 5), loaded.search(vectors[100:300], 5)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_allclose(before[0], after[0])
    assert not set(loaded.search(vectors[:100], 5)[1].ravel()) & set(ids[:100])


@pytest.mark.parametrize("kind", [ExactIndex, ApproximateIndex])
def test_an_empty_index_saves_and_loads(kind: type[TemplateIndex], tmp_path: Path, cipher: Fernet) -> None:
    """A new model's index is saved before its first template (migration, first enrolment)."""
    path = tmp_path / "empty.idx"
    make(kind).save(path, cipher)
    loaded = kind.load(path, cipher)
    assert len(loaded) == 0 and loaded.dim == DIM
    vector = unit(np.random.default_rng(0).standard_normal((1, DIM)))
    loaded.add(np.array([3], dtype=np.int64), vector)
    assert loaded.search(vector, 1)[1][0, 0] == 3


def test_approximate_agrees_with_exact() -> None:
    vectors, _, centres = clustered(20_000, seed=1, people=2_000)
    ids = np.arange(20_000, dtype=np.int64)
    exact, approximate = ExactIndex(DIM), ApproximateIndex(DIM, train_size=2_000)
    exact.add(ids, vectors)
    for chunk in np.array_split(np.arange(20_000), 4):  # cold start, training, then incremental adds
        approximate.add(ids[chunk], vectors[chunk])
    assert approximate.nlist > 0
    queries = probes(centres, 1_000, seed=2)
    agree = approximate.search(queries, 1)[1][:, 0] == exact.search(queries, 1)[1][:, 0]
    assert agree[:500].mean() >= 0.99  # probes of enrolled people
    # Probes of people never enrolled have no clear nearest neighbour (many near-ties in
    # isotropic data), so agreement there is lower; this only guards against regressions.
    assert agree[500:].mean() >= 0.9
    approximate.probe_fraction = 1.0  # scanning every list is exact
    np.testing.assert_array_equal(approximate.search(queries, 1)[1], exact.search(queries, 1)[1])


def test_saved_file_is_encrypted(tmp_path: Path, cipher: Fernet) -> None:
    vectors, _, _ = clustered(100)
    index = ExactIndex(DIM)
    index.add(np.arange(100), vectors)
    path = tmp_path / "gallery.idx"
    index.save(path, cipher)
    stored = path.read_bytes()
    assert vectors[0].tobytes() not in stored and vectors[:, :4].tobytes()[:16] not in stored
    assert not list(tmp_path.glob(".*.tmp")), "the temporary file should have been renamed over"


@pytest.mark.parametrize("kind", [ExactIndex, ApproximateIndex])
def test_removed_ids_cannot_be_found_and_can_be_re_added(kind: type[TemplateIndex]) -> None:
    vectors, _, _ = clustered(3_000, seed=3)
    ids = np.arange(3_000, dtype=np.int64)
    index = make(kind)
    index.add(ids, vectors)
    gone = ids[::3]
    assert index.remove(np.concatenate([gone, [10_000_000]])) == len(gone)  # absent ids ignored
    assert index.remove(gone) == 0  # erasure can be retried safely
    found = index.search(vectors[gone], 10)[1]
    assert not np.isin(found, gone).any()
    index.add(gone[:5], vectors[gone[:5]])
    np.testing.assert_array_equal(index.search(vectors[gone[:5]], 1)[1][:, 0], gone[:5])


@pytest.mark.parametrize("kind", [ExactIndex, ApproximateIndex])
def test_changes_of_any_size_in_any_order_keep_every_id_at_its_own_template(kind: type[TemplateIndex], tmp_path: Path, cipher: Fernet) -> None:
    # Small changes shift the sorted id arrays in place, large ones merge; both, interleaved:
    rng = np.random.default_rng(7)
    vectors, _, _ = clustered(4_000, seed=7)
    ids = rng.permutation(1_000_000)[:4_000].astype(np.int64)
    index, held = make(kind), set()
    for size in (1_500, 1, 3, 64, 65, 200, 1, 2, 40):
        new = [position for position in rng.permutation(len(ids)) if int(ids[position]) not in held][:size]
        index.add(ids[new], vectors[new])
        held |= {int(i) for i in ids[new]}
        gone = rng.choice(sorted(held), size=min(len(held), max(1, size // 2)), replace=False)
        assert index.remove(gone) == len(gone)
        held -= {int(i) for i in gone}
        stored = np.array(sorted(held), dtype=np.int64)
        np.testing.assert_array_equal(index.contains(ids), np.isin(ids, stored))
        assert len(index) == len(stored)
    by_id = dict(zip(ids.tolist(), vectors))
    check = np.array(sorted(held), dtype=np.int64)[:300]
    queries = np.stack([by_id[i] for i in check.tolist()])

    def assert_each_hit_scored_with_its_own_template(searched: TemplateIndex) -> None:
        similarities, found = searched.search(queries, 3)
        stored = np.stack([[by_id[int(i)] for i in row] for row in found])
        np.testing.assert_allclose(similarities, (1 + np.einsum("qd,qkd->qk", queries, stored)) / 2, atol=1e-5)
        if kind is ExactIndex:
            np.testing.assert_array_equal(found[:, 0], check)

    assert_each_hit_scored_with_its_own_template(index)
    index.save(tmp_path / "i.index", cipher)
    reloaded = open_index(tmp_path / "i.index", DIM, cipher)
    assert_each_hit_scored_with_its_own_template(reloaded)
    reloaded.add(np.array([2_000_000]), vectors[:1])  # a loaded index grows its arrays again
    assert reloaded.contains(np.array([2_000_000, int(check[0])])).all()


def test_cold_start_then_training_then_growth_keeps_every_template() -> None:
    vectors, _, _ = clustered(4_000, seed=4)
    ids = np.arange(4_000, dtype=np.int64) + 1_000
    index = ApproximateIndex(DIM, train_size=500)

    index.add(ids[:3], vectors[:3])
    similarities, found = index.search(vectors[:1], 5)
    assert index.nlist == index.code_size == 0 and found[0, 0] == ids[0]
    np.testing.assert_array_equal(found[0, 3:], [-1, -1])
    np.testing.assert_array_equal(similarities[0, 3:], [0.0, 0.0])

    nlists = []
    for start in range(3, 4_000, 250):
        index.add(ids[start : start + 250], vectors[start : start + 250])
        nlists.append(index.nlist)
    assert nlists[0] == 0 and 0 < nlists[2] < nlists[-1]  # trained at 500, retrained as it grew
    assert index.code_size == DIM // 2  # a 4-bit code per dimension
    assert len(index) == 4_000
    index_ids = index.search(vectors, 1)[1][:, 0]
    assert np.mean(index_ids == ids) > 0.999


@pytest.mark.parametrize("kind", [ExactIndex, ApproximateIndex])
def test_bad_vectors_and_ids_are_refused_and_leave_the_index_unchanged(kind: type[TemplateIndex]) -> None:
    vectors, _, _ = clustered(10)
    index = make(kind)
    index.add(np.arange(10), vectors)
    nan = vectors.copy()
    nan[3, 5] = np.nan
    bad_inputs = [
        (InvalidTemplateError, np.arange(10, 20), unit(np.ones((10, DIM + 1)))),  # wrong dimension
        (InvalidTemplateError, np.arange(10, 20), nan),
        (InvalidTemplateError, np.arange(10, 20), vectors * 2),  # not unit length
        (InvalidIdError, np.arange(10, 15), vectors),  # count mismatch
        (InvalidIdError, np.arange(-1, 9), vectors),  # -1 is the "no result" marker
        (DuplicateIdError, np.arange(5, 15), vectors),  # 5..9 already present
        (DuplicateIdError, np.array([20] * 10), vectors),  # repeated within the batch
    ]
    for error, ids, rows in bad_inputs:
        with pytest.raises(error):
            index.add(ids, rows)
    assert len(index) == 10
    with pytest.raises(InvalidTemplateError):
        index.search(np.ones((1, DIM), dtype=np.float32), 1)
    with pytest.raises(InvalidTemplateError):
        index.search(vectors[:, :-1], 1)
    with pytest.raises(ValueError):
        index.search(vectors, 0)


def test_wrong_cipher_or_corrupt_file_fails_clearly(tmp_path: Path, cipher: Fernet) -> None:
    vectors, _, _ = clustered(50)
    index = ApproximateIndex(DIM)
    index.add(np.arange(50), vectors)
    path = tmp_path / "gallery.idx"
    index.save(path, cipher)

    with pytest.raises(IndexFileError, match="cannot be decrypted") as raised:
        TemplateIndex.load(path, Fernet(Fernet.generate_key()))
    assert raised.value.path == path and str(path) in str(raised.value)
    assert isinstance(raised.value, OpenFRTError)

    with pytest.raises(IndexFileError, match="not ExactIndex"):
        ExactIndex.load(path, cipher)

    truncated = tmp_path / "truncated.idx"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(IndexFileError, match="cut short"):
        TemplateIndex.load(truncated, cipher)

    with pytest.raises(IndexFileError, match="cannot be read"):
        TemplateIndex.load(tmp_path / "missing.idx", cipher)


def test_open_index_creates_then_loads_and_checks_dimension(tmp_path: Path, cipher: Fernet) -> None:
    path = tmp_path / "gallery.idx"
    assert isinstance(open_index(path, DIM, cipher), ApproximateIndex)
    created = open_index(path, DIM, cipher, approximate=False)
    assert isinstance(created, ExactIndex) and len(created) == 0 and not path.exists()

    vectors, _, _ = clustered(20)
    created.add(np.arange(20), vectors)
    created.save(path, cipher)
    reopened = open_index(path, DIM, cipher)
    assert isinstance(reopened, ExactIndex) and len(reopened) == 20
    with pytest.raises(IndexFileError, match="128-d"):
        open_index(path, 128, cipher)


def _listed_ids(index: ApproximateIndex) -> np.ndarray:
    """Every id in the code index's inverted lists (what FAISS would scan)."""
    import faiss

    codes = index._codes
    assert codes is not None
    lists = codes.invlists
    chunks = [
        faiss.rev_swig_ptr(lists.get_ids(number), lists.list_size(number)).copy()
        for number in range(codes.nlist)
        if lists.list_size(number)
    ]
    return np.concatenate(chunks) if chunks else np.empty(0, dtype=np.int64)


def test_removal_deletes_codes_and_vectors_and_survives_persistence(tmp_path: Path, cipher: Fernet) -> None:
    vectors, _, _ = clustered(4_000, seed=5)
    ids = np.arange(4_000, dtype=np.int64) * 2 + 1
    index = ApproximateIndex(DIM, train_size=1_000)
    index.add(ids, vectors)
    gone = ids[::4]
    assert index.remove(gone) == len(gone)
    kept = np.setdiff1d(ids, gone)
    # Nothing derived from a removed template is left: not its code, not its vector (anywhere
    # in the vector array's capacity, in use or not).
    assert index._codes is not None and index._codes.ntotal == len(kept) == len(index)
    np.testing.assert_array_equal(np.sort(_listed_ids(index)), kept)
    assert not (np.abs(index._vectors[:, None, :] - vectors[::4][None, :, :]).max(axis=2) < 1e-7).any()
    np.testing.assert_array_equal(index.contains(np.concatenate([gone, kept])), np.arange(4_000) >= len(gone))
    # Searches never return them, even asking for every entry.
    assert not np.isin(index.search(vectors[gone // 2][:50], len(index))[1], gone).any()

    path = tmp_path / "gallery.idx"
    index.save(path, cipher)
    loaded = ApproximateIndex.load(path, cipher)
    assert loaded.nlist == index.nlist and loaded.candidates == index.candidates
    np.testing.assert_array_equal(np.sort(_listed_ids(loaded)), kept)
    np.testing.assert_array_equal(loaded.search(vectors[:300], 10)[1], index.search(vectors[:300], 10)[1])


def test_search_reranks_exactly_and_pads_when_few_entries_remain() -> None:
    vectors, _, _ = clustered(3_000, seed=6)
    ids = np.arange(3_000, dtype=np.int64)
    index, exact = ApproximateIndex(DIM, train_size=1_000, candidates=50), ExactIndex(DIM)
    index.add(ids, vectors)
    exact.add(ids, vectors)
    queries = vectors[:20]
    # k above the candidate count: the candidate list widens to k; similarities are exact.
    similarities, found = index.search(queries, 120)
    assert found.shape == (20, 120) and (found >= 0).all() and np.all(np.diff(similarities, axis=1) <= 1e-6)
    np.testing.assert_allclose(similarities, (1 + np.einsum("qd,qkd->qk", queries, vectors[found])) / 2, atol=1e-6)
    np.testing.assert_array_equal(found[:, 0], exact.search(queries, 1)[1][:, 0])

    assert index.remove(ids[5:]) == 2_995
    similarities, found = index.search(queries[:2], 10)
    np.testing.assert_array_equal(np.sort(found[:, :5], axis=1), np.tile(ids[:5], (2, 1)))
    assert (found[:, 5:] == -1).all() and (similarities[:, 5:] == 0).all()


def test_files_of_older_versions_are_refused_clearly(tmp_path: Path, cipher: Fernet) -> None:
    """Format 1 was one ciphertext of the whole index; the reference indexes rebuild such files
    from the database (their manifests lack today's digest), so loading one directly says so."""
    path = tmp_path / "old.idx"
    path.write_bytes(cipher.encrypt(b"OFRT-IDX" + struct.pack("<I", 2) + b"{}"))
    with pytest.raises(IndexFileError, match="older one is rebuilt"):
        TemplateIndex.load(path, cipher)


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seal files in 4 KiB segments, so a small index spans many records."""
    monkeypatch.setattr(sealed, "SEGMENT_BYTES", 4_096)


def _records(path: Path) -> tuple[bytes, list[bytes]]:
    """A sealed file's magic and its records (length prefix included), in file order."""
    data = path.read_bytes()
    records, offset = [], len(sealed.MAGIC)
    while offset < len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        records.append(data[offset : offset + 8 + length])
        offset += 8 + length
    return data[: len(sealed.MAGIC)], records


@pytest.mark.usefixtures("small_segments")
def test_sealed_files_refuse_dropped_reordered_or_foreign_segments(tmp_path: Path, cipher: Fernet) -> None:
    vectors, _, _ = clustered(2_000, seed=8)
    index = ApproximateIndex(DIM, train_size=1_000)
    index.add(np.arange(2_000), vectors)
    path, other = tmp_path / "gallery.idx", tmp_path / "other.idx"
    index.save(path, cipher)
    index.save(other, cipher)  # same contents, another stream id
    assert index.snapshot_id == TemplateIndex.load(other, cipher).snapshot_id != TemplateIndex.load(path, cipher).snapshot_id
    magic, records = _records(path)
    assert len(records) > 10 and magic == sealed.MAGIC
    foreign = _records(other)[1]
    damaged = {
        "dropped": records[:5] + records[6:],
        "reordered": [*records[:5], records[6], records[5], *records[7:]],
        "spliced": [*records[:5], foreign[5], *records[6:]],
        "cut after a whole record": records[:-1],
        "extended": [*records, records[-1]],
    }
    for problem, parts in damaged.items():
        path.write_bytes(magic + b"".join(parts))
        with pytest.raises(IndexFileError, match="corrupt|cut short") as raised:
            TemplateIndex.load(path, cipher)
        assert raised.value.path == path, problem


def test_a_header_promising_more_templates_than_the_file_holds_is_refused(tmp_path: Path, cipher: Fernet) -> None:
    path = tmp_path / "gallery.idx"
    header = json.dumps({"format": 2, "kind": "exact", "dim": DIM, "count": 10, "settings": {}, "extra_indexes": 0}).encode()
    writer = sealed.SealedWriter(path, cipher)
    writer.write(b"OFRT-IDX" + struct.pack("<I", len(header)) + header + bytes(8 * 10))
    writer.commit()
    with pytest.raises(IndexFileError, match="ends early"):
        TemplateIndex.load(path, cipher)
    with pytest.raises(ValueError):
        ApproximateIndex(DIM, candidates=0)


def test_automatic_settings_keep_the_1m_tuning_and_scan_a_smaller_share_beyond(tmp_path: Path, cipher: Fernet) -> None:
    from openfrt.gallery.index import nlist_for, probe_fraction_for

    assert (nlist_for(10_000), nlist_for(1_000_000)) == (25, 250)  # √N/4, as before
    assert probe_fraction_for(1_000) == probe_fraction_for(1_000_000) == 0.75
    assert 3_900 < nlist_for(10_000_000) < 4_100 and probe_fraction_for(10_000_000) == pytest.approx(0.625, abs=0.005)
    index = ApproximateIndex(DIM, train_size=1_000)
    vectors, _, _ = clustered(2_000, seed=9)
    index.add(np.arange(2_000), vectors)
    assert index.probe_fraction == 0.75 and index.nprobe == min(index.nlist, max(16, -(-index.nlist * 3 // 4)))
    index.probe_fraction = 1.0
    index.save(tmp_path / "gallery.idx", cipher)
    assert ApproximateIndex.load(tmp_path / "gallery.idx", cipher).nprobe == index.nlist
    index.probe_fraction = None  # automatic again
    assert index.probe_fraction == 0.75
