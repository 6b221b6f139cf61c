"""Every HTTP request gets a request id (for its log lines and the ``X-Request-ID`` answer
header) and is timed per route template.

A plain ASGI middleware rather than Starlette's ``BaseHTTPMiddleware``: it leaves streaming
answers (the alert feed) alone, and its context variable reaches the endpoint, its thread
and the access log. Latency runs to the start of the answer, so a long-lived event stream
is timed like any other request. A proxy's ``X-Request-ID`` is kept when it looks like one.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openfrt.observability.logs import REQUEST_ID
from openfrt.observability.metrics import HTTP_SECONDS

REQUEST_ID_HEADER = b"x-request-id"
INCOMING_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")


class RequestObserver:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        timed = False

        async def observed(message: Message) -> None:
            nonlocal timed
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
                _observe(scope, message["status"], time.perf_counter() - started)
                timed = True
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            if not timed:  # the application failed before answering: the server answers 500
                _observe(scope, 500, time.perf_counter() - started)
            REQUEST_ID.reset(token)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER and INCOMING_ID.fullmatch(value):
            return str(value.decode())
    return uuid.uuid4().hex


def _observe(scope: Scope, status: int, seconds: float) -> None:
    HTTP_SECONDS.labels(scope["method"], route_template(scope), str(status)).observe(seconds)


def route_template(scope: dict[str, Any]) -> str:
    """The matched route's template (``/api/alerts/{alert_id}``), never the raw path; requests
    that matched no route share one label, so a scanner cannot create label values."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
