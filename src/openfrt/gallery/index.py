"""Template indexes: the nearest enrolled templates to a probe, over galleries of millions.

Retrospective search compares a probe with every custody image on record. Up to a few tens of
thousands of templates brute force is exact and fast enough (:class:`ExactIndex`); beyond that
:class:`ApproximateIndex` partitions the gallery into inverted lists (FAISS IVF) and scans only
the lists nearest the probe. IVF rather than a graph index (HNSW) because deleting a person's
record must delete their templates, and FAISS's HNSW cannot remove entries.

Vectors are unit-length templates, so inner product is cosine; results are reported on
openfrt's 0..1 similarity scale (:func:`~openfrt.vision.types.cosine_to_similarity`).
Indexes are persisted encrypted (templates are biometric data) with a caller-supplied cipher.

Indexes are not thread-safe: searches may run concurrently with each other, but ``add`` and
``remove`` need exclusive access (the caller's lock).
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Protocol

import faiss
import numpy as np

from openfrt.errors import OpenFRTError
from openfrt.vision.types import cosine_to_similarity

#: How far a vector's length may be from 1 (float32 rounding, format conversion) before it is
#: refused: inner products are only cosines for unit vectors.
UNIT_TOLERANCE = 1e-3

_MAGIC = b"OFRT-IDX"
_FORMAT_VERSION = 1
_HEADER_LENGTH = struct.Struct("<I")

class Cipher(Protocol):
    """What :meth:`TemplateIndex.save` and :meth:`TemplateIndex.load` need to protect the file."""

    def encrypt(self, data: bytes) -> bytes: ...

    def decrypt(self, data: bytes) -> bytes: ...


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
        header, index = _read_file(path, cipher)
        kinds = {subclass.kind: subclass for subclass in (ExactIndex, ApproximateIndex)}
        loaded_class = kinds.get(header.get("kind"))
        if loaded_class is None or not issubclass(loaded_class, cls):
            raise IndexFileError(path, f"holds a {header.get('kind')!r} index, not {cls.__name__}")
        return loaded_class._restore(path, header, index)


class _FaissIndex(TemplateIndex):
    """Input checks, id bookkeeping and persistence shared by the FAISS-backed indexes.

    ``_ids`` keeps every stored id sorted, so that duplicate adds and the count of removals are
    known before FAISS is touched (FAISS itself accepts duplicate ids silently).
    """

    def __init__(self, dim: int) -> None:
        if dim < 1:
            raise ValueError(f"dimension must be positive, not {dim}")
        self._dim = dim
        self._ids = np.empty(0, dtype=np.int64)
        self._index: faiss.Index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = _check_vectors(vectors, self._dim, "vectors")
        ids = _check_ids(ids)
        if len(ids) != len(vectors):
            raise InvalidIdError(f"{len(ids)} ids for {len(vectors)} vectors")
        _refuse_duplicates(self._ids, ids)
        if len(ids):
            self._add_checked(ids, vectors)
            self._ids = _insert_sorted(self._ids, ids)

    def _add_checked(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        present = _present(self._ids, np.unique(_check_ids(ids)))
        if not len(present):
            return 0
        removed = self._index.remove_ids(present)
        self._ids = np.delete(self._ids, np.searchsorted(self._ids, present))
        return int(removed)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = _check_vectors(queries, self._dim, "queries")
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        cosines, ids = self._index.search(queries, k)
        # Missing entries come back as -FLT_MAX, which the scale's clipping maps to 0.
        return cosine_to_similarity(cosines).astype(np.float32), ids

    def save(self, path: Path, cipher: Cipher) -> None:
        header = {"format": _FORMAT_VERSION, "kind": self.kind, "dim": self._dim, "settings": self._settings()}
        _write_file(Path(path), cipher, header, self._index)

    def _settings(self) -> dict[str, Any]:
        """Constructor settings to persist beside the FAISS index."""
        return {}

    @classmethod
    def _restore(cls, path: Path, header: dict[str, Any], index: faiss.Index) -> _FaissIndex:
        """Rebuild an instance from a file's header and FAISS index (``path`` for errors)."""
        dim = header.get("dim")
        if dim != index.d:
            raise IndexFileError(path, f"header says dimension {dim} but the stored index has {index.d}")
        restored = cls(dim, **header.get("settings", {}))
        restored._index = index
        restored._ids = np.sort(_stored_ids(index))
        restored._apply_settings()
        return restored

    def _apply_settings(self) -> None:
        """Push settings that live outside the FAISS index into it (after load or a change)."""


