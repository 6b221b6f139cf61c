"""The gallery commands run as a user would: in a subprocess, with OPENFRT_HOME in a temp dir and
the user's API token in OPENFRT_TOKEN (``cli_users.as_user``)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cli_users import as_user, user_name

from openfrt.records import Role

LFW = Path(__file__).resolve().parents[1].parent / "shared" / "faces" / "lfw"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if key not in ("OPENFRT_DATABASE_URL", "OPENFRT_KEY_FILE")}
    environment.pop("OPENFRT_TOKEN", None)
    return {**environment, "OPENFRT_HOME": str(tmp_path / "home")}


def openfrt(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("openfrt")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "openfrt"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=300, env=env)


def lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def folder(tmp_path: Path, samples: Path) -> Path:
    """DIR/<subject>/<images>: two LFW identities and one subject whose only image has two faces."""
    if not LFW.exists():
        pytest.skip(f"needs {LFW} (LFW in the shared test data beside the project), which is absent")
    root = tmp_path / "to-enrol"
    for name in ("Colin_Powell", "Serena_Williams"):
        (root / name).mkdir(parents=True)
        for number in (1, 2):
            shutil.copy(LFW / name / f"{name}_{number:04d}.jpg", root / name)
    (root / "Crowd").mkdir()
    shutil.copy(samples / "two_people.jpg", root / "Crowd")
    return root


def test_watchlist_enrol_identify_search_delete(env: dict[str, str], folder: Path, samples: Path) -> None:
    officer, operator = as_user(env, Role.authorising_officer), as_user(env, Role.operator)
    created = openfrt(officer, "watchlist", "create", "op", "--purpose", "missing people",
                      "--expires", "2099-01-01T00:00:00+00:00", "--json")
    assert created.returncode == 0, created.stderr
    info = lines(created)[0]
    assert info["authorised_by"] == user_name(Role.authorising_officer) and info["model_id"] == "dlib-resnet@v1" and "fitness" in info
    key = Path(env["OPENFRT_HOME"]) / "secret.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600

    enrolled = openfrt(officer, "enrol-folder", "op", str(folder), "--category", "missing", "--legal-basis", "consent", "--json")
    assert enrolled.returncode == 1  # the crowd photo was refused; the others kept
    reports = {report["subject"]: report for report in lines(enrolled)}
    assert reports["Colin_Powell"]["enrolled"] and reports["Serena_Williams"]["enrolled"]
    assert not reports["Crowd"]["enrolled"] and reports["Crowd"]["images"][0]["refused"] == "several_faces"

    member, stranger = LFW / "Colin_Powell" / "Colin_Powell_0010.jpg", LFW / "Jennifer_Capriati" / "Jennifer_Capriati_0001.jpg"
    identified = openfrt(operator, "identify", "op", str(member), str(stranger), "missing.jpg", "--json", "--top", "2")
    assert identified.returncode == 1
    hit, miss, bad = lines(identified)
    assert set(hit) == {"image", "candidates", "alert", "error"} and hit["image"] == str(member)
    assert hit["alert"] is True and hit["candidates"][0] == {**hit["candidates"][0], "subject": "Colin_Powell", "rank": 1}
    assert miss["alert"] is False and len(miss["candidates"]) == 2 and miss["error"] is None
    assert bad["candidates"] == [] and bad["alert"] is False and "missing.jpg" in bad["error"]

    refused = openfrt(operator, "search", str(member), "--json")
    assert refused.returncode == 2 and refused.stdout == ""
    searched = openfrt(operator, "search", str(member), "--case", "CASE-9", "--reason", "CCTV still", "--json")
    assert searched.returncode == 0, searched.stderr
    (result,) = lines(searched)
    assert set(result) == {"image", "candidates", "error"} and result["candidates"][0]["subject"] == "Colin_Powell"

    assert openfrt(officer, "subject", "remove", "Serena_Williams", "--reason", "found", "--json").returncode == 0
    shown = lines(openfrt(operator, "watchlist", "show", "op", "--json"))[0]
    assert shown["subjects"] == ["Colin_Powell"] and shown["size"] == 1
    assert openfrt(officer, "watchlist", "delete", "op", "--json").returncode == 0
    gone = openfrt(operator, "identify", "op", str(member), "--json")
    assert gone.returncode == 2 and "no watchlist" in gone.stderr

    with sqlite3.connect(Path(env["OPENFRT_HOME"]) / "openfrt.db") as db:
        audit = db.execute("SELECT actor, action, target, case_ref, reason, credential FROM audit_events "
                           "WHERE action NOT LIKE 'user.%' AND action NOT LIKE 'token.%' ORDER BY id").fetchall()
    assert [row[1] for row in audit] == [
        "watchlist.create", "subject.enrol", "subject.enrol", "search.retrospective", "subject.remove", "watchlist.delete"
    ]
    by_operator = {row[1] for row in audit if row[0] == user_name(Role.operator)}
    assert by_operator == {"search.retrospective"} and all(row[5].startswith("token:") for row in audit)
    assert audit[3][2:5] == (str(member), "CASE-9", "CCTV still") and audit[4][2:5] == ("Serena_Williams", None, "found")


def test_subject_add_reports_refusals_and_exit_codes(env: dict[str, str], samples: Path) -> None:
    env = as_user(env, Role.authorising_officer)
    refused = openfrt(env, "subject", "add", "S1", str(samples / "two_people.jpg"), "--name", "S One", "--category", "suspect", "--json")
    assert refused.returncode == 1
    (report,) = lines(refused)
    assert report["enrolled"] is False and report["images"][0]["refused"] == "several_faces"
    chosen = openfrt(env, "subject", "add", "S1", str(samples / "two_people.jpg"), "--name", "S One", "--category", "suspect",
                     "--face", "largest", "--legal-basis", "PACE", "--source", "custody 1/23", "--json")
    assert chosen.returncode == 0 and lines(chosen)[0]["enrolled"] is True
    assert openfrt(env, "subject", "add", "S2", "x.jpg", "--name", "S", "--category", "nonsense").returncode == 2
    missing = openfrt(env, "subject", "remove", "nobody", "--json")
    assert missing.returncode == 1 and "nobody" in lines(missing)[0]["error"]
