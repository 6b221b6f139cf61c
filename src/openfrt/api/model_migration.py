"""A model migration run by the server in the background, started from the console.

Re-embedding every reference image takes minutes, longer than a request may, so the server runs
:class:`openfrt.gallery.migration.ModelMigration` in one background thread and reports its
progress. Requests go on being served with the old model (its templates keep serving); when the
migration completes, the server's engine is switched to the new model so that enrolment,
searches and deployments started afterwards use it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from openfrt.errors import OpenFRTError
from openfrt.gallery.migration import MigrationReport, ModelMigration
from openfrt.records import RecordStore
from openfrt.vision import EngineConfig, FaceEngine
from openfrt.vision.zoo import ModelZoo

log = logging.getLogger(__name__)


@dataclass
class MigrationState:
    """What the console shows: which model, who started it, how far it got, how it ended."""

    model: str | None = None
    started_by: str | None = None
    running: bool = False
    done: int = 0
    total: int = 0
    report: dict[str, Any] | None = None
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "started_by": self.started_by, "running": self.running, "done": self.done,
                "total": self.total, "report": self.report, "error": self.error}


class MigrationRunner:
    """At most one migration at a time; ``on_complete`` receives the new engine's configuration."""

    def __init__(self, store: RecordStore, zoo: ModelZoo, on_complete: Callable[[EngineConfig], None]) -> None:
        self.store = store
        self.zoo = zoo
        self.on_complete = on_complete
        self.state = MigrationState()
        self._thread: threading.Thread | None = None

    def start(self, model: str, actor: str) -> MigrationState:
        """Start migrating to ``model`` (a zoo embedder); refuses while another migration runs."""
        with self.state.lock:
            if self.state.running:
                raise MigrationBusy(f"a migration to {self.state.model} started by {self.state.started_by} is still running")
            if self.zoo.get(model).kind != "embedder":
                raise OpenFRTError(f"{model!r} is a detector; migrate to an embedder")
            config = EngineConfig.from_env(embedder=model)
            engine = FaceEngine(config, self.zoo)  # loads and checks the model before anything starts
            self.state = MigrationState(model=model, started_by=actor, running=True)
            self._thread = threading.Thread(target=self._run, args=(engine, config, actor), name="model-migration", daemon=True)
            self._thread.start()
            return self.state

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, engine: FaceEngine, config: EngineConfig, actor: str) -> None:
        def progress(done: int, total: int, _: str) -> None:
            self.state.done, self.state.total = done, total

        report: MigrationReport | None = None
        try:
            report = ModelMigration(self.store, engine).run(actor=actor, progress=progress)
            if report.completed:
                self.zoo.use(config.embedder)
                self.on_complete(config)
        except Exception as exc:  # noqa: BLE001 - reported to the console; the old templates still serve
            log.exception("model migration to %s failed", config.embedder)
            self.state.error = str(exc)
        finally:
            self.state.report = report.as_dict() if report else None
            self.state.running = False


class MigrationBusy(OpenFRTError):
    """A second migration was asked for while one runs."""
