"""The camera actor's body without a cluster: sealed transport, resuming a recorded camera
exactly where a dead one left off, and sources that start after a given time.

``openfrt.cluster`` is imported inside the tests: Ray must not be imported before
``test_cluster.py`` has given it its TLS settings.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from openfrt.gallery import Gallery, ImageToEnrol, SubjectInfo
from openfrt.live.source_policy import SourcePolicy
from openfrt.live.pipeline import PipelineConfig, live_engine_config
from openfrt.live.sources import open_source
from openfrt.live.walkthrough import one_after_another
from openfrt.records import Category, RecordStore
from openfrt.vision import EngineConfig, FaceEngine
from test_live_pipeline import LFW, UTK


def test_a_sealed_value_opens_only_with_its_key() -> None:
    from openfrt.cluster.sealing import Seal
    from openfrt.records.errors import KeyFileError

    seal, vector = Seal(), np.arange(128, dtype=np.float32)
    sealed = seal.seal({"template": vector})
    assert vector.tobytes()[:16] not in sealed
    assert np.array_equal(Seal(seal.key).open(sealed)["template"], vector)
    with pytest.raises(KeyFileError):
        Seal().open(sealed)


def test_a_recorded_source_opened_after_a_time_starts_with_the_next_frame(tmp_path: Path) -> None:
    if not UTK.exists():
        pytest.skip(f"needs {UTK} (the shared test data beside the project), which is absent")
    video = one_after_another(tmp_path / "walk.avi", sorted(UTK.glob("*.jpg"))[:1], seconds_each=1.0, pause=0.5)
    frames = list(open_source(str(video), policy=SourcePolicy(video.parent)).frames())
    resumed = list(open_source(str(video), policy=SourcePolicy(video.parent), after=frames[6].time).frames())
    assert [frame.time for frame in resumed] == [frame.time for frame in frames[7:]]
    assert np.array_equal(resumed[0].rgb, frames[7].rgb)
    paced = open_source(str(video), policy=SourcePolicy(video.parent), realtime=True, after=frames[6].time)
    started = time.monotonic()
    first = next(paced.frames())
    assert first.time == frames[7].time and time.monotonic() - started < 0.5  # paced from where it resumes
    paced.stop()


@pytest.fixture
def snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, float, str]:
    """The 'wanted' watchlist (S1, Colin Powell) as a live deployment's snapshot, its threshold and model."""
    if not (UTK.exists() and LFW.exists()):
        pytest.skip(f"needs {UTK} and {LFW} (the shared test data beside the project), which are absent")
    monkeypatch.delenv("OPENFRT_DATABASE_URL", raising=False)
    with RecordStore.open(tmp_path / "home") as store:
        gallery = Gallery(store, FaceEngine(EngineConfig.from_env()))
        gallery.create_watchlist("wanted", purpose="test", authorised_by="Supt A", actor="PC 1")
        reference = ImageToEnrol(LFW / "Colin_Powell" / "Colin_Powell_0001.jpg", "ref")
        gallery.enrol(SubjectInfo("S1", "Colin Powell", Category.wanted), [reference], actor="PC 1", watchlist="wanted")
        info, matrix = gallery.watchlist_snapshot("wanted")
    return matrix, info.threshold, info.model_id


def drain(worker: Any, acknowledged: int, until: Any = None) -> tuple[list[Any], Any]:
    """Poll ``worker`` as the driver does, acknowledging each output, until it finishes (or
    ``until(report)``); returns the outputs received after ``acknowledged`` and the last report."""
    received: list[Any] = []
    while True:
        report = worker.poll(acknowledged, stop=False, wait=0.5)
        fresh = [output for output in report.outputs if output.sequence > acknowledged]
        received += fresh
        acknowledged = max([acknowledged, *(output.sequence for output in fresh)])
        if report.finished or (until is not None and until(report)):
            return received, report


