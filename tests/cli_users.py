"""Users, API tokens and authorised deployments for tests that run the ``openfrt`` command,
which acts only as an openfrt user (``OPENFRT_TOKEN``), never as the account running it.

``as_user(env, role)`` is the one place tests get such an environment: it makes the user (named
after the role unless ``name`` is given) in ``env``'s data directory on first use, with their
own API token, and returns ``env`` with that token set. ``authorised_deployment`` plans a
deployment as the operator and has the authorising officer authorise it, as ``openfrt live
--deployment`` requires.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from openfrt.records import Actor, RecordStore, Role, UserService, local_actor

PASSWORD = "correct horse battery staple"

#: (data directory, user name) -> the user's token, so each user is made once per directory.
_TOKENS: dict[tuple[str, str], str] = {}


def user_name(role: Role) -> str:
    return f"{role.value.replace('_', '-')}-1"


def as_user(env: dict[str, str], role: Role, name: str | None = None) -> dict[str, str]:
    """``env`` acting as the user ``name`` (default: one per role) with ``role``."""
    home = env["OPENFRT_HOME"]
    name = name or user_name(role)
    if (home, name) not in _TOKENS:
        with records(env) as store:
            users = UserService(store)
            users.create(name, role, PASSWORD, actor=local_actor())
            _, _TOKENS[home, name] = users.create_token(name, "tests", actor=name)
    return {**env, "OPENFRT_TOKEN": _TOKENS[home, name]}


def authorised_deployment(
    env: dict[str, str], name: str, watchlist: str, cameras: dict[str, str], approval: str | None = None, **plan: object
) -> None:
    """Deployment ``name`` in ``env``'s data directory, planned by the operator and authorised
    by the authorising officer (each with their token), ready for ``openfrt live --deployment``.
    ``plan`` adds to the plan (e.g. ``threshold``); purpose and location are the tests'. With
    ``approval`` (a justification) a second authorising officer first approves the threshold if
    it is below the floor."""
    from openfrt.live.deployments import DeploymentService

    planner, officer = as_user(env, Role.operator), as_user(env, Role.authorising_officer)
    with records(env) as store:
        service = DeploymentService(store)
        arguments: dict[str, object] = {"purpose": "test", "location": "Test St", **plan}
        service.create(name, watchlist=watchlist, cameras=cameras, actor=_actor(store, planner), **arguments)  # type: ignore[arg-type]
        if approval is not None and service.threshold_check(name).needs_approval:
            second = as_user(env, Role.authorising_officer, "authorising-officer-2")
            service.approve_threshold(name, justification=approval, actor=_actor(store, second))
        service.authorise(name, actor=_actor(store, officer))


@contextmanager
def records(env: dict[str, str]) -> Iterator[RecordStore]:
    """The records store that a command run with ``env`` opens (its data directory, database and
    key), under the camera source policy that command would apply."""
    with pytest.MonkeyPatch.context() as patch:
        for variable in ("OPENFRT_DATABASE_URL", "OPENFRT_KEY_FILE", "OPENFRT_ALLOWED_NETWORKS", "OPENFRT_FOOTAGE_DIR"):
            if variable in env:
                patch.setenv(variable, env[variable])
            else:
                patch.delenv(variable, raising=False)
        with RecordStore.open(Path(env["OPENFRT_HOME"])) as store:
            yield store


def _actor(store: RecordStore, env: dict[str, str]) -> Actor:
    return UserService(store).token_credential(env["OPENFRT_TOKEN"]).actor
