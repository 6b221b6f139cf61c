"""Logging in and out, who am I, and the first-run set-up of the first administrator.

On a fresh data directory there are no users. The server then writes a one-time set-up code
to ``<home>/setup-code`` (mode 0600) and logs only that file's path — never a password or the
code — so whoever can read the server's files (the person installing it) creates the first
administrator, in the console's set-up page or with ``openfrt users create``.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field

from openfrt.api.context import ServerContext
from openfrt.api.permissions import ROLE_PERMISSIONS
from openfrt.api.security import SESSION_COOKIE, Principal, authenticated, context
from openfrt.records.audit import Actor
from openfrt.records.users import Role

router = APIRouter(prefix="/api", tags=["session"])

SETUP_CODE_FILE = "setup-code"


class Login(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)


class FirstAdmin(BaseModel):
    code: str = Field(min_length=1)
    name: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)
    display_name: str | None = None


def me_payload(principal: Principal) -> dict[str, Any]:
    return {**principal.user.as_dict(), "permissions": sorted(p.value for p in ROLE_PERMISSIONS[principal.user.role]),
            "csrf_token": principal.csrf_token}


@router.post("/session", summary="Log in: sets the session cookie and returns the CSRF token")
def login(body: Login, request: Request, response: Response, ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    user = ctx.users.authenticate(body.name, body.password)
    token, csrf = ctx.users.create_session(user, timedelta(hours=ctx.settings.session_hours))
    set_session_cookie(response, token, ctx)
    return me_payload(Principal(user, "session", csrf))


@router.delete("/session", summary="Log out: ends the session")
def logout(request: Request, response: Response, principal: Principal = Depends(authenticated),
           ctx: ServerContext = Depends(context)) -> dict[str, str]:
    if (cookie := request.cookies.get(SESSION_COOKIE)) is not None:
        ctx.users.end_session(cookie)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return {"status": "logged out"}


@router.get("/me", summary="The logged-in user, their role and permissions")
def me(principal: Principal = Depends(authenticated)) -> dict[str, Any]:
    return me_payload(principal)


@router.get("/setup", summary="Whether the first administrator still has to be created")
def setup_status(ctx: ServerContext = Depends(context)) -> dict[str, bool]:
    return {"needed": ctx.users.count() == 0}


@router.post("/setup", status_code=201, summary="Create the first administrator with the one-time set-up code")
def setup(body: FirstAdmin, response: Response, ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    path = setup_code_path(ctx)
    if ctx.users.count() > 0 or not path.exists():
        raise HTTPException(409, "set-up is done: log in, or ask an administrator for an account")
    if not hmac.compare_digest(body.code.strip(), path.read_text().strip()):
        raise HTTPException(403, "wrong set-up code (see the setup-code file in the data directory)")
    user = ctx.users.create(body.name, Role.admin, body.password, actor=Actor("setup", "setup-code"), display_name=body.display_name)
    path.unlink(missing_ok=True)
    token, csrf = ctx.users.create_session(user, timedelta(hours=ctx.settings.session_hours))
    set_session_cookie(response, token, ctx)
    return me_payload(Principal(user, "session", csrf))


def set_session_cookie(response: Response, token: str, ctx: ServerContext) -> None:
    response.set_cookie(
        SESSION_COOKIE, token, max_age=int(ctx.settings.session_hours * 3600), httponly=True, samesite="strict",
        secure=ctx.settings.secure_cookies, path="/",
    )


def setup_code_path(ctx: ServerContext) -> Path:
    return ctx.store.home / SETUP_CODE_FILE


def prepare_first_run(ctx: ServerContext) -> Path | None:
    """With no users yet, write a fresh one-time set-up code (readable by the owner only) and
    return its path; otherwise remove any stale code and return None."""
    path = setup_code_path(ctx)
    if ctx.users.count() > 0:
        path.unlink(missing_ok=True)
        return None
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_text(secrets.token_urlsafe(18) + "\n")
    return path
