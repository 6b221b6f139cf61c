"""``openfrt login`` and ``openfrt users``: a user's own API token, and accounts and tokens.

Thin wrappers over :class:`openfrt.records.users.UserService`. ``login`` checks a user's
password and prints a new API token of their own, which every other command then acts with
(``OPENFRT_TOKEN``). The ``users`` commands act as an administrator's token — except creating
an administrator while there is no enabled one (the first, or after all were disabled), which
is local administration with the data directory, audited as ``local:<os user>``. A password is
read from a hidden prompt, or from standard input with ``--password-stdin`` for scripts; it is
never echoed, printed or logged. Exit codes: 0 done, 1 a record or sign-in was refused or not
found (reported), 2 usage or configuration.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from openfrt.cli.common import (
    HomeOption,
    JsonOption,
    console,
    err_console,
    fail,
    open_store,
    store_or_fail,
    print_json,
    usage_error,
)
from openfrt.cli.identity import TOKEN_VARIABLE, has_token, signed_in
from openfrt.records.passwords import PASSWORD_RULE, check_password
from openfrt.records.vocabulary import Role

if TYPE_CHECKING:
    from openfrt.records import Actor, RecordStore, UserInfo

users_app = typer.Typer(help="Server accounts: create, list, disable, passwords and API tokens.", no_args_is_help=True)

NameArgument = Annotated[str, typer.Argument(help="User name (what they sign in with).")]
PasswordStdinOption = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input instead of prompting.")
]


@users_app.command("create")
def user_create(
    name: NameArgument,
    role: Annotated[Role, typer.Option("--role", help="What the user may do on the server.")],
    display_name: Annotated[str | None, typer.Option("--display-name", help="Name shown in the interface (default: NAME).")] = None,
    rank: Annotated[str | None, typer.Option("--rank", help="Rank and number as the officer signs, e.g. 'PC 1234' or 'Supt'.")] = None,
    password_stdin: PasswordStdinOption = False,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create a user (audited, without the password). Without OPENFRT_TOKEN only an
    administrator, and only while there is no enabled one: the first, set up locally. The
    password rule: at least 12 characters, hard to guess (common passwords, words and names on
    their own, keyboard patterns, repeats and sequences are refused)."""
    from openfrt.records import UserService

    with store_or_fail(home, json_output, user=name) as store:
        actor = _administrator(store, role)
        password = _read_password(password_stdin, (name, display_name or name))
        user = UserService(store).create(name, role, password, actor=actor, display_name=display_name, rank=rank)
    _print_user(user, json_output)


@users_app.command("list")
def user_list(home: HomeOption = None, json_output: JsonOption = False) -> None:
    """List users by name."""
    from openfrt.records import UserService

    with open_store(home) as store:
        signed_in(store, "manage_users")
        users = UserService(store).list()
    for user in users:
        _print_user(user, json_output)


@users_app.command("disable")
def user_disable(name: NameArgument, home: HomeOption = None, json_output: JsonOption = False) -> None:
    """Disable a user: their sessions end and their API tokens are revoked (audited)."""
    _change_user(name, home, json_output, "disable")


@users_app.command("unlock")
def user_unlock(name: NameArgument, home: HomeOption = None, json_output: JsonOption = False) -> None:
    """Unlock a user locked out after too many failed sign-ins (audited)."""
    _change_user(name, home, json_output, "unlock")