class ExactIndex(_FaissIndex):
    """Brute force over every template: exact, the reference for the approximate index, and the
    right choice for small galleries (about 1 ms per probe per 25k templates of 128-d on a core)."""

    kind = "exact"


class ApproximateIndex(_FaissIndex):
    """Inverted-file index (FAISS IVFFlat, inner product) that grows with the gallery.

    Until ``train_size`` templates are held it is a flat index, because k-means needs data to
    train on (and brute force is fast at that size); at that size it trains ``nlist`` ≈ 4·√N
    coarse centroids and moves every template into the inverted lists. Each time N has grown
    fourfold since the last training nlist would be twice what it is, so it is retrained on the
    whole gallery: per-query cost stays about √N, and geometric growth keeps the total cost
    of rebuilds O(N). Removal never retrains.

    A query scans the ``nprobe`` lists whose centroids are nearest; ``probe_fraction`` sets
    nprobe as a fraction of nlist (at least 16) and trades speed for agreement with exact
    search. On dlib-calibrated synthetic templates at 1M (benchmarks/search.py), top-1 agreed
    with exact search on 89.9% / 96.3% / 99.3% of probes at 1/16 / 1/8 / 1/4, at p50 2.2 /
    4.3 / 8.9 ms on one (contended) core, against 20 ms for brute force. The default, 1/4, puts
    agreement first: a missed best match matters more in retrospective search than
    milliseconds. Vectors are stored exactly (IVFFlat): 8-bit scalar quantisation halved scan
    time but lost agreement on near-ties (92% against 96% at the same nprobe), and near-ties
    are the norm at this scale, where many impostors score alike.
    """

    kind = "approximate"

    def __init__(self, dim: int, *, train_size: int = 25_000, probe_fraction: float = 1 / 4) -> None:
        if train_size < 1:
            raise ValueError(f"train_size must be positive, not {train_size}")
        self.train_size = train_size
        super().__init__(dim)
        self.probe_fraction = probe_fraction

    @property
    def probe_fraction(self) -> float:
        """Share of the lists a query scans; may be changed at any time (e.g. widened for a
        serious case), and is saved with the index."""
        return self._probe_fraction

    @probe_fraction.setter
    def probe_fraction(self, fraction: float) -> None:
        if not 0 < fraction <= 1:
            raise ValueError(f"probe_fraction must be in (0, 1], not {fraction}")
        self._probe_fraction = fraction
        self._apply_settings()

    @property
    def nlist(self) -> int:
        """Number of inverted lists; 0 while still flat (cold start)."""
        ivf = faiss.try_extract_index_ivf(self._index)
        return 0 if ivf is None else int(ivf.nlist)

    @property
    def nprobe(self) -> int:
        """Lists scanned per query (0 while flat)."""
        return self._nprobe_for(self.nlist)

    def _nprobe_for(self, nlist: int) -> int:
        return min(nlist, max(_MIN_NPROBE, math.ceil(nlist * self._probe_fraction)))

    def describe(self) -> str:
        """Short structural summary for logs and benchmarks."""
        return f"IVF{self.nlist},Flat nprobe={self.nprobe}" if self.nlist else "flat, untrained"

    def _add_checked(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        total = len(self) + len(ids)
        if not self._needs_training(total):
            self._index.add_with_ids(vectors, ids)
            return
        old_ids = self._ids
        all_ids = np.concatenate([old_ids, ids])
        all_vectors = np.concatenate([self._index.reconstruct_batch(old_ids), vectors]) if len(old_ids) else vectors
        self._index = self._trained_index(all_ids, all_vectors)

    def _needs_training(self, total: int) -> bool:
        if total < self.train_size:
            return False
        return self.nlist == 0 or nlist_for(total) >= 2 * self.nlist

    def _trained_index(self, ids: np.ndarray, vectors: np.ndarray) -> faiss.Index:
        """A new IVF index trained on (a sample of) ``vectors`` and holding all of them."""
        nlist = nlist_for(len(vectors))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self._dim), self._dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.spherical = True  # centroids on the unit sphere, like the templates
        index.cp.max_points_per_centroid = _TRAIN_POINTS_PER_LIST
        index.cp.seed = 1234  # reproducible partitions
        index.train(_sample(vectors, _TRAIN_POINTS_PER_LIST * nlist))
        # A hashtable direct map lets ids be removed and vectors fetched (for retraining)
        # by lookup instead of a scan of every list.
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        index.add_with_ids(vectors, ids)
        index.nprobe = self._nprobe_for(nlist)
        return index

    def _settings(self) -> dict[str, Any]:
        return {"train_size": self.train_size, "probe_fraction": self.probe_fraction}

    def _apply_settings(self) -> None:
        """Set nprobe from the fraction (FAISS saves nprobe, but the fraction may have changed)."""
        ivf = faiss.try_extract_index_ivf(self._index)
        if ivf is not None:
            ivf.nprobe = self._nprobe_for(ivf.nlist)


