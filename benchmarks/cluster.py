"""openfrt on a local Ray cluster of several nodes: what a camera actor costs, how fast its alerts
come back, and the reference search split into 1, 2 and 4 shards.

    python benchmarks/cluster.py [--repeat 3] [--sizes 1m] [--shards 1,2,4] [--queries 2000]
    python benchmarks/cluster.py --skip-search          # cameras only
    python benchmarks/cluster.py --skip-cameras --sizes 1m,2m

Starts its own cluster (``openfrt.cluster.local``: a head and two worker nodes on this machine,
TLS off) and stops it at the end. Three tables:

* **Camera CPU**: the default pipeline (MTCNN at 960 px every 2nd frame, dlib-onnx, one
  inference thread) on ``../shared/video/walking_1080p.mp4``, run in a plain process and as a
  camera actor, alternately ``--repeat`` times. CPU per frame of the plain process, of the
  actor's process, of the driver storing its outputs, and of Ray's daemons (raylets, GCS) over
  the run; the actor's overhead is its CPU per frame against the plain process's, measured in
  the same run. Cameras per node follow for 1080p at 25 fps.
* **Alert latency**: a video of ``--passers`` LFW faces crossing one after the other, each on
  the watchlist with that very image (every one alerts); the time from an alert being raised in
  the actor's pipeline to the driver holding it (where it is stored), p50 and p95.
* **Sharded search**: synthetic dlib-like galleries (``openfrt.evaluation.synthetic``) in
  ``ShardedIndex`` of 1, 2 and 4 shard actors beside the single approximate and exact indexes:
  build time, single-query latency p50/p99 (one query per call, through Ray), memory per shard
  (peak resident size of each shard's process) and top-1 agreement with the single indexes;
  then the projection to 100M templates, stated as a calculation from the measured bytes per
  template and latency per million templates in a shard.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
VIDEO = SHARED / "video" / "walking_1080p.mp4"
LFW = SHARED / "faces" / "lfw"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class BenchSink:
    """A deployment that keeps counts and each alert's delay from being raised to arriving here."""

    matcher: Any
    threshold: float
    model_id: str
    cameras: list[str]
    deployment_id: int = 0
    name: str = "benchmark"
    faces: int = 0
    delays: list[float] = field(default_factory=list)

    def add_faces_scanned(self, camera: str, count: int) -> None:
        self.faces += count

    def add_frames_dropped(self, camera: str, count: int) -> None:
        pass

    def record_gap(self, camera: str, started: datetime, ended: datetime) -> None:
        pass

    def raise_alert(self, alert: Any) -> int:
        self.delays.append((datetime.now(UTC) - alert.wall_time).total_seconds())
        return len(self.delays)

    def end(self, actor: str) -> object:
        return None


def engine_config() -> Any:
    from openfrt.live.pipeline import live_engine_config
    from openfrt.vision import EngineConfig

    return live_engine_config(EngineConfig.from_env()).model_copy(update={"threads": 1})


def watchlist(images: list[Path]) -> tuple[Any, float, str]:
    """A snapshot of ``images`` (one subject each, the image itself) with the calibrated threshold;
    with no images, one subject nobody in the video resembles."""
    from openfrt.gallery.fitness import default_threshold
    from openfrt.gallery.matching import TemplateMatrix
    from openfrt.vision import FaceEngine

    engine = FaceEngine(engine_config())
    rows = [(image.stem, engine.largest_face_template(image)[1]) for image in images or [SHARED / "faces" / "samples" / "biden.jpg"]]
    model_id = engine.embedder.model_id
    return TemplateMatrix(model_id, rows), default_threshold(model_id, engine.embedder.default_threshold), model_id


