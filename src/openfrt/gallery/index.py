"""Template indexes: the nearest enrolled templates to a probe, over galleries of millions.

Retrospective search compares a probe with every custody image on record. Up to a few tens of
thousands of templates brute force is exact and fast enough (:class:`ExactIndex`); beyond that
:class:`ApproximateIndex` scans compact codes of the templates in the inverted lists nearest the
probe (FAISS IVF-PQ "fast scan") and re-ranks the best few hundred exactly. Not a graph index
(HNSW): deleting a person's record must delete everything derived from their templates, and
FAISS's HNSW cannot remove entries (it also agreed worse with exact search on face templates).

Vectors are unit-length templates, so inner product is cosine; results are reported on
openfrt's 0..1 similarity scale (:func:`~openfrt.vision.types.cosine_to_similarity`).
Indexes are persisted encrypted (templates are biometric data) with a caller-supplied cipher,
streamed as sealed segments (:mod:`openfrt.gallery.sealed`) so that a 6 GB index is never
copied whole in memory to be saved or loaded.

Indexes are not thread-safe: searches may run concurrently with each other, but ``add`` and
``remove`` need exclusive access (the caller's lock).
"""

from __future__ import annotations

import json
import math
import struct
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import faiss
import numpy as np

from openfrt.errors import OpenFRTError
from openfrt.gallery import sealed
from openfrt.gallery.sealed import Cipher
from openfrt.vision.types import cosine_to_similarity

#: How far a vector's length may be from 1 (float32 rounding, format conversion) before it is
#: refused: inner products are only cosines for unit vectors.
UNIT_TOLERANCE = 1e-3

_MAGIC = b"OFRT-IDX"
_FORMAT_VERSION = 2
_HEADER_LENGTH = struct.Struct("<I")

class TemplateIndexError(OpenFRTError, ValueError):
    """A vector, id or index file that a template index cannot use."""


class InvalidTemplateError(TemplateIndexError):
    """Vectors of the wrong shape or dimension, or not finite, or not unit length."""


class InvalidIdError(TemplateIndexError):
    """Ids that are not non-negative integers (-1 marks "no result" in search output)."""


class DuplicateIdError(InvalidIdError):
    """An ``add`` whose ids are already in the index or repeated within the batch.

    Adds are refused rather than treated as replacements, so an enrolment bug cannot silently
    overwrite someone's template; to replace, ``remove`` the id and ``add`` it again.
    """

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids
        shown = ", ".join(map(str, ids[:5])) + (", ..." if len(ids) > 5 else "")
        super().__init__(f"{len(ids)} id(s) already in the index or repeated in the batch: {shown}")


class IndexFileError(TemplateIndexError):
    """An index file that cannot be read, decrypted or used. ``path`` names it."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class TemplateIndex(ABC):
    """Maps int64 ids (database keys of enrolled templates) to unit vectors and finds the
    nearest ones to probes."""

    kind: ClassVar[str]

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of every vector in the index."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add ``vectors`` (N x dim, unit length) under ``ids`` (N, distinct, not yet present)."""

    @abstractmethod
    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Whether each of ``ids`` is in the index (a boolean array of their length)."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids`` (absent ones are ignored, so erasure can be retried); return how many went."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest entries to each query: ``(similarities, ids)``, both Q x k, best first.

        Similarities are on the 0..1 scale; where fewer than ``k`` entries exist the id is -1
        and the similarity 0.
        """

    @abstractmethod
    def save(self, path: Path, cipher: Cipher) -> None:
        """Write the index encrypted with ``cipher``, atomically (a crash leaves the old file)."""

    @classmethod
    def load(cls, path: Path, cipher: Cipher) -> TemplateIndex:
        """Read an index written by :meth:`save`; ``TemplateIndex.load`` returns whichever kind
        the file holds, a subclass's ``load`` insists on that kind."""
        path = Path(path)
        with _StreamReader.open(path, cipher) as reader:
            header = reader.read_header()
            kinds = {subclass.kind: subclass for subclass in (ExactIndex, ApproximateIndex)}
            loaded_class = kinds.get(header.get("kind"))
            if loaded_class is None or not issubclass(loaded_class, cls):
                raise IndexFileError(path, f"holds a {header.get('kind')!r} index, not {cls.__name__}")
            index = loaded_class._restore(path, header, reader)
            reader.finish()
        index.snapshot_id = reader.stream
        return index


