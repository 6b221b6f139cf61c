"""The records database: subjects, reference images, templates, watchlists and the audit log.

Persistence only — what may be enrolled, matched or searched is decided in
:mod:`openfrt.gallery`. Biometric data (reference images, templates) is stored encrypted and
decrypted only in memory; the schema is managed by Alembic migrations shipped in this package.
"""

from openfrt.records.audit import AuditAction, current_actor, record_event
from openfrt.records.crypto import Cipher, load_cipher
from openfrt.records.database import open_database, upgrade
from openfrt.records.errors import (
    DuplicateRecordError,
    EnrolmentRefused,
    InvalidRecordError,
    KeyFileError,
    RecordNotFoundError,
    WatchlistExpiredError,
)
from openfrt.records.models import (
    AuditEvent,
    Category,
    ReferenceImage,
    ReferenceTemplate,
    Subject,
    Watchlist,
    WatchlistMember,
)
from openfrt.records.store import RecordStore

__all__ = [
    "AuditAction",
    "AuditEvent",
    "Category",
    "Cipher",
    "DuplicateRecordError",
    "EnrolmentRefused",
    "InvalidRecordError",
    "KeyFileError",
    "RecordNotFoundError",
    "RecordStore",
    "ReferenceImage",
    "ReferenceTemplate",
    "Subject",
    "Watchlist",
    "WatchlistExpiredError",
    "WatchlistMember",
    "current_actor",
    "load_cipher",
    "open_database",
    "record_event",
    "upgrade",
]
