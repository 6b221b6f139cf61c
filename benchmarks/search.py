"""Measure the reference index on synthetic custody galleries of 10k to 10M templates.

The galleries are synthetic but shaped like a real model's (``openfrt.evaluation.synthetic``:
``dlib``, or ``sface`` fitted by benchmarks/fit_profile.py), and streamed in chunks, so that the
process holds the index and one chunk, never a second copy of the gallery. For each size:

* **build**: templates added 100k at a time (cold start, training and retraining as it grows),
  time, resident memory added, and the process's peak RSS so far;
* **search**: single queries one at a time (p50/p99) on one FAISS thread and on two, batched
  throughput on two, and top-1 agreement with exact search: on the template (overall, mated,
  non-mated), and on the person (another image of the exact top-1's person is the same lead to
  an investigator), and how many person disagreements could change an investigator's list: those
  whose exact top-1 scores at or above the similarity that 99% of mated queries' exact top-1
  reach (below it, a search names nobody at any threshold that keeps 99% of true mates,
  whichever candidate is top); exact
  search is brute force over the index's own stored vectors in chunks (the same computation as
  ``ExactIndex``, without a second copy), timed one query at a time on a few queries;
* **memory traffic**: codes a query reads (FAISS's IVF statistics over all the queries, times
  the code size) against what one core reads from memory per second, measured right after the
  queries were timed (a one-thread sum over 1 GiB, best of 5; and two threads): a query cannot
  be faster than reading its codes;
* **files and updates** (``--updates``), through ``ReferenceIndexes`` on a real records store
  and its cipher: writing the snapshot (what a compaction costs), single-template adds and
  removals (journal appends), loading the snapshot and replaying the journal;
* **enrolment** (``--enrol N``): N real LFW images enrolled through the gallery (detection,
  embedding, duplicate check, database, index), images per second into an empty index and
  into the one holding the synthetic gallery. The database holds only the enrolled images:
  the synthetic templates are in the index alone (ids above 2^40, clear of database ids).

    python benchmarks/search.py --sizes 1m,10m --updates --enrol 100
    python benchmarks/search.py --sizes 100k --profile sface
    python benchmarks/search.py --sizes 1m --profile sface --probe-fractions 0.5,0.75,1
"""

from __future__ import annotations

import argparse
import csv
import gc
import os
import resource
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from openfrt.evaluation.synthetic import PROFILES, Generator, StreamedGallery
from openfrt.gallery import Gallery, ImageToEnrol, SubjectInfo
from openfrt.gallery.index import ApproximateIndex, TemplateIndex
from openfrt.gallery.reference_index import IdDigest, ReferenceIndexes, _OpenIndex
from openfrt.records import RecordStore
from openfrt.records.vocabulary import Category
from openfrt.vision import EngineConfig, FaceEngine
from openfrt.vision.types import cosine_to_similarity

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
#: Synthetic template ids start here, clear of the database's own.
ID_BASE = 1 << 40
EXACT_CHUNK = 1_000_000


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Result:
    size: int
    detail: str = ""
    numbers: dict[str, float] = field(default_factory=dict)
    top1: dict[str, np.ndarray] = field(default_factory=dict)
    #: Share of lists scanned -> (p50 ms on one thread, top-1 agreement %, mated %, non-mated %, same person %,
    #: person disagreements above the mated 1%).
    sweep: dict[float, tuple[float, float, float, float, float, int]] = field(default_factory=dict)


