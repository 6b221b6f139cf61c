"""``openfrt deployments``, ``alerts`` and ``retention``: the records of live facial recognition.

Thin wrappers over :mod:`openfrt.live.deployments`, :mod:`openfrt.live.alerts` and
:mod:`openfrt.live.retention`. They need only the records store (no face engine), so they are
quick enough for an adjudicating officer's terminal or a nightly retention job. Each acts as
the user whose API token is in ``OPENFRT_TOKEN`` (:mod:`openfrt.cli.identity`): the officer
who plans, authorises, adjudicates or holds is that user, never a name typed in. ``--json``
prints one JSON object per line. Exit codes: 0 done, 1 a record was refused or not found
(reported), 2 usage or configuration (bad option, store that cannot be opened).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape

from openfrt.cli.common import (
    HomeOption,
    JsonOption,
    ReasonOption,
    console,
    fail,
    open_store,
    parse_time,
    store_or_fail,
    print_json,
    usage_error,
)
from openfrt.cli.identity import signed_in
from openfrt.errors import OpenFRTError
from openfrt.records.vocabulary import AlertOutcome, AlertStatus, DeploymentStatus, MediaKind, PerceivedEthnicity, PerceivedSex

if TYPE_CHECKING:
    from openfrt.live.alerts import AlertInfo
    from openfrt.live.deployments import DeploymentInfo, DeploymentRecord

deployments_app = typer.Typer(help="Live deployments: planned, running, ended, and their published records.", no_args_is_help=True)
alerts_app = typer.Typer(help="Alerts raised by live deployments: adjudication, images, holds.", no_args_is_help=True)
retention_app = typer.Typer(help="Deletion of alert images past their retention period.", no_args_is_help=True)

NameArgument = Annotated[str, typer.Argument(help="Deployment name.")]
AlertIdArgument = Annotated[int, typer.Argument(metavar="ID", help="Alert id (as `openfrt alerts list` shows).")]


# -- deployments -----------------------------------------------------------------------------


@deployments_app.command("create")
def deployment_create(
    name: NameArgument,
    watchlist: Annotated[str, typer.Option("--watchlist", help="Watchlist to search (snapshotted at start).")],
    location: Annotated[str, typer.Option("--location", help="Where the cameras are (published).")],
    purpose: Annotated[str, typer.Option("--purpose", help="Why this deployment is necessary (published).")],
    camera: Annotated[
        Optional[list[str]], typer.Option("--camera", metavar="NAME=SOURCE", help="A camera and its source (URL, device, file); repeat.")
    ] = None,
    threshold: Annotated[
        Optional[float], typer.Option("--threshold", min=0.0, max=1.0, help="Alert threshold (default: the watchlist's).")
    ] = None,
    lat: Annotated[Optional[float], typer.Option("--lat", help="Latitude of the location.")] = None,
    lon: Annotated[Optional[float], typer.Option("--lon", help="Longitude of the location.")] = None,
    planned_start: Annotated[Optional[str], typer.Option("--planned-start", help="ISO 8601 (local time unless a zone is given).")] = None,
    planned_end: Annotated[Optional[str], typer.Option("--planned-end", help="ISO 8601 (local time unless a zone is given).")] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Plan a deployment (as you); another user, an authorising officer, must authorise it
    before `openfrt live --deployment NAME` can start it."""
    from openfrt.live.deployments import DeploymentService

    cameras = dict(_camera(text) for text in camera or [])
    start, end = (parse_time(text, option) for text, option in ((planned_start, "--planned-start"), (planned_end, "--planned-end")))
    with store_or_fail(home, json_output, deployment=name) as store:
        actor = signed_in(store, "plan_deployments")
        info = DeploymentService(store).create(
            name, purpose=purpose, location=location, watchlist=watchlist, actor=actor, cameras=cameras,
            threshold=threshold, latitude=lat, longitude=lon, planned_start=start, planned_end=end,
        )
    _print_deployment(info, json_output)


