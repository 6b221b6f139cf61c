"""The records database: subjects, reference images, templates, watchlists, users and the audit log.

Persistence only — what may be enrolled, matched or searched is decided in
:mod:`openfrt.gallery`. Biometric data (reference images, templates) is stored encrypted and
decrypted only in memory; the schema is managed by Alembic migrations shipped in this package.
"""

import lazy_loader

# Loaded on first use, so that importing a light part (the vocabularies, the errors) does not
# load the database layer: the command line offers the vocabularies as choices in its help.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "audit": [
            "Actor", "AuditAction", "AuditEntry", "ChainAnchor", "ChainReport", "list_events", "local_actor", "record_event",
            "verify_chain",
        ],
        "crypto": ["Cipher", "load_cipher"],
        "database": ["open_database", "upgrade"],
        "errors": [
            "AuditChainError", "AuthenticationError", "DuplicateRecordError", "EnrolmentRefused", "InvalidRecordError",
            "KeyFileError", "NotPermittedError", "RecordNotFoundError", "WatchlistExpiredError",
        ],
        "models": ["AuditEvent", "ReferenceImage", "ReferenceTemplate", "Subject", "Watchlist", "WatchlistMember"],
        "store": ["RecordStore"],
        "users": ["TokenInfo", "UserInfo", "UserService"],
        "vocabulary": ["Category", "Role"],
    },
)
