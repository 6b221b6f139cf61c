"""The command line acts as an openfrt user, never as the operating-system account, and one
officer cannot plan, authorise and start their own deployment (security finding 10)."""

from __future__ import annotations

import getpass
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image
from cli_users import PASSWORD, as_user, authorised_deployment, records, user_name
from fastapi.testclient import TestClient
from test_api import USERS, client, home, login  # noqa: F401 - the server and its users
from test_gallery_cli import env, lines, openfrt  # noqa: F401 - the subprocess runner and its environment

from openfrt.gallery import Gallery
from openfrt.live.deployments import DeploymentService
from openfrt.records import NotPermittedError, Role
from openfrt.vision import FaceEngine

#: Commands that read or change records, each with the arguments it needs to get that far.
RECORD_COMMANDS = [
    ("watchlist", "show", "op"),
    ("subject", "remove", "S1", "--reason", "r"),
    ("deployments", "list"),
    ("deployments", "create", "d", "--watchlist", "op", "--location", "l", "--purpose", "p"),
    ("deployments", "authorise", "d"),
    ("alerts", "list"),
    ("alerts", "adjudicate", "1", "--status", "false_alert", "--outcome", "no_action"),
    ("retention", "run"),
    ("audit", "list"),
    ("users", "list"),
    ("live", "--deployment", "d"),
]


def run_all(env: dict[str, str], commands: list[tuple[str, ...]]) -> list:  # noqa: F811
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda command: openfrt(env, *command), commands))


def test_every_record_command_refuses_to_run_without_a_users_token(env: dict[str, str]) -> None:  # noqa: F811
    env = {**env, "OPENFRT_USER": "Supt A"}  # the old way of naming oneself is gone
    with records(env):
        pass  # the data directory and its key exist before the commands run side by side
    for command, result in zip(RECORD_COMMANDS, run_all(env, RECORD_COMMANDS)):
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "OPENFRT_TOKEN" in result.stderr and "openfrt login" in result.stderr, (command, result.stderr)
    assert records_audit(env) == []  # nothing was done, so nothing was audited


def records_audit(env: dict[str, str]) -> list[tuple[str, str, str | None]]:  # noqa: F811
    from openfrt.records import list_events

    with records(env) as store, store.transaction() as session:
        return [(entry.action, entry.actor, entry.credential) for entry in reversed(list_events(session, limit=1000))]


def test_a_refused_token_or_a_role_without_the_permission_stops_the_command(env: dict[str, str]) -> None:  # noqa: F811
    refused = openfrt({**env, "OPENFRT_TOKEN": "ofrt_" + "x" * 43}, "deployments", "list")
    assert refused.returncode == 2 and "refused" in refused.stderr and "openfrt login" in refused.stderr
    auditor = as_user(env, Role.auditor)
    for command, permission in ((("alerts", "list"), "view alerts"), (("deployments", "authorise", "d"), "authorise deployments"),
                                (("users", "list"), "manage users")):
        result = openfrt(auditor, *command)
        assert result.returncode == 2 and f"{user_name(Role.auditor)} (auditor) may not {permission}" in result.stderr


def test_login_gives_a_user_their_own_token_and_commands_audit_as_them(env: dict[str, str]) -> None:  # noqa: F811
    first = openfrt_input(env, PASSWORD, "users", "create", "chief", "--role", "admin", "--password-stdin", "--json")
    assert first.returncode == 0, first.stderr  # the first administrator: local administration
    second = openfrt_input(env, PASSWORD, "users", "create", "deputy", "--role", "admin", "--password-stdin")
    assert second.returncode == 2 and "only an administrator creates users" in second.stderr

    logged_in = openfrt_input(env, PASSWORD, "login", "chief", "--password-stdin", "--json")
    assert logged_in.returncode == 0, logged_in.stderr
    (answer,) = lines(logged_in)
    assert set(answer) == {"token"} and str(answer["token"]).startswith("ofrt_")
    chief = {**env, "OPENFRT_TOKEN": str(answer["token"])}
    made = openfrt_input(chief, PASSWORD, "users", "create", "pc-1", "--role", "operator", "--password-stdin", "--json")
    assert made.returncode == 0, made.stderr

    local = f"local:{getpass.getuser()}"
    entries = records_audit(env)
    token = next(credential for action, _, credential in entries if action == "user.create" and credential != "local")
    assert token is not None and token.startswith("token:")
    assert entries == [
        ("user.create", local, "local"), ("user.login", "chief", "password"), ("token.create", "chief", "password"),
        ("user.create", "chief", token),
    ]


