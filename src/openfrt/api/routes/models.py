"""Face models: which embedder the server uses, and moving every watchlist to another one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from openfrt.api.context import ServerContext
from openfrt.api.model_migration import MigrationBusy
from openfrt.api.permissions import Permission
from openfrt.api.security import Principal, context, require

router = APIRouter(prefix="/api", tags=["models"])


class MigrationRequest(BaseModel):
    to: str = Field(min_length=1, description="An embedder from the model list, e.g. 'sface'.")


def models_payload(ctx: ServerContext) -> dict[str, Any]:
    """The embedders this server could use, the one it uses, and the migration's state."""
    zoo = ctx.migrations.zoo
    return {
        "model_id": ctx.gallery.model_id,
        "embedder": ctx.engine.config.embedder,
        "embedders": [{"name": entry.name, "licence": entry.licence, "builtin": entry.builtin}
                      for entry in zoo.entries() if entry.kind == "embedder"],
        "migration": ctx.migrations.state.as_dict(),
    }


@router.get("/models", summary="The server's embedder, the embedders it could use, and any migration's progress")
def list_models(_: Principal = Depends(require(Permission.view_watchlists)),
                ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    return models_payload(ctx)


@router.post("/models/migrate", status_code=202,
             summary="Re-embed every reference image with another model, then move every watchlist to it (in the background)")
def migrate(body: MigrationRequest, principal: Principal = Depends(require(Permission.migrate_models)),
            ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    try:
        ctx.migrations.start(body.to, principal.name)
    except MigrationBusy as exc:
        raise HTTPException(409, str(exc)) from None
    return models_payload(ctx)
