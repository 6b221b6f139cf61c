"""The MTCNN detector: conversion of the bundled weights, and detection on sample images and
CCTV-like video frames (with YuNet as the yardstick)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SAMPLES = SHARED / "faces" / "samples"
VIDEO = SHARED / "video" / "walking_1080p.mp4"
YUNET = SHARED / "models" / "face_detection_yunet_2023mar.onnx"

if importlib.util.find_spec("mtcnn") is None:
    pytest.skip("needs the 'mtcnn' package for its bundled weights", allow_module_level=True)

from openfrt.vision.boxes import count_matches, iou  # noqa: E402
from openfrt.vision.convert import mtcnn as convert  # noqa: E402
from openfrt.vision.detectors.base import DETECTORS  # noqa: E402
from openfrt.vision.detectors.mtcnn import MtcnnDetector, nms, nms_nested  # noqa: E402


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"needs {path} (the shared test data beside the project), which is absent")
    return path


def load_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(need(path))), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MtcnnDetector]:
    """One detector for the module; its models are built in the test session's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENFRT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "model-cache"))
        yield MtcnnDetector()


# --- conversion -------------------------------------------------------------------------------
# A direct numpy transcription of the Keras layers (channels-last, Keras weight layouts, the
# (W, H, C) permute before flattening) to check the ONNX graphs' layout conversions against.


