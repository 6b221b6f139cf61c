"""For the systems that watch the server: liveness, readiness and metrics.

``/healthz`` and ``/readyz`` answer anyone (load balancers and orchestrators send no
credentials) and say no more than which part is failing. ``/metrics`` needs a token with the
``read_metrics`` permission (the ``monitoring`` role): the figures describe police operations.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from openfrt.api.context import ServerContext
from openfrt.api.permissions import Permission
from openfrt.api.security import Principal, context, require
from openfrt.observability.health import Readiness
from openfrt.observability.metrics import exposition

router = APIRouter(tags=["monitoring"])

#: A database that does not answer within this many seconds is reported as not answering.
READINESS_TIMEOUT = 5.0
NO_STORE = {"Cache-Control": "no-store"}


@router.get("/healthz", summary="Liveness: the process answers (no credentials)")
def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"}, headers=NO_STORE)


@router.get("/readyz", summary="Readiness: database reachable, schema current, face models present; 503 with the reason (no credentials)",
            responses={503: {"description": "Not ready, e.g. {\"status\": \"unavailable\", \"reason\": \"database unreachable\"}"}})
async def readyz(ctx: ServerContext = Depends(context)) -> JSONResponse:
    try:
        readiness = await asyncio.wait_for(run_in_threadpool(ctx.readiness), READINESS_TIMEOUT)
    except TimeoutError:
        readiness = Readiness(False, "database not answering")
    body: dict[str, Any] = {"status": "ready"} if readiness.ready else {"status": "unavailable", "reason": readiness.reason}
    return JSONResponse(body, status_code=200 if readiness.ready else 503, headers=NO_STORE)


@router.get("/metrics", summary="Metrics in the Prometheus text format (a token with the monitoring role)",
            response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(_: Principal = Depends(require(Permission.read_metrics))) -> Response:
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST, headers=NO_STORE)
