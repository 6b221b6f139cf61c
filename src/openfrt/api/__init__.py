"""The REST API and the server around it (``openfrt serve``).

``create_app`` and ``ServerSettings`` load on first use, so that the command line can check a
user's :mod:`openfrt.api.permissions` without importing the web server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openfrt.api.app import create_app
    from openfrt.api.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from openfrt.api.app import create_app

        return create_app
    if name == "ServerSettings":
        from openfrt.api.settings import ServerSettings

        return ServerSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
