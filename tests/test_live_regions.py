"""Detection in regions (motion, live tracks, a periodic full pass): real frames, the real detector."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from openfrt.live.pipeline import live_engine_config
from openfrt.live.regions import Region, RegionConfig, RegionPlanner, detect_in_regions, merge
from openfrt.vision import EngineConfig, FaceEngine

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "faces" / "samples"
pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"needs {SAMPLES} (the shared test data beside the project)")


@pytest.fixture(scope="module")
def detector():  # type: ignore[no-untyped-def]
    return FaceEngine(live_engine_config(EngineConfig.from_env())).detector


def scene(face_at: tuple[int, int] | None, size: int = 120) -> np.ndarray:
    """A 1280x720 textured background (the same every call) with obama.jpg (a head and shoulders) pasted at ``face_at``."""
    rgb = np.random.default_rng(0).integers(60, 160, size=(720, 1280, 3)).astype(np.uint8)
    if face_at is not None:
        face = cv2.resize(cv2.imread(str(SAMPLES / "obama.jpg"))[..., ::-1], (size, int(size * 1.25)), interpolation=cv2.INTER_AREA)
        x, y = face_at
        rgb[y : y + face.shape[0], x : x + face.shape[1]] = face
    return rgb


def test_a_face_that_never_moves_and_is_not_tracked_is_found_by_the_next_full_pass(detector) -> None:  # type: ignore[no-untyped-def]
    planner = RegionPlanner(RegionConfig(full_pass_seconds=1.0))
    still = scene((500, 200))
    assert planner.plan(scene(None), 0.0) == [Region(0, 0, 1280, 720)]  # the first frame: a full pass
    # The face is there from 0.08 s on without moving: its arrival is motion, but suppose the
    # detector missed it then; from the next round on nothing changes and no track points at it.
    planner.plan(still, 0.08)
    quiet = [planner.plan(still, round(0.08 * step, 2)) for step in range(2, 12)]
    assert quiet == [[]] * 10  # 0.16-0.88 s: nothing to detect in
    full = planner.plan(still, 1.0)
    assert full == [Region(0, 0, 1280, 720)]
    (face,) = detect_in_regions(detector, still, full)
    (whole,) = detector.detect(still)
    assert face.score >= detector.confident_score and face.box == whole.box


def test_a_moving_face_is_found_in_its_motion_region_in_frame_coordinates(detector) -> None:  # type: ignore[no-untyped-def]
    planner = RegionPlanner()
    planner.plan(scene((600, 300)), 0.0)
    moved = scene((640, 310))
    rects = planner.plan(moved, 0.08)
    assert rects and sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1, _ in rects) < 0.1 * 1280 * 720  # a crop, not the frame
    assert {rect.scale for rect in rects} == {1.0}  # a small region: shrinking it would save little
    (face,) = detect_in_regions(detector, moved, rects)
    (whole,) = detector.detect(moved)
    tolerance = 0.05 * whole.box[3]  # the crop gives the detector less context than the whole frame
    assert np.allclose(face.box, whole.box, atol=tolerance) and np.allclose(face.landmarks, whole.landmarks, atol=tolerance)
    assert face.score == pytest.approx(whole.score, abs=0.02)


def test_a_face_in_two_overlapping_regions_is_found_once(detector) -> None:  # type: ignore[no-untyped-def]
    rgb = scene((600, 300))
    left, right = (400, 150, 800, 600), (550, 200, 1000, 650)  # both hold the whole face
    assert len(detector.detect(rgb[150:600, 400:800])) == len(detector.detect(rgb[200:650, 550:1000])) == 1
    assert len(detect_in_regions(detector, rgb, [Region(*left), Region(*right)])) == 1
    assert merge([left, right, (0, 0, 50, 50)]) == [(400, 150, 1000, 650), (0, 0, 50, 50)]


def test_a_tracked_face_that_stops_moving_is_still_detected_every_round(detector) -> None:  # type: ignore[no-untyped-def]
    planner = RegionPlanner(RegionConfig(full_pass_seconds=10.0))
    still = scene((500, 200))
    (tracked,) = detector.detect(still)
    planner.plan(still, 0.0)
    rects = planner.plan(still, 0.08, tracks=[tracked.box])
    assert len(rects) == 1 and rects != [Region(0, 0, 1280, 720)] and rects[0].scale == 1  # a small face (42 px): full resolution
    (face,) = detect_in_regions(detector, still, rects)
    assert np.allclose(face.box, tracked.box, atol=0.05 * tracked.box[3])  # as found whole, to the crop's lesser context


def test_motion_can_be_looked_for_less_often_than_every_round() -> None:
    planner = RegionPlanner(RegionConfig(motion_seconds=0.2))
    planner.plan(scene((600, 300)), 0.0)
    moved = scene((640, 310))
    assert planner.plan(moved, 0.08) == []  # nothing tracked, and no motion round yet
    assert planner.plan(moved, 0.24)  # against the frame motion was last looked for in (0.0 s)


def test_without_gating_every_round_is_a_full_pass() -> None:
    planner = RegionPlanner(RegionConfig(full_pass_seconds=0))
    assert all(planner.plan(scene(None), step * 0.08) == [Region(0, 0, 1280, 720)] for step in range(3))


def test_a_small_face_is_followed_at_full_resolution_and_a_large_one_coarsely(detector) -> None:  # type: ignore[no-untyped-def]
    rgb = scene((200, 200))  # a 42 px face
    rgb[100:600, 800:1200] = scene((0, 0), size=400)[:500, :400]  # a 140 px one
    small, large = sorted(detector.detect(rgb), key=lambda face: face.box[3])
    planner = RegionPlanner(RegionConfig(full_pass_seconds=10.0))
    assert planner.plan(rgb, 0.0) == [Region(0, 0, 1280, 720)]  # the first round: a full pass, full resolution
    fine, coarse = planner.plan(rgb, 0.08, tracks=[small.box, large.box])
    assert fine.scale == 1 and coarse.scale == 960 / 1280
    (seen_small,) = detect_in_regions(detector, rgb, [fine])
    (seen_large,) = detect_in_regions(detector, rgb, [coarse])
    for seen, truth in ((seen_small, small), (seen_large, large)):
        assert np.allclose(seen.box, truth.box, atol=0.05 * truth.box[3])


def test_motion_over_most_of_the_frame_is_detected_coarsely_and_the_full_pass_still_comes() -> None:
    planner = RegionPlanner(RegionConfig(full_pass_seconds=1.0))
    planner.plan(scene(None), 0.0)
    noise = [np.random.default_rng(seed).integers(0, 255, size=(720, 1280, 3)).astype(np.uint8) for seed in (1, 2)]
    assert planner.plan(noise[0], 0.08) == [Region(0, 0, 1280, 720, 960 / 1280)]  # a crowd: the whole frame, coarsely
    assert planner.plan(noise[1], 1.0) == [Region(0, 0, 1280, 720)]  # and a full-resolution pass every second


def test_frames_no_wider_than_the_coarse_width_are_always_detected_at_full_resolution() -> None:
    planner = RegionPlanner(RegionConfig(coarse_width=1280))
    planner.plan(scene((600, 300)), 0.0)
    assert [rect.scale for rect in planner.plan(scene((640, 310)), 0.08)] == [1.0]


def test_a_coarse_look_measures_the_quality_only_of_the_faces_it_keeps(detector, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import openfrt.vision.detectors.base as detectors

    rgb = scene((200, 200))  # a 42 px face: proposed coarsely, then confirmed at full resolution
    rgb[100:600, 800:1200] = scene((0, 0), size=400)[:500, :400]  # a 140 px one: kept from the coarse look
    coarse = Region(0, 0, 1280, 720, 960 / 1280)
    proposals = detector.propose_at_scale(rgb, coarse.scale)
    measured: list[tuple[float, float, float, float]] = []
    make_face = detectors.make_face
    monkeypatch.setattr(detectors, "make_face", lambda image, box, *rest: measured.append(box) or make_face(image, box, *rest))

    faces = detect_in_regions(detector, rgb, [coarse])

    assert len(proposals) > len(faces) == 2  # weaker boxes are proposed too, down to score 0.1
    large = [face for face in faces if face.box[3] > 100]
    assert len(large) == 1 and large[0].quality.sharpness > 0
    # of the coarse proposals only the one kept was measured (the small face was, in its full-resolution window)
    assert [proposal.box for proposal in proposals if proposal.box in measured] == [large[0].box]
