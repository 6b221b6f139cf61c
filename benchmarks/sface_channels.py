"""Which channel order and pixel scaling SFace wants, measured rather than assumed.

Every image of ../shared/faces (LFW identities, UTKFace non-mated) is detected once with the
bundled YuNet; the same aligned chips are then embedded by the bundled SFace graph fed RGB or
BGR, raw 0..255 (the graph normalises itself) or pre-scaled ArcFace-style (what a wrong family
guess did), and each variant goes through the ``openfrt evaluate`` protocol (1,000-subject
watchlist, one reference image, label errors excluded, seeds pooled).

    python benchmarks/sface_channels.py                    # every image (a few minutes)
    python benchmarks/sface_channels.py --limit 3000       # a quicker subset
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from openfrt.errors import OpenFRTError
from openfrt.evaluation.dataset import Embeddings, load_identity_folder, load_nonmated_folder, subject_face
from openfrt.evaluation.protocol import Protocol
from openfrt.evaluation.report import EvaluationData, pooled_outcomes, read_exclusions, Scoring
from openfrt.evaluation.metrics import choose_threshold, empirical_threshold
from openfrt.vision import load_image
from openfrt.vision.detectors import DETECTORS
from openfrt.vision.embedders.chip import ChipSpec
from openfrt.vision.embedders.sface import SFACE_SPEC, SFaceEmbedder

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
EXCLUDE = ROOT / "benchmarks" / "shared-label-errors.txt"

VARIANTS: dict[str, ChipSpec] = {
    "RGB, raw 0..255": ChipSpec(112, SFACE_SPEC.reference, "rgb", 0.0, 1.0),
    "BGR, raw 0..255": ChipSpec(112, SFACE_SPEC.reference, "bgr", 0.0, 1.0),
    "RGB, (x - 127.5) / 127.5 (ArcFace family guess)": ChipSpec(112, SFACE_SPEC.reference, "rgb", 127.5, 1 / 127.5),
}

_detector = None


def _init() -> None:
    global _detector
    _detector = DETECTORS.create("yunet")


def _chip(path: str) -> np.ndarray | None:
    """The aligned 112x112 chip of the labelled face in ``path`` (None: no face)."""
    assert _detector is not None
    try:
        rgb = load_image(path)
    except OpenFRTError:
        return None
    faces = _detector.detect(rgb)
    if not faces:
        return None
    from openfrt.vision.align import warp_to_reference

    face = subject_face(faces, rgb.shape)
    return warp_to_reference(rgb, face.landmarks, SFACE_SPEC.reference, SFACE_SPEC.size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images of each folder (0: all)")
    parser.add_argument("--draws", type=int, default=3, help="watchlist draws pooled per variant")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    identities, nonmated = SHARED / "faces" / "lfw", SHARED / "faces" / "utk"
    if not identities.is_dir():
        raise SystemExit(f"needs {identities} (the shared data beside the project)")
    excluded = read_exclusions(EXCLUDE)
    samples = []
    for root, loader in ((identities, load_identity_folder), (nonmated, load_nonmated_folder)):
        kept = [s for s in loader(root) if s.path.relative_to(root).as_posix() not in excluded]
        samples.append(kept[: args.limit] if args.limit else kept)
    everything = samples[0] + samples[1]
    with ProcessPoolExecutor(args.workers, initializer=_init) as pool:
        chips = list(track(pool.map(_chip, [str(s.path) for s in everything], chunksize=16), total=len(everything), description="detecting"))
    found = np.array([chip is not None for chip in chips])
    embedder = SFaceEmbedder(threads=args.workers)
    table = Table(title=f"SFace input variants: {len(everything):,} images, watchlist 1,000, {args.draws} draws pooled")
    for column in ("variant", "rank-1", "TPIR at FPIR 1/1,000", "TPIR at FPIR 1/6,000 (threshold)"):
        table.add_column(column, justify="right" if column != "variant" else "left")
    valid = [chip for chip in chips if chip is not None]
    for label, spec in VARIANTS.items():
        embedder.spec = spec
        vectors = np.full((len(everything), 128), np.nan, np.float32)
        vectors[found] = np.stack([t.vector for t in embedder.embed_chips(valid)])
        quality = np.zeros((len(everything), 6))
        embeddings = Embeddings(embedder.model_id, "yunet", vectors, quality, [None] * len(everything))
        data = EvaluationData(everything, len(samples[0]), embeddings)
        outcomes, _ = pooled_outcomes(data, Protocol(watchlist_size=1000), Scoring(), args.draws)
        at_thousand = outcomes.tpir(empirical_threshold(outcomes.nonmated, 1e-3))
        choice = choose_threshold(outcomes, 1 / 6000)
        table.add_row(label, f"{outcomes.rank1:.1%}", f"{at_thousand:.1%}", f"{choice.tpir:.1%} ({choice.threshold:.4f})")
    Console().print(table)


if __name__ == "__main__":
    main()
