"""``openfrt walkthrough``: compose a walk-through test video with known identities.

For testing and benchmarking the live pipeline (see :mod:`openfrt.live.walkthrough`): writes
the video and its ground truth JSON (who passes, when and where, which reference image to enrol
for the watchlisted ones).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from openfrt.cli.common import JsonOption, build_engine, console, print_json, usage_error


def walkthrough(
    video: Annotated[Path, typer.Argument(help="Video to write (.mp4, mp4v codec).", dir_okay=False)],
    faces: Annotated[Path, typer.Option("--faces", help="Folder holding lfw/<Name>/*.jpg and utk/*.jpg.", file_okay=False)],
    truth: Annotated[Path | None, typer.Option("--truth", help="Ground truth JSON (default: VIDEO with .json).")] = None,
    size: Annotated[str, typer.Option("--size", help="Frame size WIDTHxHEIGHT.")] = "1920x1080",
    fps: Annotated[float, typer.Option("--fps", min=1.0, help="Frames per second.")] = 25.0,
    passers: Annotated[int, typer.Option("--passers", min=1, help="People walking past.")] = 20,
    watchlisted: Annotated[int, typer.Option("--watchlisted", min=0, help="How many of them are on the watchlist.")] = 5,
    face_heights: Annotated[str, typer.Option("--face-heights", help="Face height range in px, LOW-HIGH.")] = "40-200",
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same video.")] = 0,
    background: Annotated[
        Path | None, typer.Option("--background", help="Image or video whose first frame, blurred, is the scene.")
    ] = None,
    exclude: Annotated[
        Path | None, typer.Option("--exclude", help="File listing mislabelled face images to leave out (# comments).")
    ] = None,
    screen: Annotated[
        bool, typer.Option("--screen/--no-screen", help="Only let images walk past in which the default detector finds exactly one face.")
    ] = True,
    json_output: JsonOption = False,
) -> None:
    """Compose a walk-through video from labelled faces, with its ground truth."""
    from openfrt.live.walkthrough import FaceSet, WalkthroughConfig, generate, one_face_screen, read_exclusions

    if not (faces / "lfw").is_dir() or not (faces / "utk").is_dir():
        usage_error(f"{faces} must hold lfw/ and utk/ folders")
    try:
        config = WalkthroughConfig(
            size=_pair(size, "x", int), fps=fps, passers=passers, watchlisted=watchlisted,
            face_heights=_pair(face_heights, "-", float), seed=seed,
        )
        excluded = read_exclusions(exclude.read_text().splitlines()) if exclude else frozenset()
        checker = one_face_screen(build_engine(None, None, None, None)) if screen else None
        result = generate(config, FaceSet(faces, excluded, checker), video, truth, background)
    except (ValueError, OSError) as exc:
        usage_error(str(exc))
    truth_path = truth or video.with_suffix(".json")
    on_list = sum(passer.on_watchlist for passer in result.passers)
    if json_output:
        print_json({"video": str(video), "truth": str(truth_path), "frames": result.frames,
                    "passers": len(result.passers), "watchlisted": on_list})
    else:
        console.print(f"wrote {video} ({result.frames} frames, {len(result.passers)} passers, "
                      f"{on_list} on the watchlist) and {truth_path}")


def _pair(text: str, separator: str, kind: type[int | float]) -> tuple:  # type: ignore[type-arg]
    """``"1920x1080"`` -> ``(1920, 1080)``; a malformed value is a usage error."""
    parts = text.lower().split(separator)
    try:
        low, high = (kind(part) for part in parts)
    except ValueError:
        usage_error(f"{text!r} should be two numbers separated by {separator!r}")
    return low, high
