"""The server's front door: who is asking is settled before a single byte of a request body is read.

FastAPI reads (and Starlette spools) a request body *before* route dependencies run, so a
check in a dependency comes too late: an anonymous client could make the server parse, buffer
or write to disk whatever it sent before being told 401. This pure ASGI middleware runs first:

* it resolves the credential (session cookie or bearer token) from the headers alone, and
  refuses an anonymous request to any API operation that is not public (401), and a cookie
  session's change without its CSRF token (403), without reading the body;
* it caps the body by who is asking and what it is — a few kilobytes anonymously (logging in),
  a megabyte of JSON, the upload limit for a multipart upload — counting bytes as they arrive
  whatever the transfer encoding (Starlette's :class:`RequestBodyLimitResponder`), so a chunked
  body is stopped at the limit with 413 just like one that declares its length;
* it refuses JSON whose text is not valid Unicode (a lone surrogate such as ``"\\ud800"``)
  with 422, before any handler could fail on it.

A refusal closes the connection, so a client still sending is cut off rather than drained.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.middleware.body_limit import RequestBodyLimitResponder
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openfrt.api.security import CSRF_HEADER, SAFE_METHODS, Principal, resolve_principal
from openfrt.api.settings import ServerSettings

#: The API operations anyone may call: logging in, first-run set-up and the transparency report.
#: Every other API operation is refused to anonymous callers here, before its body is read
#: (its own dependencies refuse them again); a new public operation must be added here.
PUBLIC_OPERATIONS = frozenset({
    ("POST", "/api/session"), ("GET", "/api/setup"), ("POST", "/api/setup"),
    ("GET", "/api/records"), ("HEAD", "/api/records"), ("GET", "/api/records.csv"), ("HEAD", "/api/records.csv"),
})

#: Largest body an anonymous client may send: a log-in or the first administrator's set-up.
ANONYMOUS_BODY_BYTES = 16 * 1024
#: Largest JSON body: every JSON operation takes a few fields of text.
JSON_BODY_BYTES = 1024 * 1024
#: Room for a multipart upload's form fields and part headers beside its images.
MULTIPART_OVERHEAD_BYTES = 1024 * 1024


class RequestGate:
    """Authenticate, then limit and check the body, before the application sees the request."""

    def __init__(self, app: ASGIApp, *, settings: ServerSettings) -> None:
        self.app = app
        self.upload_bytes = settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        principal: Principal | None = None
        if scope["path"].startswith("/api/"):
            request = Request(scope)
            principal = await run_in_threadpool(resolve_principal, scope["app"].state.context.users, request)
            scope.setdefault("state", {})["principal"] = principal
            if refusal := self.refusal(request, principal):
                await refusal(scope, receive, send)
                return
        limit = self.body_limit(scope, principal)
        if is_json(scope):
            receive = await checked_json(scope, receive, send, limit)
            if receive is None:
                return
        await RequestBodyLimitResponder(self.app, limit)(scope, receive, send)

    def refusal(self, request: Request, principal: Principal | None) -> JSONResponse | None:
        if (request.method, request.url.path) in PUBLIC_OPERATIONS:
            return None  # they act as nobody, so a session's CSRF token is not needed either
        if principal is None:
            return refuse(401, "authentication required", {"WWW-Authenticate": "Bearer"})
        if principal.via == "session" and request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not (principal.csrf_token and hmac.compare_digest(sent, principal.csrf_token)):
                return refuse(403, f"missing or wrong {CSRF_HEADER} header")
        return None

    def body_limit(self, scope: Scope, principal: Principal | None) -> int:
        if principal is None:
            return ANONYMOUS_BODY_BYTES
        content_type = Request(scope).headers.get("content-type", "")
        return self.upload_bytes if content_type.lower().startswith("multipart/form-data") else JSON_BODY_BYTES


def refuse(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An early answer; ``Connection: close`` so the server stops reading whatever follows."""
    return JSONResponse({"detail": detail}, status_code=status, headers={**(headers or {}), "Connection": "close"})


def is_json(scope: Scope) -> bool:
    content_type = Request(scope).headers.get("content-type", "").split(";")[0].strip().lower()
    return content_type == "application/json" or content_type.endswith("+json")


async def checked_json(scope: Scope, receive: Receive, send: Send, limit: int) -> Receive | None:
    """Read a JSON body (at most ``limit`` bytes) and refuse it if its text holds a lone
    surrogate; returns a ``receive`` that replays the body to the application, or None when
    an answer (413 or 422) was sent instead."""
    declared = Request(scope).headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        await refuse(413, f"request body larger than {limit} bytes")(scope, receive, send)
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return replay(chunks, message)
        size += len(message.get("body", b""))
        if size > limit:
            await refuse(413, f"request body larger than {limit} bytes")(scope, receive, send)
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    try:
        document = json.loads(b"".join(chunks))
    except ValueError:
        return replay(chunks)  # not JSON: the application answers with its own 422
    if any(not is_unicode(text) for text in strings(document)):
        await refuse(422, "the JSON holds text that is not valid Unicode (a lone surrogate code point)")(scope, receive, send)
        return None
    return replay(chunks)


def replay(chunks: list[bytes], final: Message | None = None) -> Receive:
    """A ``receive`` that hands the application the body already read, then ``final`` (e.g. a
    disconnect) or nothing more."""
    messages = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]
    if final is not None:
        messages = [final]

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        return {"type": "http.disconnect"}

    return receive


def strings(value: Any) -> Iterator[str]:
    """Every string in a parsed JSON document, object keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def install(app: FastAPI, settings: ServerSettings) -> None:
    """Put the gate in front of ``app``."""
    app.add_middleware(RequestGate, settings=settings)