def single_camera(video: Path) -> None:
    """(Child process) the pipeline in this process alone; prints its CPU time and frames."""
    from openfrt.live.pipeline import CameraPipeline
    from openfrt.live.source_policy import SourcePolicy
    from openfrt.live.sources import open_source
    from openfrt.vision import FaceEngine

    matcher, threshold, model_id = watchlist([])
    engine = FaceEngine(engine_config())
    sink = BenchSink(matcher, threshold, model_id, ["camera"])
    started = time.process_time()
    stats = CameraPipeline("camera", open_source(str(video), policy=SourcePolicy(video.parent)), engine, sink).run()
    print(json.dumps({"cpu": time.process_time() - started, "frames": stats.frames, "faces": sink.faces}))


def process_cpu(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` (those still alive)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def group_pids(groups: set[int]) -> list[int]:
    """Processes in the given process groups (a local node's daemons)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) in groups:
                pids.append(int(entry.name))
    return pids


def run_actor(video: Path, sink: BenchSink, settings: Any, daemons: list[int], idle_seconds: float = 0.0) -> dict[str, float]:
    """One camera actor on ``video`` into ``sink``: CPU of the actor, the driver and the daemons
    (and, over ``idle_seconds`` first, the daemons' CPU rate with nothing running)."""
    from openfrt.cluster.cameras import ClusterCameras, ClusterRunner
    from openfrt.live.source_policy import SourcePolicy

    opened = ClusterCameras(settings, engine_config(), SourcePolicy(video.parent)).open({"camera": str(video)})
    runner = ClusterRunner(sink, opened)
    idle = process_cpu(daemons)
    time.sleep(idle_seconds)
    idle_rate = (process_cpu(daemons) - idle) / idle_seconds if idle_seconds else 0.0
    driver, ray_daemons, wall = time.process_time(), process_cpu(daemons), time.perf_counter()
    runner.run()
    wall = time.perf_counter() - wall
    return {"actor": runner.cpu_seconds()["camera"], "driver": time.process_time() - driver,
            "daemons": process_cpu(daemons) - ray_daemons - idle_rate * wall, "idle_rate": idle_rate, "wall": wall,
            "frames": runner.stats()["camera"].frames}


def cameras_table(cluster: Any, args: argparse.Namespace) -> Table:
    from openfrt.cluster.settings import ClusterSettings

    settings = ClusterSettings(address=cluster.address, camera_cpus=1)
    daemons = group_pids({node.process_group for node in cluster.nodes})
    matcher, threshold, model_id = watchlist([])
    plain, actor = [], []
    for _ in range(args.repeat):
        child = subprocess.run([sys.executable, __file__, "--single-camera", str(args.video)], capture_output=True, text=True, check=True)
        plain.append(json.loads(child.stdout.splitlines()[-1]))
        actor.append(run_actor(args.video, BenchSink(matcher, threshold, model_id, ["camera"]), settings, daemons, idle_seconds=5.0))
    per_frame = {
        "plain process": [run["cpu"] / run["frames"] for run in plain],
        "actor process": [run["actor"] / run["frames"] for run in actor],
        "driver (polls, storing)": [run["driver"] / run["frames"] for run in actor],
        "Ray daemons (raylets, GCS), above idle": [run["daemons"] / run["frames"] for run in actor],
    }
    base = statistics.median(per_frame["plain process"])
    table = Table(title=f"camera CPU on {args.video.name} ({plain[0]['frames']} frames), default pipeline, 1 thread; "
                        f"medians of {args.repeat} alternating runs; load average {os.getloadavg()[0]:.1f}")
    for column in ("where", "CPU ms / frame", "vs plain process", "runs (ms / frame)"):
        table.add_column(column, justify="right")
    for name, values in per_frame.items():
        median = statistics.median(values)
        ratio = f"{median / base:.3f}" if name != "plain process" else "1"
        table.add_row(name, f"{median * 1e3:.1f}", ratio, ", ".join(f"{v * 1e3:.1f}" for v in values))
    overhead = [a["actor"] / a["frames"] / (p["cpu"] / p["frames"]) - 1 for a, p in zip(actor, plain)]
    everything = [(a["actor"] + a["driver"] + a["daemons"]) / a["frames"] / (p["cpu"] / p["frames"]) - 1 for a, p in zip(actor, plain)]
    table.caption = (f"actor overhead (actor CPU / plain CPU - 1, pair by pair): median {100 * statistics.median(overhead):+.1f}% "
                     f"({', '.join(f'{100 * o:+.1f}%' for o in overhead)}); with the driver and Ray's daemons: "
                     f"{100 * statistics.median(everything):+.1f}%; the daemons of the 3 idle nodes used "
                     f"{statistics.median(run['idle_rate'] for run in actor) * 100:.1f}% of a core. At 1080p25, one core holds "
                     f"{1 / (base * 25):.2f} cameras in a plain process and {1 / (statistics.median(per_frame['actor process']) * 25):.2f} as actors")
    return table


def latency_table(cluster: Any, args: argparse.Namespace, work: Path) -> Table:
    from openfrt.cluster.settings import ClusterSettings
    from openfrt.live.walkthrough import one_after_another

    people = sorted(LFW.glob("*/*_0001.jpg"))[: args.passers]
    matcher, threshold, model_id = watchlist(people)
    video = one_after_another(work / "passers.avi", people, seconds_each=1.5, pause=0.3)
    sink = BenchSink(matcher, threshold, model_id, ["camera"])
    settings = ClusterSettings(address=cluster.address, camera_cpus=1)
    run_actor(video, sink, settings, [])
    delays = np.array(sink.delays) * 1e3
    table = Table(title=f"alert latency, camera actor -> driver: {len(people)} watchlisted passers, {len(delays)} alerts")
    for column in ("p50 ms", "p95 ms", "max ms"):
        table.add_column(column, justify="right")
    table.add_row(f"{np.percentile(delays, 50):.1f}", f"{np.percentile(delays, 95):.1f}", f"{delays.max():.1f}")
    return table


def search_table(args: argparse.Namespace, work: Path) -> tuple[Table, list[str]]:
    import faiss

    from openfrt.cluster.sealing import Seal
    from openfrt.cluster.shards import ShardedIndex
    from openfrt.evaluation.synthetic import PROFILES, Generator, make_dataset
    from openfrt.gallery.index import ApproximateIndex, ExactIndex

    table = Table(title=f"sharded search, dlib profile (128-d), {args.queries} queries, k=10, one query per call; "
                        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for column in ("templates", "index", "build s", "p50 ms", "p99 ms", "RSS per shard MB (peak)", "top-1 vs exact %", "top-1 vs single approx %"):
        table.add_column(column, justify="right")
    notes = []
    empty = ShardedIndex(work / "idx-empty", 128, Seal().key, 1, cpus=0.5)
    baseline = empty.memory()[0]["rss"] / 2**20  # a shard process holding no template
    empty.close()
    for size in (parse_size(text) for text in args.sizes.split(",")):
        data = make_dataset(Generator(PROFILES["dlib"], args.seed), size, args.queries)
        faiss.omp_set_num_threads(2)
        exact = ExactIndex(128)
        exact.add(data.ids, data.gallery)
        truth = exact.search(data.queries, 10)[1][:, 0]
        del exact
        faiss.omp_set_num_threads(1)  # as a shard actor of 0.5-1 CPU builds
        single = ApproximateIndex(128)
        built = build(single, data)
        times = one_at_a_time(single, data.queries[: args.latency_queries])
        reference = single.search(data.queries, 10)[1][:, 0]
        table.add_row(f"{size:,}", f"single ({single.describe()})", f"{built:.1f}", f"{np.median(times):.2f}",
                      f"{np.percentile(times, 99):.2f}", "-", f"{100 * np.mean(reference == truth):.2f}", "100")
        del single
        gc.collect()
        for shards in (int(text) for text in args.shards.split(",")):
            index = ShardedIndex(work / f"idx-{size}-{shards}", 128, Seal().key, shards, cpus=0.5)
            built = build(index, data)
            times = one_at_a_time(index, data.queries[: args.latency_queries])
            top1 = index.search(data.queries, 10)[1][:, 0]
            gc.collect()
            memory = index.memory()
            rss = [shard["rss"] / 2**20 for shard in memory]
            peak = [shard["peak_rss"] / 2**20 for shard in memory]
            table.add_row(f"{size:,}", f"{shards} shard{'s' * (shards > 1)}", f"{built:.1f}", f"{np.median(times):.2f}",
                          f"{np.percentile(times, 99):.2f}", f"{statistics.mean(rss):.0f} ({statistics.mean(peak):.0f})",
                          f"{100 * np.mean(top1 == truth):.2f}", f"{100 * np.mean(top1 == reference):.2f}")
            if shards == min(int(text) for text in args.shards.split(",")):  # the most templates per shard
                notes.append(projection(size, shards, rss, baseline, float(np.median(times))))
            index.close()
            del index
            gc.collect()
        del data
        gc.collect()
    return table, notes


def projection(size: int, shards: int, rss_mb: list[float], process_mb: float, p50_ms: float, target: int = 100_000_000) -> str:
    """100M templates, from a measurement of ``size`` templates in ``shards`` shards whose empty
    process holds ``process_mb``."""
    per_shard = size / shards
    bytes_per_template = max((statistics.mean(rss_mb) - process_mb) * 2**20 / per_shard, 1.0)
    total_gb = bytes_per_template * target / 2**30
    shards_at_8m = -(-target // 8_000_000)
    return (f"100M projection from {size:,} in {shards} shards: {bytes_per_template:.0f} bytes per template in a shard's memory "
            f"(RSS {statistics.mean(rss_mb):.0f} MB - {process_mb:.0f} MB of an empty shard's process, / {per_shard:,.0f}) -> {total_gb:.0f} GB for 100M; "
            f"at 8M templates per shard ({bytes_per_template * 8e6 / 2**30:.1f} GB each) that is {shards_at_8m} shards, "
            f"whose code scans run in parallel: latency grows with a shard's size (here {p50_ms:.2f} ms at {per_shard:,.0f} per shard, "
            f"so ~{p50_ms * 8e6 / per_shard:.0f} ms at 8M if linear) plus the fan-out to {shards_at_8m} actors")


def build(index: Any, data: Any, batch: int = 100_000) -> float:
    """Seconds to add the gallery in batches, as an import from a custody system would."""
    started = time.perf_counter()
    for offset in range(0, len(data.ids), batch):
        index.add(data.ids[offset : offset + batch], data.gallery[offset : offset + batch])
    return time.perf_counter() - started


def one_at_a_time(index: Any, queries: np.ndarray) -> np.ndarray:
    index.search(queries[:1], 10)
    times = np.empty(len(queries))
    for i in range(len(queries)):
        started = time.perf_counter()
        index.search(queries[i : i + 1], 10)
        times[i] = time.perf_counter() - started
    return times * 1e3


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("km")) * scale)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--single-camera", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--passers", type=int, default=20)
    parser.add_argument("--sizes", default="1m")
    parser.add_argument("--shards", default="1,2,4")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--latency-queries", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-cameras", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    args = parser.parse_args()
    if args.single_camera:
        single_camera(args.single_camera)
        return

    from openfrt.cluster.local import LocalCluster
    from openfrt.cluster.settings import connect, disconnect

    console = Console(width=220)
    with tempfile.TemporaryDirectory(prefix="ofrt-bench-", dir="/tmp") as folder:
        work = Path(folder)
        cluster = LocalCluster(work / "ray", object_store_bytes=512 * 2**20)
        try:
            cluster.start_head(num_cpus=2)
            cluster.add_node("b", num_cpus=2)
            cluster.add_node("c", num_cpus=2)
            connect(cluster.address)
            if not args.skip_cameras:
                console.print(cameras_table(cluster, args))
                console.print(latency_table(cluster, args, work))
            if not args.skip_search:
                table, notes = search_table(args, work)
                console.print(table)
                for note in notes:
                    console.print(note)
        finally:
            disconnect()
            cluster.stop()


if __name__ == "__main__":
    main()
