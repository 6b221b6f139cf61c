"""Who is asking, and may they: sessions for people, bearer tokens for machines, CSRF for both.

* People log in with a password and get a session cookie (HttpOnly, SameSite=Strict). Every
  request that changes something must also carry the session's CSRF token in the
  ``X-CSRF-Token`` header; the console's pages hold it, another site cannot read it. The
  request gate (:mod:`openfrt.api.gate`) checks it, and refuses anonymous calls, before any
  request body is read.
* Machines send ``Authorization: Bearer ofrt_…``; a token acts as the user it belongs to, with
  that user's role. Headers are not sent by browsers on their own, so no CSRF check is needed.
* Every audit entry a request causes names the session or token it came with
  (:attr:`Principal.name` carries it to the services).
* Every endpoint depends on :func:`require` with one :class:`Permission`: no credentials is
  401, the wrong role is 403.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request
from starlette.requests import HTTPConnection

from openfrt.api.context import ServerContext
from openfrt.api.permissions import Permission, can
from openfrt.records.audit import Actor
from openfrt.records.errors import AuthenticationError
from openfrt.records.users import UserInfo, UserService

SESSION_COOKIE = "openfrt_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    """The authenticated user behind a request, and how they proved it."""

    user: UserInfo
    via: str  # "session" or "token"
    csrf_token: str | None = None
    #: ``session:<id>`` or ``token:<id>``, recorded with every audit entry the request causes.
    credential: str | None = None

    @property
    def name(self) -> Actor:
        """The user's name, as the actor of the audit entries this request causes: it carries
        the credential along, so every service call that audits records it."""
        return Actor(self.user.name, self.credential)

    def can(self, permission: Permission) -> bool:
        return can(self.user.role, permission)


def context(request: Request) -> ServerContext:
    return request.app.state.context


def optional_principal(request: Request) -> Principal | None:
    """The request's user, or None when it carries no valid credentials (a bad token is None too;
    :func:`authenticated` turns that into 401). The request gate has usually resolved it already."""
    if not hasattr(request.state, "principal"):
        request.state.principal = resolve_principal(context(request).users, request)
    return request.state.principal


def resolve_principal(users: UserService, request: HTTPConnection) -> Principal | None:
    """Who the request's credentials (bearer token, else session cookie) name, from its headers
    alone: callable before anything has read the body."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    try:
        if scheme.lower() == "bearer" and secret:
            token = users.token_credential(secret.strip())
            return Principal(token.user, "token", credential=token.label)
        if (cookie := request.cookies.get(SESSION_COOKIE)) is not None:
            session = users.session_credential(cookie)
            return Principal(session.user, "session", session.csrf_token, session.label)
    except AuthenticationError:
        pass
    return None


def authenticated(principal: Principal | None = Depends(optional_principal)) -> Principal:
    """The logged-in user, or 401. (A cookie session's changes were already refused by the
    request gate without their CSRF token.)"""
    if principal is None:
        raise HTTPException(401, "authentication required", headers={"WWW-Authenticate": "Bearer"})
    return principal


def require(permission: Permission) -> Callable[..., Principal]:
    """A dependency admitting only users whose role has ``permission``."""

    def check(principal: Principal = Depends(authenticated)) -> Principal:
        if not principal.can(permission):
            raise HTTPException(403, f"role {principal.user.role.value} may not {permission.value.replace('_', ' ')}")
        return principal

    return check
