"""MTCNN (Zhang et al. 2016): a three-stage cascade that finds small faces and gives five landmarks.

Why MTCNN: CCTV frames show faces 25-60 px high, below what dlib's HOG detector finds, and its
weights ship on PyPI (the ``mtcnn`` package, MIT). We convert them to ONNX once
(:mod:`openfrt.vision.convert.mtcnn`) and run them on onnxruntime, without TensorFlow.

The cascade: P-Net scans an image pyramid (one 12x12 window every 2 px per level) and proposes
boxes; R-Net re-scores 24x24 crops of them; O-Net re-scores 48x48 crops, refines the boxes and
places the landmarks. Each stage regresses its box and is followed by non-maximum suppression.
Boxes here are ``(x1, y1, x2, y2)`` float arrays in continuous pixel coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import onnxruntime as ort

from openfrt.vision.convert.mtcnn import ONET_SIZE, RNET_SIZE, converted_model
from openfrt.vision.detectors.base import DETECTORS, Detector
from openfrt.vision.quality import clip_box, make_face
from openfrt.vision.types import Face

#: P-Net's window and the step between windows, in pixels of the pyramid level it scans.
PNET_WINDOW, PNET_STRIDE = 12, 2

#: IoU above which a box is suppressed: within one pyramid level, across levels, after R-Net,
#: and after O-Net (where overlap is measured against the smaller box, so a box nested inside
#: a face's box is dropped too).
NMS_PER_LEVEL, NMS_PROPOSALS, NMS_REFINED, NMS_FINAL = 0.5, 0.7, 0.7, 0.7

#: O-Net scores inside this band are averaged with the score of the mirrored crop.
MIRROR_BAND = (0.05, 0.95)

#: ``cv2.remap`` refuses images of 32767 rows or more, so crops are sampled in chunks.
_MAX_REMAP_ROWS = 32000


@DETECTORS.register("mtcnn")
class MtcnnDetector(Detector):
    """MTCNN on onnxruntime.

    ``min_face_size`` is the smallest face (box side, in pixels of the input image) searched for;
    the pyramid's cost grows with the inverse square of it. ``thresholds`` are the face scores
    P-Net, R-Net and O-Net must exceed. ``scale_factor`` is the ratio between pyramid levels.
    ``max_width`` downsizes wider images before detecting, which also raises the smallest
    findable face to ``12 * width / max_width`` px; boxes come back in input coordinates.
    ``threads`` is onnxruntime's intra-op thread count (0: its default, one per core).
    """

    name = "mtcnn"
    confident_score = 0.95

    def __init__(
        self,
        min_face_size: float = 32.0,
        thresholds: Sequence[float] = (0.8, 0.4, 0.35),
        scale_factor: float = 0.709,
        max_width: int | None = None,
        threads: int = 0,
    ) -> None:
        if min_face_size < PNET_WINDOW:
            raise ValueError(f"min_face_size must be at least {PNET_WINDOW} px (P-Net's window)")
        if len(thresholds) != 3 or not all(0.0 <= t < 1.0 for t in thresholds):
            raise ValueError("thresholds must be three scores in [0, 1): P-Net, R-Net, O-Net")
        if not 0.1 <= scale_factor < 1.0:
            raise ValueError("scale_factor must be in [0.1, 1)")
        if max_width is not None and max_width < PNET_WINDOW:
            raise ValueError(f"max_width must be at least {PNET_WINDOW} px")
        self.min_face_size = float(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.scale_factor = float(scale_factor)
        self.max_width = max_width
        options = _session_options(threads)
        self._pnet, self._rnet, self._onet = (_session(net, options) for net in ("pnet", "rnet", "onet"))

    def detect(self, rgb: np.ndarray) -> list[Face]:
        image, scale = _limit_width(np.ascontiguousarray(rgb), self.max_width)
        boxes, scores, landmarks = self._cascade(image, self.min_face_size * scale)
        faces = []
        for box, score, points in zip(boxes / scale, scores, landmarks / scale):
            clipped = clip_box((box[0], box[1], box[2] - box[0], box[3] - box[1]), rgb.shape)
            if clipped is not None:
                faces.append(make_face(rgb, clipped, float(score), points, self.name))
        return sorted(faces, key=lambda face: face.score, reverse=True)

    def _cascade(self, image: np.ndarray, min_face_size: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes ``(N, 4)``, scores ``(N,)`` and landmarks ``(N, 5, 2)`` in ``image`` pixels."""
        p_threshold, r_threshold, o_threshold = self.thresholds
        boxes = self._propose(image, min_face_size, p_threshold)
        boxes = self._refine(image, boxes, r_threshold)
        return self._output(image, boxes, o_threshold)

    def _propose(self, image: np.ndarray, min_face_size: float, threshold: float) -> np.ndarray:
        """Stage 1: P-Net over the pyramid; square candidate boxes."""
        found = [
            _pnet_boxes(self._pnet, level, scale, threshold)
            for level, scale in _pyramid(image, min_face_size, self.scale_factor)
        ]
        boxes = np.concatenate([boxes for boxes, _ in found]) if found else np.zeros((0, 4), np.float32)
        scores = np.concatenate([scores for _, scores in found]) if found else np.zeros(0, np.float32)
        return _square(boxes[nms(boxes, scores, NMS_PROPOSALS)])

    def _refine(self, image: np.ndarray, boxes: np.ndarray, threshold: float) -> np.ndarray:
        """Stage 2: R-Net re-scores and regresses the candidates; square boxes for O-Net."""
        if len(boxes) == 0:
            return boxes
        face, offsets = self._rnet.run(["face", "offsets"], {"image": crops(image, boxes, RNET_SIZE)})
        keep = face > threshold
        boxes = apply_offsets(boxes[keep], offsets[keep])
        return _square(boxes[nms(boxes, face[keep], NMS_REFINED)])

    def _output(
        self, image: np.ndarray, boxes: np.ndarray, threshold: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stage 3: O-Net's final scores, boxes and landmarks."""
        if len(boxes) == 0:
            return boxes, np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
        patches = crops(image, boxes, ONET_SIZE)
        face, offsets, points = self._onet.run(["face", "offsets", "landmarks"], {"image": patches})
        face = self._with_mirror_scores(patches, face)
        keep = face > threshold
        boxes, scores = boxes[keep], face[keep]
        landmarks = place_landmarks(boxes, points[keep])
        boxes = apply_offsets(boxes, offsets[keep])
        kept = nms_nested(boxes, scores, NMS_FINAL)
        return boxes[kept], scores[kept], landmarks[kept]

    def _with_mirror_scores(self, patches: np.ndarray, face: np.ndarray) -> np.ndarray:
        """Average O-Net's uncertain scores with its score for the mirrored crop.

        O-Net scores a turned face differently from its mirror image, and the mean of the two
        lifts turned faces more than face-like clutter (measured on CCTV frames: more of
        YuNet's faces found at the same number of extra detections). Confident scores are left
        alone: averaging barely moves them, and O-Net is the costliest net per crop.
        """
        unsure = np.flatnonzero((face > MIRROR_BAND[0]) & (face < MIRROR_BAND[1]))
        if unsure.size == 0:
            return face
        (mirrored,) = self._onet.run(["face"], {"image": np.ascontiguousarray(patches[unsure, :, ::-1])})
        face = face.copy()
        face[unsure] = (face[unsure] + mirrored) / 2
        return face


def _session_options(threads: int) -> ort.SessionOptions:
    """Full graph optimisation (its blocked-layout convolutions are what make P-Net fast), and
    worker threads that sleep rather than spin between runs: the three networks run one after
    another, each with its own thread pool, and spinning pools (onnxruntime's default) steal
    the cores from the network that is running, and from the rest of a live pipeline."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _session(net: str, options: ort.SessionOptions) -> ort.InferenceSession:
    return ort.InferenceSession(str(converted_model(net).ensure()), options, providers=["CPUExecutionProvider"])


def _limit_width(rgb: np.ndarray, max_width: int | None) -> tuple[np.ndarray, float]:
    """The image to detect in and its scale relative to ``rgb``."""
    width = rgb.shape[1]
    if not max_width or width <= max_width:
        return rgb, 1.0
    scale = max_width / width
    size = (max_width, max(1, round(rgb.shape[0] * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale


def pyramid_scales(height: int, width: int, min_face_size: float, scale_factor: float) -> list[float]:
    """Scales at which P-Net's 12 px window matches faces from ``min_face_size`` up to the
    image's shorter side, never enlarging the image (P-Net gains nothing from upsampling)."""
    first = min(1.0, PNET_WINDOW / min_face_size)
    shorter = min(height, width)
    count = max(0, math.floor(math.log(PNET_WINDOW / (shorter * first)) / math.log(scale_factor)) + 1)
    return [first * scale_factor**level for level in range(count)]


def _pyramid(image: np.ndarray, min_face_size: float, scale_factor: float) -> list[tuple[np.ndarray, float]]:
    """(level image, scale) pairs.

    Each level is resized bilinearly from the smallest power-of-two reduction of ``image`` that
    is still at least as large, so no bilinear resize shrinks by more than half (little
    aliasing) and the large image is read only once (area-averaging a 1080p frame to every
    level separately cost several ms per frame).
    """
    octaves = [image]
    levels = []
    for scale in pyramid_scales(*image.shape[:2], min_face_size, scale_factor):
        while scale * (1 << len(octaves)) <= 1.0:
            previous = octaves[-1]
            octaves.append(
                cv2.resize(previous, (previous.shape[1] // 2, previous.shape[0] // 2), interpolation=cv2.INTER_AREA)
            )
        octave = octaves[-1]
        size = (max(PNET_WINDOW, round(image.shape[1] * scale)), max(PNET_WINDOW, round(image.shape[0] * scale)))
        level = (
            octave
            if size == (octave.shape[1], octave.shape[0])
            else cv2.resize(octave, size, interpolation=cv2.INTER_LINEAR)
        )
        levels.append((level, scale))
    return levels


def _pnet_boxes(
    session: ort.InferenceSession, level: np.ndarray, scale: float, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """P-Net's regressed boxes (in image pixels) and scores for one pyramid level, after NMS."""
    face, offsets = session.run(["face", "offsets"], {"image": level[np.newaxis]})
    rows, cols = np.nonzero(face[0] > threshold)
    scores = face[0, rows, cols]
    corners = np.stack([cols, rows, cols, rows], axis=1).astype(np.float32) * PNET_STRIDE
    windows = (corners + np.array([0, 0, PNET_WINDOW, PNET_WINDOW], np.float32)) / scale
    boxes = apply_offsets(windows, offsets[0, :, rows, cols])
    kept = nms(boxes, scores, NMS_PER_LEVEL)
    return boxes[kept], scores[kept]


def apply_offsets(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Move each corner by its regressed offset, a fraction of the box's width or height."""
    sizes = np.tile(boxes[:, 2:4] - boxes[:, 0:2], 2)
    return (boxes + offsets * sizes).astype(np.float32)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre: R-Net and O-Net see square crops."""
    centres = (boxes[:, 0:2] + boxes[:, 2:4]) / 2
    half = np.max(boxes[:, 2:4] - boxes[:, 0:2], axis=1, keepdims=True) / 2
    return np.concatenate([centres - half, centres + half], axis=1).astype(np.float32)


def place_landmarks(boxes: np.ndarray, points: np.ndarray) -> np.ndarray:
    """O-Net's landmarks (five x then five y, as fractions of the crop) in image pixels, ``(N, 5, 2)``.

    O-Net's order is the image's left eye, right eye, nose, mouth left, mouth right, which is
    already :data:`openfrt.vision.types.LANDMARK_NAMES` order.
    """
    xs = boxes[:, 0:1] + points[:, 0:5] * (boxes[:, 2:3] - boxes[:, 0:1])
    ys = boxes[:, 1:2] + points[:, 5:10] * (boxes[:, 3:4] - boxes[:, 1:2])
    return np.stack([xs, ys], axis=2).astype(np.float32)


def crops(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """``(N, size, size, 3)`` crops of ``boxes``, bilinearly resampled, black outside the image.

    One ``cv2.remap`` call samples every crop at once (they are stacked vertically in the map)
    instead of a Python loop cropping and resizing hundreds of boxes.
    """
    steps = (np.arange(size, dtype=np.float32) + 0.5) / size
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    xs = boxes[:, 0:1] + steps * widths[:, None] - 0.5
    ys = boxes[:, 1:2] + steps * heights[:, None] - 0.5
    map_x = np.broadcast_to(xs[:, None, :], (len(boxes), size, size)).reshape(-1, size)
    map_y = np.broadcast_to(ys[:, :, None], (len(boxes), size, size)).reshape(-1, size)
    rows = _MAX_REMAP_ROWS // size * size
    parts = [
        cv2.remap(
            image,
            map_x[start : start + rows],
            map_y[start : start + rows],
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
        )
        for start in range(0, len(map_x), rows)
    ]
    return np.concatenate(parts).reshape(len(boxes), size, size, 3)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression (IoU), best score first.

    OpenCV's implementation: an order of magnitude faster than a numpy loop on the hundreds of
    boxes P-Net proposes per frame.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    xywh = np.concatenate([boxes[:, 0:2], boxes[:, 2:4] - boxes[:, 0:2]], axis=1)
    kept = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.0, threshold)
    return np.asarray(kept, dtype=np.int64).reshape(-1)


def nms_nested(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression with overlap measured over the smaller box's area, so a
    box lying mostly inside a better one is dropped even when their IoU is small."""
    order = np.argsort(-scores, kind="stable")
    areas = np.prod(boxes[:, 2:4] - boxes[:, 0:2], axis=1)
    kept = []
    while order.size:
        best, rest = order[0], order[1:]
        kept.append(best)
        top_left = np.maximum(boxes[best, 0:2], boxes[rest, 0:2])
        bottom_right = np.minimum(boxes[best, 2:4], boxes[rest, 2:4])
        overlap = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
        order = rest[overlap <= threshold * np.minimum(areas[best], areas[rest])]
    return np.array(kept, dtype=np.int64)
