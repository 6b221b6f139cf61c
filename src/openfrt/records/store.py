"""The records store: the data directory, its database and its encryption key, opened together.

Opening a store creates the data directory (mode 0700) if needed, loads or creates the key,
upgrades the schema and checks that the key is the one the data was written with, so a wrong
``OPENFRT_KEY_FILE`` fails at once with a clear message instead of on the first image.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from openfrt import config
from openfrt.records.crypto import Cipher, load_cipher
from openfrt.records.database import open_database
from openfrt.records.errors import KeyFileError
from openfrt.records.models import StoreMeta
from openfrt.vision.types import Template

KEY_CHECK_NAME = "key_check"
KEY_CHECK_PLAINTEXT = b"openfrt records key check"


class RecordStore:
    """Sessions on the records database plus the cipher for its biometric columns."""

    def __init__(self, home: Path, engine: Engine, cipher: Cipher) -> None:
        self.home = home
        self.engine = engine
        self.cipher = cipher
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._on_close: dict[int, Callable[[], None]] = {}
        self._close_keys = itertools.count()

    @classmethod
    def open(cls, home: str | Path | None = None) -> "RecordStore":
        """The store in ``home`` (default: ``OPENFRT_HOME`` or the per-user data directory)."""
        home_path = config.home_dir(home)
        home_path.mkdir(parents=True, exist_ok=True, mode=0o700)
        # A key is only ever created in the default place; a configured one must already exist.
        cipher = load_cipher(config.key_file(home_path), create=not os.environ.get("OPENFRT_KEY_FILE"))
        store = cls(home_path, open_database(config.database_url(home_path)), cipher)
        try:
            store._check_key()
        except KeyFileError:
            store.close()
            raise
        return store

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work is committed on success and rolled back on any exception."""
        with self._sessions.begin() as session:
            yield session

    def on_close(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when the store closes, before its connections go (background work
        using the store, such as a deployment's heartbeat, stops first); returns a function that
        cancels it (safe to call more than once)."""
        key = next(self._close_keys)
        self._on_close[key] = callback
        return lambda: self._on_close.pop(key, None)

    def close(self) -> None:
        for callback in list(self._on_close.values()):
            callback()
        self._on_close.clear()
        self.engine.dispose()

    def __enter__(self) -> "RecordStore":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def seal_template(self, template: Template) -> bytes:
        """A template's vector, encrypted for storage (its model id is kept in the clear beside it)."""
        return self.cipher.encrypt(np.ascontiguousarray(template.vector, dtype="<f4").tobytes())

    def open_template(self, sealed: bytes, model_id: str) -> Template:
        model, _, version = model_id.rpartition("@")
        return Template(np.frombuffer(self.cipher.decrypt(sealed), dtype="<f4"), model, version)

    def _check_key(self) -> None:
        with self.transaction() as session:
            check = session.scalar(select(StoreMeta).where(StoreMeta.name == KEY_CHECK_NAME))
            if check is None:
                session.add(StoreMeta(name=KEY_CHECK_NAME, value=self.cipher.encrypt(KEY_CHECK_PLAINTEXT)))
                return
            try:
                self.cipher.decrypt(check.value)
            except KeyFileError:
                raise KeyFileError(
                    f"the key file {config.key_file(self.home)} is not the key this store's data was written with"
                ) from None
