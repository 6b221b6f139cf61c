"""Log lines with their context: which request, deployment and camera they are about.

The context lives in context variables, set where the work starts (a request arrives, a
camera thread starts, a delivery is attempted) and read by :class:`JsonFormatter`, so a log
call anywhere below needs no extra arguments. ``--log-format json`` on ``openfrt serve`` and
``openfrt live`` prints one JSON object per line: time, level, logger, message, request id,
deployment, camera (and the traceback of an exception). What is logged does not change with
the format, so the pipeline's rule holds: nothing about faces that did not match.
"""

from __future__ import annotations

import enum
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

REQUEST_ID: ContextVar[str | None] = ContextVar("openfrt_request_id", default=None)
DEPLOYMENT: ContextVar[str | None] = ContextVar("openfrt_deployment", default=None)
CAMERA: ContextVar[str | None] = ContextVar("openfrt_camera", default=None)


class LogFormat(str, enum.Enum):
    text = "text"
    json = "json"


@contextmanager
def log_context(*, deployment: str | None = None, camera: str | None = None) -> Iterator[None]:
    """Name the deployment and camera in every log line written inside the block."""
    tokens = [(variable, variable.set(value)) for variable, value in ((DEPLOYMENT, deployment), (CAMERA, camera)) if value is not None]
    try:
        yield
    finally:
        for variable, token in reversed(tokens):
            variable.reset(token)


class JsonFormatter(logging.Formatter):
    """One compact JSON object per record, with the context variables."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": REQUEST_ID.get(),
            "deployment": DEPLOYMENT.get(),
            "camera": CAMERA.get(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"), default=str)


def configure_logging(log_format: LogFormat, level: int = logging.INFO) -> None:
    """Send every logger's records at ``level`` and above to standard error in ``log_format``."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format is LogFormat.json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
