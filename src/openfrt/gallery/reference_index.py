"""The approximate search index over the whole reference database, kept in step with it.

One encrypted index file per model id lives in ``<home>/index/``. The database is the source of
truth; the index is derived from it. Beside each index file, a manifest records a digest of the
template ids it holds; when that does not match the database (a crash between commit and save,
two processes enrolling at once, a restored backup), the index is rebuilt from the database
instead of silently missing subjects or keeping deleted ones.

Changes are not written by re-saving the index (6 GB at 10M templates): each enrolment or
removal appends one sealed record to a change journal beside it (``<model>.journal``, records
of ``sealed.py`` bound to the snapshot's stream id, fsynced) and rewrites the small manifest
(digest updated incrementally, journal length). Loading replays the journal onto the snapshot.
When the journal has changed more than ``compact_share`` of the index's templates, a new
snapshot is written and the journal deleted — so a removed template stays (encrypted, never
served) in the snapshot file until then; ``compact`` forces it. Any disagreement between
snapshot, journal, manifest and database — a torn or altered record, a journal of another
snapshot — rebuilds from the database.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from sqlalchemy import select

from openfrt.errors import OpenFRTError
from openfrt.gallery import sealed
from openfrt.records.models import ReferenceTemplate
from openfrt.records.store import RecordStore

if TYPE_CHECKING:
    from openfrt.gallery.index import TemplateIndex

log = logging.getLogger(__name__)

INDEX_DIR = "index"

#: Compact (write a new snapshot, drop the journal) once the journal has added or removed more
#: templates than this share of the index: at 10M a snapshot costs minutes, an append
#: milliseconds, and replaying 2% on load adds little to reading the snapshot.
COMPACT_SHARE = 0.02

_ADD, _REMOVE = b"A", b"R"
_RECORD = struct.Struct("<cII")  # operation, templates, dimension


class IdDigest:
    """An order-independent digest of a set of template ids that changes in O(changed ids).

    Four 64-bit lanes; each is the sum (mod 2^64) over the ids of a bijective 64-bit mix
    (splitmix64's finaliser) of the id xor the lane's constant. Adding or removing an id adds or
    subtracts its terms, so two sets with one id different always differ (the mix of a non-zero
    input is never zero), and sets differing more collide only by a coincidence in all 256 bits.
    It guards against accidents (a crash, another process, a restored backup), not forgery: the
    files it describes are authenticated by the cipher.
    """

    _LANES = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5], dtype=np.uint64)

    def __init__(self, lanes: np.ndarray | None = None) -> None:
        self.lanes = np.zeros(4, dtype=np.uint64) if lanes is None else lanes

    @classmethod
    def of(cls, ids: np.ndarray) -> IdDigest:
        return cls().add(ids)

    @classmethod
    def parse(cls, text: str) -> IdDigest:
        return cls(np.frombuffer(bytes.fromhex(text), dtype="<u8").astype(np.uint64))

    def hex(self) -> str:
        return self.lanes.astype("<u8").tobytes().hex()

    def add(self, ids: np.ndarray) -> IdDigest:
        self.lanes = self.lanes + self._terms(ids)
        return self

    def remove(self, ids: np.ndarray) -> IdDigest:
        self.lanes = self.lanes - self._terms(ids)
        return self

    def _terms(self, ids: np.ndarray) -> np.ndarray:
        total = np.zeros(4, dtype=np.uint64)
        for start in range(0, len(ids), 1 << 20):  # bounded temporaries at 10M ids
            x = np.asarray(ids[start : start + (1 << 20)], dtype=np.int64).view(np.uint64)[:, None] ^ self._LANES
            x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            total += (x ^ (x >> np.uint64(31))).sum(axis=0, dtype=np.uint64)
        return total


@dataclass
class _OpenIndex:
    index: TemplateIndex
    digest: IdDigest  # of the template ids the index holds: what the manifest describes
    journal_bytes: int = 0  # the journal's size as this process last wrote or read it
    journal_entries: int = 0
    journal_templates: int = 0  # templates added or removed by the journal (compaction trigger)


class ReferenceIndexes:
    """Per-model :class:`TemplateIndex` instances, loaded on first use; every change is
    journaled (``journaled``, as here) or saved whole (subclasses whose index saves itself)."""

    #: Whether changes go to a journal beside the snapshot (else the index is saved on each).
    journaled = True

    def __init__(self, store: RecordStore, compact_share: float = COMPACT_SHARE) -> None:
        self.store = store
        self.directory = store.home / INDEX_DIR
        self.compact_share = compact_share
        self._open: dict[str, _OpenIndex] = {}

    def close(self) -> None:
        """Forget the open indexes (the files stay)."""
        self._open.clear()

    def index(self, model_id: str, dim: int) -> TemplateIndex:
        """The index of ``model_id``, rebuilt from the database first if it is stale."""
        return self._get(model_id, dim).index

    def add(self, model_id: str, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add templates that are already committed to the database. An index loaded by this
        call already holds them (it matches the database, which has them)."""
        ids, vectors = np.asarray(ids, dtype=np.int64), np.asarray(vectors, dtype=np.float32)
        self._retrying(model_id, lambda: self._add(model_id, ids, vectors))

    def _add(self, model_id: str, ids: np.ndarray, vectors: np.ndarray) -> None:
        if model_id not in self._open:
            self._get(model_id, vectors.shape[1])
            return
        entry = self._open[model_id]
        new = ~entry.index.contains(ids)
        if new.any():
            ids, vectors = ids[new], vectors[new]
            record = _RECORD.pack(_ADD, len(ids), vectors.shape[1]) + ids.astype("<i8").tobytes() + vectors.astype("<f4").tobytes()
            self._change(model_id, entry, lambda: entry.index.add(ids, vectors), ids, record, added=True)

    def remove(self, model_id: str, ids: np.ndarray) -> None:
        """Remove templates, before their deletion commits: if the commit then fails, the manifest
        no longer matches the database and the next use rebuilds — a crash errs on forgetting."""
        if model_id not in self._open and not self.path(model_id).exists():
            return
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        self._retrying(model_id, lambda: self._remove(model_id, ids))

    def _remove(self, model_id: str, ids: np.ndarray) -> None:
        entry = self._get(model_id, None)
        ids = ids[entry.index.contains(ids)]
        if len(ids):
            record = _RECORD.pack(_REMOVE, len(ids), 0) + ids.astype("<i8").tobytes()
            self._change(model_id, entry, lambda: entry.index.remove(ids), ids, record, added=False)

    def compact(self, model_id: str) -> None:
        """Write the open index of ``model_id`` as a new snapshot and delete its journal: after
        this, no file holds a template removed before it."""
        entry = self._open.get(model_id)
        if entry is not None:
            self._save(model_id, entry)

    def path(self, model_id: str) -> Path:
        return self.directory / f"{re.sub(r'[^A-Za-z0-9._-]', '_', model_id)}.index"

    def journal_path(self, model_id: str) -> Path:
        return self.path(model_id).with_suffix(".journal")

    def _manifest_path(self, model_id: str) -> Path:
        return self.path(model_id).with_suffix(".manifest.json")

    def _retrying(self, model_id: str, change: Callable[[], None]) -> None:
        """Run ``change``; if another process appended to the journal since this one read it,
        reload (replaying that process's changes, or rebuilding) and run it again, once."""
        try:
            change()
        except sealed.StaleLogError:
            log.info("index of %s changed in another process: reloading it", model_id)
            change()

    def _change(
        self, model_id: str, entry: _OpenIndex, apply: Callable[[], Any], ids: np.ndarray, record: bytes, *, added: bool
    ) -> None:
        """Apply one change and journal it (or save); on any failure forget the in-memory copy,
        so the next use reloads it from the files — or rebuilds it from the database."""
        try:
            apply()
            entry.digest = entry.digest.add(ids) if added else entry.digest.remove(ids)
            if not self.journaled or entry.journal_templates + len(ids) > self.compact_share * max(len(entry.index), 1):
                self._save(model_id, entry)
                return
            entry.journal_bytes = sealed.append_record(
                self.journal_path(model_id), self.store.cipher, _snapshot(entry), entry.journal_entries, record, entry.journal_bytes
            )
            entry.journal_entries += 1
            entry.journal_templates += len(ids)
            self._write_manifest(model_id, entry)
        except BaseException:
            self._open.pop(model_id, None)
            raise

    def _get(self, model_id: str, dim: int | None) -> _OpenIndex:
        if model_id not in self._open:
            self._open[model_id] = self._load_current(model_id, dim)
        return self._open[model_id]

    def _load_current(self, model_id: str, dim: int | None) -> _OpenIndex:
        digest = IdDigest.of(self._database_ids(model_id)).hex()
        manifest = self._read_manifest(model_id)
        if manifest and self.path(model_id).exists() and manifest.get("ids_digest") == digest:
            try:
                entry = self._load_files(model_id, manifest)
            except (_index_module().TemplateIndexError, sealed.SealedFileError) as error:  # altered, or another snapshot's journal
                log.warning("rebuilding the index of %s from the database: %s", model_id, error)
            else:
                if entry is not None and len(entry.index) == manifest.get("count"):
                    return entry  # (a sharded index whose shard lost its file holds fewer)
        return self._rebuild(model_id, dim)

    def _load_files(self, model_id: str, manifest: dict[str, Any]) -> _OpenIndex | None:
        """The snapshot with its journal replayed, or None if they are not what the manifest describes."""
        index = self._open_index(self.path(model_id), manifest["dim"], fresh=False)
        entry = _OpenIndex(index, IdDigest.parse(manifest["ids_digest"]))
        if not self.journaled:
            return entry
        if manifest.get("snapshot") != _snapshot(entry).hex():
            return None
        journal = self.journal_path(model_id)
        records, entry.journal_bytes = sealed.read_log(journal, self.store.cipher, _snapshot(entry)) if journal.exists() else ([], 0)
        if len(records) != manifest.get("journal_entries"):
            return None  # a crash between an append and its manifest: the database decides
        for record in records:
            entry.journal_templates += _replay(index, record)
        entry.journal_entries = len(records)
        if journal.exists() and journal.stat().st_size != entry.journal_bytes:
            sealed.truncate_log(journal, entry.journal_bytes)  # a torn record nobody acknowledged
        return entry

    def _open_index(self, path: Path, dim: int, *, fresh: bool) -> TemplateIndex:
        """The index stored at ``path`` (``fresh``: a new, empty one); cluster mode shards it."""
        return _index_module().open_index(path, dim, self.store.cipher)

    def _read_manifest(self, model_id: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._manifest_path(model_id).read_text())
        except (OSError, ValueError):
            return None

    def _rebuild(self, model_id: str, dim: int | None) -> _OpenIndex:
        ids, vectors = self._database_templates(model_id)
        dim = vectors.shape[1] if len(ids) else dim or 1
        for stale in (self._manifest_path(model_id), self.path(model_id), self.journal_path(model_id)):
            stale.unlink(missing_ok=True)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        entry = _OpenIndex(self._open_index(self.path(model_id), dim, fresh=True), IdDigest.of(ids))
        if len(ids):
            entry.index.add(ids, vectors)
        del vectors
        self._save(model_id, entry)
        return entry

    def _save(self, model_id: str, entry: _OpenIndex) -> None:
        """Write the index (atomically, by its own ``save``), drop the journal, then write the
        manifest. A crash between these leaves a manifest naming another snapshot (or journal
        length), so the next load rebuilds from the database."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        entry.index.save(self.path(model_id), self.store.cipher)
        self.journal_path(model_id).unlink(missing_ok=True)
        entry.journal_bytes = entry.journal_entries = entry.journal_templates = 0
        self._write_manifest(model_id, entry)

    def _write_manifest(self, model_id: str, entry: _OpenIndex) -> None:
        snapshot = getattr(entry.index, "snapshot_id", None)
        manifest = {
            "model_id": model_id, "dim": entry.index.dim, "count": len(entry.index), "ids_digest": entry.digest.hex(),
            "snapshot": snapshot.hex() if snapshot else None, "journal_entries": entry.journal_entries,
        }
        partial_manifest = self._manifest_path(model_id).with_name(self._manifest_path(model_id).name + ".partial")
        partial_manifest.write_text(json.dumps(manifest))
        os.replace(partial_manifest, self._manifest_path(model_id))

    def _database_ids(self, model_id: str) -> np.ndarray:
        with self.store.transaction() as session:
            ids = session.scalars(select(ReferenceTemplate.id).where(ReferenceTemplate.model_id == model_id)).all()
        return np.array(sorted(ids), dtype=np.int64)

    def _database_templates(self, model_id: str) -> tuple[np.ndarray, np.ndarray]:
        """Ids and vectors of every template of ``model_id``, decrypted in memory only."""
        with self.store.transaction() as session:
            rows = session.execute(
                select(ReferenceTemplate.id, ReferenceTemplate.vector)
                .where(ReferenceTemplate.model_id == model_id)
                .order_by(ReferenceTemplate.id)
            ).all()
        ids = np.array([row.id for row in rows], dtype=np.int64)
        if not rows:
            return ids, np.zeros((0, 0), dtype=np.float32)
        return ids, np.stack([self.store.open_template(row.vector, model_id).vector for row in rows])


def _snapshot(entry: _OpenIndex) -> bytes:
    """The stream id of the snapshot an open index was saved to or loaded from."""
    snapshot: bytes | None = getattr(entry.index, "snapshot_id", None)
    if snapshot is None:
        raise OpenFRTError("a journaled index must have been saved before it changes")
    return snapshot


def _replay(index: TemplateIndex, record: bytes) -> int:
    """Apply one journal record to ``index``; returns the templates it changed."""
    operation, count, dim = _RECORD.unpack_from(record)
    ids = np.frombuffer(record, dtype="<i8", count=count, offset=_RECORD.size)
    if operation == _ADD:
        vectors = np.frombuffer(record, dtype="<f4", offset=_RECORD.size + 8 * count).reshape(count, dim)
        index.add(ids, vectors.copy())
    elif operation == _REMOVE:
        index.remove(ids)
    else:
        raise _index_module().TemplateIndexError(f"journal record of unknown kind {operation!r}")
    return count


def _index_module() -> ModuleType:
    """``openfrt.gallery.index``, imported when first needed so enrolment and watchlists work
    (and the database stays the source of truth) even where the approximate index is absent."""
    try:
        from openfrt.gallery import index
    except ModuleNotFoundError as exc:
        if exc.name != "openfrt.gallery.index":
            raise
        raise OpenFRTError("the reference-database search index (openfrt.gallery.index) is not installed") from None
    return index