#: Training sample per centroid. FAISS warns below 39; 64 keeps k-means on 1M templates to
#: tens of seconds.
_TRAIN_POINTS_PER_LIST = 64

#: Fewest lists scanned, so that small indexes (a few hundred lists) still search widely.
_MIN_NPROBE = 16


def nlist_for(n: int) -> int:
    """Coarse centroids for ``n`` templates: about 4·√n, which balances the cost of comparing
    with the centroids against the cost of scanning lists, but never so many that a centroid
    has fewer than 39 training points (FAISS's floor for a meaningful k-means)."""
    return max(1, min(round(4 * math.sqrt(n)), n // 39))


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


def _present(stored: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The sorted, unique ``candidates`` that are in sorted ``stored``."""
    positions = np.searchsorted(stored, candidates)
    found = positions < len(stored)
    found[found] = stored[positions[found]] == candidates[found]
    return candidates[found]


def _insert_sorted(stored: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Merge ``ids`` (absent from ``stored``) into sorted ``stored``: one O(N) copy, not a re-sort."""
    ids = np.sort(ids)
    return np.insert(stored, np.searchsorted(stored, ids), ids)


def _sample(vectors: np.ndarray, n: int) -> np.ndarray:
    if len(vectors) <= n:
        return vectors
    rows = np.random.default_rng(1234).choice(len(vectors), n, replace=False)
    return vectors[np.sort(rows)]


def _stored_ids(index: faiss.Index) -> np.ndarray:
    """Every id held by a flat (IDMap2) or IVF FAISS index."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return faiss.vector_to_array(faiss.downcast_index(index).id_map).astype(np.int64)
    lists = ivf.invlists
    chunks = [
        faiss.rev_swig_ptr(lists.get_ids(number), lists.list_size(number)).copy()
        for number in range(ivf.nlist)
        if lists.list_size(number)
    ]
    return np.concatenate(chunks) if chunks else np.empty(0, dtype=np.int64)


def _write_file(path: Path, cipher: Cipher, header: dict[str, Any], index: faiss.Index) -> None:
    """Encrypt header and index into a temporary file beside ``path``, then rename it over.

    The temporary file is created mode 0600 (mkstemp) and fsynced before the rename, so readers
    see the old index or the new one, never a torn write.
    """
    header_bytes = json.dumps(header).encode()
    payload = b"".join([_MAGIC, _HEADER_LENGTH.pack(len(header_bytes)), header_bytes, faiss.serialize_index(index)])
    ciphertext = cipher.encrypt(payload)
    del payload
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(ciphertext)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _read_file(path: Path, cipher: Cipher) -> tuple[dict[str, Any], faiss.Index]:
    try:
        ciphertext = path.read_bytes()
    except OSError as error:
        raise IndexFileError(path, f"cannot be read: {error.strerror or error}") from error
    try:
        payload = cipher.decrypt(ciphertext)
    except Exception as error:  # the cipher is the caller's; any failure means the same thing
        raise IndexFileError(path, f"cannot be decrypted (wrong key, or not an index file): {error!r}") from error
    del ciphertext
    if not payload.startswith(_MAGIC) or len(payload) < len(_MAGIC) + _HEADER_LENGTH.size:
        raise IndexFileError(path, "is not an openfrt template index (wrong key, or another file)")
    start = len(_MAGIC) + _HEADER_LENGTH.size
    (header_length,) = _HEADER_LENGTH.unpack_from(payload, len(_MAGIC))
    try:
        header = json.loads(payload[start : start + header_length])
    except ValueError as error:
        raise IndexFileError(path, f"has a corrupt header: {error}") from error
    if not isinstance(header, dict) or header.get("format") != _FORMAT_VERSION:
        found = header.get("format") if isinstance(header, dict) else None
        raise IndexFileError(path, f"has index format {found!r}; this openfrt reads format {_FORMAT_VERSION}")
    try:
        index = faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8, offset=start + header_length))
    except RuntimeError as error:
        raise IndexFileError(path, f"holds a corrupt index: {error}") from error
    return header, index
