"""Retrospective search of footage: every person in a file, searched against the reference database.

The live pipeline (:class:`~openfrt.live.pipeline.CameraPipeline`) runs over a sampled source
(:mod:`openfrt.footage.sampling`) with a :class:`~openfrt.footage.leads.LeadSink` whose matcher
is the reference database and whose threshold is the review threshold; its "alerts" are leads.

**Speed.** The file is cut into time segments that ``workers`` processes (one per core, each
with its own face engine, single-threaded) take one at a time; matching stays in this process,
which holds the reference database's index once, and answers each worker's probes over a pipe
(a probe is 512 bytes; detection dominates). Leads of all segments are linked at the end, so a
person cut by a segment's end is one lead. With one worker the search runs in this process.

**Threshold.** By default the review threshold is the model's calibrated threshold for one
false candidate in 1,000 searches of a database this size (the floor a live deployment may use
on one officer's authority); each sampled sighting of a person is one search, so a person seen
in several samples has several chances of a false candidate. ``threshold`` overrides it.

**Records.** One footage search is one audited retrospective search (``kind: footage``),
recorded when it ends with every subject proposed; its leads are stored encrypted and deleted
by retention like alert images (:mod:`openfrt.footage.records`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openfrt.evaluation import calibration
from openfrt.footage import records
from openfrt.footage.leads import Lead, LeadSink, link_leads
from openfrt.footage.sampling import DEFAULT_INTERVAL, ChangeGate, FootageInfo, SampledVideoSource, Sampling, choose_sampling, probe
from openfrt.gallery.matching import Candidate, Matcher
from openfrt.live.pipeline import CameraPipeline, PipelineConfig
from openfrt.live.regions import RegionConfig
from openfrt.live.source_policy import SourcePolicy
from openfrt.live.sources import SourceError, check_source
from openfrt.vision import EngineConfig, FaceEngine
from openfrt.vision.types import Template

if TYPE_CHECKING:
    from openfrt.gallery import Gallery
    from openfrt.records import Actor

log = logging.getLogger(__name__)

#: Longest stretch of footage one worker takes at a time: short enough to share an hour
#: between two workers evenly, long enough that cut tracks (linked again) are rare.
SEGMENT_SECONDS = 300.0

#: How often a worker reports progress, in seconds of source time.
PROGRESS_EVERY = 2.0

#: Where a footage search detects: the live pipeline's regions, with a full pass every 3 s of
#: footage instead of 1 s (a face that neither moves nor is tracked is found within 3 s). On a
#: busy composed view that took 6.2x real time to 8.4x (H.264) with the same people found (README).
FOOTAGE_REGIONS = RegionConfig(full_pass_seconds=3.0)


def default_workers(duration: float) -> int:
    """One search worker per core, at most two (detection uses each core fully), and no more than
    the file has segments: a worker process takes seconds to start and load its engine, which
    made a 3-minute file slower with two (5.4x real time against 12.6x with one, README)."""
    return max(1, min(2, os.cpu_count() or 1, math.ceil(duration / SEGMENT_SECONDS)))


def review_threshold(model_id: str, database_size: int, fallback: float) -> float:
    """The default review threshold (module docstring); ``fallback`` for an uncalibrated model."""
    floor = calibration.floor_threshold(model_id, max(1, database_size))
    if floor is None:
        log.warning("no open-set calibration for %s: reviewing candidates at its 1:1 threshold %.3f", model_id, fallback)
        return fallback
    return float(floor)


@dataclass(frozen=True)
class Segment:
    index: int
    start: float
    end: float


@dataclass(frozen=True)
class Progress:
    """How far a search is: ``done`` of ``duration`` seconds of footage after ``elapsed`` seconds."""

    done: float
    duration: float
    elapsed: float

    @property
    def share(self) -> float:
        return min(1.0, self.done / self.duration) if self.duration else 1.0

    @property
    def speed(self) -> float:
        """Seconds of footage searched per second: the multiple of real time."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class SegmentCounts:
    """What searching segments did (added up over segments)."""

    decoded: int = 0
    due: int = 0
    unchanged: int = 0
    faces_scanned: int = 0
    looked_at: list[float] = field(default_factory=list)
    #: CPU-side seconds per pipeline stage (waiting for frames, detect, track, embed, match).
    stages: dict[str, float] = field(default_factory=dict)

    def add(self, other: SegmentCounts) -> None:
        self.decoded += other.decoded
        self.due += other.due
        self.unchanged += other.unchanged
        self.faces_scanned += other.faces_scanned
        self.looked_at.extend(other.looked_at)
        for stage, seconds in other.stages.items():
            self.stages[stage] = self.stages.get(stage, 0.0) + seconds


