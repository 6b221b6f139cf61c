"""``openfrt audit``: read the audit log and check that it has not been tampered with.

``verify`` walks the whole hash chain (see :mod:`openfrt.records.audit`) and exits 1 if any
entry was edited or removed, so it can run from cron or a monitoring check; its output's head
hash, kept somewhere else, lets a later run show that the log was not rewritten wholesale.
``list`` acts as an auditor's or administrator's token (``OPENFRT_TOKEN``). ``verify`` does too
when a token is given; without one it is local administration (a monitoring job with the data
directory, which could read every hash anyway; it shows no entry's content), audited as
``local:<os user>``. Reading and verifying the log are themselves audited. Exit codes:
0 intact (or listed), 1 damage found or a bad filter (reported), 2 usage or configuration.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape

from openfrt.cli.common import (
    EXIT_INPUT_FAILED,
    HomeOption,
    JsonOption,
    console,
    err_console,
    fail,
    open_store,
    parse_time,
    print_json,
)
from openfrt.cli.identity import has_token, signed_in
from openfrt.errors import OpenFRTError
from openfrt.records import (
    AuditAction,
    AuditChainError,
    AuditEntry,
    ChainAnchor,
    InvalidRecordError,
    RecordStore,
    list_events,
    local_actor,
    record_event,
    verify_chain,
)

audit_app = typer.Typer(help="The audit log: list entries, verify its hash chain.", no_args_is_help=True)


def _anchors(texts: list[str] | None) -> list[ChainAnchor]:
    try:
        return [ChainAnchor.parse(text) for text in texts or []]
    except InvalidRecordError as exc:
        raise typer.BadParameter(str(exc), param_hint="--anchor") from None


@audit_app.command("verify")
def audit_verify(
    anchor: Annotated[list[str] | None, typer.Option(
        "--anchor", help="SEQ:HASH printed by an earlier verification and kept elsewhere: prove the log up to it was not rewritten. Repeatable.")] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Check every entry's hash and link, and that none is missing; exit 1 listing any damage.
    As OPENFRT_TOKEN's auditor or administrator, or without a token as local administration."""
    anchors = _anchors(anchor)
    with open_store(home) as store:
        actor = signed_in(store, "view_audit") if has_token() else local_actor()
        with store.transaction() as session:
            report = verify_chain(session, anchors)
        _record(
            store, AuditAction.audit_verified, actor,
            {"entries": report.entries, "ok": report.ok, "problems": len(report.problems), "head_hash": report.head_hash,
             "anchors": [str(given) for given in anchors], "published_anchors": report.published_anchors},
        )
    if json_output:
        print_json(report.as_dict())
    elif report.ok:
        console.print(f"audit log intact: {report.entries} entries, head {report.head_hash}")
        if report.published_anchors:
            console.print(f"all {report.published_anchors} anchors published with deployment records are in place")
        if report.anchor:
            console.print(f"anchor {report.anchor}: keep it outside this system; "
                          f"`openfrt audit verify --anchor {report.anchor}` later proves nothing up to it was rewritten")
    else:
        err_console.print(f"[red]audit log damaged:[/red] {len(report.problems)} problem(s) in {report.entries} entries")
        for problem in report.problems:
            err_console.print(f"  {escape(problem)}")
    if not report.ok:
        raise typer.Exit(EXIT_INPUT_FAILED)


@audit_app.command("list")
def audit_list(
    action: Annotated[str | None, typer.Option("--action", help="Only this action (e.g. search.retrospective).")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only entries by this actor.")] = None,
    target: Annotated[str | None, typer.Option("--target", help="Only entries about this record (e.g. a subject id).")] = None,
    credential: Annotated[str | None, typer.Option("--credential", help="Only entries made with this session or token (e.g. token:7).")] = None,
    since: Annotated[str | None, typer.Option("--since", help="From this ISO 8601 time (local unless a zone is given).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Before this ISO 8601 time.")] = None,
    before_seq: Annotated[int | None, typer.Option("--before-seq", help="Only entries older than this seq (next page).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many entries.")] = 100,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """List audit entries, newest first (this listing is itself audited)."""
    filters: dict[str, Any] = {"action": action, "actor": actor, "target": target, "credential": credential, "since": since,
                               "until": until, "before_seq": before_seq}
    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    with open_store(home) as store:
        reader = signed_in(store, "view_audit")
        try:
            with store.transaction() as session:
                entries = list_events(
                    session, actor=actor, action=action, target=target, credential=credential, since=start, until=end,
                    before_seq=before_seq, limit=limit,
                )
        except OpenFRTError as exc:
            fail(exc, json_output)
        shown = {name: value for name, value in filters.items() if value is not None}
        _record(store, AuditAction.audit_viewed, reader, {"filters": shown, "limit": limit, "entries": len(entries)})
    for entry in entries:
        _print_entry(entry, json_output)


def _record(store: RecordStore, action: AuditAction, actor: str, details: dict[str, Any]) -> None:
    """Audit this command. A log whose head is gone cannot take entries; that is what ``verify``
    reports, so here it is a warning rather than a second failure."""
    try:
        with store.transaction() as session:
            record_event(session, action, actor=actor, details=details)
    except AuditChainError as exc:
        err_console.print(f"[yellow]warning:[/yellow] this command was not audited: {exc}")


def _print_entry(entry: AuditEntry, json_output: bool) -> None:
    if json_output:
        print_json(entry.as_dict())
        return
    by = f"{escape(entry.actor)} ({escape(entry.credential)})" if entry.credential else escape(entry.actor)
    parts = [f"#{entry.seq} {entry.at.isoformat()} {by} [bold]{entry.action}[/bold]"]
    if entry.target:
        parts.append(f"on {escape(entry.target)}")
    if entry.case_ref:
        parts.append(f"case {escape(entry.case_ref)}")
    if entry.reason:
        parts.append(f"because {escape(entry.reason)}")
    if entry.details:
        parts.append(escape(json.dumps(entry.details, separators=(",", ":"))))
    console.print(" ".join(parts))
