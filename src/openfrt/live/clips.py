"""The best face of a short uploaded clip, for a retrospective or operator-initiated search.

An officer may have footage rather than a still. The clip is decoded in memory (PyAV reads
from bytes; OpenCV would need a temporary file, which could outlive a crash with a face in
it), sampled evenly, and the single best view by :func:`view_score` — size, sharpness and
pose — is searched, as the live pipeline chooses views of a track.
"""

from __future__ import annotations

import io

import av
import numpy as np

from openfrt.errors import NoFaceError, NotAnImageError
from openfrt.live.tracking import view_score
from openfrt.vision import Face, FaceEngine, Template

#: Most frames looked at in one clip: enough to find a good view in a minute of footage
#: without making the officer wait for every frame to be searched for faces.
MAX_SAMPLED_FRAMES = 60


def is_clip(data: bytes) -> bool:
    """True for the video containers officers are likely to upload (MP4/MOV, Matroska/WebM, AVI)."""
    return data[4:8] == b"ftyp" or data[:4] == b"\x1a\x45\xdf\xa3" or (data[:4] == b"RIFF" and data[8:12] == b"AVI ")


def best_face_in_clip(engine: FaceEngine, data: bytes, label: str) -> tuple[Face, Template, float, np.ndarray]:
    """The best view of any face in the clip, its template, its time in seconds and its frame
    (to show the searcher which face was searched)."""
    best: tuple[float, Face, np.ndarray, float] | None = None
    for rgb, seconds in _sampled_frames(data, label):
        for face in engine.detector.detect(rgb):
            score = view_score(face)
            if best is None or score > best[0]:
                best = (score, face, rgb, seconds)
    if best is None:
        raise NoFaceError(label, f"no face found in the clip (detector {engine.detector.name})")
    _, face, rgb, seconds = best
    return face, engine.embedder.embed(rgb, [face])[0], seconds, rgb


def _sampled_frames(data: bytes, label: str) -> list[tuple[np.ndarray, float]]:
    """Evenly spaced frames, at most about :data:`MAX_SAMPLED_FRAMES`, whatever the clip's length
    (which containers do not always state): whenever twice that many are kept, every other one
    is dropped and the sampling step doubles, so memory stays bounded."""
    kept: list[tuple[np.ndarray, float]] = []
    step = 1
    try:
        with av.open(io.BytesIO(data)) as container:
            for index, frame in enumerate(container.decode(container.streams.video[0])):
                if index % step:
                    continue
                kept.append((frame.to_ndarray(format="rgb24"), float(frame.time or 0.0)))
                if len(kept) >= 2 * MAX_SAMPLED_FRAMES:
                    kept, step = kept[::2], step * 2
    except (av.FFmpegError, IndexError) as exc:
        raise NotAnImageError(label, f"not a readable video clip ({exc})") from None
    if not kept:
        raise NotAnImageError(label, "the clip has no video frames")
    return kept
