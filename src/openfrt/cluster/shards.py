"""The reference index split over Ray actors: each shard holds part of the templates in memory.

A national custody collection (tens of millions of templates) does not fit one machine's memory
as float vectors. :class:`ShardedIndex` implements the same :class:`TemplateIndex` contract as a
single index, so :class:`~openfrt.gallery.reference_index.ReferenceIndexes` (and every search,
enrolment and deletion through the gallery) uses it unchanged:

* Template ``id`` lives in shard ``id % shards`` (database ids spread evenly); an add or remove
  is split by shard and sent to exactly those shards, and returns once they have applied it.
* A search goes to every shard at once; each returns its ``k`` best, and the merge keeps the
  ``k`` best overall — the same answer as one index holding every template, for exact shards;
  approximate shards (FAISS IVF-PQ codes with exact re-ranking, as the single index) scan the
  codes of all their lists (:data:`SHARD_PROBE_FRACTION`), so that which list a template fell
  in cannot hide it: the answer then agrees with exact search however the shards were trained.
* Each shard saves itself to its own file, encrypted with a key derived from the records key for
  this purpose only, on the node where it runs; templates reach it sealed (``sealing.py``), so
  neither Ray's object store nor its spill files ever hold a template in the clear.

Shards are ordinary actors owned by this process: they live as long as the index, and a shard
lost with its node is started again by Ray and reloads its file (or, if its node cannot see the
file, the gallery rebuilds the index from the database, which is the source of truth).
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray.exceptions import RayActorError, RayTaskError
from openfrt.cluster.sealing import Seal
from openfrt.cluster.settings import ClusterSettings
from openfrt.gallery.index import (
    ApproximateIndex,
    Cipher,
    ExactIndex,
    IndexFileError,
    TemplateIndex,
    TemplateIndexError,
    open_index,
)
from openfrt.gallery.reference_index import ReferenceIndexes
from openfrt.records.crypto import Cipher as RecordsCipher
from openfrt.records.store import RecordStore

#: Share of its inverted lists each approximate shard scans. On dlib-like templates (60k in two
#: shards, 2,000 probes) top-1 agreement with exact search was 98.4% scanning 1/2 of the lists,
#: 99.45% at 5/8, 99.8% at 3/4 and 100% at all of them, whatever the re-ranking depth (300-1,000):
#: the misses are templates in unvisited lists. A shard holds 1/N of the codes and scans them in
#: parallel with the others, so all of them (benchmarks/cluster.py has the cost).
SHARD_PROBE_FRACTION = 1.0

#: How often a call to a shard that Ray is restarting is tried again, and the pause between tries.
RESTART_ATTEMPTS = 60
RESTART_PAUSE_SECONDS = 0.5


class IndexShard:
    """The body of one shard actor (wrapped by ``ray.remote``): one :class:`TemplateIndex`."""

    def __init__(self, number: int) -> None:
        self.number = number
        self._index: TemplateIndex | None = None
        self._path: Path | None = None
        self._seal: Seal | None = None

    def open(self, path: str, key: bytes, dim: int, approximate: bool, fresh: bool) -> tuple[int, int]:
        """Load the shard's file if it exists and not ``fresh`` (else start empty, deleting any
        file); returns (templates, pid)."""
        self._seal, self._path = Seal(key), Path(path)
        cipher = _SealCipher(self._seal)
        if fresh:
            self._path.unlink(missing_ok=True)
        self._index = open_index(self._path, dim, cipher, approximate) if self._path.exists() else _new_index(dim, approximate)
        if isinstance(self._index, ApproximateIndex):
            self._index.probe_fraction = SHARD_PROBE_FRACTION
        return len(self._index), os.getpid()

    def add(self, ids: np.ndarray, sealed_vectors: bytes) -> int:
        self._opened().add(ids, self._unseal(sealed_vectors))
        return len(self._opened())

    def remove(self, ids: np.ndarray) -> int:
        return self._opened().remove(ids)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        return self._opened().contains(ids)

    def search(self, sealed_queries: bytes, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._opened().search(self._unseal(sealed_queries), k)

    def save(self) -> None:
        assert self._path is not None and self._seal is not None
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._opened().save(self._path, _SealCipher(self._seal))

    def memory(self) -> dict[str, int]:
        """Templates held and this process's resident memory now and at its peak (bytes)."""
        with open("/proc/self/statm") as statm:
            rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        return {"templates": len(self._opened()), "rss": rss, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}

    def _opened(self) -> TemplateIndex:
        if self._index is None:
            raise ShardNotOpenError(f"index shard {self.number} was restarted and must be opened again")
        return self._index

    def _unseal(self, sealed: bytes) -> np.ndarray:
        assert self._seal is not None
        return self._seal.open(sealed)


