"""Frame sources for the live pipeline: video files, stream URLs, webcams and image folders.

Two ways of reading, because the two kinds of input need opposite things:

* **Recorded** input (a file, a folder) is evidence-like: every frame is processed, however
  long it takes. A reader thread decodes a few frames ahead so decoding overlaps detection.
* **Live** input (RTSP/HTTP, a webcam, or a file with ``realtime=True``) must not fall behind
  the world: a reader thread keeps only the newest few frames (:data:`BACKLOG_FRAMES`), and
  older ones the pipeline did not take in time are dropped and counted (``Frame.dropped``). A
  live stream that fails is reopened with exponential back-off (capped at ``max_delay``); the
  outage is reported as a gap.

Times: seconds into the input for files and folders (frame index / fps); Unix time for live.
A file or folder can be opened to start ``after`` a source time (a camera restarted elsewhere
resumes where it was); skipped frames are not processed, and a paced file is paced from there.

A video file opened with ``decode_every=N`` (the pipeline's cadence) does not decode the
non-reference frames (no other frame is decoded from them: most B-frames) that fall between
every Nth counted from each keyframe: they are still delivered, in place and with their time,
but without pixels (:attr:`Frame.decoded` is False), and a pipeline detects on the next decoded
frame when a detection round falls on one.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from datetime import UTC, datetime
from pathlib import Path

import av
import cv2
import numpy as np

from openfrt.errors import ImageError, OpenFRTError
from openfrt.live.source_policy import SourcePolicy
from openfrt.net_policy import without_credentials
from openfrt.vision.image import load_image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

#: How many decoded frames a recorded source reads ahead of the pipeline.
READ_AHEAD = 4

#: How often a waiting consumer re-checks whether its source was stopped, in seconds.
POLL_SECONDS = 0.1

GapCallback = Callable[[datetime, datetime], None]
#: RGB pixels, or a call that converts a decoded frame to them; None for a frame not decoded.
Pixels = np.ndarray | Callable[[], np.ndarray] | None
#: Opens a stream and yields ``(pixels, time)`` until it fails (raises) or ends (returns).
Connect = Callable[[], Iterator[tuple[Pixels, float]]]


class SourceError(OpenFRTError):
    """A source could not be opened: missing file, empty folder, unreadable video."""


@dataclass(frozen=True)
class Frame:
    """One decoded frame, its time, and how many frames were dropped just before it.
    ``received`` is when it was decoded (monotonic clock), to measure how long it waited.

    ``pixels`` are RGB, or what gives them: a decoder's frame is converted to RGB only when
    :attr:`rgb` is first read, because a live pipeline detects on every ``cadence``-th frame
    and never looks at the others (the conversion is 1-2 ms of a 1080p frame's 8-9 ms). A frame
    the source did not decode at all has none (``decoded`` is False)."""

    pixels: Pixels
    time: float
    dropped: int = 0
    received: float = field(default_factory=time.monotonic)

    @property
    def decoded(self) -> bool:
        return self.pixels is not None

    @cached_property
    def rgb(self) -> np.ndarray:
        if self.pixels is None:
            raise SourceError(f"the frame at {self.time:.3f} s was not decoded (a non-reference frame the source skipped)")
        return self.pixels() if callable(self.pixels) else self.pixels


@dataclass(frozen=True)
class Backoff:
    """Reconnection delays: ``initial`` seconds, times ``factor`` per failure, at most ``max_delay``."""

    initial: float = 0.5
    factor: float = 2.0
    max_delay: float = 30.0

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield delay
            delay = min(delay * self.factor, self.max_delay)


class Source(ABC):
    """Something that yields frames until it ends or :meth:`stop` is called."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._stopped = threading.Event()

    def stop(self) -> None:
        """Ask the source to end; :meth:`frames` returns soon after (safe from any thread)."""
        self._stopped.set()

    @abstractmethod
    def frames(self, on_gap: GapCallback | None = None) -> Iterator[Frame]:
        """The frames, in order; ``on_gap`` hears of each outage of a live source."""


class ImageFolderSource(Source):
    """Each image in a folder, in name order, is one frame ``1 / fps`` seconds after the last."""

    def __init__(self, folder: Path, fps: float = 1.0, max_pixels: int | None = None, after: float | None = None) -> None:
        super().__init__(str(folder))
        if not folder.is_dir():
            raise SourceError(f"{folder} is not a folder")
        self.paths = sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise SourceError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.fps = fps
        self.max_pixels = max_pixels
        self.after = after

    def frames(self, on_gap: GapCallback | None = None) -> Iterator[Frame]:
        for index, path in enumerate(self.paths):
            if self._stopped.is_set():
                return
            if self.after is not None and index / self.fps <= self.after:
                continue
            try:
                rgb = load_image(path, self.max_pixels) if self.max_pixels else load_image(path)
            except ImageError as exc:
                log.warning("skipping frame %s: %s", path.name, exc)
                continue
            yield Frame(rgb, index / self.fps)


class VideoFileSource(Source):
    """A video file, decoded ahead in a thread; every frame is processed and the file ends the source.

    ``decode_every``: see the module docstring."""

    def __init__(self, path: Path, after: float | None = None, decode_every: int = 1) -> None:
        super().__init__(str(path))
        self.path = path
        self.fps = video_fps(path)
        self.after = after
        self.decode_every = decode_every

    def frames(self, on_gap: GapCallback | None = None) -> Iterator[Frame]:
        ahead: queue.Queue[Frame | None] = queue.Queue(maxsize=READ_AHEAD)
        reader = threading.Thread(target=contextvars.copy_context().run, args=(self._read, ahead), name=f"read {self.path.name}", daemon=True)
        reader.start()
        try:
            while not self._stopped.is_set():
                try:
                    frame = ahead.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                if frame is None:
                    return
                yield frame
        finally:
            self._stopped.set()
            reader.join()

    def _read(self, ahead: queue.Queue[Frame | None]) -> None:
        frames = (Frame(pixels, seconds) for pixels, seconds in self._decoded())
        for item in itertools.chain(frames, [None]):  # None marks the end of the file
            while not self._stopped.is_set():
                try:
                    ahead.put(item, timeout=POLL_SECONDS)
                    break
                except queue.Full:
                    continue


    def _decoded(self) -> Iterator[tuple[Pixels, float]]:
        """The frames to process and their times: every frame here; a subclass may sample them
        (footage search, :mod:`openfrt.footage.sampling`)."""
        return _file_frames(self.path, self.fps, self._stopped, self.after, self.decode_every)


#: Frames a live source holds for the pipeline: enough to ride out a slow round (a full pass,
#: many new faces to embed) without dropping frames, few enough that the pipeline is never more
#: than 0.4 s (at 25 fps) behind the camera. On walking_1080p.mp4 played in real time, keeping
#: only the newest frame dropped 10-17% of the frames of a camera the pipeline kept up with on
#: average; keeping 10, at most 5 of 315, all in the stream's first 0.4 s (README).
BACKLOG_FRAMES = 10


class LatestFrameSource(Source):
    """A live source: a reader thread keeps the newest ``backlog`` frames; older unread ones are
    dropped, and the pipeline takes the oldest kept.

    ``connect`` opens the input and yields ``(rgb, time)``. With ``reconnect`` (streams,
    webcams), a failure or end reopens it after the next back-off delay and the outage is
    reported as a gap; without it (a file played in real time), the end of input ends the source.
    """

    def __init__(
        self, name: str, connect: Connect, reconnect: bool = True, backoff: Backoff = Backoff(), backlog: int = BACKLOG_FRAMES
    ) -> None:
        super().__init__(name)
        if backlog < 1:
            raise ValueError(f"backlog must be at least 1 frame, not {backlog}")
        self.connect = connect
        self.reconnect = reconnect
        self.backoff = backoff
        self._condition = threading.Condition()
        self._kept: deque[Frame] = deque()
        self._backlog = backlog
        self._dropped = 0
        self._gaps: list[tuple[datetime, datetime]] = []
        self._finished = False

    def frames(self, on_gap: GapCallback | None = None) -> Iterator[Frame]:
        reader = threading.Thread(target=contextvars.copy_context().run, args=(self._read,), name=f"read {self.name}", daemon=True)
        reader.start()
        try:
            while True:
                frame, gaps, finished = self._take()
                for started, ended in gaps:
                    if on_gap is not None:
                        on_gap(started, ended)
                if frame is not None:
                    yield frame
                elif finished:
                    return
        finally:
            self._stopped.set()
            reader.join()

    def _take(self) -> tuple[Frame | None, list[tuple[datetime, datetime]], bool]:
        """The oldest kept frame (with the drops before it) and pending gaps, waiting briefly for them."""
        with self._condition:
            if not self._kept and not self._gaps and not self._finished:
                self._condition.wait(POLL_SECONDS)
            frame = self._kept.popleft() if self._kept else None
            if frame is not None and self._dropped:
                frame = replace(frame, dropped=self._dropped)
                self._dropped = 0
            gaps, self._gaps = self._gaps, []
            return frame, gaps, self._finished and frame is None

    def _publish(self, frame: Frame) -> None:
        with self._condition:
            if len(self._kept) == self._backlog:
                self._kept.popleft()
                self._dropped += 1
            self._kept.append(frame)
            self._condition.notify()

    def _read(self) -> None:
        delays = self.backoff.delays()
        outage_started: datetime | None = None
        while not self._stopped.is_set():
            try:
                for pixels, seconds in self.connect():
                    if self._stopped.is_set():
                        break
                    if outage_started is not None:
                        self._report_gap(outage_started, _now())
                        outage_started, delays = None, self.backoff.delays()
                    self._publish(Frame(pixels, seconds))
            except (OSError, cv2.error, OpenFRTError) as exc:
                log.warning("source %s failed: %s", self.name, exc)
            if not self.reconnect or self._stopped.is_set():
                break
            outage_started = outage_started or _now()
            delay = next(delays)
            log.warning("source %s lost; reconnecting in %.1f s", self.name, delay)
            self._stopped.wait(delay)
        if outage_started is not None:
            self._report_gap(outage_started, _now())
        with self._condition:
            self._finished = True
            self._condition.notify()

    def _report_gap(self, started: datetime, ended: datetime) -> None:
        with self._condition:
            self._gaps.append((started, ended))
            self._condition.notify()


def check_source(spec: str, policy: SourcePolicy) -> str:
    """The source to open for ``spec`` if ``policy`` allows it (see :meth:`SourcePolicy.check`)
    and, for a file or folder, it is there — checked when a deployment is planned too, so a
    typing mistake shows before authorisation rather than at the start. Streams and webcams can
    only be tried when they are opened."""
    target = policy.check(spec)
    if "://" in target or target.isdigit():
        return target
    path = Path(target)
    if not (path.is_dir() or path.is_file()):
        raise SourceError(f"source not found: {spec} (give a video file, a folder of images, a stream URL or a webcam index)")
    return target


def open_source(
    spec: str, *, policy: SourcePolicy, realtime: bool = False, folder_fps: float = 1.0, after: float | None = None,
    backlog: int = BACKLOG_FRAMES, decode_every: int = 1,
) -> Source:
    """The source a camera names: a stream URL, a webcam, a folder of images or a video file —
    if ``policy`` allows it (checked again before each reconnection of a stream).

    ``after``: start a file or folder after this source time (streams and webcams are live and
    always start now). ``backlog``: frames a live source keeps for the pipeline.
    ``decode_every``: the pipeline's cadence, for a video file (see the module docstring;
    streams and webcams decode every frame)."""
    if decode_every < 1:
        raise ValueError(f"decode_every must be at least 1, not {decode_every}")
    target = check_source(spec, policy)
    if "://" in target:
        label = without_credentials(target)
        return LatestFrameSource(label, lambda: _capture_frames(policy.check(spec), label), backlog=backlog)
    if target.isdigit():
        return LatestFrameSource(f"webcam {target}", lambda: _capture_frames(int(target), f"webcam {target}"), backlog=backlog)
    path = Path(target)
    if path.is_dir():
        return ImageFolderSource(path, folder_fps, after=after)
    if realtime:
        fps = video_fps(path)

        def paced() -> Iterator[tuple[Pixels, float]]:
            return _paced(_file_frames(path, fps, threading.Event(), after, decode_every))

        return LatestFrameSource(str(path), paced, reconnect=False, backlog=backlog)
    return VideoFileSource(path, after, decode_every)


def open_sources(
    cameras: Mapping[str, str], *, policy: SourcePolicy, realtime: bool = False, decode_every: int = 1
) -> dict[str, Source]:
    """A deployment's cameras (name -> source description) opened, all or none, if ``policy``
    allows each: if one fails, those already open are stopped and the error raised."""
    sources: dict[str, Source] = {}
    try:
        for camera, spec in cameras.items():
            sources[camera] = open_source(spec, policy=policy, realtime=realtime, decode_every=decode_every)
    except OpenFRTError:
        for source in sources.values():
            source.stop()
        raise
    return sources


def video_fps(path: Path) -> float:
    """Frames per second of a video file; raises :class:`SourceError` if it cannot be opened."""
    try:
        with av.open(str(path)) as container:
            rate = container.streams.video[0].average_rate
    except (av.FFmpegError, IndexError):
        raise SourceError(f"{path} could not be opened as a video") from None
    return float(rate) if rate and rate > 0 else 25.0


def _file_frames(
    path: Path, fps: float, stopped: threading.Event, after: float | None = None, decode_every: int = 1
) -> Iterator[tuple[Pixels, float]]:
    """Frames, to be converted to RGB when looked at (None: not decoded, see the module
    docstring), and their times; frames up to ``after`` seconds are skipped.

    PyAV, converting straight to RGB: the same pixels as OpenCV's reader turned from BGR, for
    0.8 of its CPU per 1080p frame (the reader thread already overlaps decoding with the
    pipeline, and with several cameras every core is needed for detection)."""
    index = 0
    try:
        with av.open(str(path)) as container:
            for index, pixels in _decode_needed(container, container.streams.video[0], fps, decode_every):
                if stopped.is_set():
                    return
                if after is None or index / fps > after:
                    yield pixels, index / fps
    except (av.FFmpegError, IndexError) as exc:  # a damaged file ends where it can no longer be read
        log.warning("%s: no more frames after frame %d: %s", path.name, index, exc)


def _decode_needed(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, fps: float, every: int
) -> Iterator[tuple[int, Pixels]]:
    """Each frame's number (from its timestamp) and its pending RGB conversion, in display order.

    Every ``every``-th frame counted from the last keyframe is decoded; a non-reference frame in
    between is not (FFmpeg's ``skip_frame``, set packet by packet) and comes with None. Counting
    from keyframes keeps the frames due on the stream's own pattern of reference frames, which a
    file made of joined clips shifts at each join. A packet without a timestamp is always
    decoded, and a frame without one numbered after the last."""
    codec = stream.codec_context
    origin, base = stream.start_time or 0, stream.time_base

    def number(pts: int | None) -> int | None:
        return None if pts is None or base is None else round(float((pts - origin) * base) * fps)

    skipped: list[int] = []  # numbers of packets sent with skipping asked for, not yet seen decoded
    last, phase = -1, 0
    for packet in container.demux(stream):
        wanted = number(packet.pts)
        if packet.is_keyframe and wanted is not None:
            phase = wanted % every
        skip = every > 1 and wanted is not None and wanted % every != phase
        codec.skip_frame = "NONREF" if skip else "DEFAULT"
        if skip:
            heapq.heappush(skipped, wanted)
        for frame in codec.decode(packet):
            shown = number(frame.pts)
            last = last + 1 if shown is None else shown
            while skipped and skipped[0] <= last:  # frames come in display order: earlier ones were skipped
                if (gone := heapq.heappop(skipped)) < last:
                    yield gone, None
            yield last, partial(frame.to_ndarray, format="rgb24")
    while skipped:
        yield heapq.heappop(skipped), None


def _paced(frames: Iterator[tuple[Pixels, float]]) -> Iterator[tuple[Pixels, float]]:
    """Release each frame no earlier than its time after the first frame's, as a camera would."""
    origin: float | None = None
    for pixels, seconds in frames:
        if origin is None:
            origin = time.monotonic() - seconds
        wait = origin + seconds - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        yield pixels, seconds


def _capture_frames(target: str | int, label: str) -> Iterator[tuple[Pixels, float]]:
    """Frames of a stream or webcam, stamped with wall-clock time; returns when the stream stops.
    ``label`` names the source in errors (a URL without its password)."""
    capture = cv2.VideoCapture(target)
    try:
        if not capture.isOpened():
            raise SourceError(f"could not open {label}")
        while True:
            ok, bgr = capture.read()
            if not ok:
                return
            yield partial(cv2.cvtColor, bgr, cv2.COLOR_BGR2RGB), time.time()
    finally:
        capture.release()


def _now() -> datetime:
    return datetime.now(UTC)
