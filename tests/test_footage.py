"""Retrospective search of footage: sampled decoding, leads of enrolled passers with their times,
nothing kept of anyone else, case and reason required, one audit entry, the footage directory
enforced, progress reported, worker processes, retention, the API and the console page."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from cli_users import as_user
from sqlalchemy import select

from openfrt.footage import records
from openfrt.footage.sampling import ChangeGate, SampledVideoSource, Sampling, choose_sampling, probe
from openfrt.footage.search import FootageSearch, Progress
from openfrt.gallery import Gallery, ImageToEnrol, SubjectInfo
from openfrt.live.retention import run_retention
from openfrt.live.source_policy import SourcePolicy
from openfrt.live.walkthrough import FaceSet, Walkthrough, WalkthroughConfig, generate
from openfrt.net_policy import DestinationRefused
from openfrt.records import Category, RecordStore, Role
from openfrt.records.audit import AuditAction, list_events
from openfrt.records.errors import InvalidRecordError
from openfrt.records.models import FootageLead, FootageSearch as FootageSearchRow, utc_now
from openfrt.vision import EngineConfig, FaceEngine

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
#: Three watchlisted passers (two enrolled, one not) and four passers-by, in view 1.5-2.5 s each.
CONFIG = WalkthroughConfig(size=(960, 540), passers=7, watchlisted=3, face_heights=(60.0, 140.0),
                           walk_seconds=(1.5, 2.5), gap_seconds=(0.8, 1.2), seed=5)


@pytest.fixture(scope="module")
def engine() -> FaceEngine:
    return FaceEngine(EngineConfig.from_env())


@pytest.fixture(scope="module")
def footage(engine: FaceEngine, tmp_path_factory: pytest.TempPathFactory) -> tuple[Walkthrough, Path, set[str]]:
    """The composed walk-through (in the footage directory), a data directory with two of its
    three watchlisted passers enrolled, and who was enrolled."""
    if not (FACES / "lfw").is_dir() or not (FACES / "utk").is_dir():
        pytest.skip(f"needs {FACES}/lfw and {FACES}/utk (the shared test data beside the project), which are absent")
    work = tmp_path_factory.mktemp("footage")
    truth = generate(CONFIG, FaceSet(FACES), work / "walk.mp4")
    listed = [passer for passer in truth.passers if passer.on_watchlist]
    return truth, enrolled_home(work / "home", truth, engine), {passer.identity for passer in listed[:2]}


def enrolled_home(home: Path, truth: Walkthrough, engine: FaceEngine) -> Path:
    """``home`` with the first two watchlisted passers of ``truth`` enrolled (another image of each)."""
    with RecordStore.open(home) as store:
        gallery = Gallery(store, engine)
        for passer in [p for p in truth.passers if p.on_watchlist][:2]:
            subject = SubjectInfo(passer.identity, passer.identity, Category.wanted)
            assert gallery.enrol(subject, [ImageToEnrol(Path(passer.reference_image or ""), "ref", face="largest")], actor="PC 1").enrolled
    return home


def in_view(truth: Walkthrough, identity: str) -> tuple[float, float]:
    passer = next(p for p in truth.passers if p.identity == identity)
    return passer.first_frame / truth.fps, passer.last_frame / truth.fps


@contextmanager
def searching(home: Path, engine: FaceEngine, workers: int = 1) -> Iterator[FootageSearch]:
    with RecordStore.open(home) as store:
        yield FootageSearch(Gallery(store, engine), SourcePolicy(Path(os.environ["OPENFRT_FOOTAGE_DIR"])), workers=workers)


# -- sampling --------------------------------------------------------------------------------


def moving_square_video(path: Path, still: int, moving: int) -> Path:
    """``still`` identical frames, then ``moving`` frames of a square crossing, at 25 fps (mp4v)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (320, 240))
    for index in range(still + moving):
        frame = np.full((240, 320, 3), 90, np.uint8)
        if index >= still:
            x = 10 + 8 * (index - still)
            frame[100:140, x : x + 40] = 230
        writer.write(frame)
    writer.release()
    return path


