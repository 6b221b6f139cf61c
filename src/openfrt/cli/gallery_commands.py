"""``openfrt subject``, ``watchlist``, ``enrol-folder``, ``identify`` and ``search``.

Thin wrappers over :class:`openfrt.gallery.Gallery`: parse options, open the store in the data
directory (``--home`` or ``OPENFRT_HOME``), act as the user whose API token is in
``OPENFRT_TOKEN`` (:mod:`openfrt.cli.identity`), print one JSON object per line with ``--json``.
Exit codes as everywhere: 0 done, 1 an input (image, subject, record) failed and was reported,
2 usage or configuration (missing case reference, unknown watchlist, unreadable key).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.progress import Progress

from openfrt.cli.common import (
    EXIT_INPUT_FAILED,
    DetectorModelOption,
    HomeOption,
    ReasonOption,
    fail,
    open_store,
    parse_time,
    DetectorOption,
    EmbedderOption,
    JsonOption,
    MaxPixelsOption,
    build_engine,
    console,
    err_console,
    print_json,
    usage_error,
)
from openfrt.errors import OpenFRTError
from openfrt.gallery import (
    EnrolmentReport,
    FaceChoice,
    Gallery,
    ImageOutcome,
    ImageToEnrol,
    QualityPolicy,
    SubjectInfo,
    WatchlistInfo,
)
from openfrt.cli.identity import signed_in
from openfrt.gallery.matching import Candidate
from openfrt.records import Actor, Category

subject_app = typer.Typer(help="Subjects of the reference database and their reference images.", no_args_is_help=True)
watchlist_app = typer.Typer(help="Watchlists: subjects compiled for one purpose, authorised and expiring.", no_args_is_help=True)

TopOption = Annotated[int, typer.Option("--top", min=1, help="How many candidates to list.")]
CategoryOption = Annotated[Category, typer.Option("--category", help="Why the subject is on record.")]
LegalBasisOption = Annotated[
    Optional[str], typer.Option("--legal-basis", help="Legal basis for holding the images (e.g. PACE s.64A).")
]
SourceOption = Annotated[Optional[str], typer.Option("--source", help="Where the images come from (e.g. custody record ref).")]
FaceOption = Annotated[
    Optional[str],
    typer.Option("--face", help="Face to enrol when an image has several: its index (as `openfrt faces` lists) or 'largest'."),
]
MinHeightOption = Annotated[
    float, typer.Option("--min-face-height", min=0, help="Refuse faces less high than this, in pixels.")
]
MinSharpnessOption = Annotated[
    float, typer.Option("--min-sharpness", min=0, help="Refuse faces less sharp than this (blurred).")
]
ImagesArgument = Annotated[list[Path], typer.Argument(help="Image files.", show_default=False)]

DEFAULT_POLICY = QualityPolicy()


@contextmanager
def open_gallery(
    home: Path | None,
    *permissions: str,
    detector: str | None = None,
    detector_model: Path | None = None,
    embedder: str | None = None,
    max_pixels: int | None = None,
    policy: QualityPolicy | None = None,
) -> Iterator[tuple[Gallery, Actor]]:
    """The gallery in ``home`` and the signed-in user acting on it, who must have
    ``permissions`` (checked before the face engine loads). A store that cannot be opened, a
    missing or refused token and a bad engine option are usage errors."""
    with open_store(home) as store:
        actor = signed_in(store, *permissions)
        engine = build_engine(detector, detector_model, embedder, max_pixels)
        yield Gallery(store, engine, policy), actor


# -- subject ---------------------------------------------------------------------------------


@subject_app.command("add")
def subject_add(
    subject_id: Annotated[str, typer.Argument(metavar="ID", help="Subject id (e.g. a custody or case number).")],
    images: ImagesArgument,
    name: Annotated[str, typer.Option("--name", help="Display name.")],
    category: CategoryOption,
    notes: Annotated[Optional[str], typer.Option("--notes", help="Free-text notes.")] = None,
    legal_basis: LegalBasisOption = None,
    source: SourceOption = None,
    face: FaceOption = None,
    min_face_height: MinHeightOption = DEFAULT_POLICY.min_face_height_px,
    min_sharpness: MinSharpnessOption = DEFAULT_POLICY.min_sharpness,
    home: HomeOption = None,
    json_output: JsonOption = False,
    detector: DetectorOption = None,
    detector_model: DetectorModelOption = None,
    embedder: EmbedderOption = None,
    max_pixels: MaxPixelsOption = None,
) -> None:
    """Enrol reference images of a subject (all or none), creating the subject if new."""
    choice = _face_choice(face)
    subject = SubjectInfo(subject_id, name, category, notes)
    batch = [ImageToEnrol(image, str(image), legal_basis, source, face=choice) for image in images]
    policy = QualityPolicy(min_face_height, min_sharpness)
    engine = {"detector": detector, "detector_model": detector_model, "embedder": embedder, "max_pixels": max_pixels}
    with open_gallery(home, "enrol", **engine, policy=policy) as (gallery, actor):
        try:
            report = gallery.enrol(subject, batch, actor=actor)
        except OpenFRTError as exc:
            fail(exc, json_output, subject=subject_id)
    _print_report(report, json_output)
    if not report.enrolled:
        raise typer.Exit(EXIT_INPUT_FAILED)


@subject_app.command("remove")
def subject_remove(
    subject_id: Annotated[str, typer.Argument(metavar="ID", help="Subject id.")],
    reason: ReasonOption = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Delete a subject with its reference images, templates, memberships and index entries."""
    with open_gallery(home, "remove_subjects") as (gallery, actor):
        try:
            removed = gallery.remove_subject(subject_id, actor=actor, reason=reason)
        except OpenFRTError as exc:
            fail(exc, json_output, subject=subject_id)
    if json_output:
        print_json({**removed, "removed": True})
    else:
        console.print(
            f"removed subject {subject_id}: {removed['reference_images']} reference image(s), "
            f"{removed['templates']} template(s), from watchlists: {', '.join(removed['watchlists']) or 'none'}"
        )


