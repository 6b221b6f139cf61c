"""The audit log, for auditors: filtered reading, export (CSV or JSON), and verification of its hash chain."""

from __future__ import annotations

import csv
import enum
import io
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime

from openfrt.api.context import ServerContext
from openfrt.api.params import MAX_ROW_ID
from openfrt.api.permissions import Permission
from openfrt.api.security import Principal, context, require
from openfrt.live.deployments import jsonable
from openfrt.records.audit import (
    AuditAction,
    AuditEntry,
    ChainAnchor,
    list_events,
    record_event,
    verify_chain,
)

router = APIRouter(prefix="/api", tags=["audit"])
auditor = require(Permission.view_audit)


@router.get("/audit", summary="Audit entries, newest first; page with `before` (a sequence number)")
def audit_log(
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    credential: str | None = Query(None, max_length=80, description="Only entries made with this session or token, e.g. token:7."),
    since: AwareDatetime | None = Query(None, description="ISO 8601 with a zone, e.g. 2026-06-01T00:00Z."),
    until: AwareDatetime | None = Query(None, description="ISO 8601 with a zone."),
    before: int | None = Query(None, ge=1, le=MAX_ROW_ID),
    limit: int = Query(100, ge=1, le=1000),
    principal: Principal = Depends(auditor),
    ctx: ServerContext = Depends(context),
) -> list[dict[str, Any]]:
    entries = read_audit_log(ctx, principal, actor=actor, action=action, target=target, credential=credential,
                             since=since, until=until, before=before, limit=limit)
    return [jsonable(entry.as_dict()) for entry in entries]


def read_audit_log(ctx: ServerContext, principal: Principal, *, limit: int, **filters: Any) -> list[AuditEntry]:
    """Entries matching ``filters`` (actor, action, target, credential, since, until, before), newest first.

    Reading the log is itself logged, with the filters used — after the read, so that a page
    does not show its own viewing. The API and the console both read through here."""
    given = {name: value for name, value in filters.items() if value is not None}
    with ctx.store.transaction() as session:
        entries = list_events(session, limit=limit, **{("before_seq" if name == "before" else name): value for name, value in given.items()})
        record_event(session, AuditAction.audit_viewed, actor=principal.name, details=jsonable(given))
    return entries


class ExportFormat(str, enum.Enum):
    csv = "csv"
    json = "json"


#: Columns of an exported entry, in order; ``details`` is JSON text in a CSV.
EXPORT_COLUMNS = ("seq", "at", "actor", "action", "action_name", "target", "case_ref", "reason", "details", "credential",
                  "entry_hash")

#: Entries read per query while exporting (newest first, then put in order).
EXPORT_BATCH = 1000


@router.get("/audit/export", summary="Every entry matching the filters, oldest first, as a CSV or JSON download (the export is audited)",
            response_class=StreamingResponse, responses={200: {"content": {"text/csv": {}, "application/json": {}}}})
def export(
    format: ExportFormat = ExportFormat.csv,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    credential: str | None = Query(None, max_length=80, description="Only entries made with this session or token, e.g. token:7."),
    since: AwareDatetime | None = Query(None, description="ISO 8601 with a zone, e.g. 2026-06-01T00:00Z."),
    until: AwareDatetime | None = Query(None, description="ISO 8601 with a zone."),
    principal: Principal = Depends(auditor),
    ctx: ServerContext = Depends(context),
) -> StreamingResponse:
    """The whole selection is read in one transaction (a consistent snapshot) and audited, with
    the filters and the count, before the download starts."""
    given = {name: value for name, value in {"actor": actor, "action": action, "target": target, "credential": credential,
                                             "since": since, "until": until}.items() if value is not None}
    with ctx.store.transaction() as session:
        entries: list[AuditEntry] = []
        while batch := list_events(session, limit=EXPORT_BATCH, before_seq=entries[-1].seq if entries else None, **given):
            entries.extend(batch)
        record_event(session, AuditAction.audit_exported, actor=principal.name,
                     details={**jsonable(given), "format": format.value, "entries": len(entries)})
    entries.reverse()
    rows = [{**jsonable(entry.as_dict()), "action_name": action_name(entry.action)} for entry in entries]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    headers = {"Content-Disposition": f'attachment; filename="openfrt-audit-{stamp}.{format.value}"', "Cache-Control": "no-store"}
    if format is ExportFormat.json:
        return StreamingResponse(iter([json.dumps([{column: row[column] for column in EXPORT_COLUMNS} for row in rows], indent=1)]),
                                 media_type="application/json", headers=headers)
    return StreamingResponse(_csv_lines(rows), media_type="text/csv", headers=headers)


def _csv_lines(rows: list[dict[str, Any]]) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "details": json.dumps(row["details"], sort_keys=True)})
        yield out.getvalue()
        out.seek(0)
        out.truncate()
    yield out.getvalue()


def action_name(code: str) -> str:
    """An action code in words: ``subject.image_view`` → "Reference image viewed" (from the
    :class:`AuditAction` member's name); a code this version does not know stays readable too."""
    try:
        member = AuditAction(code)
    except ValueError:
        return code.replace(".", ": ").replace("_", " ")
    return member.name.replace("_", " ").capitalize()


@router.get("/audit/verify", summary="Check the hash chain and every anchor published with a deployment record: "
            "any edited or removed entry, or a log cut back, is reported")
def verify(
    anchor: list[str] = Query([], description="SEQ:HASH from an earlier verification, kept elsewhere: the entry must still be there, unchanged."),
    principal: Principal = Depends(auditor),
    ctx: ServerContext = Depends(context),
) -> dict[str, Any]:
    anchors = [ChainAnchor.parse(text) for text in anchor]
    with ctx.store.transaction() as session:
        report = verify_chain(session, anchors)
    with ctx.store.transaction() as session:
        record_event(session, AuditAction.audit_verified, actor=principal.name,
                     details={"entries": report.entries, "ok": report.ok, "problems": len(report.problems),
                              "anchors": [str(given) for given in anchors], "published_anchors": report.published_anchors})
    return report.as_dict()
