"""How people are named to other people: "PC 1234 J. Jones", never the log-in name "jjones".

Records keep the user name (the identity the audit log and permissions use); pages, alert cards
and the published record show the user's rank and number with their display name. A name that
is no user's (an officer typed on the command line, ``--by "Sgt 45 Khan"``, or a process such
as ``deployment:high-st``) is shown as it was recorded.
"""

from __future__ import annotations

from collections.abc import Iterable

from openfrt.records.users import UserInfo, UserService


class People:
    """Public names of the users, read once (on first use) per request or event batch."""

    def __init__(self, users: UserService) -> None:
        self._users = users
        self._known: dict[str, UserInfo] | None = None

    def user(self, name: str | None) -> UserInfo | None:
        if name is None:
            return None
        if self._known is None:
            self._known = {user.name: user for user in self._users.list()}
        return self._known.get(name)

    def name(self, name: str | None) -> str:
        """The public name of the user called ``name``, or ``name`` itself if it is no user's."""
        if name is None:
            return "—"
        user = self.user(name)
        return user.public_name if user is not None else name

    def names(self, names: Iterable[str | None]) -> dict[str, str]:
        """``{recorded name: public name}`` for each name given (for scripts that show them)."""
        return {name: self.name(name) for name in names if name}
