"""Retrospective footage search on a long composed walk-through: speed as a multiple of real time, and who it finds.

    python benchmarks/footage.py [--minutes 2] [--loops 3] [--passers 60] [--watchlisted 15] [--distractors 200]
                                 [--codecs mp4v,h264-gop50,h264-gop250] [--workers 1,2] [--interval 0.5] [--coarse-width 0,960]
                                 [--full-pass 1,3] [--keep]

Composes a 1080p25 walk-through (:mod:`openfrt.live.walkthrough`) of ``--minutes`` over a blurred
frame of ../shared/video/walking_1080p.mp4 and repeats it ``--loops`` times with FFmpeg (stream
copy: the ground truth of loop k is the composition's shifted by k lengths), so an hour is
``--minutes 6 --loops 10`` without composing or re-encoding 90,000 frames (the H.264 variants
encode the composition once, then repeat it). It enrols the watchlisted passers'
reference images (another image of each than the one that walks past) and ``--distractors``
other LFW identities (one image each, none of them in the video) into a reference database,
then for each codec variant — OpenCV's mp4v as composed (a keyframe every 12 frames), and
H.264 re-encodes with a keyframe every 2 s (a CCTV recorder's usual GOP) and every 250 frames
(x264's default) — measures in one run:

* decode-only fps: every frame of the file decoded by PyAV (threads AUTO), nothing else;
* footage search speed: the file's length over the search's wall time (x real time), its
  frames per second as a share of decode-only, and how it sampled;
* TPIR (footage): enrolled passer appearances (passer x loop) with a lead, while they were in
  view, that lists their own subject among its candidates (and rank 1);
* other leads: leads that name no enrolled passer in view at their time (false leads, for
  non-enrolled passers or the wrong subject), and leads per enrolled appearance found (a person
  split into several leads);
* missed by sampling: appearances with no frame looked at while they were in view.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from rich.console import Console
from rich.table import Table

from openfrt.footage.search import FOOTAGE_REGIONS, FootageResult, FootageSearch
from openfrt.gallery import Gallery, ImageToEnrol, SubjectInfo
from openfrt.live.regions import RegionConfig
from openfrt.live.source_policy import SourcePolicy
from openfrt.live.walkthrough import FaceSet, Walkthrough, WalkthroughConfig, generate, one_face_screen, read_exclusions
from openfrt.records import Category, RecordStore
from openfrt.vision import EngineConfig, FaceEngine

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
BACKGROUND = SHARED / "video" / "walking_1080p.mp4"
EXCLUDE = ROOT / "benchmarks" / "shared-label-errors.txt"
#: Seconds a lead may lie outside its passer's time in view and still be theirs (a sample's slack).
SLACK = 0.5
CODECS = {"mp4v": None, "h264-gop50": 50, "h264-gop250": 250}


@dataclass(frozen=True)
class Appearance:
    identity: str
    enrolled: bool
    first: float
    last: float


@dataclass
class Score:
    enrolled: int
    found: int
    found_rank1: int
    leads_for_found: int
    other_leads: int
    missed_by_sampling: int
    appearances: int


def main() -> None:
    args = _arguments()
    if not (SHARED / "faces").is_dir():
        sys.exit(f"needs {SHARED / 'faces'} (the shared data set beside the project)")
    work = Path(tempfile.mkdtemp(prefix="openfrt-footage-bench-"))
    os.environ["OPENFRT_HOME"] = str(work / "home")
    try:
        engine = FaceEngine(EngineConfig.from_env())
        truth = _compose(args, engine, work)
        looped = _loop(Path(truth.video), args.loops, work / "footage.mp4")
        appearances = _appearances(truth, args.loops)
        table = _table(args, truth)
        with RecordStore.open(work / "home") as store:
            gallery = Gallery(store, engine)
            enrolled = _enrol(gallery, truth, args.distractors)
            for codec in args.codecs:
                video = looped if CODECS[codec] is None else _loop(_h264(Path(truth.video), CODECS[codec], work / f"{codec}-once.mp4"), args.loops, work / f"{codec}.mp4")
                decode_fps = _decode_fps(video)
                for workers, coarse, full_pass in itertools.product(args.workers, args.coarse_width, args.full_pass):
                    regions = RegionConfig(coarse_width=coarse, full_pass_seconds=full_pass)
                    search = FootageSearch(gallery, SourcePolicy(work), workers=workers, interval=args.interval, regions=regions)
                    load = os.getloadavg()[0]
                    result = search.run(str(video), case_ref="BENCH/1", reason="benchmark", actor="benchmark")
                    setting = f"{coarse or 'full'} px / {full_pass:g} s"
                    print(f"{codec}, {workers} worker(s), {setting}: {result.seconds:.1f} s", file=sys.stderr)
                    table.add_row(codec, str(workers), setting, *_row(result, decode_fps, _score(result, appearances, enrolled)), f"{load:.1f}")
        Console(width=220).print(table)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def _row(result: FootageResult, decode_fps: float, score: Score) -> list[str]:
    frames = result.info.duration * result.info.fps
    return [f"{result.info.keyframe_interval or 0:.2f} s", result.sampling.describe(), f"{decode_fps:.0f}",
            f"{result.speed:.2f}x", f"{frames / result.seconds / decode_fps:.2f}",
            f"{len(result.counts.looked_at)} ({result.counts.unchanged} unchanged skipped)",
            f"{score.found}/{score.enrolled} ({score.found / max(1, score.enrolled):.0%}); rank 1 {score.found_rank1}",
            f"{score.leads_for_found / max(1, score.found):.2f}", str(score.other_leads), f"{score.missed_by_sampling}/{score.appearances}",
            _shares(result.counts.stages)]


def _shares(stages: dict[str, float]) -> str:
    """Each pipeline stage's share of the pipeline's time (summed over workers)."""
    total = sum(stages.values()) or 1.0
    return ", ".join(f"{stage} {seconds / total:.0%}" for stage, seconds in sorted(stages.items(), key=lambda item: -item[1]))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="Length of the composed walk-through.")
    parser.add_argument("--loops", type=int, default=3, help="Times it is repeated in the searched file.")
    parser.add_argument("--passers", type=int, default=60)
    parser.add_argument("--watchlisted", type=int, default=15)
    parser.add_argument("--distractors", type=int, default=200, help="Other LFW identities in the reference database.")
    parser.add_argument("--codecs", type=lambda text: text.split(","), default=list(CODECS))
    parser.add_argument("--workers", type=lambda text: [int(n) for n in text.split(",")], default=[2],
                        help="Search processes to compare, comma-separated (one search per value and file).")
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--coarse-width", type=lambda text: [int(n) for n in text.split(",")], default=[FOOTAGE_REGIONS.coarse_width],
                        help="Widths large regions are detected at, comma-separated (0: full resolution, as before 960 px).")
    parser.add_argument("--full-pass", type=lambda text: [float(n) for n in text.split(",")], default=[FOOTAGE_REGIONS.full_pass_seconds],
                        help="Seconds of footage between full-frame passes, comma-separated.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="Keep the temporary directory.")
    return parser.parse_args()


def _compose(args: argparse.Namespace, engine: FaceEngine, work: Path) -> Walkthrough:
    """Passers spread over ``--minutes``: the generator's gaps scaled so the walk-through lasts about that long."""
    mean_gap = args.minutes * 60 / args.passers
    config = WalkthroughConfig(passers=args.passers, watchlisted=args.watchlisted, seed=args.seed,
                               gap_seconds=(0.4 * mean_gap, 1.6 * mean_gap))
    faces = FaceSet(SHARED / "faces", read_exclusions(EXCLUDE.read_text().splitlines()), one_face_screen(engine))
    started = time.perf_counter()
    truth = generate(config, faces, work / "walkthrough.mp4", background=BACKGROUND if BACKGROUND.exists() else None)
    print(f"composed {truth.frames / truth.fps:.0f} s in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return truth


def _loop(video: Path, loops: int, out: Path) -> Path:
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{video}'\n" for _ in range(loops)))
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(out)], check=True)
    return out


