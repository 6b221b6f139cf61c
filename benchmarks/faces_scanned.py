"""Why "faces scanned" differs from the passers: detection and tracking against the generator's ground truth.

    python benchmarks/faces_scanned.py [--width 960 --cadence 2] [--full-pass 0 --full-pass 1] [--coarse-width 0 --coarse-width 960]
                                       [--compositions NAME ...] [--keep DIR]

Composes the walk-throughs of ``benchmarks/live.py --compositions`` (same overrides, same seeds
100 onwards, 40 passers) and runs the default detector, the pipeline's choice of regions to
detect in (:mod:`openfrt.live.regions`) and its tracker on them in this process, frame by frame,
with the pipeline's rule for a face scanned (a track seen in ``min_hits`` rounds, once at the
detector's confident score). ``--full-pass 0`` detects the whole frame every round (the pipeline
before regions); the default compares that with the default regions in one run; ``--coarse-width``
compares the width motion is detected at (0: full resolution, as before 960 px became the default). Against each
passer's known face box (IoU >= 0.3) it reports, per composition:

* tracks confirmed — what ``openfrt live`` records as faces scanned for that video;
* detection recall: the share of (passer, detection round) pairs in which the passer's face
  was detected at all;
* passers never detected, and passers detected but never at the confident score;
* merged tracks: confirmed tracks that followed two or more passers (one face scanned for
  several people) and split passers (one passer, several confirmed tracks);
* the detector's CPU time, regions included (compare settings within one run).

A passer with no confirmed track of their own is missed for one of three reasons: never found,
never found confidently, or taken over by another passer's track. The columns say which.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live import (  # the same walk-throughs as live.py
    BACKGROUND,
    COMPOSITIONS,
    EXCLUDE,
    SHARED,
)

from openfrt.live.defaults import DEFAULT_CADENCE
from openfrt.live.pipeline import PipelineConfig, live_engine_config
from openfrt.live.regions import RegionConfig, RegionPlanner, detect_in_regions
from openfrt.live.tracking import Tracker
from openfrt.live.walkthrough import (
    FaceSet,
    Walkthrough,
    WalkthroughConfig,
    generate,
    one_face_screen,
    read_exclusions,
)
from openfrt.vision import EngineConfig, FaceEngine
from openfrt.vision.boxes import iou

#: Overlap at which a detection is the passer's face.
MATCH_IOU = 0.3


@dataclass
class Diagnosis:
    """One composition's figures."""

    passers: int
    confirmed: int
    recall: float
    never_found: int
    never_confident: int
    merged_tracks: int
    split_passers: int
    detect_seconds: float


def compose(name: str, seed: int, folder: Path) -> Walkthrough:
    """The composition's walk-through (40 passers, 10 watchlisted), reused if ``folder`` has it."""
    video = folder / f"composition-{seed}.mp4"
    if video.with_suffix(".json").is_file():
        return Walkthrough.load(video.with_suffix(".json"))
    config = WalkthroughConfig(passers=40, watchlisted=10, seed=seed, **COMPOSITIONS[name])  # type: ignore[arg-type]
    faces = FaceSet(SHARED / "faces", read_exclusions(EXCLUDE.read_text().splitlines()), one_face_screen(FaceEngine(EngineConfig.from_env())))
    folder.mkdir(parents=True, exist_ok=True)
    return generate(config, faces, video, background=BACKGROUND if BACKGROUND.exists() else None)


