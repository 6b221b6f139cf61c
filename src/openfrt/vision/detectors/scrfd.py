"""SCRFD-style detectors (InsightFace ``det_10g``, ``det_2.5g``, ...) on onnxruntime.

These are anchor-free heads at strides 8, 16 and 32 with two anchor points per cell: per stride
a score map, box distances (left, top, right, bottom, in stride units) and five landmark offsets.
The user supplies the ``.onnx`` file; InsightFace's pretrained weights are for non-commercial
research only.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from openfrt.errors import ModelError
from openfrt.vision.detectors.base import DETECTORS, Detector
from openfrt.vision.embedders.chip import OnnxRuntimeBackend
from openfrt.vision.model_cache import verify_sha256
from openfrt.vision.quality import clip_box, make_face
from openfrt.vision.types import Face

STRIDES = (8, 16, 32)
ANCHORS_PER_CELL = 2


@DETECTORS.register("scrfd")
class ScrfdDetector(Detector):
    """SCRFD with landmarks; frames are letterboxed into ``input_size`` (default 640)."""

    name = "scrfd"

    def __init__(
        self,
        model_path: str | Path | None = None,
        sha256: str | None = None,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
        input_size: int = 640,
        threads: int = 0,
    ) -> None:
        if model_path is None:
            raise ModelError("the scrfd detector needs model_path: the path of an SCRFD .onnx file")
        path = Path(model_path)
        verify_sha256(path, sha256)
        self._backend = OnnxRuntimeBackend(path, threads)
        outputs = self._backend.session.get_outputs()
        if len(outputs) != 3 * len(STRIDES):
            raise ModelError(
                f"{path} is not an SCRFD detector with landmarks: expected 9 outputs (score, box and "
                f"landmarks at strides 8/16/32), found {len(outputs)}"
            )
        self._output_names = [output.name for output in outputs]
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.input_size = input_size

    def detect(self, rgb: np.ndarray) -> list[Face]:
        blob, scale = self._letterbox(rgb)
        outputs = self._backend.session.run(self._output_names, {self._backend.input.name: blob})
        boxes, scores, landmarks = self._decode(outputs)
        boxes, landmarks = boxes / scale, landmarks / scale
        keep = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), self.score_threshold, self.nms_threshold)
        faces = []
        for index in np.asarray(keep, dtype=int).reshape(-1):
            box = clip_box(boxes[index], rgb.shape)
            if box is not None:
                faces.append(make_face(rgb, box, float(scores[index]), landmarks[index], self.name))
        return sorted(faces, key=lambda face: face.score, reverse=True)

    def _letterbox(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """Resize keeping the aspect ratio, pad to a square, normalise as SCRFD was trained."""
        scale = self.input_size / max(rgb.shape[:2])
        resized = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)))
        canvas = np.zeros((self.input_size, self.input_size, 3), dtype=np.float32)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        return ((canvas - 127.5) / 128.0).transpose(2, 0, 1)[None], scale

    def _decode(self, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, w, h) boxes, scores and 5x2 landmarks of every anchor above the threshold."""
        all_boxes, all_scores, all_landmarks = [], [], []
        for level, stride in enumerate(STRIDES):
            scores = outputs[level].reshape(-1)
            distances = outputs[level + len(STRIDES)].reshape(-1, 4) * stride
            offsets = outputs[level + 2 * len(STRIDES)].reshape(-1, 5, 2) * stride
            centres = _anchor_centres(self.input_size // stride, stride)
            chosen = scores >= self.score_threshold
            corners = np.hstack([centres[chosen] - distances[chosen, :2], centres[chosen] + distances[chosen, 2:]])
            all_boxes.append(np.hstack([corners[:, :2], corners[:, 2:] - corners[:, :2]]))
            all_scores.append(scores[chosen])
            all_landmarks.append(centres[chosen][:, None, :] + offsets[chosen])
        return np.concatenate(all_boxes), np.concatenate(all_scores), np.concatenate(all_landmarks)


def _anchor_centres(cells: int, stride: int) -> np.ndarray:
    """Anchor points of a ``cells`` x ``cells`` grid, row-major, each repeated per anchor."""
    ys, xs = np.mgrid[:cells, :cells]
    centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centres, ANCHORS_PER_CELL, axis=0)
