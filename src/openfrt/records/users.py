"""People who use the server: accounts, passwords, browser sessions and API tokens.

Passwords are kept only as argon2id hashes; session tokens and API tokens only as SHA-256
digests (they are long random secrets, so a fast hash is enough, and a copy of the database
cannot be replayed). Sign-in fails with one message whatever the cause, and an unknown name
costs the same password check as a known one, so neither the message nor the time tells an
attacker which names exist. Every change to an account, and every sign-in attempt, is audited
— by name, never with the password or a token.

An API token is created only by the user it acts as, after proving it with their password (a
console session or ``openfrt login``), never by an administrator for someone else nor by
another token; each request's :class:`Credential` (``session:<id>`` or ``token:<id>``) goes
into the audit entries it causes, so who really acted is never lost.
"""

from __future__ import annotations

import builtins
import hashlib
import re
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from openfrt.records.audit import Actor, AuditAction, record_event
from openfrt.records.errors import (
    AuthenticationError,
    DuplicateRecordError,
    InvalidRecordError,
    NotPermittedError,
    RecordNotFoundError,
)
from openfrt.records.models import ID_LENGTH, ApiToken, Role, User, UserSession, utc_now
from openfrt.records.passwords import check_password
from openfrt.records.store import RecordStore
from openfrt.records.text import check_text
from openfrt.records.throttle import LoginThrottle

__all__ = ["Credential", "Role", "TokenInfo", "UserInfo", "UserService"]

#: Session and token use is written back at most this often, not on every request.
TOUCH_INTERVAL = timedelta(minutes=1)

#: API token secrets start with this, so a leaked one is recognisable (e.g. by secret scanners).
TOKEN_PREFIX = "ofrt_"

#: User names appear in audit entries, URLs and log lines: no spaces or look-alike punctuation.
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")

#: The credential of a sign-in itself (audited as such): the password was checked just now.
PASSWORD_CREDENTIAL = "password"

#: The one message for every refused sign-in (unknown name, wrong password, disabled account).
SIGN_IN_REFUSED = "sign-in refused: unknown user name, wrong password or disabled account"
SESSION_REFUSED = "not signed in, or the session has expired: sign in again"
TOKEN_REFUSED = "API token refused: unknown or revoked, or its user is disabled"

#: argon2id with argon2-cffi's defaults (RFC 9106's second recommended profile); hashes made
#: with older parameters are upgraded at the next successful sign-in.
HASHER = PasswordHasher()


@dataclass(frozen=True)
class UserInfo:
    id: int
    name: str
    display_name: str
    role: Role
    created_at: datetime
    disabled: bool
    #: Locked after too many failed sign-ins in a row, until an administrator unlocks it.
    locked: bool = False
    rank: str | None = None

    @property
    def public_name(self) -> str:
        """How the user is named to other people and in published records: rank and number with
        the display name ("Supt A. Smith"), never the log-in name."""
        return f"{self.rank} {self.display_name}" if self.rank else self.display_name

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "display_name": self.display_name, "role": self.role.value,
            "created_at": self.created_at.isoformat(), "disabled": self.disabled, "locked": self.locked, "rank": self.rank,
            "public_name": self.public_name,
        }


@dataclass(frozen=True)
class TokenInfo:
    """An API token without its secret (which is shown once, when created, and never stored)."""

    id: int
    user: str
    label: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "user": self.user, "label": self.label, "created_at": self.created_at.isoformat(),
            "last_used_at": _iso(self.last_used_at), "revoked_at": _iso(self.revoked_at),
        }


@dataclass(frozen=True)
class Credential:
    """A user as proved by one session or API token; ``label`` names it in the audit log."""

    user: UserInfo
    kind: str  # "session" or "token"
    id: int
    csrf_token: str | None = None

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.id}"

    @property
    def actor(self) -> Actor:
        """The user's name as the actor of the audit entries this credential causes."""
        return Actor(self.user.name, self.label)


