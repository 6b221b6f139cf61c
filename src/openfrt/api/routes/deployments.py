"""Deployments: planned by one user, authorised by another (an authorising officer), run by this server.

While a deployment runs here, its cameras' progress (fps, faces scanned, alerts, dropped
frames) is part of its answer, for the console's live status.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import AwareDatetime, BaseModel, Field

from openfrt.api.context import ServerContext
from openfrt.api.permissions import Permission
from openfrt.api.security import Principal, context, require
from openfrt.live.deployments import DeploymentInfo
from openfrt.live.thresholds import approval_covers
from openfrt.records.errors import RecordNotFoundError
from openfrt.records.models import DeploymentStatus
from openfrt.records.text import LONG_TEXT, SHORT_TEXT

router = APIRouter(prefix="/api", tags=["deployments"])


class NewDeployment(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    purpose: str = Field(min_length=1, max_length=LONG_TEXT)
    location: str = Field(min_length=1, max_length=SHORT_TEXT)
    watchlist: str = Field(min_length=1)
    cameras: dict[str, Annotated[str, Field(max_length=LONG_TEXT)]] = Field(
        min_length=1, description="Camera name → source: a video file on the server, an rtsp:// or http:// URL, a webcam index."
    )
    latitude: float | None = Field(None, ge=-90, le=90)
    longitude: float | None = Field(None, ge=-180, le=180)
    planned_start: AwareDatetime | None = Field(None, description="ISO 8601 with a zone, e.g. 2026-06-01T18:00+01:00.")
    planned_end: AwareDatetime | None = Field(None, description="ISO 8601 with a zone.")
    threshold: float | None = Field(None, ge=0, le=1, description="Default: the watchlist's.")


class PlanChange(BaseModel):
    """The fields to change; those left out stay as they are."""

    purpose: str | None = Field(None, min_length=1, max_length=LONG_TEXT)
    location: str | None = Field(None, min_length=1, max_length=SHORT_TEXT)
    watchlist: str | None = Field(None, min_length=1)
    cameras: dict[str, Annotated[str, Field(max_length=LONG_TEXT)]] | None = Field(
        None, min_length=1, description="Replaces every camera (give streams' credentials again)."
    )
    latitude: float | None = Field(None, ge=-90, le=90)
    longitude: float | None = Field(None, ge=-180, le=180)
    planned_start: AwareDatetime | None = Field(None, description="ISO 8601 with a zone.")
    planned_end: AwareDatetime | None = Field(None, description="ISO 8601 with a zone.")
    threshold: float | None = Field(None, ge=0, le=1, description="null: the watchlist's.")


class Justification(BaseModel):
    reason: str = Field(min_length=1, max_length=LONG_TEXT, description="Why, in the officer's words; kept in the audit log.")


class ThresholdApproval(BaseModel):
    justification: str = Field(min_length=1, max_length=2000, description="Why a threshold below the floor is necessary here.")


def deployment_payload(ctx: ServerContext, info: DeploymentInfo) -> dict[str, Any]:
    """A deployment with its cameras' progress while it runs and, while planned, its threshold
    against the floor (whether a second authorising officer must approve it)."""
    status = ctx.supervisor.status(info.name)
    live = None if status is None else [camera.__dict__ for camera in status]
    check = None
    if info.status is DeploymentStatus.planned:
        try:
            planned = ctx.deployments.threshold_check(info.name)
        except RecordNotFoundError:  # its watchlist is gone: it cannot start, and the page says why when tried
            pass
        else:
            check = {**planned.as_dict(), "approved": approval_covers(info.threshold_approval, planned), "text": planned.describe()}
    return {**info.as_dict(), "live": live, "threshold_check": check}


@router.get("/deployments", summary="All deployments, oldest first")
def list_deployments(_: Principal = Depends(require(Permission.view_deployments)),
                     ctx: ServerContext = Depends(context)) -> list[dict[str, Any]]:
    return [deployment_payload(ctx, info) for info in ctx.deployments.list()]


@router.get("/deployments/{name}", summary="A deployment, with per-camera progress while it runs")
def get_deployment(name: str, _: Principal = Depends(require(Permission.view_deployments)),
                   ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    return deployment_payload(ctx, ctx.deployments.get(name))


@router.post("/deployments", status_code=201, summary="Plan a deployment (it needs authorising before it can start)")
def create_deployment(body: NewDeployment, principal: Principal = Depends(require(Permission.plan_deployments)),
                      ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    info = ctx.deployments.create(
        body.name, purpose=body.purpose, location=body.location, watchlist=body.watchlist, actor=principal.name, cameras=body.cameras, threshold=body.threshold, latitude=body.latitude,
        longitude=body.longitude, planned_start=body.planned_start, planned_end=body.planned_end,
    )
    return deployment_payload(ctx, info)


@router.patch("/deployments/{name}", summary="Change a planned deployment; a change withdraws its authority (audited)")
def update_deployment(name: str, body: PlanChange, principal: Principal = Depends(require(Permission.plan_deployments)),
                      ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    return deployment_payload(ctx, ctx.deployments.update(name, body.model_dump(exclude_unset=True), actor=principal.name))


@router.delete("/deployments/{name}", summary="Cancel a planned deployment, for a reason (audited; nothing is published)")
def cancel_deployment(name: str, reason: str = Query(..., min_length=1, max_length=LONG_TEXT), principal: Principal = Depends(require(Permission.plan_deployments)),
                      ctx: ServerContext = Depends(context)) -> dict[str, str]:
    ctx.deployments.cancel(name, actor=principal.name, reason=reason)
    return {"status": "cancelled"}


@router.post("/deployments/{name}/authorise",
             summary="Authorise a planned deployment (as the logged-in officer, not its planner), saying why")
def authorise(name: str, body: Justification, principal: Principal = Depends(require(Permission.authorise_deployments)),
              ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    return deployment_payload(ctx, ctx.deployments.authorise(name, actor=principal.name, reason=body.reason))


@router.post("/deployments/{name}/approve-threshold",
             summary="Approve a threshold below the floor, as a second authorising officer (not its planner or authoriser)")
def approve_threshold(name: str, body: ThresholdApproval, principal: Principal = Depends(require(Permission.authorise_deployments)),
                      ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    return deployment_payload(ctx, ctx.deployments.approve_threshold(name, justification=body.justification, actor=principal.name))


@router.post("/deployments/{name}/start", summary="Start: snapshot the watchlist and run the cameras in this server")
def start(name: str, principal: Principal = Depends(require(Permission.run_deployments)),
          ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    ctx.supervisor.start(name, principal.name)
    return deployment_payload(ctx, ctx.deployments.get(name))


@router.post("/deployments/{name}/stop", summary="Stop, saying why: end the cameras, destroy the snapshot, publish the record")
def stop(name: str, body: Justification, principal: Principal = Depends(require(Permission.run_deployments)),
         ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    if name not in ctx.supervisor.running():
        raise HTTPException(422, f"deployment {name!r} is not running in this server")
    ctx.deployments.note_stop(name, actor=principal.name, reason=body.reason)
    return ctx.supervisor.stop(name, principal.name).as_dict()


@router.get("/deployments/{name}/record", summary="The deployment's published record")
def record(name: str, _: Principal = Depends(require(Permission.view_deployments)),
           ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    return ctx.deployments.record(name).as_dict()
