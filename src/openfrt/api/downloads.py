"""Anonymous downloads of the public records, audited in aggregate.

Anyone may download the published CSV, and a download by a person who is logged in is audited
as theirs. One audit entry per anonymous download, though, would let anybody grow the audit log
at will and bury the entries that matter in it; so anonymous downloads are counted, and the
count is written as one entry at most once per :data:`AUDIT_PERIOD` (the first download after a
quiet period at once, the rest when the period is over, or when the server stops).
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

from openfrt.records.audit import AuditAction, record_event
from openfrt.records.models import utc_now
from openfrt.records.store import RecordStore

#: Anonymous downloads are written to the audit log at most this often.
AUDIT_PERIOD = timedelta(hours=1)


class AnonymousDownloads:
    def __init__(self, store: RecordStore, period: timedelta = AUDIT_PERIOD) -> None:
        self.store = store
        self.period = period
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}
        self._since: datetime | None = None
        self._written_at: datetime | None = None

    def count(self, file_format: str, rows: int) -> None:
        """One anonymous download of ``rows`` records as ``file_format``."""
        with self._lock:
            now = utc_now()
            self._since = self._since or now
            self._pending[file_format] = self._pending.get(file_format, 0) + 1
            if self._written_at is None or now - self._written_at >= self.period:
                self._write(now, {"rows": rows})

    def flush(self) -> None:
        """Write the downloads not yet audited (when the server stops)."""
        with self._lock:
            if self._pending:
                self._write(utc_now(), {})

    def _write(self, now: datetime, extra: dict[str, Any]) -> None:
        assert self._since is not None
        with self.store.transaction() as session:
            for file_format, downloads in sorted(self._pending.items()):
                record_event(session, AuditAction.records_exported, actor="public",
                             details={"format": file_format, "downloads": downloads, "since": self._since.isoformat(), **extra})
        self._pending, self._since, self._written_at = {}, None, now
