"""Everything a request handler needs, opened once when the server starts.

The face engine is built at start-up (models are converted on the very first run and cached),
so the first enrolment or search is not slow. Live deployments get their own engine with the
detector input limited for video (see :func:`live_engine_config`).
"""

from __future__ import annotations

import threading

from openfrt.api.alert_cards import alert_cards
from openfrt.api.feed import AlertFeed
from openfrt.api.settings import ServerSettings
from openfrt.gallery import Gallery
from openfrt.live.alerts import AlertService
from openfrt.live.deployments import DeploymentService
from openfrt.live.pipeline import live_engine_config
from openfrt.live.supervisor import LiveSupervisor
from openfrt.records import RecordStore
from openfrt.records.users import UserService
from openfrt.vision import EngineConfig, FaceEngine


class ServerContext:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        #: Enrolment and search share one engine across request threads, one at a time.
        self.vision_lock = threading.Lock()
        self.store = RecordStore.open(settings.home)
        try:
            engine_config = EngineConfig.from_env()
            self.engine = FaceEngine(engine_config)
            self.gallery = Gallery(self.store, self.engine)
            self.users = UserService(self.store)
            self.alerts = AlertService(self.store)
            self.deployments = DeploymentService(self.store, self.gallery)
            self.supervisor = LiveSupervisor(
                self.deployments, lambda: FaceEngine(live_engine_config(engine_config)), realtime=settings.realtime_files
            )
            self.feed = AlertFeed(self.alerts, settings.alert_poll_seconds,
                                  present=lambda found: alert_cards(self.gallery, self.users, found))
        except BaseException:
            self.store.close()
            raise

    def start(self) -> None:
        self.feed.start()

    def close(self) -> None:
        """End running deployments (publishing their records), stop the feed, close the store."""
        try:
            self.supervisor.shutdown()
            self.feed.stop()
        finally:
            self.store.close()
