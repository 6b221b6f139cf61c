"""Running retention on demand (it also runs from ``openfrt retention run`` on a schedule)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from openfrt.api.context import ServerContext
from openfrt.api.permissions import Permission
from openfrt.api.security import Principal, context, require
from openfrt.live.retention import run_retention

router = APIRouter(prefix="/api", tags=["retention"])


@router.post("/retention/run", summary="Delete alert images past retention (unless held); each deletion is audited")
def run(principal: Principal = Depends(require(Permission.run_retention)), ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    return run_retention(ctx.store, actor=principal.name).as_dict()
