"""The public transparency report: published deployment records, their totals and monthly trend.

These endpoints need no login: a deployment record holds nothing biometric (counts, place,
purpose, outcomes) and forces publish exactly these figures. The authorising officer is named by
rank and display name, never by the name they sign in with. Downloads are still audited: each
one by a logged-in user, anonymous ones counted together (:mod:`openfrt.api.downloads`).
"""

from __future__ import annotations

import io
from collections import defaultdict
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from openfrt.api.context import ServerContext
from openfrt.api.people import People
from openfrt.api.security import Principal, context, optional_principal
from openfrt.live.deployments import DeploymentRecord
from openfrt.records.audit import AuditAction, record_event
from openfrt.records.models import DeploymentStatus

router = APIRouter(prefix="/api", tags=["transparency"])


def published_records(ctx: ServerContext) -> list[DeploymentRecord]:
    """Records of every deployment that has started (running ones with their counts so far)."""
    return [ctx.deployments.record(info.name) for info in ctx.deployments.list() if info.status is not DeploymentStatus.planned]


def false_alert_rate(false_alerts: int, faces_scanned: int) -> float | None:
    """False alerts per face scanned — the figure NPL and forces report as the false alert rate."""
    return round(false_alerts / faces_scanned, 8) if faces_scanned else None


def monthly(records: list[DeploymentRecord]) -> list[dict[str, Any]]:
    months: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for record in records:
        month = months[record.started_at.strftime("%Y-%m")]
        month["deployments"] += 1
        for figure in ("faces_scanned", "alerts", "true_alerts", "false_alerts", "engagements", "arrests"):
            month[figure] += getattr(record, figure)
    return [
        {"month": month, **figures, "false_alert_rate": false_alert_rate(figures["false_alerts"], figures["faces_scanned"])}
        for month, figures in sorted(months.items())
    ]


@router.get("/records", summary="Published deployment records, a monthly summary, and adjudicated alerts per perceived group (public)")
def records(ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    found = published_records(ctx)
    people = People(ctx.users)
    rows = [
        {**record.as_dict(), "authorised_by": people.name(record.authorised_by),
         "false_alert_rate": false_alert_rate(record.false_alerts, record.faces_scanned)}
        for record in found
    ]
    groups = [{**group.as_dict(), "false_alert_share": round(group.false_alerts / group.adjudicated, 4) if group.adjudicated else None}
              for group in ctx.alerts.outcomes_by_perceived_group()]
    return {"deployments": rows, "months": monthly(found), "groups": groups}


@router.get("/records.csv", summary="Published records of ended deployments as CSV (public; downloads are audited, anonymous ones in aggregate)",
            response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def records_csv(principal: Principal | None = Depends(optional_principal), ctx: ServerContext = Depends(context)) -> Response:
    out = io.StringIO()
    rows = ctx.deployments.export_csv(out)
    if principal is None:
        ctx.public_downloads.count("csv", rows)
    else:
        with ctx.store.transaction() as session:
            record_event(session, AuditAction.records_exported, actor=principal.name, details={"format": "csv", "rows": rows})
    return Response(out.getvalue(), media_type="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="openfrt-deployment-records.csv"'})
