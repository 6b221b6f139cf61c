"""Measure the template indexes on synthetic custody-image galleries of 10k to 1M+ templates.

The galleries are synthetic but shaped like a real model's (``openfrt.evaluation.synthetic``).

For each size the script reports build time, memory, single-query latency on one core,
batched throughput on two threads, and how often the approximate index's top-1 id is the exact
index's (overall, mated, non-mated).

    python benchmarks/search.py --sizes 10k,100k,1m
    python benchmarks/search.py --sizes 100k --profile arcface
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from rich.console import Console
from rich.table import Table

from openfrt.evaluation.synthetic import PROFILES, Dataset, Generator, make_dataset
from openfrt.gallery.index import ApproximateIndex, ExactIndex, TemplateIndex


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class NullCipher:
    """Pass-through cipher: the benchmark measures the index's bytes, not encryption."""

    def encrypt(self, data: bytes) -> bytes:
        return data

    def decrypt(self, data: bytes) -> bytes:
        return data


@dataclass
class Measurement:
    build_s: float
    file_bytes: int
    rss_delta: int
    p50_ms: float
    p99_ms: float
    batch_qps: float
    top1: np.ndarray
    detail: str


def build(index: TemplateIndex, data: Dataset, batch: int) -> float:
    """Add the gallery in ``batch``-sized pieces, as an import from the custody system would,
    so the approximate index goes through its cold start and its retraining as it grows."""
    start = time.perf_counter()
    for offset in range(0, len(data.ids), batch):
        index.add(data.ids[offset : offset + batch], data.gallery[offset : offset + batch])
    return time.perf_counter() - start


def latency_ms(index: TemplateIndex, queries: np.ndarray, k: int) -> np.ndarray:
    """Per-query wall time (ms) on one core, one query per call, as an operator's search runs."""
    faiss.omp_set_num_threads(1)
    index.search(queries[:1], k)  # warm up
    times = np.empty(len(queries))
    for i in range(len(queries)):
        start = time.perf_counter()
        index.search(queries[i : i + 1], k)
        times[i] = time.perf_counter() - start
    return times * 1e3


def throughput(index: TemplateIndex, queries: np.ndarray, k: int, threads: int, batch: int) -> tuple[float, np.ndarray]:
    """Queries per second searching in batches on ``threads`` threads, and every query's top-1 id."""
    faiss.omp_set_num_threads(threads)
    top1 = np.empty(len(queries), dtype=np.int64)
    start = time.perf_counter()
    for offset in range(0, len(queries), batch):
        top1[offset : offset + batch] = index.search(queries[offset : offset + batch], k)[1][:, 0]
    return len(queries) / (time.perf_counter() - start), top1


def measure_build(index: TemplateIndex, data: Dataset, args: argparse.Namespace) -> tuple[float, int, int]:
    """Build time (s), saved file size and RSS growth (bytes) for ``index``."""
    faiss.omp_set_num_threads(args.threads)
    gc.collect()
    before = rss_bytes()
    build_s = build(index, data, args.build_batch)
    gc.collect()
    rss_delta = rss_bytes() - before
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.bin"
        index.save(path, NullCipher())
        file_bytes = path.stat().st_size
    return build_s, file_bytes, rss_delta


def measure_search(index: TemplateIndex, data: Dataset, args: argparse.Namespace, built: tuple[float, int, int]) -> Measurement:
    times = latency_ms(index, data.queries[: args.latency_queries], args.k)
    qps, top1 = throughput(index, data.queries, args.k, args.threads, args.batch)
    return Measurement(*built, float(np.median(times)), float(np.percentile(times, 99)), qps, top1, describe(index))


def describe(index: TemplateIndex) -> str:
    """nlist/nprobe of an approximate index, for the table."""
    if isinstance(index, ApproximateIndex):
        return index.describe()
    return "flat"


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("km")) * scale)


def agreement(top1: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> str:
    return f"{100 * np.mean(top1[mask] == reference[mask]):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10k,100k,1m", help="comma-separated gallery sizes, e.g. 10k,100k,1m")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="dlib")
    parser.add_argument("--probe-fractions", default="0.375,0.5,0.625", help="comma-separated ApproximateIndex probe_fraction values")
    parser.add_argument("--candidates", type=int, default=300, help="ApproximateIndex candidates re-ranked exactly per query")
    parser.add_argument("--queries", type=int, default=4000, help="queries for agreement and throughput")
    parser.add_argument("--latency-queries", type=int, default=1000, help="queries timed one at a time")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="threads for building and batched search")
    parser.add_argument("--batch", type=int, default=256, help="batch size for the throughput measurement")
    parser.add_argument("--build-batch", type=int, default=100_000, help="templates per add() while building")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    profile = PROFILES[args.profile]
    console = Console(width=200)
    table = Table(title=f"Template search, {args.profile} profile (D={profile.dim}), {args.queries} queries, k={args.k}")
    for column in ("size", "index", "build s", "file MB", "RSS Δ MB", "p50 ms", "p99 ms", "q/s (2 thr, b256)", "top-1 agree %", "mated %", "non-mated %"):
        table.add_column(column, justify="right")
    for size in map(parse_size, args.sizes.split(",")):
        data = make_dataset(Generator(profile, args.seed), size, args.queries)
        exact = ExactIndex(profile.dim)
        result = measure_search(exact, data, args, measure_build(exact, data, args))
        reference = result.top1
        rows = [("exact", result)]
        del exact
        gc.collect()
        approximate = ApproximateIndex(profile.dim, candidates=args.candidates)
        built = measure_build(approximate, data, args)
        for fraction in map(float, args.probe_fractions.split(",")):
            approximate.probe_fraction = fraction
            rows.append(("approx", measure_search(approximate, data, args, built)))
        del approximate
        for name, m in rows:
            table.add_row(
                f"{size:,}", f"{name} ({m.detail})", f"{m.build_s:.1f}", f"{m.file_bytes / 2**20:.0f}", f"{m.rss_delta / 2**20:.0f}",
                f"{m.p50_ms:.3f}", f"{m.p99_ms:.3f}", f"{m.batch_qps:,.0f}",
                agreement(m.top1, reference, np.ones_like(data.mated)), agreement(m.top1, reference, data.mated),
                agreement(m.top1, reference, ~data.mated),
            )
        console.print(f"[dim]{size:,} done[/dim]")
        del data
        gc.collect()
    console.print(table)


if __name__ == "__main__":
    main()
