"""Measure 1:1 verification error rates on ../shared/faces/lfw and pick a match threshold.

Every image is detected and embedded once with the chosen engine; genuine pairs are all pairs of
images of one identity (at most ``--per-identity`` images each, so a few heavily photographed
people do not dominate), impostor pairs a seeded random sample of images of different people.
The script prints false-match rate (FMR) and false-non-match rate (FNMR) across thresholds and
the lowest threshold whose FMR is at or below ``--target-fmr``.

    python benchmarks/verification.py                      # the defaults: yunet + sface
    python benchmarks/verification.py --detector hog --embedder dlib
    python benchmarks/verification.py --templates CACHE/identities-lfw-yunet-sface.npz   # templates kept by openfrt evaluate --cache
"""

from __future__ import annotations

import argparse
import csv
import itertools
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from openfrt.errors import OpenFRTError
from openfrt.vision import EngineConfig, FaceEngine
from openfrt.vision.types import cosine_to_similarity

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
_engine: FaceEngine | None = None


def _init_worker(config: EngineConfig) -> None:
    global _engine
    _engine = FaceEngine(config)


def _embed(path: str) -> np.ndarray | None:
    assert _engine is not None
    try:
        return _engine.largest_face_template(path)[1].vector
    except OpenFRTError:
        return None


def embed_all(paths: list[Path], config: EngineConfig, workers: int) -> np.ndarray:
    """Template per path (NaN rows where no face was found)."""
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(config,)) as pool:
        results = list(track(pool.map(_embed, map(str, paths), chunksize=16), total=len(paths), description="embedding"))
    dim = next(r.shape[0] for r in results if r is not None)
    return np.stack([r if r is not None else np.full(dim, np.nan, np.float32) for r in results])


def cached_templates(cache: Path, paths: list[Path]) -> np.ndarray:
    """Templates of ``paths`` from an ``openfrt evaluate --cache`` file (NaN rows for images it lacks)."""
    with np.load(cache) as data:
        rows = {Path(path).resolve(): i for i, path in enumerate(data["paths"])}
        vectors = data["vectors"]
    missing = np.full(vectors.shape[1], np.nan, np.float32)
    return np.stack([vectors[rows[path.resolve()]] if path.resolve() in rows else missing for path in paths])


def pair_scores(templates: np.ndarray, identities: list[str], per_identity: int, impostors: int, seed: int):
    rng = np.random.default_rng(seed)
    by_identity: dict[str, list[int]] = defaultdict(list)
    for index, identity in enumerate(identities):
        if not np.isnan(templates[index, 0]):
            by_identity[identity].append(index)
    genuine = [
        pair
        for members in by_identity.values()
        for pair in itertools.combinations(members[:per_identity], 2)
    ]
    valid = np.array([i for members in by_identity.values() for i in members])
    first, second = rng.choice(valid, impostors), rng.choice(valid, impostors)
    names = np.array(identities)
    keep = names[first] != names[second]
    impostor = np.stack([first[keep], second[keep]], axis=1)
    genuine_arr = np.array(genuine)

    def score(pairs: np.ndarray) -> np.ndarray:
        return cosine_to_similarity(np.einsum("ij,ij->i", templates[pairs[:, 0]], templates[pairs[:, 1]]))

    return score(genuine_arr), score(impostor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=SHARED / "faces" / "lfw")
    parser.add_argument("--detector", default="yunet")
    parser.add_argument("--embedder", default="sface")
    parser.add_argument("--templates", type=Path, help="reuse the LFW templates `openfrt evaluate --cache` kept (.npz) instead of embedding")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--per-identity", type=int, default=10)
    parser.add_argument("--impostors", type=int, default=500_000)
    parser.add_argument("--target-fmr", type=float, default=1e-3)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images (quick runs)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    with open(args.lfw / "labels.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    if args.limit:
        rows = rows[: args.limit]
    config = EngineConfig(detector=args.detector, embedder=args.embedder)
    started = time.perf_counter()
    paths = [args.lfw / row["file"] for row in rows]
    templates = cached_templates(args.templates, paths) if args.templates else embed_all(paths, config, args.workers)
    console = Console()
    failed = int(np.isnan(templates[:, 0]).sum())
    console.print(f"{len(rows)} images, {failed} without a face, {time.perf_counter() - started:.0f} s")

    genuine, impostor = pair_scores(templates, [r["identity"] for r in rows], args.per_identity, args.impostors, args.seed)
    table = Table(title=f"1:1 verification on LFW half ({args.detector} + {args.embedder}): "
                  f"{len(genuine):,} genuine, {len(impostor):,} impostor pairs")
    for column in ("threshold", "FMR", "FNMR"):
        table.add_column(column, justify="right")
    ordered = np.sort(impostor)[::-1]
    allowed = int(np.floor(args.target_fmr * len(impostor)))
    chosen = float(ordered[allowed]) + 1e-6
    for threshold in np.arange(np.floor(chosen * 100 - 8) / 100, min(1.0, chosen + 0.05), 0.01):
        table.add_row(f"{threshold:.2f}", f"{np.mean(impostor >= threshold):.5f}", f"{np.mean(genuine < threshold):.4f}")
    console.print(table)
    console.print(
        f"threshold for FMR <= {args.target_fmr:g}: {chosen:.4f} -> FMR {np.mean(impostor >= chosen):.5f}, "
        f"FNMR {np.mean(genuine < chosen):.4f}"
    )


if __name__ == "__main__":
    main()