def _h264(video: Path, gop: int, out: Path) -> Path:
    started = time.perf_counter()
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(video), "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
                    "-g", str(gop), "-pix_fmt", "yuv420p", str(out)], check=True)
    print(f"encoded {out.name} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return out


def _appearances(truth: Walkthrough, loops: int) -> list[Appearance]:
    length = truth.frames / truth.fps
    return [Appearance(p.identity, p.on_watchlist, loop * length + p.first_frame / truth.fps, loop * length + p.last_frame / truth.fps)
            for loop in range(loops) for p in truth.passers]


def _enrol(gallery: Gallery, truth: Walkthrough, distractors: int) -> set[str]:
    """The watchlisted passers' reference images and ``distractors`` LFW identities not in the video."""
    enrolled = set()
    for passer in truth.passers:
        if passer.on_watchlist:
            report = gallery.enrol(SubjectInfo(passer.identity, passer.identity, Category.wanted),
                                   [ImageToEnrol(Path(passer.reference_image or ""), "reference", face="largest")], actor="benchmark")
            if report.enrolled:
                enrolled.add(passer.identity)
    in_video = {passer.identity for passer in truth.passers}
    others = [folder for folder in sorted((SHARED / "faces" / "lfw").iterdir()) if folder.is_dir() and folder.name not in in_video]
    rng = np.random.default_rng(1)
    added = 0
    for index in rng.permutation(len(others)):
        if added == distractors:
            break
        image = sorted(others[index].glob("*.jpg"))[0]
        report = gallery.enrol(SubjectInfo(others[index].name, others[index].name, Category.wanted),
                               [ImageToEnrol(image, "distractor", face="largest")], actor="benchmark")
        added += report.enrolled
    print(f"enrolled {len(enrolled)} watchlisted passers and {added} distractors", file=sys.stderr)
    return enrolled


def _score(result: FootageResult, appearances: list[Appearance], enrolled: set[str]) -> Score:
    """Leads against appearances: see the module docstring."""
    wanted = [a for a in appearances if a.identity in enrolled]
    looked = np.array(sorted(result.counts.looked_at))
    missed = sum(1 for a in appearances if not ((looked >= a.first) & (looked <= a.last)).any())
    found, rank1, leads_for_found, other = set(), set(), 0, 0
    for lead in result.leads:
        names = [subject for subject, _ in lead.candidates]
        hits = [a for a in wanted if a.identity in names and lead.first_seen <= a.last + SLACK and lead.last_seen >= a.first - SLACK]
        if not hits:
            other += 1
            continue
        leads_for_found += 1
        found.update(hits)
        rank1.update(a for a in hits if names[0] == a.identity)
    return Score(len(wanted), len(found), len(rank1), leads_for_found, other, missed, len(appearances))


def _decode_fps(video: Path) -> float:
    """Every frame decoded by PyAV (threads AUTO), left in YUV: the ceiling of any search that decodes all."""
    started, count = time.perf_counter(), 0
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for _ in container.decode(stream):
            count += 1
    return count / (time.perf_counter() - started)


def _table(args: argparse.Namespace, truth: Walkthrough) -> Table:
    length = truth.frames / truth.fps * args.loops
    table = Table(title=f"footage search: a {truth.frames / truth.fps:.0f} s walk-through of {len(truth.passers)} passers "
                        f"({sum(p.on_watchlist for p in truth.passers)} watchlisted) looped {args.loops}x = {length / 60:.1f} min of "
                        f"{truth.size[0]}x{truth.size[1]} {truth.fps:g} fps; {args.distractors} distractors enrolled; "
                        f"interval {args.interval} s")
    for column in ("file", "workers", "large regions at / full pass every", "keyframes every", "sampling", "decode-only fps", "search speed", "search fps / decode fps",
                   "frames looked at", "TPIR (enrolled appearances found)", "leads per found", "other leads",
                   "missed by sampling", "time per stage", "load before"):
        table.add_column(column)
    return table


if __name__ == "__main__":
    main()
