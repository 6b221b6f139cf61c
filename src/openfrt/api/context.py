"""Everything a request handler needs, opened once when the server starts.

The face engine is built at start-up (models are converted on the very first run and cached),
so the first enrolment or search is not slow. Live deployments get their own engine with the
detector input limited for video (see :func:`live_engine_config`).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from openfrt.api.alert_cards import alert_cards
from openfrt.api.downloads import AnonymousDownloads
from openfrt.api.feed import AlertFeed
from openfrt.api.model_migration import MigrationRunner
from openfrt.api.settings import ServerSettings
from openfrt.footage import records as footage_records
from openfrt.footage.jobs import FootageJobs
from openfrt.gallery import Gallery
from openfrt.gallery.reference_index import ReferenceIndexes
from openfrt.integrations.destinations import DestinationService
from openfrt.integrations.dispatcher import EventDispatcher
from openfrt.live.alerts import AlertService
from openfrt.live.deployments import DeploymentService
from openfrt.live.leases import lease_seconds, server_id
from openfrt.live.pipeline import live_engine_config
from openfrt.live.recovery import Recovery, RecoveryWatch
from openfrt.live.supervisor import LiveSupervisor
from openfrt.observability import metrics
from openfrt.observability.health import ReadinessCheck
from openfrt.records import RecordStore
from openfrt.records.users import UserService
from openfrt.vision import EngineConfig, FaceEngine
from openfrt.vision.zoo import ModelZoo

if TYPE_CHECKING:
    from openfrt.cluster.cameras import ClusterCameras


#: How long a stopping server waits for events due to go out (e.g. its deployments' ends).
EVENT_DRAIN_SECONDS = 5.0


class ServerContext:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        #: Enrolment and search share one engine across request threads, one at a time.
        self.vision_lock = threading.Lock()
        self.store = RecordStore.open(settings.home)
        try:
            self.engine_config = EngineConfig.from_env()
            self.engine = FaceEngine(self.engine_config)
            self.gallery = Gallery(self.store, self.engine, indexes=self._cluster_indexes())
            self.users = UserService(self.store)
            self.alerts = AlertService(self.store)
            self.deployments = DeploymentService(self.store, self.gallery)
            self.footage_jobs = FootageJobs()
            self.supervisor = LiveSupervisor(
                self.deployments, lambda: FaceEngine(live_engine_config(self.engine_config)), realtime=settings.realtime_files,
                cluster=self._cluster_cameras(self.engine_config), server=server_id(self.store.home),
            )
            self.feed = AlertFeed(self.alerts, settings.alert_poll_seconds,
                                  present=lambda found: alert_cards(self.gallery, self.users, found))
            self.destinations = DestinationService(self.store)
            self.dispatcher = EventDispatcher(self.store, public_url=settings.public_url)
            self.readiness = ReadinessCheck(self.store, self.engine_config)
            self.public_downloads = AnonymousDownloads(self.store)
            self.migrations = MigrationRunner(self.store, ModelZoo(self.store.home), self.use_engine)
            # Deployments whose process was lost (this server's before a crash, or any other's):
            # resumed here if this server ran them, else ended as interrupted; checked at start
            # and twice per lease length.
            self.recovery = RecoveryWatch(
                Recovery(self.deployments, server=self.supervisor.server, resume=self.supervisor.resume), lease_seconds() / 2
            )
        except BaseException:
            self.store.close()
            raise

    def _cluster_indexes(self) -> ReferenceIndexes | None:
        """On a cluster with ``index_shards``, the reference index split over shard actors."""
        cluster = self.settings.cluster
        if cluster is None:
            return None
        from openfrt.cluster.settings import connect, require_shared_database

        require_shared_database(self.store.engine.url.render_as_string())
        connect(cluster.address)
        if not cluster.index_shards:
            return None
        from openfrt.cluster.shards import ShardedReferenceIndexes

        return ShardedReferenceIndexes(self.store, cluster)

    def _cluster_cameras(self, engine_config: EngineConfig) -> ClusterCameras | None:
        if self.settings.cluster is None:
            return None
        from openfrt.cluster.cameras import ClusterCameras

        return ClusterCameras(
            self.settings.cluster, live_engine_config(engine_config), self.deployments.source_policy, self.settings.realtime_files
        )

    def use_engine(self, engine_config: EngineConfig) -> None:
        """Serve with another model from now on (after a migration moved every watchlist to it);
        deployments already running keep the engine and snapshot they started with."""
        engine = FaceEngine(engine_config)
        with self.vision_lock:
            self.engine_config, self.engine = engine_config, engine
            self.gallery = Gallery(self.store, engine, indexes=self.gallery.indexes)
            self.deployments.gallery = self.gallery
            self.readiness.engine = engine_config
            if self.supervisor.cluster is not None:
                self.supervisor.cluster.use_engine(live_engine_config(engine_config))

    def start(self) -> None:
        footage_records.end_abandoned(self.store)  # this host's searches whose process died: failed, not "running"
        self.feed.start()
        self.dispatcher.start()
        metrics.watch_database(self.store.engine)
        metrics.LIVE.watch(self.supervisor, self.store)
        self.recovery.start()

    def close(self) -> None:
        """End running deployments (publishing their records), stop the feed, give their last
        events a moment to go out, close the store."""
        try:
            self.recovery.stop()
            self.supervisor.shutdown()
            self.feed.stop()
            self.dispatcher.stop(drain_seconds=EVENT_DRAIN_SECONDS)
            self.gallery.indexes.close()
            self.public_downloads.flush()
        finally:
            metrics.LIVE.unwatch(self.supervisor, self.store)
            self.store.close()
