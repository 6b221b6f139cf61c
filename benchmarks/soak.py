"""Soak: ``openfrt serve`` running one deployment on four cameras for a long time.

    python benchmarks/soak.py [--minutes 2] [--cameras 4] [--drop-every 30] [--outage 3]
                              [--sample 5] [--warm-up 30] [--database-url URL] [--raw FILE] [--keep]

CI-sized by default (two minutes); ``--minutes 60 --drop-every 180`` for the README's figure.

Each camera is a looped video served as a live MPEG-TS stream over HTTP by its own ``ffmpeg``
(``-stream_loop -1 -re``: real time, forever); the last camera's ffmpeg is killed every
``--drop-every`` seconds and started again ``--outage`` seconds later, so its stream drops and
the server must reconnect (and record a gap) each time. The video (made here from
``../shared/faces/lfw``) shows, every five seconds, a watchlisted person (enrolled from the very
image shown) and a passer-by for 1.5 s, then nobody: each camera raises an alert and scans two
faces per cycle. A fresh data directory (SQLite, or a new database on ``--database-url``'s
PostgreSQL server) holds the watchlist and an authorising officer's API token.

Sampled every ``--sample`` seconds, from ``/proc`` of the server process and its API:

* resident memory (RSS), open file descriptors and threads: after ``--warm-up`` seconds they
  must stay flat — the summary compares the first and the last third of the run after the
  warm-up (RSS medians and its least-squares slope in MB per hour; file and thread maxima);
* each camera's frames per second over each interval (from the deployment's live status): the
  summary gives the median over the first and the last third and their ratio;
* alerts: every alert the deployment stored (listed through the API at the end) must have
  reached the server-sent event stream exactly once;
* reconnects: each drop of the dropping camera must show as one gap of that camera; the other
  cameras must need none.

Exits 1 when an alert is missed or repeated, a drop is not recorded as a gap, a steady camera
needed reconnecting, a camera stopped, or threads or file descriptors grew after the warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import cv2
import httpx
import numpy as np
from api import fresh_database, serve  # benchmarks/api.py: a new PostgreSQL database; the server, stopped cleanly
from rich.console import Console
from rich.table import Table

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
LFW = SHARED / "faces" / "lfw"
WATCHLISTED = LFW / "Colin_Powell" / "Colin_Powell_0001.jpg"
PASSER_BY = LFW / "Serena_Williams" / "Serena_Williams_0001.jpg"
DEPLOYMENT = "soak"
FPS = 10
CYCLE_SECONDS, VISIBLE_SECONDS = 5.0, 1.5

console = Console()


# -- the cameras ------------------------------------------------------------------------------------


def make_clip(path: Path, seconds: float) -> Path:
    """A 640x360 video at :data:`FPS`: the watchlisted face and a passer-by in view for
    :data:`VISIBLE_SECONDS` of every :data:`CYCLE_SECONDS`, drifting a little; nobody otherwise."""
    crops = [cv2.cvtColor(cv2.resize(cv2.imread(str(face)), (150, 150)), cv2.COLOR_BGR2RGB) for face in (WATCHLISTED, PASSER_BY)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt, stream.bit_rate = 640, 360, "yuv420p", 2_000_000
        stream.gop_size = FPS  # a key frame every second, so a reconnecting reader starts soon
        for index in range(int(seconds * FPS)):
            rgb = np.full((360, 640, 3), 80, np.uint8)
            if (index / FPS) % CYCLE_SECONDS < VISIBLE_SECONDS:
                for column, crop in enumerate(crops):
                    x = 70 + 320 * column + (index % 20)
                    rgb[100:250, x : x + 150] = crop
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))
    return path


@dataclass
class Camera:
    """One ffmpeg serving the looped clip as a live HTTP stream to one client at a time. It
    re-encodes (cheap at 640x360): copying the stream restarts its timestamps at every loop,
    which stalls a reader as a broken camera would."""

    name: str
    clip: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.name}.ts"

    def start(self) -> None:
        command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(self.clip),
                   "-c:v", "mpeg4", "-q:v", "4", "-g", str(FPS), "-f", "mpegts", "-listen", "1", self.url]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


# -- the server and its data --------------------------------------------------------------------------


def prepare(cameras: list[Camera]) -> str:
    """In ``OPENFRT_HOME``: an authorising officer and their API token, a watchlist holding the
    watchlisted face, and the authorised deployment on the cameras; returns the token."""
    from openfrt.gallery import Gallery, ImageToEnrol, SubjectInfo
    from openfrt.live.deployments import DeploymentService
    from openfrt.records import Category, RecordStore
    from openfrt.records.users import Role, UserService
    from openfrt.vision import EngineConfig, FaceEngine

    with RecordStore.open() as store:
        users = UserService(store)
        users.create("soak-officer", Role.authorising_officer, uuid.uuid4().hex, actor="benchmark")
        users.create("soak-authoriser", Role.authorising_officer, uuid.uuid4().hex, actor="benchmark")
        _, token = users.create_token("soak-officer", "soak benchmark", actor="soak-officer")
        gallery = Gallery(store, FaceEngine(EngineConfig.from_env()))
        gallery.create_watchlist("soak", purpose="soak benchmark", authorised_by="Supt Bench", actor="soak-officer")
        enrolled = gallery.enrol(SubjectInfo("S1", "Colin Powell", Category.wanted), [ImageToEnrol(WATCHLISTED, "reference")],
                                 actor="soak-officer", watchlist="soak")
        if not enrolled.enrolled:
            raise RuntimeError(f"could not enrol {WATCHLISTED}: {enrolled.as_dict()}")
        service = DeploymentService(store)
        service.create(DEPLOYMENT, purpose="soak benchmark", location="localhost", watchlist="soak", actor="soak-officer",
                       cameras={camera.name: camera.url for camera in cameras})
        service.authorise(DEPLOYMENT, actor="soak-authoriser")  # never the planner
    return token


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- what is watched --------------------------------------------------------------------------------


@dataclass
class Sample:
    seconds: float
    rss_mb: float
    fds: int
    threads: int
    frames: dict[str, int]
    alerts: int


@dataclass
class EventStream:
    """The server-sent event stream, as a console receives it: alert ids and how often each came."""

    received: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    stopped: threading.Event = field(default_factory=threading.Event)

    def listen(self, base: str, headers: dict[str, str]) -> None:
        try:
            with httpx.Client(base_url=base, headers=headers, timeout=httpx.Timeout(10, read=None)) as client, \
                    client.stream("GET", "/api/alerts/stream") as response:
                self.connected.set()
                for line in response.iter_lines():
                    if self.stopped.is_set():
                        return
                    if line.startswith("data:"):
                        event = json.loads(line[5:])
                        if event.get("event") == "alert":
                            self.received[event["id"]] += 1
                        elif event.get("event") == "resync":
                            self.errors.append("the stream fell behind and was told to resynchronise")
        except Exception as exc:  # noqa: BLE001 - reported in the summary
            if not self.stopped.is_set():
                self.errors.append(f"{type(exc).__name__}: {exc}")


def sample(pid: int, base: str, headers: dict[str, str], started: float) -> Sample:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    live = httpx.get(f"{base}/api/deployments/{DEPLOYMENT}", headers=headers, timeout=30).json().get("live") or []
    return Sample(
        seconds=time.monotonic() - started,
        rss_mb=int(status["VmRSS"].split()[0]) / 1024,
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        threads=int(status["Threads"]),
        frames={camera["camera"]: camera["frames"] for camera in live},
        alerts=sum(camera["alerts"] for camera in live),
    )


def all_alert_ids(base: str, headers: dict[str, str]) -> list[int]:
    ids: list[int] = []
    while True:
        page = httpx.get(f"{base}/api/alerts", params={"deployment": DEPLOYMENT, "after": ids[-1] if ids else 0, "limit": 1000},
                         headers=headers, timeout=60).json()
        if not page:
            return ids
        ids += [alert["id"] for alert in page]


def gaps_per_camera() -> dict[str, int]:
    from sqlalchemy import func, select

    from openfrt.records import RecordStore
    from openfrt.records.models import Deployment, DeploymentGap

    with RecordStore.open() as store, store.transaction() as session:
        rows = session.execute(
            select(DeploymentGap.camera, func.count()).join(Deployment, Deployment.id == DeploymentGap.deployment_id)
            .where(Deployment.name == DEPLOYMENT).group_by(DeploymentGap.camera)
        ).all()
    return {camera: count for camera, count in rows}


# -- the run ----------------------------------------------------------------------------------------


def run(args: argparse.Namespace, work: Path, database: str | None) -> dict[str, Any]:
    home = work / "home"
    env = {**os.environ, "OPENFRT_HOME": str(home), "ORT_DISABLE_TELEMETRY": "1"}
    env.pop("OPENFRT_KEY_FILE", None)
    if database:
        env["OPENFRT_DATABASE_URL"] = database
    else:
        env.pop("OPENFRT_DATABASE_URL", None)
    os.environ.update({key: value for key, value in env.items() if key.startswith("OPENFRT_")})
    if not database:
        os.environ.pop("OPENFRT_DATABASE_URL", None)
    clip = make_clip(work / "clip.mp4", 4 * CYCLE_SECONDS)
    cameras = [Camera(f"cam{number}", clip, free_port()) for number in range(1, args.cameras + 1)]
    dropping = cameras[-1]
    token = prepare(cameras)
    headers = {"Authorization": f"Bearer {token}"}
    for camera in cameras:
        camera.start()
    stream = EventStream()
    samples: list[Sample] = []
    drops = 0
    try:
        with serve(env, work / "server.log") as running_server:
            server, base = running_server.process, running_server.base_url
            listener = threading.Thread(target=stream.listen, args=(base, headers), daemon=True)
            listener.start()
            if not stream.connected.wait(30):
                raise RuntimeError("the event stream did not connect")
            started_answer = httpx.post(f"{base}/api/deployments/{DEPLOYMENT}/start", headers=headers, timeout=120)
            started_answer.raise_for_status()
            started = time.monotonic()
            end = started + args.minutes * 60
            next_drop = started + args.drop_every
            next_sample = started
            while time.monotonic() < end:
                now = time.monotonic()
                if now >= next_drop:
                    dropping.stop()
                    time.sleep(args.outage)
                    dropping.start()
                    drops += 1
                    next_drop += args.drop_every
                for camera in cameras:
                    if not camera.alive():  # a steady camera's ffmpeg ends if its reader went away
                        camera.restarts += camera is not dropping
                        camera.start()
                if now >= next_sample:
                    samples.append(sample(server.pid, base, headers, started))
                    if args.raw:
                        with open(args.raw, "a") as raw:
                            raw.write(json.dumps(samples[-1].__dict__) + "\n")
                    console.print(f"{samples[-1].seconds:7.0f} s  RSS {samples[-1].rss_mb:7.1f} MB  fds {samples[-1].fds:4d}  "
                                  f"threads {samples[-1].threads:3d}  alerts {samples[-1].alerts}", highlight=False)
                    next_sample += args.sample
                time.sleep(0.2)
            record = httpx.post(f"{base}/api/deployments/{DEPLOYMENT}/stop", json={"reason": "the soak is over"}, headers=headers, timeout=120).json()
            time.sleep(2 * 0.2 + 1.0)  # the feed polls every 0.2 s: let the last alerts reach the stream
            alert_ids = all_alert_ids(base, headers)
            stream.stopped.set()
    finally:
        for camera in cameras:
            camera.stop()
    return {"samples": samples, "record": record, "alert_ids": alert_ids, "stream": stream, "drops": drops,
            "gaps": gaps_per_camera(), "cameras": cameras, "dropping": dropping.name}


# -- the report -------------------------------------------------------------------------------------


def report(args: argparse.Namespace, result: dict[str, Any]) -> bool:
    samples: list[Sample] = result["samples"]
    steady = [s for s in samples if s.seconds >= args.warm_up] or samples
    third = max(2, len(steady) // 3)
    first, last = steady[:third], steady[-third:]
    hours = [(s.seconds - steady[0].seconds) / 3600 for s in steady]
    slope = float(np.polyfit(hours, [s.rss_mb for s in steady], 1)[0]) if len(steady) > 2 else 0.0

    series = Table("time", "RSS (MB)", "open files", "threads", *[f"{c.name} fps" for c in result["cameras"]], "alerts",
                   title=f"openfrt serve, {args.cameras} cameras, {args.minutes:g} min (every ~{max(1, len(samples) // 12)}th sample)")
    for previous, current in zip(samples, samples[1:]):
        if (samples.index(current) % max(1, len(samples) // 12)) and current is not samples[-1]:
            continue
        interval = current.seconds - previous.seconds
        fps = [f"{(current.frames.get(c.name, 0) - previous.frames.get(c.name, 0)) / interval:.1f}" for c in result["cameras"]]
        series.add_row(f"{current.seconds / 60:.1f} min", f"{current.rss_mb:.0f}", str(current.fds), str(current.threads), *fps,
                       str(current.alerts))
    console.print(series)

    def fps_of(name: str, window: list[Sample]) -> float:
        rates = [(b.frames.get(name, 0) - a.frames.get(name, 0)) / (b.seconds - a.seconds) for a, b in zip(window, window[1:])]
        return statistics.median(rates) if rates else 0.0

    summary = Table("measure", "first third", "last third", "change",
                    title=f"Soak summary (after the {args.warm_up:g} s warm-up; medians, or maxima for files and threads)")
    summary.add_row("resident memory (MB)", f"{statistics.median(s.rss_mb for s in first):.0f}",
                    f"{statistics.median(s.rss_mb for s in last):.0f}",
                    f"{statistics.median(s.rss_mb for s in last) - statistics.median(s.rss_mb for s in first):+.0f} MB "
                    f"({slope:+.0f} MB/h fitted)")
    fds = (max(s.fds for s in first), max(s.fds for s in last))
    threads = (max(s.threads for s in first), max(s.threads for s in last))
    summary.add_row("open file descriptors", str(fds[0]), str(fds[1]), f"{fds[1] - fds[0]:+d}")
    summary.add_row("threads", str(threads[0]), str(threads[1]), f"{threads[1] - threads[0]:+d}")
    stopped = []
    for camera in result["cameras"]:
        before, after = fps_of(camera.name, first), fps_of(camera.name, last)
        stopped += [camera.name] if after == 0 else []
        dropping_note = " (drops)" if camera.name == result["dropping"] else ""
        summary.add_row(f"{camera.name} fps{dropping_note}", f"{before:.1f}", f"{after:.1f}", f"x{after / before:.2f}" if before else "-")
    received: Counter[int] = result["stream"].received
    stored = result["alert_ids"]
    missed = sorted(set(stored) - set(received))
    repeated = sorted(alert for alert, count in received.items() if count > 1)
    summary.add_row("alerts stored / delivered over SSE", str(len(stored)), str(sum(received.values())),
                    f"{len(missed)} missed, {len(repeated)} repeated")
    gaps = result["gaps"]
    dropping = result["dropping"]
    unplanned = {name: count for name, count in gaps.items() if name != dropping}
    summary.add_row(f"{dropping} drops / gaps recorded", str(result["drops"]), str(gaps.get(dropping, 0)),
                    f"steady cameras' gaps: {sum(unplanned.values())}")
    record = result["record"]
    summary.add_row("record", f"faces scanned {record['faces_scanned']}", f"alerts {record['alerts']}",
                    f"frames dropped {record['frames_dropped']}, gaps {record['gaps']}")
    console.print(summary)
    problems = []
    if missed or repeated or result["stream"].errors:
        problems.append(f"alerts missed {missed[:10]}, repeated {repeated[:10]}, stream errors {result['stream'].errors}")
    if gaps.get(dropping, 0) != result["drops"] or unplanned:
        problems.append(f"{result['drops']} drops but gaps {gaps}")
    if stopped:
        problems.append(f"cameras stopped: {stopped}")
    if threads[1] > threads[0] + 4 or fds[1] > fds[0] + 4:  # a reconnect's decoder threads come and go
        problems.append(f"threads {threads} or file descriptors {fds} grew")
    for problem in problems:
        console.print(f"[red]problem:[/red] {problem}")
    return not problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--drop-every", type=float, default=30.0, help="seconds between drops of the last camera's stream")
    parser.add_argument("--outage", type=float, default=3.0, help="seconds each drop lasts")
    parser.add_argument("--sample", type=float, default=5.0)
    parser.add_argument("--warm-up", type=float, default=30.0, help="seconds before memory, files and threads must stay flat")
    parser.add_argument("--database-url", help="a PostgreSQL server (its role needs CREATEDB), instead of SQLite")
    parser.add_argument("--raw", help="append each sample as a JSON line to this file")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (data, server log)")
    args = parser.parse_args()
    if not WATCHLISTED.exists():
        console.print(f"needs {LFW} (the shared test data beside the project)")
        return 2
    work = Path(tempfile.mkdtemp(prefix="openfrt-soak-"))
    console.print(f"working in {work}; load average {os.getloadavg()[0]:.1f}")
    try:
        with fresh_database(args.database_url) as database:
            result = run(args, work, database)
            ok = report(args, result)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    console.print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
