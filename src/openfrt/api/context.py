"""Everything a request handler needs, opened once when the server starts.

The face engine is built at start-up (models are converted on the very first run and cached),
so the first enrolment or search is not slow. Live deployments get their own engine with the
detector input limited for video (see :func:`live_engine_config`).
"""

from __future__ import annotations

import threading

from openfrt.api.feed import AlertFeed
from openfrt.api.model_migration import MigrationRunner
from openfrt.api.settings import ServerSettings
from openfrt.gallery import Gallery
from openfrt.live.alerts import AlertService
from openfrt.live.deployments import DeploymentService
from openfrt.live.pipeline import live_engine_config
from openfrt.live.supervisor import LiveSupervisor
from openfrt.records import RecordStore
from openfrt.records.users import UserService
from openfrt.vision import EngineConfig, FaceEngine
from openfrt.vision.zoo import ModelZoo


class ServerContext:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        #: Enrolment and search share one engine across request threads, one at a time.
        self.vision_lock = threading.Lock()
        self.store = RecordStore.open(settings.home)
        try:
            self.engine_config = EngineConfig.from_env()
            self.engine = FaceEngine(self.engine_config)
            self.gallery = Gallery(self.store, self.engine)
            self.users = UserService(self.store)
            self.alerts = AlertService(self.store)
            self.deployments = DeploymentService(self.store, self.gallery)
            self.supervisor = LiveSupervisor(
                self.deployments, lambda: FaceEngine(live_engine_config(self.engine_config)), realtime=settings.realtime_files
            )
            self.feed = AlertFeed(self.alerts, settings.alert_poll_seconds)
            self.migrations = MigrationRunner(self.store, ModelZoo(self.store.home), self.use_engine)
        except BaseException:
            self.store.close()
            raise

    def use_engine(self, engine_config: EngineConfig) -> None:
        """Serve with another model from now on (after a migration moved every watchlist to it);
        deployments already running keep the engine and snapshot they started with."""
        engine = FaceEngine(engine_config)
        with self.vision_lock:
            self.engine_config, self.engine = engine_config, engine
            self.gallery = Gallery(self.store, engine)
            self.deployments.gallery = self.gallery

    def start(self) -> None:
        self.feed.start()

    def close(self) -> None:
        """End running deployments (publishing their records), stop the feed, close the store."""
        try:
            self.supervisor.shutdown()
            self.feed.stop()
        finally:
            self.store.close()
