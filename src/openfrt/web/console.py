"""The operator console, served by the same process as the API.

How it is built, and why: **server-rendered Jinja2 templates with a little vanilla JavaScript,
and no npm build.**

* It works offline and on a closed police network: every file it needs ships inside the Python
  package; nothing is fetched from a CDN and there is no bundler output to keep in step.
* Nothing to build in CI or at release: ``pip install`` is the whole installation, and the
  browser tests run against exactly the files the wheel contains.
* One process and one source of truth: pages read through the same services as the API
  (``request.app.state.context``) and every *action* — enrolment, adjudication, starting a
  deployment — is a ``fetch`` to the JSON API under ``/api/``, so the console can do nothing
  the API does not allow, audit and role checks included. The session cookie authenticates
  those calls and the page's CSRF token (a ``<meta>`` tag) goes in the ``X-CSRF-Token`` header.
* The live parts are small: the alert queue listens to the API's server-sent events and
  running deployments are polled every two seconds; a framework would add more than it saves.

Pages are in :mod:`openfrt.web.pages` (officers) and :mod:`openfrt.web.transparency` (public).
"""

from __future__ import annotations

import mimetypes

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from openfrt.web import pages, transparency
from openfrt.web.rendering import STATIC_DIR, LoginRequired, PageForbidden, label, login_location, render


def install(app: FastAPI) -> None:
    """Add the console's pages, their static files and their refusals to ``app``."""
    mimetypes.add_type("application/manifest+json", ".webmanifest")  # the installable web app's manifest
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(pages.router)
    app.include_router(transparency.router)

    @app.exception_handler(LoginRequired)
    async def login_required(_request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(login_location(exc.path), status_code=303)

    @app.exception_handler(PageForbidden)
    async def forbidden(request: Request, exc: PageForbidden) -> HTMLResponse:
        return render(
            request, "message.html", exc.principal, status_code=403, title="Not permitted",
            message=f"Your role ({label(exc.principal.user.role)}) may not {label(exc.permission)}. "
                    "Ask an administrator if your duties need it.",
        )
