"""The command line answers ``--help`` without loading the heavy machinery behind its commands.

Structural rather than timed (machines differ, and timing lives in ``benchmarks/cli_startup.py``):
a fresh interpreter asks every command and group for its help, then lists which heavy modules
got imported. Each of them costs tenths of a second to seconds to import, and ``openfrt --help``
once took 4-5 s because command modules imported them at the top.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cli_users import as_user

from openfrt.records import Role

#: Top-level packages that only a command's work may load: the face engine's runtimes, the
#: database layer, the server, plotting, video — and pydantic, which Typer 0.29 loads to coerce
#: parameters even for a subcommand's --help (hence typer<0.29 in pyproject.toml).
HEAVY = (
    "numpy", "cv2", "onnx", "onnxruntime", "openvino", "dlib", "mtcnn", "faiss", "av", "matplotlib",
    "sqlalchemy", "alembic", "psycopg", "cryptography", "argon2", "fastapi", "starlette", "uvicorn", "jinja2",
    "httpx", "PIL", "joblib", "lz4", "ray", "paho", "prometheus_client", "pydantic",
)

#: Runs in a fresh interpreter: ``--help`` of every command and group, then what was imported.
EVERY_HELP = """
import contextlib, io, json, sys
import typer.main
from openfrt.cli.main import app

root = typer.main.get_command(app)

def walk(command, path):
    yield path
    if hasattr(command, "list_commands"):
        context = command.make_context(path[-1] if path else "openfrt", ["--help"], resilient_parsing=True)
        for name in command.list_commands(context):
            yield from walk(command.get_command(context, name), [*path, name])

codes = {}
for path in list(walk(root, [])):
    with contextlib.redirect_stdout(io.StringIO()) as shown:
        code = root.main(args=[*path, "--help"], prog_name="openfrt", standalone_mode=False)
    codes[" ".join(path)] = [code, "Usage" in shown.getvalue()]
print(json.dumps({"codes": codes, "modules": sorted(sys.modules)}))
"""


def test_every_help_answers_without_loading_heavy_modules() -> None:
    result = subprocess.run([sys.executable, "-c", EVERY_HELP], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    codes = report["codes"]
    assert {"", "subject", "subject list", "subject show", "subject remove-image", "watchlist create", "watchlist remove",
            "live", "alerts list", "users create"} <= set(codes)
    assert all(code == [0, True] for code in codes.values()), {path: code for path, code in codes.items() if code != [0, True]}
    loaded = sorted({module.split(".")[0] for module in report["modules"]} & set(HEAVY))
    assert loaded == [], f"`openfrt ... --help` imported {loaded}: import them inside the command functions"


def test_the_console_script_answers_help() -> None:
    result = subprocess.run([sys.executable, "-m", "openfrt", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "enrol-folder" in result.stdout and "subject" in result.stdout, result.stderr


def test_a_records_command_does_not_load_the_face_engine(tmp_path: Path) -> None:
    """An adjudicating officer's ``alerts list`` needs the database, not the detectors' runtimes."""
    env = {**os.environ, "OPENFRT_HOME": str(tmp_path / "home")}
    env.pop("OPENFRT_DATABASE_URL", None)
    env = as_user(env, Role.engagement_officer)
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "openfrt", "alerts", "list", "--json"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "sqlalchemy" in imported
    assert not imported & {"onnx", "onnxruntime", "openvino", "dlib", "mtcnn", "matplotlib", "fastapi"}
