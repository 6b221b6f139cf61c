"""Watchlists: created (and so authorised) by an authorising officer, searched by deployments."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime, BaseModel, Field

from openfrt.api.context import ServerContext
from openfrt.api.permissions import Permission
from openfrt.api.security import Principal, context, require
from openfrt.records.text import LONG_TEXT

router = APIRouter(prefix="/api", tags=["watchlists"])


class NewWatchlist(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    purpose: str = Field(min_length=1, max_length=LONG_TEXT)
    criteria: str | None = Field(None, max_length=LONG_TEXT, description="Who qualifies for the list, e.g. 'wanted for violent offences'.")
    expires_at: AwareDatetime | None = Field(None, description="ISO 8601 with a zone, e.g. 2026-12-31T23:00Z.")
    threshold: float | None = Field(None, ge=0, le=1, description="Default: the model's calibrated threshold.")
    standing_reason: str | None = Field(
        None, min_length=1, max_length=2000,
        description="Why the list must outlive one deployment. Without it, it is made for one deployment and destroyed when that ends.")


class Members(BaseModel):
    subjects: list[str] = Field(min_length=1)
    reason: str | None = Field(None, max_length=500, description="Why they are on this list (shown on their alerts).")


def watchlist_payload(ctx: ServerContext, name: str) -> dict[str, Any]:
    info = ctx.gallery.watchlist(name)
    return {**info.as_dict(), "fitness": ctx.gallery.fitness(info), "members": [member.as_dict() for member in ctx.gallery.members(name)]}


@router.get("/watchlists", summary="All watchlists")
def list_watchlists(_: Principal = Depends(require(Permission.view_watchlists)),
                    ctx: ServerContext = Depends(context)) -> list[dict[str, Any]]:
    return [info.as_dict() for info in ctx.gallery.watchlists()]


@router.get("/watchlists/{name}", summary="A watchlist, its members and why each is on it, and its expected accuracy (TPIR/FPIR) at its threshold and size")
def get_watchlist(name: str, _: Principal = Depends(require(Permission.view_watchlists)),
                  ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    return watchlist_payload(ctx, name)


@router.post("/watchlists", status_code=201, summary="Create a watchlist; its creator is its authorising officer")
def create_watchlist(body: NewWatchlist, principal: Principal = Depends(require(Permission.manage_watchlists)),
                     ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    ctx.gallery.create_watchlist(
        body.name, purpose=body.purpose, authorised_by=principal.name, actor=principal.name, criteria=body.criteria,
        expires_at=body.expires_at, threshold=body.threshold, standing_reason=body.standing_reason,
    )
    return watchlist_payload(ctx, body.name)


@router.post("/watchlists/{name}/members", summary="Add existing subjects (all or none)")
def add_members(name: str, body: Members, principal: Principal = Depends(require(Permission.manage_watchlists)),
                ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    ctx.gallery.add_to_watchlist(name, body.subjects, actor=principal.name, reason=body.reason)
    return watchlist_payload(ctx, name)


@router.delete("/watchlists/{name}/members/{subject_id:path}", summary="Take a subject off a watchlist (audited)")
def remove_member(name: str, subject_id: str, reason: str = Query(..., min_length=1, max_length=LONG_TEXT),
                  principal: Principal = Depends(require(Permission.manage_watchlists)),
                  ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    ctx.gallery.remove_from_watchlist(name, [subject_id], actor=principal.name, reason=reason)
    return watchlist_payload(ctx, name)


@router.delete("/watchlists/{name}", summary="Destroy a watchlist (its subjects stay in the reference database)")
def delete_watchlist(name: str, reason: str = Query(..., min_length=1, max_length=LONG_TEXT),
                     principal: Principal = Depends(require(Permission.manage_watchlists)),
                     ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    return ctx.gallery.delete_watchlist(name, actor=principal.name, reason=reason).as_dict()
