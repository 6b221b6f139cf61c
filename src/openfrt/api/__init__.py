"""The REST API and the server around it (``openfrt serve``)."""

from openfrt.api.app import create_app
from openfrt.api.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
