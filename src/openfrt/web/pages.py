"""The officers' pages: log-in and set-up, alerts, deployments, watchlists, subjects, search,
audit log and user accounts.

Each page reads what it shows through the server's services and renders it; what a page lets
an officer *do* is left to its script, which calls the JSON API. Pages are left out of the
OpenAPI document: it describes the API machines use, not the console's HTML.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from openfrt.api.context import ServerContext
from openfrt.api.params import MAX_ROW_ID
from openfrt.api.permissions import Permission
from openfrt.api.routes.audit import action_name, read_audit_log
from openfrt.api.routes.deployments import deployment_payload
from openfrt.api.routes.models import models_payload
from openfrt.api.routes.watchlists import watchlist_payload
from openfrt.api.security import Principal, optional_principal
from openfrt.integrations.destinations import MQTT_NAME
from openfrt.integrations.events import EventType
from openfrt.live.retention import retention_days
from openfrt.records.audit import AuditAction
from openfrt.records.errors import RecordNotFoundError
from openfrt.records.models import (
    AlertOutcome,
    AlertStatus,
    Category,
    DeliveryStatus,
    DeploymentStatus,
    PerceivedEthnicity,
    PerceivedSex,
)
from openfrt.records.users import Role
from openfrt.web.rendering import home_page, render, safe_next, server, viewer

router = APIRouter(include_in_schema=False)

#: Rows per page of the subject list and the audit log.
PAGE_SIZE = 100


def not_found(request: Request, principal: Principal, what: str, active: str) -> HTMLResponse:
    return render(request, "message.html", principal, active=active, status_code=404, title="Not found", message=what)


# -- arriving ----------------------------------------------------------------------------------


@router.get("/")
def index(request: Request) -> RedirectResponse:
    principal = optional_principal(request)
    return RedirectResponse("/login" if principal is None else home_page(principal), status_code=303)


@router.get("/login", response_model=None)
def login(request: Request, next: str | None = None, ctx: ServerContext = Depends(server)) -> Response:
    if ctx.users.count() == 0:
        return RedirectResponse("/setup", status_code=303)
    target = safe_next(next)
    principal = optional_principal(request)
    if principal is not None:
        return RedirectResponse(target or home_page(principal), status_code=303)
    return render(request, "login.html", None, title="Log in", next=target or "/")


@router.get("/setup", response_model=None)
def setup(request: Request, ctx: ServerContext = Depends(server)) -> Response:
    """The first administrator's form; once anyone exists it only points to the log-in page."""
    if ctx.users.count() > 0:
        return RedirectResponse("/login", status_code=303)
    return render(request, "setup.html", None, title="First-run set-up")


# -- alerts and deployments --------------------------------------------------------------------


@router.get("/alerts")
def alerts(request: Request, principal: Principal = Depends(viewer(Permission.view_alerts))) -> HTMLResponse:
    return render(request, "alerts.html", principal, active="/alerts", title="Alerts", outcomes=list(AlertOutcome),
                  statuses=list(AlertStatus), ethnicities=list(PerceivedEthnicity), sexes=list(PerceivedSex))


@router.get("/deployments")
def deployments(request: Request, principal: Principal = Depends(viewer(Permission.view_deployments)),
                ctx: ServerContext = Depends(server)) -> HTMLResponse:
    rows = [deployment_payload(ctx, info) for info in reversed(ctx.deployments.list())]
    may_plan = principal.can(Permission.plan_deployments) and principal.can(Permission.view_watchlists)
    watchlists = [info.name for info in ctx.gallery.watchlists() if not info.expired] if may_plan else []
    return render(request, "deployments.html", principal, active="/deployments", title="Deployments",
                  deployments=rows, watchlists=watchlists, may_plan=may_plan, retention_days=retention_days())


@router.get("/deployments/{name}")
def deployment(name: str, request: Request, principal: Principal = Depends(viewer(Permission.view_deployments)),
               ctx: ServerContext = Depends(server)) -> HTMLResponse:
    try:
        info = ctx.deployments.get(name)
    except RecordNotFoundError as exc:
        return not_found(request, principal, str(exc), "/deployments")
    record = None if info.status is DeploymentStatus.planned else ctx.deployments.record(name).as_dict()
    may_plan = info.status is DeploymentStatus.planned and principal.can(Permission.plan_deployments) and principal.can(Permission.view_watchlists)
    watchlists = [found.name for found in ctx.gallery.watchlists() if not found.expired] if may_plan else []
    if may_plan and info.watchlist not in watchlists:
        watchlists.insert(0, info.watchlist)  # shown as planned, even if it has since expired
    return render(request, "deployment.html", principal, active="/deployments", title=f"Deployment {name}",
                  deployment=deployment_payload(ctx, info), record=record, watchlists=watchlists)


# -- watchlists and subjects -------------------------------------------------------------------


@router.get("/watchlists")
def watchlists(request: Request, principal: Principal = Depends(viewer(Permission.view_watchlists)),
               ctx: ServerContext = Depends(server)) -> HTMLResponse:
    return render(request, "watchlists.html", principal, active="/watchlists", title="Watchlists",
                  watchlists=[info.as_dict() for info in ctx.gallery.watchlists()],
                  models=models_payload(ctx) if principal.can(Permission.migrate_models) else None)


