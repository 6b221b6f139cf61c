"""Opening the records database and bringing its schema up to date.

The schema is owned by the Alembic migrations shipped inside this package; opening a store
upgrades it, so an installed openfrt never runs against an old schema. SQLite is the embedded
default; PostgreSQL is used when ``OPENFRT_DATABASE_URL`` names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def open_database(url: str) -> Engine:
    """An engine for ``url`` with the schema upgraded to the newest revision."""
    engine = make_engine(url)
    upgrade(engine)
    return engine


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite connections get foreign keys and secure deletion."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed)
    event.listen(engine, "connect", _configure_sqlite)
    return engine


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # SQLite ignores foreign keys (and so ON DELETE CASCADE) unless asked, and by default leaves
    # deleted rows' bytes in free pages; secure_delete overwrites them so a deleted subject's
    # (encrypted) image does not linger in the file.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA secure_delete = ON")
    cursor.close()


def alembic_config() -> Config:
    """An Alembic configuration pointing at the migrations inside the installed package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to ``revision`` in one transaction."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
