"""``openfrt models``: list, register, check, choose, install face models, and migrate to one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from openfrt.cli.common import (
    EXIT_INPUT_FAILED,
    HomeOption,
    JsonOption,
    console,
    err_console,
    fail,
    print_json,
    usage_error,
)
from openfrt.config import home_dir
from openfrt.errors import OpenFRTError

if TYPE_CHECKING:
    from openfrt.vision.zoo import ModelEntry, ModelZoo

app = typer.Typer(help="List, register, choose and install face models; migrate watchlists to a model.", no_args_is_help=True)


def _zoo(home: Path | None) -> ModelZoo:
    from openfrt.vision.zoo import ModelZoo

    if home is not None:
        os.environ["OPENFRT_HOME"] = str(home)  # so engines built later in this process agree
    return ModelZoo(home_dir(home))


def _entry_json(zoo: ModelZoo, entry: ModelEntry) -> dict[str, object]:
    return {
        "name": entry.name,
        "kind": entry.kind,
        "plugin": entry.plugin,
        "source": entry.source,
        "licence": entry.licence,
        "builtin": entry.builtin,
        "ready": zoo.is_ready(entry),
        "default": zoo.default(entry.kind) == entry.name,
        "sha256": entry.options.get("sha256"),
    }


@app.command("list")
def list_models(home: HomeOption = None, json_output: JsonOption = False) -> None:
    """Every model: kind, where it comes from, its licence, and whether it is ready to use."""
    zoo = _zoo(home)
    rows = [_entry_json(zoo, entry) for entry in zoo.entries()]
    if json_output:
        for row in rows:
            print_json(row)
        return
    table = Table(title="Face models (* = default)")
    for column in ("name", "kind", "runs on", "source", "licence", "ready"):
        table.add_column(column, overflow="fold")
    for row in rows:
        name = f"{row['name']}{' *' if row['default'] else ''}"
        ready = "[green]yes[/green]" if row["ready"] else "[red]no[/red]"
        table.add_row(name, str(row["kind"]), str(row["plugin"]), str(row["source"]), str(row["licence"]), ready)
    console.print(table)


@app.command("add")
def add_model(
    name: Annotated[str, typer.Argument(help="Name to register the model under.")],
    path: Annotated[Path, typer.Argument(help="ONNX file, or OpenVINO .xml with its .bin beside it.")],
    kind: Annotated[Optional[str], typer.Option("--kind", help="embedder or detector (default: guessed).")] = None,
    sha256: Annotated[Optional[str], typer.Option("--sha256", help="Refuse the file unless it has this SHA-256.")] = None,
    family: Annotated[
        Optional[str], typer.Option("--family", help="Embedder family: arcface, sface or intel-reid.")
    ] = None,
    licence: Annotated[str, typer.Option("--licence", help="The model's licence, shown in 'models list'.")] = "as supplied by the user",
    check_faces: Annotated[
        Optional[Path],
        typer.Option("--check-faces", file_okay=False, help="Labelled photos <DIR>/<person>/<image> to prove an embedder on "
                      "(default: the store's reference images when it holds enough people, else faces rendered offline)."),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Register a model file; its checksum is recorded and verified whenever it is loaded, and an
    embedder must first prove that it separates faces (same face well above different faces)."""
    from openfrt.vision.model_check import folder_check_faces
    from openfrt.vision.zoo import guess_kind

    if kind not in (None, "embedder", "detector"):
        raise typer.BadParameter("must be 'embedder' or 'detector'", param_hint="--kind")
    zoo = _zoo(home)
    try:
        faces = None
        if (kind or (guess_kind(path) if path.is_file() else None)) == "embedder":
            faces = folder_check_faces(check_faces) if check_faces else _reference_faces(zoo.home, path)
        entry = zoo.add(name, path, kind, sha256, family, licence, check_faces=faces)  # type: ignore[arg-type]
    except OpenFRTError as exc:
        fail(exc, json_output=False)
    console.print(f"registered {entry.kind} [bold]{entry.name}[/bold] ({entry.plugin}, sha256 {entry.options['sha256'][:16]}…)")
    if entry.check:
        console.print(f"model check: d' {entry.check['d_prime']:.2f} (needs {entry.check['min_d_prime']:g}) on {entry.check['source']}")


