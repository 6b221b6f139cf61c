"""openfrt's own errors as HTTP answers: the message a CLI user would see, with a fitting status."""

from __future__ import annotations

from fastapi import FastAPI, Request
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

STATUS_FOR: tuple[tuple[type[OpenFRTError], int], ...] = (
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


def status_for(error: OpenFRTError) -> int:
    return next((status for kind, status in STATUS_FOR if isinstance(error, kind)), 400)


def install(app: FastAPI) -> None:
    @app.exception_handler(OpenFRTError)
    async def openfrt_error(_request: Request, exc: OpenFRTError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, status_code=status_for(exc))