def test_dense_keyframes_are_sampled_alone_and_sparse_ones_make_it_decode_every_frame(tmp_path: Path) -> None:
    video = moving_square_video(tmp_path / "square.mp4", 50, 50)
    info = probe(video)
    assert info.duration == pytest.approx(4.0, abs=0.05) and info.fps == 25.0
    assert info.keyframe_interval == pytest.approx(0.48, abs=0.01)  # OpenCV's mp4v: a keyframe every 12 frames
    assert choose_sampling(info, 0.5) == Sampling(pytest.approx(0.48), True)  # type: ignore[arg-type]
    assert choose_sampling(info, 1.0) == Sampling(pytest.approx(0.96), True)  # type: ignore[arg-type]
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed to make an H.264 file with sparse keyframes")
    h264 = tmp_path / "sparse.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(video), "-c:v", "libx264", "-g", "250", str(h264)], check=True)
    sparse = probe(h264)
    assert sparse.keyframe_interval is None or sparse.keyframe_interval > 1.0
    sampling = choose_sampling(sparse, 0.5)
    assert not sampling.keyframes_only
    source = SampledVideoSource(h264, sampling)
    times = [frame.time for frame in source.frames()]
    # about 0.5 s apart (less half a frame of slack, or a frame more where a non-reference frame was skipped undecoded)
    assert len(times) == 9 and np.allclose(np.diff(times), 0.5, atol=0.03)


def test_unchanged_frames_are_skipped_and_each_decoded_frame_reports_its_time(tmp_path: Path) -> None:
    video = moving_square_video(tmp_path / "square.mp4", 50, 50)
    heard: list[float] = []
    source = SampledVideoSource(video, choose_sampling(probe(video)), gate=ChangeGate(), on_progress=heard.append)
    times = [frame.time for frame in source.frames()]
    assert source.stats.due == 9 and source.stats.unchanged == 4  # the empty scene: looked at once, then skipped
    assert times[0] == 0.0 and all(t >= 1.92 for t in times[1:]) and len(times) == 5
    assert heard == sorted(heard) and heard[-1] == pytest.approx(3.84)


def test_a_segment_is_read_from_its_start_to_its_end(tmp_path: Path) -> None:
    video = moving_square_video(tmp_path / "square.mp4", 0, 100)
    source = SampledVideoSource(video, choose_sampling(probe(video)), start=1.0, end=3.0)
    assert [round(frame.time, 2) for frame in source.frames()] == [1.44, 1.92, 2.4, 2.88]


# -- searching -------------------------------------------------------------------------------


def test_enrolled_passers_are_leads_at_their_times_and_nothing_is_kept_of_anyone_else(
    footage: tuple[Walkthrough, Path, set[str]], engine: FaceEngine
) -> None:
    truth, home, enrolled = footage
    progress: list[Progress] = []
    with searching(home, engine) as search:
        result = search.run(truth.video, case_ref="CR/1", reason="robbery suspect", actor="PC 1", on_progress=progress.append)
    found = {lead.subject for lead in result.leads}
    assert found == enrolled  # the unenrolled watchlisted passer and the passers-by leave no lead
    for lead in result.leads:
        first, last = in_view(truth, lead.subject)
        assert first - 0.5 <= lead.first_seen <= lead.time <= lead.last_seen <= last + 0.5
        assert lead.probe_crop[:2] == b"\xff\xd8" and lead.frame[:2] == b"\xff\xd8" and not lead.templates
    assert len(result.leads) == len(enrolled)  # one person, one lead: sightings across samples are linked
    assert result.sampling.keyframes_only and result.counts.faces_scanned >= len(truth.passers)
    shares = [p.share for p in progress]
    assert shares == sorted(shares) and shares[-1] == 1.0 and progress[-1].speed > 0
    with RecordStore.open(home) as store, store.transaction() as session:
        row = session.get(FootageSearchRow, result.search_id)
        assert row is not None and row.status.value == "done" and row.summary["leads"] == len(enrolled)
        stored = session.scalars(select(FootageLead).where(FootageLead.search_id == row.id)).all()
        assert {lead.candidates[0][0] for lead in stored} == enrolled
        assert all(lead.probe_crop[:2] != b"\xff\xd8" for lead in stored)  # encrypted at rest
        audit = list_events(session, action=AuditAction.retrospective_search, limit=10)
    mine = [event for event in audit if event.details.get("search") == result.search_id]
    assert len(mine) == 1 and mine[0].case_ref == "CR/1" and mine[0].details["kind"] == "footage"
    assert set(mine[0].details["candidates"]) >= enrolled


