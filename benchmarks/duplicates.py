"""How well enrolment tells a re-saved copy of a reference image from another photo of the person.

For identities of ../shared/faces/lfw with two or more images, the first image is saved again in
several ways (JPEG at lower quality, resized down and up, PNG) and each copy is compared with
the original as enrolment compares them (:mod:`openfrt.gallery.duplicates`: thumbnail correlation,
and the templates at the engine's 1:1 threshold); every pair of *different* images of one
identity is compared the same way. A copy should be caught as "the same picture"; a different
photo never should (LFW holds a few true duplicates under different file names: they show up
here as different photos that are caught, and are listed for review).

    python benchmarks/duplicates.py                        # the default engine
    python benchmarks/duplicates.py --embedder intel       # a registered model
"""

from __future__ import annotations

import argparse
import io
import itertools
import random
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import track
from rich.table import Table

from openfrt.errors import OpenFRTError
from openfrt.gallery.duplicates import SAME_PICTURE_CORRELATION, Picture
from openfrt.vision import EngineConfig, FaceEngine, Template, compare

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

#: (label, JPEG quality or None for PNG, scale)
COPIES = (("JPEG q90", 90, 1.0), ("JPEG q60", 60, 1.0), ("JPEG q40", 40, 1.0), ("0.5x, JPEG q85", 85, 0.5),
          ("0.75x, JPEG q75", 75, 0.75), ("1.5x, JPEG q90", 90, 1.5), ("PNG", None, 1.0))


def resave(path: Path, quality: int | None, scale: float) -> bytes:
    image = Image.open(path).convert("RGB")
    if scale != 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "PNG") if quality is None else image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def examine(engine: FaceEngine, data: bytes, name: str) -> tuple[Picture, Template]:
    rgb = engine.load(data, name)
    _, template = engine.largest_face_template(rgb, name)
    return Picture.of(data, rgb), template


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=Path, default=SHARED / "faces" / "lfw")
    parser.add_argument("--identities", type=int, default=150, help="identities sampled (seeded)")
    parser.add_argument("--per-identity", type=int, default=5, help="images per identity at most")
    parser.add_argument("--embedder", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    engine = FaceEngine(EngineConfig.from_env(embedder=args.embedder))
    folders = sorted(folder for folder in args.faces.iterdir() if folder.is_dir() and len(list(folder.glob("*.jpg"))) >= 2)
    folders = random.Random(args.seed).sample(folders, min(args.identities, len(folders)))

    copies: dict[str, list[tuple[float, float]]] = {label: [] for label, _, _ in COPIES}
    distinct: list[tuple[float, float, str]] = []
    for folder in track(folders, description="comparing", console=Console(stderr=True)):
        examined = []
        for path in sorted(folder.glob("*.jpg"))[: args.per_identity]:
            try:
                examined.append((path, *examine(engine, path.read_bytes(), str(path))))
            except OpenFRTError:
                continue
        if not examined:
            continue
        original_path, original, template = examined[0]
        for label, quality, scale in COPIES:
            copy, copy_template = examine(engine, resave(original_path, quality, scale), label)
            copies[label].append((float(copy.thumbnail @ original.thumbnail), compare(copy_template, template)))
        for (path_a, a, ta), (path_b, b, tb) in itertools.combinations(examined, 2):
            distinct.append((float(a.thumbnail @ b.thumbnail), compare(ta, tb), f"{path_a.name} / {path_b.name}"))

    threshold = engine.threshold
    table = Table(title=f"{engine.embedder.model_id}: same picture = thumbnail correlation >= {SAME_PICTURE_CORRELATION} "
                        f"and similarity >= {threshold:.4f}", title_justify="left")
    for column in ("pairs", "n", "correlation min / median / max", "similarity min / median", "caught as the same picture"):
        table.add_column(column, justify="right")

    def row(label: str, pairs: list[tuple[float, float]]) -> None:
        correlation, similarity = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        caught = int(np.sum((correlation >= SAME_PICTURE_CORRELATION) & (similarity >= threshold)))
        table.add_row(label, str(len(pairs)), f"{correlation.min():.4f} / {np.median(correlation):.4f} / {correlation.max():.4f}",
                      f"{similarity.min():.4f} / {np.median(similarity):.4f}", f"{caught} ({caught / len(pairs):.1%})")

    for label, pairs in copies.items():
        row(f"copy: {label}", pairs)
    row("different photos, one person", [(c, s) for c, s, _ in distinct])
    Console(width=160).print(table)
    for correlation, similarity, names in sorted(distinct, reverse=True)[:3]:
        print(f"most alike different photos: {names}: correlation {correlation:.4f}, similarity {similarity:.4f}")


if __name__ == "__main__":
    main()