def openfrt_input(env: dict[str, str], password: str, *args: str):  # noqa: F811
    import subprocess
    import sys

    script = Path(sys.executable).with_name("openfrt")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "openfrt"]
    return subprocess.run([*command, *args], input=password + "\n", capture_output=True, text=True, timeout=300, env=env, check=False)


def test_a_planner_cannot_authorise_their_own_deployment(client: TestClient) -> None:  # noqa: F811
    officer = login(client, Role.authorising_officer)
    assert client.post("/api/watchlists", json={"name": "wanted", "purpose": "warrants"}, headers=officer).status_code == 201
    plan = {"name": "own", "purpose": "p", "location": "Gate St", "watchlist": "wanted", "cameras": {"gate": "0"}}
    assert client.post("/api/deployments", json=plan, headers=officer).status_code == 201
    own = client.post("/api/deployments/own/authorise", json={"reason": "my own plan"}, headers=officer)
    assert own.status_code == 403 and "another authorising officer must authorise it" in own.json()["detail"]
    assert client.get("/api/deployments/own").json()["authorised_by"] is None
    assert client.get("/api/deployments/own").json()["planned_by"] == USERS[Role.authorising_officer]


def test_the_command_line_keeps_planning_and_authorising_apart(env: dict[str, str], hog_engine: FaceEngine) -> None:  # noqa: F811
    officer, other = as_user(env, Role.authorising_officer), as_user(env, Role.authorising_officer, "authorising-officer-2")
    with records(env) as store:
        Gallery(store, hog_engine).create_watchlist("op", purpose="p", authorised_by=user_name(Role.authorising_officer), actor="x")
    planned = openfrt(officer, "deployments", "create", "d", "--watchlist", "op", "--location", "l", "--purpose", "p", "--json")
    assert planned.returncode == 0, planned.stderr
    own = openfrt(officer, "deployments", "authorise", "d", "--json")
    assert own.returncode == 1 and "another authorising officer" in json.loads(own.stdout)["error"]
    authorised = openfrt(other, "deployments", "authorise", "d", "--json")
    assert authorised.returncode == 0 and json.loads(authorised.stdout)["authorised_by"] == "authorising-officer-2"
    with records(env) as store:
        with pytest.raises(NotPermittedError):
            DeploymentService(store).authorise("d", actor=user_name(Role.authorising_officer))


def test_live_runs_only_a_deployment_an_authorising_officer_authorised(env: dict[str, str], tmp_path: Path, hog_engine: FaceEngine) -> None:  # noqa: F811
    operator = as_user(env, Role.operator)
    cameras = tmp_path / "frames"
    cameras.mkdir()
    Image.new("RGB", (64, 48)).save(cameras / "frame.png")
    with records(env) as store:
        Gallery(store, hog_engine).create_watchlist("op", purpose="p", authorised_by="x", actor="x", standing_reason="two deployments")
        DeploymentService(store).create("waiting", purpose="p", location="l", watchlist="op", actor=user_name(Role.operator),
                                        cameras={"gate": str(cameras)})
    unauthorised = openfrt(operator, "live", "--deployment", "waiting", "--events-json")
    assert unauthorised.returncode == 2 and "no authorising officer" in unauthorised.stderr
    authorised_deployment(env, "ready", "op", {"gate": str(cameras)})
    empty = openfrt(operator, "live", "--deployment", "ready", "--events-json", "--detector", "hog", "--embedder", "dlib")  # the watchlist's model
    assert empty.returncode == 2 and "watchlist 'op' is empty" in empty.stderr  # got past the authority, to the watchlist
    assert "unknown option" not in empty.stderr.lower()
