"""What every console page shares: who is looking, what they may open, and how a page is rendered.

A page names the one :class:`~openfrt.api.permissions.Permission` it needs, exactly as the API
endpoints do, so the console can never show more than the API would answer. Nobody logged in
is sent to the log-in page; the wrong role gets a 403 page rather than a redirect, so an
officer sees why and the refusal is not mistaken for a missing page.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from openfrt import __version__
from openfrt.api.context import ServerContext
from openfrt.api.people import People
from openfrt.api.routes.audit import action_name
from openfrt.api.permissions import Permission
from openfrt.api.security import Principal, optional_principal
from openfrt.records.passwords import PASSWORD_RULE
from openfrt.web.explain import watchlist_fitness

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"

#: Pages carry their own scripts and styles only; no inline script, no other origin. An
#: injected tag in a subject's notes or an audit entry therefore cannot run.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


#: A path on this server, with an optional query: RFC 3986 path and query characters only.
LOCAL_PATH = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*")


@dataclass(frozen=True)
class NavItem:
    path: str
    label: str
    permission: Permission | None


#: The console's sections in menu order; a role sees those it has the permission for.
NAVIGATION = (
    NavItem("/alerts", "Alerts", Permission.view_alerts),
    NavItem("/deployments", "Deployments", Permission.view_deployments),
    NavItem("/watchlists", "Watchlists", Permission.view_watchlists),
    NavItem("/subjects", "Subjects", Permission.view_subjects),
    NavItem("/search", "Search", Permission.search),
    NavItem("/footage", "Footage", Permission.search),
    NavItem("/audit", "Audit log", Permission.view_audit),
    NavItem("/users", "Users", Permission.manage_users),
    NavItem("/integrations", "Integrations", Permission.manage_integrations),
    NavItem("/transparency", "Transparency", None),
)


class LoginRequired(Exception):
    """Raised by a page for an anonymous visitor; answered with a redirect to the log-in page."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class PageForbidden(Exception):
    """Raised by a page the visitor's role may not open; answered with the 403 page."""

    def __init__(self, principal: Principal, permission: Permission) -> None:
        super().__init__(permission.value)
        self.principal = principal
        self.permission = permission


def viewer(permission: Permission) -> Callable[[Request], Principal]:
    """A page dependency admitting logged-in users whose role has ``permission``."""

    def check(request: Request) -> Principal:
        principal = optional_principal(request)
        if principal is None:
            raise LoginRequired(request.url.path)
        if not principal.can(permission):
            raise PageForbidden(principal, permission)
        return principal

    return check


def server(request: Request) -> ServerContext:
    return request.app.state.context


def navigation(principal: Principal | None) -> list[NavItem]:
    return [item for item in NAVIGATION if item.permission is None or (principal is not None and principal.can(item.permission))]


def home_page(principal: Principal) -> str:
    """The first section the role may use: where ``/`` and a fresh log-in lead."""
    return next(item.path for item in navigation(principal))


def login_location(path: str) -> str:
    return f"/login?next={quote(path, safe='/')}"


def safe_next(target: str | None) -> str | None:
    """``target`` if it is a path on this server, else None. Only the characters a URL path and
    query may hold unencoded are allowed, so no scheme, backslash, space or control character can
    make a browser read it as another site (browsers drop tabs and line breaks: ``/\t/evil``
    becomes ``//evil``), and it may not start with ``//``."""
    if target and LOCAL_PATH.fullmatch(target) and not target.startswith("//"):
        return target
    return None


def role_label(role: Any) -> str:
    return str(getattr(role, "value", role)).replace("_", " ")


def utc_time(value: datetime | str | None) -> str:
    """A time as the console shows every time: to the second, in UTC, saying so."""
    if value is None or value == "":
        return "—"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def rate(value: float | None) -> str:
    """A false-alert rate (per face scanned) as a percentage, or a dash when nobody was scanned."""
    if value is None:
        return "—"
    return f"{value * 100:.4f} %"


def label(value: Any) -> str:
    """An enum value or identifier-like word for reading: ``confirmed_match`` → ``confirmed match``."""
    if value is None:
        return "—"
    return str(getattr(value, "value", value)).replace("_", " ")


def detail(value: Any) -> str:
    """One value of an audit entry's details for reading: text as it is, lists joined, anything
    nested as compact JSON (the full entry, never cut short)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, (str, int, float)) for item in value):
        return ", ".join(map(str, value)) or "none"
    return json.dumps(value, sort_keys=True, separators=(", ", ": "))


templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
templates.env.filters.update(utc=utc_time, rate=rate, label=label, detail=detail, action_name=action_name,
                             fitness_in_words=watchlist_fitness)
templates.env.globals.update(version=__version__, password_rule=PASSWORD_RULE)


def render(
    request: Request,
    template: str,
    principal: Principal | None,
    *,
    active: str | None = None,
    status_code: int = 200,
    public: bool = False,
    **values: Any,
) -> HTMLResponse:
    """A page with the layout's context. Pages with personal data are ``no-store``, so the
    browser keeps no copy after logging out; only the public pages may be cached."""
    people = People(request.app.state.context.users)
    context = {
        "principal": principal,
        "person": people.name,
        "role": role_label(principal.user.role) if principal else None,
        "csrf_token": principal.csrf_token if principal else None,
        "nav": navigation(principal),
        "active": active,
        "can": (lambda permission: principal is not None and principal.can(Permission(permission))),
        **values,
    }
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-cache" if public else "no-store"
    return response
