"""The ``openfrt`` command, run as a user would: in a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def openfrt(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed console script (or ``python -m openfrt`` if it is not on PATH)."""
    script = Path(sys.executable).with_name("openfrt")
    command = [str(script)] if script.exists() else [shutil.which("openfrt") or "", ]
    if not command[0]:
        command = [sys.executable, "-m", "openfrt"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=300)


def test_compare_json_same_person(samples: Path) -> None:
    result = openfrt("compare", str(samples / "obama.jpg"), str(samples / "obama2.jpg"), "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert set(payload) == {"similarity", "threshold", "match"}
    assert payload["match"] is True and payload["similarity"] >= payload["threshold"]


def test_compare_json_different_people(samples: Path) -> None:
    result = openfrt("compare", str(samples / "obama.jpg"), str(samples / "biden.jpg"), "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["match"] is False and payload["similarity"] < payload["threshold"]


def test_compare_human_output(samples: Path) -> None:
    result = openfrt("compare", str(samples / "obama.jpg"), str(samples / "obama3.jpg"))
    assert result.returncode == 0 and "match" in result.stdout and "similarity" in result.stdout


def test_faces_json_line_per_image_and_exit_1_on_bad_input(samples: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes((samples / "obama.jpg").read_bytes()[:500])
    images = [str(samples / "two_people.jpg"), str(broken), "missing.png"]
    result = openfrt("faces", *images, "--json")
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["image"] for line in lines] == images
    good, cut, missing = lines
    assert len(good["faces"]) == 2 and good["error"] is None
    assert set(good["faces"][0]) == {"box", "score", "quality"} and len(good["faces"][0]["box"]) == 4
    assert "face_height_px" in good["faces"][0]["quality"]
    assert cut["faces"] == [] and "truncated" in cut["error"] and str(broken) in cut["error"]
    assert missing["error"] == "missing.png: no such file"


def test_compare_no_face_is_an_input_failure(tmp_path: Path, samples: Path) -> None:
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (120, 120), (90, 90, 90)).save(blank)
    result = openfrt("compare", str(blank), str(samples / "obama.jpg"), "--json")
    assert result.returncode == 1
    assert "blank.png: no face found" in json.loads(result.stdout)["error"]


def test_pixel_limit_option(samples: Path) -> None:
    result = openfrt("faces", str(samples / "obama.jpg"), "--max-pixels", "1000", "--json")
    assert result.returncode == 1 and "over the limit of 1,000" in json.loads(result.stdout)["error"]


@pytest.mark.parametrize(
    "args",
    [("compare", "only-one.jpg"), ("faces",), ("frobnicate",), ("faces", "x.jpg", "--detector", "nope")],
)
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    result = openfrt(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
