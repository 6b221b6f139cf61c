"""Server settings: pydantic, from the command line and ``OPENFRT_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from openfrt.cluster.settings import ClusterSettings  # pydantic and openfrt only: Ray is imported when used


class ServerSettings(BaseModel):
    """How ``openfrt serve`` runs. Data lives under ``home`` (default ``OPENFRT_HOME``)."""

    home: Path | None = None
    #: Mark session cookies Secure (only sent over HTTPS). Turn on behind a TLS proxy.
    secure_cookies: bool = False
    session_hours: float = Field(12.0, gt=0)
    #: Largest accepted upload (reference images, search stills), in bytes.
    max_upload_bytes: int = Field(20 * 1024 * 1024, gt=0)
    #: Play video files named as camera sources at their frame rate, as a camera would.
    realtime_files: bool = True
    #: How often the alert feed looks for new alerts (also those raised by other processes);
    #: one indexed query each time, and the main part of an alert's delay to the console.
    alert_poll_seconds: float = Field(0.2, gt=0)
    #: The console's address as others reach it (``https://frt.force.example``), for the links
    #: in events sent out; default ``OPENFRT_PUBLIC_URL``, else events carry paths only.
    public_url: str | None = None
    #: Run deployments' cameras (and, with ``index_shards``, the reference search) on a Ray
    #: cluster; None: everything in this process.
    cluster: ClusterSettings | None = None
