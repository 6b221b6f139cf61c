"""Live pipeline accuracy and speed on composed walk-throughs, against the same faces as stills.

    python benchmarks/live.py [--passers 40] [--watchlisted 10] [--seeds 0,1,2] [--threshold T ...] [--repeat 3] [--keep]
                              [--live-options "" --live-options "--full-pass 0"]

For each seed, composes a walk-through (openfrt.live.walkthrough) from ../shared/faces over a
blurred frame of ../shared/video/walking_1080p.mp4, enrols the watchlisted passers' reference
images (a different image from the one that walks past) in a temporary data directory, runs
``openfrt live --events-json`` on the video and ``openfrt identify --json`` on the passers'
source images, and prints, per model, threshold and ``--live-options`` (extra options for
``openfrt live``, to compare pipeline settings in one run), pooled over the seeds:

* TPIR: watchlisted passers alerted for their own subject while in view;
* false alerts per passer: alerts for a subject who is not in view at the alert's time;
* faces scanned (the deployment records) against the true number of passers;
* alert latency: the alert's source time (the frame on which it was raised) minus the passer's
  first frame (p50/p95, seconds);
* the same TPIR and false alerts for the still images, at the same threshold;
* and for one frame of the walk-through per passer (the middle of their walk, cropped around
  the face and saved losslessly): what a single camera frame finds, against which the live
  pipeline's several frames per person are measured.

Then the speed of the default pipeline on the real 1080p25 video ``walking_1080p.mp4`` (dense
small faces, which the composed videos are not): processing fps (frames over the deployment's
start-to-end time, median of ``--repeat`` runs, with the load average before each run), people
counted, and the frames dropped when it is played in real time (``--realtime``).

Alerts carry no box, so an alert is attributed by subject and time: it is a hit when that
subject's passer is in view then. Models: the default (yunet + sface), dlib-onnx (bundled, the
former default) and, when its file exists, Intel face-reidentification-retail-0095 (registered
as ``intel`` in the temporary data directory); ``--models`` picks some.

``--compositions`` also composes walk-throughs arranged differently from the generator's default
(groups arriving together, small faces, large faces, passers crossing each other's paths in one
band of the frame) and reports the faces the default pipeline scanned against the passers: the
count a deployment publishes must not depend on how the crowd happens to walk.

The commands run as openfrt users, as they must: an authorising officer creates the watchlist,
an operator searches, plans one deployment per run (at the threshold measured) and runs it
after the officer authorised it — and, for a threshold below the floor, after a second
authorising officer approved it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from openfrt.live.walkthrough import (
    FaceSet,
    Walkthrough,
    WalkthroughConfig,
    generate,
    one_face_screen,
    read_exclusions,
)
from openfrt.records import RecordStore, Role, UserService, local_actor
from openfrt.vision import EngineConfig, FaceEngine

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
BACKGROUND = SHARED / "video" / "walking_1080p.mp4"
INTEL = SHARED / "models" / "face-reidentification-retail-0095" / "FP16" / "face-reidentification-retail-0095.xml"
EXCLUDE = ROOT / "benchmarks" / "shared-label-errors.txt"
OPENFRT = [sys.executable, "-m", "openfrt"]
#: Seconds an alert may come after its passer's last frame. Alerts are raised on frames where the
#: face is detected, so this only absorbs the detector still finding the pasted head's soft edge
#: a frame or two after the ground truth ends.
SLACK = 0.2


@dataclass(frozen=True)
class Officers:
    """The environments to run ``openfrt`` as each benchmark user, in one data directory whose
    cameras may read the videos in ``footage`` (the source policy's footage directory)."""

    operator: dict[str, str]
    authoriser: dict[str, str]
    approver: dict[str, str]

    @classmethod
    def in_home(cls, home: Path, footage: Path) -> Officers:
        env = {**os.environ, "OPENFRT_HOME": str(home), "OPENFRT_FOOTAGE_DIR": str(footage)}
        roles = {"bench-operator": Role.operator, "bench-officer": Role.authorising_officer, "bench-approver": Role.authorising_officer}
        tokens = {}
        with RecordStore.open(home) as store:
            users = UserService(store)
            for name, role in roles.items():
                users.create(name, role, f"benchmark password {os.urandom(8).hex()}", actor=local_actor())
                tokens[name] = users.create_token(name, "benchmark", actor=name)[1]
        return cls(*({**env, "OPENFRT_TOKEN": tokens[name]} for name in roles))


@dataclass(frozen=True)
class Model:
    """A detector/embedder pair to benchmark; ``operating`` is a lower threshold than the
    calibrated 1/6,000 one, so the comparison has alerts to compare."""

    label: str
    embedder: str | None
    operating: float


DEFAULT = Model("yunet + sface (default)", None, 0.755)  # about 1 false alert per 100 at 1,000 subjects (calibration)
DLIB = Model("yunet + dlib-onnx", "dlib-onnx", 0.976)  # about 1 false alert per 100 at 1,000 subjects (README)
INTEL_MODEL = Model("yunet + intel", "intel", 0.80)  # below its calibrated threshold; FPIR not calibrated there
MODELS = {"default": DEFAULT, "dlib": DLIB, "intel": INTEL_MODEL}

#: Walk-throughs composed differently from the generator's defaults (WalkthroughConfig overrides).
COMPOSITIONS: dict[str, dict[str, object]] = {
    "generator default (spaced)": {},
    "groups (arrivals 0-0.25 s apart)": {"gap_seconds": (0.0, 0.25)},
    "small faces (30-70 px)": {"face_heights": (30.0, 70.0)},
    "large faces (150-400 px)": {"face_heights": (150.0, 400.0)},
    "crossing paths (one band, 35-65% of the height)": {"lane_band": (0.35, 0.65), "gap_seconds": (0.1, 0.6)},
}


@dataclass
class Score:
    """TPIR, false alerts and latency of one set of (passer, subject, time) alerts."""

    hits: int
    watchlisted: int
    false_alerts: int
    passers: int
    latencies: list[float]

    def tpir(self) -> str:
        return f"{self.hits}/{self.watchlisted} ({self.hits / max(1, self.watchlisted):.0%})"

    def false(self) -> str:
        return f"{self.false_alerts} ({self.false_alerts / max(1, self.passers):.3f})"

    def latency(self) -> str:
        if not self.latencies:
            return "-"
        p50, p95 = np.percentile(self.latencies, [50, 95])
        return f"{p50:.2f} / {p95:.2f}"

    def __add__(self, other: Score) -> Score:
        return Score(self.hits + other.hits, self.watchlisted + other.watchlisted, self.false_alerts + other.false_alerts,
                     self.passers + other.passers, sorted(self.latencies + other.latencies))


@dataclass
class Pooled:
    """One table row's figures summed over seeds."""

    threshold: float
    options: str
    live: Score
    stills: Score
    one_frame: Score
    scanned: int = 0
    passers: int = 0


def main() -> None:
    args = _arguments()
    if not (SHARED / "faces").is_dir():
        sys.exit(f"needs {SHARED / 'faces'} (the shared data set beside the project)")
    models = [MODELS[name] for name in args.models if name != "intel" or INTEL.exists()]
    work = Path(tempfile.mkdtemp(prefix="openfrt-live-bench-"))
    try:
        truths = [_compose(args, seed, work / f"seed{seed}") for seed in args.seeds]
        frames = {truth.seed: _middle_frames(truth, work / f"seed{truth.seed}" / "frames") for truth in truths}
        first = truths[0]
        table = Table(title=f"live walk-throughs: seeds {', '.join(map(str, args.seeds))}, each {len(first.passers)} passers "
                            f"({sum(p.on_watchlist for p in first.passers)} watchlisted), {first.size[0]}x{first.size[1]} "
                            f"{first.fps:g} fps; pooled")
        for column in ("model", "threshold", "live options", "TPIR live", "TPIR stills", "TPIR one frame", "false alerts live (/passer)",
                       "false alerts stills (/passer)", "false alerts one frame (/passer)", "faces scanned vs passers",
                       "latency p50/p95 s"):
            table.add_column(column)
        for model in models:
            for row in _benchmark_model(model, truths, frames, work, args):
                table.add_row(
                    model.label, f"{row.threshold:.4f}", row.options or "(defaults)", row.live.tpir(), row.stills.tpir(), row.one_frame.tpir(),
                    row.live.false(), row.stills.false(), row.one_frame.false(),
                    f"{row.scanned} vs {row.passers} ({row.scanned / row.passers - 1:+.1%})", row.live.latency(),
                )
        console = Console(width=200)
        console.print(table)
        if args.compositions:
            console.print(_compositions(args, work))
        if BACKGROUND.exists():
            console.print(_speed(args.repeat, work))
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passers", type=int, default=40)
    parser.add_argument("--watchlisted", type=int, default=10)
    parser.add_argument("--seeds", type=lambda text: [int(seed) for seed in text.split(",")], default=[0],
                        help="Comma-separated walk-through seeds; figures are pooled over them.")
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--threshold", type=float, action="append",
                        help="Watchlist threshold(s) to run at (default: the calibrated one and the model's operating one).")
    parser.add_argument("--live-options", action="append",
                        help="Extra options for `openfrt live`, one set per use (e.g. \"\" and \"--full-pass 0\"); default: none.")
    parser.add_argument("--repeat", type=int, default=1, help="Runs on walking_1080p.mp4; fps is their median.")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary directory (videos, truth, data).")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["default", "dlib", "intel"])
    parser.add_argument("--compositions", action="store_true", help="Also count faces scanned on differently composed walk-throughs.")
    return parser.parse_args()


