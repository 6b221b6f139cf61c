"""Sign-in throttling: failed attempts are slowed per account name and per client with growing
delays, and ten failures in a row lock the account until an administrator lifts it (audited).

Counts live in the database, so every server process and the command line share them. They are
keyed by a keyed fingerprint of the typed name or the client's address (:meth:`Cipher.fingerprint`),
never the text: a "name" may be a password typed into the wrong box. Names that belong to no
account are counted, delayed and locked exactly like real ones, so the answers never tell an
attacker which names exist.

An attempt is counted as a failure *before* its password is checked, in a transaction that
holds the database's write lock, and taken back if it succeeds: guesses sent in parallel queue
for that lock and meet the delay the earlier ones set, so they get no more password checks than
guesses sent one after another.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from openfrt.records.audit import AuditAction, hold_audit_chain, record_event
from openfrt.records.errors import AuthenticationError
from openfrt.records.models import SignInThrottle, utc_now
from openfrt.records.store import RecordStore

#: Failures are forgotten after this long without another (a lock is kept until lifted).
FORGET_AFTER = timedelta(days=1)


@dataclass(frozen=True)
class ThrottlePolicy:
    """The first ``free_attempts`` failures cost nothing; each later one doubles the wait before
    the next attempt (1 s, 2 s, 4 s … up to ``max_delay``); ``lock_after`` failures in a row lock."""

    free_attempts: int
    max_delay: timedelta
    lock_after: int | None

    def delay(self, failures: int) -> timedelta:
        if failures < self.free_attempts:
            return timedelta(0)
        return min(timedelta(seconds=2 ** (failures - self.free_attempts)), self.max_delay)


#: Per account name: a person mistyping a few times is not slowed; a guesser is, then locked out.
ACCOUNT = ThrottlePolicy(free_attempts=3, max_delay=timedelta(minutes=15), lock_after=10)
#: Per client address: several people may share one (a station, a proxy), and one guesser may
#: try many names; never locked, as that would lock out everyone behind the address.
CLIENT = ThrottlePolicy(free_attempts=10, max_delay=timedelta(minutes=15), lock_after=None)


class SignInThrottled(AuthenticationError):
    """Too many failed sign-ins: the next attempt must wait ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many failed sign-ins: try again in {retry_after} s")


class AccountLocked(AuthenticationError):
    """Ten failed sign-ins in a row: the account stays locked until an administrator unlocks it."""

    def __init__(self) -> None:
        super().__init__("sign-in refused: after too many failed attempts in a row this account is locked "
                         "until an administrator unlocks it")


@dataclass(frozen=True)
class Attempt:
    """A sign-in attempt admitted (and provisionally counted as failed) under these keys."""

    account: str
    client: str | None


class LoginThrottle:
    def __init__(self, store: RecordStore) -> None:
        self.store = store

    def admit(self, name: str, client: str | None) -> Attempt:
        """Count an attempt for ``name`` from ``client`` — or refuse it at once, before any
        password is checked: :class:`AccountLocked`, or :class:`SignInThrottled` while a delay runs."""
        attempt = Attempt(self._key("account", name), self._key("client", client) if client else None)
        now = utc_now()
        with self.store.transaction() as session:
            hold_audit_chain(session)  # the write lock: concurrent attempts on any key queue here
            # Forgotten failures are removed (as expired sessions are), so that addresses and
            # names tried once do not pile up; a lock stays until an administrator lifts it.
            session.execute(delete(SignInThrottle).where(SignInThrottle.locked_at.is_(None),
                                                         SignInThrottle.last_failure_at < now - FORGET_AFTER))
            rows = {key: self._row(session, key) for key in self._keys(attempt)}
            if rows[attempt.account].locked_at is not None:
                raise AccountLocked()
            if waits := [row.blocked_until - now for row in rows.values() if row.blocked_until is not None and row.blocked_until > now]:
                raise SignInThrottled(math.ceil(max(waits).total_seconds()))
            for key, row in rows.items():
                row.failures += 1
                row.last_failure_at = now
                self._block(row, self._policy(key), now)
        return attempt

    def failed(self, session: Session, attempt: Attempt, shown: str) -> None:
        """The attempt failed (it is already counted): lock the account if that was one too many.
        ``shown`` names the account in the audit log."""
        row = session.get(SignInThrottle, attempt.account)
        if row is not None and row.locked_at is None and row.failures >= (ACCOUNT.lock_after or math.inf):
            row.locked_at = utc_now()
            record_event(session, AuditAction.user_locked, actor="sign-in throttle", target=shown, details={"failures": row.failures})

    def succeeded(self, session: Session, attempt: Attempt) -> None:
        """The attempt succeeded: the account's count starts again; the client's loses this attempt
        and its wait (its earlier failures still count towards the next delay)."""
        session.execute(delete(SignInThrottle).where(SignInThrottle.key == attempt.account))
        if attempt.client is not None and (row := session.get(SignInThrottle, attempt.client)) is not None:
            row.failures, row.blocked_until = max(0, row.failures - 1), None

    def lift(self, session: Session, name: str) -> SignInThrottle | None:
        """Remove the account's lock and delays; returns what was lifted (None if nothing was)."""
        row = session.get(SignInThrottle, self._key("account", name))
        if row is not None:
            session.delete(row)
        return row

    def locked(self, session: Session, names: Iterable[str]) -> set[str]:
        """Which of these account names are locked."""
        keys = {self._key("account", name): name for name in names}
        found = session.scalars(select(SignInThrottle.key).where(SignInThrottle.key.in_(keys), SignInThrottle.locked_at.is_not(None)))
        return {keys[key] for key in found}

    def _key(self, kind: str, text: str) -> str:
        return f"{kind}:{self.store.cipher.fingerprint(text.encode('utf-8', 'surrogatepass'))}"

    @staticmethod
    def _keys(attempt: Attempt) -> list[str]:
        return [attempt.account] + ([attempt.client] if attempt.client else [])

    @staticmethod
    def _row(session: Session, key: str) -> SignInThrottle:
        row = session.get(SignInThrottle, key)
        if row is None:
            row = SignInThrottle(key=key, failures=0)
            session.add(row)
        return row

    @staticmethod
    def _policy(key: str) -> ThrottlePolicy:
        return ACCOUNT if key.startswith("account:") else CLIENT

    @staticmethod
    def _block(row: SignInThrottle, policy: ThrottlePolicy, now: datetime) -> None:
        delay = policy.delay(row.failures)
        row.blocked_until = now + delay if delay else None
