"""The records database: subjects, reference images, templates, watchlists, users and the audit log.

Persistence only — what may be enrolled, matched or searched is decided in
:mod:`openfrt.gallery`. Biometric data (reference images, templates) is stored encrypted and
decrypted only in memory; the schema is managed by Alembic migrations shipped in this package.
"""

from openfrt.records.audit import (
    Actor,
    AuditAction,
    AuditEntry,
    ChainAnchor,
    ChainReport,
    list_events,
    local_actor,
    record_event,
    verify_chain,
)
from openfrt.records.crypto import Cipher, load_cipher
from openfrt.records.database import open_database, upgrade
from openfrt.records.errors import (
    AuditChainError,
    AuthenticationError,
    DuplicateRecordError,
    EnrolmentRefused,
    InvalidRecordError,
    KeyFileError,
    NotPermittedError,
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
from openfrt.records.users import Role, TokenInfo, UserInfo, UserService

__all__ = [
    "Actor",
    "AuditAction",
    "AuditChainError",
    "AuditEntry",
    "AuditEvent",
    "AuthenticationError",
    "Category",
    "ChainAnchor",
    "ChainReport",
    "Cipher",
    "DuplicateRecordError",
    "EnrolmentRefused",
    "InvalidRecordError",
    "KeyFileError",
    "NotPermittedError",
    "RecordNotFoundError",
    "RecordStore",
    "ReferenceImage",
    "ReferenceTemplate",
    "Role",
    "Subject",
    "TokenInfo",
    "UserInfo",
    "UserService",
    "Watchlist",
    "WatchlistExpiredError",
    "WatchlistMember",
    "list_events",
    "load_cipher",
    "local_actor",
    "open_database",
    "record_event",
    "upgrade",
    "verify_chain",
]
