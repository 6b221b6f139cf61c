"""The best face of a short uploaded clip, for a retrospective or operator-initiated search.

An officer may have footage rather than a still. The clip is decoded in memory (PyAV reads
from bytes; OpenCV would need a temporary file, which could outlive a crash with a face in
it), sampled evenly, and the single best view by :func:`view_score` — size, sharpness and
pose — is searched, as the live pipeline chooses views of a track.

A clip is a few hundred kilobytes that can decode to gigabytes, so it is held to limits: the
engine's pixel limit per frame, :data:`MAX_CLIP_FRAMES` and :data:`MAX_CLIP_SECONDS` — checked
against what the container states before anything is decoded, and again on every decoded frame
in case it lied. Frames are looked at one at a time as they are decoded (at most the best one
is kept), and the engine, which searches can only use one at a time, is held only while it
looks at a frame, not while the clip decodes.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Iterator

import av
import numpy as np

from openfrt.errors import ImageTooLargeError, NoFaceError, NotAnImageError
from openfrt.live.tracking import view_score
from openfrt.vision import Face, FaceEngine, Template

#: Most frames looked at in one clip: enough to find a good view in a minute of footage
#: without making the officer wait for every frame to be searched for faces.
MAX_SAMPLED_FRAMES = 60
#: Longest clip accepted, and most frames (a minute at 60 fps, two at 30).
MAX_CLIP_SECONDS = 120.0
MAX_CLIP_FRAMES = 3600


def is_clip(data: bytes) -> bool:
    """True for the video containers officers are likely to upload (MP4/MOV, Matroska/WebM, AVI)."""
    return data[4:8] == b"ftyp" or data[:4] == b"\x1a\x45\xdf\xa3" or (data[:4] == b"RIFF" and data[8:12] == b"AVI ")


def best_face_in_clip(engine: FaceEngine, data: bytes, label: str, lock: threading.Lock) -> tuple[Face, Template, float, np.ndarray]:
    """The best view of any face in the clip, its template, its time in seconds and its frame
    (to show the searcher which face was searched); ``lock`` guards the engine."""
    best: tuple[float, Face, np.ndarray, float] | None = None
    for rgb, seconds in _sampled_frames(data, label, engine.config.max_pixels):
        with lock:
            faces = engine.detector.detect(rgb)
        for face in faces:
            score = view_score(face)
            if best is None or score > best[0]:
                best = (score, face, rgb, seconds)
    if best is None:
        raise NoFaceError(label, f"no face found in the clip (detector {engine.detector.name})")
    _, face, rgb, seconds = best
    with lock:
        return face, engine.embedder.embed(rgb, [face])[0], seconds, rgb


def _sampled_frames(data: bytes, label: str, max_pixels: int) -> Iterator[tuple[np.ndarray, float]]:
    """About :data:`MAX_SAMPLED_FRAMES` evenly spaced frames, decoded one at a time. When the
    container does not say how many frames it holds, every frame is taken at first and the step
    doubles after each :data:`MAX_SAMPLED_FRAMES` taken, so the work stays bounded."""
    taken = 0
    try:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            total = _check_stated(stream, container, label, max_pixels)
            step = max(1, math.ceil(total / MAX_SAMPLED_FRAMES)) if total else 1
            for index, frame in enumerate(container.decode(stream)):
                _check_decoded(frame, index, label, max_pixels)
                if index % step:
                    continue
                yield frame.to_ndarray(format="rgb24"), float(frame.time or 0.0)
                taken += 1
                if not total and taken % MAX_SAMPLED_FRAMES == 0:
                    step *= 2
    except (av.FFmpegError, IndexError) as exc:
        raise NotAnImageError(label, f"not a readable video clip ({exc})") from None
    if not taken:
        raise NotAnImageError(label, "the clip has no video frames")


def stated_frames(stream: av.video.stream.VideoStream, container: av.container.InputContainer) -> int | None:
    """How many frames the container says the clip holds (counted, or length × frame rate)."""
    if stream.frames:
        return int(stream.frames)
    seconds = stated_seconds(stream, container)
    return math.ceil(seconds * float(stream.average_rate)) if seconds and stream.average_rate else None


def stated_seconds(stream: av.video.stream.VideoStream, container: av.container.InputContainer) -> float | None:
    """How long the container says the clip is."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base if container.duration else None


def _check_stated(stream: av.video.stream.VideoStream, container: av.container.InputContainer, label: str, max_pixels: int) -> int | None:
    """Refuse the clip on what its container states; returns the stated frame count, if any."""
    width, height = stream.codec_context.width, stream.codec_context.height
    if width * height > max_pixels:
        raise ImageTooLargeError(label, f"has {width}x{height} frames: more pixels than the limit of {max_pixels:,}")
    if (seconds := stated_seconds(stream, container)) is not None and seconds > MAX_CLIP_SECONDS:
        raise ImageTooLargeError(label, f"lasts {seconds:.0f} seconds; a clip may last {MAX_CLIP_SECONDS:.0f} seconds at most")
    frames = stated_frames(stream, container)
    if frames is not None and frames > MAX_CLIP_FRAMES:
        raise ImageTooLargeError(label, f"holds {frames} frames; a clip may hold {MAX_CLIP_FRAMES} frames at most")
    return frames


def _check_decoded(frame: av.VideoFrame, index: int, label: str, max_pixels: int) -> None:
    """Refuse the clip on a decoded frame that breaks a limit the container's statement hid."""
    if frame.width * frame.height > max_pixels:
        raise ImageTooLargeError(label, f"has a {frame.width}x{frame.height} frame: more pixels than the limit of {max_pixels:,}")
    if index >= MAX_CLIP_FRAMES:
        raise ImageTooLargeError(label, f"holds more than {MAX_CLIP_FRAMES} frames; a clip may hold {MAX_CLIP_FRAMES} frames at most")
    if frame.time is not None and frame.time > MAX_CLIP_SECONDS:
        raise ImageTooLargeError(label, f"lasts more than {MAX_CLIP_SECONDS:.0f} seconds, the most a clip may last")
