"""openfrt's own errors as HTTP answers: the message a CLI user would see, with a fitting status.

Refused input is described, never repeated: a validation error names the field and the rule
it broke but not the value, which may be megabytes long, a password typed in the wrong box, or
markup meant for whoever reads the answer.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from openfrt.errors import ImageError, ModelMismatchError, OpenFRTError
from openfrt.live.alerts import AdjudicationConflictError
from openfrt.live.deployments import DeploymentNotRunningError
from openfrt.live.sources import SourceError
from openfrt.records.errors import (
    AuthenticationError,
    DuplicateRecordError,
    EnrolmentRefused,
    InvalidRecordError,
    NotPermittedError,
    RecordNotFoundError,
    WatchlistExpiredError,
)
from openfrt.records.throttle import AccountLocked, SignInThrottled

STATUS_FOR: tuple[tuple[type[OpenFRTError], int], ...] = (
    (SignInThrottled, 429),
    (AccountLocked, 423),
    (AuthenticationError, 401),
    (NotPermittedError, 403),
    (RecordNotFoundError, 404),
    (DuplicateRecordError, 409),
    (DeploymentNotRunningError, 409),
    (AdjudicationConflictError, 409),
    (WatchlistExpiredError, 409),
    (ModelMismatchError, 409),
    (EnrolmentRefused, 422),
    (ImageError, 422),
    (InvalidRecordError, 422),
    (SourceError, 422),
)


#: Longest piece of a field's location repeated in an answer (a location can be a JSON key the
#: client chose).
LOCATION_PART_CHARS = 64


def status_for(error: OpenFRTError) -> int:
    return next((status for kind, status in STATUS_FOR if isinstance(error, kind)), 400)


def install(app: FastAPI) -> None:
    @app.exception_handler(OpenFRTError)
    async def openfrt_error(_request: Request, exc: OpenFRTError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, SignInThrottled) else None
        return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, status_code=status_for(exc), headers=headers)


    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": [described(error) for error in exc.errors()]}, status_code=422)


def described(error: dict[str, Any]) -> dict[str, Any]:
    """A validation error without the value that caused it (pydantic's ``input``)."""
    location = [part if isinstance(part, int) else str(part)[:LOCATION_PART_CHARS] for part in error.get("loc", ())]
    limits = {name: value for name, value in (error.get("ctx") or {}).items() if isinstance(value, (int, float))}
    return {"loc": location, "msg": error.get("msg", "invalid"), "type": error.get("type", "invalid"), **({"ctx": limits} if limits else {})}
