"""``openfrt serve``: the REST API and the operator console in one process.

Data lives under ``--home``/``OPENFRT_HOME`` (SQLite by default, or ``OPENFRT_DATABASE_URL``).
On a fresh data directory the log says where the one-time set-up code for the first
administrator is — never a password.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from openfrt.cli.common import HomeOption, err_console


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
) -> None:
    """Serve the console (http://HOST:PORT/) and the REST API (/api/, documented at /docs)."""
    import uvicorn

    from openfrt.api import ServerSettings, create_app

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    settings = ServerSettings(home=home, secure_cookies=secure_cookies, realtime_files=realtime_files)
    err_console.print(f"openfrt console on http://{host}:{port}/ — API documentation at http://{host}:{port}/docs")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", proxy_headers=False)