@dataclass
class FootageResult:
    """A finished search: the file, how it was sampled, the review threshold, the leads (linked,
    in time order), what was done, and how long it took."""

    info: FootageInfo
    sampling: Sampling
    threshold: float
    leads: list[Lead]
    counts: SegmentCounts
    seconds: float
    workers: int
    search_id: int | None = None

    @property
    def speed(self) -> float:
        return self.info.duration / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        """What the search did, without anything about faces (stored with the search)."""
        return {**self.info.as_dict(), "sampling": self.sampling.describe(), "interval": round(self.sampling.interval, 3),
                "keyframes_only": self.sampling.keyframes_only, "frames_decoded": self.counts.decoded,
                "frames_due": self.counts.due, "frames_unchanged": self.counts.unchanged,
                "frames_looked_at": len(self.counts.looked_at), "people_searched": self.counts.faces_scanned,
                "stage_seconds": {stage: round(seconds, 2) for stage, seconds in sorted(self.counts.stages.items())},
                "leads": len(self.leads), "seconds": round(self.seconds, 3), "speed": round(self.speed, 3), "workers": self.workers}


def segments(duration: float, workers: int) -> list[Segment]:
    """``duration`` cut into equal segments of at most :data:`SEGMENT_SECONDS`, at least one per worker."""
    count = max(workers, math.ceil(duration / SEGMENT_SECONDS), 1)
    return [Segment(i, duration * i / count, duration * (i + 1) / count if i < count - 1 else math.inf) for i in range(count)]


def search_segment(
    path: Path, segment: Segment, sampling: Sampling, engine: FaceEngine, matcher: Matcher, threshold: float, top: int,
    on_progress: Callable[[float], None], on_lead: Callable[[Lead], None], lock: threading.Lock | None = None,
    regions: RegionConfig = FOOTAGE_REGIONS,
) -> SegmentCounts:
    """Run the live pipeline over one segment's sampled frames; leads go to ``on_lead``; ``lock``
    guards an engine shared with others (the server's).

    Every sampled face track is confirmed by one confident detection (``min_hits`` 1): samples
    are too far apart for a walker's second sighting to join the track (see the sampling module)."""
    sink = LeadSink(matcher, threshold, engine.embedder.model_id, on_lead)
    source = SampledVideoSource(path, sampling, segment.start, None if math.isinf(segment.end) else segment.end, ChangeGate(),
                                on_progress)
    config = PipelineConfig(cadence=1, min_hits=1, top=top, regions=regions)
    stages = dict(CameraPipeline("footage", source, engine, sink, config, lock).run().seconds)
    stats = source.stats
    return SegmentCounts(stats.decoded, stats.due, stats.unchanged, sink.faces_scanned, list(stats.looked_at), stages)


class ReferenceMatcher:
    """The reference database as the pipeline's matcher: unaudited per probe (the search is
    audited once), one probe at a time (the index is shared by the workers' threads)."""

    def __init__(self, gallery: Gallery) -> None:
        self.gallery = gallery
        self._lock = threading.Lock()

    def rank(self, probe: Template, top: int) -> list[Candidate]:
        with self._lock:
            return self.gallery.reference_candidates(probe, top)


