"""Sampled decoding of recorded footage: look at a few frames a second and decode little else.

An hour of 1080p25 is 90,000 frames; decoding all of them alone runs at about 4-10x real time
on 2 cores (H.264), so searching at 10x real time cannot decode every frame. A person walking
through a camera's view is in it for one to several seconds, so a frame every
:data:`DEFAULT_INTERVAL` seconds still sees them, a few times:

* **Keyframes only** when the file has them at least that often (:func:`choose_sampling`):
  the decoder is told to skip every other frame (PyAV ``skip_frame="NONKEY"``), which costs
  almost nothing — OpenCV's mp4v files (a keyframe every 12 frames) and CCTV recorders'
  H.264 (a keyframe every 1-2 s) are read at hundreds of frames a second.
* **Sparse keyframes** (x264's default is one per 250 frames, 10 s at 25 fps): every frame
  has to be decoded to reach the ones due; non-reference frames are skipped undecoded
  (``"NONREF"``) and only the frames due are converted to RGB. That is decode-bound, as slow
  as decoding the file, and says so in its description.

Of the frames due, those that show no change from the last frame looked at (a 160x90 copy of
the luma plane, :class:`ChangeGate`) are skipped too: nothing is detected in an empty scene.

**What sampling misses**: a face in view for less than the interval may fall between two
samples; a face that is visible (turned to the camera, unoccluded) only between samples is not
seen. A walking face moves several face heights between samples, farther than the tracker's
gate, so one person becomes several tracks — the footage search links them again
(:mod:`openfrt.footage.leads`).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from openfrt.live.sources import SourceError, VideoFileSource

#: Seconds between the frames looked at: a walker is in view for 1-3 s on composed
#: walk-throughs (and longer in most real views), so each is seen two or more times.
DEFAULT_INTERVAL = 0.5

#: Keyframes up to this many intervals apart are used as the samples (the interval becomes
#: theirs); sparser ones are not, and every frame is decoded to reach the frames due.
KEYFRAME_SLACK = 1.25

#: How much of the file is read (packets only, nothing decoded) to measure its keyframe interval.
PROBE_SECONDS = 60.0

ProgressCallback = Callable[[float], None]


@dataclass(frozen=True)
class FootageInfo:
    """What a footage file holds: length, frame rate, size and how often it has keyframes."""

    path: Path
    duration: float
    fps: float
    width: int
    height: int
    #: Median seconds between keyframes in the first :data:`PROBE_SECONDS`; None if only one.
    keyframe_interval: float | None

    def as_dict(self) -> dict[str, object]:
        return {"file": self.path.name, "duration": round(self.duration, 3), "fps": self.fps, "width": self.width,
                "height": self.height, "keyframe_interval": self.keyframe_interval}


@dataclass(frozen=True)
class Sampling:
    """Which frames are looked at: one every ``interval`` seconds, from keyframes only or not."""

    interval: float
    keyframes_only: bool

    def describe(self) -> str:
        if self.keyframes_only:
            return f"keyframes only, about one every {self.interval:.2f} s"
        return f"one frame every {self.interval:.2f} s, decoding every frame (keyframes are too sparse)"


def probe(path: Path) -> FootageInfo:
    """Length, frame rate, size and keyframe interval of ``path``, by reading packets (no decoding)."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 25)
            duration = _duration(stream, container)
            keyframes: list[float] = []
            for packet in container.demux(stream):
                if packet.pts is None or packet.time_base is None:
                    continue
                seconds = float(packet.pts * packet.time_base)
                if packet.is_keyframe:
                    keyframes.append(seconds)
                if seconds > PROBE_SECONDS:
                    break
            width, height = stream.codec_context.width, stream.codec_context.height
    except (av.FFmpegError, IndexError) as exc:
        raise SourceError(f"{path} could not be read as a video: {exc}") from None
    gaps = [b - a for a, b in zip(keyframes, keyframes[1:])]
    return FootageInfo(path, duration, fps, width, height, statistics.median(gaps) if gaps else None)


