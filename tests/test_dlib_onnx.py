"""dlib face-recognition ResNet -> ONNX conversion and dlib-exact face chips.

Parity is checked against dlib itself (needs the ``dlib`` and
``face_recognition_models`` packages, and the sample images in ``../shared``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from openfrt.vision.convert.dlib_format import DlibFormatError
from openfrt.vision.convert.dlib_resnet import (
    INPUT_NAME,
    OUTPUT_NAME,
    build_dlib_resnet_onnx,
    read_face_recognition_resnet,
)
from openfrt.vision.dlib_chip import (
    DLIB_CHIP_REFERENCE_5PT,
    dlib_chip_from_standard_5pt,
    dlib_face_chip,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SAMPLES = SHARED / "faces" / "samples"
SAMPLE_FILES = ("obama.jpg", "biden.jpg", "two_people.jpg")


@pytest.fixture(scope="module")
def models_dir() -> Path:
    frm = pytest.importorskip(
        "face_recognition_models", reason="face_recognition_models not installed"
    )
    return Path(frm.face_recognition_model_location()).parent


@pytest.fixture(scope="module")
def resnet_dat(models_dir: Path) -> Path:
    return models_dir / "dlib_face_recognition_resnet_model_v1.dat"


@pytest.fixture(scope="module")
def session(resnet_dat: Path):
    ort = pytest.importorskip("onnxruntime")
    model = build_dlib_resnet_onnx(resnet_dat)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def sample_faces(models_dir: Path):
    """(image, dlib rect, dlib 5-point shape, 5x2 points) for every face in the samples."""
    dlib = pytest.importorskip("dlib", reason="dlib not installed")
    if not SAMPLES.is_dir():
        pytest.skip(f"shared sample images not found at {SAMPLES}")
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models_dir / "shape_predictor_5_face_landmarks.dat"))
    faces = []
    for name in SAMPLE_FILES:
        img = dlib.load_rgb_image(str(SAMPLES / name))
        for rect in detector(img, 1):
            shape = predictor(img, rect)
            pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
            faces.append((img, rect, shape, pts))
    assert len(faces) >= 4, "expected obama, biden and two people"
    return faces


def _embed(session, chips: list[np.ndarray]) -> np.ndarray:
    x = np.stack(chips).transpose(0, 3, 1, 2).astype(np.float32)
    return session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---- file format ---------------------------------------------------------------------


def test_reads_network_structure(resnet_dat: Path) -> None:
    net = read_face_recognition_resnet(resnet_dat)
    assert (net.input.rows, net.input.cols) == (150, 150)
    assert net.input.avg_rgb == pytest.approx((122.782, 117.001, 104.298), abs=1e-4)
    kinds = [type(layer).__name__ for layer in net.layers]
    assert kinds.count("Conv") == 29 and kinds.count("Affine") == 29
    assert kinds[-1] == "FullyConnected" and net.layers[-1].weights.shape == (256, 128)


def test_garbage_file_raises_value_error_naming_file(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.dat"
    bad.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match="garbage.dat") as info:
        build_dlib_resnet_onnx(bad)
    assert isinstance(info.value, DlibFormatError)


def test_empty_file_raises(tmp_path: Path) -> None:
    empty = tmp_path / "empty.dat"
    empty.write_bytes(b"")
    with pytest.raises(DlibFormatError, match="empty.dat"):
        read_face_recognition_resnet(empty)


def test_truncated_file_raises(resnet_dat: Path, tmp_path: Path) -> None:
    cut = tmp_path / "truncated.dat"
    cut.write_bytes(resnet_dat.read_bytes()[:5_000_000])
    with pytest.raises(DlibFormatError, match="truncated.dat.*truncated"):
        build_dlib_resnet_onnx(cut)


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(DlibFormatError, match="nope.dat"):
        read_face_recognition_resnet(tmp_path / "nope.dat")


# ---- ONNX parity ---------------------------------------------------------------------


def test_onnx_matches_dlib_descriptor(session, sample_faces, resnet_dat: Path) -> None:
    dlib = pytest.importorskip("dlib")
    recognizer = dlib.face_recognition_model_v1(str(resnet_dat))
    chips = [dlib_face_chip(img, pts) for img, _, _, pts in sample_faces]
    ours = _embed(session, chips)
    assert ours.shape == (len(chips), 128) and ours.dtype == np.float32
    for (img, _, shape, _), mine in zip(sample_faces, ours):
        ref = np.array(recognizer.compute_face_descriptor(img, shape))
        assert _cos(ref, mine) >= 0.9999
        assert np.abs(ref - mine).max() < 1e-4
        assert abs(np.linalg.norm(mine) - 1.0) > 1e-3  # not normalised inside the graph


def test_batch_equals_single(session, sample_faces) -> None:
    chips = [dlib_face_chip(img, pts) for img, _, _, pts in sample_faces[:3]]
    batched = _embed(session, chips)
    single = np.concatenate([_embed(session, [c]) for c in chips])
    np.testing.assert_allclose(batched, single, atol=1e-5)


# ---- face chips ----------------------------------------------------------------------


def test_chip_matches_dlib_get_face_chip(sample_faces) -> None:
    dlib = pytest.importorskip("dlib")
    for img, _, shape, pts in sample_faces:
        ref = np.asarray(dlib.get_face_chip(img, shape, 150, 0.25))
        mine = dlib_face_chip(img, pts)
        assert mine.shape == (150, 150, 3) and mine.dtype == np.uint8
        diff = np.abs(ref.astype(int) - mine.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # bit-exact in practice


def test_chip_downsampled_face_matches_dlib(models_dir: Path) -> None:
    """A large face exercises dlib's image pyramid before bilinear sampling."""
    dlib = pytest.importorskip("dlib")
    path = SAMPLES / "obama-1080p.jpg"
    if not path.is_file():
        pytest.skip(f"shared sample image not found at {path}")
    img = dlib.load_rgb_image(str(path))
    rect = dlib.get_frontal_face_detector()(img, 0)[0]
    shape = dlib.shape_predictor(str(models_dir / "shape_predictor_5_face_landmarks.dat"))(
        img, rect
    )
    pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
    ref = np.asarray(dlib.get_face_chip(img, shape, 150, 0.25))
    assert np.abs(ref.astype(int) - dlib_face_chip(img, pts).astype(int)).max() <= 1


def test_reference_points_layout() -> None:
    ref = DLIB_CHIP_REFERENCE_5PT
    assert ref.shape == (5, 2)
    left_eye, right_eye, nose, mouth_left, mouth_right = ref
    assert left_eye[0] < nose[0] < right_eye[0]
    assert mouth_left[0] < nose[0] < mouth_right[0]
    assert left_eye[1] < nose[1] < mouth_left[1]
    assert ref.min() > 0 and ref.max() < 150


def test_standard_5pt_chip_close_to_dlib_chip(session, sample_faces, models_dir: Path) -> None:
    """Points from the 68-point model, aligned to the reference, embed like dlib's chip."""
    dlib = pytest.importorskip("dlib")
    predictor68 = dlib.shape_predictor(str(models_dir / "shape_predictor_68_face_landmarks.dat"))
    for img, rect, _, pts in sample_faces:
        p = np.array([[q.x, q.y] for q in predictor68(img, rect).parts()], dtype=np.float64)
        std5 = np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])
        a, b = _embed(session, [dlib_face_chip(img, pts), dlib_chip_from_standard_5pt(img, std5)])
        assert _cos(a, b) > 0.95