def _compose(args: argparse.Namespace, seed: int, folder: Path, **overrides: object) -> Walkthrough:
    width, height = (int(v) for v in args.size.split("x"))
    config = WalkthroughConfig(size=(width, height), passers=args.passers, watchlisted=args.watchlisted, seed=seed, **overrides)  # type: ignore[arg-type]
    screen = one_face_screen(FaceEngine(EngineConfig.from_env()))
    faces = FaceSet(SHARED / "faces", read_exclusions(EXCLUDE.read_text().splitlines()), screen)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    truth = generate(config, faces, folder / "walkthrough.mp4", background=BACKGROUND if BACKGROUND.exists() else None)
    print(f"composed {truth.video} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return truth


def _benchmark_model(model: Model, truths: list[Walkthrough], frames: dict[int, dict[int, str]], work: Path,
                     args: argparse.Namespace) -> list[Pooled]:
    """Rows for one model, pooled over the walk-throughs: per seed, set up a data directory,
    search the stills and the single frames once, run live once per threshold (without --realtime every frame is
    processed, so repeated runs alert alike)."""
    rows: list[Pooled] = []
    for truth in truths:
        home = work / f"home-{model.embedder or 'bundled'}-{truth.seed}"
        officers = Officers.in_home(home, footage=Path(truth.video).parent)
        embedder = ["--embedder", model.embedder] if model.embedder else []
        if model.embedder == "intel":
            _run([*OPENFRT, "models", "add", "intel", str(INTEL), "--licence", "Apache-2.0"], officers.operator)
        calibrated = _create_watchlist("walk", embedder, officers.authoriser)
        thresholds = args.threshold or [calibrated, model.operating]
        enrolled = _enrol(truth, "walk", embedder, officers.authoriser, home.with_name(f"references-{home.name}"))
        photos = {p.index: p.video_image for p in truth.passers}
        stills = _identify("walk", list(photos.values()), embedder, officers.operator)
        single = _identify("walk", list(frames[truth.seed].values()), embedder, officers.operator)
        for index, (threshold, options) in enumerate(itertools.product(thresholds, args.live_options or [""])):
            events, record, wall = _live("walk", truth.video, [*embedder, *options.split()], officers, realtime=False, threshold=threshold)
            live_score = _score_alerts(truth, enrolled, [(event["subject"], event["time"]) for event in events])
            still_score = _score_stills(truth, enrolled, photos, stills, threshold)
            frame_score = _score_stills(truth, enrolled, frames[truth.seed], single, threshold)
            if index == len(rows):
                rows.append(Pooled(threshold, options, live_score, still_score, frame_score))
            else:
                rows[index].live += live_score
                rows[index].stills += still_score
                rows[index].one_frame += frame_score
            rows[index].scanned += record["faces_scanned"]
            rows[index].passers += len(truth.passers)
            print(f"{model.label} @ {threshold:.4f} {options}, seed {truth.seed}: live run {wall:.1f} s wall", file=sys.stderr)
    return rows


def _compositions(args: argparse.Namespace, work: Path) -> Table:
    """Faces scanned by the default pipeline against the passers, per composition (seed 100 onwards)."""
    table = Table(title="faces scanned vs passers on walk-throughs composed differently (default model and settings)")
    for column in ("composition", "passers", "faces scanned", "difference"):
        table.add_column(column)
    for number, (label, overrides) in enumerate(COMPOSITIONS.items()):
        truth = _compose(args, 100 + number, work / f"composition{number}", **overrides)
        home = work / f"home-composition{number}"
        officers = Officers.in_home(home, footage=Path(truth.video).parent)
        _create_watchlist("walk", [], officers.authoriser)
        _enrol(truth, "walk", [], officers.authoriser, home.with_name(f"references-composition{number}"))
        _, record, _ = _live("walk", truth.video, [], officers, realtime=False)
        passers, scanned = len(truth.passers), record["faces_scanned"]
        table.add_row(label, str(passers), str(scanned), f"{scanned / passers - 1:+.1%}")
    return table


def _speed(repeat: int, work: Path) -> Table:
    """The default pipeline (bundled model) on walking_1080p.mp4: fps over ``repeat`` full runs
    and the frames dropped when played in real time, with the load average before each run."""
    officers = Officers.in_home(work / "home-speed", footage=BACKGROUND.parent)
    _create_watchlist("speed", [], officers.authoriser)
    reference = SHARED / "faces" / "samples" / "biden.jpg"  # someone who is not in the video
    _run([*OPENFRT, "subject", "add", "reference", str(reference), "--name", "Reference", "--category", "wanted", "--json"],
         officers.authoriser)
    _run([*OPENFRT, "watchlist", "add", "speed", "reference", "--json"], officers.authoriser)
    frames = _frame_count(BACKGROUND)
    table = Table(title=f"speed on {BACKGROUND.name} ({frames} frames, 1080p25), default settings, {os.cpu_count()} cores")
    for column in ("mode", "load average (1 min) before", "fps", "vs decoding alone (same runs)", "people counted", "frames dropped"):
        table.add_column(column)
    runs, decoding = [], []
    for _ in range(repeat):
        load = os.getloadavg()[0]
        decoding.append(_decode_fps(BACKGROUND))
        _, record, _ = _live("speed", BACKGROUND, [], officers, realtime=False)
        runs.append((frames / _seconds(record), load, record))
    fps = [run[0] for run in runs]
    ratios = [run[0] / decoded for run, decoded in zip(runs, decoding)]
    table.add_row(f"all frames, median of {repeat}", ", ".join(f"{run[1]:.2f}" for run in runs),
                  f"{np.median(fps):.1f} ({', '.join(f'{value:.1f}' for value in fps)})",
                  f"{np.median(ratios):.2f} (decoding alone {np.median(decoding):.0f} fps)", str(runs[0][2]["faces_scanned"]), "-")
    load = os.getloadavg()[0]
    _, record, _ = _live("speed", BACKGROUND, [], officers, realtime=True)
    table.add_row("real time (--realtime)", f"{load:.2f}", "-", "-", str(record["faces_scanned"]), str(record["frames_dropped"]))
    return table


def _decode_fps(video: Path) -> float:
    """Frames per second the pipeline's own file source delivers with nothing else to do."""
    from openfrt.live.source_policy import SourcePolicy
    from openfrt.live.sources import open_source

    source = open_source(str(video), policy=SourcePolicy(video.parent))
    started, count = time.perf_counter(), 0
    for _ in source.frames():
        count += 1
    source.stop()
    return count / (time.perf_counter() - started)


def _middle_frames(truth: Walkthrough, folder: Path) -> dict[int, str]:
    """Passer index -> a PNG of the frame in the middle of their walk, cropped to their face box
    and one box around it (so the detector sees the face, not the other passers in the frame)."""
    folder.mkdir(parents=True)
    wanted: dict[int, list] = defaultdict(list)
    for passer in truth.passers:
        wanted[(passer.first_frame + passer.last_frame) // 2].append(passer)
    crops: dict[int, str] = {}
    capture = cv2.VideoCapture(truth.video)
    try:
        for index in range(max(wanted) + 1):
            ok, frame = capture.read()
            if not ok:
                break
            for passer in wanted.get(index, []):
                _, x, y, w, h = passer.boxes[index - passer.first_frame]
                top, left = max(0, round(y - h)), max(0, round(x - w))
                path = folder / f"passer{passer.index}.png"
                cv2.imwrite(str(path), frame[top:round(y + 2 * h), left:round(x + 2 * w)])
                crops[passer.index] = str(path)
    finally:
        capture.release()
    return crops


def _frame_count(video: Path) -> int:
    capture = cv2.VideoCapture(str(video))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()


def _seconds(record: dict) -> float:
    """The deployment's start-to-end time: processing, without the command's start-up."""
    return (datetime.fromisoformat(record["ended_at"]) - datetime.fromisoformat(record["started_at"])).total_seconds()


def _run(command: list[str], env: dict[str, str]) -> str:
    """Run an ``openfrt`` command; its stdout (stderr is shown on failure)."""
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode not in (0, 1):  # 1: some input failed, reported per line
        sys.exit(f"{' '.join(command[2:5])} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def _create_watchlist(name: str, embedder: list[str], authoriser: dict[str, str]) -> float:
    """A standing watchlist (one deployment per threshold and run searches it) at the model's
    calibrated threshold, which it returns."""
    out = _run([*OPENFRT, "watchlist", "create", name, "--purpose", "benchmark", "--standing", "searched by every run of the benchmark",
                "--json", *embedder], authoriser)
    return float(json.loads(out.splitlines()[-1])["threshold"])


def _enrol(truth: Walkthrough, watchlist: str, embedder: list[str], env: dict[str, str], folder: Path) -> set[str]:
    """Enrol each watchlisted passer's reference image into the watchlist (one ``enrol-folder``,
    so the model loads once); the identities enrolled."""
    for passer in truth.passers:
        if passer.on_watchlist and passer.reference_image:
            (folder / passer.identity).mkdir(parents=True, exist_ok=True)
            shutil.copy(passer.reference_image, folder / passer.identity)
    out = _run([*OPENFRT, "enrol-folder", watchlist, str(folder), "--category", "wanted", "--face", "largest", "--json", *embedder], env)
    reports = [json.loads(line) for line in out.splitlines()]
    for report in reports:
        if not report["enrolled"]:
            print(f"not enrolled: {report['subject']}: {[image.get('error') for image in report['images']]}", file=sys.stderr)
    enrolled = {report["subject"] for report in reports if report["enrolled"]}
    print(f"enrolled {len(enrolled)} of {sum(p.on_watchlist for p in truth.passers)} watchlisted passers", file=sys.stderr)
    return enrolled


def _identify(watchlist: str, images: list[str], embedder: list[str], env: dict[str, str]) -> dict[str, tuple[str, float] | None]:
    """Image -> its best candidate (subject, similarity), or None (no face or no candidate)."""
    out = _run([*OPENFRT, "identify", watchlist, *images, "--json", "--top", "1", *embedder], env)
    best: dict[str, tuple[str, float] | None] = {}
    for line in out.splitlines():
        result = json.loads(line)
        candidates = result["candidates"]
        best[result["image"]] = (candidates[0]["subject"], candidates[0]["similarity"]) if candidates else None
    return best


def _live(watchlist: str, video: str | Path, options: list[str], officers: Officers, realtime: bool,
          threshold: float | None = None) -> tuple[list[dict], dict, float]:
    """Alert events, the deployment record and the wall time of one ``openfrt live`` run: a new
    deployment on ``watchlist`` (at ``threshold``, default the watchlist's), planned by the
    operator, authorised by the officer, run by the operator."""
    name = f"run-{time.time_ns()}"
    extra = ["--threshold", str(threshold)] if threshold is not None else []
    _run([*OPENFRT, "deployments", "create", name, "--watchlist", watchlist, "--location", "benchmark", "--purpose", "benchmark",
          "--camera", f"walk={video}", "--json", *extra], officers.operator)
    if threshold is not None:  # refused (exit 1) when the threshold is not below the floor and needs no approval
        _run([*OPENFRT, "deployments", "approve-threshold", name, "--justification", "benchmark below the floor", "--json"],
             officers.approver)
    _run([*OPENFRT, "deployments", "authorise", name, "--json"], officers.authoriser)
    command = [*OPENFRT, "live", "--deployment", name, "--events-json", *options, *(["--realtime"] if realtime else [])]
    started = time.perf_counter()
    lines = [json.loads(line) for line in _run(command, officers.operator).splitlines() if line.startswith("{")]
    wall = time.perf_counter() - started
    return [line for line in lines if line["event"] == "alert"], lines[-1], wall


def _score_alerts(truth: Walkthrough, enrolled: set[str], alerts: list[tuple[str, float]]) -> Score:
    """An alert is a hit for the enrolled passer it names if that passer is in view at its time
    (first hit per passer counts; repeats are neither hits nor false); otherwise it is false."""
    first_hit: dict[int, float] = {}
    false_alerts = 0
    for subject, moment in alerts:
        passer = next((p for p in truth.passers if p.identity == subject and p.identity in enrolled
                       and p.first_frame / truth.fps <= moment <= p.last_frame / truth.fps + SLACK), None)
        if passer is None:
            false_alerts += 1
        elif passer.index not in first_hit:
            first_hit[passer.index] = moment - passer.first_frame / truth.fps
    return Score(len(first_hit), len(enrolled), false_alerts, len(truth.passers), sorted(first_hit.values()))


def _score_stills(truth: Walkthrough, enrolled: set[str], images: dict[int, str], best: dict[str, tuple[str, float] | None],
                  threshold: float) -> Score:
    """The same counts for one image per passer (``images``: passer index -> path) searched as
    a still at ``threshold``."""
    hits = false_alerts = 0
    for passer in truth.passers:
        candidate = best.get(images.get(passer.index, ""))
        if candidate is None or candidate[1] < threshold:
            continue
        if candidate[0] == passer.identity and passer.identity in enrolled:
            hits += 1
        else:
            false_alerts += 1
    return Score(hits, len(enrolled), false_alerts, len(truth.passers), [])


if __name__ == "__main__":
    main()