class UserService:
    """Accounts, sign-in, sessions and API tokens on the records store."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store
        self.throttle = LoginThrottle(store)
        _dummy_hash()  # made now, so the first unknown name does not take longer than the rest

    def count(self) -> int:
        with self.store.transaction() as session:
            return session.scalar(select(func.count()).select_from(User)) or 0

    def create(
        self, name: str, role: Role, password: str, *, actor: str, display_name: str | None = None, rank: str | None = None
    ) -> UserInfo:
        """Add a user. Names differing only in case are refused, as they would be confused."""
        _check_name(name)
        try:
            role = Role(role)
        except ValueError:
            raise InvalidRecordError(f"unknown role {role!r}; choose one of {', '.join(r.value for r in Role)}") from None
        shown = name if display_name is None else _checked_display_name(display_name)
        rank = _checked_rank(rank)
        password_hash = _hash_password(password, (name, shown))
        with self.store.transaction() as session:
            if session.scalar(select(User.name).where(func.lower(User.name) == name.lower())) is not None:
                raise DuplicateRecordError(f"a user named {name!r} (or differing only in case) already exists")
            row = User(name=name, display_name=shown, rank=rank, role=role, password_hash=password_hash, disabled=False)
            session.add(row)
            session.flush()
            record_event(session, AuditAction.user_created, actor=actor, target=name,
                         details={"role": role.value, "display_name": shown, "rank": rank})
            return _user_info(row)

    def get(self, name: str) -> UserInfo:
        with self.store.transaction() as session:
            info = _user_info(_user_row(session, name))
            return replace(info, locked=bool(self.throttle.locked(session, [name])))

    def list(self) -> builtins.list[UserInfo]:
        with self.store.transaction() as session:
            found = [_user_info(row) for row in session.scalars(select(User).order_by(User.name))]
            locked = self.throttle.locked(session, [user.name for user in found])
            return [replace(user, locked=user.name in locked) for user in found]

    def set_password(self, name: str, password: str, *, actor: str) -> None:
        """Replace the password and end the user's sessions (whoever held one must sign in again)."""
        password_hash = _hash_password(password, (name, self.get(name).display_name))
        with self.store.transaction() as session:
            row = _user_row(session, name)
            row.password_hash = password_hash
            ended = _end_sessions(session, row.id)
            record_event(session, AuditAction.user_password_changed, actor=actor, target=name, details={"sessions_ended": ended})

    def disable(self, name: str, *, actor: str) -> None:
        """Stop the user signing in: their sessions end and their API tokens are revoked."""
        with self.store.transaction() as session:
            row = _user_row(session, name)
            row.disabled = True
            ended = _end_sessions(session, row.id)
            revoked = session.execute(
                update(ApiToken).where(ApiToken.user_id == row.id, ApiToken.revoked_at.is_(None)).values(revoked_at=utc_now())
            ).rowcount
            record_event(
                session, AuditAction.user_disabled, actor=actor, target=name,
                details={"sessions_ended": ended, "tokens_revoked": revoked},
            )

    def update(self, name: str, *, actor: str, display_name: str | None = None, rank: str | None = None) -> UserInfo:
        """Change how a user is named to others: the display name, and the rank and number
        (an empty rank removes it). Audited with the old and new values."""
        with self.store.transaction() as session:
            row = _user_row(session, name)
            before = {"display_name": row.display_name, "rank": row.rank}
            if display_name is not None:
                row.display_name = _checked_display_name(display_name)
            if rank is not None:
                row.rank = _checked_rank(rank)
            after = {"display_name": row.display_name, "rank": row.rank}
            if after != before:
                record_event(session, AuditAction.user_updated, actor=actor, target=name, details={"before": before, "after": after})
            return _user_info(row)

    def enable(self, name: str, *, actor: str) -> UserInfo:
        """Let a disabled user sign in again. Their old sessions and tokens stay ended: they sign in
        afresh, and machines get new tokens."""
        with self.store.transaction() as session:
            row = _user_row(session, name)
            if row.disabled:
                row.disabled = False
                record_event(session, AuditAction.user_enabled, actor=actor, target=name)
            return _user_info(row)

    def set_role(self, name: str, role: Role, *, actor: str) -> UserInfo:
        """Give a user another role; their sessions end, so every open console shows what the new
        role may do. The last enabled administrator keeps the role, so accounts stay manageable."""
        role = Role(role)
        with self.store.transaction() as session:
            row = _user_row(session, name)
            if row.role is role:
                return _user_info(row)
            if row.role is Role.admin and not row.disabled:
                admins = session.scalar(select(func.count()).select_from(User).where(User.role == Role.admin, User.disabled.is_(False)))
                if admins == 1:
                    raise InvalidRecordError(f"{name} is the only enabled administrator; make another one first")
            before, row.role = row.role, role
            ended = _end_sessions(session, row.id)
            record_event(session, AuditAction.user_role_changed, actor=actor, target=name,
                         details={"before": before.value, "after": role.value, "sessions_ended": ended})
            return _user_info(row)

    def _unknown_name(self, typed: str) -> str:
        """How a refused log-in under a name that is no user's is logged: a keyed fingerprint, not
        the text, which may be a password typed into the wrong box. Repeats share a fingerprint,
        so a run of guesses still shows in the log."""
        return f"unknown:{self.store.cipher.fingerprint(typed.encode())}"

    def unlock(self, name: str, *, actor: str) -> None:
        """Lift a lockout (and any delay) after failed sign-ins, so the user can sign in again."""
        with self.store.transaction() as session:
            _user_row(session, name)
            lifted = self.throttle.lift(session, name)
            if lifted is None:
                raise InvalidRecordError(f"user {name!r} is not locked out and has no failed sign-ins to forget")
            record_event(session, AuditAction.user_unlocked, actor=actor, target=name,
                         details={"failures": lifted.failures, "was_locked": lifted.locked_at is not None})

    def authenticate(self, name: str, password: str, client: str | None = None) -> UserInfo:
        """The user, if ``password`` is theirs and they are not disabled; audited either way.
        Attempts are throttled per name and per ``client`` (its network address, if known):
        :class:`~openfrt.records.throttle.SignInThrottled` or ``AccountLocked`` before any check."""
        attempt = self.throttle.admit(name, client)
        with self.store.transaction() as session:
            row = session.scalar(select(User).where(User.name == name))
            stored = row.password_hash if row is not None else _dummy_hash()
            user_id = row.id if row is not None else None
            disabled = row.disabled if row is not None else False
        # The check runs outside any transaction: it is slow on purpose and needs no lock.
        matches = _verify(stored, password)
        refusal = "unknown user" if user_id is None else "wrong password" if not matches else "disabled" if disabled else None
        with self.store.transaction() as session:
            if refusal is not None:
                who = name if user_id is not None else self._unknown_name(name)
                record_event(session, AuditAction.login_failed, actor=who, target=who, details={"refused": refusal})
                self.throttle.failed(session, attempt, who)
            else:
                self.throttle.succeeded(session, attempt)
                row = session.get_one(User, user_id)
                if HASHER.check_needs_rehash(row.password_hash):
                    row.password_hash = HASHER.hash(password)
                record_event(session, AuditAction.login, actor=Actor(name, PASSWORD_CREDENTIAL), target=name)
                return _user_info(row)
        raise AuthenticationError(SIGN_IN_REFUSED)

    def create_session(self, user: UserInfo, lifetime: timedelta = timedelta(hours=12)) -> tuple[str, str]:
        """A new browser session for ``user``: its token (for the cookie) and its CSRF token.

        Only the token's SHA-256 is stored. Expired sessions of anyone are cleared here, which
        is often enough to keep the table small.
        """
        if lifetime <= timedelta(0):
            raise InvalidRecordError(f"a session lifetime must be positive, not {lifetime}")
        token, csrf_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = utc_now()
        with self.store.transaction() as session:
            row = session.get(User, user.id)
            if row is None or row.disabled:
                raise AuthenticationError(SIGN_IN_REFUSED)
            session.execute(delete(UserSession).where(UserSession.expires_at <= now))
            session.add(UserSession(
                user_id=row.id, token_hash=_sha256(token), csrf_token=csrf_token,
                created_at=now, expires_at=now + lifetime, last_seen_at=now,
            ))
        return token, csrf_token

    def session_user(self, session_token: str) -> tuple[UserInfo, str]:
        """The signed-in user and the session's CSRF token; an expired session is removed."""
        credential = self.session_credential(session_token)
        return credential.user, credential.csrf_token or ""

    def session_credential(self, session_token: str) -> Credential:
        """The signed-in user, with the session's id and CSRF token; an expired session is removed."""
        now = utc_now()
        with self.store.transaction() as session:
            found = session.execute(
                select(UserSession, User).join(User).where(UserSession.token_hash == _sha256(session_token))
            ).one_or_none()
            if found is None:
                raise AuthenticationError(SESSION_REFUSED)
            row, user = found
            if row.expires_at <= now:
                session.delete(row)
            elif not user.disabled:
                if now - row.last_seen_at >= TOUCH_INTERVAL:
                    row.last_seen_at = now
                return Credential(_user_info(user), "session", row.id, row.csrf_token)
        raise AuthenticationError(SESSION_REFUSED)

    def end_session(self, session_token: str) -> None:
        """Sign out; ending an unknown or already ended session is not an error."""
        with self.store.transaction() as session:
            session.execute(delete(UserSession).where(UserSession.token_hash == _sha256(session_token)))

    def create_token(self, user_name: str, label: str, *, actor: str) -> tuple[TokenInfo, str]:
        """A new API token for the user and its secret, which exists only in this return value.

        Only the user themself may create it, and not with another token: a token minted by an
        administrator would let them act, audited, as any officer; one minted by a token would
        outlive that token's revocation."""
        if actor != user_name:
            raise NotPermittedError(
                f"an API token is created only by the user it acts as: {user_name} must create it themself "
                f"(`openfrt login {user_name}`, or their console)"
            )
        if (getattr(actor, "credential", None) or "").startswith("token:"):
            raise NotPermittedError("an API token cannot create another: log in with your password (`openfrt login`)")
        label = label.strip()
        if not label or len(label) > 200:
            raise InvalidRecordError("an API token needs a label of 1 to 200 characters (what it is for)")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.store.transaction() as session:
            user = _user_row(session, user_name)
            if user.disabled:
                raise InvalidRecordError(f"user {user_name!r} is disabled; a token for them would not work")
            row = ApiToken(user_id=user.id, label=label, token_hash=_sha256(secret))
            session.add(row)
            session.flush()
            record_event(session, AuditAction.token_created, actor=actor, target=user_name, details={"token": row.id, "label": label})
            return _token_info(row, user_name), secret

    def token_user(self, secret: str) -> UserInfo:
        """The user an API token acts as; refused if it is unknown, revoked, or its user disabled."""
        return self.token_credential(secret).user

    def token_credential(self, secret: str) -> Credential:
        """The user an API token acts as, with the token's id; refused as :meth:`token_user` is."""
        if not secret.startswith(TOKEN_PREFIX):
            raise AuthenticationError(TOKEN_REFUSED)
        now = utc_now()
        with self.store.transaction() as session:
            found = session.execute(select(ApiToken, User).join(User).where(ApiToken.token_hash == _sha256(secret))).one_or_none()
            if found is None:
                raise AuthenticationError(TOKEN_REFUSED)
            row, user = found
            if row.revoked_at is not None or user.disabled:
                raise AuthenticationError(TOKEN_REFUSED)
            if row.last_used_at is None or now - row.last_used_at >= TOUCH_INTERVAL:
                row.last_used_at = now
            return Credential(_user_info(user), "token", row.id)

    def log_in_for_token(self, name: str, password: str, label: str) -> tuple[TokenInfo, str]:
        """Sign in (audited as a log-in, refused as any sign-in is) and create the user's own
        API token, e.g. for the command line (``openfrt login``)."""
        user = self.authenticate(name, password)
        return self.create_token(user.name, label, actor=Actor(user.name, PASSWORD_CREDENTIAL))

    def list_tokens(self, user_name: str | None = None) -> builtins.list[TokenInfo]:
        """Tokens (revoked ones too, for the record), oldest first; only ``user_name``'s if given."""
        with self.store.transaction() as session:
            query = select(ApiToken, User.name).join(User).order_by(ApiToken.id)
            if user_name is not None:
                query = query.where(ApiToken.user_id == _user_row(session, user_name).id)
            return [_token_info(row, name) for row, name in session.execute(query)]

    def revoke_token(self, token_id: int, *, actor: str) -> None:
        """Revoke a token at once; revoking one already revoked changes (and audits) nothing."""
        with self.store.transaction() as session:
            found = session.execute(select(ApiToken, User.name).join(User).where(ApiToken.id == token_id)).one_or_none()
            if found is None:
                raise RecordNotFoundError(f"no API token with id {token_id}")
            row, user_name = found
            if row.revoked_at is None:
                row.revoked_at = utc_now()
                record_event(session, AuditAction.token_revoked, actor=actor, target=user_name, details={"token": row.id, "label": row.label})


