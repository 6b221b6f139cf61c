"""Uploaded clips for a search: frame size, frame count and length limited before anything is
decoded (from what the container states) and again while decoding (in case it lied), one frame
in memory at a time, and the face engine held only while it looks at a frame."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from typing import Any

import av
import numpy as np
import pytest

from openfrt.errors import ImageTooLargeError, NoFaceError
from openfrt.live import clips
from openfrt.vision import EngineConfig, FaceEngine


def clip(frames: int, width: int = 320, height: int = 240, rate: int = 10, container: str = "mp4") -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as output:
        stream = output.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            image = np.full((height, width, 3), index % 250, np.uint8)
            output.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        output.mux(stream.encode(None))
    return buffer.getvalue()


class Watched:
    """A stand-in for the engine's detector and embedder that records what it was shown and
    whether the engine lock was held meanwhile."""

    name = "watched"

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock
        self.frames: list[tuple[int, int]] = []

    def detect(self, rgb: np.ndarray) -> list[Any]:
        assert self.lock.locked()
        self.frames.append(rgb.shape[:2])
        return []


@pytest.fixture(scope="module")
def engine() -> FaceEngine:
    return FaceEngine(EngineConfig(detector="hog", embedder="dlib", max_pixels=1_000_000))


@pytest.fixture
def watched(engine: FaceEngine, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Watched, threading.Lock]]:
    lock = threading.Lock()
    spy = Watched(lock)
    monkeypatch.setattr(engine, "detector", spy)
    yield spy, lock


def test_frames_over_the_pixel_limit_are_refused_before_any_is_decoded(engine: FaceEngine, watched: tuple[Watched, threading.Lock]) -> None:
    spy, lock = watched
    with pytest.raises(ImageTooLargeError, match="pixels"):
        clips.best_face_in_clip(engine, clip(2, 1600, 1200), "big.mp4", lock)  # 1.9 MP frames, limit 1 MP
    assert spy.frames == []


def test_too_many_frames_or_too_long_a_clip_is_refused_before_decoding(engine: FaceEngine, watched: tuple[Watched, threading.Lock],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    spy, lock = watched
    monkeypatch.setattr(clips, "MAX_CLIP_FRAMES", 40)
    with pytest.raises(ImageTooLargeError, match="frames"):
        clips.best_face_in_clip(engine, clip(50), "many.mp4", lock)
    monkeypatch.setattr(clips, "MAX_CLIP_FRAMES", 1000)
    monkeypatch.setattr(clips, "MAX_CLIP_SECONDS", 3.0)
    with pytest.raises(ImageTooLargeError, match="seconds"):
        clips.best_face_in_clip(engine, clip(50, rate=10), "long.mkv", lock)  # 5 s
    assert spy.frames == []


def test_a_clip_that_states_nothing_is_still_stopped_while_decoding(engine: FaceEngine, watched: tuple[Watched, threading.Lock],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    spy, lock = watched
    monkeypatch.setattr(clips, "stated_frames", lambda stream, container: None)  # as if the container said nothing
    monkeypatch.setattr(clips, "stated_seconds", lambda stream, container: None)
    monkeypatch.setattr(clips, "MAX_CLIP_FRAMES", 20)
    with pytest.raises(ImageTooLargeError, match="frames"):
        clips.best_face_in_clip(engine, clip(50, container="matroska"), "silent.mkv", lock)
    assert len(spy.frames) <= 20


def test_a_clip_is_sampled_one_frame_at_a_time_with_the_engine_held_only_to_look(engine: FaceEngine,
                                                                                watched: tuple[Watched, threading.Lock]) -> None:
    spy, lock = watched
    with pytest.raises(NoFaceError):
        clips.best_face_in_clip(engine, clip(300), "walk.mp4", lock)
    assert clips.MAX_SAMPLED_FRAMES // 2 <= len(spy.frames) <= clips.MAX_SAMPLED_FRAMES + 1  # evenly sampled, not all 300
    assert not lock.locked()
