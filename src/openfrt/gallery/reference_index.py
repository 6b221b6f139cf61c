"""The approximate search index over the whole reference database, kept in step with it.

One encrypted index file per model id lives in ``<home>/index/``. The database is the source of
truth; the index is derived from it. Beside each index file, a manifest records a digest of the
template ids it holds; when that does not match the database (a crash between commit and save,
two processes enrolling at once, a restored backup), the index is rebuilt from the database
instead of silently missing subjects or keeping deleted ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from sqlalchemy import select

from openfrt.errors import OpenFRTError
from openfrt.records.models import ReferenceTemplate
from openfrt.records.store import RecordStore

if TYPE_CHECKING:
    from openfrt.gallery.index import TemplateIndex

INDEX_DIR = "index"


@dataclass
class _OpenIndex:
    index: TemplateIndex
    ids: np.ndarray  # the template ids the index holds, sorted: what the manifest describes


class ReferenceIndexes:
    """Per-model :class:`TemplateIndex` instances, loaded on first use and saved on every change."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store
        self.directory = store.home / INDEX_DIR
        self._open: dict[str, _OpenIndex] = {}

    def close(self) -> None:
        """Forget the open indexes (the files stay)."""
        self._open.clear()

    def index(self, model_id: str, dim: int) -> TemplateIndex:
        """The index of ``model_id``, rebuilt from the database first if it is stale."""
        return self._get(model_id, dim).index

    def add(self, model_id: str, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add templates that are already committed to the database."""
        entry = self._get(model_id, vectors.shape[1])
        new = ~np.isin(ids, entry.ids)  # a rebuild just now may have picked some up already
        if not new.any():
            return
        ids, vectors = np.asarray(ids, dtype=np.int64)[new], np.asarray(vectors, dtype=np.float32)[new]
        self._change(model_id, entry, lambda: entry.index.add(ids, vectors), np.union1d(entry.ids, ids))

    def remove(self, model_id: str, ids: np.ndarray) -> None:
        """Remove templates, before their deletion commits: if the commit then fails, the manifest
        no longer matches the database and the next use rebuilds — a crash errs on forgetting."""
        if model_id not in self._open and not self.path(model_id).exists():
            return
        ids = np.asarray(ids, dtype=np.int64)
        entry = self._get(model_id, None)
        self._change(model_id, entry, lambda: entry.index.remove(ids), np.setdiff1d(entry.ids, ids))

    def path(self, model_id: str) -> Path:
        return self.directory / f"{re.sub(r'[^A-Za-z0-9._-]', '_', model_id)}.index"

    def _manifest_path(self, model_id: str) -> Path:
        return self.path(model_id).with_suffix(".manifest.json")

    def _change(self, model_id: str, entry: _OpenIndex, apply: Callable[[], None], new_ids: np.ndarray) -> None:
        """Apply one change and save; on any failure forget the in-memory copy so it is reloaded."""
        try:
            apply()
            entry.ids = new_ids
            self._save(model_id, entry)
        except BaseException:
            self._open.pop(model_id, None)
            raise

    def _get(self, model_id: str, dim: int | None) -> _OpenIndex:
        if model_id not in self._open:
            self._open[model_id] = self._load_current(model_id, dim)
        return self._open[model_id]

    def _load_current(self, model_id: str, dim: int | None) -> _OpenIndex:
        ids = self._database_ids(model_id)
        manifest = self._read_manifest(model_id)
        if manifest and self.path(model_id).exists() and manifest["ids_sha256"] == _digest(ids):
            index = self._open_index(self.path(model_id), manifest["dim"], fresh=False)
            if len(index) == len(ids):  # a sharded index whose shard lost its file holds fewer
                return _OpenIndex(index, ids)
        return self._rebuild(model_id, dim)

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
        for stale in (self.path(model_id), self._manifest_path(model_id)):
            stale.unlink(missing_ok=True)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        entry = _OpenIndex(self._open_index(self.path(model_id), dim, fresh=True), ids)
        if len(ids):
            entry.index.add(ids, vectors)
        self._save(model_id, entry)
        return entry

    def _save(self, model_id: str, entry: _OpenIndex) -> None:
        """Write the index (atomically, by its own ``save``), then its manifest, also atomically."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        entry.index.save(self.path(model_id), self.store.cipher)
        manifest = {"model_id": model_id, "dim": entry.index.dim, "count": len(entry.ids), "ids_sha256": _digest(entry.ids)}
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


def _digest(ids: np.ndarray) -> str:
    return hashlib.sha256(np.sort(np.asarray(ids, dtype="<i8")).tobytes()).hexdigest()


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