def test_a_recorded_camera_restarted_from_its_resume_point_stores_exactly_what_an_uninterrupted_run_stores(
    snapshot: tuple[Any, float, str], tmp_path: Path
) -> None:
    from openfrt.cluster.cameras import CameraWorker, ResumePoint, StartOrder
    from openfrt.cluster.sealing import Seal

    matrix, threshold, model_id = snapshot
    people = [*sorted(UTK.glob("*.jpg"))[:1], LFW / "Colin_Powell" / "Colin_Powell_0001.jpg", *sorted(UTK.glob("*.jpg"))[1:3]]
    video = one_after_another(tmp_path / "door.avi", people, seconds_each=1.5, pause=0.5)
    engine = live_engine_config(EngineConfig.from_env())
    seal = Seal()

    def started(resume: ResumePoint) -> CameraWorker:
        worker = CameraWorker("door")
        order = StartOrder("op", "door", str(video), SourcePolicy(video.parent), False, engine, PipelineConfig(), threshold, model_id, resume)
        assert worker.start(order, seal.seal(matrix), seal.key).started
        return worker

    whole, whole_report = drain(started(ResumePoint()), 0)

    # A camera that dies after its alert was stored, part-way through the next passer:
    first = started(ResumePoint())
    before, report = drain(first, 0, until=lambda report: any(o.alert for o in report.outputs) and report.frames > 50)
    first.poll(before[-1].sequence, stop=True, wait=0)
    stored = before[-1].sequence
    assert report.resume.replay and report.resume.sequence <= stored and report.resume.frames < report.frames
    # ... is started elsewhere from its resume point; the driver stores only what is numbered after ``stored``.
    after, resumed_report = drain(started(report.resume), report.resume.sequence)
    replayed = [output for output in after if output.sequence > stored]

    def alerts(outputs: list[Any]) -> list[tuple[Any, ...]]:
        events = [seal.open(output.alert) for output in outputs if output.alert is not None]
        return [(e.camera, e.track_id, e.subject, round(e.similarity, 6), e.source_time) for e in events]

    assert alerts(before + replayed) == alerts(whole) and len(alerts(whole)) == 1
    assert [output.sequence for output in before + replayed] == [output.sequence for output in whole]
    assert (resumed_report.faces_scanned, resumed_report.frames) == (whole_report.faces_scanned, whole_report.frames)
    assert whole_report.faces_scanned == len(people)


def test_a_live_camera_restarted_elsewhere_does_not_alert_again_on_the_person_it_already_alerted_on(
    snapshot: tuple[Any, float, str], tmp_path: Path
) -> None:
    from openfrt.cluster.cameras import CameraWorker, ResumePoint, StartOrder
    from openfrt.cluster.sealing import Seal

    matrix, threshold, model_id = snapshot
    video = one_after_another(tmp_path / "gate.avi", [LFW / "Colin_Powell" / "Colin_Powell_0001.jpg"], seconds_each=3.0, pause=0.5)
    engine = live_engine_config(EngineConfig.from_env())
    seal = Seal()

    def started(resume: ResumePoint) -> CameraWorker:
        worker = CameraWorker("gate")
        order = StartOrder("op", "gate", str(video), SourcePolicy(video.parent), True, engine, PipelineConfig(), threshold, model_id, resume)
        assert worker.start(order, seal.seal(matrix), seal.key).started
        return worker

    first = started(ResumePoint())
    before, report = drain(first, 0, until=lambda report: any(o.alert for o in report.outputs))
    first.poll(before[-1].sequence, stop=True, wait=0)  # the node dies while he is still in view
    stored = before[-1].sequence
    resume = report.resume
    assert not resume.replay and [track.id for track in resume.alerted] == [seal.open(before[-1].alert).track_id]
    # The driver restarts it numbering after what it stored (ClusterRunner._order does this):
    after, last = drain(started(replace(resume, sequence=stored, faces_scanned=report.faces_scanned)), stored)
    assert [output for output in after if output.alert is not None] == []
    assert last.faces_scanned == 1  # the one person, counted once when his carried track ended


def test_a_live_camera_hands_over_an_alert_only_with_a_resume_point_that_carries_its_track(
    snapshot: tuple[Any, float, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openfrt.cluster import cameras
    from openfrt.cluster.cameras import CameraWorker, ResumePoint, StartOrder
    from openfrt.cluster.sealing import Seal

    matrix, threshold, model_id = snapshot
    video = one_after_another(tmp_path / "gate.avi", [LFW / "Colin_Powell" / "Colin_Powell_0001.jpg"], seconds_each=2.0, pause=0.5)
    worker, seal = CameraWorker("gate"), Seal()
    mid_frame: list[Any] = []
    emit = cameras._Outbox._emit

    def polled_at_once(outbox: Any, **payload: Any) -> int:  # the driver's poll lands while the frame is still in progress
        sequence = emit(outbox, **payload)
        mid_frame.append(worker.poll(0, stop=False, wait=0))
        return sequence

    monkeypatch.setattr(cameras._Outbox, "_emit", polled_at_once)
    order = StartOrder("op", "gate", str(video), SourcePolicy(video.parent), True, live_engine_config(EngineConfig.from_env()),
                       PipelineConfig(), threshold, model_id, ResumePoint())
    assert worker.start(order, seal.seal(matrix), seal.key).started
    outputs, report = drain(worker, 0, until=lambda report: any(output.alert for output in report.outputs))
    worker.poll(outputs[-1].sequence, stop=True, wait=0)

    (early,) = mid_frame
    assert early.outputs == ()  # not before the frame's resume point exists...
    alert = seal.open(outputs[-1].alert)
    assert [track.id for track in report.resume.alerted] == [alert.track_id]  # ...which carries the alerted track
