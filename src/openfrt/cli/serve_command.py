"""``openfrt serve``: the REST API and the operator console in one process.

Data lives under ``--home``/``OPENFRT_HOME`` (SQLite by default, or ``OPENFRT_DATABASE_URL``).
On a fresh data directory the log says where the one-time set-up code for the first
administrator is — never a password.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from openfrt.cli.cluster_options import CameraCpusOption, CameraResourceOption, IndexShardsOption, RayAddressOption, cluster_settings
from openfrt.cli.common import HomeOption, LogFormatOption
from openfrt.observability.logs import LogFormat, configure_logging

log = logging.getLogger(__name__)


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
    secure_cookies: Annotated[
        bool, typer.Option("--secure-cookies", help="Send session cookies over HTTPS only (behind a TLS proxy).")
    ] = False,
    realtime_files: Annotated[
        bool, typer.Option("--realtime-files/--fast-files", help="Play video files named as camera sources at their frame rate.")
    ] = True,
    home: HomeOption = None,
    log_format: LogFormatOption = LogFormat.text,
    ray_address: RayAddressOption = None,
    camera_cpus: CameraCpusOption = 1.0,
    camera_resource: CameraResourceOption = None,
    index_shards: IndexShardsOption = 0,
) -> None:
    """Serve the console (http://HOST:PORT/) and the REST API (/api/, documented at /docs)."""
    import uvicorn

    from openfrt.api import ServerSettings, create_app

    cluster = cluster_settings(ray_address, camera_cpus, camera_resource, home, index_shards)
    configure_logging(log_format)
    settings = ServerSettings(home=home, secure_cookies=secure_cookies, realtime_files=realtime_files, cluster=cluster)
    log.info("openfrt console on http://%s:%s/ — API documentation at http://%s:%s/docs", host, port, host, port)
    # In JSON, uvicorn's own loggers (server and access log) go through the same handler.
    log_config = None if log_format is LogFormat.json else uvicorn.config.LOGGING_CONFIG
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", proxy_headers=False, log_config=log_config)