def choose_sampling(info: FootageInfo, interval: float = DEFAULT_INTERVAL) -> Sampling:
    """Keyframes only if they come at least about every ``interval`` (every one, or every nth when
    they are n times denser); otherwise every frame decoded and one every ``interval`` kept."""
    keyframes = info.keyframe_interval
    if keyframes is not None and keyframes <= interval * KEYFRAME_SLACK:
        return Sampling(keyframes * max(1, int(interval / keyframes + 1e-6)), True)
    return Sampling(interval, False)


class ChangeGate:
    """Whether a frame differs from the last one let through: a ``size`` copy of its luma plane
    with at least ``min_pixels`` pixels ``level`` grey levels or more apart.

    At 160x90 a pixel averages a 12x12 block of a 1080p frame, so a 40 px face is about 3x3
    pixels — a person entering, leaving or moving changes several — while compression noise
    averages out."""

    def __init__(self, size: tuple[int, int] = (160, 90), level: int = 16, min_pixels: int = 3) -> None:
        self.size, self.level, self.min_pixels = size, level, min_pixels
        self._last: np.ndarray | None = None

    def changed(self, frame: av.VideoFrame) -> bool:
        plane = frame.planes[0]
        luma = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        small = cv2.resize(luma, self.size, interpolation=cv2.INTER_AREA).astype(np.int16)
        if self._last is not None and int((np.abs(small - self._last) >= self.level).sum()) < self.min_pixels:
            return False
        self._last = small
        return True


@dataclass
class SamplingStats:
    """What a sampled source did: frames decoded, frames due by the interval, those skipped as
    unchanged, and the source times of the frames handed on (for measuring what sampling missed)."""

    decoded: int = 0
    due: int = 0
    unchanged: int = 0
    looked_at: list[float] = field(default_factory=list)


class SampledVideoSource(VideoFileSource):
    """The frames of ``path`` between ``start`` and ``end`` seconds that ``sampling`` picks and
    ``gate`` finds changed, decoded ahead in a thread like every recorded source.

    ``on_progress`` hears the source time of each decoded frame. ``decoder_threads``: 1 decodes
    in the reader thread alone (one search worker per core); 0 lets FFmpeg choose."""

    def __init__(
        self,
        path: Path,
        sampling: Sampling,
        start: float = 0.0,
        end: float | None = None,
        gate: ChangeGate | None = None,
        on_progress: ProgressCallback | None = None,
        decoder_threads: int = 1,
    ) -> None:
        super().__init__(path)
        self.sampling, self.start, self.end = sampling, start, end
        self.gate, self.on_progress, self.decoder_threads = gate, on_progress, decoder_threads
        self.stats = SamplingStats()

    def _decoded(self) -> Iterator[tuple[np.ndarray, float]]:
        # Half a frame of slack, so that keyframes exactly one interval apart are all due.
        slack = 0.5 / self.fps
        due = self.start
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            if self.decoder_threads != 1:
                stream.thread_type = "AUTO"
                stream.codec_context.thread_count = self.decoder_threads
            stream.codec_context.skip_frame = "NONKEY" if self.sampling.keyframes_only else "NONREF"
            origin = float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0.0
            if self.start > 0:
                container.seek(int((self.start + origin) / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if self._stopped.is_set() or frame.time is None:
                    return
                seconds = float(frame.time) - origin
                if seconds < self.start - slack:
                    continue
                if self.end is not None and seconds >= self.end - slack:
                    return
                self.stats.decoded += 1
                if self.on_progress is not None:
                    self.on_progress(seconds)
                if seconds < due - slack:
                    continue
                due = seconds + self.sampling.interval
                self.stats.due += 1
                if self.gate is not None and not self.gate.changed(frame):
                    self.stats.unchanged += 1
                    continue
                self.stats.looked_at.append(seconds)
                yield frame.to_ndarray(format="rgb24"), seconds


def _duration(stream: av.video.stream.VideoStream, container: av.container.InputContainer) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    raise SourceError(f"{container.name} does not say how long it is; footage search needs to know")