# -- watchlist -------------------------------------------------------------------------------


@watchlist_app.command("create")
def watchlist_create(
    name: Annotated[str, typer.Argument(help="Unique watchlist name.")],
    purpose: Annotated[str, typer.Option("--purpose", help="The one purpose this watchlist is for.")],
    criteria: Annotated[Optional[str], typer.Option("--criteria", help="Criteria used to choose its subjects.")] = None,
    expires: Annotated[
        Optional[str], typer.Option("--expires", help="Expiry time, ISO 8601 (local time unless a zone is given).")
    ] = None,
    threshold: Annotated[
        Optional[float], typer.Option("--threshold", min=0.0, max=1.0, help="Alert threshold (default: the model's calibrated one).")
    ] = None,
    standing: Annotated[Optional[str], typer.Option(
        "--standing", metavar="REASON",
        help="Keep it beyond one deployment, for this reason (recorded). Without it, it is destroyed when its deployment ends.")] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
    embedder: EmbedderOption = None,
) -> None:
    """Create an empty watchlist for the current model, with you (an authorising officer) as
    its authorising officer, and show its expected accuracy."""
    expires_at = parse_time(expires, "--expires")
    with open_gallery(home, "manage_watchlists", embedder=embedder) as (gallery, actor):
        try:
            info = gallery.create_watchlist(
                name, purpose=purpose, authorised_by=actor, actor=actor,
                criteria=criteria, expires_at=expires_at, threshold=threshold, standing_reason=standing,
            )
        except OpenFRTError as exc:
            fail(exc, json_output, watchlist=name)
        _print_watchlist(info, gallery.fitness(info), json_output)


