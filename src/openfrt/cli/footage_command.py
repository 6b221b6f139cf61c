"""``openfrt search-footage``: find everyone in a footage file and search them against the reference database.

A retrospective search (``--case`` and ``--reason``, audited once), acting as the user whose token
is in ``OPENFRT_TOKEN`` with the search permission. Files are read only from the footage
directory (``OPENFRT_FOOTAGE_DIR``). Prints the review list — each lead's time in the file, the
span it was seen, and its candidates — and the search's id, under which the console shows the
leads with their thumbnails; ``--thumbnails DIR`` also writes them there as JPEG files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from openfrt.cli.common import HomeOption, JsonOption, console, err_console, print_json, usage_error
from openfrt.errors import OpenFRTError

if TYPE_CHECKING:
    from openfrt.footage.search import FootageResult, FootageSearch, Progress
    from openfrt.records import RecordStore


def search_footage(
    file: Annotated[str, typer.Argument(metavar="FILE", help="Video file inside the footage directory (OPENFRT_FOOTAGE_DIR).")],
    case: Annotated[Optional[str], typer.Option("--case", help="Case reference (required).")] = None,
    reason: Annotated[Optional[str], typer.Option("--reason", help="Why this search is necessary (required).")] = None,
    top: Annotated[int, typer.Option("--top", min=1, max=50, help="Candidates listed per lead.")] = 5,
    threshold: Annotated[Optional[float], typer.Option(
        "--threshold", min=0.0, max=1.0,
        help="Review threshold (default: the model's for 1 false candidate in 1,000 searches of this database).")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, max=64,
                                                   help="Search processes, one per core (default: up to 2, one per 5 minutes of footage).")] = None,
    interval: Annotated[float, typer.Option("--interval", min=0.04, max=10.0,
                                            help="Seconds between the frames looked at (see README).")] = 0.5,
    thumbnails: Annotated[Optional[Path], typer.Option("--thumbnails", file_okay=False,
                                                       help="Also write each lead's face crop and frame (others pixelated) here.")] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Retrospective search of footage: every person seen, searched against the reference database,
    listed for review with times and candidates — never a match. Needs --case and --reason; audited."""
    if not (case and case.strip() and reason and reason.strip()):
        usage_error("a footage search is a retrospective search: it needs --case (a case reference) and --reason")
    from openfrt.cli.gallery_commands import open_gallery
    from openfrt.footage.search import FootageSearch
    from openfrt.live.source_policy import SourcePolicy
    from openfrt.net_policy import DestinationRefused

    with open_gallery(home, "search") as (gallery, actor):
        search = FootageSearch(gallery, SourcePolicy.from_env(gallery.store.home), workers, interval)
        try:
            search.check_file(file)
        except (DestinationRefused, OpenFRTError) as exc:
            usage_error(str(exc))
        try:
            result = _run_with_progress(search, file, case, reason, actor, top, threshold, json_output)
        except OpenFRTError as exc:
            usage_error(str(exc))
        if thumbnails is not None:
            _write_thumbnails(gallery.store, result, thumbnails, actor)
    _print(result, json_output, thumbnails)


def _run_with_progress(search: FootageSearch, file: str, case: str, reason: str, actor: str, top: int,
                       threshold: float | None, json_output: bool) -> FootageResult:
    """Run the search under a Rich progress bar (share of the file, speed as a multiple of real time)."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TextColumn("{task.fields[speed]}"),
               TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True, disable=json_output) as bar:
        task = bar.add_task(f"searching {Path(file).name}", total=1.0, speed="")

        def update(progress: Progress) -> None:
            bar.update(task, completed=progress.share, speed=f"{progress.speed:.1f}x real time")

        return search.run(file, case_ref=case, reason=reason, actor=actor, top=top, threshold=threshold, on_progress=update)


def _write_thumbnails(store: RecordStore, result: FootageResult, folder: Path, actor: str) -> None:
    from openfrt.footage import records

    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    assert result.search_id is not None
    for number, lead in enumerate(records.get(store, result.search_id).leads, start=1):
        for kind in ("crop", "frame"):
            (folder / f"search{result.search_id}-lead{number}-{kind}.jpg").write_bytes(
                records.lead_image(store, result.search_id, lead.id, kind, actor=actor, reason="thumbnails written by search-footage"))


def _print(result: FootageResult, json_output: bool, thumbnails: Path | None) -> None:
    summary = result.summary()
    if json_output:
        print_json({"search": result.search_id, "threshold": result.threshold, **summary,
                    "review": [lead.as_dict() for lead in result.leads]})
        return
    console.print(f"footage search {result.search_id}: {summary['file']} ({_clock(result.info.duration)}), "
                  f"{result.sampling.describe()}; {summary['frames_looked_at']} frames looked at "
                  f"({summary['frames_unchanged']} more skipped as unchanged), {summary['people_searched']} people searched, "
                  f"{result.speed:.1f}x real time, review threshold {result.threshold:.4f}")
    if not result.leads:
        console.print("no one with a candidate at or above the review threshold")
    for number, lead in enumerate(result.leads, start=1):
        listed = ", ".join(f"{rank}. {subject} {similarity:.4f}" for rank, (subject, similarity) in enumerate(lead.candidates, 1))
        console.print(f"{_clock(lead.time)}  lead {number} (seen {_clock(lead.first_seen)}-{_clock(lead.last_seen)}): {listed}")
    if thumbnails is not None:
        console.print(f"thumbnails written to {thumbnails}")
    console.print("[dim]Candidates for review by a trained person, not matches.[/dim]")


def _clock(seconds: float) -> str:
    """``h:mm:ss.s`` into the file."""
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{rest:04.1f}"