def _check_name(name: str) -> None:
    if len(name) > ID_LENGTH or not USER_NAME.fullmatch(name):
        raise InvalidRecordError(
            f"user name {name!r} must be 1 to {ID_LENGTH} letters, digits and . _ @ - (starting with a letter or digit)"
        )


def _hash_password(password: str, user_inputs: tuple[str, ...]) -> str:
    """The hash of a password that keeps the rule (:mod:`openfrt.records.passwords`)."""
    check_password(password, user_inputs=user_inputs)
    return HASHER.hash(password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@cache
def _dummy_hash() -> str:
    """A hash of a random password, checked against for unknown names so they cost the same."""
    return HASHER.hash(secrets.token_urlsafe(32))


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _end_sessions(session: Session, user_id: int) -> int:
    return session.execute(delete(UserSession).where(UserSession.user_id == user_id)).rowcount


def _user_row(session: Session, name: str) -> User:
    row = session.scalar(select(User).where(User.name == name))
    if row is None:
        raise RecordNotFoundError(f"no user named {name!r}")
    return row


def _user_info(row: User) -> UserInfo:
    return UserInfo(row.id, row.name, row.display_name, row.role, row.created_at, row.disabled, rank=row.rank)


#: Longest rank and number ("Det Ch Supt 12345" fits easily).
RANK_LENGTH = 60


def _checked_rank(rank: str | None) -> str | None:
    """A rank and number as stored: trimmed, None when blank; refused when too long or holding
    characters that change how it reads (it is shown beside the name, and published)."""
    if rank is None or not rank.strip():
        return None
    if len(rank.strip()) > RANK_LENGTH:
        raise InvalidRecordError(f"a rank and number needs at most {RANK_LENGTH} characters")
    check_text(rank.strip(), "rank and number", limit=RANK_LENGTH)
    return rank.strip()


def _checked_display_name(display_name: str) -> str:
    """A display name as stored: trimmed, 1 to 200 characters of readable text."""
    shown = display_name.strip()
    if not shown or len(shown) > 200:
        raise InvalidRecordError("a display name needs 1 to 200 characters")
    check_text(shown, "display name", limit=200)
    return shown


def _token_info(row: ApiToken, user_name: str) -> TokenInfo:
    return TokenInfo(row.id, user_name, row.label, row.created_at, row.last_used_at, row.revoked_at)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
