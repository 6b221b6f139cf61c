"""Who runs a command: an openfrt user proved by their API token, or local administration.

Every command that reads or changes records acts as an openfrt user, never as the operating
system's account: it takes the API token in ``OPENFRT_TOKEN`` (``openfrt login NAME`` makes
one), checks it and the user's role against the database exactly as the server does
(:class:`openfrt.records.users.UserService`, :mod:`openfrt.api.permissions`), and audits as that
user with the token's id. Local administration — the first administrator, checking the audit
chain from a cron job — needs only the data directory and is audited as ``local:<os user>``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from openfrt.cli.common import usage_error

if TYPE_CHECKING:
    from openfrt.records import Actor, RecordStore

#: The environment variable holding the API token a command acts with.
TOKEN_VARIABLE = "OPENFRT_TOKEN"

NO_TOKEN = (
    f"this command acts as an openfrt user: set {TOKEN_VARIABLE} to your API token "
    f"(`openfrt login NAME` prints one; e.g. export {TOKEN_VARIABLE}=$(openfrt login NAME --json | jq -r .token))"
)


def has_token() -> bool:
    return bool(os.environ.get(TOKEN_VARIABLE, "").strip())


def signed_in(store: RecordStore, *permissions: str) -> Actor:
    """The user whose token is in ``OPENFRT_TOKEN``, as the actor of this command's audit
    entries; exit 2 without a token, with one that is refused, or when the user's role lacks
    one of ``permissions`` (names of :class:`openfrt.api.permissions.Permission`)."""
    from openfrt.api.permissions import Permission, can
    from openfrt.records import AuthenticationError, UserService

    secret = os.environ.get(TOKEN_VARIABLE, "").strip()
    if not secret:
        usage_error(NO_TOKEN)
    try:
        credential = UserService(store).token_credential(secret)
    except AuthenticationError:
        usage_error(f"{TOKEN_VARIABLE} was refused: an unknown or revoked token, or a disabled user; "
                    "get a new one with `openfrt login NAME`")
    user = credential.user
    for name in permissions:
        permission = Permission(name)
        if not can(user.role, permission):
            usage_error(f"{user.name} ({user.role.value}) may not {permission.value.replace('_', ' ')}")
    return credential.actor
