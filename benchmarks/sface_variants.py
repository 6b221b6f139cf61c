"""SFace chip variants on the evaluate protocol: does flipping, interpolation or better landmarks raise TPIR at FPIR 1/6,000?

    python benchmarks/sface_variants.py [--variants base flip cubic fp32-landmarks] [--draws 10]

Detects every image of ../shared/faces/lfw and ../shared/faces/utk once with the bundled YuNet
(and, for ``fp32-landmarks``, once with OpenCV Zoo's float YuNet file from ../shared/models),
takes the labelled face as ``openfrt evaluate`` does, and embeds its chip with SFace in each
variant: as shipped (``base``: ArcFace 5-point warp, bilinear), the mean of the chip's and its
mirror image's templates (``flip``, test-time augmentation), a bicubic warp (``cubic``), and
landmarks from the float YuNet (``fp32-landmarks``). Each runs the evaluate protocol (1,000-subject
watchlist, label errors excluded, ``--draws`` watchlists pooled, threshold by the shipped
calibration's rule) with 1 reference image and with up to 3 as a mean template.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fusion import (
    measure,  # the same protocol and threshold rule as the fusion benchmark
)

from openfrt.evaluation.dataset import (
    Sample,
    load_identity_folder,
    load_nonmated_folder,
    subject_face,
)
from openfrt.evaluation.report import read_exclusions
from openfrt.vision import EngineConfig, FaceEngine
from openfrt.vision.align import ARCFACE_REFERENCE_112, similarity_transform
from openfrt.vision.detectors import DETECTORS, Detector
from openfrt.vision.embedders.chip import ChipEmbedder

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
YUNET_FLOAT = SHARED / "models" / "face_detection_yunet_2023mar.onnx"
VARIANTS = ("base", "flip", "cubic", "fp32-landmarks")


def samples() -> tuple[list[Sample], int]:
    """Identity samples then non-mated ones, label errors excluded, and the identity count."""
    exclude = read_exclusions(ROOT / "benchmarks" / "shared-label-errors.txt")
    lfw, utk = SHARED / "faces" / "lfw", SHARED / "faces" / "utk"
    identities = [s for s in load_identity_folder(lfw) if s.path.relative_to(lfw).as_posix() not in exclude]
    nonmated = [s for s in load_nonmated_folder(utk) if s.path.name not in exclude]
    return identities + nonmated, len(identities)


def landmarks(engine: FaceEngine, detector: Detector, images: list[Sample]) -> list[np.ndarray]:
    """The labelled face's five landmarks in each image (every image here has a face)."""
    found = []
    for sample in images:
        rgb = engine.load(sample.path)
        faces = detector.detect(rgb)
        if not faces:
            raise SystemExit(f"no face in {sample.path} with {detector.name}")
        found.append(subject_face(faces, rgb.shape).landmarks)
    return found


def chips(engine: FaceEngine, images: list[Sample], points: list[np.ndarray], interpolation: int) -> list[np.ndarray]:
    out = []
    for sample, marks in zip(images, points):
        matrix = similarity_transform(marks, ARCFACE_REFERENCE_112)
        out.append(cv2.warpAffine(engine.load(sample.path), matrix, (112, 112), flags=interpolation, borderMode=cv2.BORDER_REPLICATE))
    return out


def templates(embedder: ChipEmbedder, faces: list[np.ndarray], flip: bool = False) -> np.ndarray:
    vectors = np.stack([t.vector for t in embedder.embed_chips(faces)])
    if flip:
        vectors = vectors + np.stack([t.vector for t in embedder.embed_chips([chip[:, ::-1].copy() for chip in faces])])
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--draws", type=int, default=10)
    args = parser.parse_args()
    engine = FaceEngine(EngineConfig(detector="yunet", embedder="sface", threads=2))
    assert isinstance(engine.embedder, ChipEmbedder)
    images, identities = samples()
    bundled = landmarks(engine, engine.detector, images)
    base = chips(engine, images, bundled, cv2.INTER_LINEAR)
    table = Table(title=f"SFace variants, evaluate protocol ({len(images):,} images, watchlist 1,000, {args.draws} draws pooled)")
    for column in ("variant", "reference images", "rank-1", "TPIR at FPIR 1/1,000", "threshold for 1/6,000", "TPIR there"):
        table.add_column(column)
    for variant in args.variants:
        if variant == "fp32-landmarks" and not YUNET_FLOAT.exists():
            continue
        if variant == "fp32-landmarks":
            faces = chips(engine, images, landmarks(engine, DETECTORS.create("yunet", model_path=YUNET_FLOAT), images), cv2.INTER_LINEAR)
        else:
            faces = chips(engine, images, bundled, cv2.INTER_CUBIC) if variant == "cubic" else base
        vectors = templates(engine.embedder, faces, flip=variant == "flip")
        for references in (1, 3):
            _, rank1, at_thousand, at_target, threshold = measure(images, identities, vectors, variant, args.draws, references)
            table.add_row(variant, str(references), f"{rank1:.2%}", f"{at_thousand:.1%}", f"{threshold:.4f}", f"{at_target:.1%}")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
