"""Alerts: the queue officers work through, pushed live, with adjudication and retention holds."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from openfrt.api.alert_cards import alert_cards
from openfrt.api.context import ServerContext
from openfrt.api.params import MAX_ROW_ID, RecordId
from openfrt.api.permissions import Permission
from openfrt.api.routes.subjects import reference_response
from openfrt.api.security import Principal, context, require, resolve_principal
from openfrt.live.alerts import AlertInfo
from openfrt.records.models import AlertOutcome, AlertStatus, MediaKind, PerceivedEthnicity, PerceivedSex
from openfrt.records.text import LONG_TEXT

router = APIRouter(prefix="/api", tags=["alerts"])

#: Seconds between keep-alive comments on an idle event stream (proxies drop silent connections).
HEARTBEAT_SECONDS = 15.0
#: An open event stream re-checks its credential this often: it ends at most this long after
#: its session or token ends or its user is disabled.
CREDENTIAL_CHECK_SECONDS = 5.0


class Adjudication(BaseModel):
    status: AlertStatus | None = Field(None, description="confirmed_match, false_alert or no_further_action; omit only to correct the outcome.")
    correcting: AlertStatus | None = Field(
        None, description="The verdict you saw and are replacing; omit for a pending alert. If the alert no longer stands as you saw it "
                          "(another officer got there first), 409 and nothing changes.")
    outcome: AlertOutcome
    engaged: bool | None = Field(None, description="Default: from the outcome.")
    note: str | None = Field(None, max_length=LONG_TEXT)
    reason: str | None = Field(None, max_length=LONG_TEXT,
                               description="Why the verdict being corrected was wrong; required with `correcting`.")
    perceived_ethnicity: PerceivedEthnicity | None = Field(None, description="Optional, as the officer perceives it; published only as group totals.")
    perceived_sex: PerceivedSex | None = None


class Hold(BaseModel):
    reason: str = Field(min_length=1, max_length=LONG_TEXT, description="The legal reason for keeping the images past retention.")


@router.get("/alerts", summary="Alerts in the order raised, each with who the subject is and why they are listed; page with `after` (an alert id) and `limit`")
def list_alerts(
    deployment: str | None = None,
    status: AlertStatus | None = None,
    after: int | None = Query(None, ge=0, le=MAX_ROW_ID),
    limit: int = Query(100, ge=1, le=1000),
    _: Principal = Depends(require(Permission.view_alerts)),
    ctx: ServerContext = Depends(context),
) -> list[dict[str, Any]]:
    return alert_cards(ctx.gallery, ctx.users, ctx.alerts.list(deployment, status, after_id=after, limit=limit))


@router.get("/alerts/stream", summary="New alerts (event: alert) and changed verdicts and holds (event: alert_changed) as server-sent events; data: the alert as JSON. "
            "The stream ends (event: signed_out) when its session or token ends or is revoked, or its user is disabled.",
            response_class=StreamingResponse)
async def stream(request: Request, principal: Principal = Depends(require(Permission.view_alerts)),
                 ctx: ServerContext = Depends(context)) -> StreamingResponse:
    subscriber = ctx.feed.subscribe()

    async def events() -> AsyncIterator[str]:
        try:
            yield ": connected\n\n"
            checked = sent = time.monotonic()
            while not await request.is_disconnected():
                try:
                    event = await asyncio.wait_for(subscriber.queue.get(), CREDENTIAL_CHECK_SECONDS)
                except TimeoutError:
                    event = None
                now = time.monotonic()
                if now - checked >= CREDENTIAL_CHECK_SECONDS:
                    if not await still_allowed(request, principal, ctx):
                        yield "event: signed_out\ndata: {}\n\n"
                        return
                    checked = now
                if event is not None:
                    yield f"event: {event['event']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"
                elif now - sent >= HEARTBEAT_SECONDS:
                    yield ": keep-alive\n\n"
                else:
                    continue
                sent = now
        finally:
            ctx.feed.unsubscribe(subscriber)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def still_allowed(request: Request, principal: Principal, ctx: ServerContext) -> bool:
    """Whether the credential that opened a stream still names the same user, with the right to
    watch alerts: a stream must not outlive a log-out, a revoked token or a disabled account."""
    now = await run_in_threadpool(resolve_principal, ctx.users, request)
    return now is not None and now.user.id == principal.user.id and now.can(Permission.view_alerts)


@router.get("/alerts/{alert_id}", summary="One alert (without its images)")
def get_alert(alert_id: RecordId, _: Principal = Depends(require(Permission.view_alerts)),
              ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    (card,) = alert_cards(ctx.gallery, ctx.users, [ctx.alerts.get(alert_id)])
    return card


@router.post("/alerts/{alert_id}/adjudication", summary="Record (or correct) the verdict and outcome, as the logged-in officer")
def adjudicate(alert_id: RecordId, body: Adjudication, principal: Principal = Depends(require(Permission.adjudicate)),
               ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    return ctx.feed.publish_change(ctx.alerts.adjudicate(
        alert_id, outcome=body.outcome, by=principal.name, status=body.status, correcting=body.correcting, engaged=body.engaged,
        note=body.note, perceived_ethnicity=body.perceived_ethnicity, perceived_sex=body.perceived_sex, reason=body.reason,
    ))


@router.get("/alerts/{alert_id}/media/{kind}", summary="An alert image: the probe crop, or the frame with other faces pixelated (audited)",
            response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
def media(alert_id: RecordId, kind: MediaKind, principal: Principal = Depends(require(Permission.view_alerts)),
          ctx: ServerContext = Depends(context)) -> Response:
    data = ctx.alerts.media(alert_id, kind, actor=principal.name, reason="console review")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.post("/alerts/{alert_id}/hold", summary="Keep the alert's images past retention, for a recorded reason")
def hold(alert_id: RecordId, body: Hold, principal: Principal = Depends(require(Permission.hold_alert_media)),
         ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    return ctx.feed.publish_change(ctx.alerts.hold(alert_id, reason=body.reason, by=principal.name))


@router.delete("/alerts/{alert_id}/hold", summary="Lift a hold: the images become subject to retention again")
def release(alert_id: RecordId, reason: str | None = Query(None, max_length=LONG_TEXT), principal: Principal = Depends(require(Permission.hold_alert_media)),
            ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    return ctx.feed.publish_change(ctx.alerts.release(alert_id, by=principal.name, reason=reason))


@router.get("/alerts/{alert_id}/reference", summary="The matched subject's first reference image, to compare with the probe (audited, "
            "with the alert as the reason); an engagement officer gets it for an alert still pending or one they adjudicated",
            response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
def reference(alert_id: RecordId, face: bool = Query(True, description="Only the enrolled face (default), or the whole photograph."),
              principal: Principal = Depends(require(Permission.view_alert_reference)),
              ctx: ServerContext = Depends(context)) -> Response:
    alert = ctx.alerts.get(alert_id)
    if not principal.can(Permission.view_reference_images) and not handles(principal, alert):
        raise HTTPException(403, f"alert {alert_id} was adjudicated by {alert.adjudicated_by}: you see the reference image only of "
                                 "an alert you handle (pending, or adjudicated by you)")
    subject = ctx.gallery.subject(alert.subject)
    if not subject.images:
        raise HTTPException(404, f"subject {subject.subject.id!r} has no reference image")
    return reference_response(ctx, subject.images[0].id, actor=principal.name, reason=f"comparison with alert {alert_id}", face=face)


def handles(principal: Principal, alert: AlertInfo) -> bool:
    """An alert an officer handles: one still waiting for a verdict, or one they decided."""
    return alert.status is AlertStatus.pending or alert.adjudicated_by == principal.name
