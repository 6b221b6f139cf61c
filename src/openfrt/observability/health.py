"""Whether the server can do its work: the database answers, its schema is the one this
version of openfrt expects, and the default face models are in place.

The answer names the failing part in a few words and nothing more — no host, no exception
text, no versions — because ``/readyz`` needs no credentials; the detail goes to the log.
Checking the models means hashing their files, so that result is reused for a minute.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from alembic.script import ScriptDirectory
from sqlalchemy import text

from openfrt.config import home_dir
from openfrt.errors import ModelError
from openfrt.records.database import alembic_config
from openfrt.records.store import RecordStore
from openfrt.vision import EngineConfig
from openfrt.vision.detectors import DETECTORS
from openfrt.vision.embedders import EMBEDDERS
from openfrt.vision.zoo import ModelZoo

log = logging.getLogger(__name__)

#: How long a models check is reused.
MODELS_CHECK_SECONDS = 60.0

DATABASE_UNREACHABLE = "database unreachable"
SCHEMA_NOT_CURRENT = "database schema is not current"
MODELS_MISSING = "face models not loadable"


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str | None = None


class ReadinessCheck:
    """The checks behind ``/readyz``, for one store and the engine configuration the server uses."""

    def __init__(self, store: RecordStore, engine: EngineConfig) -> None:
        self.store = store
        self.engine = engine
        self.head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        self._models: tuple[float, bool] | None = None
        self._last_reason: str | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Readiness:
        reason = self._problem()
        if reason != self._last_reason:
            self._last_reason = reason
            log.log(logging.WARNING if reason else logging.INFO, "readiness: %s", reason or "ready")
        return Readiness(reason is None, reason)

    def _problem(self) -> str | None:
        try:
            with self.store.engine.connect() as connection:
                revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except Exception as exc:  # noqa: BLE001 - any failure to read is "unreachable"; the detail is logged
            log.warning("readiness: the database cannot be read: %s", exc)
            return DATABASE_UNREACHABLE
        if revision != self.head:
            log.warning("readiness: database schema is at %s, this openfrt expects %s", revision, self.head)
            return SCHEMA_NOT_CURRENT
        return None if self._models_ready() else MODELS_MISSING

    def _models_ready(self) -> bool:
        with self._lock:
            if self._models is not None and time.monotonic() - self._models[0] < MODELS_CHECK_SECONDS:
                return self._models[1]
            ready = models_ready(self.engine)
            self._models = (time.monotonic(), ready)
            return ready


def models_ready(config: EngineConfig) -> bool:
    """Whether the configured detector and embedder are present with their recorded checksums
    (plug-ins without files, such as ``hog``, always are)."""
    zoo = ModelZoo(home_dir())
    for name, registry in ((config.detector, DETECTORS), (config.embedder, EMBEDDERS)):
        try:
            entry = zoo.get(name)
        except ModelError:
            if name in registry.names():
                continue
            log.warning("readiness: model %s is unknown", name)
            return False
        try:
            if not zoo.is_ready(entry):
                log.warning("readiness: model %s is missing or has changed", name)
                return False
        except OSError as exc:
            log.warning("readiness: model %s cannot be read: %s", name, exc)
            return False
    return True
