"""Who is asking, and may they: sessions for people, bearer tokens for machines, CSRF for both.

* People log in with a password and get a session cookie (HttpOnly, SameSite=Strict). Every
  request that changes something must also carry the session's CSRF token in the
  ``X-CSRF-Token`` header; the console's pages hold it, another site cannot read it.
* Machines send ``Authorization: Bearer ofrt_…``; a token acts as the user it belongs to, with
  that user's role. Headers are not sent by browsers on their own, so no CSRF check is needed.
* Every audit entry a request causes names the session or token it came with
  (:attr:`Principal.name` carries it to the services).
* Every endpoint depends on :func:`require` with one :class:`Permission`: no credentials is
  401, the wrong role is 403.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request

from openfrt.api.context import ServerContext
from openfrt.api.permissions import Permission, can
from openfrt.records.audit import Actor
from openfrt.records.errors import AuthenticationError
from openfrt.records.users import UserInfo

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
    :func:`authenticated` turns that into 401)."""
    if hasattr(request.state, "principal"):
        return request.state.principal
    users = context(request).users
    principal: Principal | None = None
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    try:
        if scheme.lower() == "bearer" and secret:
            token = users.token_credential(secret.strip())
            principal = Principal(token.user, "token", credential=token.label)
        elif (cookie := request.cookies.get(SESSION_COOKIE)) is not None:
            session = users.session_credential(cookie)
            principal = Principal(session.user, "session", session.csrf_token, session.label)
    except AuthenticationError:
        principal = None
    request.state.principal = principal
    return principal


def authenticated(request: Request, principal: Principal | None = Depends(optional_principal)) -> Principal:
    if principal is None:
        raise HTTPException(401, "authentication required", headers={"WWW-Authenticate": "Bearer"})
    if principal.via == "session" and request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not (principal.csrf_token and hmac.compare_digest(sent, principal.csrf_token)):
            raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header")
    return principal


def require(permission: Permission) -> Callable[..., Principal]:
    """A dependency admitting only users whose role has ``permission``."""

    def check(principal: Principal = Depends(authenticated)) -> Principal:
        if not principal.can(permission):
            raise HTTPException(403, f"role {principal.user.role.value} may not {permission.value.replace('_', ' ')}")
        return principal

    return check