def test_two_worker_processes_find_the_same_people(footage: tuple[Walkthrough, Path, set[str]], engine: FaceEngine) -> None:
    truth, home, enrolled = footage
    with searching(home, engine, workers=2) as search:
        result = search.run(truth.video, case_ref="CR/2", reason="robbery suspect", actor="PC 1")
    assert {lead.subject for lead in result.leads} == enrolled and len(result.leads) == len(enrolled)
    assert result.workers == 2


def test_a_search_needs_a_case_and_a_reason_and_a_file_in_the_footage_directory(
    footage: tuple[Walkthrough, Path, set[str]], engine: FaceEngine, tmp_path: Path
) -> None:
    truth, home, _ = footage
    with searching(home, engine) as search:
        before = len(records.recent(search.gallery.store, 1000))
        with pytest.raises(InvalidRecordError):
            search.run(truth.video, case_ref=" ", reason="x", actor="PC 1")
        with pytest.raises(InvalidRecordError):
            search.run(truth.video, case_ref="CR/3", reason="", actor="PC 1")
        elsewhere = FootageSearch(search.gallery, SourcePolicy(tmp_path / "footage"))
        with pytest.raises(DestinationRefused):
            elsewhere.run(truth.video, case_ref="CR/3", reason="x", actor="PC 1")
        assert len(records.recent(search.gallery.store, 1000)) == before  # nothing recorded, nothing searched


def test_retention_deletes_leads_of_old_searches_unless_held(footage: tuple[Walkthrough, Path, set[str]], engine: FaceEngine) -> None:
    truth, home, _ = footage
    with searching(home, engine) as search:
        kept = search.run(truth.video, case_ref="CR/4", reason="r", actor="PC 1").search_id
        expired = search.run(truth.video, case_ref="CR/5", reason="r", actor="PC 1").search_id
        store = search.gallery.store
        records.hold(store, kept, actor="Insp B", reason="evidence in a prosecution")
        report = run_retention(store, actor="admin", now=utc_now() + timedelta(days=32))
        assert expired in report.footage_searches and kept in report.footage_held
        assert records.get(store, expired).leads == () and records.get(store, expired).leads_deleted_at is not None
        assert records.get(store, kept).leads