def diagnose(truth: Walkthrough, engine: FaceEngine, cadence: int, regions: RegionConfig) -> Diagnosis:
    """Detect and track ``truth``'s video as the live pipeline does and compare with its ground truth."""
    detector, pipeline, planner = engine.detector, PipelineConfig(), RegionPlanner(regions)
    tracker = Tracker(pipeline.max_gap_seconds)
    boxes = {p.index: {int(row[0]): tuple(row[1:]) for row in p.boxes} for p in truth.passers}
    rounds, found, peak = Counter(), Counter(), defaultdict(float)
    followed: dict[int, Counter] = defaultdict(Counter)  # track id -> passer index -> detections
    tracks = {}
    detect_seconds, index = 0.0, -1
    capture = cv2.VideoCapture(truth.video)
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            index += 1
            if index % cadence:
                continue
            rgb, now = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), index / truth.fps
            started = time.process_time()
            faces = detect_in_regions(detector, rgb, planner.plan(rgb, now, [track.predicted(now) for track in tracker.tracks]), regions)
            detect_seconds += time.process_time() - started
            update = tracker.update(faces, now)
            in_view = [(passer, frames[index]) for passer, frames in boxes.items() if index in frames]
            for passer, box in in_view:
                rounds[passer] += 1
                scores = [face.score for face in faces if iou(box, face.box) >= MATCH_IOU]
                if scores:
                    found[passer] += 1
                    peak[passer] = max(peak[passer], max(scores))
            for track, face in update.assigned:
                tracks[track.id] = track
                overlap, passer = max(((iou(box, face.box), passer) for passer, box in in_view), default=(0.0, None))
                if overlap >= MATCH_IOU:
                    followed[track.id][passer] += 1
    finally:
        capture.release()
    confident = detector.confident_score
    confirmed = [t for t in tracks.values() if t.hits >= pipeline.min_hits and t.peak_score >= confident]
    owners = Counter(followed[t.id].most_common(1)[0][0] for t in confirmed if followed[t.id])
    return Diagnosis(
        passers=len(truth.passers),
        confirmed=len(confirmed),
        recall=sum(found.values()) / max(1, sum(rounds.values())),
        never_found=sum(1 for p in boxes if found[p] == 0),
        never_confident=sum(1 for p in boxes if found[p] and peak[p] < confident),
        merged_tracks=sum(1 for t in confirmed if len(followed[t.id]) >= 2),
        split_passers=sum(1 for count in owners.values() if count >= 2),
        detect_seconds=detect_seconds,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, action="append", help="Detector input width(s); 0: full frames (default: the pipeline's).")
    parser.add_argument("--cadence", type=int, default=DEFAULT_CADENCE)
    parser.add_argument("--motion-every", type=float, action="append",
                        help="Seconds between rounds that look for motion (0: every round); default: the pipeline's.")
    parser.add_argument("--full-pass", type=float, action="append",
                        help="Seconds between full-frame passes (0: whole frame every round); default: 0 and the pipeline's.")
    parser.add_argument("--coarse-width", type=int, action="append",
                        help="Width motion regions are detected at (0: full resolution); default: the pipeline's.")
    parser.add_argument("--compositions", nargs="+", choices=sorted(COMPOSITIONS), default=list(COMPOSITIONS))
    parser.add_argument("--keep", type=Path, default=Path("/tmp/openfrt-faces-scanned"), help="Where the composed videos are kept and reused.")
    args = parser.parse_args()
    if not (SHARED / "faces").is_dir():
        sys.exit(f"needs {SHARED / 'faces'} (the shared data set beside the project)")
    table = Table(title=f"faces scanned against ground truth (40 passers each), cadence {args.cadence}")
    for column in ("composition", "width", "full pass / motion every / motion at", "faces scanned", "detection recall", "never found", "never confident",
                   "merged tracks", "split passers", "detector CPU s"):
        table.add_column(column)
    widths = args.width or [None]
    full_passes = args.full_pass or [0.0, RegionConfig().full_pass_seconds]
    settings = [RegionConfig(full_pass_seconds=full_pass, motion_seconds=motion, coarse_width=coarse) for full_pass in full_passes
                for motion in ([0.0] if full_pass == 0 else args.motion_every or [RegionConfig().motion_seconds])
                for coarse in ([0] if full_pass == 0 else args.coarse_width or [RegionConfig().coarse_width])]
    engines = {width: FaceEngine(live_engine_config(EngineConfig.from_env(), width)) for width in widths}
    for number, name in enumerate(COMPOSITIONS):
        if name not in args.compositions:
            continue
        truth = compose(name, 100 + number, args.keep)
        for (width, engine), regions in itertools.product(engines.items(), settings):
            d = diagnose(truth, engine, args.cadence, regions)
            table.add_row(name, "default" if width is None else str(width or "full"),
                          f"{regions.full_pass_seconds:g} s / {regions.motion_seconds:g} s / {regions.coarse_width or 'full'} px"
                          if regions.full_pass_seconds else "every round (no regions)",
                          f"{d.confirmed} ({d.confirmed / d.passers - 1:+.1%})",
                          f"{d.recall:.1%}", str(d.never_found), str(d.never_confident), str(d.merged_tracks), str(d.split_passers),
                          f"{d.detect_seconds:.1f}")
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