def build(gallery: StreamedGallery, batch: int) -> tuple[ApproximateIndex, float]:
    """The approximate index of ``gallery`` (default, automatic settings) and its build time."""
    index = ApproximateIndex(gallery.generator.profile.dim)
    seconds = 0.0
    for ids, vectors in track(gallery.chunks(), total=-(-len(gallery) // gallery.chunk), description=f"building {len(gallery):,}"):
        start = time.perf_counter()
        for offset in range(0, len(ids), batch):
            index.add(ids[offset : offset + batch] + ID_BASE, vectors[offset : offset + batch])
        seconds += time.perf_counter() - start
    return index, seconds


def read_rate(threads: int, repeats: int = 5) -> float:
    """GB/s that ``threads`` threads read from memory (a sum over 1 GiB split between them), the
    best of ``repeats``: the most the machine gave, so a bound on what a scan can read."""
    data = np.ones(2**28, dtype=np.float32)
    parts = np.array_split(data, threads)
    rates = []
    for _ in range(repeats):
        workers = [threading.Thread(target=part.sum) for part in parts]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        rates.append(data.nbytes / (time.perf_counter() - start) / 1e9)
    return max(rates)


def codes_read_per_query(index: ApproximateIndex, queries: np.ndarray, k: int) -> float:
    """Bytes of codes one query reads, on average over ``queries`` (FAISS counts the codes scanned)."""
    faiss.cvar.indexIVF_stats.reset()
    index.search(queries, k)
    stats = faiss.cvar.indexIVF_stats
    return stats.ndis / max(stats.nq, 1) * index.code_size


def exact_top1(index: ApproximateIndex, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Exact top-1 ids and similarities by brute force over the index's stored vectors in 1M
    chunks (2 threads), and the seconds it took per query."""
    faiss.omp_set_num_threads(2)
    vectors, row_ids = index._vectors[: len(index)], index._row_ids[: len(index)]
    best = np.full(len(queries), -np.inf, dtype=np.float32)
    top = np.full(len(queries), -1, dtype=np.int64)
    start = time.perf_counter()
    for offset in range(0, len(vectors), EXACT_CHUNK):
        scores, rows = faiss.knn(queries, vectors[offset : offset + EXACT_CHUNK], 1, faiss.METRIC_INNER_PRODUCT)
        better = scores[:, 0] > best
        best[better], top[better] = scores[better, 0], row_ids[rows[better, 0] + offset]
    return top, cosine_to_similarity(best), (time.perf_counter() - start) / len(queries)


def exact_latency_ms(index: ApproximateIndex, queries: np.ndarray) -> np.ndarray:
    """One query at a time, one thread, brute force over every stored vector."""
    faiss.omp_set_num_threads(1)
    vectors = index._vectors[: len(index)]
    times = []
    for query in queries:
        start = time.perf_counter()
        faiss.knn(query[None, :], vectors, 10, faiss.METRIC_INNER_PRODUCT)
        times.append(time.perf_counter() - start)
    return np.array(times) * 1e3


def latency_ms(index: TemplateIndex, queries: np.ndarray, k: int, threads: int) -> np.ndarray:
    faiss.omp_set_num_threads(threads)
    index.search(queries[:1], k)
    times = np.empty(len(queries))
    for i in range(len(queries)):
        start = time.perf_counter()
        index.search(queries[i : i + 1], k)
        times[i] = time.perf_counter() - start
    return times * 1e3


def throughput(index: TemplateIndex, queries: np.ndarray, k: int, batch: int = 256) -> tuple[float, np.ndarray]:
    faiss.omp_set_num_threads(2)
    top1 = np.empty(len(queries), dtype=np.int64)
    start = time.perf_counter()
    for offset in range(0, len(queries), batch):
        top1[offset : offset + batch] = index.search(queries[offset : offset + batch], k)[1][:, 0]
    return len(queries) / (time.perf_counter() - start), top1


def lfw_images(count: int, skip: int) -> list[Path]:
    """First images of ``count`` LFW identities after the first ``skip``."""
    seen: dict[str, str] = {}
    with open(SHARED / "faces" / "lfw" / "labels.csv", newline="") as stream:
        for row in csv.DictReader(stream):
            seen.setdefault(row["identity"], row["file"])
    return [SHARED / "faces" / "lfw" / file for file in list(seen.values())[skip : skip + count]]


def enrol_rate(gallery: Gallery, images: list[Path], prefix: str) -> tuple[float, int]:
    """Images per second enrolled one subject (one image) at a time, as officers enrol, and how
    many were enrolled (an image without a face is refused, and counts in the time)."""
    start, enrolled = time.perf_counter(), 0
    for number, path in enumerate(images):
        report = gallery.enrol(SubjectInfo(f"{prefix}-{number}", path.stem, Category.wanted),
                               [ImageToEnrol(path, path.name)], actor="benchmark")
        enrolled += report.enrolled
    return enrolled / (time.perf_counter() - start), enrolled


def updates(store: RecordStore, model_id: str, index: ApproximateIndex, generator: Generator, result: Result, count: int) -> ReferenceIndexes:
    """Snapshot and journaled single adds and removals through ReferenceIndexes (then closed)."""
    indexes = ReferenceIndexes(store)
    entry = _OpenIndex(index, IdDigest.of(index._ids))
    indexes._open[model_id] = entry
    start = time.perf_counter()
    indexes._save(model_id, entry)
    result.numbers["snapshot s"] = time.perf_counter() - start
    result.numbers["file GB"] = indexes.path(model_id).stat().st_size / 1e9
    fresh = generator.images(generator.centres(count))
    ids = ID_BASE * 2 + np.arange(count, dtype=np.int64)
    add_ms, remove_ms = np.empty(count), np.empty(count)
    for i in range(count):
        start = time.perf_counter()
        indexes.add(model_id, ids[i : i + 1], fresh[i : i + 1])
        add_ms[i] = time.perf_counter() - start
    for i in range(count):
        start = time.perf_counter()
        indexes.remove(model_id, ids[i : i + 1])
        remove_ms[i] = time.perf_counter() - start
    result.numbers["add ms"] = float(np.median(add_ms) * 1e3)
    result.numbers["remove ms"] = float(np.median(remove_ms) * 1e3)
    result.numbers["journal MB"] = indexes.journal_path(model_id).stat().st_size / 1e6
    indexes.close()
    return indexes


def load_and_replay(indexes: ReferenceIndexes, model_id: str, size: int, result: Result) -> None:
    """Load the snapshot and replay the journal (the caller holds no other copy of the index)."""
    gc.collect()
    manifest = indexes._read_manifest(model_id)
    assert manifest is not None
    start = time.perf_counter()
    loaded = indexes._load_files(model_id, manifest)
    result.numbers["load+replay s"] = time.perf_counter() - start
    assert loaded is not None and len(loaded.index) == size
    indexes._open[model_id] = loaded


def measure(size: int, args: argparse.Namespace, engine: FaceEngine | None, console: Console) -> Result:
    profile = PROFILES[args.profile]
    generator = Generator(profile, args.seed)
    gallery = StreamedGallery(generator, size, args.seed)
    result = Result(size)
    queries, mated = gallery.queries(args.queries)
    gc.collect()
    before = rss_bytes()
    faiss.omp_set_num_threads(2)
    index, result.numbers["build s"] = build(gallery, args.build_batch)
    gc.collect()
    result.numbers["RSS GB"] = (rss_bytes() - before) / 1e9
    result.numbers["bytes/template"] = (rss_bytes() - before) / size
    result.numbers["peak RSS GB"] = peak_rss_bytes() / 1e9
    result.detail = index.describe()
    reference, reference_scores, result.numbers["exact batched ms"] = exact_top1(index, queries)
    floor = float(np.percentile(reference_scores[mated], 1))  # 99% of true mates' top-1 score at least this
    reference_people = gallery.people(reference - ID_BASE)

    def agreement(top1: np.ndarray) -> tuple[float, float, float, float, int]:
        """Top-1 agreement % (templates: all, mated, non-mated; people), and person disagreements at or above ``floor``."""
        agree, person = top1 == reference, gallery.people(np.where(top1 >= 0, top1 - ID_BASE, -1)) == reference_people
        return (100 * agree.mean(), 100 * agree[mated].mean(), 100 * agree[~mated].mean(), 100 * person.mean(),
                int((~person & (reference_scores >= floor)).sum()))

    result.numbers["exact batched ms"] *= 1e3
    exact_ms = exact_latency_ms(index, queries[: args.exact_queries])
    result.numbers["exact p50 ms"] = float(np.median(exact_ms))
    for threads in (1, 2):
        times = latency_ms(index, queries[: args.latency_queries], args.k, threads)
        result.numbers[f"p50 ms {threads}t"], result.numbers[f"p99 ms {threads}t"] = float(np.median(times)), float(np.percentile(times, 99))
    result.numbers["codes MB/query"] = codes_read_per_query(index, queries, args.k) / 1e6
    result.numbers["read GB/s 1t"], result.numbers["read GB/s 2t"] = read_rate(1), read_rate(2)
    result.numbers["q/s"], top1 = throughput(index, queries, args.k)
    result.numbers.update(zip(("agree %", "mated %", "non-mated %", "person %", "decisive misses"), agreement(top1)))
    result.numbers["mated 1% floor"] = floor
    for fraction in args.probe_fractions:
        index.probe_fraction = fraction
        p50 = float(np.median(latency_ms(index, queries[: args.latency_queries], args.k, 1)))
        result.sweep[fraction] = (p50, *agreement(throughput(index, queries, args.k)[1]))
    index.probe_fraction = None
    console.print(f"[dim]{size:,}: {result.detail}, search done[/dim]")
    if args.updates or args.enrol:
        with tempfile.TemporaryDirectory(dir=args.work) as work, RecordStore.open(Path(work) / "records") as store:
            model_id = engine.embedder.model_id if engine else f"{args.profile}@synthetic"
            indexes = updates(store, model_id, index, generator, result, args.update_count)
            del index  # the only other reference: the load below must not sit beside a second copy
            load_and_replay(indexes, model_id, size, result)
            result.numbers["peak RSS after load GB"] = peak_rss_bytes() / 1e9
            if engine is not None and args.enrol:
                rate, enrolled = enrol_rate(Gallery(store, engine, indexes=indexes), lfw_images(args.enrol, args.enrol), "big")
                result.numbers["enrol img/s"] = rate
                assert len(indexes.index(model_id, profile.dim)) == size + enrolled, "an enrolment missed the index"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100k,1m", help="comma-separated gallery sizes, e.g. 100k,1m,10m")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="dlib")
    parser.add_argument("--queries", type=int, default=1_000, help="queries for agreement and throughput (half mated)")
    parser.add_argument("--latency-queries", type=int, default=500, help="queries timed one at a time")
    parser.add_argument("--exact-queries", type=int, default=20, help="queries timed one at a time by brute force")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--build-batch", type=int, default=100_000, help="templates per add() while building")
    parser.add_argument("--updates", action="store_true", help="measure snapshot, journaled add/remove and load")
    parser.add_argument("--update-count", type=int, default=200)
    parser.add_argument("--enrol", type=int, default=0, help="LFW images to enrol through the gallery (0: none)")
    parser.add_argument("--work", type=Path, default=None, help="directory for the records store and index files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe-fractions", type=lambda text: [float(n) for n in text.split(",") if n], default=[],
                        help="shares of lists to scan instead of the automatic one, comma-separated (p50 and agreement for each)")
    args = parser.parse_args()

    console = Console(width=220)
    engine = FaceEngine(EngineConfig.from_env()) if args.enrol else None
    baseline = None
    if engine is not None:
        with tempfile.TemporaryDirectory(dir=args.work) as work, RecordStore.open(Path(work) / "records") as store:
            baseline = enrol_rate(Gallery(store, engine), lfw_images(args.enrol, 0), "empty")[0]
        console.print(f"enrolment into an empty store and index: {baseline:.2f} images/s")
    results = []
    for size in (int(float(s.strip().lower().rstrip("km")) * {"k": 1e3, "m": 1e6}.get(s.strip().lower()[-1], 1)) for s in args.sizes.split(",")):
        results.append(measure(size, args, engine, console))
        gc.collect()
    report(results, args, baseline, console)


def report(results: list[Result], args: argparse.Namespace, baseline: float | None, console: Console) -> None:
    first = results[0]
    search = Table(title=f"Reference index search, {args.profile} profile, {args.queries:,} queries (half mated), k={args.k}")
    for column in ("templates", "index", "build s", "RSS GB", "MB per 1M", "peak RSS GB", "exact p50 ms", "p50 / p99 ms (1 thr)",
                   "p50 / p99 ms (2 thr)", "vs exact", f"p50 vs {first.size:,}", "q/s (2 thr, b256)", "top-1 agree %", "mated %", "non-mated %",
                   "same person %", "other person at or above the mated 1% (similarity)"):
        search.add_column(column, justify="right")
    for r in results:
        n = r.numbers
        search.add_row(
            f"{r.size:,}", r.detail, f"{n['build s']:.0f}", f"{n['RSS GB']:.2f}", f"{n['bytes/template']:.0f}", f"{n['peak RSS GB']:.2f}",
            f"{n['exact p50 ms']:.1f}", f"{n['p50 ms 1t']:.2f} / {n['p99 ms 1t']:.2f}", f"{n['p50 ms 2t']:.2f} / {n['p99 ms 2t']:.2f}",
            f"{n['exact p50 ms'] / n['p50 ms 1t']:.0f}x faster", f"{n['p50 ms 1t'] / first.numbers['p50 ms 1t']:.2f}x",
            f"{n['q/s']:,.0f}", f"{n['agree %']:.2f}", f"{n['mated %']:.2f}", f"{n['non-mated %']:.2f}",
            f"{n['person %']:.2f}", f"{n['decisive misses']:.0f} ({n['mated 1% floor']:.3f})",
        )
    console.print(search)
    traffic = Table(title="Memory traffic of one query (automatic share) against what the machine reads, measured after the queries")
    for column in ("templates", "codes read MB", "read at p50 GB/s (1 thr)", "memory read GB/s: 1 / 2 thr (best of 5)",
                   "p50 vs reading the codes alone (1 thr)", "reading them alone ms: 1 / 2 thr"):
        traffic.add_column(column, justify="right")
    for r in results:
        n = r.numbers
        read = n["codes MB/query"] / 1e3  # GB
        alone = read / n["read GB/s 1t"] * 1e3, read / n["read GB/s 2t"] * 1e3
        traffic.add_row(f"{r.size:,}", f"{n['codes MB/query']:.1f}", f"{read / (n['p50 ms 1t'] / 1e3):.1f}",
                        f"{n['read GB/s 1t']:.1f} / {n['read GB/s 2t']:.1f}", f"{n['p50 ms 1t'] / alone[0]:.2f}x",
                        f"{alone[0]:.1f} / {alone[1]:.1f}")
    console.print(traffic)
    if first.sweep:
        sweep = Table(title="Share of lists scanned, set by hand (the same index and queries)")
        for column in ("templates", "index", "share scanned", "p50 ms (1 thr)", "top-1 agree %", "mated %", "non-mated %",
                       "same person %", "other person at or above the mated 1%"):
            sweep.add_column(column, justify="right")
        for r in results:
            for fraction, (p50, agree, mated, non_mated, person, misses) in r.sweep.items():
                sweep.add_row(f"{r.size:,}", r.detail.split(" nprobe")[0], f"{fraction:g}", f"{p50:.2f}", f"{agree:.2f}", f"{mated:.2f}",
                              f"{non_mated:.2f}", f"{person:.2f}", str(misses))
        console.print(sweep)
    if "add ms" in first.numbers:
        files = Table(title="Files and incremental updates (ReferenceIndexes, the store's AES-GCM cipher, one template per change)")
        for column in ("templates", "snapshot s", "file GB", "add ms", "remove ms", "journal MB", "load+replay s", "peak RSS after load GB",
                       "enrol img/s", "vs empty index"):
            files.add_column(column, justify="right")
        for r in results:
            n = r.numbers
            rate = n.get("enrol img/s")
            files.add_row(
                f"{r.size:,}", f"{n['snapshot s']:.1f}", f"{n['file GB']:.2f}", f"{n['add ms']:.2f}", f"{n['remove ms']:.2f}",
                f"{n['journal MB']:.2f}", f"{n['load+replay s']:.1f}", f"{n['peak RSS after load GB']:.2f}", f"{rate:.2f}" if rate else "-",
                f"{rate / baseline:.2f}x" if rate and baseline else "-",
            )
        console.print(files)


if __name__ == "__main__":
    main()