@users_app.command("password")
def user_password(
    name: NameArgument,
    password_stdin: PasswordStdinOption = False,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Set a user's password (e.g. a forgotten one); their sessions end (audited, without it).
    The same rule as for a new user applies."""
    from openfrt.records import UserService

    with store_or_fail(home, json_output, user=name) as store:
        actor = signed_in(store, "manage_users")
        password = _read_password(password_stdin, (name,))
        UserService(store).set_password(name, password, actor=actor)
    if json_output:
        print_json({"user": name, "password_changed": True})
    else:
        console.print(f"password of {name} changed; their sessions have ended")


def login(
    name: NameArgument,
    label: Annotated[str | None, typer.Option("--label", help="What the token is for (default: this command line and host).")] = None,
    password_stdin: PasswordStdinOption = False,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Check your password and print a new API token of your own (audited as a log-in); every
    other command acts as you with it in OPENFRT_TOKEN. It is printed once and never again."""
    from openfrt.records import AuthenticationError, UserService

    password = _read_password(password_stdin, confirm=False)
    with open_store(home) as store:
        try:
            token, secret = UserService(store).log_in_for_token(name, password, label or f"command line on {socket.gethostname()}")
        except AuthenticationError as exc:
            fail(exc, json_output, user=name)
    if json_output:
        print_json({"token": secret})
        return
    typer.echo(secret)
    err_console.print(f"API token {token.id} for {token.user} ({escape(token.label)}); it will not be shown again. "
                      f"Use it with `export {TOKEN_VARIABLE}=…`; an administrator revokes it with "
                      f"`openfrt users revoke-token {token.id}`.")


@users_app.command("tokens")
def user_tokens(
    name: Annotated[str | None, typer.Argument(help="Only this user's tokens.")] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """List API tokens (without their secrets), revoked ones included."""
    from openfrt.records import UserService

    with store_or_fail(home, json_output, user=name) as store:
        signed_in(store, "manage_users")
        tokens = UserService(store).list_tokens(name)
    for token in tokens:
        if json_output:
            print_json(token.as_dict())
            continue
        used = token.last_used_at.isoformat() if token.last_used_at else "never"
        state = f"revoked {token.revoked_at.isoformat()}" if token.revoked_at else "active"
        console.print(f"token {token.id} {token.user} ({escape(token.label)}): {state}; last used {used}")


@users_app.command("revoke-token")
def user_revoke_token(
    token_id: Annotated[int, typer.Argument(metavar="ID", help="Token id (as `openfrt users tokens` shows).")],
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Revoke an API token at once (audited)."""
    from openfrt.records import UserService

    with store_or_fail(home, json_output, token=token_id) as store:
        actor = signed_in(store, "manage_users")
        UserService(store).revoke_token(token_id, actor=actor)
    if json_output:
        print_json({"token": token_id, "revoked": True})
    else:
        console.print(f"token {token_id} revoked")


users_app.command("reset-password", help="Reset a user's password (same as `password`); their sessions end (audited).")(user_password)


@users_app.command("update")
def user_update(
    name: NameArgument,
    display_name: Annotated[str | None, typer.Option("--display-name", help="Name shown to others.")] = None,
    rank: Annotated[str | None, typer.Option("--rank", help="Rank and number, e.g. 'PC 1234'; '' removes it.")] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Change how a user is shown to others and in published records (audited)."""
    from openfrt.records import UserService

    with store_or_fail(home, json_output, user=name) as store:
        actor = signed_in(store, "manage_users")
        user = UserService(store).update(name, actor=actor, display_name=display_name, rank=rank)
    _print_user(user, json_output)


@users_app.command("enable")
def user_enable(name: NameArgument, home: HomeOption = None, json_output: JsonOption = False) -> None:
    """Let a disabled user sign in again; their old sessions and tokens stay ended (audited)."""
    from openfrt.records import UserService

    with store_or_fail(home, json_output, user=name) as store:
        actor = signed_in(store, "manage_users")
        user = UserService(store).enable(name, actor=actor)
    _print_user(user, json_output)


@users_app.command("role")
def user_role(
    name: NameArgument,
    role: Annotated[str, typer.Argument(metavar="ROLE", help="operator, engagement_officer, authorising_officer, auditor or admin.")],
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Give a user another role; their sessions end (audited). The last administrator keeps theirs."""
    if role not in {member.value for member in Role}:
        usage_error(f"unknown role {role!r}; choose one of {', '.join(member.value for member in Role)}")
    from openfrt.records import UserService

    with store_or_fail(home, json_output, user=name) as store:
        actor = signed_in(store, "manage_users")
        user = UserService(store).set_role(name, Role(role), actor=actor)
    _print_user(user, json_output)


def _administrator(store: RecordStore, role: Role) -> Actor:
    """Who creates a user: an administrator's token — or, while no enabled administrator exists
    (the first one, or after every one was disabled), local administration creating one, so an
    installation can always get an administrator while the shell never stands in for one."""
    from openfrt.records import UserService, local_actor

    if has_token():
        return signed_in(store, "manage_users")
    if any(user.role is Role.admin and not user.disabled for user in UserService(store).list()):
        usage_error(f"only an administrator creates users: set {TOKEN_VARIABLE} to an administrator's token (`openfrt login NAME`)")
    if role is not Role.admin:
        usage_error("there is no administrator yet: create one first (--role admin), then log in as them to create the others")
    return local_actor()


def _read_password(from_stdin: bool, user_inputs: tuple[str, ...] = (), confirm: bool = True) -> str:
    """The password: the whole of standard input less its final line break, or typed at a
    hidden prompt (on stderr, so that `export OPENFRT_TOKEN=$(openfrt login NAME)` captures only
    the token). A new one (``confirm``) is shown the rule first and checked before the
    confirmation prompt — and by the service again, before anything is stored."""
    if from_stdin:
        password = sys.stdin.read().rstrip("\r\n")
        if not password:
            usage_error("--password-stdin: standard input held no password")
        return password
    if not confirm:
        typed: str = typer.prompt("Password", hide_input=True, err=True)
        return typed
    from openfrt.records.errors import InvalidRecordError

    err_console.print(PASSWORD_RULE)
    typed = typer.prompt("Password", hide_input=True, err=True)
    try:
        check_password(typed, user_inputs=user_inputs)
    except InvalidRecordError as exc:
        fail(exc, False)
    if typer.prompt("Repeat the password", hide_input=True, err=True) != typed:
        usage_error("the two passwords differ")
    return typed


def _change_user(name: str, home: Path | None, json_output: bool, change: str) -> None:
    """Make one audited change (``disable``, ``unlock``) to a user's account, as an
    administrator, and print the account as it now is."""
    from openfrt.records import UserService

    with store_or_fail(home, json_output, user=name) as store:
        actor = signed_in(store, "manage_users")
        service = UserService(store)
        getattr(service, change)(name, actor=actor)
        user = service.get(name)
    _print_user(user, json_output)


def _print_user(user: UserInfo, json_output: bool) -> None:
    if json_output:
        print_json(user.as_dict())
        return
    state = (" [red]disabled[/red]" if user.disabled else "") + (" [red]locked out[/red]" if user.locked else "")
    console.print(f"{user.name} ({user.role.value}): {escape(user.public_name)}, created {user.created_at.isoformat()}{state}")
