"""Score fusion of two face models: does it raise TPIR at FPIR 1/6,000 over the better one alone?

Reads the templates ``openfrt evaluate --cache DIR`` kept for each model (same detector, same
images), keeps the images every model has a template of, and runs the evaluate protocol
(1,000-subject watchlist, one reference image, label errors excluded, 10 draws pooled, threshold
by the same rule as the shipped calibration) for each model alone and for weighted sums of
cosines. A weighted sum of cosines is the cosine of the concatenated, weighted unit templates
(sqrt(w_a) a ⊕ sqrt(w_b) b), so a fused model would be just one more embedder; the weights tried
are z-normalisation's (1 / spread of each model's impostor cosines, no tuning) and a few fixed
splits, reported as measured on the development data.

    python benchmarks/fusion.py --cache /tmp/evalcache
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from openfrt.evaluation.dataset import Embeddings, load_identity_folder, load_nonmated_folder
from openfrt.evaluation.metrics import choose_threshold, empirical_threshold
from openfrt.evaluation.protocol import Protocol
from openfrt.evaluation.report import EvaluationData, enrolment, pooled_outcomes, read_exclusions

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def load(cache: Path, detector: str, embedder: str, exclude: frozenset[str]) -> tuple[list, int, Embeddings]:
    """Samples (identities first), the identity count and the cached templates of one model."""
    parts = []
    for name, root, loader in (("identities", SHARED / "faces" / "lfw", load_identity_folder), ("nonmated", SHARED / "faces" / "utk", load_nonmated_folder)):
        samples = loader(root)
        path = cache / f"{name}-{root.name}-{detector}-{embedder}.npz"
        if not path.is_file():
            raise SystemExit(f"no cached templates for {embedder} in {cache}: run openfrt evaluate --cache {cache} --detector {detector} --embedder {embedder}")
        with np.load(path) as data:
            rows = {Path(p).resolve(): i for i, p in enumerate(data["paths"])}
            vectors, model_id = data["vectors"][[rows[s.path.resolve()] for s in samples]], str(data["model_id"])
        keep = np.array([s.path.relative_to(root).as_posix() not in exclude for s in samples])
        parts.append(([s for s, k in zip(samples, keep) if k], vectors[keep], model_id))
    (ids, id_vectors, model_id), (nm, nm_vectors, _) = parts
    vectors = np.concatenate([id_vectors, nm_vectors])
    return ids + nm, len(ids), Embeddings(model_id, detector, vectors, np.zeros((len(vectors), 6)), [None] * len(vectors))


def impostor_spread(vectors: np.ndarray, rng: np.random.Generator) -> float:
    """Standard deviation of cosines between random pairs of templates (almost all impostors)."""
    a, b = rng.choice(len(vectors), 20000), rng.choice(len(vectors), 20000)
    return float(np.std(np.einsum("ij,ij->i", vectors[a], vectors[b])))


def measure(samples: list, identities: int, vectors: np.ndarray, label: str, draws: int, images: int = 1) -> tuple[str, float, float, float, float]:
    embeddings = Embeddings(label, "-", vectors.astype(np.float32), np.zeros((len(vectors), 6)), [None] * len(vectors))
    options, scoring = enrolment(images)
    outcomes, _ = pooled_outcomes(EvaluationData(samples, identities, embeddings), Protocol(watchlist_size=1000, **options), scoring, draws)
    choice = choose_threshold(outcomes, 1 / 6000)
    return label, outcomes.rank1, float(outcomes.tpir(empirical_threshold(outcomes.nonmated, 1e-3))), choice.tpir, choice.threshold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--detector", default="yunet")
    parser.add_argument("--base", default="sface")
    parser.add_argument("--others", nargs="+", default=["dlib-onnx", "intel"])
    parser.add_argument("--draws", type=int, default=10)
    args = parser.parse_args()
    exclude = read_exclusions(ROOT / "benchmarks" / "shared-label-errors.txt")
    models = {name: load(args.cache, args.detector, name, exclude) for name in [args.base, *args.others]}
    samples, identities, _ = models[args.base]
    usable = np.logical_and.reduce([emb.found for _, _, emb in models.values()])
    rng = np.random.default_rng(0)
    vectors = {name: emb.vectors[usable] for name, (_, _, emb) in models.items()}
    kept = [s for s, u in zip(samples, usable) if u]
    kept_identities = int(usable[:identities].sum())
    spread = {name: impostor_spread(v, rng) for name, v in vectors.items()}
    rows = [measure(kept, kept_identities, v, f"{name} alone", args.draws) for name, v in vectors.items()]
    rows += [measure(kept, kept_identities, v, f"{name} alone, up to 3 images (mean template)", args.draws, 3) for name, v in vectors.items()]
    for other in args.others:
        znorm = (1 / spread[args.base]) / (1 / spread[args.base] + 1 / spread[other])
        for weight in sorted({round(znorm, 3), 0.5, 0.7, 0.85}):
            fused = np.hstack([np.sqrt(weight) * vectors[args.base], np.sqrt(1 - weight) * vectors[other]])
            label = f"{args.base} {weight:.2f} + {other} {1 - weight:.2f}" + (" (z-norm weights)" if weight == round(znorm, 3) else "")
            rows.append(measure(kept, kept_identities, fused, label, args.draws))
    table = Table(title=f"Score fusion on {len(kept):,} images with a template from every model; watchlist 1,000, {args.draws} draws pooled")
    for column in ("scores", "rank-1", "TPIR at FPIR 1/1,000", "TPIR at FPIR 1/6,000", "threshold (cosine-sum scale)"):
        table.add_column(column, justify="left" if column == "scores" else "right")
    for label, rank1, at_thousand, at_target, threshold in rows:
        table.add_row(label, f"{rank1:.1%}", f"{at_thousand:.1%}", f"{at_target:.1%}", f"{threshold:.4f}")
    Console().print(table)


if __name__ == "__main__":
    main()
