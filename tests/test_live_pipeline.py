"""The live pipeline: tracking, one alert per track, pixelation, sources, and privacy end to end."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace

import av
import cv2
import numpy as np
import pytest
from cli_users import as_user, authorised_deployment

from openfrt.gallery import Gallery, ImageToEnrol, SubjectInfo
from openfrt.gallery.matching import TemplateMatrix
from openfrt.live.events import AlertEvent
from openfrt.live.pipeline import CameraPipeline, CameraStats, PipelineConfig, camera_engines, live_engine_config
from openfrt.live.privacy import pixelate
from openfrt.live.regions import RegionConfig
from openfrt.live.sources import (
    Backoff,
    Frame,
    ImageFolderSource,
    LatestFrameSource,
    Source,
    SourceError,
    open_source,
)
from openfrt.live.source_policy import SourcePolicy
from openfrt.live.tracking import Track, Tracker, View
from openfrt.net_policy import NetworkPolicy
from openfrt.records import Category, RecordStore, Role
from openfrt.vision import EngineConfig, FaceEngine
from openfrt.vision.embedders.chip import ChipEmbedder, ChipSpec, InferenceBackend
from openfrt.vision.quality import make_face
from openfrt.vision.types import Face, Quality, Template, cosine_to_similarity

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
UTK = SHARED / "faces" / "utk"
LFW = SHARED / "faces" / "lfw"

# -- helpers ---------------------------------------------------------------------------------


def face_at(box: tuple[float, float, float, float]) -> Face:
    """A face with fixed, good quality (tracking tests do not look at pixels)."""
    quality = Quality(face_height_px=box[3], sharpness=100.0, frontalness=1.0, yaw_deg=0.0, roll_deg=0.0, brightness=0.5)
    return Face(box, 0.99, landmarks_in(box), quality, "fake")


def landmarks_in(box: tuple[float, float, float, float]) -> np.ndarray:
    x, y, w, h = box
    relative = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]])
    return (np.array([x, y]) + relative * np.array([w, h])).astype(np.float32)


class MeanColourBackend(InferenceBackend):
    """'Embeds' a chip as its mean colour, so red faces match red and not blue."""

    def __init__(self) -> None:
        self.chips = 0

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.chips += len(batch)
        return batch.mean(axis=(2, 3)).astype(np.float32)


#: A scripted detector scripts whole frames: its pipelines detect the whole frame every round.
WHOLE_FRAMES = RegionConfig(full_pass_seconds=0)


class ScriptedDetector:
    """Returns the boxes scripted for each call, with quality measured on the real frame."""

    name = "scripted"
    confident_score = 0.95

    def __init__(self, script: list[list[tuple[float, float, float, float]]], score: float = 0.99) -> None:
        self.script = script
        self.score = score
        self.calls = 0

    def detect(self, rgb: np.ndarray) -> list[Face]:
        boxes = self.script[self.calls]
        self.calls += 1
        return [make_face(rgb, box, self.score, landmarks_in(box), self.name) for box in boxes]


class ListSource(Source):
    def __init__(self, frames: list[np.ndarray], fps: float = 10.0) -> None:
        super().__init__("list")
        self.rgbs, self.fps = frames, fps

    def frames(self, on_gap=None) -> Iterator[Frame]:  # type: ignore[no-untyped-def]
        for index, rgb in enumerate(self.rgbs):
            yield Frame(rgb, index / self.fps)


class RecordingSink:
    """A DeploymentSink that remembers what it was told."""

    def __init__(self, matcher: TemplateMatrix, threshold: float) -> None:
        self.deployment_id, self.name, self.cameras = 1, "test", ["cam"]
        self.threshold, self.model_id, self.matcher = threshold, matcher.model_id, matcher
        self.scanned, self.dropped = 0, 0
        self.gaps: list[tuple[object, object]] = []
        self.alerts: list[AlertEvent] = []

    def add_faces_scanned(self, camera: str, count: int) -> None:
        self.scanned += count

    def add_frames_dropped(self, camera: str, count: int) -> None:
        self.dropped += count

    def record_gap(self, camera: str, started: object, ended: object) -> None:
        self.gaps.append((started, ended))

    def raise_alert(self, alert: AlertEvent) -> int:
        self.alerts.append(alert)
        return len(self.alerts)

    def end(self, actor: str) -> object:
        return {}


def textured(rgb: np.ndarray, box: tuple[float, float, float, float], colour: tuple[int, int, int], rng: np.random.Generator) -> None:
    """Paint a noisy patch of ``colour`` (sharp, so it scores as a good view) into ``rgb``."""
    x, y, w, h = (int(v) for v in box)
    noise = rng.integers(-40, 40, size=(h, w, 3))
    rgb[y : y + h, x : x + w] = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)


# -- tracking --------------------------------------------------------------------------------


def test_two_crossing_faces_keep_their_ids() -> None:
    tracker = Tracker(max_gap_seconds=0.2)
    ids_a, ids_b = set(), set()
    for step in range(25):
        a = face_at((20.0 + 15 * step, 100.0, 60.0, 60.0))  # moving right
        b = face_at((380.0 - 15 * step, 110.0, 60.0, 60.0))  # moving left, crossing a around step 12
        update = tracker.update([a, b], step * 0.08)
        by_face = {id(face): track.id for track, face in update.assigned}
        ids_a.add(by_face[id(a)])
        ids_b.add(by_face[id(b)])
        assert not update.ended
    assert len(ids_a) == 1 and len(ids_b) == 1 and ids_a != ids_b


def test_track_ends_after_max_gap_seconds_and_a_new_face_gets_a_new_id() -> None:
    tracker = Tracker(max_gap_seconds=1.0)
    (first, _), = tracker.update([face_at((10.0, 10.0, 50.0, 50.0))], 0.0).assigned
    for now in (0.3, 0.6, 1.0):
        assert tracker.update([], now).ended == []
    assert tracker.update([], 1.1).ended == [first]
    (second, _), = tracker.update([face_at((10.0, 10.0, 50.0, 50.0))], 1.2).assigned
    assert second.id != first.id and tracker.tracks == [second]


def test_track_expiry_is_in_seconds_whatever_the_cadence() -> None:
    """A face lost for 0.8 s continues its track whether detection runs every 0.04 s or 0.12 s."""
    for interval in (0.04, 0.12):
        tracker = Tracker(max_gap_seconds=1.0)
        rounds = [round(t * interval, 6) for t in range(int(3.0 / interval))]
        ids = set()
        for now in rounds:
            seen = not 1.0 <= now < 1.8  # occluded for 0.8 s
            update = tracker.update([face_at((100.0 + 50 * now, 100.0, 60.0, 60.0))] if seen else [], now)
            assert not update.ended
            ids.update(track.id for track, _ in update.assigned)
        assert len(ids) == 1, interval


def test_a_moving_face_is_followed_across_a_gap_by_its_velocity_per_second() -> None:
    tracker = Tracker(max_gap_seconds=1.0)
    for step in range(5):  # 200 px/s, 60 px faces
        tracker.update([face_at((100.0 + 200 * step * 0.1, 100.0, 60.0, 60.0))], step * 0.1)
    (track, _), = tracker.update([face_at((100.0 + 200 * 1.2, 100.0, 60.0, 60.0))], 1.2).assigned  # 0.8 s unseen, 160 px on
    assert track.id == 1 and track.hits == 6


def test_a_track_mean_template_averages_its_searched_views() -> None:
    track = Track(1, (0.0, 0.0, 10.0, 10.0), 0.0)
    face = face_at((0.0, 0.0, 10.0, 10.0))
    chip = np.zeros((4, 4, 3), np.uint8)
    track.views = [View(face, chip, 0.9, 0.0, Template(np.array([1.0, 0.0]), "m", "1")), View(face, chip, 0.8, 0.1)]
    assert track.mean_template() is None  # one searched view: its own template is the probe
    track.views[1].template = Template(np.array([0.0, 1.0]), "m", "1")
    mean = track.mean_template()
    assert mean is not None and mean.model_id == "m@1" and np.allclose(mean.vector, [2**-0.5, 2**-0.5])
    track.release()
    assert track.mean_template() is None and track.views == []


# -- pipeline: one alert per track -----------------------------------------------------------


def test_a_matching_track_alerts_once_and_other_faces_are_pixelated_in_its_frame() -> None:
    rng = np.random.default_rng(1)
    frames, script = [], []
    for step in range(20):  # the red face approaches (grows, so views keep improving); blue stands still
        red = (40.0 + 10 * step, 60.0, 40.0 + 4 * step, 40.0 + 4 * step)
        blue = (400.0, 80.0, 60.0, 60.0)
        rgb = np.full((240, 480, 3), 128, np.uint8)
        textured(rgb, red, (220, 40, 40), rng)
        textured(rgb, blue, (40, 40, 220), rng)
        frames.append(rgb)
        script.append([red, blue])
    backend = MeanColourBackend()
    reference = np.array([[8, 10], [24, 10], [16, 16], [10, 24], [22, 24]], np.float32)
    embedder = ChipEmbedder(backend, ChipSpec(32, reference), "colour", "1", threshold=0.95)
    red_template = Template(np.array([220, 40, 40], np.float32), "colour", "1")
    sink = RecordingSink(TemplateMatrix("colour@1", [("RED", red_template)]), threshold=0.95)
    engine = SimpleNamespace(detector=ScriptedDetector(script), embedder=embedder)
    pipeline = CameraPipeline("cam", ListSource(frames), engine, sink, PipelineConfig(min_hits=2, regions=WHOLE_FRAMES))  # type: ignore[arg-type]

    stats = pipeline.run()

    assert [alert.subject for alert in sink.alerts] == ["RED"]
    alert = sink.alerts[0]
    assert alert.similarity >= 0.95 and alert.candidates[0][0] == "RED" and alert.camera == "cam"
    assert alert.probe_crop[:3] == b"\xff\xd8\xff" and alert.frame[:3] == b"\xff\xd8\xff"
    shown = cv2.cvtColor(cv2.imdecode(np.frombuffer(alert.frame, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    blue_region = shown[80:140, 400:460].astype(float)
    assert blue_region.std(axis=(0, 1)).max() < 15  # the noise (std ~23) is averaged away
    assert sink.scanned == stats.faces_scanned == 2  # two people, not 40 detections
    assert backend.chips < 10  # red alerts when first searched; blue's views never improve


def test_a_tracked_face_not_detected_in_the_alert_frame_is_pixelated_there_too() -> None:
    """Detection in regions (or a plain miss) can leave a tracked face out of a round's detections:
    the alert frame still pixelates it, at its track's predicted box."""
    rng = np.random.default_rng(5)
    blue = (400.0, 80.0, 60.0, 60.0)
    frames, script = [], []
    for step in range(3):
        red = (40.0 + 10 * step, 60.0, 40.0 + 4 * step, 40.0 + 4 * step)
        rgb = np.full((240, 480, 3), 128, np.uint8)
        textured(rgb, red, (220, 40, 40), rng)
        textured(rgb, blue, (40, 40, 220), rng)
        frames.append(rgb)
        script.append([red, blue] if step == 0 else [red])  # blue is not detected after the first round
    reference = np.array([[8, 10], [24, 10], [16, 16], [10, 24], [22, 24]], np.float32)
    embedder = ChipEmbedder(MeanColourBackend(), ChipSpec(32, reference), "colour", "1", threshold=0.95)
    sink = RecordingSink(TemplateMatrix("colour@1", [("RED", Template(np.array([220, 40, 40], np.float32), "colour", "1"))]), threshold=0.95)
    engine = SimpleNamespace(detector=ScriptedDetector(script), embedder=embedder)
    CameraPipeline("cam", ListSource(frames), engine, sink, PipelineConfig(cadence=1, min_hits=2, regions=WHOLE_FRAMES)).run()  # type: ignore[arg-type]

    (alert,) = sink.alerts
    assert alert.source_time == pytest.approx(0.1)  # raised on the 2nd frame, where blue was not detected
    shown = cv2.cvtColor(cv2.imdecode(np.frombuffer(alert.frame, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert shown[80:140, 400:460].astype(float).std(axis=(0, 1)).max() < 15


def _run_on_lazy_frames(undecoded: set[int]) -> tuple[list[int], CameraStats, RecordingSink]:
    """Seven frames of one red face at 10 fps, each converted to RGB only when read, except the
    ``undecoded`` ones (no pixels), through a pipeline detecting on every 2nd frame: the frames
    converted, in order, the camera's figures and its sink."""
    rng = np.random.default_rng(2)
    box = (40.0, 60.0, 48.0, 48.0)
    rgb = np.full((240, 480, 3), 128, np.uint8)
    textured(rgb, box, (220, 40, 40), rng)
    conversions: list[int] = []

    def converted(index: int) -> np.ndarray:
        conversions.append(index)
        return rgb.copy()

    class LazySource(Source):
        def frames(self, on_gap=None) -> Iterator[Frame]:  # type: ignore[no-untyped-def]
            for index in range(7):
                yield Frame(None if index in undecoded else lambda index=index: converted(index), index / 10)

    reference = np.array([[8, 10], [24, 10], [16, 16], [10, 24], [22, 24]], np.float32)
    embedder = ChipEmbedder(MeanColourBackend(), ChipSpec(32, reference), "colour", "1", threshold=0.95)
    sink = RecordingSink(TemplateMatrix("colour@1", [("RED", Template(np.array([220, 40, 40], np.float32), "colour", "1"))]), threshold=0.95)
    engine = SimpleNamespace(detector=ScriptedDetector([[box]] * 4), embedder=embedder)
    stats = CameraPipeline("cam", LazySource("lazy"), engine, sink, PipelineConfig(cadence=2, min_hits=2, regions=WHOLE_FRAMES)).run()  # type: ignore[arg-type]
    return conversions, stats, sink


def test_a_pipeline_converts_only_the_frames_it_detects_on_and_each_once() -> None:
    """Decoded frames become RGB when first looked at: with detection on every 2nd frame, the
    frames in between are never converted, and a frame read for regions, detection, chips and
    the alert snapshot is converted once."""
    conversions, _, sink = _run_on_lazy_frames(set())

    assert len(sink.alerts) == 1  # the frames it looked at were whole
    assert conversions == [0, 2, 4, 6]


def test_a_detection_due_on_a_frame_the_source_did_not_decode_moves_to_the_next_decoded_frame() -> None:
    """A frame without pixels (a non-reference frame the source skipped) is counted but never
    looked at; the detection round due on it is done on the next decoded frame."""
    conversions, stats, sink = _run_on_lazy_frames({1, 2})

    assert conversions == [0, 3, 4, 6]
    assert stats.frames == 7 and stats.dropped == 0
    assert len(sink.alerts) == 1 and sink.alerts[0].source_time == pytest.approx(0.3)


def _numbered_h264(path: Path, count: int, keyframe_every: int) -> None:
    """A small H.264 file with non-reference B-frames, frame ``i`` a flat grey of level ``8 i``."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"x264-params": f"bframes=3:b-pyramid=none:keyint={keyframe_every}:min-keyint={keyframe_every}:scenecut=0", "preset": "veryfast", "qp": "10"}
        for index in range(count):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 8 * index, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.mark.parametrize("realtime", [False, True])
def test_a_video_file_decoded_for_every_2nd_frame_skips_only_non_reference_frames_in_between(tmp_path: Path, realtime: bool) -> None:
    """``decode_every=2``: every frame still arrives in order with its time; the frames not
    decoded are between every 2nd one counted from the last keyframe (frame 0, then 15: odd ones,
    then even ones), never two in a row, and every decoded frame has the pixels it has when all
    are decoded."""
    path = tmp_path / "numbered.mp4"
    _numbered_h264(path, 30, keyframe_every=15)
    every = list(open_source(str(path), policy=SourcePolicy(tmp_path)).frames())
    sparse = list(open_source(str(path), policy=SourcePolicy(tmp_path), realtime=realtime, decode_every=2).frames())

    assert [frame.time for frame in sparse] == [frame.time for frame in every] == pytest.approx([i / 25 for i in range(30)])
    assert all(frame.decoded for frame in every)
    undecoded = [index for index, frame in enumerate(sparse) if not frame.decoded]
    assert len(undecoded) >= 10  # the B-frames between the 2nd ones: decoding them is the saving
    assert all(index % 2 for index in undecoded if index < 15) and all(index % 2 == 0 for index in undecoded if index > 15)
    assert {index % 2 for index in undecoded} == {0, 1} and not any(b - a == 1 for a, b in pairwise(undecoded))
    for index, (frame, full) in enumerate(zip(sparse, every)):
        if frame.decoded:
            assert np.array_equal(frame.rgb, full.rgb), index
            assert abs(int(frame.rgb.mean()) - 8 * index) <= 2
    with pytest.raises(SourceError, match="not decoded"):
        sparse[undecoded[0]].rgb  # noqa: B018
    with pytest.raises(ValueError, match="decode_every must be at least 1"):
        open_source(str(path), policy=SourcePolicy(tmp_path), realtime=realtime, decode_every=0)


class AlternatingBackend(InferenceBackend):
    """'Embeds' chips as two views of one face seen from either side: each alone is far from
    the reference ``[1, 0, 0]`` (cosine 0.71), their mean is close to it."""

    def __init__(self) -> None:
        self.chips = 0

    def run(self, batch: np.ndarray) -> np.ndarray:
        vectors = [[1.0, 1.0 if (self.chips + row) % 2 == 0 else -1.0, 0.0] for row in range(len(batch))]
        self.chips += len(batch)
        return np.array(vectors, np.float32)


def test_a_track_whose_views_miss_alone_alerts_once_on_their_mean_template() -> None:
    rng = np.random.default_rng(2)
    frames, script = [], []
    for _ in range(12):
        box = (100.0, 60.0, 60.0, 60.0)
        rgb = np.full((240, 320, 3), 128, np.uint8)
        textured(rgb, box, (220, 40, 40), rng)
        frames.append(rgb)
        script.append([box])
    reference = np.array([[8, 10], [24, 10], [16, 16], [10, 24], [22, 24]], np.float32)
    embedder = ChipEmbedder(AlternatingBackend(), ChipSpec(32, reference), "alt", "1", threshold=0.95)
    sink = RecordingSink(TemplateMatrix("alt@1", [("A", Template(np.array([1.0, 0.0, 0.0]), "alt", "1"))]), threshold=0.95)
    engine = SimpleNamespace(detector=ScriptedDetector(script), embedder=embedder)
    pipeline = CameraPipeline("cam", ListSource(frames), engine, sink, PipelineConfig(min_hits=2, regions=WHOLE_FRAMES))  # type: ignore[arg-type]

    pipeline.run()

    assert [alert.subject for alert in sink.alerts] == ["A"]
    assert sink.alerts[0].similarity >= 0.95 > cosine_to_similarity(2**-0.5)
    assert sink.scanned == 1 and pipeline.tracker.tracks == []


class LateMatchBackend(InferenceBackend):
    """'Embeds' the first ``misses`` chips far from the reference ``[1, 0, 0]`` and every later
    one on it, like a face that only becomes recognisable as it comes closer."""

    def __init__(self, misses: int) -> None:
        self.misses, self.chips = misses, 0

    def run(self, batch: np.ndarray) -> np.ndarray:
        vectors = [[1.0, 0.0, 0.0] if self.chips + row >= self.misses else [0.0, 1.0, 0.0] for row in range(len(batch))]
        self.chips += len(batch)
        return np.array(vectors, np.float32)


def approaching_face(steps: int, rng: np.random.Generator) -> tuple[list[np.ndarray], list[list[tuple[float, float, float, float]]]]:
    """Frames of one face growing by 2 px a frame (so each new view is its best so far)."""
    frames, script = [], []
    for step in range(steps):
        box = (100.0, 40.0, 40.0 + 2 * step, 40.0 + 2 * step)
        rgb = np.full((240, 320, 3), 128, np.uint8)
        textured(rgb, box, (220, 40, 40), rng)
        frames.append(rgb)
        script.append([box])
    return frames, script


def late_match_pipeline(backend: InferenceBackend, detector: ScriptedDetector, frames: list[np.ndarray]) -> tuple[CameraPipeline, RecordingSink]:
    reference = np.array([[8, 10], [24, 10], [16, 16], [10, 24], [22, 24]], np.float32)
    embedder = ChipEmbedder(backend, ChipSpec(32, reference), "late", "1", threshold=0.95)
    sink = RecordingSink(TemplateMatrix("late@1", [("A", Template(np.array([1.0, 0.0, 0.0]), "late", "1"))]), threshold=0.95)
    engine = SimpleNamespace(detector=detector, embedder=embedder)
    config = PipelineConfig(cadence=1, min_hits=2, keep_views=2, regions=WHOLE_FRAMES)
    return CameraPipeline("cam", ListSource(frames), engine, sink, config), sink  # type: ignore[arg-type]


def test_each_better_view_is_searched_as_it_arrives_and_the_alert_has_the_time_it_was_raised() -> None:
    frames, script = approaching_face(12, np.random.default_rng(3))
    backend = LateMatchBackend(misses=4)
    pipeline, sink = late_match_pipeline(backend, ScriptedDetector(script), frames)

    pipeline.run()

    # confirmed on frame 1 (its two views searched), then one search per frame: frame 4's view is the 5th chip
    assert [(alert.subject, alert.source_time) for alert in sink.alerts] == [("A", pytest.approx(0.4))]
    assert backend.chips == 5 and sink.scanned == 1


def test_a_track_never_detected_confidently_is_neither_searched_nor_counted() -> None:
    frames, script = approaching_face(12, np.random.default_rng(4))
    backend = LateMatchBackend(misses=0)
    pipeline, sink = late_match_pipeline(backend, ScriptedDetector(script, score=0.6), frames)

    stats = pipeline.run()

    assert sink.alerts == [] and backend.chips == 0
    assert sink.scanned == stats.faces_scanned == 0 and pipeline.tracker.tracks == []


@pytest.mark.skipif(not UTK.is_dir(), reason="needs ../shared/faces/utk")
def test_the_default_live_detector_finds_small_faces_in_a_1080p_frame() -> None:
    # Faces scanned is a published figure: at 960 px YuNet found none of these 52 px faces
    # (half that size at its input) and walk-throughs of 30-70 px faces counted 23 of 40 passers.
    faces = sorted(UTK.glob("*.jpg"))[:40:5]
    frame = np.full((1080, 1920, 3), 110, np.uint8)
    for index, path in enumerate(faces):
        x, y = 150 + index * 220, 300 + (index % 2) * 300
        frame[y : y + 52, x : x + 52] = cv2.resize(cv2.imread(str(path))[..., ::-1], (52, 52), interpolation=cv2.INTER_AREA)
    detector = FaceEngine(live_engine_config(EngineConfig.from_env())).detector

    found = detector.detect(frame)

    assert sum(face.score >= detector.confident_score for face in found) >= len(faces) - 2


def test_live_runs_its_models_in_bfloat16_only_where_the_cpu_computes_it_and_nobody_chose_a_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    import openfrt.live.pipeline as live

    base = EngineConfig(detector="yunet", embedder="sface")
    monkeypatch.setattr(live, "native_bf16", lambda: True)
    fast = live_engine_config(base)
    assert fast.embedder_options == {"runtime": "openvino-bf16"}
    assert fast.detector_options == {"runtime": "openvino-bf16", "max_width": 1920}
    chosen = base.model_copy(update={"embedder_options": {"runtime": "onnxruntime"}, "detector_options": {"runtime": "onnxruntime"}})
    assert live_engine_config(chosen).embedder_options == {"runtime": "onnxruntime"}
    assert live_engine_config(chosen).detector_options == {"runtime": "onnxruntime", "max_width": 1920}
    other = live_engine_config(base.model_copy(update={"embedder": "dlib-onnx", "detector": "mtcnn"}))
    assert other.embedder_options == {} and "runtime" not in other.detector_options  # they have no such option
    monkeypatch.setattr(live, "native_bf16", lambda: False)
    assert live_engine_config(base).embedder_options == {} and "runtime" not in live_engine_config(base).detector_options


def test_cameras_get_an_engine_each_while_there_are_cores_and_share_the_rest_behind_locks() -> None:
    engine = FaceEngine(EngineConfig(detector="yunet", embedder="sface"))

    assert camera_engines(engine, 1, cores=2) == [(engine, None)]
    (one, one_lock), (two, two_lock) = camera_engines(engine, 2, cores=2)
    assert one is not two and one_lock is None and two_lock is None  # side by side, a core each
    assert one.config.threads == two.config.threads == 1 and one.config.embedder == engine.config.embedder
    first, second, third = camera_engines(engine, 3, cores=2)
    assert first[0] is third[0] and first[1] is third[1] is not None and second[1] is None  # two cameras on one engine take turns
    ((shared, lock),) = set(camera_engines(engine, 2, cores=1))
    assert shared is engine and lock is not None
    fixed = FaceEngine(EngineConfig(detector="yunet", embedder="sface", threads=2))
    assert {camera_engine.config.threads for camera_engine, _ in camera_engines(fixed, 2, cores=2)} == {2}  # as configured


# -- privacy: pixelation ---------------------------------------------------------------------


def test_pixelation_destroys_face_pixels_and_leaves_the_rest() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, size=(200, 200, 3), dtype=np.uint8)
    box = (50.0, 50.0, 60.0, 60.0)

    out = pixelate(rgb, [box])

    inside = (slice(55, 105), slice(55, 105))
    assert out[inside].astype(float).var() < 0.1 * rgb[inside].astype(float).var()
    changed = np.any(out != rgb, axis=2)
    ys, xs = np.nonzero(changed)
    assert ys.min() >= 35 and ys.max() < 125 and xs.min() >= 35 and xs.max() < 125  # box + 25% margin only
    assert not np.shares_memory(out, rgb)


# -- sources ---------------------------------------------------------------------------------


def test_image_folder_frames_come_in_name_order_with_times(tmp_path: Path) -> None:
    for name, value in (("b.png", 20), ("a.png", 10), ("c.jpg", 30), ("notes.txt", 0)):
        path = tmp_path / name
        if name.endswith(".txt"):
            path.write_text("not a frame")
        else:
            cv2.imwrite(str(path), np.full((8, 8, 3), value, np.uint8))

    frames = list(ImageFolderSource(tmp_path, fps=2.0).frames())

    assert [round(float(frame.rgb.mean())) for frame in frames] == [10, 20, 30]
    assert [frame.time for frame in frames] == [0.0, 0.5, 1.0]


def test_video_file_frames_are_all_read_with_file_times(tmp_path: Path) -> None:
    faces = sorted(UTK.glob("*.jpg"))[:1] if UTK.exists() else []
    if not faces:
        pytest.skip(f"needs {UTK} (UTKFace in the shared test data beside the project), which is absent")
    face = cv2.resize(cv2.imread(str(faces[0])), (80, 80))
    path = tmp_path / "walk.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
    for index in range(12):
        bgr = np.full((240, 320, 3), 90, np.uint8)
        bgr[80:160, 10 + 15 * index : 90 + 15 * index] = face
        writer.write(bgr)
    writer.release()

    frames = list(open_source(str(path), policy=SourcePolicy(tmp_path)).frames())

    assert len(frames) == 12
    assert [frame.time for frame in frames] == pytest.approx([index / 10 for index in range(12)])
    pasted = cv2.cvtColor(face, cv2.COLOR_BGR2RGB).astype(float)
    assert np.abs(frames[5].rgb[80:160, 85:165].astype(float) - pasted).mean() < 12  # MJPG is lossy


def test_a_live_source_drops_and_counts_frames_a_slow_consumer_cannot_take() -> None:
    produced = 200

    def fast_camera() -> Iterator[tuple[np.ndarray, float]]:
        for index in range(produced):
            time.sleep(0.001)
            yield np.full((4, 4, 3), index % 256, np.uint8), float(index)

    source = LatestFrameSource("fast", fast_camera, reconnect=False)
    taken = []
    for frame in source.frames():
        taken.append(frame)
        time.sleep(0.01)  # processing is ten times slower than the camera

    dropped = sum(frame.dropped for frame in taken)
    assert dropped > produced / 2 and len(taken) + dropped == produced
    assert taken[-1].time == produced - 1  # the newest frame is never the one dropped


def test_a_live_source_rides_out_slow_rounds_of_a_pipeline_that_keeps_up_on_average() -> None:
    """A detection round with a full pass takes longer than a frame, but the rounds in between are
    quick: a few frames kept for the pipeline cover that; keeping only the newest drops frames."""

    def camera() -> Iterator[tuple[np.ndarray, float]]:
        for index in range(30):
            time.sleep(0.02)  # 50 fps
            yield np.full((4, 4, 3), index, np.uint8), float(index)

    def consume(source: LatestFrameSource) -> list[Frame]:
        taken = []
        for frame in source.frames():
            taken.append(frame)
            if len(taken) % 4 == 1:
                time.sleep(0.05)  # a slow round every 4th frame: 2.5 frames' time, 12.5 ms a frame on average
        return taken

    kept = consume(LatestFrameSource("bursty", camera, reconnect=False))
    assert [frame.time for frame in kept] == [float(index) for index in range(30)] and not any(frame.dropped for frame in kept)
    newest_only = consume(LatestFrameSource("bursty", camera, reconnect=False, backlog=1))
    assert sum(frame.dropped for frame in newest_only) > 0 and len(newest_only) + sum(frame.dropped for frame in newest_only) == 30
    with pytest.raises(ValueError):
        LatestFrameSource("none", camera, backlog=0)


def test_a_failing_stream_reconnects_with_back_off_and_reports_the_gap() -> None:
    attempts: list[float] = []

    def flaky_camera() -> Iterator[tuple[np.ndarray, float]]:
        attempts.append(time.monotonic())
        if len(attempts) in (1, 2, 3):
            raise OSError("connection refused")
        if len(attempts) == 4:
            yield np.zeros((4, 4, 3), np.uint8), 0.0
        else:
            raise OSError("gone again")

    source = LatestFrameSource("flaky", flaky_camera, backoff=Backoff(initial=0.02, factor=2.0, max_delay=0.05))
    gaps: list[tuple[object, object]] = []
    frames = source.frames(on_gap=lambda started, ended: gaps.append((started, ended)))
    first = next(frames)
    assert first.time == 0.0 and len(gaps) == 1
    started, ended = gaps[0]
    assert (ended - started).total_seconds() >= 0.02 + 0.04 + 0.05 - 0.005  # type: ignore[operator]
    waits = np.diff(attempts[:4])
    assert waits[1] > waits[0] * 1.5 and waits[2] < 0.05 + 0.03  # doubling, then capped
    while len(attempts) < 6:  # the stream ended after one frame and fails again
        time.sleep(0.01)
    source.stop()
    assert list(frames) == []
    assert len(gaps) == 2  # the second outage, still open when stopped, is reported too


def serve_over_http(clip: Path, url: str) -> subprocess.Popen[bytes]:
    """ffmpeg serving ``clip`` once, at its frame rate, as an MPEG-TS stream at ``url`` (one client)."""
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-i", str(clip), "-c:v", "mpeg4", "-f", "mpegts", "-listen", "1", url]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL)


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg command to serve a real stream (apt-get install ffmpeg)")
def test_a_real_http_stream_is_read_and_a_dropped_stream_reconnects_with_its_gap_recorded(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (320, 240))
    for index in range(25):  # one second
        writer.write(np.full((240, 320, 3), index * 10, np.uint8))
    writer.release()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/live.ts"
    frames: list[Frame] = []
    gaps: list[tuple[datetime, datetime]] = []
    first = serve_over_http(clip, url)
    second: subprocess.Popen[bytes] | None = None
    source = open_source(url, policy=SourcePolicy(tmp_path, NetworkPolicy.from_networks("127.0.0.0/8")))
    reader = threading.Thread(target=lambda: frames.extend(source.frames(on_gap=lambda *gap: gaps.append(gap))))
    try:
        reader.start()
        assert wait_for(lambda: first.poll() is not None, 20) and frames  # the first server sent its clip and left
        before = len(frames)
        time.sleep(0.8)  # the camera is down for a while: the source retries with back-off
        second = serve_over_http(clip, url)
        assert wait_for(lambda: bool(gaps) and len(frames) > before, 20)
    finally:
        source.stop()
        reader.join(10)
        for server in (first, second):
            if server is not None and server.poll() is None:
                server.kill()
                server.wait()
    (started, ended), *_ = gaps
    assert 0.5 <= (ended - started).total_seconds() < 10
    assert frames[0].rgb.shape == (240, 320, 3)
    assert all(a.time <= b.time for a, b in pairwise(frames)) and frames[-1].time >= ended.timestamp()  # wall-clock times


def test_a_stream_url_is_named_without_its_password(tmp_path: Path) -> None:
    policy = SourcePolicy(tmp_path, NetworkPolicy.from_networks("10.0.0.0/8"))
    source = open_source("rtsp://officer:s3cret@10.0.0.7:554/stream1", policy=policy)  # nothing connects until frames()

    assert source.name == "rtsp://10.0.0.7:554/stream1"


# -- privacy end to end ----------------------------------------------------------------------

IMAGE_SIGNATURES = (b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb", b"\xff\xd8\xff\xe1", b"\x89PNG\r\n\x1a\n")
LIVE_COMMAND = [sys.executable, "-m", "openfrt", "live"]


def walk_video(path: Path, faces: list[Path], frames: int = 24) -> Path:
    """People (one face image each) walk slowly across a 640x480 scene at 10 fps."""
    crops = [cv2.resize(cv2.imread(str(face)), (170, 170)) for face in faces]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (640, 480))
    for index in range(frames):
        bgr = np.full((480, 640, 3), 100, np.uint8)
        for row, crop in enumerate(crops):
            x = 20 + (index * 4) % 400 if row % 2 == 0 else 450 - (index * 4) % 400
            bgr[40 + 220 * row : 210 + 220 * row, x : x + 170] = crop
        writer.write(bgr)
    writer.release()
    return path


def all_files(root: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in root.rglob("*") if path.is_file()}


@pytest.fixture
def deployment_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A data directory whose watchlist 'wanted' holds one subject (S1, from LFW), a private
    TMPDIR, and the environment to run ``openfrt live`` with them."""
    if not (UTK.exists() and LFW.exists()):
        pytest.skip(f"needs {UTK} and {LFW} (the shared test data beside the project), which are absent")
    home, temp = tmp_path / "home", tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("OPENFRT_HOME", str(home))
    with RecordStore.open(home) as store:
        gallery = Gallery(store, FaceEngine(EngineConfig.from_env()))
        gallery.create_watchlist("wanted", purpose="test", authorised_by="Supt A", actor="PC 1")
        reference = ImageToEnrol(LFW / "Colin_Powell" / "Colin_Powell_0001.jpg", "ref")
        assert gallery.enrol(SubjectInfo("S1", "Colin Powell", Category.wanted), [reference], actor="PC 1", watchlist="wanted").enrolled
    return as_user({**os.environ, "OPENFRT_HOME": str(home), "TMPDIR": str(temp), "OPENFRT_FOOTAGE_DIR": str(tmp_path)}, Role.operator)


def live(env: dict[str, str], video: Path, name: str) -> subprocess.CompletedProcess[str]:
    """``openfrt live`` (as the operator) on deployment ``name``, planned and authorised on camera gate=``video``."""
    authorised_deployment(env, name, "wanted", {"gate": str(video)})
    command = [*LIVE_COMMAND, "--deployment", name, "--events-json"]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=600, cwd=video.parent, env=env)


def test_people_not_on_the_watchlist_leave_no_trace(deployment_env: dict[str, str], tmp_path: Path) -> None:
    home, temp = Path(deployment_env["OPENFRT_HOME"]), Path(deployment_env["TMPDIR"])
    (tmp_path / "work").mkdir()
    video = walk_video(tmp_path / "work" / "passers-by.avi", sorted(UTK.glob("*.jpg"))[:2])
    before = all_files(home)

    result = live(deployment_env, video, "op-privacy")

    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["event"] == "record" and record["alerts"] == 0 and record["faces_scanned"] == 2
    assert list(temp.iterdir()) == [], "something wrote to TMPDIR (onnxruntime telemetry writes .ses unless ORT_DISABLE_TELEMETRY=1)"
    assert sorted(video.parent.iterdir()) == [video]
    after = all_files(home)
    assert set(after) == set(before)  # no new files: only the database changed
    for path, data in after.items():
        assert not any(signature in data for signature in IMAGE_SIGNATURES), path
    probes = pipeline_templates(FaceEngine(EngineConfig.from_env()), video)
    assert probes, "the test video should show detectable faces"
    for data in after.values():
        assert not any(probe in data for probe in probes)
    with sqlite3.connect(home / "openfrt.db") as db:
        assert db.execute("SELECT count(*) FROM alerts").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM alert_media").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM templates").fetchone() == (1,)
        details = " ".join(row[0] or "" for row in db.execute("SELECT details FROM audit_events"))
    assert "track" not in details and "box" not in details
    assert "track" not in result.stderr.lower() and "box" not in result.stderr.lower()


def test_a_watchlisted_person_alerts_once_and_the_record_counts_everyone(deployment_env: dict[str, str], tmp_path: Path) -> None:
    # The reference image itself walks past: this tests the pipeline, not the model (whose calibrated
    # watchlist threshold other photos of the same person often miss).
    video = walk_video(tmp_path / "walk.avi", [LFW / "Colin_Powell" / "Colin_Powell_0001.jpg", min(UTK.glob("*.jpg"))])

    result = live(deployment_env, video, "op-hit")

    assert result.returncode == 0, result.stderr
    alert, record = [json.loads(line) for line in result.stdout.splitlines()]
    assert alert == {**alert, "event": "alert", "deployment": "op-hit", "camera": "gate", "subject": "S1", "track": alert["track"]}
    assert 0.0 <= alert["time"] < 2.4 and alert["similarity"] > 0.5
    assert record == {**record, "event": "record", "alerts": 1, "faces_scanned": 2}
    with sqlite3.connect(Path(deployment_env["OPENFRT_HOME"]) / "openfrt.db") as db:
        assert db.execute("SELECT count(*) FROM alert_media").fetchone() == (2,)  # probe crop and pixelated frame


def test_ctrl_c_ends_the_deployment_and_prints_its_record(deployment_env: dict[str, str], tmp_path: Path) -> None:
    video = walk_video(tmp_path / "long.avi", sorted(UTK.glob("*.jpg"))[:1], frames=600)  # a minute in real time
    authorised_deployment(deployment_env, "op-interrupted", "wanted", {"camera1": str(video)})
    command = [*LIVE_COMMAND, "--deployment", "op-interrupted", "--events-json", "--realtime"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=deployment_env)
    wait_until_running(Path(deployment_env["OPENFRT_HOME"]) / "openfrt.db", "op-interrupted")
    time.sleep(2)  # some frames
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 0, stderr
    (record,) = [json.loads(line) for line in stdout.splitlines()]
    assert record["event"] == "record" and record["status"] == "ended" and record["faces_scanned"] >= 1


def wait_until_running(database: Path, deployment: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(database) as db:
            if db.execute("SELECT status FROM deployments WHERE name = ?", (deployment,)).fetchone() == ("running",):
                return
        time.sleep(0.2)
    raise AssertionError(f"deployment {deployment} did not start within {timeout} s")


def pipeline_templates(engine: FaceEngine, video: Path) -> list[bytes]:
    """The first 16 bytes of the template of every face the pipeline could have embedded."""
    probes = []
    for frame in open_source(str(video), policy=SourcePolicy(video.parent)).frames():
        faces = engine.detector.detect(frame.rgb)
        for template in engine.embedder.embed(frame.rgb, faces):
            probes.append(template.vector.astype(np.float32).tobytes()[:16])
    return probes
