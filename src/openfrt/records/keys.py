"""Key rotation: every encrypted column and file re-encrypted under a new key, while in use.

A leaked or aged key is retired in four steps, each safe to interrupt and resume:

1. a new key is generated and written to the key file *before* the old one (atomically), so
   every process — the server, ``openfrt live`` — encrypts with the new key from its next
   encryption and still decrypts with either (:class:`~openfrt.records.crypto.KeyFileCipher`);
2. every row whose ciphertext names another key is re-encrypted, in small transactions, each
   row updated only if it still holds what was read (a concurrent change is never overwritten);
   search index files under another key are deleted (manifest first), to be rebuilt from the
   database under the new key on next use — deleting is always safe, a missing index is rebuilt;
3. after a pause longer than any write can wait for the database (a value encrypted just before
   a process noticed the new key, then committed), a final pass finds nothing left;
4. the key file is rewritten with the new key alone. The old key then opens nothing the store
   holds. Both the start and the end are audited, naming the keys by id.

Run again after an interruption, it finds the two-key file and carries on with the same new key.
Backups taken before a rotation stay encrypted under the key of their day (see ``backup.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Column, LargeBinary, and_, bindparam, func, select, update
from sqlalchemy.sql.elements import ColumnElement

from openfrt import config
from openfrt.gallery.sealed import is_sealed, record_headers
from openfrt.records.audit import AuditAction, record_event
from openfrt.records.crypto import KEYED_HEADER_BYTES, key_id, new_key, read_key_file, write_key_file
from openfrt.records.database import BUSY_TIMEOUT_MS
from openfrt.records.errors import KeyFileError
from openfrt.records.models import AlertMedia, DeploymentCamera, ReferenceImage, ReferenceTemplate, StoreMeta
from openfrt.records.store import KEY_CHECK_NAME, RecordStore

log = logging.getLogger(__name__)

#: Rows re-encrypted per transaction: short transactions leave the server's writes unhindered.
BATCH = 200

#: How long the final pass waits after the sweep, in seconds: longer than a writer can wait for
#: SQLite's write lock, so a value encrypted under the old key just before its process noticed
#: the new one has been committed (and is found) before the old key is dropped.
SETTLE_SECONDS = BUSY_TIMEOUT_MS / 1000 + 5

#: Every encrypted column: a label, the column, and which rows of its table hold ciphertext.
ENCRYPTED_COLUMNS: tuple[tuple[str, Any, ColumnElement[bool] | None], ...] = (
    ("reference images", ReferenceImage.image, None),
    ("templates", ReferenceTemplate.vector, None),
    ("alert media", AlertMedia.data, None),
    ("camera credentials", DeploymentCamera.sealed_source, None),
    ("key check", StoreMeta.value, StoreMeta.name == KEY_CHECK_NAME),
)

#: Where the search index keeps its encrypted files (see openfrt.gallery.reference_index).
INDEX_DIR = "index"

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RotationReport:
    """What a rotation did: the new key's id, the ids retired, rows re-encrypted per column,
    index files deleted for rebuilding, and whether it resumed an interrupted rotation."""

    key_id: str
    retired: tuple[str, ...]
    rows: dict[str, int] = field(default_factory=dict)
    index_files: int = 0
    resumed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "retired": list(self.retired), "rows": dict(self.rows),
                "index_files": self.index_files, "resumed": self.resumed}


def rotate_keys(store: RecordStore, *, actor: str, progress: Progress | None = None, settle_seconds: float | None = None) -> RotationReport:
    """Re-encrypt everything under a new key and retire the old one(s); see the module docstring."""
    path = config.key_file(store.home)
    keys = read_key_file(path)
    resumed = len(keys) > 1
    if not resumed:
        keys = [new_key(), *keys]
        write_key_file(path, keys)
    current, retired = key_id(keys[0]).hex(), tuple(key_id(key).hex() for key in keys[1:])
    with store.transaction() as session:
        record_event(session, AuditAction.key_rotation_started, actor=actor, target="encryption key",
                     details={"key_id": current, "retiring": list(retired), "resumed": resumed})
    if store.cipher.key_id != current:
        raise KeyFileError(f"the store's cipher does not follow {path} (it encrypts with key {store.cipher.key_id}, not {current})")
    rows = {label: 0 for label, _, _ in ENCRYPTED_COLUMNS}
    index_files = 0
    pause = SETTLE_SECONDS if settle_seconds is None else settle_seconds
    for final in (False, True):
        if final:
            time.sleep(pause)
        for label, column, rows_with_ciphertext in ENCRYPTED_COLUMNS:
            rows[label] += _reencrypt(store, label, column, rows_with_ciphertext, progress)
        index_files += _drop_stale_indexes(store)
    write_key_file(path, keys[:1])
    report = RotationReport(current, retired, rows, index_files, resumed)
    with store.transaction() as session:
        record_event(session, AuditAction.key_rotated, actor=actor, target="encryption key", details=report.as_dict())
    log.warning("encryption key rotated to %s; retired %s", current, ", ".join(retired))
    return report


def _reencrypt(store: RecordStore, label: str, column: Any, only: ColumnElement[bool] | None, progress: Progress | None) -> int:
    """Re-encrypt every value of ``column`` not under the current key, :data:`BATCH` per transaction."""
    table = column.table
    keys: list[Column[Any]] = list(table.primary_key.columns)
    stale = and_(column.is_not(None), func.substr(column, 1, KEYED_HEADER_BYTES) != bindparam("current", type_=LargeBinary))
    if only is not None:
        stale = and_(stale, only)
    with store.transaction() as session:
        total = session.scalar(select(func.count()).select_from(table).where(stale), {"current": store.cipher.header}) or 0
    done = 0
    while True:
        with store.transaction() as session:
            batch = session.execute(select(*keys, column).where(stale).limit(BATCH), {"current": store.cipher.header}).all()
            changed = 0
            for row in batch:
                *identity, sealed = row
                fresh = store.cipher.encrypt(store.cipher.decrypt(sealed))
                matches = [key == value for key, value in zip(keys, identity)]
                changed += session.execute(update(table).where(*matches, column == sealed).values({column.name: fresh})).rowcount
        done += changed
        if progress is not None:
            progress(label, min(done, max(total, done)), max(total, done))
        if not batch:
            return done
        if changed == 0:  # every row read was changed by someone else meanwhile: read again
            time.sleep(0.05)


def _drop_stale_indexes(store: RecordStore) -> int:
    """Delete search index files (with their manifests and change journals) not wholly under the
    current key; the index rebuilds them from the database on next use."""
    deleted = 0
    directory = store.home / INDEX_DIR
    for index_file in sorted(directory.glob("*.index")) if directory.is_dir() else []:
        journal = index_file.with_suffix(".journal")
        if all(header == store.cipher.header for header in [*_key_headers(index_file), *_key_headers(journal)]):
            continue
        _manifest(index_file).unlink(missing_ok=True)  # first: an index without a manifest is rebuilt
        index_file.unlink(missing_ok=True)
        journal.unlink(missing_ok=True)
        deleted += 1
    return deleted


def _key_headers(path: Path) -> list[bytes]:
    """The key header of each ciphertext in an index file or journal (sealed records, or one
    ciphertext: a sharded index's layout); none for a missing file."""
    if not path.exists():
        return []
    if is_sealed(path):
        return list(record_headers(path, KEYED_HEADER_BYTES))
    with path.open("rb") as handle:
        return [handle.read(KEYED_HEADER_BYTES)]


def _manifest(index_file: Path) -> Path:
    return index_file.with_suffix(".manifest.json")