def _reference_faces(home: Path, path: Path) -> object:
    """The store's reference images as check faces, if a store exists here and holds enough people:
    registering a model file is local administration (audited as ``local:<os user>``), like the
    data directory and key file it reads them with."""
    from openfrt.config import database_url
    from openfrt.gallery.model_check import reference_check_faces
    from openfrt.records import RecordStore, local_actor

    url = database_url(home)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return None  # a fresh install: nothing enrolled, and no store is created just to look
    with RecordStore.open(home) as store:
        return reference_check_faces(store, actor=local_actor(), purpose=f"check model file {path.name} before registering it")


@app.command("use")
def use_model(name: Annotated[str, typer.Argument(help="A model from 'openfrt models list'.")], home: HomeOption = None) -> None:
    """Make a model the default detector or embedder (to move watchlists to an embedder, use 'models migrate')."""
    try:
        entry = _zoo(home).use(name)
    except OpenFRTError as exc:
        fail(exc, json_output=False)
    console.print(f"default {entry.kind} is now [bold]{entry.name}[/bold]")
    if entry.kind == "embedder":
        console.print(f"watchlists keep the model they were built with; to move them to {entry.name}, "
                      f"run [bold]openfrt models migrate --to {entry.name}[/bold]")


@app.command("migrate")
def migrate(
    to: Annotated[str, typer.Option("--to", help="The embedder to move every reference image and watchlist to.")],
    status_only: Annotated[bool, typer.Option("--status", help="Only say how far a migration to this model has got.")] = False,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Re-embed every stored reference image with another model, then move every watchlist to it.

    Each subject is all or nothing; old templates keep serving until every image has a new one;
    an interrupted run continues where it stopped when run again. Audited. On completion the
    model becomes the default embedder and the old templates are deleted. It changes every
    watchlist, so it acts as an authorising officer's token (permission ``migrate_models``), as
    the server's migration endpoint does.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from openfrt.cli.common import open_store
    from openfrt.gallery.migration import ModelMigration
    from openfrt.cli.identity import signed_in
    from openfrt.vision import EngineConfig, FaceEngine

    zoo = _zoo(home)
    try:
        if zoo.get(to).kind != "embedder":
            usage_error(f"{to!r} is a detector; migrate to an embedder")
        engine = FaceEngine(EngineConfig.from_env(embedder=to), zoo)
    except OpenFRTError as exc:
        usage_error(str(exc))
    with open_store(zoo.home) as store:
        actor = signed_in(store, "migrate_models")
        migration = ModelMigration(store, engine)
        if status_only:
            _print_status(migration.status().as_dict(), json_output)
            return
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=err_console, transient=True) as progress:
            task = progress.add_task(f"re-embedding with {to}", total=None)
            report = migration.run(actor=actor, progress=lambda done, total, _: progress.update(task, completed=done, total=total))
    if report.completed:
        zoo.use(to)
    payload = report.as_dict()
    if json_output:
        print_json(payload)
    else:
        _print_report(to, payload)
    if not report.completed:
        raise typer.Exit(EXIT_INPUT_FAILED)


def _print_status(status: dict[str, object], json_output: bool) -> None:
    if json_output:
        print_json(status)
        return
    console.print(
        f"{status['model_id']}: {status['subjects_done']}/{status['subjects']} subjects, {status['images_done']}/{status['images']} "
        f"reference images re-embedded; watchlists still on another model: {', '.join(status['watchlists_on_other_models']) or 'none'}"  # type: ignore[arg-type]
    )


def _print_report(model: str, report: dict[str, object]) -> None:
    console.print(f"re-embedded {report['reembedded']} subject(s) with {report['model_id']}")
    for subject, reason in report["refused"].items():  # type: ignore[attr-defined]
        err_console.print(f"[red]not migrated:[/red] {subject}: {reason}")
    if report["completed"]:
        for name, change in report["watchlists"].items():  # type: ignore[attr-defined]
            console.print(f"watchlist {name}: {change['from']} -> {report['model_id']}, threshold {change['threshold_from']} -> {change['threshold_to']}")
        console.print(f"migration complete: {report['removed_templates']} old templates deleted; default embedder is now [bold]{model}[/bold]")
    else:
        err_console.print("migration incomplete: watchlists keep their old templates; fix the subjects above and run it again")


@app.command("install")
def install_model(name: Annotated[str, typer.Argument(help="A known model, e.g. sface or yunet.")], home: HomeOption = None) -> None:
    """Download a known model from its official address (needs internet), checked against a pinned SHA-256."""
    try:
        with console.status(f"downloading {name}…"):
            entry = _zoo(home).install(name)
    except OpenFRTError as exc:
        fail(exc, json_output=False)
    console.print(f"installed and registered {entry.kind} [bold]{entry.name}[/bold]")