class FootageSearch:
    """Searches footage files inside the footage directory against ``gallery``'s reference database.

    ``lock``: with one worker the search uses ``gallery``'s engine in this process, and takes
    ``lock`` around detection and embedding when others share that engine (the server)."""

    def __init__(self, gallery: Gallery, policy: SourcePolicy, workers: int | None = None, interval: float = DEFAULT_INTERVAL,
                 lock: threading.Lock | None = None, regions: RegionConfig = FOOTAGE_REGIONS) -> None:
        self.gallery = gallery
        self.policy = policy
        #: None: :func:`default_workers` for each file's length.
        self.workers = workers
        self.interval = interval
        self.lock = lock
        #: Where in each sampled frame to detect (the live pipeline's default unless given).
        self.regions = regions

    def check_file(self, file: str) -> Path:
        """The file to search, if the source policy allows it (inside the footage directory) and it exists."""
        target = check_source(file, self.policy)
        path = Path(target)
        if not path.is_file():
            raise SourceError(f"{file} is not a video file")
        return path

    def default_threshold(self) -> float:
        """The review threshold for the reference database as it is now (:func:`review_threshold`)."""
        model_id = self.gallery.model_id
        return review_threshold(model_id, self.gallery.reference_subjects(model_id), self.gallery.engine.threshold)

    def run(
        self, file: str, *, case_ref: str, reason: str, actor: Actor | str, top: int = 5, threshold: float | None = None,
        on_progress: Callable[[Progress], None] | None = None, on_start: Callable[[int], None] | None = None,
    ) -> FootageResult:
        """Search ``file``: checked, recorded as running, searched, then its leads stored and the
        search audited once (or recorded as failed, and audited with what it had proposed)."""
        path = self.check_file(file)
        records.check_request(case_ref, reason)
        self.gallery.check_reference_model(self.gallery.model_id)
        info = probe(path)
        sampling = choose_sampling(info, self.interval)
        chosen = threshold if threshold is not None else self.default_threshold()
        records.end_abandoned(self.gallery.store)  # searches whose process died are not "running"
        search_id = records.start(self.gallery.store, file=file, case_ref=case_ref, reason=reason, actor=actor,
                                  model_id=self.gallery.model_id, threshold=chosen, top=top)
        if on_start is not None:
            on_start(search_id)
        started = time.monotonic()
        leads: list[Lead] = []
        try:
            workers = self.workers or default_workers(info.duration)
            counts = self._search(path, info, sampling, chosen, top, workers, leads.append, on_progress, started)
            linked = link_leads(leads, self.gallery.engine.threshold, top)
            result = FootageResult(info, sampling, chosen, linked, counts, time.monotonic() - started, workers, search_id)
        except BaseException as exc:
            records.fail(self.gallery.store, search_id, actor, str(exc) or type(exc).__name__,
                         link_leads(leads, self.gallery.engine.threshold, top))
            raise
        records.finish(self.gallery.store, search_id, actor, result)
        return result

    def _search(
        self, path: Path, info: FootageInfo, sampling: Sampling, threshold: float, top: int, workers: int,
        on_lead: Callable[[Lead], None], on_progress: Callable[[Progress], None] | None, started: float,
    ) -> SegmentCounts:
        parts = segments(info.duration, workers)
        done = {segment.index: 0.0 for segment in parts}
        lock = threading.Lock()

        def progress(segment: Segment, seconds: float) -> None:
            with lock:
                done[segment.index] = max(done[segment.index], min(seconds, info.duration) - segment.start)
                if on_progress is not None:
                    on_progress(Progress(sum(done.values()), info.duration, time.monotonic() - started))

        counts = SegmentCounts()
        matcher = ReferenceMatcher(self.gallery)
        if workers == 1:
            for segment in parts:
                counts.add(search_segment(path, segment, sampling, self.gallery.engine, matcher, threshold, top,
                                          lambda seconds, segment=segment: progress(segment, seconds), on_lead, self.lock,
                                          self.regions))
        else:
            _WorkerPool(workers, self.gallery.engine.config, self.regions).run(
                path, iter(parts), sampling, matcher, threshold, top, progress, on_lead, counts)
        for segment in parts:
            progress(segment, min(segment.end, info.duration))
        return counts


