"""The live pipeline, one thread per camera: decode → detect → track → best views → embed → match → alert.

**Where each round detects.** Only where the frame changed, around live tracks, and over the
whole frame at least every ``regions.full_pass_seconds`` (:mod:`openfrt.live.regions`); large
regions are looked at shrunk to ``regions.coarse_width`` and small faces found there again at
full resolution. On composed walk-throughs both scanned the same faces as the whole frame.

**Which tracks are faces.** A track is *confirmed* — searched, and counted as a face scanned —
once it has been seen in ``min_hits`` detection rounds and at least one of its detections
reached the detector's ``confident_score`` (0.95 for MTCNN, 0.8 for YuNet). MTCNN's last stage lets boxes
through from 0.35, and on composed walk-throughs such boxes (half a large face, offset) formed
tracks of their own: 42 faces scanned for 40 passers. Every passer there peaked at 0.97 or more,
the extra boxes at 0.5 or less; on ``walking_1080p.mp4`` the rule drops 7 tracks on coat
buttons, a hand, an emblem and a poster and 2 profile faces (peaks 0.64 and 0.94), keeping
the 10 people whose faces were seen well enough to search.

**When a confirmed track is searched.** Each track keeps its ``keep_views`` best views (by
:func:`~openfrt.live.tracking.view_score`); every view that enters them is searched in the
round it arrives — so a track is searched as soon as it is confirmed, and again whenever a view
better than its second best appears. There is no "much better" margin and nothing is held back
for the end of the track: on composed walk-throughs (seeds 0-2, 30 watchlisted passers pooled)
the earlier rule — search the best view when 5% better, and the rest at track end — found
14 at threshold 0.976 with p95 latency 2.0 s, this rule finds 15 with p95 0.85 s; keeping 3
views instead of 2 found the same at 25% more embeddings. (The latency was hidden before:
alerts carried the time of the best view, not the time they were raised.)

Each search matches every new view on its own and, once two views are searched, their **mean
template**: several views of one face average out pose, blur and lighting (as multi-image
enrolment does for stills). On composed walk-throughs, where every view comes from one still,
the mean never beat the best single view (nor raised the best impostor score); it is there for
real video, where a person's views differ in pose. Embeddings are batched across the tracks of
one frame. A track ends after ``max_gap_seconds`` of source time without its face, whatever
the cadence.

**One alert per track.** The first probe whose best candidate reaches the deployment's
threshold raises one :class:`AlertEvent` with that similarity, the source time of the frame on
which it was raised, and the track's best view as media; the track is then no longer searched,
and its kept frame, views and templates are dropped at once. A track is one face scanned
(``sink.add_faces_scanned``) when it ends, if it was searched.

**Privacy.** Frames, chips and templates (including mean templates) live only in this module's
objects; a track's are released when it ends or alerts. Nothing about faces that do not match
is written, encoded or logged above DEBUG; only an alert's media is encoded (JPEG, in memory)
and handed to the sink.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime

from openfrt.config import home_dir
from openfrt.errors import ModelError, ModelMismatchError
from openfrt.gallery.matching import Candidate
from openfrt.live.defaults import DEFAULT_CADENCE
from openfrt.live.events import AlertEvent, DeploymentSink
from openfrt.live.privacy import crop, encode_jpeg, pixelate
from openfrt.live.regions import RegionConfig, RegionPlanner, detect_in_regions
from openfrt.live.sources import Frame, Source
from openfrt.live.tracking import Snapshot, Track, Tracker, View, view_score
from openfrt.observability.logs import log_context
from openfrt.vision import EngineConfig, FaceEngine
from openfrt.vision.detectors import DETECTORS
from openfrt.vision.embedders import EMBEDDERS
from openfrt.vision.embedders.chip import ChipEmbedder, native_bf16
from openfrt.vision.types import Face, Template
from openfrt.vision.zoo import ModelZoo

log = logging.getLogger(__name__)

AlertCallback = Callable[[AlertEvent, int], None]

#: Defaults measured on ../shared/video/walking_1080p.mp4 (1080p25, 6-10 faces of 25-60 px,
#: about 14 people by eye) on 2 cores shared with other jobs; median fps of 3-5 runs / people
#: tracked (the spread is the other jobs' load):
#:   MTCNN (the default detector until YuNet), width 960: cadence 1 11 / 27, cadence 2 19-28 / 19,
#:   cadence 3 35-36 / 20; width 1280 cadence 2 22 / 18; full width cadence 1 12 / 28.
#:   YuNet width 960: cadence 1 15-27 / 19, cadence 2 25-41 / 19; width 640 cadence 2 40 / 14
#:   (misses the smallest faces); full width cadence 1 5 / 16.
#: (People tracked there were counted when tracks ended after 8 detection rounds; with tracks
#: ending after ``max_gap_seconds`` = 1 s, MTCNN width 960 tracks 24 at cadence 1, 19 at 2, 20 at 3.)
#: Detection is ~80% of the CPU time; decoding (~6 ms a frame) overlaps it in the reader thread.
#: Since tracks are confirmed only by a confident detection, width 960 cadence 2 counts 10 people
#: there (the rest were non-faces and two profiles) at 34-39 fps (3 runs, load average 2.3-2.7).
#: But faces scanned is a published figure, and at 960 px YuNet misses faces under about 60 px of a
#: 1080p frame: composed walk-throughs with ground truth (benchmarks/faces_scanned.py) counted 23
#: of 40 passers with 30-70 px faces and 32 of 40 with the generator's 40-200 px, against 39 of 40
#: at full width. So frames up to 1920 px wide are detected at full resolution, and wider ones are
#: brought down to 1920: on walking_1080p.mp4 that ran at 0.4-0.6 of 960 px's fps (README).
DEFAULT_DETECT_WIDTH = 1920

#: The runtime live video asks its models for where :func:`native_bf16` (see :func:`live_engine_config`).
LIVE_RUNTIME = "openvino-bf16"


@dataclass(frozen=True)
class PipelineConfig:
    """How a camera is processed.

    ``cadence``: detect on every Nth frame only; frames in between are skipped (a video file's
    source need not even decode them: ``open_source(decode_every=cadence)``), and the tracker's
    gate (a face height from the predicted position) absorbs N frames of motion.
    ``max_gap_seconds``: source time a track may go without its face before it ends.
    ``keep_views``: best views kept per track. ``min_hits``: detection rounds before a track
    is searched or counted. ``top``: candidates kept with an alert. ``regions``: where in a
    frame each round detects (:mod:`openfrt.live.regions`: where there is motion, around live
    tracks, and the whole frame at least every ``regions.full_pass_seconds``; 0 there detects
    the whole frame every round).
    """

    cadence: int = DEFAULT_CADENCE
    keep_views: int = 2
    min_hits: int = 2
    max_gap_seconds: float = 1.0
    top: int = 5
    regions: RegionConfig = field(default_factory=RegionConfig)

    def __post_init__(self) -> None:
        if self.cadence < 1 or self.keep_views < 1 or self.min_hits < 1 or self.max_gap_seconds < 0:
            raise ValueError("cadence, keep_views and min_hits must be at least 1; max_gap_seconds at least 0")


@dataclass
class CameraStats:
    """Running figures for one camera, for the live display (read from other threads)."""

    frames: int = 0
    dropped: int = 0
    faces_scanned: int = 0
    alerts: int = 0
    #: Times a lost stream came back (each is a gap in the record).
    reconnects: int = 0
    #: How long the latest frame waited between being decoded and being processed.
    lag_seconds: float = 0.0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    #: Seconds spent per stage: waiting for frames (decode), regions, detect, track (incl. chips), embed, match.
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @property
    def fps(self) -> float:
        elapsed = (self.finished or time.monotonic()) - self.started
        return self.frames / elapsed if elapsed > 0 else 0.0


def live_engine_config(base: EngineConfig, detect_width: int | None = None) -> EngineConfig:
    """``base`` as live video runs it: the detector's input limited to ``detect_width`` px wide,
    and the detector and embedder in bfloat16 where the CPU computes it natively and they offer it.

    ``None`` means :data:`DEFAULT_DETECT_WIDTH` if the detector can downsize (else full frames);
    ``0`` means full frames. Detectors downsize internally and report boxes, landmarks and
    quality in full-frame pixels, so chips are still cut from the full-resolution frame.
    Embedding is most of a frame's CPU after detection; bfloat16 probes found the same LFW mates
    at both thresholds as float32 ones (README), so a runtime the configuration names is kept and
    otherwise live takes the faster one.
    """
    zoo = ModelZoo(home_dir())
    config = base
    embedder, _ = zoo.resolve(base.embedder, "embedder")
    detector, _ = zoo.resolve(base.detector, "detector")
    for field, options, registry, plugin in (("embedder_options", base.embedder_options, EMBEDDERS, embedder),
                                             ("detector_options", base.detector_options, DETECTORS, detector)):
        if "runtime" not in options and registry.accepts(plugin, "runtime") and native_bf16():
            config = config.model_copy(update={field: {**options, "runtime": LIVE_RUNTIME}})
    can_downsize = DETECTORS.accepts(detector, "max_width")
    if detect_width is None:
        detect_width = DEFAULT_DETECT_WIDTH if can_downsize else 0
    if detect_width == 0:
        return config
    if not can_downsize:
        raise ModelError(f"detector {base.detector!r} cannot limit its input width; use --detect-width 0")
    return config.model_copy(update={"detector_options": {**config.detector_options, "max_width": detect_width}})


class CameraPipeline:
    """Processes one camera's source into alerts and counts for ``sink``.

    ``lock`` is given when several cameras share one engine: detection and embedding then run
    one at a time (onnxruntime sessions are not documented as safe for concurrent runs).
    """

    def __init__(
        self,
        camera: str,
        source: Source,
        engine: FaceEngine,
        sink: DeploymentSink,
        config: PipelineConfig = PipelineConfig(),
        lock: threading.Lock | None = None,
        on_alert: AlertCallback | None = None,
    ) -> None:
        require_live_engine(camera, engine, sink.model_id)
        self.camera = camera
        self.source = source
        self.detector = engine.detector
        self.embedder: ChipEmbedder = engine.embedder
        self.sink = sink
        self.config = config
        self.tracker = Tracker(config.max_gap_seconds)
        self.planner = RegionPlanner(config.regions)
        self._confident_score = engine.detector.confident_score
        #: Source time of the frame being processed: when an alert is raised.
        self._now = 0.0
        #: A detection round fell on a frame the source did not decode; the next decoded one takes it.
        self._detection_owed = False
        self.stats = CameraStats()
        self._lock: AbstractContextManager[object] = lock if lock is not None else nullcontext()
        self._on_alert = on_alert

    def run(self) -> CameraStats:
        """Process every frame the source gives, then end the remaining tracks."""
        self.stats.started = time.monotonic()
        frames = self.source.frames(on_gap=self._gap)
        try:
            while True:
                waited = time.perf_counter()
                frame = next(frames, None)
                self.stats.seconds["decode"] += time.perf_counter() - waited
                if frame is None:
                    break
                self.process(frame)
        finally:
            frames.close()  # stops the source's reader thread even if processing failed
        self._finish(self.tracker.end_all())
        self.stats.finished = time.monotonic()
        return self.stats

    def _gap(self, started: datetime, ended: datetime) -> None:
        self.stats.reconnects += 1
        self.sink.record_gap(self.camera, started, ended)

    def process(self, frame: Frame) -> None:
        """One frame: count drops, and on detection frames update tracks and search."""
        self.stats.lag_seconds = time.monotonic() - frame.received
        self.stats.frames += 1
        self._now = frame.time
        if frame.dropped:
            self.stats.dropped += frame.dropped
            self.sink.add_frames_dropped(self.camera, frame.dropped)
        if (self.stats.frames - 1) % self.config.cadence and not self._detection_owed:
            return
        if not frame.decoded:  # a frame the source skipped (see openfrt.live.sources): detect on the next
            self._detection_owed = True
            return
        self._detection_owed = False
        with self._timed("regions"):
            rects = self.planner.plan(frame.rgb, frame.time, [track.predicted(frame.time) for track in self.tracker.tracks])
        with self._timed("detect"), self._lock:
            faces = detect_in_regions(self.detector, frame.rgb, rects, self.config.regions)
        with self._timed("track"):
            update = self.tracker.update(faces, frame.time)
            # Every face known to be in the frame, so an alert's frame pixelates all but one: this
            # round's detections and the live tracks not detected in it (outside its regions or missed).
            unseen = tuple(track.predicted(frame.time) for track in self.tracker.tracks if track.last_seen < frame.time)
            snapshot = Snapshot(frame.rgb, tuple(face.box for face in faces) + unseen, frame.time)
            for track, face in update.assigned:
                self._offer(track, face, frame, snapshot)
        self._search([(track, view) for track, _ in update.assigned if self._confirmed(track)
                      for view in track.views if view.template is None])
        self._finish(update.ended)

    def _offer(self, track: Track, face: Face, frame: Frame, snapshot: Snapshot) -> None:
        """Keep this detection as a view of ``track`` if it is among its best (chips only then)."""
        if track.alerted:
            return
        score = view_score(face)
        if len(track.views) >= self.config.keep_views and score <= track.views[-1].score:
            return
        track.offer(View(face, self.embedder.chip(frame.rgb, face), score, frame.time), snapshot, self.config.keep_views)

    def _confirmed(self, track: Track) -> bool:
        """Whether ``track`` is a face to search: seen in ``min_hits`` rounds, at least once with
        the detector's confident score (see the module docstring), and not yet alerted."""
        return not track.alerted and track.hits >= self.config.min_hits and track.peak_score >= self._confident_score

    def _finish(self, ended: Sequence[Track]) -> None:
        """Count the ended tracks that were searched and release every ended track's views.

        Nothing is left to search here: a confirmed track's kept views were searched as they
        arrived, and a track never confirmed is a detection to ignore, not a face."""
        scanned = sum(1 for track in ended if track.searched_score >= 0.0)
        for track in ended:
            track.release()
        if scanned:
            self.stats.faces_scanned += scanned
            self.sink.add_faces_scanned(self.camera, scanned)

    def _search(self, probes: Sequence[tuple[Track, View]]) -> None:
        """Embed ``probes`` in one batch, match each view and each track's mean template, and
        alert at most once per track."""
        if not probes:
            return
        with self._timed("embed"), self._lock:
            templates = self.embedder.embed_chips([view.chip for _, view in probes])
        with self._timed("match"):
            best: dict[int, tuple[Track, list[Candidate]]] = {}
            for (track, view), template in zip(probes, templates):
                view.template = template
                track.searched_score = max(track.searched_score, view.score)
                self._keep_best(best, track, template)
            for track in {track.id: track for track, _ in probes}.values():
                if (mean := track.mean_template()) is not None:
                    self._keep_best(best, track, mean)
            for track, candidates in best.values():
                if candidates[0].similarity >= self.sink.threshold:
                    self._alert(track, candidates)

    def _keep_best(self, best: dict[int, tuple[Track, list[Candidate]]], track: Track, probe: Template) -> None:
        """Rank ``probe``; keep its candidates as ``track``'s if its top one is the best so far."""
        candidates = self.sink.matcher.rank(probe, self.config.top)
        if candidates and (track.id not in best or candidates[0].similarity > best[track.id][1][0].similarity):
            best[track.id] = (track, candidates)

    def _alert(self, track: Track, candidates: list[Candidate]) -> None:
        """Raise the track's one alert with its best view as media, then drop its kept pixels."""
        best, snapshot = track.best, track.snapshot
        assert best is not None and snapshot is not None  # a searched track has both
        others = [box for box in snapshot.boxes if box != best.face.box]
        alert = AlertEvent(
            camera=self.camera,
            track_id=track.id,
            subject=candidates[0].subject,
            similarity=candidates[0].similarity,
            source_time=self._now,
            wall_time=datetime.now(UTC),
            probe_crop=encode_jpeg(crop(snapshot.rgb, best.face.box)),
            frame=encode_jpeg(pixelate(snapshot.rgb, others)),
            candidates=tuple((candidate.subject, candidate.similarity) for candidate in candidates),
        )
        track.alerted = True
        track.release()
        alert_id = self.sink.raise_alert(alert)
        self.stats.alerts += 1
        log.info("alert %s on camera %s: track %d matched %s (%.3f)", alert_id, self.camera, track.id, alert.subject, alert.similarity)
        if self._on_alert is not None:
            self._on_alert(alert, alert_id)

    def _timed(self, stage: str) -> _Timer:
        return _Timer(self.stats.seconds, stage)