def _keras_conv(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    kh, kw = kernel.shape[:2]
    rows, cols = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = sum(
        np.einsum("nhwc,co->nhwo", x[:, i : i + rows, j : j + cols], kernel[i, j]) for i in range(kh) for j in range(kw)
    )
    return out + bias


def _keras_prelu(x: np.ndarray, slopes: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, x * slopes.reshape(-1))


def _keras_max_pool(x: np.ndarray, size: int, stride: int, same: bool) -> np.ndarray:
    height, width = x.shape[1:3]
    if same:  # TensorFlow puts the odd padding pixel at the bottom/right
        out_h, out_w = -(-height // stride), -(-width // stride)
        pad_h, pad_w = max((out_h - 1) * stride + size - height, 0), max((out_w - 1) * stride + size - width, 0)
        pads = ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
        x = np.pad(x, pads, constant_values=-np.inf)
    else:
        out_h, out_w = (height - size) // stride + 1, (width - size) // stride + 1
    windows = [
        x[:, i : i + stride * out_h : stride, j : j + stride * out_w : stride] for i in range(size) for j in range(size)
    ]
    return np.max(windows, axis=0)


def _softmax_face(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (exp / exp.sum(axis=-1, keepdims=True))[..., 1]


#: Per network: each conv + PReLU block and the max-pool (size, stride, "same" padding) after it.
_KERAS_BLOCKS = {
    "pnet": [(2, 2, True), None, None],
    "rnet": [(3, 2, True), (3, 2, False), None],
    "onet": [(3, 2, True), (3, 2, False), (2, 2, True), None],
}


def _keras_net(net: str, w: list[np.ndarray], images: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs of the Keras network ``net`` as the ``mtcnn`` package defines it."""
    x = (images.astype(np.float64) - 127.5) / 128
    i = 0
    for pool in _KERAS_BLOCKS[net]:
        x = _keras_prelu(_keras_conv(x, w[i], w[i + 1]), w[i + 2])
        i += 3
        if pool:
            x = _keras_max_pool(x, *pool)
    if net == "pnet":
        return {
            "offsets": _keras_conv(x, w[i], w[i + 1]).transpose(0, 3, 1, 2),
            "face": _softmax_face(_keras_conv(x, w[i + 2], w[i + 3])),
        }
    x = _keras_prelu(x.transpose(0, 2, 1, 3).reshape(len(x), -1) @ w[i] + w[i + 1], w[i + 2])
    heads = [x @ w[j] + w[j + 1] for j in range(i + 3, len(w), 2)]
    names = ["offsets", "landmarks", "face"] if net == "onet" else ["offsets", "face"]
    outputs = dict(zip(names, heads))
    outputs["face"] = _softmax_face(outputs["face"])
    return outputs


@pytest.mark.parametrize(("net", "size"), [("pnet", (37, 50)), ("rnet", (24, 24)), ("onet", (48, 48))])
def test_onnx_graphs_compute_what_the_keras_networks_compute(net: str, size: tuple[int, int]) -> None:
    weights = convert.load_weights(net)
    session = ort.InferenceSession(getattr(convert, f"build_{net}")(weights), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(0).integers(0, 256, (3, *size, 3), dtype=np.uint8)
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"image": images})))
    expected = _keras_net(net, weights, images)
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, atol=1e-4, err_msg=f"{net} {name}")


# --- detection --------------------------------------------------------------------------------


def test_registered_as_mtcnn() -> None:
    assert "mtcnn" in DETECTORS.names()


def test_finds_both_people(detector: MtcnnDetector) -> None:
    faces = detector.detect(load_rgb(SAMPLES / "two_people.jpg"))
    assert len(faces) == 2
    assert all(face.detector == "mtcnn" and face.landmarks.shape == (5, 2) for face in faces)


def test_landmarks_inside_the_box_in_standard_order(detector: MtcnnDetector) -> None:
    """One face in obama.jpg. The defaults trade some false positives for recall on CCTV
    frames, and here give a second, low-scoring box on background clutter (0.59); MTCNN's
    classic O-Net threshold of 0.7 drops it."""
    image = load_rgb(SAMPLES / "obama.jpg")
    faces = detector.detect(image)
    assert [face.score > 0.9 for face in faces] == [True] + [False] * (len(faces) - 1)
    assert len(MtcnnDetector(thresholds=(0.6, 0.7, 0.7)).detect(image)) == 1
    (x, y, w, h), points = faces[0].box, faces[0].landmarks
    assert np.all((points[:, 0] > x) & (points[:, 0] < x + w) & (points[:, 1] > y) & (points[:, 1] < y + h))
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def test_finds_a_30_px_face_in_a_large_frame(detector: MtcnnDetector) -> None:
    portrait = load_rgb(SAMPLES / "obama_small.jpg")
    full_size = detector.detect(portrait)
    assert len(full_size) == 1
    scale = 30.0 / full_size[0].box[3]
    small = cv2.resize(portrait, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), 90, dtype=np.uint8)
    frame[200 : 200 + small.shape[0], 300 : 300 + small.shape[1]] = small
    faces = detector.detect(frame)
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    assert 300 <= x + w / 2 <= 300 + small.shape[1] and 200 <= y + h / 2 <= 200 + small.shape[0]
    assert 20 <= h <= 45


def test_blank_and_tiny_images_give_no_faces(detector: MtcnnDetector) -> None:
    assert detector.detect(np.full((480, 640, 3), 128, dtype=np.uint8)) == []
    assert detector.detect(np.zeros((8, 8, 3), dtype=np.uint8)) == []


def test_max_width_maps_boxes_back_to_input_coordinates(detector: MtcnnDetector) -> None:
    rgb = load_rgb(SAMPLES / "two_people.jpg")
    full = sorted(face.box for face in detector.detect(rgb))
    reduced = sorted(face.box for face in MtcnnDetector(max_width=rgb.shape[1] // 2).detect(rgb))
    assert len(reduced) == len(full) == 2
    for a, b in zip(full, reduced):
        assert iou(a, b) > 0.6


@pytest.mark.parametrize(
    "options",
    [
        {"min_face_size": 8},
        {"thresholds": (0.6, 0.7)},
        {"thresholds": (0.6, 0.7, 1.5)},
        {"scale_factor": 1.0},
        {"max_width": 4},
    ],
)
def test_rejects_bad_options(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        MtcnnDetector(**options)


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [2, 2, 6, 6]], dtype=np.float32)
    scores = np.array([0.8, 0.9, 0.7, 0.95], dtype=np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [3, 1, 2]
    assert nms_nested(boxes, scores, 0.5).tolist() == [3, 2]
    assert nms(boxes[:0], scores[:0], 0.5).tolist() == []


def test_recall_against_yunet_on_cctv_frames(detector: MtcnnDetector) -> None:
    """Faces 25-60 px high in 1080p frames: MTCNN must find 90% of what YuNet finds."""
    capture = cv2.VideoCapture(str(need(VIDEO)))
    yunet = cv2.FaceDetectorYN.create(str(need(YUNET)), "", (1920, 1080), 0.7, 0.3, 5000)
    found = expected = 0
    for index in range(0, 100, 20):
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, bgr = capture.read()
        assert ok, f"could not read frame {index} of {VIDEO}"
        yunet.setInputSize((bgr.shape[1], bgr.shape[0]))
        reference = yunet.detect(bgr)[1]
        reference = [] if reference is None else [tuple(row[:4]) for row in reference]
        boxes = [face.box for face in detector.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))]
        found += count_matches(boxes, reference)
        expected += len(reference)
    assert expected > 20
    assert found / expected >= 0.9


