"""Errors of the records store and the gallery built on it.

Like :mod:`openfrt.errors`, one type per thing a user can get wrong, so the CLI can report
which record or input was at fault and choose the exit code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from openfrt.errors import OpenFRTError

if TYPE_CHECKING:
    from openfrt.vision.types import Face


class RecordNotFoundError(OpenFRTError):
    """A subject, watchlist or reference image named by the caller does not exist."""


class DuplicateRecordError(OpenFRTError):
    """A record with that identifier already exists and differs from what was asked for."""


class InvalidRecordError(OpenFRTError):
    """A value given for a record is not acceptable (empty id, unknown category, ...)."""


class KeyFileError(OpenFRTError):
    """The encryption key is missing, malformed, or does not open this store's data."""


class WatchlistExpiredError(OpenFRTError):
    """The watchlist's expiry time has passed: it must not be searched any more."""


class EnrolmentRefused(OpenFRTError):
    """A reference image was refused; ``reason`` is a short code, the message explains it.

    ``faces`` are the faces to choose from when the image has several, in index order, so that
    the caller can show them (the CLI lists their boxes, the console draws them).
    """

    def __init__(self, image: str, reason: str, detail: str, faces: Sequence[Face] = ()) -> None:
        self.image = image
        self.reason = reason
        self.detail = detail
        self.faces = tuple(faces)
        super().__init__(f"{image}: {detail}")


class AuthenticationError(OpenFRTError):
    """Sign-in or a session or API token was refused.

    The message is deliberately the same whatever the cause (unknown user, wrong password,
    disabled account), so that it does not tell an attacker which user names exist.
    """


class NotPermittedError(OpenFRTError):
    """The acting user may not do this whatever their role: act for someone else, authorise
    their own plan, or approve what they authorised."""


class AuditChainError(OpenFRTError):
    """The audit log's hash chain cannot be extended (its head row is missing)."""