def require_live_engine(camera: str, engine: FaceEngine, model_id: str) -> None:
    """Refuse an engine that cannot run ``camera`` against a watchlist of ``model_id``'s templates."""
    if not isinstance(engine.embedder, ChipEmbedder):
        raise ModelError(f"embedder {engine.embedder.model_id} cannot embed aligned chips; live use needs a chip embedder")
    if engine.embedder.model_id != model_id:
        raise ModelMismatchError(f"camera {camera} embeds with {engine.embedder.model_id} but the watchlist was built with {model_id}")


def join_all(threads: Sequence[threading.Thread]) -> None:
    """Wait for every thread to end, in short joins that keep the main thread responsive to Ctrl-C."""
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)


def available_cores() -> int:
    """The cores this process may run on (its affinity, as a container limits it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def camera_engines(engine: FaceEngine, cameras: int, cores: int) -> list[tuple[FaceEngine, threading.Lock | None]]:
    """An engine (and the lock its cameras share it behind, if several do) for each of ``cameras``:
    ``min(cameras, cores)`` engines of ``engine``'s configuration, each with an equal share of the
    cores as inference threads unless the configuration fixes them; ``engine`` itself where one will do."""
    count = max(1, min(cameras, cores))
    if count == 1:
        lock = threading.Lock() if cameras > 1 else None
        return [(engine, lock)] * cameras
    threads = engine.config.threads or max(1, cores // count)
    engines = [FaceEngine(engine.config.model_copy(update={"threads": threads})) for _ in range(count)]
    locks = [threading.Lock() if index + count < cameras else None for index in range(count)]  # engine index is shared
    return [(engines[index % count], locks[index % count]) for index in range(cameras)]


class _Timer:
    """Adds the time spent in a ``with`` block to ``totals[stage]``."""

    def __init__(self, totals: dict[str, float], stage: str) -> None:
        self.totals, self.stage = totals, stage

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        self.totals[self.stage] += time.perf_counter() - self.start


class LiveRunner:
    """Runs one :class:`CameraPipeline` per camera, each in its own thread, until all sources end.

    Each camera gets an engine of its own while there are cores for one each (``engine``'s
    configuration, its inference threads split between them), so their detection and embedding
    run side by side; cameras beyond the cores share engines, one run at a time per engine. On 2
    cores two 1080p cameras sharing one engine (2 threads, behind a lock) dropped about half again
    as many frames in real time as with an engine each on 1 thread (README): most calls are on
    small windows, which a second thread barely speeds up. Decoding always runs in parallel (one
    reader thread per source).
    """

    def __init__(
        self,
        sink: DeploymentSink,
        sources: dict[str, Source],
        engine: FaceEngine,
        config: PipelineConfig = PipelineConfig(),
        on_alert: AlertCallback | None = None,
        cores: int | None = None,
    ) -> None:
        engines = camera_engines(engine, len(sources), cores or available_cores())
        self.pipelines = [
            CameraPipeline(camera, source, camera_engine, sink, config, lock, on_alert)
            for (camera, source), (camera_engine, lock) in zip(sources.items(), engines)
        ]
        self._errors: list[BaseException] = []

    def run(self) -> None:
        """Process all cameras to their end (or :meth:`stop`); re-raises a camera's failure."""
        threads = [threading.Thread(target=self._run_one, args=(p,), name=f"camera {p.camera}", daemon=True) for p in self.pipelines]
        for thread in threads:
            thread.start()
        join_all(threads)
        if self._errors:
            raise self._errors[0]

    def stop(self) -> None:
        """Ask every source to end; :meth:`run` returns once the pipelines have finished."""
        for pipeline in self.pipelines:
            pipeline.source.stop()

    def stats(self) -> dict[str, CameraStats]:
        return {pipeline.camera: pipeline.stats for pipeline in self.pipelines}

    def _run_one(self, pipeline: CameraPipeline) -> None:
        try:
            with log_context(deployment=pipeline.sink.name, camera=pipeline.camera):
                pipeline.run()
        except BaseException as exc:  # noqa: BLE001 - handed to run() in the main thread, which re-raises it
            log.error("camera %s failed: %s", pipeline.camera, exc)
            self._errors.append(exc)
            self.stop()
