"""Alerts: the queue officers work through, pushed live, with adjudication and retention holds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from openfrt.api.alert_cards import alert_cards
from openfrt.api.context import ServerContext
from openfrt.api.permissions import Permission
from openfrt.api.routes.subjects import reference_response
from openfrt.api.security import Principal, context, require
from openfrt.records.models import AlertOutcome, AlertStatus, MediaKind, PerceivedEthnicity, PerceivedSex

router = APIRouter(prefix="/api", tags=["alerts"])

#: Seconds between keep-alive comments on an idle event stream (proxies drop silent connections).
HEARTBEAT_SECONDS = 15.0


class Adjudication(BaseModel):
    status: AlertStatus | None = Field(None, description="confirmed_match, false_alert or no_further_action; omit only to correct the outcome.")
    correcting: AlertStatus | None = Field(
        None, description="The verdict you saw and are replacing; omit for a pending alert. If the alert no longer stands as you saw it "
                          "(another officer got there first), 409 and nothing changes.")
    outcome: AlertOutcome
    engaged: bool | None = Field(None, description="Default: from the outcome.")
    note: str | None = None
    reason: str | None = Field(None, description="Why the verdict being corrected was wrong; required with `correcting`.")
    perceived_ethnicity: PerceivedEthnicity | None = Field(None, description="Optional, as the officer perceives it; published only as group totals.")
    perceived_sex: PerceivedSex | None = None


class Hold(BaseModel):
    reason: str = Field(min_length=1, description="The legal reason for keeping the images past retention.")


@router.get("/alerts", summary="Alerts in the order raised, each with who the subject is and why they are listed; page with `after` (an alert id) and `limit`")
def list_alerts(
    deployment: str | None = None,
    status: AlertStatus | None = None,
    after: int | None = Query(None, ge=0),
    limit: int = Query(100, ge=1, le=1000),
    _: Principal = Depends(require(Permission.view_alerts)),
    ctx: ServerContext = Depends(context),
) -> list[dict[str, Any]]:
    return alert_cards(ctx.gallery, ctx.users, ctx.alerts.list(deployment, status, after_id=after, limit=limit))


@router.get("/alerts/stream", summary="New alerts (event: alert) and changed verdicts and holds (event: alert_changed) as server-sent events; data: the alert as JSON",
            response_class=StreamingResponse)
async def stream(request: Request, _: Principal = Depends(require(Permission.view_alerts)),
                 ctx: ServerContext = Depends(context)) -> StreamingResponse:
    subscriber = ctx.feed.subscribe()

    async def events() -> AsyncIterator[str]:
        try:
            yield ": connected\n\n"
            while not await request.is_disconnected():
                try:
                    event = await asyncio.wait_for(subscriber.queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: {event['event']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"
        finally:
            ctx.feed.unsubscribe(subscriber)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.get("/alerts/{alert_id}", summary="One alert (without its images)")
def get_alert(alert_id: int, _: Principal = Depends(require(Permission.view_alerts)),
              ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    (card,) = alert_cards(ctx.gallery, ctx.users, [ctx.alerts.get(alert_id)])
    return card


@router.post("/alerts/{alert_id}/adjudication", summary="Record (or correct) the verdict and outcome, as the logged-in officer")
def adjudicate(alert_id: int, body: Adjudication, principal: Principal = Depends(require(Permission.adjudicate)),
               ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    return ctx.feed.publish_change(ctx.alerts.adjudicate(
        alert_id, outcome=body.outcome, by=principal.name, status=body.status, correcting=body.correcting, engaged=body.engaged,
        note=body.note, perceived_ethnicity=body.perceived_ethnicity, perceived_sex=body.perceived_sex, reason=body.reason,
    ))


@router.get("/alerts/{alert_id}/media/{kind}", summary="An alert image: the probe crop, or the frame with other faces pixelated (audited)",
            response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
def media(alert_id: int, kind: MediaKind, principal: Principal = Depends(require(Permission.view_alerts)),
          ctx: ServerContext = Depends(context)) -> Response:
    data = ctx.alerts.media(alert_id, kind, actor=principal.name, reason="console review")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.post("/alerts/{alert_id}/hold", summary="Keep the alert's images past retention, for a recorded reason")
def hold(alert_id: int, body: Hold, principal: Principal = Depends(require(Permission.hold_alert_media)),
         ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    return ctx.feed.publish_change(ctx.alerts.hold(alert_id, reason=body.reason, by=principal.name))


@router.delete("/alerts/{alert_id}/hold", summary="Lift a hold: the images become subject to retention again")
def release(alert_id: int, reason: str | None = None, principal: Principal = Depends(require(Permission.hold_alert_media)),
            ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    return ctx.feed.publish_change(ctx.alerts.release(alert_id, by=principal.name, reason=reason))


@router.get("/alerts/{alert_id}/reference", summary="The matched subject's first reference image, to compare with the probe (audited)",
            response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
def reference(alert_id: int, face: bool = Query(True, description="Only the enrolled face (default), or the whole photograph."),
              principal: Principal = Depends(require(Permission.view_reference_images)),
              ctx: ServerContext = Depends(context)) -> Response:
    subject = ctx.gallery.subject(ctx.alerts.get(alert_id).subject)
    if not subject.images:
        raise HTTPException(404, f"subject {subject.subject.id!r} has no reference image")
    return reference_response(ctx, subject.images[0].id, actor=principal.name, reason=f"alert {alert_id}", face=face)