def test_a_search_whose_process_is_killed_is_ended_as_failed_by_the_next_one(
    footage: tuple[Walkthrough, Path, set[str]], engine: FaceEngine
) -> None:
    truth, home, _ = footage
    env = as_user({**os.environ, "OPENFRT_HOME": str(home)}, Role.operator)
    killed = subprocess.Popen([sys.executable, "-m", "openfrt", "search-footage", truth.video, "--case", "CR/7", "--reason", "r",
                               "--workers", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with RecordStore.open(home) as store:
            deadline = time.monotonic() + 120
            while not (running := [row for row in records.recent(store) if row.case_ref == "CR/7"]) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert running and running[0].status.value == "running"
    finally:
        killed.kill()
        killed.wait()
    with searching(home, engine) as search:
        store = search.gallery.store
        assert records.get(store, running[0].id).status.value == "running"  # nothing has looked yet
        alive = records.start(store, file=truth.video, case_ref="CR/8", reason="r", actor="PC 2", model_id="m", threshold=0.5, top=1)
        assert records.end_abandoned(store) == [running[0].id]  # this process's own search is alive: left alone
        ended = records.get(store, running[0].id)
        assert ended.status.value == "failed" and ended.error == records.ABANDONED and ended.finished_at is not None
        assert records.get(store, alive).status.value == "running"
        with store.transaction() as session:
            audit = [event for event in list_events(session, action=AuditAction.retrospective_search, limit=50)
                     if event.details.get("search") == running[0].id]
        assert len(audit) == 1 and audit[0].details["status"] == "failed"
        records.fail(store, alive, "PC 2", "test over", [])


# -- the command and the API -----------------------------------------------------------------


def test_the_command_searches_as_a_user_with_case_and_reason_and_refuses_other_files(
    footage: tuple[Walkthrough, Path, set[str]], tmp_path: Path
) -> None:
    truth, home, enrolled = footage
    env = as_user({**os.environ, "OPENFRT_HOME": str(home)}, Role.operator)
    command = [sys.executable, "-m", "openfrt", "search-footage", truth.video]
    missing = subprocess.run([*command, "--case", "CR/6"], capture_output=True, text=True, env=env, timeout=60)
    assert missing.returncode == 2 and "--reason" in missing.stderr
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(Path(truth.video).read_bytes())
    refused = subprocess.run([sys.executable, "-m", "openfrt", "search-footage", str(outside), "--case", "CR/6", "--reason", "r"],
                             capture_output=True, text=True, env={**env, "OPENFRT_FOOTAGE_DIR": str(tmp_path / "footage")}, timeout=60)
    assert refused.returncode == 2 and "footage directory" in refused.stderr
    thumbnails = tmp_path / "thumbs"
    done = subprocess.run([*command, "--case", "CR/6", "--reason", "r", "--workers", "1", "--json", "--thumbnails", str(thumbnails)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert {lead["candidates"][0]["subject"] for lead in answer["review"]} == enrolled and answer["frames_looked_at"] > 0
    assert len(list(thumbnails.glob("*-crop.jpg"))) == len(enrolled) == len(list(thumbnails.glob("*-frame.jpg")))


def test_an_officer_starts_a_footage_search_from_the_console_and_reviews_its_leads(
    footage: tuple[Walkthrough, Path, set[str]], engine: FaceEngine, tmp_path: Path
) -> None:
    from test_api import login, serving, with_users

    truth, _, enrolled = footage
    home = enrolled_home(with_users(tmp_path / "server"), truth, engine)
    with serving(home) as client:
        assert client.get("/footage", follow_redirects=False).status_code == 303  # the page needs a log-in
        headers = login(client, Role.operator)
        page = client.get("/footage")
        assert page.status_code == 200 and 'data-testid="footage-form"' in page.text and 'href="/footage"' in page.text
        relative = str(Path(truth.video).resolve().relative_to(Path(os.environ["OPENFRT_FOOTAGE_DIR"]).resolve()))
        assert relative in client.get("/api/footage-files").json()["files"]
        body = {"file": relative, "case_ref": "CR/7", "reason": "robbery suspect"}
        assert client.post("/api/footage-searches", json={**body, "case_ref": ""}, headers=headers).status_code == 422
        assert client.post("/api/footage-searches", json={**body, "file": "/etc/passwd"}, headers=headers).status_code == 422
        started = client.post("/api/footage-searches", json=body, headers=headers)
        assert started.status_code == 202, started.text
        search_id = started.json()["id"]
        deadline = time.monotonic() + 120
        while (search := client.get(f"/api/footage-searches/{search_id}").json())["status"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert search["status"] == "done" and {lead["candidates"][0]["subject"] for lead in search["leads"]} == enrolled
        lead = search["leads"][0]
        image = client.get(f"/api/footage-searches/{search_id}/leads/{lead['id']}/crop")
        assert image.status_code == 200 and image.content[:2] == b"\xff\xd8" and image.headers["cache-control"] == "no-store"
        assert client.post(f"/api/footage-searches/{search_id}/hold", json={"reason": "evidence"}, headers=headers).status_code == 403
        officer = login(client, Role.authorising_officer)
        assert client.post(f"/api/footage-searches/{search_id}/hold", json={"reason": "evidence"}, headers=officer).status_code == 200
        login(client, Role.engagement_officer)
        assert client.get(f"/api/footage-searches/{search_id}").status_code == 403
