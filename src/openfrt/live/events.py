"""The contract between the live pipeline and a running deployment.

The pipeline (``live/pipeline.py``) finds faces and decides when a track matches; the deployment
(``live/deployments.py``) owns the watchlist, the threshold and every record. They meet only
here, so the pipeline never touches storage and the deployment never touches pixels of people
who did not match.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from openfrt.gallery.matching import Matcher
    from openfrt.live.pipeline import CameraStats, PipelineConfig
    from openfrt.live.source_policy import SourcePolicy
    from openfrt.vision import EngineConfig


@dataclass(frozen=True)
class AlertEvent:
    """One person (track) on one camera matched one watchlist subject.

    ``similarity`` is the best the track reached for ``subject`` when the alert was raised;
    ``source_time`` is seconds into a file, or Unix time for live sources. ``probe_crop`` is a
    JPEG of the matched face with a margin; ``frame`` is a JPEG of the whole frame with every
    other face pixelated. ``candidates`` are the top watchlist subjects for the probe, best
    first, as ``(subject, similarity)``.
    """

    camera: str
    track_id: int
    subject: str
    similarity: float
    source_time: float
    wall_time: datetime
    probe_crop: bytes
    frame: bytes
    candidates: tuple[tuple[str, float], ...]


class DeploymentSink(Protocol):
    """What a running deployment offers the pipeline: the watchlist to match and places to report.

    Counters are per camera and additive: the pipeline reports increments, not totals.
    """

    deployment_id: int
    name: str
    threshold: float
    model_id: str
    matcher: Matcher
    cameras: list[str]

    def add_faces_scanned(self, camera: str, count: int) -> None:
        """``count`` more people (ended tracks, not detections) were searched on ``camera``."""

    def add_frames_dropped(self, camera: str, count: int) -> None:
        """``count`` more frames of a live source were skipped because processing fell behind."""

    def record_gap(self, camera: str, started: datetime, ended: datetime) -> None:
        """``camera`` delivered no frames between ``started`` and ``ended`` (stream lost)."""

    def raise_alert(self, alert: AlertEvent) -> int:
        """Record ``alert`` for adjudication; returns its id."""

    def end(self, actor: str) -> object:
        """End the deployment (destroying its watchlist copy) and return its published record."""


class CameraRunner(Protocol):
    """What runs a started deployment's cameras until their sources end or :meth:`stop`:
    threads in this process (:class:`~openfrt.live.pipeline.LiveRunner`) or Ray actors across a
    cluster (:class:`~openfrt.cluster.cameras.ClusterRunner`)."""

    def run(self) -> None:
        """Process every camera to its end; re-raises a camera's failure."""

    def stop(self) -> None:
        """Ask every camera to end; :meth:`run` returns once they have."""

    def stats(self) -> dict[str, CameraStats]:
        """Each camera's running figures, for displays."""


@dataclass(frozen=True)
class CameraOrder:
    """What a camera needs to run its pipeline away from its deployment's process (in a process
    of its own, or a cluster's actor): the source it opens where it runs, the engine it builds
    there, and the deployment's settings it matches with."""

    deployment: str
    camera: str
    source: str
    #: The rule the source obeys, checked again where it is opened (and at each reconnection).
    policy: SourcePolicy
    realtime: bool
    engine: EngineConfig
    pipeline: PipelineConfig
    threshold: float
    model_id: str


class CameraSettings:
    """The deployment as a camera running away from it (in a process of its own, or a cluster's
    actor) sees it: its settings and the matcher it was given. Subclasses (the rest of a
    :class:`DeploymentSink`) say where what the camera reports goes."""

    deployment_id = 0

    def __init__(self, order: CameraOrder, matcher: Matcher) -> None:
        self.name, self.threshold, self.model_id = order.deployment, order.threshold, order.model_id
        self.matcher = matcher
        self.cameras = [order.camera]
