"""The options that put ``openfrt live`` and ``openfrt serve`` on a Ray cluster.

Unset (no ``--ray-address``, no ``OPENFRT_RAY_ADDRESS``), nothing changes and Ray is never
imported; set, cluster mode first insists on a shared PostgreSQL records database.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from openfrt.cli.common import usage_error
from openfrt.errors import OpenFRTError

if TYPE_CHECKING:
    from openfrt.cluster.settings import ClusterSettings

RayAddressOption = Annotated[
    Optional[str],
    typer.Option("--ray-address", envvar="OPENFRT_RAY_ADDRESS",
                 help="Run each camera as an actor on this Ray cluster (HOST:PORT); needs PostgreSQL records."),
]
CameraCpusOption = Annotated[float, typer.Option("--camera-cpus", min=0.01, help="CPUs each camera's actor asks of the cluster.")]
CameraResourceOption = Annotated[
    Optional[list[str]],
    typer.Option("--camera-resource", help="CAMERA=RESOURCE[:AMOUNT]: the camera runs only on nodes with this Ray resource "
                                           "(e.g. van1=site_van; default amount 0.01). Repeatable."),
]
IndexShardsOption = Annotated[
    int, typer.Option("--index-shards", min=0, help="Split the reference search index over this many Ray actors (0: one index here).")
]


def cluster_settings(
    address: str | None, camera_cpus: float, camera_resources: list[str] | None, home: Path | None, index_shards: int = 0
) -> ClusterSettings | None:
    """The cluster to use, or None (no address: one machine, and Ray is never imported).
    Cluster mode without a shared PostgreSQL database, or with bad options, is a usage error."""
    if not address:
        return None
    from openfrt.cluster.settings import ClusterSettings, parse_camera_resources, require_shared_database
    from openfrt.config import database_url, home_dir

    try:
        require_shared_database(database_url(home_dir(home)))
        return ClusterSettings(address=address, camera_cpus=camera_cpus, index_shards=index_shards,
                               camera_resources=parse_camera_resources(camera_resources or []))
    except (OpenFRTError, ValueError) as exc:
        usage_error(str(exc))