@watchlist_app.command("add")
def watchlist_add(
    name: Annotated[str, typer.Argument(help="Watchlist name.")],
    subject_ids: Annotated[list[str], typer.Argument(metavar="ID...", help="Subject ids to add.", show_default=False)],
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Add enrolled subjects to a watchlist (all or none)."""
    with open_gallery(home, "manage_watchlists") as (gallery, actor):
        try:
            before = set(gallery.watchlist(name).subjects)
            info = gallery.add_to_watchlist(name, subject_ids, actor=actor)
        except OpenFRTError as exc:
            fail(exc, json_output, watchlist=name)
    added = [subject for subject in info.subjects if subject not in before]
    if json_output:
        print_json({"watchlist": name, "added": added, "size": len(info.subjects)})
    else:
        console.print(f"watchlist {name}: added {len(added)} subject(s), now {len(info.subjects)}")


@watchlist_app.command("show")
def watchlist_show(
    name: Annotated[str, typer.Argument(help="Watchlist name.")],
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show a watchlist: purpose, authority, expiry, threshold, subjects and expected accuracy."""
    with open_gallery(home, "view_watchlists") as (gallery, _):
        try:
            info = gallery.watchlist(name)
        except OpenFRTError as exc:
            fail(exc, json_output, watchlist=name)
        _print_watchlist(info, gallery.fitness(info), json_output)


@watchlist_app.command("delete")
def watchlist_delete(
    name: Annotated[str, typer.Argument(help="Watchlist name.")],
    reason: ReasonOption = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Destroy a watchlist (its subjects stay in the reference database)."""
    with open_gallery(home, "manage_watchlists") as (gallery, actor):
        try:
            info = gallery.delete_watchlist(name, actor=actor, reason=reason)
        except OpenFRTError as exc:
            fail(exc, json_output, watchlist=name)
    if json_output:
        print_json({"watchlist": name, "deleted": True, "subjects": len(info.subjects)})
    else:
        console.print(f"deleted watchlist {name} ({len(info.subjects)} subject(s) were on it)")


# -- enrol-folder, identify, search ----------------------------------------------------------


def enrol_folder(
    watchlist: Annotated[str, typer.Argument(metavar="NAME", help="Watchlist to enrol into.")],
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="One sub-folder of images per subject.", file_okay=False)],
    category: CategoryOption = Category.other,
    legal_basis: LegalBasisOption = None,
    source: SourceOption = None,
    face: FaceOption = None,
    min_face_height: MinHeightOption = DEFAULT_POLICY.min_face_height_px,
    min_sharpness: MinSharpnessOption = DEFAULT_POLICY.min_sharpness,
    home: HomeOption = None,
    json_output: JsonOption = False,
    detector: DetectorOption = None,
    detector_model: DetectorModelOption = None,
    embedder: EmbedderOption = None,
    max_pixels: MaxPixelsOption = None,
) -> None:
    """Enrol DIR/<subject>/<images> into watchlist NAME: the sub-folder name is the subject id
    (and, with _ as spaces, its name). Each subject is all or none; failures are reported and
    the other subjects kept."""
    if not folder.is_dir():
        usage_error(f"{folder} is not a folder")
    choice = _face_choice(face)
    subjects = sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))
    policy = QualityPolicy(min_face_height, min_sharpness)
    failed = False
    engine = {"detector": detector, "detector_model": detector_model, "embedder": embedder, "max_pixels": max_pixels}
    with open_gallery(home, "enrol", "manage_watchlists", **engine, policy=policy) as (gallery, actor):
        _require_watchlist(gallery, watchlist)
        with Progress(console=err_console, transient=True) as progress:
            task = progress.add_task(f"enrolling into {watchlist}", total=len(subjects))
            for subject_dir in subjects:
                report = _enrol_subject_dir(gallery, subject_dir, watchlist, category, legal_basis, source, choice, actor)
                failed |= not report.enrolled
                if json_output:
                    print_json(report.as_dict())
                else:
                    progress.console.print(_report_line(report))
                progress.advance(task)
    if failed:
        raise typer.Exit(EXIT_INPUT_FAILED)


def identify(
    watchlist: Annotated[str, typer.Argument(metavar="NAME", help="Watchlist to search.")],
    images: ImagesArgument,
    top: TopOption = 5,
    home: HomeOption = None,
    json_output: JsonOption = False,
    detector: DetectorOption = None,
    detector_model: DetectorModelOption = None,
    embedder: EmbedderOption = None,
    max_pixels: MaxPixelsOption = None,
) -> None:
    """Search a watchlist with the largest face of each image: ranked candidates, and an alert
    when the best reaches the watchlist's threshold."""
    failed = False
    engine = {"detector": detector, "detector_model": detector_model, "embedder": embedder, "max_pixels": max_pixels}
    with open_gallery(home, "search", **engine) as (gallery, _):
        info = _require_watchlist(gallery, watchlist)
        for image in images:
            try:
                _, probe = gallery.engine.largest_face_template(image, str(image))
                result = gallery.identify(probe, info, top)
                candidates, alert, error = list(result.candidates), result.alert, None
            except OpenFRTError as exc:
                candidates, alert, error, failed = [], False, str(exc), True
            _print_candidates(str(image), candidates, error, json_output, alert=alert, threshold=info.threshold)
    if failed:
        raise typer.Exit(EXIT_INPUT_FAILED)


def search(
    images: ImagesArgument,
    case: Annotated[Optional[str], typer.Option("--case", help="Case reference (required).")] = None,
    reason: Annotated[Optional[str], typer.Option("--reason", help="Why this search is necessary (required).")] = None,
    top: TopOption = 10,
    home: HomeOption = None,
    json_output: JsonOption = False,
    detector: DetectorOption = None,
    detector_model: DetectorModelOption = None,
    embedder: EmbedderOption = None,
    max_pixels: MaxPixelsOption = None,
) -> None:
    """Retrospective search of the whole reference database: a ranked list of candidates for a
    trained person to review — never a match. Needs --case and --reason; every search is audited."""
    if not (case and case.strip() and reason and reason.strip()):
        usage_error("a retrospective search needs --case (a case reference) and --reason")
    failed = False
    engine = {"detector": detector, "detector_model": detector_model, "embedder": embedder, "max_pixels": max_pixels}
    with open_gallery(home, "search", **engine) as (gallery, actor):
        for image in images:
            try:
                _, probe = gallery.engine.largest_face_template(image, str(image))
                candidates = gallery.search(probe, case_ref=case, reason=reason, actor=actor, top=top, image=str(image))
                error = None
            except OpenFRTError as exc:
                candidates, error, failed = [], str(exc), True
            _print_candidates(str(image), candidates, error, json_output)
    if failed:
        raise typer.Exit(EXIT_INPUT_FAILED)


# -- helpers ---------------------------------------------------------------------------------


def _enrol_subject_dir(
    gallery: Gallery,
    subject_dir: Path,
    watchlist: str,
    category: Category,
    legal_basis: str | None,
    source: str | None,
    choice: FaceChoice,
    actor: Actor,
) -> EnrolmentReport:
    images = sorted(path for path in subject_dir.iterdir() if path.is_file() and not path.name.startswith("."))
    subject = SubjectInfo(subject_dir.name, subject_dir.name.replace("_", " "), category)
    batch = [ImageToEnrol(image, str(image), legal_basis, source, face=choice) for image in images]
    try:
        return gallery.enrol(subject, batch, actor=actor, watchlist=watchlist)
    except OpenFRTError as exc:
        return EnrolmentReport(subject.id, False, False, (ImageOutcome(str(subject_dir), reason="refused", detail=str(exc)),))


def _require_watchlist(gallery: Gallery, name: str) -> WatchlistInfo:
    """The watchlist a whole command works on; without it the command is mis-used (exit 2)."""
    try:
        info = gallery.watchlist(name)
    except OpenFRTError as exc:
        usage_error(str(exc))
    if info.expired:
        usage_error(f"watchlist {name!r} expired at {info.expires_at}; it must not be used")
    return info


def _face_choice(face: str | None) -> FaceChoice:
    if face is None or face == "largest":
        return face  # type: ignore[return-value]
    if face.isdigit():
        return int(face)
    usage_error(f"--face must be a face index (0, 1, ...) or 'largest', not {face!r}")


def _print_report(report: EnrolmentReport, json_output: bool) -> None:
    if json_output:
        print_json(report.as_dict())
    else:
        console.print(_report_line(report))


def _report_line(report: EnrolmentReport) -> str:
    if report.enrolled:
        return f"[green]enrolled[/green] {report.subject}: {len(report.images)} reference image(s)"
    refusals = "; ".join(f"{image.image}: {image.detail}" for image in report.images if not image.accepted)
    return f"[red]not enrolled[/red] {report.subject} (nothing stored): {refusals}"


def _print_watchlist(info: WatchlistInfo, fitness: dict[str, Any] | None, json_output: bool) -> None:
    if json_output:
        print_json({**info.as_dict(), "size": len(info.subjects), "fitness": fitness})
    else:
        expiry = info.expires_at.isoformat() if info.expires_at else "never (set one)"
        kept = f"standing: {info.standing_reason}" if info.standing_reason else "destroyed when its deployment ends"
        console.print(
            f"watchlist [bold]{info.name}[/bold]: {info.purpose}\n"
            f"  authorised by {info.authorised_by}; criteria: {info.criteria or 'not recorded'}; {kept}\n"
            f"  created {info.created_at.isoformat()}; expires {expiry}{' [red](expired)[/red]' if info.expired else ''}\n"
            f"  threshold {info.threshold:.4f} ({info.model_id}); {len(info.subjects)} subject(s)"
        )
    if fitness is None:
        err_console.print(f"[yellow]note:[/yellow] accuracy of {info.model_id} on watchlists is unmeasured (no calibration)")
    elif not fitness["meets_target"]:
        err_console.print(f"[yellow]warning:[/yellow] {fitness['message']}")
    elif not json_output:
        console.print(f"  {fitness['message']}")


def _print_candidates(
    image: str,
    candidates: list[Candidate],
    error: str | None,
    json_output: bool,
    *,
    alert: bool | None = None,
    threshold: float | None = None,
) -> None:
    """One result line: identify passes ``alert``/``threshold``; search, which never alerts, does not."""
    if json_output:
        payload: dict[str, Any] = {"image": image, "candidates": [candidate.as_dict() for candidate in candidates]}
        if alert is not None:
            payload["alert"] = alert
        print_json({**payload, "error": error})
        return
    if error:
        err_console.print(f"[red]error:[/red] {error}")
        return
    listed = ", ".join(f"{c.rank}. {c.subject} {c.similarity:.4f}" for c in candidates) or "no candidates"
    verdict = "" if alert is None else ("[red]ALERT[/red] " if alert else "no alert ") + f"(threshold {threshold:.4f}) "
    console.print(f"{image}: {verdict}{listed}")
