"""``openfrt faces`` and ``openfrt compare``: the face engine on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from openfrt.cli.common import (
    EXIT_INPUT_FAILED,
    DetectorModelOption,
    DetectorOption,
    EmbedderOption,
    JsonOption,
    MaxPixelsOption,
    ThreadsOption,
    ThresholdOption,
    build_engine,
    console,
    err_console,
    print_json,
)
from openfrt.errors import OpenFRTError

if TYPE_CHECKING:
    from openfrt.vision import Face


def faces(
    images: Annotated[list[Path], typer.Argument(help="Image files (JPEG, PNG, WebP, BMP).", show_default=False)],
    json_output: JsonOption = False,
    detector: DetectorOption = None,
    detector_model: DetectorModelOption = None,
    max_pixels: MaxPixelsOption = None,
    threads: ThreadsOption = None,
) -> None:
    """Find the faces in each image, with box, score and quality measures."""
    engine = build_engine(detector, detector_model, None, max_pixels, threads=threads)
    failed = False
    for image in images:
        try:
            found, error = engine.detect(image), None
        except OpenFRTError as exc:
            found, error, failed = [], str(exc), True
        if json_output:
            print_json({"image": str(image), "faces": [face.as_dict() for face in found], "error": error})
        else:
            _print_faces(str(image), found, error)
    if failed:
        raise typer.Exit(EXIT_INPUT_FAILED)


def _print_faces(image: str, found: list[Face], error: str | None) -> None:
    if error:
        err_console.print(f"[red]error:[/red] {error}")
        return
    table = Table(title=f"{image}: {len(found)} face(s)", title_justify="left")
    for column in ("box (x, y, w, h)", "score", "height px", "sharpness", "frontalness", "brightness"):
        table.add_column(column, justify="right")
    for face in found:
        quality = face.quality
        table.add_row(
            ", ".join(f"{v:.0f}" for v in face.box),
            f"{face.score:.2f}",
            f"{quality.face_height_px:.0f}",
            f"{quality.sharpness:.0f}",
            f"{quality.frontalness:.2f}",
            f"{quality.brightness:.2f}",
        )
    console.print(table)


def compare(
    image_a: Annotated[Path, typer.Argument(help="First image.", show_default=False)],
    image_b: Annotated[Path, typer.Argument(help="Second image.", show_default=False)],
    json_output: JsonOption = False,
    detector: DetectorOption = None,
    detector_model: DetectorModelOption = None,
    embedder: EmbedderOption = None,
    max_pixels: MaxPixelsOption = None,
    threshold: ThresholdOption = None,
    threads: ThreadsOption = None,
) -> None:
    """Compare the largest face of two images: similarity on a 0..1 scale and match or not."""
    engine = build_engine(detector, detector_model, embedder, max_pixels, threshold, threads)
    try:
        _, template_a = engine.largest_face_template(image_a, str(image_a))
        _, template_b = engine.largest_face_template(image_b, str(image_b))
        similarity = engine.compare(template_a, template_b)
    except OpenFRTError as exc:
        if json_output:
            print_json({"error": str(exc)})
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_INPUT_FAILED) from None
    match = engine.is_match(similarity)
    if json_output:
        print_json({"similarity": round(similarity, 6), "threshold": engine.threshold, "match": match})
    else:
        verdict = "[green]match[/green]" if match else "[yellow]no match[/yellow]"
        relation = ">=" if match else "<"
        console.print(f"similarity {similarity:.4f} {relation} threshold {engine.threshold:.4f} ({engine.embedder.model_id}): {verdict}")
