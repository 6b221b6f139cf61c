"""Opening the records database and bringing its schema up to date.

The schema is owned by the Alembic migrations shipped inside this package; opening a store
upgrades it, so an installed openfrt never runs against an old schema. SQLite is the embedded
default; PostgreSQL is used when ``OPENFRT_DATABASE_URL`` names it.
"""

from __future__ import annotations

import logging
import sqlite3
from functools import partial
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

#: How long a SQLite writer waits for another's transaction before giving up.
BUSY_TIMEOUT_MS = 10_000

#: Marks a pooled SQLite connection whose transaction deleted rows (see _checkpoint_after_deletion).
DELETED = "openfrt_deleted_rows"

#: The PostgreSQL advisory lock held while migrating (an arbitrary constant: "openfrt" in ASCII).
POSTGRES_MIGRATION_LOCK = 0x6F70656E667274


def open_database(url: str) -> Engine:
    """An engine for ``url`` with the schema upgraded to the newest revision."""
    engine = make_engine(url)
    upgrade(engine)
    return engine


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite connections get foreign keys, secure deletion, a busy
    timeout and (for files) write-ahead logging."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    in_file = bool(parsed.database) and parsed.database != ":memory:"
    if in_file:
        Path(str(parsed.database)).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed)
    event.listen(engine, "connect", partial(_configure_sqlite, write_ahead_log=in_file))
    if in_file:
        event.listen(engine, "after_cursor_execute", _note_deletion)
        event.listen(engine.pool, "checkin", _checkpoint_after_deletion)
    return engine


def _configure_sqlite(dbapi_connection: Any, _record: Any, *, write_ahead_log: bool) -> None:
    # SQLite ignores foreign keys (and so ON DELETE CASCADE) unless asked, and by default leaves
    # deleted rows' bytes in free pages; secure_delete overwrites them so a deleted subject's
    # (encrypted) image does not linger in the file.
    #
    # The server's camera threads and HTTP requests, and perhaps an `openfrt live` process,
    # share one file. With write-ahead logging readers never wait for the writer, and the busy
    # timeout makes a writer queue for the write lock instead of failing "database is locked".
    # WAL keeps recent pages in openfrt.db-wal beside the database until a checkpoint (see
    # _checkpoint_after_deletion); the last connection to close checkpoints and removes it.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA secure_delete = ON")
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if write_ahead_log:
        cursor.execute("PRAGMA journal_mode = WAL")
    cursor.close()


def _note_deletion(connection: Connection, cursor: Any, statement: str, *_: Any) -> None:
    if cursor.rowcount != 0 and statement.lstrip()[:6].upper() == "DELETE":
        connection.info[DELETED] = True


def _checkpoint_after_deletion(dbapi_connection: Any, record: Any) -> None:
    """After a transaction that deleted rows, copy the WAL into the database and empty it.

    The WAL still holds the deleted rows' pages as they were written; secure_delete only zeroes
    them in the database file. Checkpointing (which writes the zeroed pages) and truncating the
    WAL keeps the promise that a deleted subject's or alert's ciphertext is gone from the
    files. Runs when the connection returns to the pool, after its transaction has ended.
    """
    if record.info.pop(DELETED, False):
        try:
            dbapi_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            # The transaction has committed; a full disk must not make it look failed. The pages
            # stay in the WAL until this connection's next check-in tries again.
            record.info[DELETED] = True
            log.warning("could not checkpoint the write-ahead log after a deletion (will retry): %s", exc)


def alembic_config() -> Config:
    """An Alembic configuration pointing at the migrations inside the installed package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to ``revision`` in one transaction, one process at a time.

    Two processes opening the same store (the server and ``openfrt live``) must not both
    migrate it: the second waits for the first, then finds nothing to do. On SQLite the
    transaction takes the write lock at once and foreign keys are off while it runs, because
    Alembic changes a SQLite table by copying it and dropping the original, and that drop
    would cascade to the rows referring to it; the foreign keys are checked before committing.
    """
    config = alembic_config()
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            _upgrade_sqlite(connection, config, revision)
            return
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": POSTGRES_MIGRATION_LOCK})
            _run_migrations(connection, config, revision)


def _upgrade_sqlite(connection: Connection, config: Config, revision: str) -> None:
    # pysqlite starts transactions itself only before data changes, so schema changes would
    # run outside one; with its own handling off, the BEGIN below covers every statement.
    driver = connection.connection.driver_connection
    assert driver is not None
    own_transactions = driver.isolation_level
    driver.isolation_level = None
    driver.execute("PRAGMA foreign_keys = OFF")  # a no-op inside a transaction: set before BEGIN
    try:
        with connection.begin():
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            _run_migrations(connection, config, revision)
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
            if broken:
                raise RuntimeError(f"migration left rows whose foreign keys point nowhere: {broken[:5]}")
    finally:
        driver.execute("PRAGMA foreign_keys = ON")
        driver.isolation_level = own_transactions


def _run_migrations(connection: Connection, config: Config, revision: str) -> None:
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def is_transient(error: BaseException) -> bool:
    """Whether the database refused a transaction for a passing reason, so that running it
    again later may succeed: SQLite's write lock still held when the busy timeout ran out, a
    full disk or an I/O error (space may be freed, a volume remounted); PostgreSQL unreachable
    or restarting, a lost connection, a serialization failure or deadlock, a full disk."""
    if not isinstance(error, OperationalError):
        return False
    if error.connection_invalidated:
        return True
    original = error.orig
    sqlite_error = getattr(original, "sqlite_errorname", None)
    if sqlite_error is not None:
        return sqlite_error.startswith(("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR"))
    if hasattr(original, "sqlstate"):  # psycopg
        sqlstate = getattr(original, "sqlstate", None) or ""
        if not sqlstate:  # no server answered: the connection failed or was lost
            return True
        return sqlstate[:2] in {"08", "40", "53"} or sqlstate[:3] == "57P" or sqlstate == "58030"
    message = str(original).lower()
    return "database is locked" in message or "database is busy" in message