class ShardNotOpenError(TemplateIndexError):
    """A shard actor holds no index: Ray restarted it (its node died) since it was opened."""


class _SealCipher:
    """A shard file's cipher: the shard key's AES-GCM (the ``Cipher`` protocol of ``index.py``)."""

    def __init__(self, seal: Seal) -> None:
        self._cipher = RecordsCipher(seal.key)

    def encrypt(self, data: bytes) -> bytes:
        return self._cipher.encrypt(data)

    def decrypt(self, data: bytes) -> bytes:
        return self._cipher.decrypt(data)


def _call(method: str, *args: Any) -> Callable[[Any], Any]:
    """A call of ``method`` with ``args`` on whichever shard handle it is given."""
    return lambda shard: getattr(shard, method).remote(*args)


def _new_index(dim: int, approximate: bool) -> TemplateIndex:
    return ApproximateIndex(dim) if approximate else ExactIndex(dim)


class ShardedIndex(TemplateIndex):
    """A :class:`TemplateIndex` whose templates are spread over ``shards`` Ray actors.

    ``key`` protects the shard files and the templates sent to the shards; ``directory`` is where
    each shard keeps its file (``<stem>.shard-<i>-of-<n>``), on the node where it runs.
    """

    kind = "sharded"

    def __init__(
        self, path: Path, dim: int, key: bytes, shards: int, *, approximate: bool = True, cpus: float = 1.0, fresh: bool = False
    ) -> None:
        if shards < 1:
            raise ValueError(f"a sharded index needs at least one shard, not {shards}")
        self.path = Path(path)
        self._dim = dim
        self._seal = Seal(key)
        self._approximate = approximate
        self._count = 0
        make = ray.remote(IndexShard).options(num_cpus=cpus, max_restarts=-1, max_task_retries=0, scheduling_strategy="SPREAD")
        self.shards = [make.remote(number) for number in range(shards)]
        counts = ray.get([self._open(number, fresh) for number in range(shards)])
        self._count = sum(count for count, _ in counts)
        #: Each shard's process id (for operators and tests).
        self.pids = [pid for _, pid in counts]

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return self._count

    def shard_path(self, number: int) -> Path:
        return self.path.with_name(f"{self.path.name}.shard-{number}-of-{len(self.shards)}")

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = np.asarray(ids, dtype=np.int64), np.asarray(vectors, dtype=np.float32)
        if ids.ndim != 1 or vectors.ndim != 2 or len(ids) != len(vectors) or vectors.shape[1] != self._dim:
            raise TemplateIndexError(f"{len(ids)} ids for vectors of shape {vectors.shape} (dimension {self._dim})")
        self._on_shards({number: _call("add", ids[rows], self._seal.seal(vectors[rows])) for number, rows in self._split(ids)})
        self._count += len(ids)

    def remove(self, ids: np.ndarray) -> int:
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        removed = sum(self._on_shards({number: _call("remove", ids[rows]) for number, rows in self._split(ids)}).values())
        self._count -= removed
        return removed

    def contains(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        found = np.zeros(len(ids), dtype=bool)
        split = self._split(ids)
        answers = self._on_shards({number: _call("contains", ids[rows]) for number, rows in split})
        for number, rows in split:
            found[rows] = answers[number]
        return found

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Every shard's ``k`` best, merged: the ``k`` best overall, best first."""
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        sealed = self._seal.seal(np.ascontiguousarray(queries, dtype=np.float32))  # inline if small, else put once by Ray
        answers = list(self._on_shards({number: _call("search", sealed, k) for number in range(len(self.shards))}).values())
        similarities = np.concatenate([s for s, _ in answers], axis=1)
        ids = np.concatenate([i for _, i in answers], axis=1)
        similarities = np.where(ids >= 0, similarities, -1.0)  # a shard with fewer than k entries
        order = np.argsort(-similarities, axis=1, kind="stable")[:, :k]
        best_ids = np.take_along_axis(ids, order, axis=1)
        return np.take_along_axis(similarities, order, axis=1).clip(0.0).astype(np.float32), best_ids

    def save(self, path: Path, cipher: Cipher) -> None:
        """Each shard writes its own encrypted file; then ``path`` records the layout (encrypted
        with the records key), so a later open knows how many shards the files are for."""
        self._on_shards({number: _call("save") for number in range(len(self.shards))})
        layout = json.dumps({"kind": self.kind, "dim": self._dim, "shards": len(self.shards), "count": self._count}).encode()
        partial = Path(path).with_name(Path(path).name + ".partial")
        partial.write_bytes(cipher.encrypt(layout))
        os.replace(partial, path)

    def memory(self) -> list[dict[str, int]]:
        return ray.get([shard.memory.remote() for shard in self.shards])

    def close(self) -> None:
        """Kill the shard actors: the decrypted templates go with their processes."""
        for shard in self.shards:
            ray.kill(shard, no_restart=True)

    def _open(self, number: int, fresh: bool) -> Any:
        return self.shards[number].open.remote(str(self.shard_path(number)), self._seal.key, self._dim, self._approximate, fresh)

    def _on_shards(self, work: dict[int, Callable[[Any], Any]]) -> dict[int, Any]:
        """``work[number](shard)`` on those shards at once, results by shard number. A shard that
        Ray restarted (its process or node died) is opened again from its file — written after
        every change the gallery makes — and asked again."""
        results: dict[int, Any] = {}
        for attempt in range(RESTART_ATTEMPTS):
            calls = {number: call(self.shards[number]) for number, call in work.items() if number not in results}
            for number, ref in calls.items():
                try:
                    results[number] = ray.get(ref)
                except (RayActorError, RayTaskError) as exc:
                    if isinstance(exc, RayTaskError) and not isinstance(exc.cause, ShardNotOpenError):
                        raise
                    if attempt == RESTART_ATTEMPTS - 1:
                        raise
                    self._reopen(number)
            if len(results) == len(work):
                break
        return dict(sorted(results.items()))

    def _reopen(self, number: int) -> None:
        time.sleep(RESTART_PAUSE_SECONDS)
        try:
            self.pids[number] = ray.get(self._open(number, fresh=False))[1]
        except RayActorError:
            pass  # still restarting: the next attempt opens it

    def _split(self, ids: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """(shard, rows of ``ids`` it holds) for each shard that holds any."""
        owners = ids % len(self.shards)
        return [(number, np.flatnonzero(owners == number)) for number in range(len(self.shards)) if (owners == number).any()]




class ShardedReferenceIndexes(ReferenceIndexes):
    """The gallery's reference indexes, each split over ``settings.index_shards`` shard actors.

    Their layout files sit beside the single-machine index files under other names, so one data
    directory can serve both modes; each is checked against the database as the single index is.
    """

    def __init__(self, store: RecordStore, settings: ClusterSettings) -> None:
        super().__init__(store)
        self.settings = settings
        #: Shard files and templates in transit to shards: a key derived for that alone, so a
        #: shard's node never holds the key of the database's biometric columns.
        self._key = store.cipher.derived_key(b"index shards v1")

    def close(self) -> None:
        """Kill the shard actors of every open index (their templates go with them)."""
        for entry in self._open.values():
            if isinstance(entry.index, ShardedIndex):
                entry.index.close()
        super().close()

    #: Each shard saves its own file on every change (a restarted shard reloads it), so there is
    #: no journal to replay.
    journaled = False

    def path(self, model_id: str) -> Path:
        single = super().path(model_id)
        return single.with_name(single.stem + ".sharded" + single.suffix)

    def _open_index(self, path: Path, dim: int, *, fresh: bool) -> TemplateIndex:
        shards = self.settings.index_shards
        if path.exists() and not fresh:
            try:
                layout = json.loads(self.store.cipher.decrypt(path.read_bytes()))
            except (OSError, ValueError) as exc:
                raise IndexFileError(path, f"is not a sharded index layout: {exc}") from exc
            fresh = layout.get("shards") != shards or layout.get("dim") != dim  # another layout: start again
        return ShardedIndex(path, dim, self._key, shards, cpus=self.settings.shard_cpus, fresh=fresh or not path.exists())
