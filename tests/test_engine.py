"""The face engine on real faces: detection, templates, comparison and plug-ins."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from openfrt.errors import ModelError, ModelMismatchError, NoFaceError, UnknownPluginError
from openfrt.vision import EngineConfig, FaceEngine, Template, compare, load_image
from openfrt.vision.detectors import DETECTORS
from openfrt.vision.embedders import EMBEDDERS
from openfrt.vision.types import LANDMARK_NAMES


def test_same_person_matches_and_different_people_do_not(hog_engine: FaceEngine, samples: Path) -> None:
    _, obama = hog_engine.largest_face_template(samples / "obama.jpg")
    _, obama2 = hog_engine.largest_face_template(samples / "obama2.jpg")
    _, biden = hog_engine.largest_face_template(samples / "biden.jpg")
    same, different = compare(obama, obama2), compare(obama, biden)
    assert hog_engine.is_match(same), same
    assert not hog_engine.is_match(different), different
    assert 0.0 <= different < same <= 1.0
    assert compare(obama2, obama) == pytest.approx(same)


def test_two_people_gives_two_faces_with_sane_landmarks(hog_engine: FaceEngine, samples: Path) -> None:
    faces = hog_engine.detect(samples / "two_people.jpg")
    assert len(faces) == 2
    for face in faces:
        x, y, w, h = face.box
        left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
        assert x <= left_eye[0] < right_eye[0] <= x + w
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1]) <= y + h * 1.1
        assert face.quality.face_height_px == h and face.quality.sharpness > 0
        assert 0.0 <= face.quality.brightness <= 1.0 and 0.0 <= face.quality.frontalness <= 1.0
    assert len(LANDMARK_NAMES) == 5


def test_rgba_png_is_handled_and_matches_the_same_person(hog_engine: FaceEngine, samples: Path) -> None:
    _, rgba = hog_engine.largest_face_template(samples / "32bit.png")
    _, obama = hog_engine.largest_face_template(samples / "obama.jpg")
    assert hog_engine.is_match(compare(rgba, obama))


@pytest.mark.parametrize("name", ["obama_partial_face.jpg", "obama_partial_face2.jpg"])
def test_partial_faces_stay_inside_the_image(hog_engine: FaceEngine, samples: Path, name: str) -> None:
    rgb = load_image(samples / name)
    faces = hog_engine.detector.detect(rgb)
    assert faces, "a half-visible face should still be found"
    for face in faces:
        x, y, w, h = face.box
        assert x >= 0 and y >= 0 and x + w <= rgb.shape[1] and y + h <= rgb.shape[0]
    template = hog_engine.embedder.embed(rgb, faces[:1])[0]
    assert template.vector.shape == (128,)


def test_blank_image_has_no_face(hog_engine: FaceEngine) -> None:
    blank = np.full((200, 200, 3), 127, dtype=np.uint8)
    assert hog_engine.detect(blank) == []
    with pytest.raises(NoFaceError, match="no face found"):
        hog_engine.largest_face_template(blank, "blank.png")


def test_blur_lowers_sharpness(hog_engine: FaceEngine, samples: Path) -> None:
    rgb = load_image(samples / "obama.jpg")
    sharp = hog_engine.detector.detect(rgb)[0].quality.sharpness
    blurred = hog_engine.detector.detect(cv2.GaussianBlur(rgb, (0, 0), 4))
    assert blurred and blurred[0].quality.sharpness < sharp / 4


def test_templates_are_unit_float32_and_tagged(hog_engine: FaceEngine, samples: Path) -> None:
    face, template = hog_engine.largest_face_template(samples / "obama.jpg")
    assert template.vector.dtype == np.float32
    assert np.linalg.norm(template.vector) == pytest.approx(1.0, abs=1e-5)
    assert template.model_id == "dlib-resnet@v1"
    assert np.allclose(hog_engine.embed(samples / "obama.jpg", face).vector, template.vector, atol=1e-6)


def test_templates_of_different_models_cannot_be_compared() -> None:
    a = Template(np.ones(4), "model-a", "1")
    with pytest.raises(ModelMismatchError, match="model-a@1 with one of model-b@1"):
        compare(a, Template(np.ones(4), "model-b", "1"))
    with pytest.raises(ModelMismatchError):
        compare(a, Template(np.ones(4), "model-a", "2"))
    with pytest.raises(ValueError, match="non-zero"):
        Template(np.zeros(4), "model-a", "1")


def test_registries_name_the_built_ins_and_refuse_unknown_names() -> None:
    assert {"hog", "mmod", "yunet"} <= set(DETECTORS.names())
    assert "dlib" in EMBEDDERS.names()
    with pytest.raises(UnknownPluginError, match="unknown detector 'nope'; available: .*hog"):
        DETECTORS.create("nope")


def test_yunet_from_a_path(samples: Path, yunet_model: Path) -> None:
    engine = FaceEngine(EngineConfig(detector="yunet", detector_options={"model_path": yunet_model}))
    assert len(engine.detect(samples / "group.jpg")) >= 5
    _, obama = engine.largest_face_template(samples / "obama.jpg")
    _, obama2 = engine.largest_face_template(samples / "obama2.jpg")
    assert engine.is_match(compare(obama, obama2))


def test_yunet_needs_a_real_model(tmp_path: Path) -> None:
    assert DETECTORS.create("yunet").name == "yunet"  # without a path: the bundled file
    with pytest.raises(ModelError, match="model file not found"):
        DETECTORS.create("yunet", model_path=tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="could not be loaded"):
        DETECTORS.create("yunet", model_path=junk)


def test_mmod_cnn_detector_finds_a_face(samples: Path) -> None:
    # MMOD is slow on CPU without BLAS (~30 s for a 1 MP image upsampled), so use a small image.
    rgb = cv2.resize(load_image(samples / "obama.jpg"), (300, 375), interpolation=cv2.INTER_AREA)
    faces = DETECTORS.create("mmod").detect(rgb)
    assert len(faces) == 1 and faces[0].detector == "mmod"
