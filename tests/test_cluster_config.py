"""Cluster mode's configuration, without a cluster: unset, Ray is never imported; set, it needs
a shared PostgreSQL database and says so before touching Ray."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

#: Runs the ``openfrt`` app in a fresh interpreter and reports its exit code and whether Ray was
#: imported; every CLI call of this module goes through :func:`openfrt_cli`.
_PROBE = """
import json, sys
from openfrt.cli.main import app
try:
    code = app(sys.argv[1:], standalone_mode=False) or 0  # click returns the code of an Exit
except SystemExit as exc:
    code = exc.code
except Exception as exc:  # click's Exit carries the code
    code = getattr(exc, "exit_code", 1)
print(json.dumps({"code": code, "ray": "ray" in sys.modules}))
"""


def openfrt_cli(tmp_path: Path, *args: str, **env: str) -> tuple[dict[str, object], str]:
    environment = {key: value for key, value in __import__("os").environ.items()
                   if key not in ("OPENFRT_DATABASE_URL", "OPENFRT_RAY_ADDRESS")}
    environment.update({"OPENFRT_HOME": str(tmp_path / "home"), **env})
    result = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=300, env=environment)
    return json.loads(result.stdout.splitlines()[-1]), result.stderr


def test_without_a_ray_address_nothing_imports_ray() -> None:
    modules = "openfrt.cli.main, openfrt.api.app, openfrt.api.context, openfrt.live.supervisor, openfrt.gallery.reference_index"
    check = f"import sys, {modules}; print('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True).stdout.strip() == "False"


@pytest.mark.parametrize("command", [["live", "--deployment", "d"], ["serve", "--port", "1"]])
def test_cluster_mode_refuses_sqlite_before_importing_ray(tmp_path: Path, command: list[str]) -> None:
    outcome, stderr = openfrt_cli(tmp_path, *command, "--ray-address", "127.0.0.1:1")
    assert outcome == {"code": 2, "ray": False}
    assert "cluster mode needs a shared records database" in stderr and "OPENFRT_DATABASE_URL" in stderr


def test_the_ray_address_can_come_from_the_environment(tmp_path: Path) -> None:
    outcome, stderr = openfrt_cli(tmp_path, "serve", "--port", "1", OPENFRT_RAY_ADDRESS="127.0.0.1:1")
    assert outcome == {"code": 2, "ray": False} and "shared records database" in stderr


def test_camera_resources_are_read_as_camera_resource_and_share() -> None:
    from openfrt.cluster.settings import DEFAULT_RESOURCE_SHARE, ClusterConfigError, parse_camera_resources

    assert parse_camera_resources(["van1=site_van", "van1=gpu_small:0.5", "gate=site_gate:1"]) == {
        "van1": {"site_van": DEFAULT_RESOURCE_SHARE, "gpu_small": 0.5}, "gate": {"site_gate": 1.0}}
    for bad in ("van1", "=site_van", "van1=", "van1=site_van:none", "van1=site_van:0"):
        with pytest.raises(ClusterConfigError):
            parse_camera_resources([bad])