class _WorkerPool:
    """``workers`` spawned processes that take segments one at a time and search them; this
    process answers their probes (``rank``) and collects their leads and progress.

    Spawned, not forked: a fork would copy the parent's threads' locks (the server's, the
    store's) mid-use, and onnxruntime's thread pools are not fork-safe."""

    def __init__(self, workers: int, engine_config: EngineConfig, regions: RegionConfig) -> None:
        self.workers = workers
        self.engine_config = engine_config.model_copy(update={"threads": 1})
        self.regions = regions

    def run(
        self, path: Path, parts: Iterator[Segment], sampling: Sampling, matcher: Matcher, threshold: float, top: int,
        progress: Callable[[Segment, float], None], on_lead: Callable[[Lead], None], counts: SegmentCounts,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        lock = threading.Lock()
        errors: list[str] = []
        processes, threads = [], []
        for _ in range(self.workers):
            ours, theirs = context.Pipe()
            process = context.Process(target=_worker, args=(theirs, path, sampling, self.engine_config, self.regions, threshold, top), daemon=True)
            process.start()
            theirs.close()
            processes.append(process)
            thread = threading.Thread(target=self._serve, args=(ours, parts, lock, matcher, progress, on_lead, counts, errors),
                                      name="footage worker", daemon=True)
            thread.start()
            threads.append(thread)
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
        finally:
            for process in processes:
                process.join(5)
                if process.is_alive():
                    process.kill()
        if errors:
            raise RuntimeError(f"a footage search worker failed: {errors[0]}")

    @staticmethod
    def _serve(
        conn: Connection, parts: Iterator[Segment], lock: threading.Lock, matcher: Matcher,
        progress: Callable[[Segment, float], None], on_lead: Callable[[Lead], None], counts: SegmentCounts, errors: list[str],
    ) -> None:
        """Answer one worker until it has no segment left, fails, or dies."""
        current: Segment | None = None
        try:
            while True:
                message = conn.recv()
                kind = message[0]
                if kind == "rank":
                    _, vector, model, version, top = message
                    conn.send([(c.subject, c.similarity, c.rank) for c in matcher.rank(Template(vector, model, version), top)])
                elif kind == "next":
                    with lock:
                        current = next(parts, None) if not errors else None
                    conn.send(current)
                    if current is None:
                        return
                elif kind == "progress" and current is not None:
                    progress(current, message[1])
                elif kind == "lead":
                    with lock:
                        on_lead(message[1])
                elif kind == "done":
                    with lock:
                        counts.add(message[1])
                elif kind == "error":
                    errors.append(message[1])
                    return
        except EOFError:
            errors.append("it ended without finishing its segment")
        except Exception as exc:  # noqa: BLE001 - a garbled message or a failed match fails the search, never shortens it
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()


class _Channel:
    """A worker's end of its pipe, used by the pipeline's thread (segments, probes, leads) and
    the source's reader thread (progress): one message at a time — two threads writing at once
    interleave their bytes — and a question held with its answer."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        with self._lock:
            self.conn.send(message)

    def ask(self, message: tuple[Any, ...]) -> Any:
        with self._lock:
            self.conn.send(message)
            return self.conn.recv()


class _RemoteMatcher:
    """A worker's matcher: asks the searching process, which holds the reference database."""

    def __init__(self, channel: _Channel) -> None:
        self.channel = channel

    def rank(self, probe: Template, top: int) -> list[Candidate]:
        answer = self.channel.ask(("rank", probe.vector, probe.model, probe.model_version, top))
        return [Candidate(subject, similarity, rank) for subject, similarity, rank in answer]


def _worker(conn: Connection, path: Path, sampling: Sampling, engine_config: EngineConfig, regions: RegionConfig, threshold: float,
            top: int) -> None:
    """A worker process: one single-threaded engine, segments until none is left."""
    import cv2

    channel = _Channel(conn)
    try:
        cv2.setNumThreads(1)
        engine = FaceEngine(engine_config)
        matcher = _RemoteMatcher(channel)
        while (segment := channel.ask(("next",))) is not None:
            reported = [segment.start]

            def report(seconds: float) -> None:
                if seconds - reported[0] >= PROGRESS_EVERY:
                    reported[0] = seconds
                    channel.send(("progress", seconds))

            counts = search_segment(path, segment, sampling, engine, matcher, threshold, top, report,
                                    lambda lead: channel.send(("lead", lead)), regions=regions)
            channel.send(("done", counts))
    except Exception:  # noqa: BLE001 - reported to the searching process, which raises it
        with contextlib.suppress(OSError):  # unless that process has gone
            channel.send(("error", traceback.format_exc(limit=5)))
    finally:
        conn.close()
