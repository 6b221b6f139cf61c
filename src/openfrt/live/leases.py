"""Deployment leases: a running deployment belongs to one live process, which keeps proving it.

A deployment marked running in the database may have lost its process (SIGKILL, a power cut,
the OOM killer): nothing would then ever end it, publish its record or destroy its camera
credentials. So the process running it holds a *lease*, a row renewed every few seconds (the
heartbeat) that expires unless renewed. Every write the process makes for the deployment renews
the lease in the same transaction, conditionally on the row still naming it as owner; recovery
(:mod:`openfrt.live.recovery`) takes over an expired lease conditionally on the row being
unchanged. Both are single UPDATE or DELETE statements whose WHERE clause decides, which
PostgreSQL's row locks and SQLite's write lock serialise alike: of two processes only one can
hold a deployment, and one that lost it can no longer write anything for it.

Times are the processes' clocks (UTC); leases are tens of seconds, far above clock skew.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from openfrt.errors import OpenFRTError
from openfrt.records.errors import InvalidRecordError
from openfrt.records.models import DeploymentLease, utc_now

log = logging.getLogger(__name__)

#: How long a lease lasts unless renewed, in seconds (``OPENFRT_LEASE_SECONDS`` overrides):
#: a lost process's deployment is recovered this long after its last heartbeat at the earliest.
DEFAULT_LEASE_SECONDS = 30.0
LEASE_SECONDS_ENV = "OPENFRT_LEASE_SECONDS"

#: The file in the data directory naming "this server" across restarts (see :func:`server_id`).
SERVER_ID_FILE = "server-id"

#: This process among others on the host with the same pid over time (pids are reused).
_INSTANCE = secrets.token_hex(4)


class LeaseLostError(OpenFRTError):
    """Another process holds this deployment's lease now (it was recovered after this process
    stopped renewing it): this process must stop running it and write nothing more for it."""


def lease_seconds() -> float:
    """The lease length: ``OPENFRT_LEASE_SECONDS``, else :data:`DEFAULT_LEASE_SECONDS`."""
    configured = os.environ.get(LEASE_SECONDS_ENV)
    if configured is None:
        return DEFAULT_LEASE_SECONDS
    try:
        seconds = float(configured)
    except ValueError:
        raise InvalidRecordError(f"{LEASE_SECONDS_ENV}={configured!r} is not a number of seconds") from None
    if not 0.5 <= seconds <= 3600:
        raise InvalidRecordError(f"{LEASE_SECONDS_ENV}={configured} is outside 0.5-3600 seconds")
    return seconds


def process_owner() -> str:
    """This process as a lease owner: host, pid and a random instance id."""
    return f"{socket.gethostname()}:{os.getpid()}:{_INSTANCE}"


def server_id(home: Path) -> str:
    """The id of the server whose data directory is ``home``, created on first use.

    A restarted server has a new pid but the same data directory, so this id is what lets it
    recognise (and resume) the deployments it ran before it died. A restored backup gets a new
    one: the server that ran its deployments is not this one.
    """
    path = home / SERVER_ID_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(16) + "\n")
    return path.read_text().strip()


@dataclass(frozen=True)
class Lease:
    """One process's lease on one deployment."""

    deployment_id: int
    owner: str
    seconds: float

    @classmethod
    def acquire(
        cls, session: Session, deployment_id: int, *, server: str | None, watchlist_revision: int, seconds: float
    ) -> Lease:
        """Take the lease of a deployment being started, in the starting transaction."""
        now, owner = utc_now(), process_owner()
        session.add(DeploymentLease(
            deployment_id=deployment_id, owner=owner, server_id=server, watchlist_revision=watchlist_revision,
            acquired_at=now, renewed_at=now, expires_at=now + timedelta(seconds=seconds),
        ))
        session.flush()
        return cls(deployment_id, owner, seconds)

    @classmethod
    def take_over(
        cls, session: Session, deployment_id: int, *, previous_owner: str, server: str | None, seconds: float, now: datetime
    ) -> Lease | None:
        """Take a lapsed lease, if it is still ``previous_owner``'s and still lapsed at ``now``;
        None if another process renewed or took it first."""
        owner = process_owner()
        taken = session.execute(
            update(DeploymentLease)
            .where(DeploymentLease.deployment_id == deployment_id, DeploymentLease.owner == previous_owner,
                   DeploymentLease.expires_at < now)
            .values(owner=owner, server_id=server, acquired_at=now, renewed_at=now, expires_at=now + timedelta(seconds=seconds))
            .execution_options(synchronize_session=False)
        )
        return cls(deployment_id, owner, seconds) if taken.rowcount == 1 else None

    def hold(self, session: Session) -> None:
        """Renew the lease in ``session``'s transaction, or raise :class:`LeaseLostError` if it
        is no longer this process's (the transaction must then not commit anything)."""
        now = utc_now()
        renewed = session.execute(
            update(DeploymentLease)
            .where(DeploymentLease.deployment_id == self.deployment_id, DeploymentLease.owner == self.owner)
            .values(renewed_at=now, expires_at=now + timedelta(seconds=self.seconds))
            .execution_options(synchronize_session=False)
        )
        if renewed.rowcount != 1:
            raise LeaseLostError(f"deployment {self.deployment_id} is no longer run by this process ({self.owner}): it was recovered elsewhere")

    def release(self, session: Session) -> None:
        """Give the lease up as the deployment ends (in the ending transaction, after :meth:`hold`)."""
        session.execute(
            delete(DeploymentLease)
            .where(DeploymentLease.deployment_id == self.deployment_id, DeploymentLease.owner == self.owner)
            .execution_options(synchronize_session=False)
        )


class Heartbeat:
    """Calls ``beat`` every ``seconds`` in a daemon thread until stopped.

    A daemon, so that a process that dies (or exits without ending its deployments) stops
    renewing: the lease then lapses and recovery ends or resumes the deployment.
    """

    def __init__(self, beat: Callable[[], None], seconds: float, name: str) -> None:
        self.seconds = seconds
        self._beat = beat
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop beating; waits for a beat in progress unless called from the beat itself."""
        self._stopped.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(self.seconds):
            try:
                self._beat()
            except Exception:  # noqa: BLE001 - the heartbeat must outlive one failed beat
                log.exception("%s: a heartbeat failed", self._thread.name)
