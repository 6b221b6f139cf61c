"""User accounts (administrators) and API tokens: each user creates their own; administrators
list and revoke them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from openfrt.api.context import ServerContext
from openfrt.api.params import RecordId
from openfrt.api.permissions import Permission
from openfrt.api.security import Principal, authenticated, context, require
from openfrt.records.users import Role

router = APIRouter(prefix="/api", tags=["users"])
admin = require(Permission.manage_users)


class NewUser(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    role: Role
    password: str = Field(min_length=1, max_length=1024)
    display_name: str | None = None
    rank: str | None = Field(None, max_length=60, description="Rank and number as the officer signs, e.g. 'PC 1234' or 'Supt'.")


class UserChange(BaseModel):
    display_name: str | None = Field(None, max_length=200)
    rank: str | None = Field(None, max_length=60, description="An empty string removes the rank.")


class RoleChange(BaseModel):
    role: Role


class PasswordReset(BaseModel):
    password: str = Field(min_length=1, max_length=1024, description="The new password, to give the user by a safe route.")


class NewToken(BaseModel):
    label: str = Field(min_length=1, max_length=200, description="What the token is for, e.g. 'camera gateway 3'.")


@router.get("/users", summary="All user accounts")
def list_users(_: Principal = Depends(admin), ctx: ServerContext = Depends(context)) -> list[dict[str, Any]]:
    return [user.as_dict() for user in ctx.users.list()]


@router.post("/users", status_code=201, summary="Create a user with a role")
def create_user(body: NewUser, principal: Principal = Depends(admin), ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    return ctx.users.create(body.name, body.role, body.password, actor=principal.name, display_name=body.display_name,
                            rank=body.rank).as_dict()


@router.post("/users/{name}/disable", summary="Disable a user: ends their sessions and revokes their tokens")
def disable_user(name: str, principal: Principal = Depends(admin), ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    ctx.users.disable(name, actor=principal.name)
    return ctx.users.get(name).as_dict()


@router.post("/users/{name}/unlock", summary="Unlock a user locked out by failed sign-ins (audited)")
def unlock_user(name: str, principal: Principal = Depends(admin), ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    ctx.users.unlock(name, actor=principal.name)
    return ctx.users.get(name).as_dict()


@router.patch("/users/{name}", summary="Change a user's display name or rank and number (audited)")
def update_user(name: str, body: UserChange, principal: Principal = Depends(admin), ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    return ctx.users.update(name, actor=principal.name, display_name=body.display_name, rank=body.rank).as_dict()


@router.post("/users/{name}/enable", summary="Let a disabled user sign in again (audited; old sessions and tokens stay ended)")
def enable_user(name: str, principal: Principal = Depends(admin), ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    return ctx.users.enable(name, actor=principal.name).as_dict()


@router.put("/users/{name}/role", summary="Give a user another role: their sessions end (audited)")
def change_role(name: str, body: RoleChange, principal: Principal = Depends(admin), ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    return ctx.users.set_role(name, body.role, actor=principal.name).as_dict()


@router.post("/users/{name}/password", summary="Reset a user's password: their sessions end (audited, without the password)")
def reset_password(name: str, body: PasswordReset, principal: Principal = Depends(admin),
                   ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    ctx.users.set_password(name, body.password, actor=principal.name)
    return ctx.users.get(name).as_dict()


@router.post("/users/{name}/tokens", status_code=201,
             summary="Create your own API token (shown once): only as that user, signed in with a password")
def create_token(name: str, body: NewToken, principal: Principal = Depends(authenticated),
                 ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    info, secret = ctx.users.create_token(name, body.label, actor=principal.name)
    return {**info.as_dict(), "token": secret}


@router.get("/tokens", summary="API tokens (never their secrets)")
def list_tokens(_: Principal = Depends(admin), ctx: ServerContext = Depends(context)) -> list[dict[str, Any]]:
    return [token.as_dict() for token in ctx.users.list_tokens()]


@router.delete("/tokens/{token_id}", summary="Revoke an API token")
def revoke_token(token_id: RecordId, principal: Principal = Depends(admin), ctx: ServerContext = Depends(context)) -> dict[str, str]:
    ctx.users.revoke_token(token_id, actor=principal.name)
    return {"status": "revoked"}
