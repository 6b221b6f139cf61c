"""The server: the REST API under ``/api/`` and the operator console, in one FastAPI app.

:func:`create_app` opens the records store and the face engine when the app starts and closes
them (ending any running deployment properly) when it stops.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import fastapi_offline

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.formparsers import MultiPartParser

from openfrt import __version__
from openfrt.api import errors, gate
from openfrt.api.context import ServerContext
from openfrt.api.routes import (
    alerts,
    audit,
    deployments,
    footage,
    models,
    records,
    retention,
    search,
    session,
    subjects,
    users,
    watchlists,
)
from openfrt.api.routes import events, monitoring
from openfrt.api.settings import ServerSettings
from openfrt.observability.http import RequestObserver
from openfrt.web import console

log = logging.getLogger(__name__)

DESCRIPTION = """
Accountable facial recognition for policing. Every endpoint but the public transparency
records needs a session (console) or a bearer token (machines), and a role allowed to use it;
every search, change, view of a biometric image and deletion is in the hash-chained audit log.
"""


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    settings = settings or ServerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context = ServerContext(settings)
        app.state.context = context
        context.start()
        # The models and libraries loaded at start-up are ~230,000 long-lived objects; full
        # garbage collections walked them all and stalled every request for 150-335 ms under
        # load. Frozen, they are left out of collections (34 ms at most, benchmarks/api.py).
        gc.collect()
        gc.freeze()
        if (code := session.prepare_first_run(context)) is not None:
            log.warning("no users yet: create the first administrator at /setup with the code in %s "
                        "(or run `openfrt users create NAME --role admin`)", code)
        try:
            yield
        finally:
            context.close()

    app = FastAPI(title="openfrt", version=__version__, description=DESCRIPTION, lifespan=lifespan, docs_url=None, redoc_url=None)
    install_offline_docs(app)
    # Uploaded images stay in memory: the spool never rolls over to a temporary file. Memory is
    # bounded instead by the request gate, which stops every body at its limit as it streams.
    MultiPartParser.spool_max_size = sys.maxsize
    errors.install(app)

    for module in (session, users, subjects, watchlists, deployments, alerts, search, footage, audit, records, retention, models):
        app.include_router(module.router)
    app.include_router(events.router)
    app.include_router(monitoring.router)
    gate.install(app, settings)
    console.install(app)
    app.add_middleware(RequestObserver)  # outermost: times and names every request, refusals included
    return app


def install_offline_docs(app: FastAPI) -> None:
    """The OpenAPI documentation at ``/docs`` with Swagger UI served from the files the
    ``fastapi-offline`` package installs: FastAPI's default page loads it from a CDN, which a
    police network (or this project's CI) cannot reach, and which would learn who reads the docs."""
    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title="openfrt API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js", swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
        )
