"""``openfrt users``: the server's accounts and API tokens, managed from the server's own shell.

Thin wrappers over :class:`openfrt.records.users.UserService`; whoever can run them can open
the records store, so they need no sign-in (the first administrator is created here). A
password is read from a hidden prompt, or from standard input with ``--password-stdin`` for
scripts; it is never echoed, printed or logged. Exit codes: 0 done, 1 a record was refused or
not found (reported), 2 usage or configuration.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from openfrt.cli.common import (
    HomeOption,
    JsonOption,
    OperatorOption,
    console,
    open_store,
    store_or_fail,
    print_json,
    usage_error,
)
from openfrt.records import Role, UserInfo, UserService, current_actor

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
    operator: OperatorOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create a user (audited, without the password)."""
    password = _read_password(password_stdin)
    with store_or_fail(home, json_output, user=name) as store:
        user = UserService(store).create(name, role, password, actor=current_actor(operator), display_name=display_name, rank=rank)
    _print_user(user, json_output)


@users_app.command("list")
def user_list(home: HomeOption = None, json_output: JsonOption = False) -> None:
    """List users by name."""
    with open_store(home) as store:
        users = UserService(store).list()
    for user in users:
        _print_user(user, json_output)


@users_app.command("disable")
def user_disable(name: NameArgument, home: HomeOption = None, operator: OperatorOption = None, json_output: JsonOption = False) -> None:
    """Disable a user: their sessions end and their API tokens are revoked (audited)."""
    with store_or_fail(home, json_output, user=name) as store:
        service = UserService(store)
        service.disable(name, actor=current_actor(operator))
        user = service.get(name)
    _print_user(user, json_output)


@users_app.command("password")
def user_password(
    name: NameArgument,
    password_stdin: PasswordStdinOption = False,
    home: HomeOption = None,
    operator: OperatorOption = None,
    json_output: JsonOption = False,
) -> None:
    """Set a user's password (e.g. a forgotten one); their sessions end (audited, without it)."""
    password = _read_password(password_stdin)
    with store_or_fail(home, json_output, user=name) as store:
        UserService(store).set_password(name, password, actor=current_actor(operator))
    if json_output:
        print_json({"user": name, "password_changed": True})
    else:
        console.print(f"password of {name} changed; their sessions have ended")


@users_app.command("token")
def user_token(
    name: NameArgument,
    label: Annotated[str, typer.Option("--label", help="What the token is for (e.g. the system that uses it).")],
    home: HomeOption = None,
    operator: OperatorOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create an API token acting as the user; its secret is printed once and never again."""
    with store_or_fail(home, json_output, user=name) as store:
        token, secret = UserService(store).create_token(name, label, actor=current_actor(operator))
    if json_output:
        print_json({**token.as_dict(), "secret": secret})
        return
    console.print(f"API token {token.id} for {token.user} ({escape(token.label)}):")
    typer.echo(secret)
    console.print("[yellow]Store it now: it will not be shown again.[/yellow] Revoke it with `openfrt users revoke-token "
                  f"{token.id}`.")


@users_app.command("tokens")
def user_tokens(
    name: Annotated[str | None, typer.Argument(help="Only this user's tokens.")] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """List API tokens (without their secrets), revoked ones included."""
    with store_or_fail(home, json_output, user=name) as store:
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
    operator: OperatorOption = None,
    json_output: JsonOption = False,
) -> None:
    """Revoke an API token at once (audited)."""
    with store_or_fail(home, json_output, token=token_id) as store:
        UserService(store).revoke_token(token_id, actor=current_actor(operator))
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
    operator: OperatorOption = None,
    json_output: JsonOption = False,
) -> None:
    """Change how a user is shown to others and in published records (audited)."""
    from openfrt.records.users import UserService

    with store_or_fail(home, json_output, user=name) as store:
        user = UserService(store).update(name, actor=current_actor(operator), display_name=display_name, rank=rank)
    _print_user(user, json_output)


@users_app.command("enable")
def user_enable(name: NameArgument, home: HomeOption = None, operator: OperatorOption = None, json_output: JsonOption = False) -> None:
    """Let a disabled user sign in again; their old sessions and tokens stay ended (audited)."""
    from openfrt.records.users import UserService

    with store_or_fail(home, json_output, user=name) as store:
        user = UserService(store).enable(name, actor=current_actor(operator))
    _print_user(user, json_output)


@users_app.command("role")
def user_role(
    name: NameArgument,
    role: Annotated[str, typer.Argument(metavar="ROLE", help="operator, engagement_officer, authorising_officer, auditor or admin.")],
    home: HomeOption = None,
    operator: OperatorOption = None,
    json_output: JsonOption = False,
) -> None:
    """Give a user another role; their sessions end (audited). The last administrator keeps theirs."""
    from openfrt.records.users import Role, UserService

    if role not in {member.value for member in Role}:
        usage_error(f"unknown role {role!r}; choose one of {', '.join(member.value for member in Role)}")
    with store_or_fail(home, json_output, user=name) as store:
        user = UserService(store).set_role(name, Role(role), actor=current_actor(operator))
    _print_user(user, json_output)


def _read_password(from_stdin: bool) -> str:
    """The new password: the whole of standard input less its final line break, or typed twice
    at a hidden prompt. Checked for length by the service, before anything is stored."""
    if from_stdin:
        password = sys.stdin.read().rstrip("\r\n")
        if not password:
            usage_error("--password-stdin: standard input held no password")
        return password
    typed: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return typed


def _print_user(user: UserInfo, json_output: bool) -> None:
    if json_output:
        print_json(user.as_dict())
        return
    state = " [red]disabled[/red]" if user.disabled else ""
    console.print(f"{user.name} ({user.role.value}): {escape(user.public_name)}, created {user.created_at.isoformat()}{state}")
