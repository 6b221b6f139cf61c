"""Walk-through videos: deterministic, faithful to their ground truth, and usable end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from cli_users import as_user, authorised_deployment

from openfrt.gallery import Gallery, ImageToEnrol, SubjectInfo
from openfrt.live.walkthrough import FaceSet, Walkthrough, WalkthroughConfig, generate, one_face_screen
from openfrt.records import Category, RecordStore, Role
from openfrt.vision import EngineConfig, FaceEngine

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FACES = SHARED / "faces"
SMALL = WalkthroughConfig(size=(480, 270), fps=10.0, passers=5, watchlisted=2, face_heights=(40.0, 90.0),
                          walk_seconds=(0.5, 1.0), gap_seconds=(0.2, 0.5), seed=3)


@pytest.fixture(scope="module")
def faces() -> FaceSet:
    if not (FACES / "lfw").is_dir() or not (FACES / "utk").is_dir():
        pytest.skip(f"needs {FACES}/lfw and {FACES}/utk (the shared test data beside the project), which are absent")
    return FaceSet(FACES)


def frames_of(video: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(bgr)
    capture.release()
    return frames


def without_paths(walkthrough: Walkthrough) -> dict[str, object]:
    return {key: value for key, value in asdict(walkthrough).items() if key != "video"}


def test_a_seed_gives_the_same_video_and_ground_truth(faces: FaceSet, tmp_path: Path) -> None:
    first = generate(SMALL, faces, tmp_path / "a.mp4")
    second = generate(SMALL, faces, tmp_path / "b.mp4")
    other = generate(WalkthroughConfig(**{**asdict(SMALL), "seed": 4}), faces, tmp_path / "c.mp4")

    assert without_paths(first) == without_paths(second)
    assert Walkthrough.load(tmp_path / "a.json") == first
    assert all(np.array_equal(a, b) for a, b in zip(frames_of(tmp_path / "a.mp4"), frames_of(tmp_path / "b.mp4"), strict=True))
    assert [p.identity for p in other.passers] != [p.identity for p in first.passers]


def test_the_video_has_the_requested_size_and_frame_count(faces: FaceSet, tmp_path: Path) -> None:
    truth = generate(SMALL, faces, tmp_path / "walk.mp4")

    frames = frames_of(tmp_path / "walk.mp4")

    assert len(frames) == truth.frames and frames[0].shape == (270, 480, 3)
    assert cv2.VideoCapture(str(tmp_path / "walk.mp4")).get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)
    assert truth.frames > max(p.last_frame for p in truth.passers)


def test_ground_truth_lists_every_passer_with_a_different_reference_image_and_faces_in_range(faces: FaceSet, tmp_path: Path) -> None:
    config = WalkthroughConfig(size=(960, 540), passers=12, watchlisted=4, face_heights=(40.0, 150.0), seed=7)

    truth = generate(config, faces, tmp_path / "walk.mp4")

    assert len(truth.passers) == 12 and len({p.identity for p in truth.passers}) == 12
    listed = [p for p in truth.passers if p.on_watchlist]
    assert len(listed) == 4
    for passer in listed:
        reference, shown = Path(passer.reference_image or ""), Path(passer.video_image)
        assert reference != shown and reference.parent == shown.parent and reference.parent.name == passer.identity
    for passer in truth.passers:
        if not passer.on_watchlist:
            assert passer.reference_image is None
            assert passer.dataset == "utk" or len(list(Path(passer.video_image).parent.glob("*.jpg"))) == 1
        assert [box[0] for box in passer.boxes] == list(range(passer.first_frame, passer.last_frame + 1))
        assert 1.0 * config.fps <= len(passer.boxes) <= 3.0 * config.fps + 1
        for _, x, y, w, h in passer.boxes:
            assert 40.0 - 0.1 <= h <= 150.0 + 0.1
            assert x >= 0 and y >= 0 and x + w <= 960 and y + h <= 540


# -- end to end ------------------------------------------------------------------------------

#: Below the bundled model's 1:1 threshold (0.9626). On 10 seeds (11-20) of the walk-through
#: below both watchlisted passers alerted every time, but one seed also had a false alert at this
#: threshold, so it is only used to show that recognition happens at all.
LENIENT = 0.95


@pytest.fixture(scope="module")
def e2e(faces: FaceSet, tmp_path_factory: pytest.TempPathFactory) -> tuple[Walkthrough, dict[str, str]]:
    """A 960x540 walk-through of 6 passers, 2 of them watchlisted with another image of them
    enrolled in 'strict' (the calibrated threshold) and 'lenient', and the environment to run
    ``openfrt live`` on it."""
    work = tmp_path_factory.mktemp("walkthrough")
    config = WalkthroughConfig(size=(960, 540), passers=6, watchlisted=2, face_heights=(50.0, 150.0),
                               walk_seconds=(1.0, 2.0), gap_seconds=(0.3, 0.6), seed=11)
    engine = FaceEngine(EngineConfig.from_env())
    truth = generate(config, FaceSet(faces.root, screen=one_face_screen(engine)), work / "walk.mp4")
    home = work / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENFRT_HOME", str(home))
        with RecordStore.open(home) as store:
            gallery = Gallery(store, engine)
            gallery.create_watchlist("strict", purpose="test", authorised_by="Supt A", actor="PC 1")
            gallery.create_watchlist("lenient", purpose="test", authorised_by="Supt A", actor="PC 1")
            listed = [p for p in truth.passers if p.on_watchlist]
            for passer in listed:
                image = ImageToEnrol(Path(passer.reference_image or ""), "ref", face="largest")
                subject = SubjectInfo(passer.identity, passer.identity, Category.wanted)
                assert gallery.enrol(subject, [image], actor="PC 1", watchlist="strict").enrolled
            gallery.add_to_watchlist("lenient", [p.identity for p in listed], actor="PC 1")
    return truth, as_user({**os.environ, "OPENFRT_HOME": str(home)}, Role.operator)


def run_live(truth: Walkthrough, env: dict[str, str], watchlist: str, threshold: float | None = None) -> tuple[list[dict], dict]:
    """The alerts and the record of ``openfrt live --events-json`` on the walk-through, as a
    deployment on ``watchlist`` planned and authorised for it (below the floor, approved)."""
    approval = "recognition from a different photograph, on a test video" if threshold is not None else None
    authorised_deployment(env, f"walk-{watchlist}", watchlist, {"gate": str(truth.video)}, approval, threshold=threshold)
    command = [sys.executable, "-m", "openfrt", "live", "--deployment", f"walk-{watchlist}", "--events-json"]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    *alerts, record = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["event"] == "record" and all(alert["event"] == "alert" for alert in alerts)
    return alerts, record


def in_view(truth: Walkthrough, alert: dict) -> bool:
    """Whether the alert names a watchlisted passer who is in view at its time (or just left)."""
    return any(p.on_watchlist and p.identity == alert["subject"] and p.first_frame / truth.fps <= alert["time"] <= p.last_frame / truth.fps + 0.5
               for p in truth.passers)


def test_a_walkthrough_counts_the_passers_and_alerts_no_stranger_at_the_calibrated_threshold(e2e: tuple[Walkthrough, dict[str, str]]) -> None:
    truth, env = e2e

    alerts, record = run_live(truth, env, "strict")

    passers = len(truth.passers)
    assert 0.75 * passers <= record["faces_scanned"] <= 1.5 * passers  # 5-7 for 6 passers on 10 seeds
    assert all(in_view(truth, alert) for alert in alerts)


def test_a_watchlisted_passer_is_recognised_at_a_lenient_threshold(e2e: tuple[Walkthrough, dict[str, str]]) -> None:
    truth, env = e2e

    alerts, _ = run_live(truth, env, "lenient", LENIENT)

    assert any(in_view(truth, alert) for alert in alerts)