class _FaissIndex(TemplateIndex):
    """Input checks, storage, removal and persistence shared by the FAISS-backed indexes.

    Vectors live in one numpy array in row order, grown in place (``ndarray.resize``: a
    ``realloc`` that the C library does by remapping pages, not copying, at this size), with
    each row's id; ``_ids`` keeps every id sorted with its row beside it (``_rows``), so
    duplicate adds, removals and re-ranking find rows by binary search. Removal moves the last
    rows into the holes: no tombstones, and O(removed) vector work — FAISS's IndexIDMap2
    compacted the whole array and rebuilt its hash map, about 5 s per removal at 10M. The sorted
    arrays have spare capacity too, and a change of a few ids shifts their tails in place:
    ``np.insert`` of one id into both at 10M took 53 ms (two fresh 80 MB arrays), a shift 3.5 ms.
    """

    def __init__(self, dim: int) -> None:
        if dim < 1:
            raise ValueError(f"dimension must be positive, not {dim}")
        self._dim = dim
        self._count = 0
        self._vectors = np.empty((0, dim), dtype=np.float32)  # capacity; rows [0, _count) in use
        self._row_ids = np.empty(0, dtype=np.int64)  # capacity; the id of each row
        self._sorted_ids = np.empty(0, dtype=np.int64)  # capacity; the first _count sorted
        self._sorted_rows = np.empty(0, dtype=np.int64)  # the row of each of them
        #: Random id of the file this index was last saved to or loaded from (a change journal
        #: names it, so entries cannot be replayed onto another snapshot); None if never saved.
        self.snapshot_id: bytes | None = None

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def _ids(self) -> np.ndarray:
        """Every stored id, sorted (a view: valid until the next change)."""
        return self._sorted_ids[: self._count]

    @property
    def _rows(self) -> np.ndarray:
        """The row of each of :attr:`_ids` (a view: valid until the next change)."""
        return self._sorted_rows[: self._count]

    def __len__(self) -> int:
        return self._count

    def contains(self, ids: np.ndarray) -> np.ndarray:
        return _membership(self._ids, _check_ids(ids))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = _check_vectors(vectors, self._dim, "vectors")
        ids = _check_ids(ids)
        if len(ids) != len(vectors):
            raise InvalidIdError(f"{len(ids)} ids for {len(vectors)} vectors")
        _refuse_duplicates(self._ids, ids)
        if len(ids):
            self._store(ids, vectors)
            self._added(ids, vectors)

    def _store(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        start, end = self._count, self._count + len(ids)
        if end > len(self._vectors):
            capacity = max(end, len(self._vectors) * 3 // 2, 1_024)
            self._vectors.resize((capacity, self._dim), refcheck=False)
            self._row_ids.resize(capacity, refcheck=False)
        self._vectors[start:end] = vectors
        self._row_ids[start:end] = ids
        order = np.argsort(ids)
        new_ids, new_rows = ids[order], np.arange(start, end, dtype=np.int64)[order]
        positions = np.searchsorted(self._ids, new_ids)
        if len(ids) > _IN_PLACE_CHANGE:
            self._sorted_ids = np.insert(self._ids, positions, new_ids)
            self._sorted_rows = np.insert(self._rows, positions, new_rows)
        else:
            if end > len(self._sorted_ids):
                self._sorted_ids = _grown(self._sorted_ids, start, len(self._vectors))
                self._sorted_rows = _grown(self._sorted_rows, start, len(self._vectors))
            _insert_in_place(self._sorted_ids, self._sorted_rows, start, positions, new_ids, new_rows)
        self._count = end

    def _added(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Structures derived from the vectors take in an add (nothing for exact search)."""

    def remove(self, ids: np.ndarray) -> int:
        present = _present(self._ids, np.unique(_check_ids(ids)))
        if len(present):
            self._removing(present)
            self._unstore(present)
        return len(present)

    def _removing(self, ids: np.ndarray) -> None:
        """Structures derived from the vectors drop ``ids`` (sorted, all present)."""

    def _unstore(self, ids: np.ndarray) -> None:
        positions = np.searchsorted(self._ids, ids)
        gone = self._rows[positions]
        end = self._count - len(ids)
        holes = np.sort(gone[gone < end])
        movers = np.setdiff1d(np.arange(end, self._count), gone)  # the tail rows that stay
        self._vectors[holes] = self._vectors[movers]
        self._vectors[end : self._count] = 0  # no copy of a removed template left in memory
        self._row_ids[holes] = self._row_ids[movers]
        _delete_in_place(self._sorted_ids, self._sorted_rows, self._count, positions)
        self._count = end
        self._rows[np.searchsorted(self._ids, self._row_ids[holes])] = holes

    def _vectors_of(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (all present), in their order."""
        return self._vectors[self._rows[np.searchsorted(self._ids, ids)]]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = _check_vectors(queries, self._dim, "queries")
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        cosines = np.full((len(queries), k), _MISSING, dtype=np.float32)
        found = np.full((len(queries), k), -1, dtype=np.int64)
        take = min(k, self._count)
        if take:
            scores, rows = faiss.knn(queries, self._vectors[: self._count], take, faiss.METRIC_INNER_PRODUCT)
            cosines[:, :take], found[:, :take] = scores, self._row_ids[rows]
        # Missing entries score -FLT_MAX, which the scale's clipping maps to 0.
        return cosine_to_similarity(cosines).astype(np.float32), found

    def save(self, path: Path, cipher: Cipher) -> None:
        header = {
            "format": _FORMAT_VERSION, "kind": self.kind, "dim": self._dim, "count": self._count,
            "settings": self._settings(), "extra_indexes": len(self._extra_indexes()),
        }
        self.snapshot_id = _write_file(Path(path), cipher, header, self)

    def _settings(self) -> dict[str, Any]:
        """Constructor settings to persist beside the vectors."""
        return {}

    def _extra_indexes(self) -> list[faiss.Index]:
        """FAISS indexes saved after the vectors (derived structures such as codes)."""
        return []

    @classmethod
    def _restore(cls, path: Path, header: dict[str, Any], reader: _StreamReader) -> _FaissIndex:
        """Rebuild an instance from a file's header and the rest of its stream."""
        dim, count = header.get("dim"), header.get("count")
        if not isinstance(dim, int) or not isinstance(count, int) or dim < 1 or count < 0:
            raise IndexFileError(path, "has a corrupt header: bad dimension or count")
        restored = cls(dim, **header.get("settings", {}))
        restored._vectors = np.empty((count, dim), dtype=np.float32)
        restored._row_ids = np.empty(count, dtype=np.int64)
        reader.readinto(restored._row_ids)
        reader.readinto(restored._vectors)
        restored._count = count
        order = np.argsort(restored._row_ids)
        restored._sorted_ids, restored._sorted_rows = restored._row_ids[order], order.astype(np.int64)
        if count and (restored._ids[0] < 0 or (np.diff(restored._ids) == 0).any()):
            raise IndexFileError(path, "holds negative or repeated ids")
        extra = [reader.read_index() for _ in range(header.get("extra_indexes", 0))]
        restored._restore_extra(path, extra)
        return restored

    def _restore_extra(self, path: Path, indexes: list[faiss.Index]) -> None:
        """Take back the FAISS indexes that :meth:`_extra_indexes` saved."""


class ExactIndex(_FaissIndex):
    """Brute force over every template: exact, the reference for the approximate index, and the
    right choice for small galleries (about 1 ms per probe per 25k templates of 128-d on a core)."""

    kind = "exact"


#: Training sample per coarse centroid. FAISS warns below 39.
_TRAIN_POINTS_PER_LIST = 64

#: Fewest training vectors for the product quantiser (16 centroids per sub-space).
_PQ_TRAIN_POINTS = 65_536

#: Fewest lists scanned, so that small indexes (a few dozen lists) still search widely.
_MIN_NPROBE = 16

#: Default number of code-ranked candidates re-ranked exactly.
_CANDIDATES = 300

#: Queries re-ranked together (bounds the temporary copy of candidate vectors).
_RERANK_CHUNK = 64

#: Vectors encoded per FAISS call when (re)building the codes (bounds temporary memory).
_ENCODE_CHUNK = 100_000

#: Score of a missing result, as FAISS reports it (mapped to similarity 0).
_MISSING = np.float32(-np.finfo(np.float32).max)


class ApproximateIndex(_FaissIndex):
    """Compressed-code candidate search with exact re-ranking; grows with the gallery.

    Every template is held exactly (float32, as in :class:`ExactIndex`) and, once the gallery
    reaches ``train_size``, also as a 4-bit product-quantised code (one sub-quantiser per
    dimension, up to 128 per template: 64 bytes at 128-d) in an inverted file of
    :func:`nlist_for` lists, scanned with FAISS's SIMD "fast scan" kernels
    (``IndexIVFPQFastScan``). A query scans the ``nprobe`` nearest lists' codes (a
    :func:`probe_fraction_for` share of them unless set), takes the ``candidates`` best, and ranks
    those by exact inner product with the stored vectors, so the reported ids and similarities
    are exact; only whether the true nearest neighbour reaches the candidate list is approximate.
    Until ``train_size`` it is a flat index searched by brute force; at ``train_size`` the
    quantisers are trained and every template encoded, and each time ``nlist_for`` the size has
    doubled they are retrained on the whole gallery: total rebuild cost O(N).

    Removal is real in both structures: FAISS deletes the code from its inverted list, and the
    vector's row is overwritten by the last one and the freed row zeroed (no tombstones, no graph
    remnants), so after ``remove`` nothing derived from the template is left in the index or in
    a file saved afterwards.

    The vectors stay float32 at 10M (5.1 GB, with codes and ids about 6 GB — well within the
    machine): the re-ranked similarities are what thresholds are compared with, and float16 or
    8-bit vectors would make them approximate (errors of ~1e-3) for a saving of 2.6-3.8 GB.

    Why this design (benchmarks/search.py, dlib-calibrated synthetic templates, 1M x 128-d, one
    contended core): IVF-Flat needed 25% of 2,530 lists (~9 ms) for 99.3% top-1 agreement with
    exact search and reached only ~90% at 2 ms; 16k lists with an HNSW coarse quantiser did no
    better (89% at 2.6 ms, 98.7% at 10.6 ms); an HNSW graph (M=32, efConstruction 80) agreed on
    only 82% at 1 ms and cannot delete. Dlib templates use nearly all 128 dimensions (high
    intrinsic dimension, many near-ties), which defeats coarse partitions and graphs alike, but a
    fine per-dimension code ranks well enough that the exact answer is almost always among the
    best few hundred. At probe_fraction 1/2 and 300 candidates: 99.6% agreement (mated 99.6-99.75%,
    non-mated 99.5-99.65%), p50 1.6 ms in FAISS alone and 2.0-2.5 ms through this class on a
    core shared with other jobs (exact search measured 27-30 ms there, against ~20 ms unloaded);
    3/8 gave 98.75%, 5/8 99.95%. ``probe_fraction`` (share of lists scanned) and ``candidates``
    trade speed for agreement and may be changed at any time. At 10M (4,096 lists, 1,000
    queries) scanning 1/4 of the lists agreed on 99.5%, 1/8 on 97.5%, 1/16 on 92%: the share
    can shrink with finer lists, but the codes scanned still grow (2.5M at 10M against 0.5M at
    1M), and so does the time; FAISS's parallel kernel over lists (implem 14) on two threads was
    slower than one thread on this shared two-core machine. Memory: ~620 MB at 1M (float
    vectors 512 MB, codes 64 MB, ids); the saved file is ~565 MB before encryption.
    """

    kind = "approximate"

    def __init__(
        self, dim: int, *, train_size: int = 25_000, probe_fraction: float | None = None, candidates: int = _CANDIDATES
    ) -> None:
        if train_size < 1:
            raise ValueError(f"train_size must be positive, not {train_size}")
        if candidates < 1:
            raise ValueError(f"candidates must be positive, not {candidates}")
        self.train_size = train_size
        self.candidates = candidates
        super().__init__(dim)
        self._codes: faiss.IndexIVFPQFastScan | None = None
        self.probe_fraction = probe_fraction

    @property
    def probe_fraction(self) -> float:
        """Share of the lists a query scans: :func:`probe_fraction_for` the gallery's size unless
        set. May be changed at any time (e.g. widened for a serious case; None: automatic again),
        and is saved with the index."""
        return probe_fraction_for(self._count) if self._probe_fraction is None else self._probe_fraction

    @probe_fraction.setter
    def probe_fraction(self, fraction: float | None) -> None:
        if fraction is not None and not 0 < fraction <= 1:
            raise ValueError(f"probe_fraction must be in (0, 1], not {fraction}")
        self._probe_fraction = fraction
        self._apply_settings()

    @property
    def nlist(self) -> int:
        """Number of inverted lists; 0 while still flat (cold start)."""
        return 0 if self._codes is None else int(self._codes.nlist)

    @property
    def nprobe(self) -> int:
        """Lists scanned per query (0 while flat)."""
        return self._nprobe_for(self.nlist)

    @property
    def code_size(self) -> int:
        """Bytes of one template's code, which a query reads for each template in the lists it
        scans (0 while flat): its speed at millions of templates is this memory traffic's."""
        return 0 if self._codes is None else int(self._codes.code_size)

    def _nprobe_for(self, nlist: int) -> int:
        return min(nlist, max(_MIN_NPROBE, math.ceil(nlist * self.probe_fraction)))

    def describe(self) -> str:
        """Short structural summary for logs and benchmarks."""
        if self._codes is None:
            return "flat, untrained"
        return f"IVF{self.nlist},PQ{self._codes.M}x4fs nprobe={self.nprobe} rerank={self.candidates}"

    def _added(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if self._needs_training(self._count):
            self._codes = self._trained_codes()
        elif self._codes is not None:
            self._codes.add_with_ids(vectors, ids)
            self._configure(self._codes)  # the automatic probe fraction follows the size

    def _needs_training(self, total: int) -> bool:
        if total < self.train_size:
            return False
        return self._codes is None or nlist_for(total) >= 2 * self.nlist

    def _trained_codes(self) -> faiss.IndexIVFPQFastScan:
        """A new code index trained on (a sample of) the stored vectors and holding all of them."""
        vectors, ids = self._vectors[: self._count], self._row_ids[: self._count]
        nlist = nlist_for(len(vectors))
        quantizer = faiss.IndexFlatIP(self._dim)
        codes = faiss.IndexIVFPQFastScan(quantizer, self._dim, nlist, _pq_subquantizers(self._dim), 4, faiss.METRIC_INNER_PRODUCT)
        codes.own_fields = True
        quantizer.this.disown()  # now owned by ``codes``
        codes.by_residual = False
        codes.cp.spherical = True  # centroids on the unit sphere, like the templates
        codes.cp.max_points_per_centroid = _TRAIN_POINTS_PER_LIST
        codes.cp.seed = 1234  # reproducible partitions
        codes.train(_sample(vectors, max(_TRAIN_POINTS_PER_LIST * nlist, _PQ_TRAIN_POINTS)))
        for start in range(0, len(vectors), _ENCODE_CHUNK):
            codes.add_with_ids(vectors[start : start + _ENCODE_CHUNK], ids[start : start + _ENCODE_CHUNK])
        self._configure(codes)
        return codes

    def _configure(self, codes: faiss.IndexIVFPQFastScan) -> None:
        codes.nprobe = self._nprobe_for(codes.nlist)
        # Kernel 10 (one query block at a time, heap of results) is the fastest for single
        # probes with a few hundred candidates; the default choice was twice as slow at 1M.
        codes.implem = 10

    def _removing(self, ids: np.ndarray) -> None:
        if self._codes is not None:
            self._codes.remove_ids(faiss.IDSelectorBatch(ids))
            self._configure(self._codes)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._codes is None:
            return super().search(queries, k)
        queries = _check_vectors(queries, self._dim, "queries")
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        wanted = min(max(self.candidates, k), len(self))
        candidates = self._codes.search(queries, wanted)[1] if wanted else np.full((len(queries), 0), -1, dtype=np.int64)
        cosines = np.full((len(queries), k), _MISSING, dtype=np.float32)
        found = np.full((len(queries), k), -1, dtype=np.int64)
        for start in range(0, len(queries), _RERANK_CHUNK):
            block = slice(start, start + _RERANK_CHUNK)
            cosines[block], found[block] = self._rerank(queries[block], candidates[block], k)
        return cosine_to_similarity(cosines).astype(np.float32), found

    def _rerank(self, queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner products of ``queries`` with their ``candidates`` (-1 = none), best ``k``."""
        valid = candidates >= 0
        if valid.all():  # the usual case: one gather and one batched product
            vectors = self._vectors_of(candidates.ravel()).reshape(*candidates.shape, self._dim)
            scores = np.matmul(vectors, queries[:, :, None])[:, :, 0]
        else:
            scores = np.full(candidates.shape, _MISSING, dtype=np.float32)
            if valid.any():
                vectors = self._vectors_of(candidates[valid])
                owners = np.repeat(np.arange(len(queries)), valid.sum(axis=1))
                scores[valid] = np.einsum("ij,ij->i", vectors, queries[owners])
        take = min(k, candidates.shape[1])
        if take < candidates.shape[1]:
            best = np.argpartition(-scores, take - 1, axis=1)[:, :take]
            order = np.take_along_axis(best, np.argsort(-np.take_along_axis(scores, best, axis=1), axis=1), axis=1)
        else:
            order = np.argsort(-scores, axis=1)
        cosines = np.full((len(queries), k), _MISSING, dtype=np.float32)
        found = np.full((len(queries), k), -1, dtype=np.int64)
        cosines[:, :take] = np.take_along_axis(scores, order, axis=1)
        found[:, :take] = np.where(cosines[:, :take] > _MISSING, np.take_along_axis(candidates, order, axis=1), -1)
        return cosines, found

    def _settings(self) -> dict[str, Any]:
        return {"train_size": self.train_size, "probe_fraction": self._probe_fraction, "candidates": self.candidates}

    def _extra_indexes(self) -> list[faiss.Index]:
        return [] if self._codes is None else [self._codes]

    def _restore_extra(self, path: Path, indexes: list[faiss.Index]) -> None:
        if indexes:
            codes = indexes[0]  # deserialisation already returns the concrete type, and owns it
            if not isinstance(codes, faiss.IndexIVFPQFastScan) or codes.ntotal != self._count or codes.d != self._dim:
                raise IndexFileError(path, "holds a code index that does not match its templates")
            self._codes = codes
            self._configure(codes)

    def _apply_settings(self) -> None:
        """Set nprobe from the fraction (FAISS saves nprobe, but the fraction may have changed)."""
        if getattr(self, "_codes", None) is not None:
            self._configure(self._codes)


#: Gallery size up to which lists and probes keep the 1M tuning (√N/4 lists, half of them scanned).
_TUNED_SIZE = 1_000_000


def nlist_for(n: int) -> int:
    """Inverted lists for ``n`` templates: about √n/4 up to 1M (250 at 1M), so that lists hold
    thousands of codes each and the fast-scan kernels run on long blocks; beyond, n^1.2 (3,962
    at 10M: 2,500 codes a list), so that a query scanning a smaller share of finer lists still
    finds the nearest templates. Never so many that a list has fewer than 39 training points
    (FAISS's floor for a meaningful k-means)."""
    lists = math.sqrt(min(n, _TUNED_SIZE)) / 4 * (max(n, _TUNED_SIZE) / _TUNED_SIZE) ** 1.2
    return max(1, min(round(lists), n // 39))


def probe_fraction_for(n: int) -> float:
    """Default share of lists scanned for ``n`` templates: 3/4 up to 1M, then 3/4 (1M/n)^0.08
    (5/8 at 10M). It is set by the default model's templates, SFace-shaped (near-orthogonal
    impostors; benchmarks/search.py --profile sface, 1,000 queries): at 1M scanning 1/2 of the
    lists agreed with exact search on 95.4% of queries, 3/4 on 99.2% and all on 100% (p50 6.5,
    7.7 and 9.2 ms), whatever the candidates re-ranked; at 10M (2,896 lists) 3/8 agreed on
    96.2%, 1/2 on 98.7%, 3/4 on 100% (p50 19.8, 23.9 and 35.2 ms). Dlib-shaped templates need
    less: 99.6% at 1/2 of 1M, 99.5% at 1/4 of 10M."""
    return 0.75 * min(1.0, _TUNED_SIZE / max(n, 1)) ** 0.08


def _pq_subquantizers(dim: int) -> int:
    """Sub-quantisers of the product code: one per dimension up to 128 (finer codes lost
    agreement on near-ties: 64 two-dimensional ones needed 30x the candidates), else the
    largest divisor of ``dim`` not above 128."""
    return next(m for m in range(min(dim, 128), 0, -1) if dim % m == 0)


def open_index(path: Path, dim: int, cipher: Cipher, approximate: bool = True) -> TemplateIndex:
    """The index stored at ``path`` if the file exists (whatever its kind), else a new empty one.

    ``approximate`` chooses the kind only for a new index. A stored index of another dimension
    is refused: it belongs to another model.
    """
    path = Path(path)
    if path.exists():
        index = TemplateIndex.load(path, cipher)
        if index.dim != dim:
            raise IndexFileError(path, f"holds {index.dim}-d templates, not {dim}-d (another model's index?)")
        return index
    return ApproximateIndex(dim) if approximate else ExactIndex(dim)


def _check_vectors(vectors: np.ndarray, dim: int, what: str) -> np.ndarray:
    """``vectors`` as a contiguous float32 N x dim array, or a clear error naming the bad row."""
    array = np.asarray(vectors)
    if array.ndim != 2 or array.shape[1] != dim:
        raise InvalidTemplateError(f"{what} must be an N x {dim} array, not shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise InvalidTemplateError(f"{what} must be floating point, not {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1)  # NaN or inf in a row makes its norm non-finite
    bad = np.flatnonzero(~np.isfinite(norms))
    if len(bad):
        raise InvalidTemplateError(f"{what} row {bad[0]} contains NaN or infinity")
    bad = np.flatnonzero(np.abs(norms - 1.0) > UNIT_TOLERANCE)
    if len(bad):
        raise InvalidTemplateError(
            f"{what} row {bad[0]} has length {norms[bad[0]]:.4g}, not 1: templates must be unit length"
        )
    return array


#: Changes of up to this many ids shift the sorted arrays' tails in place, one run per id; larger
#: ones (a bulk load) merge into new arrays in one pass.
_IN_PLACE_CHANGE = 64


def _grown(array: np.ndarray, count: int, capacity: int) -> np.ndarray:
    """A copy of ``array``'s first ``count`` entries with room for ``capacity``."""
    grown = np.empty(max(capacity, count + 1), dtype=array.dtype)
    grown[:count] = array[:count]
    return grown


def _insert_in_place(ids: np.ndarray, rows: np.ndarray, count: int, positions: np.ndarray, new_ids: np.ndarray, new_rows: np.ndarray) -> None:
    """Insert sorted ``new_ids`` (and their rows) at their ``positions`` among the first
    ``count`` entries, working from the back so that each run of old entries moves once."""
    end = count
    for j in range(len(new_ids) - 1, -1, -1):
        at = int(positions[j])
        ids[at + j + 1 : end + j + 1] = ids[at:end]  # NumPy copies overlapping runs correctly
        rows[at + j + 1 : end + j + 1] = rows[at:end]
        ids[at + j], rows[at + j] = new_ids[j], new_rows[j]
        end = at


def _delete_in_place(ids: np.ndarray, rows: np.ndarray, count: int, positions: np.ndarray) -> None:
    """Remove the entries at sorted, distinct ``positions`` from the first ``count``, closing the
    gaps (the run after the j-th removed entry moves j + 1 places towards the front)."""
    if len(positions) > _IN_PLACE_CHANGE:
        keep = np.ones(count, dtype=bool)
        keep[positions] = False
        kept = int(keep.sum())
        ids[:kept], rows[:kept] = ids[:count][keep], rows[:count][keep]
        return
    for j, at in enumerate(int(position) for position in positions):
        following = int(positions[j + 1]) if j + 1 < len(positions) else count
        ids[at - j : following - j - 1] = ids[at + 1 : following]
        rows[at - j : following - j - 1] = rows[at + 1 : following]


def _check_ids(ids: np.ndarray) -> np.ndarray:
    array = np.asarray(ids)
    if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
        raise InvalidIdError(f"ids must be a 1-d integer array, not {array.dtype} of shape {array.shape}")
    if array.size and (array.min() < 0 or array.max() > np.iinfo(np.int64).max):
        raise InvalidIdError("ids must be non-negative int64 values (-1 means 'no result' in searches)")
    return np.ascontiguousarray(array, dtype=np.int64)


def _refuse_duplicates(stored: np.ndarray, ids: np.ndarray) -> None:
    unique, counts = np.unique(ids, return_counts=True)
    duplicates = np.union1d(unique[counts > 1], _present(stored, unique))
    if len(duplicates):
        raise DuplicateIdError(duplicates)


def _membership(stored: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Whether each of ``candidates`` is in sorted ``stored`` (binary search: O(c log N))."""
    positions = np.searchsorted(stored, candidates)
    found = positions < len(stored)
    found[found] = stored[positions[found]] == candidates[found]
    return found


def _present(stored: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The ``candidates`` that are in sorted ``stored``."""
    return candidates[_membership(stored, candidates)]


def _sample(vectors: np.ndarray, n: int) -> np.ndarray:
    if len(vectors) <= n:
        return vectors
    rows = np.random.default_rng(1234).choice(len(vectors), n, replace=False)
    return vectors[np.sort(rows)]


def _raw_bytes(array: np.ndarray) -> memoryview:
    """A contiguous array's memory as bytes, without a copy; unlike ``memoryview.cast`` this also
    works for an empty index (a zero in the shape)."""
    return memoryview(array.reshape(-1).view(np.uint8))


def _write_file(path: Path, cipher: Cipher, header: dict[str, Any], index: _FaissIndex) -> bytes:
    """Stream header, ids, vectors and FAISS indexes into a sealed file (``sealed.py``: records
    of at most 64 MiB, each encrypted and authenticated, the file replaced atomically), never
    holding a serialised copy of the index: at 10M templates that copy was 6 GB, and one AES-GCM
    call refuses more than 2 GiB. Returns the new file's random stream id."""
    header_bytes = json.dumps(header).encode()
    writer = sealed.SealedWriter(path, cipher)
    try:
        writer.write(_MAGIC + _HEADER_LENGTH.pack(len(header_bytes)) + header_bytes)
        writer.write(_raw_bytes(index._row_ids[: len(index)]))
        writer.write(_raw_bytes(index._vectors[: len(index)]))
        for extra in index._extra_indexes():
            faiss.write_index(extra, faiss.PyCallbackIOWriter(writer.write))
        writer.commit()
    except BaseException:
        writer.abandon()
        raise
    return writer.stream


class _StreamReader:
    """Reads the plaintext of a sealed index file in order, one segment in memory at a time;
    every problem is an :class:`IndexFileError` naming the file."""

    def __init__(self, path: Path, stream: bytes, segments: Iterator[bytes]) -> None:
        self.path, self.stream, self._segments = path, stream, segments
        self._segment, self._offset = b"", 0

    @classmethod
    @contextmanager
    def open(cls, path: Path, cipher: Cipher) -> Iterator[_StreamReader]:
        try:
            if not sealed.is_sealed(path):
                raise IndexFileError(path, "is not an openfrt template index of this version (an older one is rebuilt from the database)")
            stream, segments = sealed.read_sealed(path, cipher)
        except OSError as error:
            raise IndexFileError(path, f"cannot be read: {error.strerror or error}") from error
        except sealed.SealedFileError as error:
            raise IndexFileError(path, f"cannot be decrypted (wrong key, or not an index file): {error}") from error
        try:
            yield cls(path, stream, segments)
        except sealed.SealedFileError as error:
            raise IndexFileError(path, f"holds a corrupt index: {error}") from error
        finally:
            segments.close()  # type: ignore[attr-defined]

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at the end of the stream)."""
        if self._offset == len(self._segment):
            self._segment, self._offset = next(self._segments, b""), 0
        chunk = self._segment[self._offset : self._offset + n]
        self._offset += len(chunk)
        return chunk

    def readinto(self, array: np.ndarray) -> None:
        """Fill ``array`` (contiguous) from the stream, or fail if the stream ends first."""
        target = _raw_bytes(array)
        filled = 0
        while filled < len(target):
            chunk = self.read(len(target) - filled)
            if not chunk:
                raise IndexFileError(self.path, "holds a corrupt index: it ends early")
            target[filled : filled + len(chunk)] = chunk
            filled += len(chunk)

    def read_header(self) -> dict[str, Any]:
        prefix = np.empty(len(_MAGIC) + _HEADER_LENGTH.size, dtype=np.uint8)
        self.readinto(prefix)
        if prefix[: len(_MAGIC)].tobytes() != _MAGIC:
            raise IndexFileError(self.path, "is not an openfrt template index (wrong key, or another file)")
        (length,) = _HEADER_LENGTH.unpack(prefix[len(_MAGIC) :].tobytes())
        header_bytes = np.empty(length, dtype=np.uint8)
        self.readinto(header_bytes)
        try:
            header = json.loads(header_bytes.tobytes())
        except ValueError as error:
            raise IndexFileError(self.path, f"has a corrupt header: {error}") from error
        if not isinstance(header, dict) or header.get("format") != _FORMAT_VERSION:
            found = header.get("format") if isinstance(header, dict) else None
            raise IndexFileError(self.path, f"has index format {found!r}; this openfrt reads format {_FORMAT_VERSION}")
        return header

    def read_index(self) -> faiss.Index:
        try:
            return faiss.read_index(faiss.PyCallbackIOReader(self.read))
        except RuntimeError as error:
            raise IndexFileError(self.path, f"holds a corrupt index: {error}") from error

    def finish(self) -> None:
        """Insist that the stream ends here (and that its last record is there)."""
        if self.read(1) or next(self._segments, None) is not None:
            raise IndexFileError(self.path, "holds a corrupt index: data after its end")
