"""Options and output helpers shared by every command, so each command stays a few lines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from openfrt.errors import OpenFRTError
from openfrt.records import RecordStore
from openfrt.vision import EngineConfig, FaceEngine

#: Exit codes: 0 success, 1 an input failed (and was reported), 2 usage or configuration error.
EXIT_INPUT_FAILED = 1
EXIT_USAGE = 2

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object per line for machines.")]
DetectorOption = Annotated[
    Optional[str], typer.Option("--detector", help="Detector plug-in: hog, mmod, yunet, ... (default: configured).")
]
DetectorModelOption = Annotated[
    Optional[Path], typer.Option("--detector-model", help="Model file for detectors that need one (e.g. YuNet .onnx).")
]
EmbedderOption = Annotated[Optional[str], typer.Option("--embedder", help="Embedder plug-in (default: configured).")]
MaxPixelsOption = Annotated[
    Optional[int], typer.Option("--max-pixels", min=1, help="Refuse images with more pixels than this.")
]
HomeOption = Annotated[
    Optional[Path],
    typer.Option("--home", envvar="OPENFRT_HOME", help="Data directory (default: the per-user data directory)."),
]
ReasonOption = Annotated[Optional[str], typer.Option("--reason", help="Why, for the audit log.")]
ThreadsOption = Annotated[
    Optional[int], typer.Option("--threads", min=0, help="Inference threads (0: runtime default; see README).")
]
ThresholdOption = Annotated[
    Optional[float], typer.Option("--threshold", min=0.0, max=1.0, help="Match threshold (default: the model's).")
]


def build_engine(
    detector: str | None,
    detector_model: Path | None,
    embedder: str | None,
    max_pixels: int | None,
    threshold: float | None = None,
    threads: int | None = None,
) -> FaceEngine:
    """A face engine from the environment's configuration and the command's options."""
    options: dict[str, Any] = {"model_path": detector_model} if detector_model else {}
    try:
        config = EngineConfig.from_env(
            detector=detector, embedder=embedder, max_pixels=max_pixels, threshold=threshold, threads=threads
        )
        if options:
            config = config.model_copy(update={"detector_options": options})
        return FaceEngine(config)
    except (OpenFRTError, ValueError) as exc:
        usage_error(str(exc))


def usage_error(message: str) -> NoReturn:
    err_console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(EXIT_USAGE)


def parse_time(text: str | None, option: str) -> datetime | None:
    """An ISO 8601 option value; without a zone it is local time."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        usage_error(f"{option} {text!r} is not an ISO 8601 time (e.g. 2026-06-01T18:00)")
    return moment if moment.tzinfo else moment.astimezone()


def print_json(payload: dict[str, Any]) -> None:
    """One compact JSON object per line, straight to stdout (no Rich markup or wrapping)."""
    typer.echo(json.dumps(payload, separators=(",", ":")))


def fail(error: Exception, json_output: bool, **context: Any) -> NoReturn:
    """Report a failed input (JSON line and/or stderr) and exit 1."""
    if json_output:
        print_json({**context, "error": str(error)})
    err_console.print(f"[red]error:[/red] {error}")
    raise typer.Exit(EXIT_INPUT_FAILED)


@contextmanager
def open_store(home: Path | None) -> Iterator[RecordStore]:
    """The records store in ``home``; one that cannot be opened is a configuration (usage) error."""
    try:
        store = RecordStore.open(home)
    except (OpenFRTError, SQLAlchemyError, OSError) as exc:
        usage_error(f"cannot open the records store: {exc}")
    try:
        yield store
    finally:
        store.close()


@contextmanager
def store_or_fail(home: Path | None, json_output: bool, **context: Any) -> Iterator[RecordStore]:
    """The records store for one command's work: an openfrt error in the block is reported with
    ``context`` (as :func:`fail` does) and exits 1; the store is closed either way."""
    with open_store(home) as store:
        try:
            yield store
        except OpenFRTError as exc:
            fail(exc, json_output, **context)