@deployments_app.command("authorise")
def deployment_authorise(
    name: NameArgument,
    reason: Annotated[Optional[str], typer.Option("--reason", help="Why it is necessary and proportionate (audited).")] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Authorise a planned deployment as its authorising officer (audited; not your own plan);
    it cannot start without it."""
    from openfrt.live.deployments import DeploymentService

    with store_or_fail(home, json_output, deployment=name) as store:
        actor = signed_in(store, "authorise_deployments")
        info = DeploymentService(store).authorise(name, actor=actor, reason=reason)
    _print_deployment(info, json_output)


@deployments_app.command("approve-threshold")
def deployment_approve_threshold(
    name: NameArgument,
    justification: Annotated[str, typer.Option("--justification", help="Why a threshold below the floor is necessary here.")],
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Approve a planned deployment's threshold below the floor (more than 1 false alert in
    1,000 searches at its watchlist's size), as a second authorising officer: not its planner,
    nor the officer who authorises it (audited with the justification)."""
    from openfrt.live.deployments import DeploymentService

    with store_or_fail(home, json_output, deployment=name) as store:
        actor = signed_in(store, "authorise_deployments")
        info = DeploymentService(store).approve_threshold(name, justification=justification, actor=actor)
    _print_deployment(info, json_output)


@deployments_app.command("list")
def deployment_list(
    status: Annotated[Optional[DeploymentStatus], typer.Option("--status", help="Only deployments in this state.")] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """List deployments, oldest first."""
    from openfrt.live.deployments import DeploymentService

    with open_store(home) as store:
        signed_in(store, "view_deployments")
        deployments = DeploymentService(store).list(status)
    for info in deployments:
        _print_deployment(info, json_output)


@deployments_app.command("show")
def deployment_show(name: NameArgument, home: HomeOption = None, json_output: JsonOption = False) -> None:
    """Show a deployment: plan, authority, watchlist, cameras and their counts."""
    from openfrt.live.deployments import DeploymentService

    with store_or_fail(home, json_output, deployment=name) as store:
        signed_in(store, "view_deployments")
        info = DeploymentService(store).get(name)
    _print_deployment(info, json_output)


@deployments_app.command("record")
def deployment_record(name: NameArgument, home: HomeOption = None, json_output: JsonOption = False) -> None:
    """The deployment's published record (provisional while it runs)."""
    from openfrt.live.deployments import DeploymentService

    with store_or_fail(home, json_output, deployment=name) as store:
        signed_in(store, "view_deployments")
        record = DeploymentService(store).record(name)
    _print_record(record, json_output)


@deployments_app.command("export-csv")
def deployment_export_csv(
    file: Annotated[Optional[Path], typer.Argument(metavar="[FILE]", help="Where to write (default: standard output).")] = None,
    home: HomeOption = None,
) -> None:
    """Every ended deployment's published columns as CSV, oldest first."""
    from openfrt.live.deployments import DeploymentService

    with open_store(home) as store:
        signed_in(store, "view_deployments")
        service = DeploymentService(store)
        if file is None:
            service.export_csv(sys.stdout)
            return
        with file.open("w", newline="", encoding="utf-8") as stream:
            count = service.export_csv(stream)
    console.print(f"wrote {count} deployment record(s) to {file}")


# -- alerts ----------------------------------------------------------------------------------


@alerts_app.command("list")
def alert_list(
    deployment: Annotated[Optional[str], typer.Option("--deployment", help="Only this deployment's alerts.")] = None,
    status: Annotated[Optional[AlertStatus], typer.Option("--status", help="Only alerts in this state.")] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """List alerts, oldest first (without their images)."""
    from openfrt.live.alerts import AlertService

    with store_or_fail(home, json_output, deployment=deployment) as store:
        signed_in(store, "view_alerts")
        alerts = AlertService(store).list(deployment, status)
    for alert in alerts:
        _print_alert(alert, json_output)


@alerts_app.command("adjudicate")
def alert_adjudicate(
    alert_id: AlertIdArgument,
    outcome: Annotated[AlertOutcome, typer.Option("--outcome", help="What happened.")],
    status: Annotated[
        Optional[AlertStatus], typer.Option("--status", help="The verdict (required unless correcting only the outcome).")
    ] = None,
    correcting: Annotated[
        Optional[AlertStatus],
        typer.Option("--correcting", help="The verdict you are replacing (from `alerts list`); refused if the alert no longer has it."),
    ] = None,
    engaged: Annotated[
        Optional[bool], typer.Option("--engaged/--not-engaged", help="Whether officers spoke to the person (default: from the outcome).")
    ] = None,
    note: Annotated[Optional[str], typer.Option("--note", help="Free-text note.")] = None,
    perceived_ethnicity: Annotated[
        Optional[PerceivedEthnicity], typer.Option("--perceived-ethnicity", help="Optional; published only as group totals.")
    ] = None,
    perceived_sex: Annotated[Optional[PerceivedSex], typer.Option("--perceived-sex", help="Optional; published only as group totals.")] = None,
    reason: Annotated[
        Optional[str], typer.Option("--reason", help="Why the verdict you are correcting was wrong (required with --correcting).")
    ] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Record your verdict on a pending alert, or correct one with --correcting and --reason
    (audited; never back to pending; a verdict is never replaced unseen)."""
    from openfrt.live.alerts import AlertService

    with store_or_fail(home, json_output, alert=alert_id) as store:
        actor = signed_in(store, "adjudicate")
        alert = AlertService(store).adjudicate(
            alert_id, outcome=outcome, by=actor, status=status, correcting=correcting, engaged=engaged, note=note,
            perceived_ethnicity=perceived_ethnicity, perceived_sex=perceived_sex, reason=reason,
        )
    _print_alert(alert, json_output)


@alerts_app.command("hold")
def alert_hold(
    alert_id: AlertIdArgument,
    reason: Annotated[str, typer.Option("--reason", help="Why the images must outlive retention.")],
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Keep an alert's images past the retention period until released."""
    from openfrt.live.alerts import AlertService

    with store_or_fail(home, json_output, alert=alert_id) as store:
        actor = signed_in(store, "hold_alert_media")
        alert = AlertService(store).hold(alert_id, reason=reason, by=actor)
    _print_alert(alert, json_output)


@alerts_app.command("release")
def alert_release(
    alert_id: AlertIdArgument,
    reason: ReasonOption = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Release a hold: the images are deleted at the next retention run if due."""
    from openfrt.live.alerts import AlertService

    with store_or_fail(home, json_output, alert=alert_id) as store:
        actor = signed_in(store, "hold_alert_media")
        alert = AlertService(store).release(alert_id, by=actor, reason=reason)
    _print_alert(alert, json_output)


@alerts_app.command("media")
def alert_media(
    alert_id: AlertIdArgument,
    output: Annotated[Path, typer.Option("--output", "-o", help="JPEG file to write (created readable by you only).")],
    kind: Annotated[MediaKind, typer.Option("--kind", help="The matched face, or the frame with others pixelated.")] = MediaKind.probe_crop,
    reason: ReasonOption = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Write an alert image to a file for review (every viewing is audited)."""
    from openfrt.live.alerts import AlertService

    with store_or_fail(home, json_output, alert=alert_id) as store:
        actor = signed_in(store, "view_alerts")
        data = AlertService(store).media(alert_id, kind, actor=actor, reason=reason)
    output.touch(mode=0o600)
    output.write_bytes(data)
    if json_output:
        print_json({"alert": alert_id, "kind": kind.value, "output": str(output), "bytes": len(data)})
    else:
        console.print(f"alert {alert_id}: wrote {kind.value} to {output}")


# -- retention -------------------------------------------------------------------------------


@retention_app.command("run")
def retention_run(
    days: Annotated[
        Optional[int], typer.Option("--days", min=0, help="Retention period (default: OPENFRT_ALERT_RETENTION_DAYS, else 31).")
    ] = None,
    now: Annotated[Optional[str], typer.Option("--now", help="Act as if it were this ISO 8601 time (for testing).")] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Delete alert images past the retention period, except those on hold; each deletion is audited."""
    from openfrt.live.retention import run_retention

    moment = parse_time(now, "--now")
    with open_store(home) as store:
        actor = signed_in(store, "run_retention")
        try:
            report = run_retention(store, actor=actor, days=days, now=moment)
        except OpenFRTError as exc:
            fail(exc, json_output)
    if json_output:
        print_json(report.as_dict())
    else:
        console.print(
            f"deleted {len(report.deleted)} alert image(s) captured before {report.cutoff.isoformat()} "
            f"({report.days}-day retention); kept {len(report.held)} alert(s) on hold"
        )


# -- helpers ---------------------------------------------------------------------------------


def _camera(text: str) -> tuple[str, str]:
    name, separator, source = text.partition("=")
    if not separator:
        usage_error(f"--camera {text!r} must be NAME=SOURCE (e.g. north-gate=rtsp://10.0.0.5/stream)")
    return name.strip(), source.strip()


def _print_deployment(info: DeploymentInfo, json_output: bool) -> None:
    if json_output:
        print_json(info.as_dict())
        return
    threshold = f"{info.threshold:.4f}" if info.threshold is not None else "the watchlist's"
    cameras = ", ".join(f"{camera.name} ({camera.source})" for camera in info.cameras) or "none"
    authority = f"authorised by {info.authorised_by}" if info.authorised_by else "[yellow]not yet authorised[/yellow]"
    approval = info.threshold_approval
    approved = f" (below the floor, approved by {approval['by']}: {escape(approval['justification'])})" if approval else ""
    console.print(
        f"deployment [bold]{info.name}[/bold] ({info.status.value}) at {info.location}: {info.purpose}\n"
        f"  planned by {info.planned_by or 'unrecorded'}; {authority}; watchlist {info.watchlist}; threshold {threshold}{approved}\n"
        f"  cameras: {cameras}"
    )


def _print_record(record: DeploymentRecord, json_output: bool) -> None:
    if json_output:
        print_json(record.as_dict())
        return
    console.print(
        f"deployment [bold]{record.deployment}[/bold] ({record.status.value}) at {record.location}: {record.purpose}\n"
        f"  {record.started_at.isoformat()} to {record.ended_at.isoformat() if record.ended_at else 'now'}; "
        f"authorised by {record.authorised_by}\n"
        f"  watchlist {record.watchlist} ({record.watchlist_size} subjects), threshold {record.threshold:.4f}, {record.model_id}\n"
        f"  faces scanned {record.faces_scanned}; alerts {record.alerts} (true {record.true_alerts}, false {record.false_alerts}, "
        f"no further action {record.no_further_action}, pending {record.pending_alerts})\n"
        f"  engagements {record.engagements}; arrests {record.arrests}; "
        f"frames dropped {record.frames_dropped}; gaps {record.gaps} ({record.gap_seconds:.0f} s)"
        + (f"\n  audit anchor when it ended: {record.audit_anchor}" if record.audit_anchor else "")
    )


def _print_alert(alert: AlertInfo, json_output: bool) -> None:
    if json_output:
        print_json(alert.as_dict())
        return
    verdict = alert.status.value + (f", {alert.outcome.value} by {alert.adjudicated_by}" if alert.outcome else "")
    hold = f" [yellow]held[/yellow] ({alert.hold_reason})" if alert.held_by else ""
    images = "" if alert.media else " (images deleted)"
    console.print(
        f"alert {alert.id} {alert.deployment}/{alert.camera} {alert.wall_time.isoformat()}: "
        f"{alert.subject} {alert.similarity:.4f} — {verdict}{hold}{images}"
    )
