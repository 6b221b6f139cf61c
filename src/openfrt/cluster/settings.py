"""Cluster mode's settings, its one hard requirement (a shared PostgreSQL database), and connecting.

A deployment on a cluster is run by one process (``openfrt live`` or ``openfrt serve``, the
*driver*) whose cameras run on other machines; every officer's console and every other openfrt
process must see the same alerts and records, and a camera restarted on another node must be
recorded against the same deployment. SQLite is a file on one machine, so cluster mode refuses
it with a clear message before Ray is even imported.
"""

from __future__ import annotations

import logging
import os

from pydantic import BaseModel, Field, field_validator

from openfrt.errors import OpenFRTError

#: Ray namespace of every openfrt actor, so that other jobs on the cluster cannot collide with them.
NAMESPACE = "openfrt"

#: A camera that asks for a custom resource (a site, a van) takes this much of it by default,
#: so a node started with ``--resources '{"site_van": 1}'`` can hold up to 100 of its cameras.
DEFAULT_RESOURCE_SHARE = 0.01


class ClusterConfigError(OpenFRTError):
    """Cluster mode cannot run as configured (no shared database, a bad resource, no Ray)."""


class ClusterSettings(BaseModel):
    """Where the cluster is and what each camera and index shard asks of it.

    ``camera_resources`` maps a camera name to the custom resources its actor needs (e.g.
    ``{"van1": {"site_van": 0.01}}``): Ray places it only on a node that has them, and restarts
    it only on such a node. ``max_restarts``: how often Ray restarts a camera whose node or
    process died before the camera counts as failed.
    """

    address: str
    camera_cpus: float = Field(1.0, gt=0)
    camera_resources: dict[str, dict[str, float]] = Field(default_factory=dict)
    max_restarts: int = Field(10, ge=0)
    index_shards: int = Field(0, ge=0)
    shard_cpus: float = Field(1.0, gt=0)

    @field_validator("camera_resources")
    @classmethod
    def _positive(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for camera, resources in value.items():
            for resource, amount in resources.items():
                if amount <= 0:
                    raise ValueError(f"camera {camera!r} asks for {amount} of {resource!r}; amounts must be positive")
        return value

    def resources_for(self, camera: str) -> dict[str, float]:
        return dict(self.camera_resources.get(camera, {}))


def parse_camera_resources(specs: list[str]) -> dict[str, dict[str, float]]:
    """``CAMERA=RESOURCE[:AMOUNT]`` options (repeatable) as ``{camera: {resource: amount}}``."""
    parsed: dict[str, dict[str, float]] = {}
    for spec in specs:
        camera, equals, wanted = spec.partition("=")
        resource, _, amount = wanted.partition(":")
        if not (equals and camera.strip() and resource.strip()):
            raise ClusterConfigError(f"{spec!r} is not CAMERA=RESOURCE[:AMOUNT] (e.g. van1=site_van)")
        try:
            share = float(amount) if amount else DEFAULT_RESOURCE_SHARE
        except ValueError:
            raise ClusterConfigError(f"{spec!r}: {amount!r} is not a number") from None
        if share <= 0:
            raise ClusterConfigError(f"{spec!r}: the amount must be positive")
        parsed.setdefault(camera.strip(), {})[resource.strip()] = share
    return parsed


def require_shared_database(url: str) -> None:
    """Refuse anything but PostgreSQL: a cluster's processes must share one records database."""
    if not url.startswith("postgresql"):
        shown = "SQLite (the default, a file on this machine)" if url.startswith("sqlite") else url.split("://")[0]
        raise ClusterConfigError(
            f"cluster mode needs a shared records database, not {shown}: set OPENFRT_DATABASE_URL to "
            "postgresql+psycopg://USER:PASSWORD@HOST/DATABASE, reachable from the machine that runs this command"
        )


def connect(address: str) -> None:
    """Join the Ray cluster at ``address`` as a driver (once per process).

    Worker output is not copied to this process (``openfrt live --events-json`` keeps stdout
    for JSON); it stays in each node's session log directory. Ray's TLS settings
    (``RAY_USE_TLS``...) are read from the environment, which must be set before Ray is imported.
    """
    try:
        import ray
    except ModuleNotFoundError:
        raise ClusterConfigError('cluster mode needs Ray: pip install "openfrt[cluster]"') from None
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterConfigError(f"cannot join the Ray cluster at {address}: {exc}") from exc


def disconnect() -> None:
    """Leave the cluster (a no-op when not joined); actors this process owns end with it."""
    import ray

    ray.shutdown()
