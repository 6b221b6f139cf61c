"""Where openfrt keeps its data, and how the environment configures it.

One place decides the data directory, database URL and key file so that the CLI, the server
and the tests agree. ``OPENFRT_HOME`` moves everything; ``OPENFRT_DATABASE_URL`` and
``OPENFRT_KEY_FILE`` override single pieces (production keys belong outside the data directory).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def home_dir(override: str | Path | None = None) -> Path:
    """The data directory: ``override``, else ``OPENFRT_HOME``, else the per-user data dir."""
    chosen = override or os.environ.get("OPENFRT_HOME") or platformdirs.user_data_dir("openfrt")
    return Path(chosen).expanduser()


def database_url(home: Path) -> str:
    """``OPENFRT_DATABASE_URL`` (e.g. ``postgresql+psycopg://…``), else SQLite in ``home``."""
    return os.environ.get("OPENFRT_DATABASE_URL") or f"sqlite:///{home / 'openfrt.db'}"


def key_file(home: Path) -> Path:
    """``OPENFRT_KEY_FILE``, else ``home/secret.key`` (created on first run, with a warning)."""
    configured = os.environ.get("OPENFRT_KEY_FILE")
    return Path(configured).expanduser() if configured else home / "secret.key"
