"""Retrospective search of footage: start a search of a file in the footage directory, follow it,
review its leads.

A footage search is a retrospective search: the search permission, a case reference and a
reason, audited once when it ends (:mod:`openfrt.footage.records`). The file must already be
in the footage directory (``OPENFRT_FOOTAGE_DIR``) — hours of video are not uploaded through a
browser. The search runs in the background; its page polls ``GET /api/footage-searches/{id}``.
Each lead image fetched is an audited viewing, as alert images are.
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Any, Literal

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from openfrt.api.context import ServerContext
from openfrt.api.params import RecordId
from openfrt.api.permissions import Permission
from openfrt.api.security import Principal, context, require
from openfrt.footage import records
from openfrt.footage.jobs import FootageRequest
from openfrt.footage.search import FootageSearch
from openfrt.live.source_policy import SourcePolicy
from openfrt.records.text import LONG_TEXT

router = APIRouter(prefix="/api", tags=["footage"])

#: Most files listed from the footage directory.
MAX_LISTED_FILES = 500
#: What the file list offers (any file FFmpeg reads may still be named).
VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".avi", ".mov", ".ts", ".m4v", ".webm"})


class FootageSearchRequest(BaseModel):
    file: str = Field(..., min_length=1, max_length=1000, description="A video file, relative to the footage directory or absolute inside it.")
    case_ref: str = Field(..., min_length=1, max_length=200)
    reason: str = Field(..., min_length=1, max_length=LONG_TEXT)
    top: int = Field(5, ge=1, le=50)
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="Review threshold; default: the model's for 1 false candidate in 1,000 searches.")


@router.get("/footage-files", summary="Video files in the footage directory, which a footage search may read")
def footage_files(principal: Principal = Depends(require(Permission.search)), ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    folder = _policy(ctx).footage_dir.expanduser().resolve()
    files = sorted(str(path.relative_to(folder)) for path in folder.rglob("*")
                   if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file()) if folder.is_dir() else []
    return {"footage_dir": str(folder), "files": files[:MAX_LISTED_FILES]}


@router.post("/footage-searches", status_code=202, summary="Start a footage search (case reference and reason required; audited)")
def start(body: FootageSearchRequest, principal: Principal = Depends(require(Permission.search)),
          ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    policy = _policy(ctx)
    file = body.file if FilePath(body.file).is_absolute() else str(policy.footage_dir / body.file)
    search = FootageSearch(ctx.gallery, policy, workers=1, lock=ctx.vision_lock)
    search_id = ctx.footage_jobs.start(search, FootageRequest(file, body.case_ref, body.reason, body.top, body.threshold),
                                       principal.name)
    return {"id": search_id, "status": "running"}


@router.get("/footage-searches", summary="Recent footage searches, newest first")
def recent(principal: Principal = Depends(require(Permission.search)), ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    return {"searches": [_payload(ctx, info) for info in records.recent(ctx.store)]}


@router.get("/footage-searches/{search_id}", summary="A footage search: its progress while it runs, then its leads for review")
def one(search_id: RecordId, response: Response, principal: Principal = Depends(require(Permission.search)),
        ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    response.headers["Cache-Control"] = "no-store"
    return _payload(ctx, records.get(ctx.store, search_id))


@router.get("/footage-searches/{search_id}/leads/{lead_id}/{kind}", response_class=Response,
            summary="A lead's face crop, or its frame with other faces pixelated (audited)", responses={200: {"content": {"image/jpeg": {}}}})
def lead_image(search_id: RecordId, lead_id: RecordId, kind: Literal["crop", "frame"],
               principal: Principal = Depends(require(Permission.search)), ctx: ServerContext = Depends(context)) -> Response:
    data = records.lead_image(ctx.store, search_id, lead_id, kind, actor=principal.name, reason="footage search review")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


class FootageHold(BaseModel):
    reason: str = Field(..., min_length=1, max_length=LONG_TEXT)


@router.post("/footage-searches/{search_id}/hold", summary="Keep a footage search's leads past retention, for a recorded reason")
def hold(search_id: RecordId, body: FootageHold, principal: Principal = Depends(require(Permission.hold_alert_media)),
         ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    records.hold(ctx.store, search_id, actor=principal.name, reason=body.reason)
    return {"id": search_id, "held": True}


def _policy(ctx: ServerContext) -> SourcePolicy:
    return SourcePolicy.from_env(ctx.store.home)


def _payload(ctx: ServerContext, info: records.SearchInfo) -> dict[str, Any]:
    payload = info.as_dict()
    payload["file"] = FilePath(info.file).name
    progress = ctx.footage_jobs.progress(info.id)
    payload["progress"] = {"share": round(progress.share, 4), "speed": round(progress.speed, 2)} if progress else None
    return payload