@router.get("/watchlists/{name}")
def watchlist(name: str, request: Request, principal: Principal = Depends(viewer(Permission.view_watchlists)),
              ctx: ServerContext = Depends(server)) -> HTMLResponse:
    try:
        payload = watchlist_payload(ctx, name)
    except RecordNotFoundError as exc:
        return not_found(request, principal, str(exc), "/watchlists")
    return render(request, "watchlist.html", principal, active="/watchlists", title=f"Watchlist {name}",
                  watchlist=payload, categories=list(Category), policy=ctx.gallery.policy)


@router.get("/subjects")
def subjects(
    request: Request,
    q: str | None = Query(None, max_length=200),
    page: int = Query(1, ge=1, le=MAX_ROW_ID // PAGE_SIZE),
    principal: Principal = Depends(viewer(Permission.view_subjects)),
    ctx: ServerContext = Depends(server),
) -> HTMLResponse:
    found = ctx.gallery.subjects(search=q or None, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE)
    may_list = principal.can(Permission.manage_watchlists)
    return render(
        request, "subjects.html", principal, active="/subjects", title="Subjects",
        subjects=[subject.as_dict() for subject in found[:PAGE_SIZE]], more=len(found) > PAGE_SIZE, page=page, q=q or "",
        categories=list(Category), policy=ctx.gallery.policy,
        watchlists=[info.name for info in ctx.gallery.watchlists() if not info.expired] if may_list else [],
    )


@router.get("/subjects/{subject_id:path}")
def subject(subject_id: str, request: Request, principal: Principal = Depends(viewer(Permission.view_subjects)),
            ctx: ServerContext = Depends(server)) -> HTMLResponse:
    try:
        detail = ctx.gallery.subject(subject_id).as_dict()
    except RecordNotFoundError as exc:
        return not_found(request, principal, str(exc), "/subjects")
    return render(request, "subject.html", principal, active="/subjects", title=f"Subject {subject_id}", subject=detail)


@router.get("/search")
def search(request: Request, principal: Principal = Depends(viewer(Permission.search))) -> HTMLResponse:
    return render(request, "search.html", principal, active="/search", title="Search")


@router.get("/footage")
def footage(request: Request, principal: Principal = Depends(viewer(Permission.search))) -> HTMLResponse:
    return render(request, "footage.html", principal, active="/footage", title="Search footage")


# -- accountability ----------------------------------------------------------------------------


def utc_filter(text: str | None) -> datetime | None:
    """A time typed into a filter (the form says UTC), as an aware datetime."""
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


@router.get("/audit")
def audit(
    request: Request,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    credential: str | None = None,
    since: str | None = None,
    until: str | None = None,
    before: int | None = Query(None, ge=1, le=MAX_ROW_ID),
    principal: Principal = Depends(viewer(Permission.view_audit)),
    ctx: ServerContext = Depends(server),
) -> HTMLResponse:
    filters = {"actor": actor or "", "action": action or "", "target": target or "", "credential": credential or "",
               "since": since or "", "until": until or ""}
    entries: list[dict[str, Any]] = []
    problem = None
    try:
        window = utc_filter(since), utc_filter(until)
    except ValueError:
        problem = "Give times as YYYY-MM-DDTHH:MM (UTC)."
    else:
        found = read_audit_log(ctx, principal, actor=actor or None, action=action or None, target=target or None,
                               credential=credential or None, since=window[0], until=window[1], before=before, limit=PAGE_SIZE)
        entries = [entry.as_dict() for entry in found]
    chosen = {key: value for key, value in filters.items() if value}
    older = {**chosen, "before": entries[-1]["seq"]} if len(entries) == PAGE_SIZE else None
    # The API takes times with their zone; the form's are UTC.
    exported = {**chosen, **{key: moment.isoformat() for key, moment in zip(("since", "until"), window) if moment}} if problem is None else chosen
    return render(request, "audit.html", principal, active="/audit", title="Audit log", entries=entries,
                  filters=filters, chosen=chosen, exported=exported, actions=[(action.value, action_name(action.value)) for action in AuditAction],
                  users=[user.name for user in ctx.users.list()], older=older, problem=problem, paged=before is not None)


@router.get("/users")
def users(request: Request, principal: Principal = Depends(viewer(Permission.manage_users)),
          ctx: ServerContext = Depends(server)) -> HTMLResponse:
    return render(request, "users.html", principal, active="/users", title="Users",
                  users=[user.as_dict() for user in ctx.users.list()],
                  tokens=[token.as_dict() for token in ctx.users.list_tokens()], roles=list(Role))


@router.get("/integrations")
def integrations(request: Request, principal: Principal = Depends(viewer(Permission.manage_integrations)),
                 ctx: ServerContext = Depends(server)) -> HTMLResponse:
    """Webhooks, the MQTT broker and dead-lettered deliveries, for administrators."""
    destinations = [info.as_dict() for info in ctx.destinations.list()]
    return render(
        request, "integrations.html", principal, active="/integrations", title="Integrations",
        webhooks=[info for info in destinations if info["kind"] == "webhook"],
        broker=next((info for info in destinations if info["name"] == MQTT_NAME), None),
        dead=[delivery.as_dict() for delivery in ctx.destinations.deliveries(DeliveryStatus.dead, limit=PAGE_SIZE)],
        event_types=[event.value for event in EventType],
    )
